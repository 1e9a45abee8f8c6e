//! Wall-clock cost of the simulator (and so of the core under it): `cargo bench --features sim --bench sim`.
//!
//! Each case builds a network of clients joined through one existing client each, types
//! strings, settles, checks convergence, and reports the best of a few runs, in events
//! (deliveries, acknowledgements, closes, timers) per second of wall time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use floodchat::sim::{Sim, SimConfig, SplitMix64, random_topology};

fn run(clients: usize, extra: usize, strings: usize) -> u64 {
    let mut sim = Sim::new(clients, SimConfig::default());
    for (a, b) in random_topology(clients, extra, 1) {
        sim.connect(a, b);
    }
    sim.advance(Duration::from_secs(1));
    let mut rng = SplitMix64::new(2);
    for _ in 0..strings {
        sim.type_line(rng.index(clients), false);
        sim.advance(Duration::from_millis(10));
    }
    assert!(sim.settle());
    assert!(sim.check().is_empty(), "{}", sim.violations());
    sim.report().events
}

fn main() {
    for (clients, extra, strings) in [(25, 5, 2000), (1000, 10, 100), (3000, 30, 100)] {
        let mut best = Duration::MAX;
        let mut events = 0;
        for _ in 0..3 {
            let started = Instant::now();
            events = black_box(run(black_box(clients), extra, strings));
            best = best.min(started.elapsed());
        }
        println!(
            "sim {clients} clients + {extra} extra links, {strings} strings: {best:.2?} \
             ({events} events, {:.2} M events/s)",
            events as f64 / best.as_secs_f64() / 1e6
        );
    }
}
