//! Property tests over many random simulated runs (proptest, with shrinking).
//!
//! Each case is a [`Script`]: clients, a seed for the network's choices, and steps (typing,
//! connecting, waiting, breaking links, crashing, restarting, partitioning, healing). The
//! simulator checks every output as it happens and convergence once the network is quiet;
//! see `floodchat::sim::Sim` for the list. A failure is shrunk to a minimal script and
//! printed as Rust, with its seed, to be kept in `tests/sim_regressions.rs`.
//!
//! The proptest seed is fixed so that CI runs the same cases every time; set
//! `PROPTEST_RNG_SEED=<n>` to explore others and `PROPTEST_CASES=<n>` for more. Every test
//! checks that the cases really ran and that they were not trivial.

use std::cell::Cell;

use floodchat::sim::{Fault, Outcome, Script, SimConfig, Step};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// Runs `cases` scripts from `strategy` through `check`, shrinking any failure, then
/// checks that they all ran and that at least `nontrivial_share` percent spread a string.
fn run_cases(
    name: &str,
    cases: u32,
    nontrivial_share: u32,
    strategy: impl Strategy<Value = Script>,
    check: impl Fn(&Script, &Outcome) -> Result<(), String>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut config = Config::with_cases(cases);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0xF100_DC4A);
    }
    config.failure_persistence = None;
    let cases = config.cases;
    let ran = Cell::new(0u32);
    let nontrivial = Cell::new(0u32);
    let strings = Cell::new(0usize);
    let (dials, byes) = (Cell::new(0u64), Cell::new(0u64));
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |script| {
        ran.set(ran.get() + 1);
        let outcome = script.run();
        if !outcome.is_ok() {
            return Err(TestCaseError::fail(script.failure(&outcome)));
        }
        check(&script, &outcome)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", script.failure(&outcome))))?;
        if outcome.report.spread() > 0 {
            nontrivial.set(nontrivial.get() + 1);
        }
        strings.set(strings.get() + outcome.report.typed);
        dials.set(dials.get() + outcome.report.dials);
        byes.set(byes.get() + outcome.report.byes);
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, script)) => {
            panic!("{name}: minimal failing case:\n{reason}\n(minimal script: {script:?})")
        }
        Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
    }
    let (ran, nontrivial) = (ran.get(), nontrivial.get());
    eprintln!(
        "{name}: {ran} cases ran, {nontrivial} spread a string, {} strings typed, {} dials, \
         {} Byes",
        strings.get(),
        dials.get(),
        byes.get()
    );
    assert_eq!(ran, cases, "{name}: not every case ran");
    assert!(
        nontrivial * 100 >= cases * nontrivial_share,
        "{name}: only {nontrivial} of {cases} cases spread any string"
    );
}

const MAX_CLIENTS: u32 = 7;

/// Any step, weighted towards what makes a room: connecting, typing, waiting.
fn any_step() -> impl Strategy<Value = Step> {
    let c = 0..MAX_CLIENTS;
    prop_oneof![
        4 => (0u16..300).prop_map(Step::Wait),
        4 => c.clone().prop_map(Step::Type),
        1 => c.clone().prop_map(Step::TypeLong),
        5 => (c.clone(), c.clone()).prop_map(|(a, b)| Step::Connect(a, b)),
        2 => any::<u32>().prop_map(Step::Break),
        1 => c.clone().prop_map(Step::Crash),
        1 => c.clone().prop_map(Step::Restart),
        1 => c.clone().prop_map(Step::Resume),
        1 => c.clone().prop_map(Step::ResumeLossy),
        1 => (c.clone(), c).prop_map(|(a, b)| Step::Rejoin(a, b)),
        1 => any::<u64>().prop_map(Step::Partition),
        1 => Just(Step::Heal),
    ]
}

