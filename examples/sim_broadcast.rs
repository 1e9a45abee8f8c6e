//! The setting of the well-known broadcast benchmark (Maelstrom's "efficient broadcast"):
//! 25 clients, 100 ms one-way latency on every link, 100 strings typed per second by
//! random clients for 20 s, and network partitions during the run. Prints convergence,
//! messages per operation (frames, and writes, per typed string) and the virtual latency
//! from typing to the last client printing it.
//!
//! ```text
//! cargo run --release --example sim_broadcast                      # tree, partitions
//! cargo run --release --example sim_broadcast -- --extra 5
//! cargo run --release --example sim_broadcast -- --no-partitions
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

use floodchat::sim::{Sim, SimConfig, SplitMix64, random_topology};

fn main() {
    let mut clients = 25usize;
    let mut extra = 0usize;
    let mut rate = 100u64;
    let mut secs = 20u64;
    let mut latency_ms = 100u64;
    let mut every_ms = 4000u64;
    let mut partition_ms = 1500u64;
    let mut partitions = true;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-partitions" {
            partitions = false;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad {flag}"))
        };
        match flag.as_str() {
            "--clients" => clients = num() as usize,
            "--extra" => extra = num() as usize,
            "--rate" => rate = num(),
            "--secs" => secs = num(),
            "--latency-ms" => latency_ms = num(),
            "--partition-every-ms" => every_ms = num(),
            "--partition-ms" => partition_ms = num(),
            "--seed" => seed = num(),
            _ => panic!("unknown option {flag}"),
        }
    }
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
        "messages per operation: {:.2} frames, {:.2} writes, {:.1} bytes; link sessions {}",
        r.frames_per_typed(),
        r.sends_per_typed(),
        r.bytes_per_typed(),
        r.link_sessions
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
