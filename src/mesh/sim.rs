//! [`MeshSim`]: many [`Mesh`]es on a simulated network, in virtual time, from one seed.
//!
//! Only membership is simulated: a dial to a live, reachable address connects after one
//! latency (a dead one fails after one latency, one across a partition after
//! [`MeshSim::connect_timeout`]); both sides send Hello at once; Addrs and Bye frames arrive
//! after one latency, in order per connection. A crash closes the client's connections (the
//! other ends hear it one latency later); a partition breaks every link across it after
//! [`MeshSim::break_after`], as a keepalive would.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::rng::Rng;
use super::{ByeReason, ClientId, Mesh, MeshConfig, MeshInput, MeshNotice, MeshOutput};
use crate::PeerId;

/// The port every simulated client listens on.
const PORT: u16 = 7000;

/// The loopback address of client `i` (distinct IPs in 127.0.0.0/8).
pub fn client_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), PORT)
}

#[derive(Debug, Clone)]
enum Msg {
    Dialed(PeerId, SocketAddr),
    DialFailed(SocketAddr),
    Hello(PeerId, ClientId, bool),
    Addrs(PeerId, Vec<SocketAddr>),
    Bye(PeerId, ByeReason, Vec<SocketAddr>),
    Closed(PeerId),
}

#[derive(Debug, Clone)]
enum Event {
    /// Deliver to client `.0` in incarnation `.1`.
    Deliver(usize, u64, Msg),
    /// A dial from client `.0` (incarnation `.1`) reaches its address.
    Arrive(usize, u64, SocketAddr),
    Timer(usize, u64),
}

struct Client {
    mesh: Option<Mesh>,
    generation: u64,
    /// Our peer id -> (connection, our side).
    peers: HashMap<PeerId, (u64, usize)>,
    timer_at: Option<Instant>,
}

struct Conn {
    /// (client, peer id, open) for the dialer (0) and the acceptor (1).
    ends: [(usize, PeerId, bool); 2],
}

/// What happened, counted.
#[derive(Debug, Clone, Default)]
pub struct SimCounts {
    /// Dials asked for.
    pub dials: u64,
    /// Links made.
    pub links_up: u64,
    /// `Alone` notices said.
    pub alone: u64,
    /// `Rejoined` notices said.
    pub rejoined: u64,
    /// Connections refused by the limits.
    pub refused: u64,
}

/// A network of meshes in virtual time.
pub struct MeshSim {
    origin: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Event>,
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_peer: u64,
    group: Option<Vec<u8>>,
    rng: Rng,
    config: MeshConfig,
    /// One-way latency of every connection.
    pub latency: Duration,
    /// How long a dial across a partition takes to fail.
    pub connect_timeout: Duration,
    /// How long a link across a new partition lives on (a keepalive's timeout).
    pub break_after: Duration,
    /// What happened.
    pub counts: SimCounts,
}