/// Steps that never break anything: links stay for the whole run.
fn calm_step() -> impl Strategy<Value = Step> {
    let c = 0..MAX_CLIENTS;
    prop_oneof![
        3 => (0u16..300).prop_map(Step::Wait),
        4 => c.clone().prop_map(Step::Type),
        4 => (c.clone(), c).prop_map(|(a, b)| Step::Connect(a, b)),
    ]
}

fn script(step: impl Strategy<Value = Step>, len: usize) -> impl Strategy<Value = Script> {
    (
        2..=MAX_CLIENTS,
        any::<u64>(),
        0u16..40,
        0u16..160,
        vec(step, 0..len),
    )
        .prop_map(|(clients, seed, lo, span, steps)| Script {
            clients,
            seed,
            latency_ms: (lo, lo + span),
            steps,
        })
}

/// Convergence and every per-output promise, with everything that can go wrong going wrong:
/// late joiners, broken links, crashes and restarts, partitions that heal (or not).
#[test]
fn random_runs_converge_and_keep_every_promise() {
    run_cases(
        "random_runs",
        400,
        50,
        script(any_step(), 60),
        |_, _| Ok(()),
    );
}

/// Without breaks, crashes or partitions, each link is one session: frames per typed string
/// never exceed twice the number of links.
#[test]
fn calm_runs_send_at_most_two_frames_per_link_per_string() {
    run_cases(
        "calm_runs",
        500,
        50,
        script(calm_step(), 50),
        |_, outcome| {
            let r = &outcome.report;
            assert_eq!((r.breaks, r.crashes), (0, 0));
            if r.max_frames_one_string > 2 * r.link_sessions as u64 {
                return Err(format!(
                    "a string took {} frames over {} links",
                    r.max_frames_one_string, r.link_sessions
                ));
            }
            Ok(())
        },
    );
}

/// A room that is typed in, cut in two, typed in on both sides, joined by late clients on
/// either side, then healed: everyone ends with everything, each string printed once.
#[test]
fn healed_partitions_and_late_joiners_converge_to_the_union() {
    let strategy = (
        4u32..=8,
        any::<u64>(),
        vec(0u32..8, 1..6),
        any::<u64>(),
        vec(0u32..8, 1..8),
        vec(0u32..8, 0..3),
    )
        .prop_map(|(clients, seed, before, mask, during, late)| {
            // Clients 0..clients-2 start as a chain; the last two join late.
            let early = clients - 2;
            let mut steps: Vec<Step> = (1..early).map(|c| Step::Connect(c, c - 1)).collect();
            steps.push(Step::Wait(200));
            steps.extend(before.iter().map(|&c| Step::Type(c % early)));
            steps.push(Step::Wait(150));
            steps.push(Step::Partition(mask));
            steps.extend(during.iter().map(|&c| Step::Type(c % early)));
            // One late joiner comes in during the partition, through a client on its side
            // (after the heal if there is none); the other only after the heal.
            let side = |c: u32| (mask >> c) & 1;
            let a = clients - 2;
            let through = (0..early).find(|&c| side(c) == side(a));
            if let Some(t) = through {
                steps.push(Step::Connect(a, t));
            }
            steps.extend(late.iter().map(|&c| Step::Type(c % clients)));
            steps.push(Step::Wait(300));
            steps.push(Step::Heal);
            if through.is_none() {
                steps.push(Step::Connect(a, 0));
            }
            steps.push(Step::Connect(clients - 1, early - 1));
            steps.push(Step::Type(clients - 1));
            Script {
                clients,
                seed,
                latency_ms: (5, 100),
                steps,
            }
        });
    run_cases("healed_partitions", 300, 90, strategy, |_, outcome| {
        let r = &outcome.report;
        if r.components != 1 || r.delivered_min() != r.typed {
            return Err(format!(
                "{} components, some client printed {} of {} strings",
                r.components,
                r.delivered_min(),
                r.typed
            ));
        }
        Ok(())
    });
}

