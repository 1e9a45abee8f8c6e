//! What a link costs to make since protocol 3: `cargo bench --bench handshake`.
//!
//! - CPU per handshake: two record layers (`secure::Link`) finish a Noise XXpsk0 handshake in
//!   memory, both ends' work timed together; beside it, in the same run, one X25519 key
//!   derivation (a fixed-base scalar multiplication, the unit a handshake is made of), so the
//!   ratio says how many of those a handshake costs on this machine;
//! - a stranger turned away: a private room's responder making a new connection's record
//!   layer (which derives its static public key once) and reading the first flight of a
//!   client with the wrong key (no Diffie-Hellman is done for it), against the full
//!   handshake;
//! - connect to first line: two whole `FloodState`s, one dialing the other, every write
//!   delivered at once in memory, until the dialer prints the line the other typed before:
//!   the CPU of the handshake, both Hellos, reconciliation and the line, without the
//!   network's round trips (on a network add two round trips for the handshake).
//!
//! Each figure is the median of several runs.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floodchat::secure::{Identity, Link, Role, RoomKey};
use floodchat::{Config, FloodState, Input, Output, PeerId};

const RUNS: usize = 7;
const HANDSHAKES: u64 = 400;

fn seed(n: u64) -> [u8; 32] {
    blake3::derive_key("floodchat handshake bench seed", &n.to_le_bytes())
}

/// The median of `RUNS` timings of `f`, divided by `per`.
fn median(per: u64, mut f: impl FnMut(u64)) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS as u64)
        .map(|run| {
            let started = Instant::now();
            f(run);
            started.elapsed() / per as u32
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn handshake(n: u64, a: &Identity, b: &Identity, room: &RoomKey) {
    let (mut i, mut to_r) = Link::new(Role::Initiator, a, room, seed(2 * n));
    let (mut r, mut to_i) = Link::new(Role::Responder, b, room, seed(2 * n + 1));
    let mut plain = Vec::new();
    while !(i.is_established() && r.is_established()) {
        r.read(&std::mem::take(&mut to_r), &mut to_i, &mut plain)
            .expect("same room");
        i.read(&std::mem::take(&mut to_i), &mut to_r, &mut plain)
            .expect("same room");
    }
    black_box((i, r));
}

/// The first flight of a client that guessed the key.
fn stranger_flight(n: u64, a: &Identity) -> Vec<u8> {
    Link::new(Role::Initiator, a, &RoomKey::private(b"guess"), seed(2 * n)).1
}

/// A private room's responder: a new connection's record layer reads a stranger's flight.
fn turn_away(n: u64, first: &[u8], b: &Identity) {
    let (mut r, _) = Link::new(
        Role::Responder,
        b,
        &RoomKey::private(b"key"),
        seed(2 * n + 1),
    );
    let mut reply = Vec::new();
    assert!(r.read(first, &mut reply, &mut Vec::new()).is_err());
    black_box(reply);
}

/// Client `n` of a connect-to-first-line run.
fn client(n: u64) -> FloodState {
    let config = Config {
        identity: Identity::from_seed(n),
        entropy: seed(n),
        seed: n,
        listen_port: 4000,
        ..Config::default()
    };
    FloodState::new(config, Instant::now())
}

/// Moves every write between `a` (which dialed) and `b` until `a` prints; returns whether
/// it did.
fn first_line(run: u64) -> bool {
    let now = Instant::now();
    let mut sides = [client(2 * run), client(2 * run + 1)];
    let peer = PeerId(1);
    let addr = SocketAddr::from(([127, 0, 0, 1], 4000));
    sides[1]
        .handle_input(now, Input::LineTyped(b"hello from the room"))
        .unwrap();
    while sides[1].poll_output().is_some() {}
    sides[0]
        .handle_input(now, Input::Dialed { peer, addr })
        .unwrap();
    sides[1]
        .handle_input(now, Input::Accepted { peer, remote: addr })
        .unwrap();
    for _ in 0..64 {
        let mut moved = false;
        for from in 0..2 {
            let mut sends = Vec::new();
            while let Some(o) = sides[from].poll_output() {
                match o {
                    Output::Send { bytes, .. } => sends.push(bytes),
                    Output::Print(_) if from == 0 => return true,
                    _ => {}
                }
            }
            for bytes in sends {
                moved = true;
                sides[from].handle_input(now, Input::Sent(peer)).unwrap();
                sides[1 - from]
                    .handle_input(now, Input::Received(peer, &bytes))
                    .unwrap();
            }
        }
        if !moved {
            break;
        }
    }
    false
}

fn main() {
    let ids: Vec<Identity> = (0..2).map(Identity::from_seed).collect();
    let derive = median(HANDSHAKES, |run| {
        for n in 0..HANDSHAKES {
            black_box(Identity::from_secret(seed(run * HANDSHAKES + n)));
        }
    });
    let full = median(HANDSHAKES, |run| {
        for n in 0..HANDSHAKES {
            handshake(run * HANDSHAKES + n, &ids[0], &ids[1], &RoomKey::Open);
        }
    });
    let flights: Vec<Vec<u8>> = (0..HANDSHAKES)
        .map(|n| stranger_flight(n, &ids[0]))
        .collect();
    let turned_away = median(HANDSHAKES, |_| {
        for (n, first) in flights.iter().enumerate() {
            turn_away(n as u64, first, &ids[1]);
        }
    });
    let rounds = 100;
    let connect = median(rounds, |run| {
        for n in 0..rounds {
            assert!(first_line(run * rounds + n), "the line arrives");
        }
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("median of {RUNS} runs:");
    println!(
        "  X25519 key derivation (baseline):      {:>8.1} us",
        us(derive)
    );
    println!(
        "  handshake, both ends:                  {:>8.1} us  ({:.1} derivations)",
        us(full),
        full.as_secs_f64() / derive.as_secs_f64()
    );
    println!(
        "  stranger with a wrong key turned away: {:>8.1} us  ({:.3} handshakes)",
        us(turned_away),
        turned_away.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "  connect to first line, both clients:   {:>8.1} us  ({:.1} handshakes)",
        us(connect),
        connect.as_secs_f64() / full.as_secs_f64()
    );
}
