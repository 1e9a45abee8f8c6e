//! The deterministic figures REPORT.md quotes, pinned: the simulator gives the same figures
//! for the same seed, so a change of any of them fails here and becomes a reviewed change of
//! REPORT.md (regenerate them with the command named above each test, and update both).
//!
//! Each figure is pinned as a line, so a failure shows old and new side by side.
//!
//! The broadcast figures and the three-client model check run in every `cargo test`. The
//! join-then-crash runs of 1,000 clients and the two-client model check would add over a
//! minute to a debug build, so they run in release only (`cargo test --release --features
//! sim --test figures`; ignored in a debug build), and a join-then-crash run of 150 clients
//! is pinned in their place, so that a change of the core that moves them fails CI too.

use std::time::{Duration, Instant};

use floodchat::sim::model::{ModelConfig, explore};
use floodchat::sim::{
    Broadcast, BroadcastRun, JoinCrash, JoinThenCrash, Sim, SimConfig, broadcast, join_then_crash,
};

/// The line a broadcast run is pinned as.
fn broadcast_figures(run: &BroadcastRun) -> String {
    let r = &run.report;
    format!(
        "links {} degree {:?} diameter {}; cuts {} breaks {}; converged {}; frames {} writes {} \
         sessions {}; latency median {} p99 {} max {} ms",
        run.shape.links,
        run.shape.degree,
        run.shape.diameter,
        run.cuts,
        r.breaks,
        run.quiet && run.violations.is_empty() && r.components == 1 && r.delivered_min() == r.typed,
        r.frames,
        r.sends,
        r.link_sessions,
        r.latency_median().as_millis(),
        r.latency_percentile(99.0).as_millis(),
        r.latency_max().as_millis(),
    )
}

