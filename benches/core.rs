//! Relay throughput of the core against the least work any flooding relay must do:
//! `cargo bench --bench core`.
//!
//! The core case feeds `FloodState` a stream of new strings from one peer, in 16 KiB reads,
//! with seven more peers to forward to, acknowledging every send at once. The baseline, timed
//! in the same run on the same strings, only inserts each string into a `hashbrown` set and
//! copies its frame into one buffer per other peer. The ratio of the two is what the core's
//! framing, batching and bookkeeping cost; it is steadier across noisy machines than either
//! time alone. Each figure is the best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use floodchat::wire::{Frame, GREETING, Hello, encode_text};
use floodchat::{ClientId, Config, FloodState, Input, Output, PeerId};

const PEERS: u64 = 8;
const STRINGS: usize = 200_000;
const READ: usize = 16 * 1024;
const RUNS: usize = 7;

fn strings() -> Vec<String> {
    (0..STRINGS)
        .map(|i| format!("message number {i:06} of the benchmark room"))
        .collect()
}

/// Runs the core, linked to `PEERS` peers (greeting and Hello exchanged); returns the Text
/// frames it queued for sending.
fn relay(stream: &[u8]) -> u64 {
    let now = Instant::now();
    let config = Config {
        client: ClientId(1),
        ..Config::default()
    };
    let mut state = FloodState::new(config, now);
    let mut acks = Vec::new();
    let drain = |state: &mut FloodState, acks: &mut Vec<PeerId>| {
        while let Some(out) = state.poll_output() {
            if let Output::Send { peer, bytes } = out {
                black_box(bytes);
                acks.push(peer);
            }
        }
    };
    for p in 0..PEERS {
        let peer = PeerId(p);
        let remote = format!("127.0.0.{}:4000", p + 2).parse().unwrap();
        state
            .handle_input(now, Input::Accepted { peer, remote })
            .unwrap();
        let mut greeting = GREETING.to_vec();
        Frame::Hello(Hello {
            client: ClientId(p + 2),
            listen_port: 4000,
            alone: false,
        })
        .encode(&mut greeting);
        state
            .handle_input(now, Input::Received(peer, &greeting))
            .unwrap();
    }
    drain(&mut state, &mut acks);
    let from = PeerId(0);
    for chunk in stream.chunks(READ) {
        state
            .handle_input(now, Input::Received(from, chunk))
            .unwrap();
        drain(&mut state, &mut acks);
        while let Some(peer) = acks.pop() {
            state.handle_input(now, Input::Sent(peer)).unwrap();
            drain(&mut state, &mut acks);
        }
    }
    assert_eq!(state.messages().len(), STRINGS);
    state.stats().frames_sent
}

/// The baseline: dedup in a set and copy each frame once per other peer.
fn baseline(strings: &[String]) -> usize {
    let mut seen = hashbrown::HashSet::new();
    let mut out: Vec<Vec<u8>> = (1..PEERS).map(|_| Vec::new()).collect();
    for s in strings {
        if seen.insert(s.as_str()) {
            for buf in &mut out {
                encode_text(s, buf);
                if buf.len() > READ {
                    black_box(&buf);
                    buf.clear();
                }
            }
        }
    }
    seen.len()
}

fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let strings = strings();
    let mut stream = Vec::new();
    for s in &strings {
        encode_text(s, &mut stream);
    }
    let mut frames = 0;
    let core = best(|| frames = relay(black_box(&stream)));
    let base = best(|| {
        black_box(baseline(black_box(&strings)));
    });
    assert_eq!(frames, STRINGS as u64 * (PEERS - 1));
    let rate = |d: Duration| STRINGS as f64 / d.as_secs_f64() / 1e6;
    println!(
        "relay {STRINGS} strings to {} peers: core {core:.2?} ({:.2} M strings/s), \
         baseline {base:.2?} ({:.2} M strings/s), core/baseline = {:.2}",
        PEERS - 1,
        rate(core),
        rate(base),
        core.as_secs_f64() / base.as_secs_f64()
    );
}
