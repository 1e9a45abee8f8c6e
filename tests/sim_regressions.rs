//! Fixed simulated runs: scenarios worth naming, exact costs, determinism, and every script
//! a property test or the fuzzer ever found failing (paste the printed script at the end).

use floodchat::sim::Step::*;
use floodchat::sim::{Fault, Script, Sim, SimConfig, random_topology};

fn run_ok(script: &Script) -> floodchat::sim::Report {
    let outcome = script.run();
    script.assert_ok(&outcome);
    outcome.report
}

/// Clients joined in a random tree, then left for 20 s so that the mesh adds the links it
/// wants: once nothing changes, each client sends each string to every peer but the one it
/// came from, so a string costs exactly 2L - (n - 1) frames over the L links the mesh kept
/// (each link carries it once each way, except the n - 1 links of the tree it spread along,
/// which carry it once), and reconciliation adds nothing because the sets were equal when
/// the links were made.
#[test]
fn a_settled_mesh_costs_two_frames_per_link_minus_a_spanning_tree() {
    for (n, extra, seed) in [(2, 0, 1), (10, 0, 2), (30, 10, 3), (60, 40, 4)] {
        let links = random_topology(n, extra, seed);
        let script = Script {
            clients: n as u32,
            seed,
            latency_ms: (1, 40),
            steps: Vec::new(),
        };
        let mut config = script.config();
        // No rotation during the measurement: the graph must stand still for the count.
        config.flood.mesh.shuffle_interval = std::time::Duration::from_secs(3600);
        let mut sim = Sim::new(n, config);
        for &(a, b) in &links {
            sim.connect(a, b);
        }
        sim.advance(std::time::Duration::from_secs(20));
        assert!(sim.settle());
        let before = sim.report();
        for i in 0..20 {
            sim.type_line(i * 7 % n, false);
            sim.advance(std::time::Duration::from_millis(3));
        }
        assert!(sim.settle());
        assert!(sim.check().is_empty(), "{}", sim.violations());
        let r = sim.report();
        assert_eq!(
            r.link_sessions, before.link_sessions,
            "the graph stood still: {r}"
        );
        let kept = r.links_up as u64;
        assert!(kept >= (n - 1) as u64, "{r}");
        let expected = 2 * kept - (n as u64 - 1);
        assert_eq!(r.typed, 20);
        assert_eq!(r.frames, 20 * expected, "n={n} links={kept}: {r}");
        assert_eq!(r.max_frames_one_string, expected);
        assert_eq!((r.components, r.delivered_min()), (1, 20));
    }
}

/// A client that connects after everything was typed gets all of it, and so does one that
/// joins through the late joiner.
#[test]
fn late_joiners_get_the_whole_history() {
    let r = run_ok(&Script {
        clients: 5,
        seed: 7,
        latency_ms: (10, 30),
        steps: vec![
            Connect(0, 1),
            Connect(1, 2),
            Type(0),
            Type(1),
            Type(2),
            TypeLong(2),
            Wait(1000),
            Connect(3, 2),
            Wait(5),
            Connect(4, 3),
            Type(4),
        ],
    });
    assert_eq!((r.components, r.delivered_min(), r.typed), (1, 5, 5));
}

/// Both sides of a partition go on typing; after the heal, everyone has the union.
#[test]
fn a_healed_partition_converges_to_the_union() {
    let r = run_ok(&Script {
        clients: 6,
        seed: 11,
        latency_ms: (20, 100),
        steps: vec![
            Connect(1, 0),
            Connect(2, 1),
            Connect(3, 2),
            Connect(4, 3),
            Connect(5, 4),
            Connect(5, 0),
            Wait(300),
            Type(0),
            Wait(50),
            Partition(0b000111),
            Type(1),
            Type(4),
            Type(5),
            Wait(500),
            Heal,
        ],
    });
    assert_eq!((r.components, r.delivered_min(), r.typed), (1, 4, 4));
    assert!(r.breaks >= 2, "{r}");
}

