//! Exhaustive model check of a small network, every interleaving, breadth first.
//!
//! ```text
//! cargo run --release --features sim --example model_check            # the configurations below
//! cargo run --release --features sim --example model_check -- small   # only the ones tests/model_check.rs runs
//! ```

use std::time::Instant;

use floodchat::sim::model::{Event, ModelConfig, explore};

mod common;
use common::peak_rss;

fn main() {
    let only_small = std::env::args().nth(1).as_deref() == Some("small");
    let configs: Vec<(&str, ModelConfig)> = vec![
        (
            "2 clients, 2 strings, the link breaks and is made again",
            ModelConfig::two_clients_reconnect(),
        ),
        (
            "3 clients, 2 strings, chain",
            ModelConfig::three_clients_chain_short(),
        ),
        (
            "3 clients, 2 strings, chain, one link breaks and is made again",
            ModelConfig::three_clients_chain(),
        ),
        (
            "3 clients, 2 strings, triangle, one link breaks and is made again",
            ModelConfig {
                clients: 3,
                events: vec![
                    Event::Type(0),
                    Event::Type(2),
                    Event::Connect(0, 1),
                    Event::Connect(1, 2),
                    Event::Connect(2, 0),
                    Event::Disconnect(0, 1),
                    Event::Connect(0, 1),
                ],
                max_states: 50_000_000,
                lossy: false,
            },
        ),
        (
            "3 clients, 3 strings, chain, one link breaks and is made again",
            ModelConfig {
                clients: 3,
                events: vec![
                    Event::Type(0),
                    Event::Type(1),
                    Event::Type(2),
                    Event::Connect(0, 1),
                    Event::Connect(1, 2),
                    Event::Disconnect(0, 1),
                    Event::Connect(0, 1),
                ],
                max_states: 50_000_000,
                lossy: false,
            },
        ),
    ];
    for (name, config) in configs
        .into_iter()
        .take(if only_small { 2 } else { usize::MAX })
    {
        let started = Instant::now();
        match explore(&config) {
            Ok(s) => println!(
                "{name}: {} states, {} transitions ({} reached a known state), {} quiescent \
                 states checked ({} with every event done), depth {}, {:.1?}",
                s.states,
                s.transitions,
                s.merged,
                s.quiescent,
                s.terminal,
                s.max_depth,
                started.elapsed()
            ),
            Err(e) => {
                println!("{name}: VIOLATION\n{e}");
                std::process::exit(1);
            }
        }
        println!("  peak RSS so far: {}", peak_rss());
    }
}
