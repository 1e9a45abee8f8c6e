//! The setting of the well-known broadcast benchmark (Maelstrom's "efficient broadcast"):
//! 25 clients, 100 ms one-way latency on every link, 100 strings typed per second by
//! random clients for 20 s, and network partitions during the run. Prints convergence,
//! messages per operation (frames, and writes, per typed string) and the virtual latency
//! from typing to the last client printing it.
//!
//! ```text
//! cargo run --release --features sim --example sim_broadcast   # tree, partitions
//! cargo run --release --features sim --example sim_broadcast -- --extra 5
//! cargo run --release --features sim --example sim_broadcast -- --no-partitions
//! ```
//!
//! Options: `--clients N` (25), `--extra N` extra links beyond the joining tree (0),
//! `--rate N` strings per second (100), `--secs N` of typing (20), `--latency-ms N` (100),
//! `--partition-every-ms N` (4000) and `--partition-ms N` (1500): every period a random
//! cut splits the clients, and heals after the given time; `--no-partitions`; `--seed N`.
//!
//! The joining tree is what the chat builds (each client joins through one that is in);
//! a heal makes new links, which exchange their whole history (history on connect), so
//! partitions cost frames: the figure counts those too.

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::sim::{Sim, SimConfig, SplitMix64, random_topology};

/// The broadcast-benchmark setting on the simulator.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 25)]
    clients: usize,
    /// Extra links beyond the joining tree.
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
    /// No cuts at all.
    #[arg(long)]
    no_partitions: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let Args {
        clients,
        extra,
        rate,
        secs,
        latency_ms,
        partition_every_ms: every_ms,
        partition_ms,
        no_partitions,
        seed,
    } = Args::parse();
    let partitions = !no_partitions;
    let started = Instant::now();
    let latency = Duration::from_millis(latency_ms);
    let mut sim = Sim::new(
        clients,
        SimConfig {
            seed,
            latency_min: latency,
            latency_max: latency,
            jitter: Duration::ZERO,
            ..SimConfig::default()
        },
    );
    let links = random_topology(clients, extra, seed);
    for &(a, b) in &links {
        sim.connect(a, b);
    }
    sim.advance(Duration::from_secs(1));
    let mut rng = SplitMix64::new(seed ^ 0xb40a_dca5);
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
    let r = sim.report();
    println!(
        "clients {clients}, links {} (tree + {extra} extra), latency {latency_ms} ms, {} strings at {rate}/s, partitions {cuts} (links broken {})",
        links.len(),
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
    if !violations.is_empty() {
        std::process::exit(1);
    }
}