/// A crashed client is left out; a restarted one starts empty and catches up, even on what
/// it typed before the crash (if that got out).
#[test]
fn crashed_clients_leave_and_restarted_ones_catch_up() {
    let r = run_ok(&Script {
        clients: 4,
        seed: 3,
        latency_ms: (5, 20),
        steps: vec![
            Connect(0, 1),
            Connect(1, 2),
            Connect(2, 3),
            Wait(100),
            Type(1),
            Wait(200),
            Crash(1),
            Type(0),
            Type(3),
            Wait(100),
            Restart(1),
            Connect(1, 3),
            Wait(10),
            Crash(2),
        ],
    });
    // Crashing 2 cuts 0 off from 1 and 3, but 0 learned their addresses while linked, so
    // the mesh dials them and the room is one again, holding all three strings (#0, typed
    // by 1 before its crash, had spread).
    assert_eq!((r.alive, r.components, r.delivered_min()), (3, 1, 3), "{r}");
}

/// Strings up to the maximum length, through a window smaller than one of them: writes
/// wait for room, nothing stalls, everything arrives.
#[test]
fn long_strings_through_a_small_window_arrive_without_stalling() {
    let script = Script {
        clients: 4,
        seed: 5,
        latency_ms: (30, 80),
        steps: vec![
            TypeLong(0),
            TypeLong(0),
            TypeLong(1),
            Connect(0, 1),
            Connect(1, 2),
            TypeLong(2),
            TypeLong(2),
            Wait(20),
            Connect(3, 0),
            Type(3),
        ],
    };
    let config = SimConfig {
        window: 4096,
        ..script.config()
    };
    let outcome = script.run_with(config);
    script.assert_ok(&outcome);
    assert_eq!(outcome.report.delivered_min(), 6);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let script = |seed| Script {
        clients: 6,
        seed,
        latency_ms: (1, 100),
        steps: vec![
            Connect(0, 1),
            Connect(2, 1),
            Connect(3, 2),
            Type(0),
            Connect(4, 0),
            Break(1),
            Type(3),
            Connect(5, 3),
            Wait(40),
            Partition(0b110),
            Type(2),
            Heal,
            Type(5),
        ],
    };
    let (a, b, c) = (script(9).run(), script(9).run(), script(10).run());
    assert!(a.is_ok() && c.is_ok());
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.report, b.report);
    assert_ne!(a.fingerprint, c.fingerprint);
}

/// The checks are not vacuous: a network that loses whole writes (which TCP never does)
/// is caught, and the failure names the seed and gives the script.
#[test]
fn a_network_that_loses_writes_is_caught() {
    let script = Script {
        clients: 5,
        seed: 1,
        latency_ms: (1, 10),
        steps: vec![
            Connect(0, 1),
            Connect(1, 2),
            Connect(2, 3),
            Connect(3, 4),
            Wait(50),
            Type(0),
            Type(4),
            Type(2),
        ],
    };
    // Every write that carries a string is lost: with five links each, rotation and
    // reconciliation on every new link now repair a network that loses only some of them.
    let outcome = script.run_with(SimConfig {
        fault: Some(Fault::DropSends { one_in: 1 }),
        ..script.config()
    });
    assert!(!outcome.is_ok());
    let failure = script.failure(&outcome);
    // Since protocol 3 the next record after a lost one fails to open, so the loss is
    // caught where it happens; strings may also go missing before that.
    assert!(
        failure.contains("lacks") || failure.contains("a record failed authentication"),
        "{failure}"
    );
    assert!(failure.contains("seed 0x1"), "{failure}");
    assert!(
        failure.contains("steps: vec![\n        Connect(0, 1),\n"),
        "{failure}"
    );
}

