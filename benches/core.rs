//! Relay throughput of the core against the least work any flooding relay must do:
//! `cargo bench --bench core`.
//!
//! The core case feeds `FloodState` a stream of new strings from one peer, in 16 KiB reads,
//! with seven more peers to forward to, acknowledging every send at once. The baseline, timed
//! in the same run on the same strings, only inserts each string into a `hashbrown` set and
//! copies its frame into one buffer per other peer. The ratio of the two is what the core's
//! framing, batching and bookkeeping cost; it is steadier across noisy machines than either
//! time alone. Each figure is the best of several runs.
//!
//! Since protocol 3 the core includes the record layer: it opens the peer's encrypted records
//! and seals every send, once per peer. So that the ratio still measures the core's own work
//! and not the cipher, the baseline does the same least cryptographic work any encrypted relay
//! must: it opens the same records, and seals each peer's buffer as it flushes it. Both sides'
//! handshakes, and the sealing of the input (the sender's work), happen before the clock
//! starts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use floodchat::secure::{Identity, Link, Role, RoomKey};
use floodchat::wire::{Frame, GREETING, Hello, encode_text};
use floodchat::{Config, FloodState, Input, Output, PeerId};

const PEERS: u64 = 8;
const STRINGS: usize = 200_000;
const READ: usize = 16 * 1024;
const RUNS: usize = 7;

fn strings() -> Vec<String> {
    (0..STRINGS)
        .map(|i| format!("message number {i:06} of the benchmark room"))
        .collect()
}

/// A distinct secret seed for the handshake of one link end.
fn seed(n: u64) -> [u8; 32] {
    blake3::derive_key("floodchat core bench seed", &n.to_le_bytes())
}

/// Two ends of one link, handshake done in memory: (initiator, responder).
fn linked(n: u64) -> (Link, Link) {
    let (mut a, mut to_b) = Link::new(
        Role::Initiator,
        &Identity::from_seed(2 * n),
        &RoomKey::Open,
        seed(2 * n),
    );
    let (mut b, mut to_a) = Link::new(
        Role::Responder,
        &Identity::from_seed(2 * n + 1),
        &RoomKey::Open,
        seed(2 * n + 1),
    );
    let mut plain = Vec::new();
    while !(a.is_established() && b.is_established()) {
        b.read(&std::mem::take(&mut to_b), &mut to_a, &mut plain)
            .unwrap();
        a.read(&std::mem::take(&mut to_a), &mut to_b, &mut plain)
            .unwrap();
    }
    (a, b)
}

/// The frame stream sealed into records as a sender would, 16 KiB of frames to a record.
fn seal(link: &mut Link, stream: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::new();
    for chunk in stream.chunks(READ) {
        link.seal(chunk, &mut sealed);
    }
    sealed
}

/// The core, linked to `PEERS` peers (handshake, greeting and Hello exchanged through each
/// peer's own [`Link`]), and the stream sealed by peer 0's link: the untimed set-up.
fn core_setup(stream: &[u8]) -> (FloodState, Vec<u8>) {
    let now = Instant::now();
    let config = Config {
        identity: Identity::from_seed(1),
        entropy: seed(1),
        ..Config::default()
    };
    let mut state = FloodState::new(config, now);
    let mut sealed = Vec::new();
    for p in 0..PEERS {
        let peer = PeerId(p);
        let remote = format!("127.0.0.{}:4000", p + 2).parse().unwrap();
        state
            .handle_input(now, Input::Accepted { peer, remote })
            .unwrap();
        let identity = Identity::from_seed(p + 2);
        let (mut link, mut to_state) =
            Link::new(Role::Initiator, &identity, &RoomKey::Open, seed(100 + p));
        let mut greeted = false;
        loop {
            if link.is_established() && !greeted {
                let mut hello = GREETING.to_vec();
                Frame::Hello(Hello {
                    client: identity.client_id(),
                    listen_port: 4000,
                    alone: false,
                })
                .encode(&mut hello);
                link.seal(&hello, &mut to_state);
                greeted = true;
            }
            if to_state.is_empty() {
                break;
            }
            state
                .handle_input(now, Input::Received(peer, &std::mem::take(&mut to_state)))
                .unwrap();
            let mut from_state = Vec::new();
            let mut acks = Vec::new();
            while let Some(out) = state.poll_output() {
                if let Output::Send { peer: to, bytes } = out {
                    if to == peer {
                        from_state.extend_from_slice(&bytes);
                    }
                    acks.push(to);
                }
            }
            for to in acks {
                state.handle_input(now, Input::Sent(to)).unwrap();
            }
            while let Some(out) = state.poll_output() {
                if let Output::Send { peer: to, .. } = out {
                    state.handle_input(now, Input::Sent(to)).unwrap();
                }
            }
            let mut plain = Vec::new();
            link.read(&from_state, &mut to_state, &mut plain).unwrap();
        }
        assert!(state.is_ready(peer), "peer {p} is linked");
        if p == 0 {
            sealed = seal(&mut link, stream);
        }
    }
    (state, sealed)
}

