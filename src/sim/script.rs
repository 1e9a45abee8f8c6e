//! [`Script`]: a run of the simulator written down as data, so it can be generated, shrunk,
//! fuzzed, printed and kept as a regression test.

use std::fmt;
use std::time::Duration;

use super::network::{Sim, SimConfig};
use super::report::{Report, Violations};
use crate::rng::SplitMix64;

/// One thing that happens to the simulated room. Client numbers are taken modulo the
/// number of clients, so every value means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// This many milliseconds of virtual time pass.
    Wait(u16),
    /// The client types a new short string.
    Type(u32),
    /// The client types a new string of 20 KiB up to the maximum length.
    TypeLong(u32),
    /// The first client connects to the second (nothing if same, crashed or partitioned).
    Connect(u32, u32),
    /// The working link of this rank (modulo their number) breaks.
    Break(u32),
    /// The client crashes; its links close.
    Crash(u32),
    /// The client, if crashed, starts again with an empty room.
    Restart(u32),
    /// The client, if crashed, starts again on its data directory: the strings it printed
    /// and the addresses it kept (a killed process: nothing lost).
    Resume(u32),
    /// As [`Step::Resume`], but the machine crashed: what was printed in the last sync
    /// interval (100 ms) is lost.
    ResumeLossy(u32),
    /// Bit `c % 64` puts client `c` on one side or the other; links across break.
    Partition(u64),
    /// The partition ends and the links it broke are made again.
    Heal,
    /// The first client, if crashed, starts again with an empty room and joins through the
    /// second one's address (a dial, which fails if that one is down or across the cut).
    Rejoin(u32, u32),
}

/// A whole simulated run: the network and what happens, step by step. After the last step
/// the network settles (no more typing, no more breaking), then idles for twice the clients'
/// idle timeout (keepalives must keep every link), settles again, and convergence is checked.
///
/// Its `Display` form is Rust: with `use floodchat::sim::{Script, Step::*};` it pastes into
/// a regression test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Number of clients (at least 1).
    pub clients: u32,
    /// Seeds the network's choices: latencies, split points, timing of closes.
    pub seed: u64,
    /// Smallest and largest one-way link latency, in milliseconds.
    pub latency_ms: (u16, u16),
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// What a [`Script`] run gave: its figures and the promises it found broken.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The figures.
    pub report: Report,
    /// Broken promises; empty when all held.
    pub violations: Violations,
    /// Hash of every input fed; equal runs give equal ones.
    pub fingerprint: u64,
}

impl Outcome {
    /// Whether every promise held.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl Script {
    /// The simulator configuration this script runs with.
    pub fn config(&self) -> SimConfig {
        let (lo, hi) = self.latency_ms;
        SimConfig {
            seed: self.seed,
            latency_min: Duration::from_millis(lo.min(hi).into()),
            latency_max: Duration::from_millis(lo.max(hi).into()),
            ..SimConfig::default()
        }
    }

    /// Runs the script with its own configuration.
    pub fn run(&self) -> Outcome {
        self.run_with(self.config())
    }

    /// Runs the script with `config` (for instance with a [`super::Fault`]).
    pub fn run_with(&self, config: SimConfig) -> Outcome {
        let idle = 2 * config.flood.idle_timeout;
        let n = self.clients.max(1) as usize;
        let mut sim = Sim::new(n, config);
        for &step in &self.steps {
            apply(&mut sim, step);
        }
        if sim.settle() {
            sim.advance(idle);
            sim.settle();
        }
        let violations = sim.check().clone();
        Outcome {
            report: sim.report(),
            violations,
            fingerprint: sim.fingerprint(),
        }
    }

    /// Panics, showing the violations, the figures and the script as Rust, unless every
    /// promise held.
    pub fn assert_ok(&self, outcome: &Outcome) {
        assert!(outcome.is_ok(), "{}", self.failure(outcome));
    }

    /// A description of a failed run: seed, violations, figures, and the script as Rust.
    pub fn failure(&self, outcome: &Outcome) -> String {
        format!(
            "simulation seed {:#x} broke {} promise(s):\n{}figures:\n{}\nscript, for tests/sim_regressions.rs:\n{}",
            self.seed,
            outcome.violations.len(),
            outcome.violations,
            outcome.report,
            self
        )
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Script {{")?;
        writeln!(f, "    clients: {},", self.clients)?;
        writeln!(f, "    seed: {:#x},", self.seed)?;
        writeln!(f, "    latency_ms: {:?},", self.latency_ms)?;
        writeln!(f, "    steps: vec![")?;
        for step in &self.steps {
            writeln!(f, "        {step:?},")?;
        }
        writeln!(f, "    ],")?;
        write!(f, "}}")
    }
}

/// How late a driver's history is durable against a crash of the machine (`--data-dir`).
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Carries out one step on `sim`.
pub fn apply(sim: &mut Sim, step: Step) {
    let n = sim.clients();
    let client = |c: u32| c as usize % n;
    match step {
        Step::Wait(ms) => sim.advance(Duration::from_millis(ms.into())),
        Step::Type(c) => {
            sim.type_line(client(c), false);
        }
        Step::TypeLong(c) => {
            sim.type_line(client(c), true);
        }
        Step::Connect(a, b) => {
            sim.connect(client(a), client(b));
        }
        Step::Break(k) => {
            let live = sim.live_links();
            if !live.is_empty() {
                sim.break_link(live[k as usize % live.len()]);
            }
        }
        Step::Crash(c) => {
            sim.crash(client(c));
        }
        Step::Restart(c) => {
            sim.restart(client(c));
        }
        Step::Resume(c) => {
            sim.resume(client(c), Duration::ZERO);
        }
        Step::ResumeLossy(c) => {
            sim.resume(client(c), SYNC_INTERVAL);
        }
        Step::Partition(mask) => {
            let side = (0..n).map(|c| (mask >> (c % 64)) & 1 == 1).collect();
            sim.partition(side);
        }
        Step::Heal => sim.heal(),
        Step::Rejoin(c, via) => {
            sim.rejoin(client(c), client(via));
        }
    }
}

/// The links of `n` clients joining one at a time, each through one random client already
/// in (as the chat is used), plus up to `extra` links between random pairs not yet linked
/// (two clients keep one link: the core closes duplicates).
pub fn random_topology(n: usize, extra: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = SplitMix64::new(seed ^ 0x7090_1091);
    let mut links: Vec<(usize, usize)> = (1..n).map(|c| (c, rng.index(c))).collect();
    let mut linked: std::collections::HashSet<(usize, usize)> =
        links.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    let possible = n * n.saturating_sub(1) / 2;
    let mut tries = 0;
    while n >= 2 && links.len() < n - 1 + extra && linked.len() < possible && tries < 100 * extra {
        tries += 1;
        let a = rng.index(n);
        let b = (a + 1 + rng.index(n - 1)) % n;
        if linked.insert((a.min(b), a.max(b))) {
            links.push((a, b));
        }
    }
    links
}
