//! The simulator at scale: clients join one at a time, each through one random client
//! already in (as the chat is used), plus a few extra links; then strings are typed by
//! random clients, and the network settles. Prints convergence, messages per typed string,
//! virtual latency, and the wall time and peak memory of the simulation itself.
//!
//! ```text
//! cargo run --release --example sim_scale -- --clients 1000
//! cargo run --release --example sim_scale -- --clients 10000 --extra 20 --strings 100
//! ```
//!
//! Options: `--clients N` (1000), `--extra N` extra links (0), `--strings N` typed (100),
//! `--gap-ms N` between two typings (10), `--latency-ms LO,HI` per link (10,100),
//! `--seed N` (1).

use std::time::{Duration, Instant};

use floodchat::sim::{Sim, SimConfig, SplitMix64, random_topology};

fn main() {
    let mut clients = 1000usize;
    let mut extra = 0usize;
    let mut strings = 100usize;
    let mut gap_ms = 10u64;
    let mut latency = (10u64, 100u64);
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
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
            "--strings" => strings = num() as usize,
            "--gap-ms" => gap_ms = num(),
            "--seed" => seed = num(),
            "--latency-ms" => {
                let (lo, hi) = value.split_once(',').expect("--latency-ms LO,HI");
                latency = (lo.parse().expect("LO"), hi.parse().expect("HI"));
            }
            _ => panic!("unknown option {flag}"),
        }
    }
    let started = Instant::now();
    let config = SimConfig {
        seed,
        latency_min: Duration::from_millis(latency.0),
        latency_max: Duration::from_millis(latency.1),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(clients, config);
    let links = random_topology(clients, extra, seed);
    for &(a, b) in &links {
        sim.connect(a, b);
    }
    sim.advance(Duration::from_secs(1));
    let mut rng = SplitMix64::new(seed ^ 0x7e57);
    for _ in 0..strings {
        sim.type_line(rng.index(clients), false);
        sim.advance(Duration::from_millis(gap_ms));
    }
    let quiet = sim.settle();
    let violations = sim.check().clone();
    let report = sim.report();
    let wall = started.elapsed();
    let tree_cost = 2 * links.len() - (clients - 1);
    println!(
        "clients {clients}, links {} ({} joins + {extra} extra), strings {strings}, seed {seed}",
        links.len(),
        clients - 1
    );
    println!(
        "converged: {} (quiet {quiet}, {} violations, {} component(s), every client printed {}..={} of {})",
        violations.is_empty() && report.components == 1 && report.delivered_min() == strings,
        violations.len(),
        report.components,
        report.delivered_min(),
        report.delivered_max(),
        report.typed
    );
    print!("{violations}");
    println!(
        "frames per typed string {:.2} (2L - (n-1) = {tree_cost}; bound 2L = {}), writes {:.2}, bytes {:.1}",
        report.frames_per_typed(),
        2 * links.len(),
        report.sends_per_typed(),
        report.bytes_per_typed()
    );
    println!(
        "virtual latency typing -> last print: median {:.1?}, p99 {:.1?}, max {:.1?}",
        report.latency_median(),
        report.latency_percentile(99.0),
        report.latency_max()
    );
    println!(
        "simulation: {} events, {} inputs, wall {:.2?}, peak RSS {}",
        report.events,
        report.inputs,
        wall,
        peak_rss()
    );
    if !violations.is_empty() {
        std::process::exit(1);
    }
}

/// The process's peak resident memory, from /proc/self/status (Linux).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .map_or_else(
            || "unknown".to_owned(),
            |l| l["VmHWM:".len()..].trim().to_owned(),
        )
}