/// The harness itself: on a network that loses writes (which TCP never does), the
/// property fails, and proptest shrinks the failure to a script of a few steps, printed
/// with its seed as Rust.
#[test]
fn a_failure_is_shrunk_to_a_minimal_script_with_its_seed() {
    let mut config = Config::with_cases(200);
    config.rng_seed = RngSeed::Fixed(1);
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&script(calm_step(), 50), |script| {
        let outcome = script.run_with(SimConfig {
            fault: Some(Fault::DropSends { one_in: 2 }),
            ..script.config()
        });
        if outcome.is_ok() {
            Ok(())
        } else {
            Err(TestCaseError::fail(script.failure(&outcome)))
        }
    });
    let Err(TestError::Fail(reason, minimal)) = result else {
        panic!("a lossy network went unnoticed: {result:?}");
    };
    assert!(minimal.steps.len() <= 8, "not shrunk: {minimal}");
    assert!(
        reason
            .message()
            .contains(&format!("seed {:#x}", minimal.seed))
    );
    assert!(reason.message().contains("steps: vec!["), "{reason}");
}

/// What happens to a room whose clients keep a data directory: typing, waiting, crashes,
/// and restarts on the directory that lose nothing (a killed process) or the last sync
/// interval (a crashed machine).
#[derive(Debug, Clone, Copy)]
enum Churn {
    Wait(u16),
    Type(usize),
    Crash(usize),
    Resume(usize),
    ResumeLossy(usize),
}

fn churn() -> impl Strategy<Value = Churn> {
    let c = 0..5usize;
    prop_oneof![
        4 => (0u16..400).prop_map(Churn::Wait),
        5 => c.clone().prop_map(Churn::Type),
        2 => c.clone().prop_map(Churn::Crash),
        2 => c.clone().prop_map(Churn::Resume),
        1 => c.prop_map(Churn::ResumeLossy),
    ]
}

/// Clients that restart on their data directory rejoin the room by themselves, print
/// nothing twice (the simulator checks every print against what that directory printed),
/// and once every client is back the room is one again: every client holds every string
/// that any client printed, so nothing printed before a kill, nor typed and kept, is lost.
#[test]
fn clients_resumed_from_disk_rejoin_by_themselves_and_lose_nothing() {
    use floodchat::sim::Sim;
    use std::time::Duration;
    let mut config = Config::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0xF100_DC4B);
    }
    config.failure_persistence = None;
    let resumed = Cell::new(0u32);
    let mut runner = TestRunner::new(config);
    let strategy = (any::<u64>(), vec(churn(), 0..60));
    let result = runner.run(&strategy, |(seed, steps)| {
        let n = 5;
        let mut sim = Sim::new(
            n,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        for c in 1..n {
            sim.connect(c - 1, c);
        }
        // Linked before anything happens: a client that never linked has no address kept.
        sim.advance(Duration::from_secs(2));
        for step in &steps {
            match *step {
                Churn::Wait(ms) => sim.advance(Duration::from_millis(ms.into())),
                Churn::Type(c) => drop(sim.type_line(c, false)),
                Churn::Crash(c) => drop(sim.crash(c)),
                Churn::Resume(c) => {
                    if sim.resume(c, Duration::ZERO) {
                        resumed.set(resumed.get() + 1);
                    }
                }
                Churn::ResumeLossy(c) => drop(sim.resume(c, Duration::from_millis(100))),
            }
        }
        for c in 0..n {
            sim.resume(c, Duration::ZERO);
        }
        sim.settle();
        let violations = sim.check().to_string();
        prop_assert!(violations.is_empty(), "{violations}\nsteps: {steps:?}");
        let mut all: Vec<String> = (0..n)
            .flat_map(|c| sim.state(c).unwrap().messages().map(str::to_owned))
            .collect();
        all.sort();
        all.dedup();
        for c in 0..n {
            let held = sim.state(c).unwrap().messages().count();
            prop_assert_eq!(
                held,
                all.len(),
                "client {} lacks strings; steps: {:?}",
                c,
                steps
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(resumed.get() > 0, "no case resumed a client");
}
