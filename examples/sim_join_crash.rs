//! Whole clients (the flood part and the mesh; with `--mesh-only`, the mesh alone) join one
//! at a time, each through one random client; the degree distribution and the diameter are
//! printed once the joins settle; then a share of the clients crash at once, and the virtual
//! time until the survivors form one component again is printed, with whether every string
//! typed afterwards reached every survivor.
//!
//! ```text
//! cargo run --release --features sim --example sim_join_crash
//! cargo run --release --features sim --example sim_join_crash -- --clients 200 --seeds 1,2,3
//! cargo run --release --features sim --example sim_join_crash -- --mesh-only --seeds 1,2,3
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use floodchat::MeshConfig;
use floodchat::sim::{JoinCrash, JoinThenCrash, MeshNode, Node, Sim, SimConfig, join_then_crash};

mod common;
use common::peak_rss;

/// Join, then crash, with whole clients.
#[derive(Parser)]
struct Args {
    /// Clients.
    #[arg(long, default_value_t = JoinThenCrash::default().clients)]
    clients: usize,
    /// Target links per client (default: the client's, from `MeshConfig`).
    #[arg(long)]
    links: Option<usize>,
    /// Run the mesh alone (no room, no strings typed), as `MeshNode`s.
    #[arg(long)]
    mesh_only: bool,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = JoinThenCrash::default().gap.as_millis() as u64)]
    gap_ms: u64,
    /// Seconds the joins settle before the crash.
    #[arg(long, default_value_t = JoinThenCrash::default().settle.as_secs())]
    settle_s: u64,
    /// Percent of the clients that crash at once.
    #[arg(long, default_value_t = JoinThenCrash::default().crash_percent)]
    crash_percent: usize,
    /// Strings typed by survivors once they are one component.
    #[arg(long, default_value_t = JoinThenCrash::default().typed_after)]
    strings: usize,
    /// One-way latency of every link, in milliseconds.
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// Seeds, comma separated: one run each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
}

/// One join-then-crash run on `sim`, with strings typed afterwards unless it runs meshes alone.
fn run<N: Node>(sim: Sim<N>, args: &Args) -> JoinCrash {
    let setting = JoinThenCrash {
        clients: args.clients,
        gap: Duration::from_millis(args.gap_ms),
        settle: Duration::from_secs(args.settle_s),
        crash_percent: args.crash_percent,
        typed_after: if args.mesh_only { 0 } else { args.strings },
        ..JoinThenCrash::default()
    };
    join_then_crash(sim, &setting)
}

fn main() {
    let args = Args::parse();
    let mut failed = false;
    for &seed in &args.seeds {
        let wall = Instant::now();
        let mut config = SimConfig {
            seed,
            latency_min: Duration::from_millis(args.latency_ms),
            latency_max: Duration::from_millis(args.latency_ms),
            ..SimConfig::default()
        };
        if let Some(links) = args.links {
            config.flood.mesh = MeshConfig::with_links(links);
        }
        let (links, max_inbound) = (config.flood.mesh.links, config.flood.mesh.max_inbound);
        let r = if args.mesh_only {
            run(Sim::<MeshNode>::start(0, config), &args)
        } else {
            run(Sim::new(0, config), &args)
        };
        println!(
            "seed {seed}: {} clients joined, {} links, links per client min/median/max {:?} \
             (target {links}, max inbound {max_inbound}, most accepted by one {}), {} \
             component(s), diameter {}",
            r.joined.clients,
            r.joined.links,
            r.joined.degree,
            r.joined.max_inbound,
            r.joined.components,
            r.joined.diameter
        );
        match r.heal_time {
            Some(t) => println!(
                "  {} crashed at once: one component again after {} s virtual (checked each second)",
                r.crashed,
                t.as_secs()
            ),
            None => println!(
                "  {} crashed at once: still split after {:?}",
                r.crashed,
                JoinThenCrash::default().limit
            ),
        }
        match r.refill_time {
            Some(t) => println!(
                "  every survivor back at {links} links after {} s virtual",
                t.as_secs()
            ),
            None => println!(
                "  some survivor below {links} links after {:?}",
                JoinThenCrash::default().limit
            ),
        }
        println!(
            "  then: links per survivor {:?}, {} component(s), diameter {}; {} of {} strings \
             typed afterwards reached every one of the {} survivors; {} violations",
            r.healed.degree,
            r.healed.components,
            r.healed.diameter,
            r.reached_every_survivor,
            r.typed_after,
            r.healed.clients,
            r.violations.len()
        );
        for v in r.violations.iter().take(10) {
            println!("    {v}");
        }
        println!(
            "  {} dials; wall {:.1} s, peak RSS {}",
            r.dials,
            wall.elapsed().as_secs_f64(),
            peak_rss()
        );
        failed |= !r.violations.is_empty() || r.reached_every_survivor < r.typed_after;
    }
    if failed {
        std::process::exit(1);
    }
}
