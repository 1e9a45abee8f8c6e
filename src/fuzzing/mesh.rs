//! Fuzz entry point `mesh`: [`Action`]s applied to one [`Mesh`], as a hostile network and a
//! careless driver might send them.
//!
//! Checked after every step: the mesh's own bookkeeping and limits (connections in all,
//! unproven, per IP, inbound links, book size, learned entries per source); every `Close`,
//! `SendAddrs` and `LinkUp` names a connection the harness has open; at most [`MAX_ADDRS`]
//! addresses per frame; no address is dialed twice within `backoff_min`, dials never start
//! faster than the token bucket allows (`dial_burst`, then one per `dial_interval`); and
//! after a `Timeout` at the time `poll_timeout` gave, the next deadline is later (no spin).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::PeerId;
use crate::mesh::{ByeReason, ClientId, MAX_ADDRS, Mesh, MeshConfig, MeshInput, MeshOutput};

/// A loopback address from two bytes: IP `127.0.0.(ip % 8)`, port `1 + port % 16`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Addr {
    /// Picks the IP.
    pub ip: u8,
    /// Picks the port.
    pub port: u8,
}

impl Addr {
    fn get(self) -> SocketAddr {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, self.ip % 8));
        SocketAddr::new(ip, 1 + u16::from(self.port % 16))
    }
}

/// One step of a `mesh` fuzz run. A connection is named by a byte: an index into the open
/// connections (or a connection never opened, for 255).
#[derive(Arbitrary, Debug, Clone)]
pub enum Action {
    /// Start, maybe with a contact.
    Start(Option<Addr>),
    /// An inbound connection from this address.
    Accept(Addr),
    /// The `k`-th pending dial connected.
    Dialed(u8),
    /// The `k`-th pending dial failed.
    DialFailed(u8),
    /// A Hello on connection `k`; id 0 is our own id.
    Hello {
        /// The connection.
        k: u8,
        /// The client id (0: ourselves).
        id: u8,
        /// The listen port, picked like [`Addr::port`] (0 stays 0).
        port: u8,
        /// The alone flag.
        alone: bool,
    },
    /// Addresses on connection `k`.
    Addrs(u8, Vec<Addr>),
    /// A Bye on connection `k`.
    Bye(u8, u8, Vec<Addr>),
    /// Connection `k` closed.
    Closed(u8),
    /// Time passes, in tens of milliseconds; then the timers due run.
    Advance(u8),
    /// We leave.
    Leave,
    /// Connection `k`'s prologue arrived: it answers as floodchat.
    Answered(u8),
}

/// Runs the actions in `data` on one mesh with small limits, started with contact
/// `127.0.0.1:1`.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    for action in parse(data) {
        h.apply(action);
    }
}

/// The actions in `data`: one after another, each read with [`Arbitrary`], until the bytes
/// run out (denser than a length-prefixed `Vec`, so random bytes make long runs).
pub fn parse(data: &[u8]) -> Vec<Action> {
    let mut u = Unstructured::new(data);
    let mut actions = Vec::new();
    while !u.is_empty() {
        match Action::arbitrary(&mut u) {
            Ok(a) => actions.push(a),
            Err(_) => break,
        }
    }
    actions
}

struct Harness {
    mesh: Mesh,
    config: MeshConfig,
    now: Instant,
    next_peer: u64,
    open: BTreeSet<PeerId>,
    pending: Vec<SocketAddr>,
    last_dial: BTreeMap<SocketAddr, Instant>,
    dial_times: Vec<Instant>,
    links_up: usize,
}

impl Harness {
    fn new() -> Self {
        let config = MeshConfig {
            links: 3,
            max_inbound: 4,
            max_connections: 8,
            max_unproven: 4,
            max_per_ip: 3,
            book_size: 24,
            per_source: 8,
            ..MeshConfig::default()
        };
        let now = Instant::now();
        let mut h = Self {
            mesh: Mesh::new(config.clone(), ClientId(0), 1, now),
            config,
            now,
            next_peer: 0,
            open: BTreeSet::new(),
            pending: Vec::new(),
            last_dial: BTreeMap::new(),
            dial_times: Vec::new(),
            links_up: 0,
        };
        h.apply(Action::Start(Some(Addr { ip: 1, port: 0 })));
        h
    }

    fn conn(&self, k: u8) -> PeerId {
        if k == 255 || self.open.is_empty() {
            return PeerId(u64::MAX);
        }
        *self
            .open
            .iter()
            .nth(usize::from(k) % self.open.len())
            .expect("in range")
    }

    fn new_peer(&mut self) -> PeerId {
        self.next_peer += 1;
        PeerId(self.next_peer)
    }

