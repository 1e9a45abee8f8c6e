//! The mesh alone at scale: clients join one at a time, each through one random client;
//! the degree distribution and the diameter are printed once the joins settle; then a share
//! of the clients crash at once and the virtual time until the survivors form one component
//! again is printed.
//!
//! ```text
//! cargo run --release --example mesh_sim
//! cargo run --release --example mesh_sim -- --clients 1000 --crash-percent 30 --seeds 1,2,3
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::mesh::MeshConfig;
use floodchat::mesh::sim::join_then_crash;

/// The mesh alone at scale.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Target links per client.
    #[arg(long, default_value_t = 4)]
    links: usize,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Seconds the joins settle before the crash.
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Percent of the clients that crash at once.
    #[arg(long, default_value_t = 30)]
    crash_percent: usize,
    /// One-way latency of every connection, in milliseconds.
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// Seeds, comma separated: one run each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
}

fn main() {
    let args = Args::parse();
    for seed in args.seeds {
        let wall = Instant::now();
        let (sim, r) = join_then_crash(
            MeshConfig::with_links(args.links),
            args.clients,
            Duration::from_millis(args.latency_ms),
            Duration::from_millis(args.gap_ms),
            Duration::from_secs(args.settle_s),
            args.crash_percent,
            seed,
        );
        println!(
            "seed {seed}: {} clients, links per client min/median/max {:?} (max inbound {}), \
             {} component(s), diameter {}",
            r.clients, r.degree, r.max_inbound, r.components, r.diameter
        );
        match r.heal_time {
            Some(t) => println!(
                "  {} crashed at once: one component again after {:.1} s virtual; \
                 links per survivor {:?}",
                r.crashed,
                t.as_secs_f64(),
                r.degree_after
            ),
            None => println!("  {} crashed at once: still split after 600 s", r.crashed),
        }
        if let Some(t) = r.refill_time {
            println!(
                "  every survivor back at {} links after {:.1} s virtual",
                args.links,
                t.as_secs_f64()
            );
        }
        println!(
            "  {} dials in all, alone notices {}, rejoined {}; wall {:.1} s",
            r.dials,
            sim.counts.alone,
            sim.counts.rejoined,
            wall.elapsed().as_secs_f64()
        );
    }
}
