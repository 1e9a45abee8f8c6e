//! Whole-room scenarios shared by the tests and the examples.

use std::time::Duration;

use super::network::Sim;
use super::node::Node;
use super::shape::Shape;
use crate::rng::SplitMix64;

/// What [`join_then_crash`] measured.
#[derive(Debug, Clone)]
pub struct JoinCrash {
    /// The graph once the joins settled.
    pub joined: Shape,
    /// Clients crashed at once.
    pub crashed: usize,
    /// Virtual time from the crash until the survivors formed one component, if they did.
    pub heal_time: Option<Duration>,
    /// Virtual time from the crash until every survivor had `target` links again, if it did.
    pub refill_time: Option<Duration>,
    /// The graph once every string typed after the crash was delivered.
    pub healed: Shape,
    /// Strings typed by survivors after the heal.
    pub typed_after: usize,
    /// Of those, how many every survivor printed.
    pub reached_every_survivor: usize,
    /// Dials the clients asked for, over the whole run.
    pub dials: u64,
    /// Broken promises of the whole run (empty if none).
    pub violations: Vec<String>,
}

/// On `sim` (empty; whole clients, or [`MeshNode`](super::MeshNode)s for the mesh alone),
/// `clients` clients join one at a time, `gap` apart, each through one random client already
/// running (`Input::Start { contact }`); the room idles for `settle`; then `crash_percent` of
/// them crash at once; the survivors are watched every second (at most `limit`) until they
/// form one component and each has its target of links again; then `typed_after` strings
/// are typed by random survivors (none on mesh nodes, which hold no room) and the network
/// settles.
pub fn join_then_crash<N: Node>(
    mut sim: Sim<N>,
    clients: usize,
    gap: Duration,
    settle: Duration,
    crash_percent: usize,
    typed_after: usize,
    limit: Duration,
) -> JoinCrash {
    let target = sim.config().flood.mesh.links;
    let mut rng = SplitMix64::new(sim.config().seed ^ 0x101e_c4a5);
    for c in 0..clients {
        let via = (c > 0).then(|| rng.index(c));
        sim.join(via);
        sim.advance(gap);
    }
    sim.advance(settle);
    let joined = Shape::of(&sim);
    let mut order: Vec<usize> = (0..clients).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.index(i + 1));
    }
    let crashed = clients * crash_percent / 100;
    for &c in &order[..crashed] {
        sim.crash(c);
    }
    let (mut heal_time, mut refill_time) = (None, None);
    let mut waited = Duration::ZERO;
    while waited < limit {
        let shape = Shape::of(&sim);
        if shape.components <= 1 && heal_time.is_none() {
            heal_time = Some(waited);
        }
        if shape.degree[0] >= target && refill_time.is_none() {
            refill_time = Some(waited);
        }
        if heal_time.is_some() && refill_time.is_some() {
            break;
        }
        sim.advance(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    let survivors = &order[crashed..];
    let first = sim.typed();
    for _ in 0..typed_after {
        sim.type_line(survivors[rng.index(survivors.len())], false);
        sim.advance(Duration::from_millis(10));
    }
    sim.settle();
    let violations = sim.check().iter().map(str::to_string).collect();
    let report = sim.report();
    let reached_every_survivor = report.prints[first..]
        .iter()
        .filter(|&&p| p as usize == survivors.len())
        .count();
    JoinCrash {
        joined,
        crashed,
        heal_time,
        refill_time,
        healed: Shape::of(&sim),
        typed_after,
        reached_every_survivor,
        dials: report.dials,
        violations,
    }
}