    fn apply(&mut self, action: Action) {
        let addrs = |v: &[Addr]| v.iter().map(|a| a.get()).collect::<Vec<_>>();
        match action {
            Action::Start(contact) => self.step(MeshInput::Start {
                contact: contact.map(Addr::get),
            }),
            Action::Accept(remote) => {
                let peer = self.new_peer();
                self.open.insert(peer);
                self.step(MeshInput::Accepted {
                    peer,
                    remote: remote.get(),
                });
            }
            Action::Dialed(k) => {
                if self.pending.is_empty() {
                    return;
                }
                let addr = self.pending.remove(usize::from(k) % self.pending.len());
                let peer = self.new_peer();
                self.open.insert(peer);
                self.step(MeshInput::Dialed { peer, addr });
            }
            Action::DialFailed(k) => {
                if self.pending.is_empty() {
                    return;
                }
                let addr = self.pending.remove(usize::from(k) % self.pending.len());
                self.step(MeshInput::DialFailed { addr });
            }
            Action::Hello { k, id, port, alone } => {
                let peer = self.conn(k);
                let listen_port = if port == 0 {
                    0
                } else {
                    1 + u16::from(port % 16)
                };
                self.step(MeshInput::Hello {
                    peer,
                    id: ClientId(u64::from(id)),
                    listen_port,
                    alone,
                });
            }
            Action::Addrs(k, list) => {
                let peer = self.conn(k);
                let list = addrs(&list);
                self.step(MeshInput::Addrs { peer, addrs: &list });
            }
            Action::Bye(k, reason, list) => {
                let peer = self.conn(k);
                let list = addrs(&list);
                let reason = ByeReason::from_code(1 + reason % 5);
                self.step(MeshInput::Bye {
                    peer,
                    reason,
                    addrs: &list,
                });
                self.open.remove(&peer);
            }
            Action::Closed(k) => {
                let peer = self.conn(k);
                self.open.remove(&peer);
                self.step(MeshInput::Closed { peer });
            }
            Action::Advance(tens) => {
                let end = self.now + Duration::from_millis(u64::from(tens) * 10);
                while let Some(t) = self.mesh.poll_timeout().filter(|&t| t <= end) {
                    self.now = self.now.max(t);
                    self.step(MeshInput::Timeout);
                    assert!(
                        self.mesh.poll_timeout().is_none_or(|t| t > self.now),
                        "a deadline that does not move"
                    );
                }
                self.now = end;
            }
            Action::Leave => self.step(MeshInput::Leave),
            Action::Answered(k) => {
                let peer = self.conn(k);
                self.step(MeshInput::Answered { peer });
            }
        }
    }

    fn step(&mut self, input: MeshInput<'_>) {
        self.mesh.handle(self.now, input);
        self.mesh.check_invariants();
        while let Some(out) = self.mesh.poll() {
            self.check(out);
        }
    }

    fn check(&mut self, out: MeshOutput) {
        match out {
            MeshOutput::Dial(addr) => {
                if let Some(&last) = self.last_dial.get(&addr) {
                    assert!(
                        self.now - last >= self.config.backoff_min,
                        "{addr} dialed again after {:?}",
                        self.now - last
                    );
                }
                self.last_dial.insert(addr, self.now);
                self.dial_times.push(self.now);
                let burst = u128::from(self.config.dial_burst);
                let interval = self.config.dial_interval.as_nanos();
                let n = self.dial_times.len();
                for (i, &t0) in self.dial_times.iter().enumerate() {
                    let since = (self.now - t0).as_nanos();
                    let count = (n - i) as u128;
                    assert!(
                        count <= burst + since / interval,
                        "{count} dials in {since} ns"
                    );
                }
                if self.dial_times.len() > 64 {
                    self.dial_times.remove(0);
                }
                self.pending.push(addr);
            }
            MeshOutput::LinkUp { peer, .. } => {
                assert!(self.open.contains(&peer));
                self.links_up += 1;
            }
            MeshOutput::SendAddrs { peer, addrs } => {
                assert!(self.open.contains(&peer));
                assert!(!addrs.is_empty() && addrs.len() <= MAX_ADDRS);
            }
            MeshOutput::Close { peer, bye, .. } => {
                assert!(self.open.remove(&peer), "Close of {peer}, not open");
                if let Some((_, addrs)) = bye {
                    assert!(addrs.len() <= MAX_ADDRS);
                }
            }
            MeshOutput::Notice(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_fixed_runs_hold() {
        let mut dials = 0;
        let mut links = 0;
        for seed in 0..300u64 {
            let mut rng = crate::rng::SplitMix64::new(seed);
            let data: Vec<u8> = (0..400).map(|_| rng.next_u64() as u8).collect();
            let actions = parse(&data);
            let mut h = Harness::new();
            for action in actions {
                h.apply(action);
            }
            dials += h.last_dial.len();
            links += h.links_up;
        }
        // The runs reach the rules under test, not only the early returns.
        assert!(dials > 300 && links > 30, "{dials} dials, {links} links");
    }
}
