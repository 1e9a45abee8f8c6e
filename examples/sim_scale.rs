//! The simulator at scale: clients join one at a time, each through one random client
//! already in (as the chat is used), plus a few extra links; then strings are typed by
//! random clients, and the network settles. Prints convergence, messages per typed string,
//! virtual latency, and the wall time and peak memory of the simulation itself.
//!
//! ```text
//! cargo run --release --features sim --example sim_scale -- --clients 1000
//! cargo run --release --features sim --example sim_scale -- --clients 10000 --extra 20 --strings 100
//! ```
//!
//! Options: `--clients N` (1000), `--extra N` extra links (0), `--strings N` typed (100),
//! `--gap-ms N` between two typings (10), `--latency-ms LO,HI` per link (10,100),
//! `--seed N` (1).

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::sim::{Sim, SimConfig, SplitMix64, random_topology};

mod common;
use common::peak_rss;

/// The simulator at scale.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Extra links beyond the joining tree.
    #[arg(long, default_value_t = 0)]
    extra: usize,
    /// Strings typed.
    #[arg(long, default_value_t = 100)]
    strings: usize,
    /// Milliseconds between two typings.
    #[arg(long, default_value_t = 10)]
    gap_ms: u64,
    /// Latency range of each link, in milliseconds: LO,HI.
    #[arg(long, default_value = "10,100", value_parser = parse_range)]
    latency_ms: (u64, u64),
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("\"{text}\" is not LO,HI");
    let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
    Ok((
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    ))
}

fn main() {
    let Args {
        clients,
        extra,
        strings,
        gap_ms,
        latency_ms,
        seed,
    } = Args::parse();
    let latency = latency_ms;
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
        "Text frames per typed string {:.2} (2L - (n-1) = {tree_cost}; bound 2L = {}), writes {:.2}, bytes {:.1}",
        report.frames_per_typed(),
        2 * links.len(),
        report.sends_per_typed(),
        report.bytes_per_typed()
    );
    println!(
        "besides Text: {} Byes ({} connections closed on purpose), {} Addrs, {} Pings, {} dials",
        report.byes, report.closed_on_purpose, report.addrs_frames, report.pings, report.dials
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
