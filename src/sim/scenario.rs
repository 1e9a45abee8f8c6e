//! Whole-room scenarios shared by the tests and the examples.

use std::time::Duration;

use super::network::{Sim, SimConfig};
use super::node::Node;
use super::report::{Report, Violations};
use super::script::random_topology;
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

/// The setting of [`join_then_crash`].
#[derive(Debug, Clone)]
pub struct JoinThenCrash {
    /// Clients that join.
    pub clients: usize,
    /// Virtual time between two joins.
    pub gap: Duration,
    /// How long the room idles after the last join.
    pub settle: Duration,
    /// Percent of the clients that crash at once.
    pub crash_percent: usize,
    /// Strings typed by survivors once they are one component again.
    pub typed_after: usize,
    /// How long the survivors are watched before they count as split.
    pub limit: Duration,
}

impl Default for JoinThenCrash {
    /// 1,000 clients, one every 100 ms, 60 s to settle, 30% crash, then 50 strings; 600 s
    /// of watching at most.
    fn default() -> Self {
        Self {
            clients: 1000,
            gap: Duration::from_millis(100),
            settle: Duration::from_secs(60),
            crash_percent: 30,
            typed_after: 50,
            limit: Duration::from_secs(600),
        }
    }
}

/// On `sim` (empty; whole clients, or [`MeshNode`](super::MeshNode)s for the mesh alone),
/// `clients` clients join one at a time, `gap` apart, each through one random client already
/// running (`Input::Start { contact }`); the room idles for `settle`; then `crash_percent` of
/// them crash at once; the survivors are watched every second (at most `limit`) until they
/// form one component and each has its target of links again; then `typed_after` strings
/// are typed by random survivors (give none to mesh nodes, which hold no room) and the
/// network settles.
pub fn join_then_crash<N: Node>(mut sim: Sim<N>, setting: &JoinThenCrash) -> JoinCrash {
    let &JoinThenCrash {
        clients,
        gap,
        settle,
        crash_percent,
        typed_after,
        limit,
    } = setting;
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

/// The setting of the well-known broadcast benchmark (Maelstrom's "efficient broadcast"),
/// as the parameters of [`broadcast`].
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// Clients.
    pub clients: usize,
    /// One-way latency of every link (no jitter).
    pub latency: Duration,
    /// Wire the joining tree plus this many random links directly, instead of letting the
    /// clients join through contacts (the mesh still adds links of its own).
    pub fixed: Option<usize>,
    /// Strings typed per second, each by a random client.
    pub rate: u64,
    /// Seconds of typing.
    pub secs: u64,
    /// Every `.0` a random cut splits the clients, healed after `.1`; `None`: no cuts.
    pub partitions: Option<(Duration, Duration)>,
}

impl Broadcast {
    /// The benchmark's cuts: every 4 s, for 1.5 s.
    pub const CUTS: (Duration, Duration) = (Duration::from_secs(4), Duration::from_millis(1500));
}

impl Default for Broadcast {
    /// 25 clients joined through contacts over links of 100 ms, 100 strings a second for
    /// 20 s, no cuts.
    fn default() -> Self {
        Self {
            clients: 25,
            latency: Duration::from_millis(100),
            fixed: None,
            rate: 100,
            secs: 20,
            partitions: None,
        }
    }
}

/// What [`broadcast`] measured.
#[derive(Debug, Clone)]
pub struct BroadcastRun {
    /// The graph once the room idled, before the typing.
    pub shape: Shape,
    /// Cuts made.
    pub cuts: usize,
    /// Whether the network went quiet at the end.
    pub quiet: bool,
    /// Broken promises of the whole run (empty if none).
    pub violations: Violations,
    /// The figures of the run, with the frames, writes and bytes of the joins before the
    /// typing taken out.
    pub report: Report,
}

/// Runs `setting` on whole clients of `config` (its seed and client configuration; the
/// setting fixes the latency): the clients join (one every 50 ms, each
/// through a random client already in, unless `fixed`), the room idles 10 s, then strings
/// are typed at `rate` for `secs`, with cuts if asked; a heal reconnects nothing (the meshes
/// dial across again, see [`Sim::heal`]). Then the network settles and is checked.
pub fn broadcast(config: SimConfig, setting: &Broadcast) -> BroadcastRun {
    let &Broadcast {
        clients,
        latency,
        fixed,
        rate,
        secs,
        partitions,
    } = setting;
    let config = SimConfig {
        latency_min: latency,
        latency_max: latency,
        jitter: Duration::ZERO,
        ..config
    };
    let seed = config.seed;
    let mut rng = SplitMix64::new(seed ^ 0xb40a_dca5);
    let mut sim;
    if let Some(extra) = fixed {
        sim = Sim::new(clients, config);
        for (a, b) in random_topology(clients, extra, seed) {
            sim.connect(a, b);
        }
    } else {
        sim = Sim::new(0, config);
        for c in 0..clients {
            sim.join((c > 0).then(|| rng.index(c)));
            sim.advance(Duration::from_millis(50));
        }
    }
    sim.advance(Duration::from_secs(10));
    let shape = Shape::of(&sim);
    let before = sim.report();
    let tick = Duration::from_millis(1000 / rate.max(1));
    let (every_ms, cut_ms) = partitions.map_or((0, 0), |(every, cut)| {
        (every.as_millis() as u64, cut.as_millis() as u64)
    });
    let mut partitioned = false;
    let mut cuts = 0;
    for i in 0..secs * rate {
        let t = i * 1000 / rate.max(1);
        if every_ms > 0 {
            let phase = t % every_ms;
            if !partitioned && t >= every_ms && phase < cut_ms {
                let side = (0..clients).map(|_| rng.chance(1, 2)).collect();
                sim.partition(side);
                partitioned = true;
                cuts += 1;
            } else if partitioned && phase >= cut_ms {
                sim.heal();
                partitioned = false;
            }
        }
        sim.type_line(rng.index(clients), false);
        sim.advance(tick);
    }
    if partitioned {
        sim.heal();
    }
    let quiet = sim.settle();
    let violations = sim.check().clone();
    let mut report = sim.report();
    report.frames -= before.frames;
    report.sends -= before.sends;
    report.bytes -= before.bytes;
    BroadcastRun {
        shape,
        cuts,
        quiet,
        violations,
        report,
    }
}