impl MeshSim {
    /// An empty network whose clients use `config`; every choice follows from `seed`.
    pub fn new(config: MeshConfig, seed: u64) -> Self {
        let origin = Instant::now();
        Self {
            origin,
            now: origin,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            clients: Vec::new(),
            by_addr: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 0,
            next_peer: 0,
            group: None,
            rng: Rng::new(seed),
            config,
            latency: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(3),
            break_after: Duration::from_secs(10),
            counts: SimCounts::default(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    /// How many clients were ever added.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client was ever added.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Whether client `i` is running.
    pub fn is_alive(&self, i: usize) -> bool {
        self.clients.get(i).is_some_and(|c| c.mesh.is_some())
    }

    /// The running clients.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&i| self.is_alive(i))
            .collect()
    }

    /// Client `i`'s mesh, if it runs.
    pub fn mesh(&self, i: usize) -> Option<&Mesh> {
        self.clients.get(i).and_then(|c| c.mesh.as_ref())
    }

    /// A random running client.
    pub fn random_alive(&mut self) -> Option<usize> {
        let alive = self.alive();
        (!alive.is_empty()).then(|| alive[self.rng.index(alive.len())])
    }

    /// Adds a client that joins through `contact` (a client number); returns its number.
    pub fn join(&mut self, contact: Option<usize>) -> usize {
        let i = self.clients.len();
        self.clients.push(Client {
            mesh: None,
            generation: 0,
            peers: HashMap::new(),
            timer_at: None,
        });
        self.by_addr.insert(client_addr(i), i);
        self.boot(i, contact);
        i
    }

    /// Restarts crashed client `i` (a new identity, an empty book) through `contact`.
    pub fn restart(&mut self, i: usize, contact: Option<usize>) {
        if !self.is_alive(i) {
            self.boot(i, contact);
        }
    }

    fn boot(&mut self, i: usize, contact: Option<usize>) {
        let id = ClientId(self.rng.next_u64());
        let seed = self.rng.next_u64();
        let c = &mut self.clients[i];
        c.generation += 1;
        c.peers.clear();
        c.timer_at = None;
        c.mesh = Some(Mesh::new(self.config.clone(), id, seed, self.now));
        let contact = contact.map(client_addr);
        self.input(i, MeshInput::Start { contact });
    }

    /// Client `i` crashes: its connections close, the other ends hear it after a latency.
    pub fn crash(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if c.mesh.take().is_none() {
            return;
        }
        c.generation += 1;
        let peers: Vec<PeerId> = c.peers.keys().copied().collect();
        for peer in peers {
            self.close_end(i, peer, None, self.latency);
        }
        self.clients[i].peers.clear();
    }

    /// Splits running and future clients into groups (`group(i)`), which cannot reach each
    /// other; links across break after [`MeshSim::break_after`].
    pub fn partition(&mut self, group: impl Fn(usize) -> u8) {
        let n = self.clients.len().max(1) * 2;
        let groups: Vec<u8> = (0..n).map(&group).collect();
        self.group = Some(groups);
        let mut across = Vec::new();
        for conn in self.conns.values() {
            let [(a, pa, oa), (b, _, _)] = conn.ends;
            if oa && !self.reachable(a, b) {
                across.push((a, pa));
            }
        }
        across.sort();
        for (a, pa) in across {
            self.close_both(a, pa, self.break_after);
        }
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.group = None;
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        match &self.group {
            None => true,
            Some(g) => g.get(a).copied().unwrap_or(0) == g.get(b).copied().unwrap_or(0),
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn deliver(&mut self, to: usize, after: Duration, msg: Msg) {
        let generation = self.clients[to].generation;
        self.schedule(self.now + after, Event::Deliver(to, generation, msg));
    }

    /// Runs every event up to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            if let Some(ev) = self.events.remove(&seq) {
                self.process(ev);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn process(&mut self, ev: Event) {
        match ev {
            Event::Timer(i, g) => {
                if self.clients[i].generation != g {
                    return;
                }
                self.clients[i].timer_at = None;
                let due = self.mesh(i).and_then(Mesh::poll_timeout);
                if due.is_some_and(|t| t <= self.now) {
                    self.input(i, MeshInput::Timeout);
                } else {
                    self.arm(i);
                }
            }
            Event::Arrive(from, g, addr) => {
                if self.clients[from].generation != g {
                    return;
                }
                let target = self.by_addr.get(&addr).copied();
                match target {
                    Some(b) if self.is_alive(b) && self.reachable(from, b) => {
                        self.connect(from, b, addr)
                    }
                    Some(b) if self.is_alive(b) => {
                        let wait = self.connect_timeout.saturating_sub(self.latency);
                        self.deliver(from, wait, Msg::DialFailed(addr));
                    }
                    _ => self.deliver(from, self.latency, Msg::DialFailed(addr)),
                }
            }
            Event::Deliver(i, g, msg) => {
                if self.clients[i].generation != g {
                    return;
                }
                self.receive(i, msg);
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize, addr: SocketAddr) {
        self.next_conn += 1;
        let id = self.next_conn;
        let pa = PeerId(self.next_peer);
        let pb = PeerId(self.next_peer + 1);
        self.next_peer += 2;
        self.conns.insert(
            id,
            Conn {
                ends: [(a, pa, true), (b, pb, true)],
            },
        );
        self.clients[a].peers.insert(pa, (id, 0));
        self.clients[b].peers.insert(pb, (id, 1));
        // The dialer hears of the connection before any byte the acceptor sends.
        self.deliver(a, self.latency, Msg::Dialed(pa, addr));
        let remote = SocketAddr::new(client_addr(a).ip(), 40_000 + (id % 20_000) as u16);
        self.input(b, MeshInput::Accepted { peer: pb, remote });
        if self.is_open(b, pb) {
            self.send_hello(b, pb);
        }
    }

    fn is_open(&self, i: usize, peer: PeerId) -> bool {
        self.clients[i].peers.contains_key(&peer)
    }

    /// The other end of `peer` at client `i`, if the connection is open at both ends.
    fn other(&self, i: usize, peer: PeerId) -> Option<(usize, PeerId)> {
        let &(conn, side) = self.clients[i].peers.get(&peer)?;
        let (b, pb, open) = self.conns.get(&conn)?.ends[1 - side];
        open.then_some((b, pb))
    }

    fn send_hello(&mut self, i: usize, peer: PeerId) {
        let Some(mesh) = self.mesh(i) else { return };
        let (id, alone) = (mesh.id(), mesh.is_alone());
        if let Some((b, pb)) = self.other(i, peer) {
            self.deliver(b, self.latency, Msg::Hello(pb, id, alone));
        }
    }

    fn receive(&mut self, i: usize, msg: Msg) {
        match msg {
            Msg::Dialed(peer, addr) => {
                if !self.is_open(i, peer) {
                    return;
                }
                self.input(i, MeshInput::Dialed { peer, addr });
                if self.is_open(i, peer) {
                    self.send_hello(i, peer);
                }
            }
            Msg::DialFailed(addr) => self.input(i, MeshInput::DialFailed { addr }),
            Msg::Hello(peer, id, alone) => {
                if self.is_open(i, peer) {
                    let hello = MeshInput::Hello {
                        peer,
                        id,
                        listen_port: PORT,
                        alone,
                    };
                    self.input(i, hello);
                }
            }
            Msg::Addrs(peer, addrs) => {
                if self.is_open(i, peer) {
                    self.input(
                        i,
                        MeshInput::Addrs {
                            peer,
                            addrs: &addrs,
                        },
                    );
                }
            }
            Msg::Bye(peer, reason, addrs) => {
                if self.is_open(i, peer) {
                    let bye = MeshInput::Bye {
                        peer,
                        reason,
                        addrs: &addrs,
                    };
                    self.input(i, bye);
                }
            }
            Msg::Closed(peer) => {
                if self.forget_end(i, peer) {
                    self.input(i, MeshInput::Closed { peer });
                }
            }
        }
    }

    /// Marks client `i`'s end closed; `true` if it was open.
    fn forget_end(&mut self, i: usize, peer: PeerId) -> bool {
        let Some((conn, side)) = self.clients[i].peers.remove(&peer) else {
            return false;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ends[side].2 = false;
            if c.ends.iter().all(|e| !e.2) {
                self.conns.remove(&conn);
            }
        }
        true
    }

    /// Client `i` closes its end (after sending `bye`); the other end hears after `after`.
    fn close_end(
        &mut self,
        i: usize,
        peer: PeerId,
        bye: Option<(ByeReason, Vec<SocketAddr>)>,
        after: Duration,
    ) {
        let other = self.other(i, peer);
        self.forget_end(i, peer);
        if let Some((b, pb)) = other {
            if let Some((reason, addrs)) = bye {
                self.deliver(b, after, Msg::Bye(pb, reason, addrs));
            }
            self.deliver(b, after, Msg::Closed(pb));
        }
    }

    /// Both ends of a connection hear it break after `after`.
    fn close_both(&mut self, i: usize, peer: PeerId, after: Duration) {
        if let Some((b, pb)) = self.other(i, peer) {
            self.deliver(b, after, Msg::Closed(pb));
        }
        self.deliver(i, after, Msg::Closed(peer));
    }

    fn input(&mut self, i: usize, input: MeshInput<'_>) {
        let now = self.now;
        let Some(mesh) = self.clients[i].mesh.as_mut() else {
            return;
        };
        mesh.handle(now, input);
        #[cfg(any(test, feature = "fuzzing"))]
        mesh.check_invariants();
        let mut outputs = VecDeque::new();
        while let Some(out) = mesh.poll() {
            outputs.push_back(out);
        }
        for out in outputs {
            self.output(i, out);
        }
        self.arm(i);
    }

    fn arm(&mut self, i: usize) {
        let Some(t) = self.mesh(i).and_then(Mesh::poll_timeout) else {
            return;
        };
        let c = &self.clients[i];
        if c.timer_at.is_some_and(|at| at <= t) {
            return;
        }
        let g = c.generation;
        self.clients[i].timer_at = Some(t);
        self.schedule(t.max(self.now), Event::Timer(i, g));
    }

    fn output(&mut self, i: usize, out: MeshOutput) {
        match out {
            MeshOutput::Dial(addr) => {
                self.counts.dials += 1;
                let g = self.clients[i].generation;
                self.schedule(self.now + self.latency, Event::Arrive(i, g, addr));
            }
            MeshOutput::LinkUp { .. } => self.counts.links_up += 1,
            MeshOutput::SendAddrs { peer, addrs } => {
                if let Some((b, pb)) = self.other(i, peer) {
                    self.deliver(b, self.latency, Msg::Addrs(pb, addrs));
                }
            }
            MeshOutput::Close { peer, bye, why: _ } => {
                if self.is_open(i, peer) {
                    self.close_end(i, peer, bye, self.latency);
                }
            }
            MeshOutput::Notice(n) => match n {
                MeshNotice::Alone => self.counts.alone += 1,
                MeshNotice::Rejoined => self.counts.rejoined += 1,
                MeshNotice::Refused { count, .. } => self.counts.refused += count,
            },
        }
    }

    /// The links between running clients, each once as `[a, b]` with `a < b`, counted only
    /// when both ends see the link.
    pub fn edges(&self) -> Vec<[usize; 2]> {
        let mut edges = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let Some(mesh) = &c.mesh else { continue };
            for (peer, _) in mesh.linked() {
                let Some((b, pb)) = self.other(i, peer) else {
                    continue;
                };
                let both = self
                    .mesh(b)
                    .is_some_and(|m| m.linked().any(|(p, _)| p == pb));
                if both && i < b {
                    edges.push([i, b]);
                }
            }
        }
        edges.sort();
        edges
    }

    /// Links per running client, counting only links whose both ends run and see them.
    pub fn degrees(&self) -> Vec<usize> {
        let adj = self.adjacency();
        self.alive().into_iter().map(|i| adj[i].len()).collect()
    }

    /// The running clients grouped into connected components, largest first.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let adj = self.adjacency();
        let mut seen = vec![false; self.clients.len()];
        let mut comps = Vec::new();
        for s in self.alive() {
            if seen[s] {
                continue;
            }
            seen[s] = true;
            let mut comp = vec![s];
            let mut k = 0;
            while k < comp.len() {
                for &n in &adj[comp[k]] {
                    if !seen[n] {
                        seen[n] = true;
                        comp.push(n);
                    }
                }
                k += 1;
            }
            comp.sort();
            comps.push(comp);
        }
        comps.sort_by_key(|c| Reverse(c.len()));
        comps
    }

    fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.clients.len()];
        for [a, b] in self.edges() {
            adj[a].push(b);
            adj[b].push(a);
        }
        adj
    }

    /// The longest shortest path (in links) within the largest component.
    pub fn diameter(&self) -> usize {
        let adj = self.adjacency();
        let comps = self.components();
        let Some(comp) = comps.first() else { return 0 };
        let mut best = 0;
        let mut dist = vec![usize::MAX; self.clients.len()];
        for &s in comp {
            for &n in comp {
                dist[n] = usize::MAX;
            }
            dist[s] = 0;
            let mut q = VecDeque::from([s]);
            while let Some(u) = q.pop_front() {
                for &v in &adj[u] {
                    if dist[v] == usize::MAX {
                        dist[v] = dist[u] + 1;
                        best = best.max(dist[v]);
                        q.push_back(v);
                    }
                }
            }
        }
        best
    }

    /// Runs in steps of `step` until the running clients form one component, at most for
    /// `limit`; the virtual time it took, or `None`.
    pub fn time_to_one_component(&mut self, step: Duration, limit: Duration) -> Option<Duration> {
        let start = self.now;
        loop {
            if self.components().len() <= 1 {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }
}

/// Figures of a join-then-crash run ([`join_then_crash`]).
#[derive(Debug, Clone)]
pub struct JoinCrashReport {
    /// Clients that joined.
    pub clients: usize,
    /// Links per client after the joins settled: min, median, max.
    pub degree: [usize; 3],
    /// Most inbound links of any client after the joins.
    pub max_inbound: usize,
    /// Components after the joins settled.
    pub components: usize,
    /// The diameter of the largest component after the joins.
    pub diameter: usize,
    /// Clients crashed.
    pub crashed: usize,
    /// Virtual time from the crash until the survivors formed one component again.
    pub heal_time: Option<Duration>,
    /// Virtual time from the crash until every survivor had its target number of links again.
    pub refill_time: Option<Duration>,
    /// Links per survivor after healing: min, median, max.
    pub degree_after: [usize; 3],
    /// Dials asked for in all.
    pub dials: u64,
}

/// `n` clients join one every `gap`, each through a random running client, over links of
/// one-way `latency`; the run settles for `settle`; then `crash_percent`% of them crash at once, and the survivors' time to one
/// component is measured (in steps of 100 ms, at most 10 minutes).
pub fn join_then_crash(
    config: MeshConfig,
    n: usize,
    latency: Duration,
    gap: Duration,
    settle: Duration,
    crash_percent: usize,
    seed: u64,
) -> (MeshSim, JoinCrashReport) {
    let mut sim = MeshSim::new(config, seed);
    sim.latency = latency;
    sim.join(None);
    for _ in 1..n {
        sim.run_for(gap);
        let contact = sim.random_alive();
        sim.join(contact);
    }
    sim.run_for(settle);
    let summary = |d: &mut Vec<usize>| {
        d.sort();
        if d.is_empty() {
            [0; 3]
        } else {
            [d[0], d[d.len() / 2], d[d.len() - 1]]
        }
    };
    let degree = summary(&mut sim.degrees());
    let max_inbound = sim
        .alive()
        .iter()
        .filter_map(|&i| sim.mesh(i).map(Mesh::inbound_links))
        .max()
        .unwrap_or(0);
    let components = sim.components().len();
    let diameter = sim.diameter();
    let crashed = n * crash_percent / 100;
    let mut alive = sim.alive();
    sim.rng.shuffle(&mut alive);
    for &i in &alive[..crashed] {
        sim.crash(i);
    }
    let heal_time = sim.time_to_one_component(Duration::from_millis(100), Duration::from_secs(600));
    let target = sim.config.links;
    let start = sim.now;
    let refill_time = loop {
        if sim.degrees().iter().all(|&d| d >= target) {
            break Some(sim.now - start);
        }
        if sim.now - start >= Duration::from_secs(600) {
            break None;
        }
        sim.run_for(Duration::from_millis(100));
    };
    let degree_after = summary(&mut sim.degrees());
    let report = JoinCrashReport {
        clients: n,
        degree,
        max_inbound,
        components,
        diameter,
        crashed,
        heal_time,
        refill_time,
        degree_after,
        dials: sim.counts.dials,
    };
    (sim, report)
}
