//! Whole clients on the simulator, the mesh making the links: joins through a contact, a
//! crash of many at once, and random churn that stops. Full-size figures:
//! `cargo run --release --features sim --example sim_join_crash`.

use std::cell::Cell;
use std::time::Duration;

use floodchat::FloodState;
use floodchat::sim::{
    Components, JoinThenCrash, MeshNode, Node, Shape, Sim, SimConfig, SplitMix64, join_then_crash,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// `clients` clients of kind `N` join one every 100 ms over links of 1 to 50 ms (or
/// `latency`), settle 30 s, and 30% crash at once, then `typed` strings are typed: the joined graph is one component within
/// the limits, and the survivors are one component, back at their target, each with every
/// string typed afterwards.
fn join_then_crash_holds<N: Node>(
    clients: usize,
    latency: Option<Duration>,
    seed: u64,
    typed: usize,
) {
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    if let Some(latency) = latency {
        (config.latency_min, config.latency_max) = (latency, latency);
    }
    let mesh = config.flood.mesh.clone();
    let setting = JoinThenCrash {
        clients,
        settle: Duration::from_secs(30),
        typed_after: typed,
        limit: Duration::from_secs(300),
        ..JoinThenCrash::default()
    };
    let r = join_then_crash(Sim::<N>::start(0, config), &setting);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.joined.components, 1, "{r:?}");
    // Each client dials up to its target and accepts at most max_inbound more.
    assert!(r.joined.degree[0] >= mesh.links, "{r:?}");
    assert!(r.joined.degree[2] <= mesh.links + mesh.max_inbound, "{r:?}");
    assert!(r.joined.max_inbound <= mesh.max_inbound, "{r:?}");
    assert!(r.joined.diameter >= 2, "{r:?}");
    assert_eq!(r.crashed, clients * 30 / 100);
    assert!(r.heal_time.is_some() && r.refill_time.is_some(), "{r:?}");
    assert_eq!(r.healed.components, 1, "{r:?}");
    assert_eq!(r.healed.clients, clients - r.crashed, "{r:?}");
    assert_eq!(r.reached_every_survivor, r.typed_after, "{r:?}");
}

#[test]
fn joined_clients_stay_within_the_limits_and_heal_after_a_crash() {
    join_then_crash_holds::<FloodState>(120, None, 3, 10);
}

/// The mesh alone, at a larger size than whole clients allow in `cargo test`.
#[test]
fn joined_meshes_stay_within_the_limits_and_heal_after_a_crash() {
    join_then_crash_holds::<MeshNode>(150, Some(Duration::from_millis(10)), 1, 0);
}

/// A partition that ends without any reconnection by the simulator: the meshes find each
/// other again from their address books.
#[test]
fn meshes_cut_apart_become_one_component_again_on_their_own() {
    let mut sim = Sim::<MeshNode>::start(
        0,
        SimConfig {
            seed: 3,
            ..SimConfig::default()
        },
    );
    let mut rng = SplitMix64::new(3);
    for c in 0..40 {
        sim.join((c > 0).then(|| rng.index(c)));
        sim.advance(Duration::from_millis(100));
    }
    sim.advance(Duration::from_secs(10));
    sim.partition((0..40).map(|c| c % 2 == 0).collect());
    sim.advance(Duration::from_secs(60));
    assert!(
        Shape::of(&sim).components >= 2,
        "the partition splits the room"
    );
    sim.heal();
    let mut waited = 0;
    while Shape::of(&sim).components > 1 && waited < 600 {
        sim.advance(Duration::from_secs(1));
        waited += 1;
    }
    assert_eq!(
        Shape::of(&sim).components,
        1,
        "still split after {waited} s"
    );
    assert!(sim.violations().is_empty(), "{}", sim.violations());
}

/// A proptest configuration of `cases` cases (or `PROPTEST_CASES`) from a fixed seed (or
/// `PROPTEST_RNG_SEED`), and the number of cases.
fn runner_config(cases: u32, seed: u64) -> (Config, u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut config = Config::with_cases(cases);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config.failure_persistence = None;
    (config, cases)
}

#[derive(Debug, Clone, Copy)]
enum Churn {
    Join(u32),
    Type(u32),
    Crash(u32),
    Rejoin(u32, u32),
    Partition(u64),
    Heal,
    Wait(u16),
}

fn churn() -> impl Strategy<Value = Churn> {
    prop_oneof![
        3 => any::<u32>().prop_map(Churn::Join),
        4 => any::<u32>().prop_map(Churn::Type),
        1 => any::<u32>().prop_map(Churn::Crash),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Churn::Rejoin(a, b)),
        1 => any::<u64>().prop_map(Churn::Partition),
        1 => Just(Churn::Heal),
        3 => (0u16..3000).prop_map(Churn::Wait),
    ]
}