/// Runs the core on the sealed stream; returns the Text frames it queued for sending.
fn relay(mut state: FloodState, sealed: &[u8]) -> u64 {
    let now = Instant::now();
    let mut acks = Vec::new();
    let drain = |state: &mut FloodState, acks: &mut Vec<PeerId>| {
        while let Some(out) = state.poll_output() {
            if let Output::Send { peer, bytes } = out {
                black_box(bytes);
                acks.push(peer);
            }
        }
    };
    let from = PeerId(0);
    for chunk in sealed.chunks(READ) {
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

/// The baseline's links: the end that opens the input, and one end per other peer that seals;
/// and the input sealed by the other end of the first.
fn baseline_setup(stream: &[u8]) -> (Link, Vec<Link>, Vec<u8>) {
    let (mut sender, receiver) = linked(0);
    let sealed = seal(&mut sender, stream);
    let out = (1..PEERS).map(|p| linked(p).0).collect();
    (receiver, out, sealed)
}

/// The baseline: open the records, dedup in a set and copy each frame once per other peer,
/// sealing each peer's buffer when it flushes.
fn baseline(
    strings: &[String],
    (mut receiver, mut links, sealed): (Link, Vec<Link>, Vec<u8>),
) -> usize {
    let mut plain = Vec::with_capacity(2 * READ);
    let mut reply = Vec::new();
    for chunk in sealed.chunks(READ) {
        plain.clear();
        receiver.read(chunk, &mut reply, &mut plain).unwrap();
        black_box(&plain);
    }
    let mut seen = hashbrown::HashSet::new();
    let mut out: Vec<Vec<u8>> = (1..PEERS).map(|_| Vec::new()).collect();
    let mut records = Vec::with_capacity(2 * READ);
    for s in strings {
        if seen.insert(s.as_str()) {
            for (buf, link) in out.iter_mut().zip(&mut links) {
                encode_text(s, buf);
                if buf.len() > READ {
                    records.clear();
                    link.seal(buf, &mut records);
                    black_box(&records);
                    buf.clear();
                }
            }
        }
    }
    seen.len()
}

/// The best time of [`RUNS`] runs of `run`, each on a fresh `setup` made off the clock.
fn best<S>(mut setup: impl FnMut() -> S, mut run: impl FnMut(S)) -> Duration {
    (0..RUNS)
        .map(|_| {
            let input = setup();
            let started = Instant::now();
            run(input);
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
    let core = best(
        || core_setup(&stream),
        |(state, sealed)| frames = relay(state, black_box(&sealed)),
    );
    let base = best(
        || baseline_setup(&stream),
        |links| {
            black_box(baseline(black_box(&strings), links));
        },
    );
    assert_eq!(frames, STRINGS as u64 * (PEERS - 1));
    let rate = |d: Duration| STRINGS as f64 / d.as_secs_f64() / 1e6;
    println!(
        "relay {STRINGS} strings to {} peers: core {core:.2?} ({:.2} M strings/s), \
         baseline {base:.2?} ({:.2} M strings/s), core/baseline = {:.2} (both with records)",
        PEERS - 1,
        rate(core),
        rate(base),
        core.as_secs_f64() / base.as_secs_f64()
    );
}