/// History larger than the in-flight budget goes out in batches as the peer reads it.
#[test]
fn history_larger_than_the_in_flight_budget_arrives_in_batches() {
    let mut sim = Sim::new(2, SimConfig::default());
    for _ in 0..12 {
        sim.type_line(0, true);
    }
    sim.connect(0, 1);
    assert!(sim.settle());
    assert!(sim.check().is_empty(), "{}", sim.violations());
    assert_eq!(sim.state(1).map(|s| s.messages().len()), Some(12));
    let r = sim.report();
    assert!(r.sends > 4, "more writes than the in-flight budget: {r}");
}

/// A client that restarts with a contact dials it (Output::Dial, carried out by the
/// simulator), is accepted, and catches up on everything said while it was down.
#[test]
fn a_restarted_client_dials_its_contact_and_catches_up() {
    let r = run_ok(&Script {
        clients: 4,
        seed: 21,
        latency_ms: (5, 40),
        steps: vec![
            Connect(1, 0),
            Connect(2, 1),
            Connect(3, 2),
            Wait(200),
            Type(3),
            Wait(50),
            Crash(3),
            Type(0),
            TypeLong(1),
            Wait(100),
            Rejoin(3, 0),
            Type(2),
        ],
    });
    // Its contact answers, so it is linked at once; the other dials are the mesh's (to the
    // crashed incarnation's address while it was down, and to fill the new one's links).
    assert!(r.dials >= 1, "{r}");
    assert_eq!((r.components, r.alive, r.typed), (1, 4, 4), "{r}");
    // The restarted client is new: it holds what its contact's component holds, which
    // includes its earlier self's string, which had spread.
    assert_eq!(r.delivered_min(), 4, "{r}");
}

/// A dial to an address where no client runs is refused; one across a partition times out;
/// either way the client hears DialFailed and carries on alone.
#[test]
fn dials_to_a_crashed_or_cut_off_client_fail() {
    let r = run_ok(&Script {
        clients: 4,
        seed: 22,
        latency_ms: (5, 40),
        steps: vec![
            Connect(0, 1),
            Wait(100),
            Crash(2),
            Rejoin(2, 3),
            Crash(3),
            Crash(2),
            Rejoin(2, 3),
            Partition(0b0011),
            Crash(0),
            Rejoin(0, 2),
            Type(0),
        ],
    });
    // At least the two rejoins fail: client 2 dials crashed 3, client 0 dials 2 across the
    // cut. The mesh's own dials to crashed addresses fail too and are not counted here.
    assert!(r.dials_failed >= 2 && r.dials >= 3, "{r}");
    let mut sim = Sim::new(2, SimConfig::default());
    sim.partition(vec![true, false]);
    sim.crash(0);
    sim.rejoin(0, 1);
    assert!(sim.settle());
    let timeout = SimConfig::default().dial_timeout;
    assert!(sim.now() >= timeout, "failed at {:?}", sim.now());
    assert!(sim.check().is_empty(), "{}", sim.violations());
    assert_eq!(sim.report().dials_failed, 1);
}

/// A connection to oneself and a second connection between two clients are closed on
/// purpose with a Bye, and the room works over what stays.
#[test]
fn self_and_duplicate_connections_are_closed_with_a_bye() {
    let r = run_ok(&Script {
        clients: 3,
        seed: 23,
        latency_ms: (1, 30),
        steps: vec![
            Type(0),
            Connect(0, 0),
            Connect(0, 1),
            Connect(1, 0),
            Connect(2, 1),
            Connect(1, 2),
            Wait(5),
            Type(1),
        ],
    });
    // One Bye for the self-connection and one per duplicate (two pairs dialed both ways),
    // each sent by both ends at most: at least 3. Three clients have at most three working
    // links, one per pair (the simulator checks no pair has two), whatever the mesh dials.
    assert!(r.links_up <= 3, "{r}");
    assert!(r.byes >= 3 && r.closed_on_purpose >= 3, "{r}");
    assert_eq!((r.components, r.delivered_min()), (1, 2), "{r}");
}

