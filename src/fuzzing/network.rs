//! Fuzz entry point: a small simulated network whose script is read from the fuzzer's bytes.
//!
//! The bytes choose the number of clients (1 to 6), the seed, the latencies and up to 64
//! [`Step`]s; the run then settles and [`crate::sim::Sim::check`] looks at every promise,
//! convergence included. Any broken promise panics with the script as Rust, ready to be kept
//! in `tests/sim_regressions.rs`.

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::sim::{Script, Step};

/// Most steps a fuzz input is read as.
pub const MAX_STEPS: usize = 64;

/// Reads a script from `data` and runs it; panics if any promise breaks.
pub fn run(data: &[u8]) {
    let Ok(script) = script(&mut Unstructured::new(data)) else {
        return;
    };
    let outcome = script.run();
    script.assert_ok(&outcome);
}

/// The script that `u` describes.
pub fn script(u: &mut Unstructured<'_>) -> Result<Script> {
    let clients = u.int_in_range(1..=6)?;
    let seed = u64::arbitrary(u)?;
    let lo = u.int_in_range(0..=50)?;
    let hi = lo + u.int_in_range(0..=200)?;
    let mut steps = Vec::new();
    while steps.len() < MAX_STEPS && !u.is_empty() {
        steps.push(Step::arbitrary(u)?);
    }
    Ok(Script {
        clients,
        seed,
        latency_ms: (lo, hi),
        steps,
    })
}
