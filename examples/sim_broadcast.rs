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
//! Options (defaults from `floodchat::sim::Broadcast` and the client's `Config`):
//! `--clients N` (25), `--links N` the mesh's target (`MeshConfig::default().links`),
//! `--rate N` strings per second (100), `--secs N` of typing (20), `--latency-ms N` (100),
//! `--partition-every-ms N` (4000) and `--partition-ms N` (1500): every period a random cut
//! splits the clients, and heals after the given time; `--no-partitions` (one run);
//! `--seed N`.
//!
//! The run itself is `floodchat::sim::broadcast`, which `tests/figures.rs` pins. Clients join as the chat is used: one at a time, each through one random client already
//! in (`Input::Start { contact }`), and the mesh makes the rest of the graph; the room idles
//! 10 s before the typing starts. `--fixed` instead wires the joining tree plus `--extra N`
//! random links directly (the mesh still adds links of its own). A cut kills the connections
//! across it and a heal brings none back: the meshes dial across again (`Sim::heal`), and
//! new links reconcile, so partitions cost only what the two sides lack.

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::sim::{Broadcast, BroadcastRun, Report, SimConfig, broadcast};

/// The broadcast-benchmark setting on the simulator.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = Broadcast::default().clients)]
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
    #[arg(long, default_value_t = Broadcast::default().rate)]
    rate: u64,
    /// Seconds of typing.
    #[arg(long, default_value_t = Broadcast::default().secs)]
    secs: u64,
    /// One-way latency of every link.
    #[arg(long, default_value_t = Broadcast::default().latency.as_millis() as u64)]
    latency_ms: u64,
    /// How often a random cut splits the clients.
    #[arg(long, default_value_t = Broadcast::CUTS.0.as_millis() as u64)]
    partition_every_ms: u64,
    /// How long each cut lasts.
    #[arg(long, default_value_t = Broadcast::CUTS.1.as_millis() as u64)]
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
    let started = Instant::now();
    let mut config = SimConfig {
        seed: args.seed,
        ..SimConfig::default()
    };
    if let Some(links) = args.links {
        config.flood.mesh = floodchat::MeshConfig::with_links(links);
    }
    let setting = Broadcast {
        clients: args.clients,
        latency: Duration::from_millis(args.latency_ms),
        fixed: args.fixed.then_some(args.extra),
        rate: args.rate,
        secs: args.secs,
        partitions: partitions.then(|| {
            (
                Duration::from_millis(args.partition_every_ms),
                Duration::from_millis(args.partition_ms),
            )
        }),
    };
    let BroadcastRun {
        shape,
        cuts,
        quiet,
        violations,
        report: r,
    } = broadcast(config, &setting);
    println!(
        "{}: clients {} ({}), before typing {} links, links per client min/median/max {:?}, diameter {}; latency {} ms, {} strings at {}/s, partitions {cuts} (links broken {})",
        if partitions {
            "with partitions"
        } else {
            "without partitions"
        },
        args.clients,
        if args.fixed {
            "fixed joining tree"
        } else {
            "joined through contacts"
        },
        shape.links,
        shape.degree,
        shape.diameter,
        args.latency_ms,
        r.typed,
        args.rate,
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
