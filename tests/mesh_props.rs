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
//! More cases: `PROPTEST_CASES=2000 cargo test --release --test mesh_props`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use floodchat::mesh::MeshConfig;
use floodchat::mesh::sim::{MeshSim, client_addr};
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

/// How many components the running clients form if every known address were a link.
fn knowledge_components(sim: &MeshSim) -> usize {
    let alive = sim.alive();
    let mut root: Vec<usize> = (0..sim.len()).collect();
    fn find(root: &mut [usize], mut x: usize) -> usize {
        while root[x] != x {
            root[x] = root[root[x]];
            x = root[x];
        }
        x
    }
    for &a in &alive {
        let mesh = sim.mesh(a).expect("running");
        for &b in &alive {
            if mesh.knows(client_addr(b)) {
                let (ra, rb) = (find(&mut root, a), find(&mut root, b));
                root[ra] = rb;
            }
        }
    }
    let mut roots: Vec<usize> = alive.iter().map(|&a| find(&mut root, a)).collect();
    roots.sort();
    roots.dedup();
    roots.len()
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
        let mut sim = MeshSim::new(MeshConfig::default(), seed);
        sim.latency = Duration::from_millis(20);
        sim.join(None);
        for op in &ops {
            match *op {
                Op::Join => {
                    let c = sim.random_alive();
                    sim.join(c);
                    sim.run_for(Duration::from_secs(1));
                }
                Op::Crash(k) => {
                    let alive = sim.alive();
                    if alive.len() > 1 {
                        sim.crash(alive[k % alive.len()]);
                    }
                }
                Op::Restart(k) => {
                    let dead: Vec<usize> = (0..sim.len()).filter(|&i| !sim.is_alive(i)).collect();
                    if !dead.is_empty() {
                        let c = sim.random_alive();
                        sim.restart(dead[k % dead.len()], c);
                        sim.run_for(Duration::from_secs(1));
                    }
                }
                Op::Partition(mask) => sim.partition(move |i| (mask >> (i % 8)) & 1),
                Op::Heal => sim.heal(),
                Op::Advance(ms) => sim.run_for(Duration::from_millis(ms)),
            }
        }
        sim.heal();
        // Dials in flight across the partition fail and are forgotten: let them resolve.
        sim.run_for(Duration::from_secs(10));
        let want = knowledge_components(&sim);
        let healed = sim.time_to_one_component(Duration::from_secs(1), Duration::from_secs(1200));
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
        let got = sim.components().len();
        prop_assert_eq!(got, want, "components by links vs by knowledge");
    }
}