/// Random joins (each through a running client), typing, crashes, rejoins through a running
/// client and partitions that heal; then churn stops, and after the mesh had time: the
/// survivors whose contacts link them all (so each knows an address of another's part) form
/// one component, and hold the same set, which holds everything typed in it (the simulator's
/// check).
#[test]
fn after_churn_the_survivors_form_one_room_with_the_union() {
    let (config, cases) = runner_config(40, 0xC4_0C4);
    let (ran, one_room, crashes) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u64));
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &(any::<u64>(), proptest::collection::vec(churn(), 1..40)),
        |(seed, steps)| {
            ran.set(ran.get() + 1);
            let mut sim = Sim::new(
                1,
                SimConfig {
                    seed,
                    ..SimConfig::default()
                },
            );
            // Who each client (incarnation) joined through.
            let mut contact: Vec<Option<usize>> = vec![None];
            let running = |sim: &Sim| -> Vec<usize> {
                (0..sim.clients()).filter(|&c| sim.is_alive(c)).collect()
            };
            let mut cut = false;
            for step in &steps {
                let alive = running(&sim);
                let pick = |k: u32, from: &[usize]| from[k as usize % from.len()];
                match *step {
                    Churn::Join(k) if sim.clients() < 12 && !alive.is_empty() => {
                        let via = pick(k, &alive);
                        sim.join(Some(via));
                        contact.push(Some(via));
                    }
                    Churn::Type(k) if !alive.is_empty() => {
                        sim.type_line(pick(k, &alive), false);
                    }
                    Churn::Crash(k) if alive.len() > 1 => {
                        sim.crash(pick(k, &alive));
                    }
                    Churn::Rejoin(k, v) if !alive.is_empty() => {
                        let dead: Vec<usize> =
                            (0..sim.clients()).filter(|&c| !sim.is_alive(c)).collect();
                        if !dead.is_empty() {
                            let (c, via) = (pick(k, &dead), pick(v, &alive));
                            sim.rejoin(c, via);
                            contact[c] = Some(via);
                        }
                    }
                    Churn::Partition(mask) if !cut => {
                        let side = (0..sim.clients())
                            .map(|c| mask >> (c % 64) & 1 == 1)
                            .collect();
                        sim.partition(side);
                        cut = true;
                    }
                    Churn::Heal => {
                        sim.heal();
                        cut = false;
                    }
                    Churn::Wait(ms) => sim.advance(Duration::from_millis(ms.into())),
                    _ => {}
                }
            }
            sim.heal();
            // Churn stops: rotation dials a random known address every 30 s or so.
            sim.advance(Duration::from_secs(180));
            prop_assert!(sim.settle(), "{}", sim.violations());
            let violations = sim.check().clone();
            prop_assert!(violations.is_empty(), "seed {seed} {steps:?}\n{violations}");
            let alive = running(&sim);
            let known = alive
                .iter()
                .filter_map(|&c| contact[c].filter(|&v| sim.is_alive(v)).map(|v| [c, v]));
            let mut by_contact = Components::new(sim.clients(), known);
            let mut roots: Vec<usize> = alive.iter().map(|&c| by_contact.of(c)).collect();
            roots.sort_unstable();
            roots.dedup();
            crashes.set(crashes.get() + sim.report().crashes);
            if roots.len() == 1 {
                one_room.set(one_room.get() + 1);
                let shape = Shape::of(&sim);
                prop_assert_eq!(shape.components, 1, "seed {} {:?}", seed, steps);
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let (ran, one_room, crashes) = (ran.get(), one_room.get(), crashes.get());
    eprintln!(
        "{ran} cases ran, {one_room} with survivors linked by their contacts (one component \
         asserted), {crashes} crashes"
    );
    assert!(ran >= cases && one_room * 2 >= cases, "{ran} {one_room}");
}

/// The heal test's race, for any seed and latency: in a chain a–b–c of clients that keep one
/// link each, b dies; a and c both hold the other's address and may dial each other at once,
/// and one of the two connections is then closed as a duplicate. Whatever the order, a and c
/// end up linked, and neither tells its user "no links" about the moment it announced the
/// other (the simulator checks every notice against `NoticeCheck`).
#[test]
fn simultaneous_dials_after_a_death_never_contradict_the_notices() {
    let (config, _) = runner_config(200, 0x51_D1A1);
    let simultaneous = Cell::new(0u32);
    let mut runner = TestRunner::new(config);
    // Equal latencies make both survivors hear of the death at once, and dial at once.
    let spread = prop_oneof![Just(0u64), 0u64..50];
    // Jitter delays each write on its own, as a busy receiver reads two sockets in any
    // order: a Bye on one connection may overtake a Hello sent earlier on the other.
    let strategy = (any::<u64>(), 0u64..200, spread, 0u64..3, 0u64..300);
    let result = runner.run(&strategy, |(seed, lo, spread, crash_at, jitter)| {
        let flood = floodchat::Config {
            mesh: floodchat::MeshConfig::with_links(1),
            ..floodchat::Config::default()
        };
        let config = SimConfig {
            seed,
            latency_min: Duration::from_millis(lo),
            latency_max: Duration::from_millis(lo + spread),
            jitter: Duration::from_millis(jitter),
            flood,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(0, config);
        let a = sim.join(None);
        let b = sim.join(Some(a));
        sim.advance(Duration::from_secs(1));
        let c = sim.join(Some(b));
        sim.advance(Duration::from_secs(2) + Duration::from_millis(crash_at * 7));
        let closed = sim.report().closed_on_purpose;
        sim.crash(b);
        sim.advance(Duration::from_secs(20));
        // A connection closed on purpose after the death: the duplicate, when both dials met.
        let race = sim.report().closed_on_purpose > closed;
        let linked = sim
            .graph()
            .iter()
            .any(|&[x, y]| [x, y] == [a, c] || [x, y] == [c, a]);
        let violations = sim.check().clone();
        prop_assert!(violations.is_empty(), "seed {seed:#x}: {violations:?}");
        prop_assert!(
            linked,
            "seed {seed:#x}: a and c are not linked: {:?}",
            sim.graph()
        );
        if race {
            simultaneous.set(simultaneous.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let raced = simultaneous.get();
    eprintln!("runs where both survivors' connections met: {raced}");
    assert!(raced > 0, "no run raced: the property was not exercised");
}
