//! The setting of the well-known broadcast benchmark (Maelstrom's "efficient broadcast"):
//! 25 clients, 100 ms one-way latency on every link, 100 strings typed per second by
//! random clients for 20 s, without and then with network partitions. Prints, for each run,
//! convergence, messages per operation (frames, and writes, per typed string) and the
//! virtual latency from typing to the last client printing it; then the ratio of frames per
//! string with partitions to without.
//!
//! ```text
//! cargo run --release --features sim --example sim_broadcast
//! cargo run --release --features sim --example sim_broadcast -- --links 6
//! cargo run --release --features sim --example sim_broadcast -- --fixed --extra 5
//! ```
//!
//! Options: `--clients N` (25), `--links N` the mesh's target (the client's default,
//! `MeshConfig::default().links`, unless given), `--rate N` strings per
//! second (100), `--secs N` of typing (20), `--latency-ms N` (100), `--partition-every-ms N`
//! (4000) and `--partition-ms N` (1500): every period a random cut splits the clients, and
//! heals after the given time; `--no-partitions` (one run); `--seed N`.
//!
//! Clients join as the chat is used: one at a time, each through one random client already
//! in (`Input::Start { contact }`), and the mesh makes the rest of the graph; the room idles
//! 10 s before the typing starts. `--fixed` instead wires the joining tree plus `--extra N`
//! random links directly (the mesh still adds links of its own). A heal reconnects the pairs
//! the cut separated, as their drivers would; new links reconcile, so partitions cost only
//! what the two sides lack.

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::sim::{Report, Shape, Sim, SimConfig, SplitMix64, random_topology};

/// The broadcast-benchmark setting on the simulator.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 25)]
    clients: usize,
    /// The mesh's target of links per client (default: the client's, from `MeshConfig`).
    #[arg(long)]
    links: Option<usize>,
    /// Wire the joining tree (plus `--extra`) directly instead of joining through contacts.
    #[arg(long)]
    fixed: bool,
    /// With `--fixed`: extra links beyond the joining tree.
    #[arg(long, default_value_t = 0)]
    extra: usize,
    /// Strings typed per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of typing.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// One-way latency of every link.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// How often a random cut splits the clients.
    #[arg(long, default_value_t = 4000)]
    partition_every_ms: u64,
    /// How long each cut lasts.
    #[arg(long, default_value_t = 1500)]
    partition_ms: u64,
    /// Only the run without cuts.
    #[arg(long)]
    no_partitions: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    let mut failed = false;
    let calm = run(&args, false, &mut failed);
    if !args.no_partitions {
        let cut = run(&args, true, &mut failed);
        println!(
            "frames per typed string with partitions / without: {:.2} / {:.2} = {:.2}x",
            cut.frames_per_typed(),
            calm.frames_per_typed(),
            cut.frames_per_typed() / calm.frames_per_typed()
        );
    }
    if failed {
        std::process::exit(1);
    }
}

fn run(args: &Args, partitions: bool, failed: &mut bool) -> Report {
    let &Args {
        clients,
        links: target,
        fixed,
        extra,
        rate,
        secs,
        latency_ms,
        partition_every_ms: every_ms,
        partition_ms,
        seed,
        ..
    } = args;
    let started = Instant::now();
    let latency = Duration::from_millis(latency_ms);
    let mut config = SimConfig {
        seed,
        latency_min: latency,
        latency_max: latency,
        jitter: Duration::ZERO,
        ..SimConfig::default()
    };
    if let Some(links) = target {
        config.flood.mesh = floodchat::mesh::MeshConfig::with_links(links);
    }
    let mut rng = SplitMix64::new(seed ^ 0xb40a_dca5);
    let mut sim;
    if fixed {
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
    let ticks = secs * rate;
    let mut partitioned = false;
    let mut cuts = 0;
    for i in 0..ticks {
        let t = i * 1000 / rate.max(1);
        if partitions && every_ms > 0 {
            let phase = t % every_ms;
            if !partitioned && t >= every_ms && phase < partition_ms {
                let side = (0..clients).map(|_| rng.chance(1, 2)).collect();
                sim.partition(side);
                partitioned = true;
                cuts += 1;
            } else if partitioned && phase >= partition_ms {
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
    let mut r = sim.report();
    // Count what the typing cost, not the joins before it.
    r.frames -= before.frames;
    r.sends -= before.sends;
    r.bytes -= before.bytes;
    println!(
        "{}: clients {clients} ({}), before typing {} links, links per client min/median/max {:?}, diameter {}; latency {latency_ms} ms, {} strings at {rate}/s, partitions {cuts} (links broken {})",
        if partitions {
            "with partitions"
        } else {
            "without partitions"
        },
        if fixed {
            "fixed joining tree"
        } else {
            "joined through contacts"
        },
        shape.links,
        shape.degree,
        shape.diameter,
        r.typed,
        r.breaks
    );
    println!(
        "converged: {} (quiet {quiet}, {} violations, {} component(s), every client printed {}..={} of {})",
        violations.is_empty() && r.components == 1 && r.delivered_min() == r.typed,
        violations.len(),
        r.components,
        r.delivered_min(),
        r.delivered_max(),
        r.typed
    );
    print!("{violations}");
    println!(
        "messages per operation: {:.2} Text frames, {:.2} writes, {:.1} bytes; link sessions {}",
        r.frames_per_typed(),
        r.sends_per_typed(),
        r.bytes_per_typed(),
        r.link_sessions
    );
    println!(
        "besides Text: {} Byes ({} connections closed on purpose), {} Addrs, {} Pings, {} dials",
        r.byes, r.closed_on_purpose, r.addrs_frames, r.pings, r.dials
    );
    println!(
        "virtual latency typing -> last print: median {} ms, p99 {} ms, max {} ms",
        r.latency_median().as_millis(),
        r.latency_percentile(99.0).as_millis(),
        r.latency_max().as_millis()
    );
    println!(
        "simulation: {} events, wall {:.2?}",
        r.events,
        started.elapsed()
    );
    *failed |= !violations.is_empty();
    r
}
