//! Property test of the mesh alone: random joins, crashes, restarts and partitions that heal;
//! once churn stops, the running clients form one component.
//!
//! What is checked: the running clients' components by links equal their components by
//! knowledge (client a knows b's address, or b knows a's), as it is once the partition
//! healed and the dials in flight resolved. A client whose only contact was
//! unreachable and then crashed knows nobody running, and nobody knows it: no rule can bring
//! it in, and it stays a room of its own, as it would on a real network. Each join or restart
//! is given one second to complete before the next step.
//!
//! The clients are [`MeshNode`]s (the mesh alone) on the one simulator, so that each one's
//! address book can be read; a partition ends without reconnecting anything.
//!
//! More cases: `PROPTEST_CASES=2000 cargo test --release --features sim --test mesh_props`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use floodchat::sim::{Components, MeshNode, Shape, Sim, SimConfig, SplitMix64, client_addr};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A new client joins through a random running one; one second passes.
    Join,
    /// The `k`-th running client crashes (mod their number), if more than one runs.
    Crash(usize),
    /// The `k`-th crashed client restarts through a random running one; one second passes.
    Restart(usize),
    /// Clients split by bit `i % 8` of `mask`.
    Partition(u8),
    /// The partition ends.
    Heal,
    /// Time passes.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Join),
        2 => any::<usize>().prop_map(Op::Crash),
        1 => any::<usize>().prop_map(Op::Restart),
        1 => any::<u8>().prop_map(Op::Partition),
        1 => Just(Op::Heal),
        3 => (0u64..60_000).prop_map(Op::Advance),
    ]
}

/// The running clients.
fn alive(sim: &Sim<MeshNode>) -> Vec<usize> {
    (0..sim.clients()).filter(|&c| sim.is_alive(c)).collect()
}

/// How many components the running clients form if every known address were a link.
fn knowledge_components(sim: &Sim<MeshNode>) -> usize {
    let alive = alive(sim);
    let mut known = Vec::new();
    for &a in &alive {
        let mesh = sim.state(a).expect("running").mesh();
        for &b in &alive {
            if mesh.knows(client_addr(b)) {
                known.push([a, b]);
            }
        }
    }
    let mut forest = Components::new(sim.clients(), known);
    let mut roots: Vec<usize> = alive.iter().map(|&a| forest.of(a)).collect();
    roots.sort();
    roots.dedup();
    roots.len()
}

/// A random running client, if any.
fn random_alive(sim: &Sim<MeshNode>, rng: &mut SplitMix64) -> Option<usize> {
    let alive = alive(sim);
    (!alive.is_empty()).then(|| alive[rng.index(alive.len())])
}

/// Runs in steps of `step` until the running clients form one component, at most for
/// `limit`; the virtual time it took, or `None`.
fn time_to_one_component(
    sim: &mut Sim<MeshNode>,
    step: Duration,
    limit: Duration,
) -> Option<Duration> {
    let start = sim.now();
    while Shape::of(sim).components > 1 {
        if sim.now() - start >= limit {
            return None;
        }
        sim.advance(step);
    }
    Some(sim.now() - start)
}

static CASES: AtomicUsize = AtomicUsize::new(0);
static SPLIT_BY_KNOWLEDGE: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn survivors_form_one_component_once_churn_stops(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let latency = Duration::from_millis(20);
        let config = SimConfig {
            seed,
            latency_min: latency,
            latency_max: latency,
            jitter: Duration::ZERO,
            ..SimConfig::default()
        };
        let mut sim = Sim::<MeshNode>::start(0, config);
        let mut rng = SplitMix64::new(seed);
        sim.join(None);
        for op in &ops {
            match *op {
                Op::Join => {
                    let c = random_alive(&sim, &mut rng);
                    sim.join(c);
                    sim.advance(Duration::from_secs(1));
                }
                Op::Crash(k) => {
                    let alive = alive(&sim);
                    if alive.len() > 1 {
                        sim.crash(alive[k % alive.len()]);
                    }
                }
                Op::Restart(k) => {
                    let dead: Vec<usize> = (0..sim.clients()).filter(|&i| !sim.is_alive(i)).collect();
                    if !dead.is_empty() {
                        let c = dead[k % dead.len()];
                        match random_alive(&sim, &mut rng) {
                            Some(via) => sim.rejoin(c, via),
                            None => sim.restart(c),
                        };
                        sim.advance(Duration::from_secs(1));
                    }
                }
                Op::Partition(mask) => {
                    let side = (0..sim.clients()).map(|i| (mask >> (i % 8)) & 1 == 1).collect();
                    sim.partition(side);
                }
                Op::Heal => sim.heal(),
                Op::Advance(ms) => sim.advance(Duration::from_millis(ms)),
            }
        }
        sim.heal();
        // Dials in flight across the partition fail and are forgotten: let them resolve.
        sim.advance(Duration::from_secs(10));
        let want = knowledge_components(&sim);
        let healed = time_to_one_component(&mut sim, Duration::from_secs(1), Duration::from_secs(1200));
        let n = CASES.fetch_add(1, Ordering::Relaxed) + 1;
        if want > 1 {
            SPLIT_BY_KNOWLEDGE.fetch_add(1, Ordering::Relaxed);
        } else {
            prop_assert!(healed.is_some());
        }
        if n % 100 == 0 {
            let split = SPLIT_BY_KNOWLEDGE.load(Ordering::Relaxed);
            eprintln!("mesh_props: {n} cases so far, {split} with clients that know nobody running");
        }
        prop_assert!(sim.violations().is_empty(), "{}", sim.violations());
        let got = Shape::of(&sim).components;
        prop_assert_eq!(got, want, "components by links vs by knowledge");
    }
}