/// Links idle for three times the idle timeout are kept by keepalives, and nothing else
/// is sent.
#[test]
fn keepalives_keep_idle_links() {
    let mut sim = Sim::new(3, SimConfig::default());
    sim.connect(0, 1);
    sim.connect(2, 1);
    sim.type_line(2, false);
    assert!(sim.settle());
    // Each client once dials the address its inbound peer claims (issue 16: a claim is only
    // a hint until a dial proves it), which makes one duplicate per pair; then it knows.
    sim.advance(2 * SimConfig::default().flood.mesh.backoff_max);
    assert!(sim.settle());
    let before = sim.report();
    let idle = SimConfig::default().flood.idle_timeout;
    sim.advance(3 * idle);
    assert!(sim.settle());
    assert!(sim.check().is_empty(), "{}", sim.violations());
    let after = sim.report();
    // The mesh may add the link 0-2; whatever it built, idling keeps every link.
    assert!(before.links_up >= 2, "{before}");
    assert_eq!(after.link_sessions, before.link_sessions, "{after}");
    assert_eq!(
        (after.links_up, after.components),
        (before.links_up, 1),
        "{after}"
    );
    assert_eq!(after.frames, before.frames);
    // Each end of each link sends something at least once per idle timeout, or its peer
    // drops it: over three idle timeouts, three frames per end (Pings, or the mesh's Addrs).
    let idle_frames = after.pings + after.addrs_frames - before.pings - before.addrs_frames;
    assert!(idle_frames >= 2 * 3 * after.links_up as u64, "{after}");
}

/// A network that is not quiet within the event budget is reported, not waited for.
#[test]
fn a_network_that_never_goes_quiet_is_reported() {
    let mut sim = Sim::new(
        2,
        SimConfig {
            max_events: 10,
            ..SimConfig::default()
        },
    );
    sim.connect(0, 1);
    for _ in 0..5 {
        sim.type_line(0, true);
    }
    assert!(!sim.settle());
    let violations = sim.violations().to_string();
    assert!(
        violations.contains("not quiet after 10 events"),
        "{violations}"
    );
}

/// When one client dials another twice, both sides keep the older connection they saw, and
/// the room works over it.
#[test]
fn one_client_dialing_another_twice_keeps_one_link() {
    for seed in 0..40 {
        let mut sim = Sim::new(
            2,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        sim.open(0, 1);
        sim.open(0, 1);
        sim.type_line(0, false);
        assert!(sim.settle());
        assert!(sim.check().is_empty(), "seed {seed}: {}", sim.violations());
        assert_eq!(sim.report().links_up, 1, "seed {seed}");
    }
}

// ---- regressions found by the property tests and the fuzzer ----

/// Found by `sim_props::healed_partitions_and_late_joiners_converge_to_the_union` once issue
/// 16's rules met: addresses learned only as peers' claims of their own (the eclipse rules
/// verify an address only by our own dial) were held to the third-party rules (tested one at
/// a time, dropped after 20 s, never passed on), so after the heal no client knew anyone
/// across the cut: two components for good. A peer's claim of its own address is not a
/// third party's.
#[test]
fn claims_of_their_own_addresses_let_a_partition_heal() {
    let script = Script {
        clients: 7,
        seed: 7621796231685143519,
        latency_ms: (5, 100),
        steps: vec![
            Connect(1, 0),
            Connect(2, 1),
            Connect(3, 2),
            Connect(4, 3),
            Wait(200),
            Type(4),
            Wait(150),
            Partition(12206641454152305461),
            Type(3),
            Connect(5, 0),
            Wait(300),
            Heal,
            Connect(6, 4),
            Type(6),
        ],
    };
    let r = run_ok(&script);
    assert_eq!((r.components, r.delivered_min()), (1, r.typed));
}