/// The broadcast setting without and with partitions (seed 1, the client's default
/// configuration), each pinned as a line.
fn broadcast_pinned(setting: Broadcast, pinned: [&str; 2]) -> [BroadcastRun; 2] {
    let config = SimConfig {
        seed: 1,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let calm = broadcast(config.clone(), &setting);
    let cut = Broadcast {
        partitions: Some(Broadcast::CUTS),
        ..setting
    };
    let cut = broadcast(config, &cut);
    eprintln!("broadcast, both runs: {:.1?}", started.elapsed());
    assert_eq!(broadcast_figures(&calm), pinned[0], "without partitions");
    assert_eq!(broadcast_figures(&cut), pinned[1], "with partitions");
    [calm, cut]
}

/// `cargo run --release --features sim --example sim_broadcast`: REPORT.md section 3, and
/// the goals with the shipped defaults: without partitions a median under 300 ms and a max
/// under 500 ms, with partitions at most 1.2 times the frames per string.
/// About 15 s of CPU in a debug build.
#[test]
fn broadcast_as_report_quotes() {
    let [calm, cut] = broadcast_pinned(
        Broadcast::default(),
        [
            "links 103 degree [5, 7, 15] diameter 3; cuts 0 breaks 0; converged true; frames \
             358994 writes 349844 sessions 143; latency median 200 p99 300 max 300 ms",
            "links 103 degree [5, 7, 15] diameter 3; cuts 4 breaks 179; converged true; frames \
             245163 writes 183462 sessions 314; latency median 1675 p99 5081 max 5266 ms",
        ],
    );
    // The goal was a median under 300 ms. With 100 ms links that is two hops, which held for
    // seeds 1 and 3 of 5 in protocol 2, for none in protocol 3 (its handshake makes joins
    // slower and leaves fewer surplus links), and for seed 1 again with issue 16's outbound
    // quota (REPORT.md section 3): what the 25-client graph gives depends on its surplus
    // links, so at most three hops is what is checked.
    assert!(calm.report.latency_median() <= Duration::from_millis(300));
    assert!(calm.report.latency_max() < Duration::from_millis(500));
    assert!(cut.report.frames_per_typed() <= 1.2 * calm.report.frames_per_typed());
}

/// The line a join-then-crash run is pinned as.
fn join_crash_figures(r: &JoinCrash) -> String {
    let secs = |d: Option<Duration>| d.map_or("never".to_owned(), |d| d.as_secs().to_string());
    format!(
        "links {} degree {:?} most accepted {} diameter {}; crashed {}: one component after {} \
         s, refilled after {} s; then degree {:?}, {} of {} strings reached all {}; {} \
         violations",
        r.joined.links,
        r.joined.degree,
        r.joined.max_inbound,
        r.joined.diameter,
        r.crashed,
        secs(r.heal_time),
        secs(r.refill_time),
        r.healed.degree,
        r.reached_every_survivor,
        r.typed_after,
        r.healed.clients,
        r.violations.len(),
    )
}

/// The run `sim_join_crash` makes (10 ms links, seed `seed`) with `clients` clients and
/// `strings` typed after the crash, pinned.
fn join_then_crash_pinned(seed: u64, clients: usize, strings: usize, pinned: &str) {
    let started = Instant::now();
    let latency = Duration::from_millis(10);
    let config = SimConfig {
        seed,
        latency_min: latency,
        latency_max: latency,
        ..SimConfig::default()
    };
    let setting = JoinThenCrash {
        clients,
        typed_after: strings,
        ..JoinThenCrash::default()
    };
    let r = join_then_crash(Sim::new(0, config), &setting);
    eprintln!(
        "join then crash, {clients} clients, seed {seed}: {:.1?}",
        started.elapsed()
    );
    assert_eq!(join_crash_figures(&r), pinned, "seed {seed}");
}

/// `cargo run --release --features sim --example sim_join_crash -- --seeds 1,2,3`:
/// REPORT.md section 3.
#[test]
#[cfg_attr(debug_assertions, ignore = "minutes in debug: cargo test --release")]
fn join_then_crash_as_report_quotes() {
    for (seed, pinned) in [
        (
            1,
            "links 3921 degree [5, 6, 18] most accepted 15 diameter 6; crashed 300: one \
             component after 0 s, refilled after 8 s; then degree [5, 6, 18], 50 of 50 strings \
             reached all 700; 0 violations",
        ),
        (
            2,
            "links 3913 degree [5, 6, 18] most accepted 15 diameter 6; crashed 300: one \
             component after 1 s, refilled after 11 s; then degree [5, 6, 18], 50 of 50 strings \
             reached all 700; 0 violations",
        ),
        (
            3,
            "links 3920 degree [5, 6, 18] most accepted 15 diameter 6; crashed 300: one \
             component after 0 s, refilled after 6 s; then degree [5, 6, 18], 50 of 50 strings \
             reached all 700; 0 violations",
        ),
    ] {
        join_then_crash_pinned(seed, 1000, 50, pinned);
    }
}

/// The same with 150 clients and 10 strings, for every `cargo test`.
#[test]
fn join_then_crash_of_150_clients() {
    join_then_crash_pinned(
        1,
        150,
        10,
        "links 606 degree [5, 6, 18] most accepted 15 diameter 4; crashed 45: one component \
         after 0 s, refilled after 3 s; then degree [5, 6, 17], 10 of 10 strings reached all \
         105; 0 violations",
    );
}

/// Explores `config` and pins its counts.
fn model_check_pinned(config: ModelConfig, pinned: &str) {
    let started = Instant::now();
    let s = explore(&config).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("model check: {:.1?}", started.elapsed());
    let figures = format!(
        "states {} transitions {} quiescent {} depth {}",
        s.states, s.transitions, s.quiescent, s.max_depth
    );
    assert_eq!(figures, pinned);
}

/// `cargo run --release --features sim --example model_check -- small`, the configuration
/// `cargo test` runs: REPORT.md section 2.5.
#[test]
fn model_check_of_three_clients_as_report_quotes() {
    model_check_pinned(
        ModelConfig::three_clients_chain_short(),
        "states 10260 transitions 18877 quiescent 808 depth 17",
    );
}

/// The same command's two-client configuration: REPORT.md section 2.5.
#[test]
#[cfg_attr(debug_assertions, ignore = "minutes in debug: cargo test --release")]
fn model_check_of_two_clients_as_report_quotes() {
    model_check_pinned(
        ModelConfig::two_clients_reconnect(),
        "states 387347 transitions 594097 quiescent 90800 depth 18",
    );
}

/// A client restarted on its data directory, every interleaving: REPORT.md section 2.5.
#[test]
fn model_check_of_a_restart_as_report_quotes() {
    model_check_pinned(
        ModelConfig::two_clients_restart(),
        "states 15424 transitions 23898 quiescent 3905 depth 15",
    );
}
