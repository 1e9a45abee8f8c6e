//! Exhaustive exploration of a small network: every interleaving of typing, connecting,
//! disconnecting, delivering and closing, breadth first over the sans-IO states.
//!
//! The environment is a set of [`Event`]s, each happening once at any moment (a
//! `Disconnect` only while its pair has a working link; a `Restart` kills a client's process
//! and starts it again on its data directory, holding what it printed). Between them, any link direction
//! may deliver its oldest write, whole, to an end that is still open, and any end may hear
//! that its link closed: after a break, or once the other end closed its socket and what it
//! wrote has been delivered. Writes are acknowledged at once, dials a client asks for fail at
//! once (the environment's connects are the links explored), and time stands still (no
//! timers fire): what varies is only the order of things, which is what flooding must
//! survive. Splitting bytes, dials and time are the random simulator's job
//! ([`super::Sim`]).
//!
//! Each client has its own identity (`ClientId(c + 1)`) and listens at
//! [`client_addr`]`(c)`; a `Connect(a, b)` is dialed by `a`, which gets `Dialed`, and
//! accepted by `b`, which gets `Accepted` (unless a link `a` dialed to `b` is still open: then
//! `b` dials, as [`super::Sim::connect`] does). End `e` of link `l` is `PeerId(2 * l + e)`.
//!
//! [`FloodState`] is neither `Clone` nor `Hash`, so a state of the exploration is an
//! abstract one, `Abs`: each client's log with the origin of each string, each link's ends,
//! greetings, Hellos, Byes and queued writes, and a hash of every input each client was fed,
//! in order. The core is deterministic, so those inputs fix all it keeps, the mesh (address
//! book, dial tokens, its random generator) and each link's reconciler included; two paths
//! merge when they feed every client the same inputs in the same order, whatever the
//! interleaving between clients. To expand a state, each client's `FloodState` is rebuilt
//! by replaying its own inputs. Whenever a path reaches a state seen before, the public view
//! of every client (messages in order, peers, readiness, flushed, timer) must be the same as
//! the first time: a check that the core is deterministic.
//!
//! Checked on every transition: nothing printed twice or untyped; every connection opens with
//! the greeting and the client's own Hello; nothing sent to a peer that is not connected, no
//! Text before the peer's Hello, nothing back where it first came from, nothing after a Bye;
//! a Bye for a duplicate only while another connection to that client stays, one for a
//! self-connection only on one; no peer dropped by a client on its own except on purpose or
//! for a Bye it received. Checked in every quiescent state (nothing deliverable, no close
//! pending), whatever events remain: in each component of working links, every client holds
//! the same set, which holds everything typed in the component, and is flushed; no two
//! working links join the same two clients, and not every link between two clients was
//! closed as a duplicate.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use hashbrown::HashMap;

use super::Components;
use super::network::{LISTEN_PORT, client_addr, client_at};
use crate::secure::Identity;
use crate::wire::{ByeReason, ClientId, Decoded, Frame, FrameDecoder, GREETING, Hello};
use crate::{Config, DisconnectReason, FloodState, Input, Output, PeerId};

/// Something the environment does once, at any point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The client types a string, named after the event's position in the list.
    Type(usize),
    /// The first client dials the second and a new link opens (the second dials if a link
    /// the first dialed to it is still open, as in [`super::Sim::connect`]).
    Connect(usize, usize),
    /// The newest working link between the two clients breaks; writes in it are lost, and
    /// each end hears of it later.
    Disconnect(usize, usize),
    /// The client's process is killed and started again on its data directory: its links
    /// break (the other ends hear of it later), and the new process, with the same identity,
    /// restores every string the old one printed ([`FloodState::restore`]) and starts.
    Restart(usize),
}

/// What to explore.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Number of clients.
    pub clients: usize,
    /// The environment's events, each happening once, in any order.
    pub events: Vec<Event>,
    /// Give up (with an error) beyond this many distinct states.
    pub max_states: usize,
    /// Let links also lose their oldest write, which TCP never does: only to show that the
    /// checks catch what that breaks.
    pub lossy: bool,
}

impl ModelConfig {
    /// Two clients, a string typed at each, their link made, broken and made again (while
    /// the first may still be open at one end): the configuration `cargo test` checks.
    pub fn two_clients_reconnect() -> Self {
        Self {
            clients: 2,
            events: vec![
                Event::Type(0),
                Event::Type(1),
                Event::Connect(0, 1),
                Event::Disconnect(0, 1),
                Event::Connect(0, 1),
            ],
            max_states: 10_000_000,
            lossy: false,
        }
    }

    /// Three clients joined in a chain 0–1–2, a string typed at each end.
    pub fn three_clients_chain_short() -> Self {
        Self {
            clients: 3,
            events: vec![
                Event::Type(0),
                Event::Type(2),
                Event::Connect(0, 1),
                Event::Connect(1, 2),
            ],
            max_states: 10_000_000,
            lossy: false,
        }
    }

    /// Two clients, a string typed at the first, their link made; the second restarts on its
    /// data directory (having printed the string or not yet) and the link is made again.
    pub fn two_clients_restart() -> Self {
        Self {
            clients: 2,
            events: vec![
                Event::Type(0),
                Event::Connect(0, 1),
                Event::Restart(1),
                Event::Connect(0, 1),
            ],
            max_states: 10_000_000,
            lossy: false,
        }
    }

    /// Three clients in a chain 0–1–2, a string typed at each end, link 0–1 broken and made
    /// again (while the first may still be up: a duplicate): the configuration `cargo test`
    /// checks.
    pub fn three_clients_chain() -> Self {
        Self {
            clients: 3,
            events: vec![
                Event::Type(0),
                Event::Type(2),
                Event::Connect(0, 1),
                Event::Connect(1, 2),
                Event::Disconnect(0, 1),
                Event::Connect(0, 1),
            ],
            max_states: 10_000_000,
            lossy: false,
        }
    }
}

/// What an exploration covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Distinct states reached.
    pub states: usize,
    /// Transitions taken.
    pub transitions: u64,
    /// Transitions that reached a state already seen (its public view compared).
    pub merged: u64,
    /// Distinct quiescent states, where convergence was checked.
    pub quiescent: usize,
    /// Quiescent states with every event done: the ends of complete runs.
    pub terminal: usize,
    /// Longest path from the start, in transitions.
    pub max_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AbsLink {
    /// `ends[0]` dialed, `ends[1]` accepted.
    ends: [usize; 2],
    /// Not broken.
    up: bool,
    /// Whether `ends[e]` has the peer.
    open: [bool; 2],
    /// Whether `ends[e]` has written its greeting and Hello.
    introduced: [bool; 2],
    /// Whether `ends[e]` said `PeerReady`.
    ready: [bool; 2],
    /// The Bye `ends[e]` sent, if any.
    bye: [Option<ByeReason>; 2],
    /// `queue[e]`: writes of `ends[e]` not yet delivered.
    queue: [VecDeque<Vec<u8>>; 2],
    /// How many of `queue[e]`'s first writes are handshake messages.
    handshake: [usize; 2],
    /// Whether `ends[e]` has yet to hear that the link closed.
    close_pending: [bool; 2],
}

impl AbsLink {
    /// Whether end `e` may hear now that the link closed: after a break at once, after the
    /// other end closed once what it wrote is delivered.
    fn may_close(&self, e: usize) -> bool {
        self.close_pending[e] && (!self.up || self.queue[1 - e].is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Abs {
    fired: u64,
    /// Per client: a hash of every input it was fed, in order. The core is deterministic, so
    /// this fixes its whole state (mesh, address book, reconcilers, timers), which its getters
    /// do not show.
    inputs: Vec<u64>,
    /// Per client: (string, link it first came from) in the order learned.
    logs: Vec<Vec<(usize, Option<usize>)>>,
    links: Vec<AbsLink>,
    /// Per client: how many times it restarted, and the strings its current process restored.
    incarnations: Vec<(u8, Vec<usize>)>,
}

#[derive(Debug, Clone, Copy)]
enum Move {
    Env(usize),
    Deliver { link: usize, from: usize },
    Lose { link: usize, from: usize },
    Close { link: usize, end: usize },
}

#[derive(Debug, Clone, Hash)]
enum Owned {
    Typed(String),
    Dialed(u64, SocketAddr),
    Accepted(u64, SocketAddr),
    DialFailed(SocketAddr),
    Received(u64, Vec<u8>),
    Sent(u64),
    Closed(u64),
}

impl Owned {
    fn as_input(&self) -> Input<'_> {
        match self {
            Owned::Typed(t) => Input::LineTyped(t.as_bytes()),
            Owned::Dialed(p, addr) => Input::Dialed {
                peer: PeerId(*p),
                addr: *addr,
            },
            Owned::Accepted(p, remote) => Input::Accepted {
                peer: PeerId(*p),
                remote: *remote,
            },
            Owned::DialFailed(addr) => Input::DialFailed(*addr),
            Owned::Received(p, b) => Input::Received(PeerId(*p), b),
            Owned::Sent(p) => Input::Sent(PeerId(*p)),
            Owned::Closed(p) => Input::Closed(PeerId(*p)),
        }
    }
}

/// A persistent list, newest first: histories and traces share their common past.
#[derive(Debug)]
struct List<T> {
    head: T,
    tail: Option<Rc<List<T>>>,
}

fn push<T>(list: &Option<Rc<List<T>>>, head: T) -> Option<Rc<List<T>>> {
    Some(Rc::new(List {
        head,
        tail: list.clone(),
    }))
}

fn to_vec<T: Clone>(mut list: &Option<Rc<List<T>>>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(node) = list {
        out.push(node.head.clone());
        list = &node.tail;
    }
    out.reverse();
    out
}

#[derive(Debug, Clone)]
struct Node {
    abs: Abs,
    history: Vec<Option<Rc<List<Owned>>>>,
    view: Vec<u64>,
    flushed: Vec<bool>,
    trace: Option<Rc<List<Move>>>,
    depth: usize,
}

/// Explores every interleaving of `config`, checking the properties in the module docs.
///
/// `Err` describes the first violation found, with the path that reaches it.
pub fn explore(config: &ModelConfig) -> Result<ModelStats, String> {
    assert!(config.events.len() <= 64, "at most 64 events");
    // Every state is rebuilt by replaying its clients' inputs, handshakes included: each
    // X25519 result is computed once and remembered.
    crate::secure::memoize_dh(true);
    let ctx = Ctx {
        t0: Instant::now(),
        clients: config.clients,
        texts: (0..config.events.len()).map(|i| format!("s{i}")).collect(),
        events: config.events.clone(),
    };
    let n = config.clients;
    let root = Node {
        abs: Abs {
            fired: 0,
            inputs: vec![0; n],
            logs: vec![Vec::new(); n],
            links: Vec::new(),
            incarnations: vec![(0, Vec::new()); n],
        },
        history: vec![None; n],
        view: (0..n).map(|c| ctx.view(&ctx.fresh(c, 0, &[]), 0)).collect(),
        flushed: vec![true; n],
        trace: None,
        depth: 0,
    };
    let mut stats = ModelStats::default();
    let mut seen: HashMap<u128, u64> = HashMap::new();
    seen.insert(fingerprint(&root.abs), view_hash(&root.view));
    let mut frontier = VecDeque::from([root]);
    while let Some(node) = frontier.pop_front() {
        stats.states += 1;
        stats.max_depth = stats.max_depth.max(node.depth);
        let moves = ctx.moves(&node.abs, config.lossy);
        if is_quiescent(&node.abs) {
            stats.quiescent += 1;
            if node.abs.fired.count_ones() as usize == ctx.events.len() {
                stats.terminal += 1;
            }
            ctx.check_converged(&node)
                .map_err(|e| format!("{e}\n{}", ctx.describe(&node.trace)))?;
        }
        for m in moves {
            stats.transitions += 1;
            let next = ctx
                .apply(&node, m)
                .map_err(|e| format!("{e}\n{}", ctx.describe(&push(&node.trace, m))))?;
            let fp = fingerprint(&next.abs);
            let view = view_hash(&next.view);
            match seen.get(&fp) {
                Some(&old) => {
                    stats.merged += 1;
                    if old != view {
                        return Err(format!(
                            "model checker bug: two paths reach the same abstract state with \
                             different public views\n{}",
                            ctx.describe(&next.trace)
                        ));
                    }
                }
                None => {
                    if seen.len() >= config.max_states {
                        return Err(format!("more than {} states", config.max_states));
                    }
                    seen.insert(fp, view);
                    frontier.push_back(next);
                }
            }
        }
    }
    Ok(stats)
}

fn is_quiescent(abs: &Abs) -> bool {
    abs.links.iter().all(|l| {
        l.close_pending == [false, false]
            && (!l.up || (0..2).all(|e| l.queue[e].is_empty() || !l.open[1 - e]))
    })
}

fn fingerprint(abs: &Abs) -> u128 {
    let mut a = DefaultHasher::new();
    abs.hash(&mut a);
    let mut b = DefaultHasher::new();
    0x5eed_u64.hash(&mut b);
    abs.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

fn view_hash(view: &[u64]) -> u64 {
    let mut h = DefaultHasher::new();
    view.hash(&mut h);
    h.finish()
}

/// The name end `e` of link `l` has for it.
fn peer_id(l: usize, e: usize) -> PeerId {
    PeerId(2 * l as u64 + e as u64)
}

/// Decodes one whole write; `Err` if it is not whole frames of floodchat. A write that
/// begins with the greeting is a connection's first.
fn decode_write(bytes: &[u8]) -> Result<Vec<Decoded>, String> {
    let mut decoder = FrameDecoder::new();
    if !bytes.starts_with(&GREETING) {
        let mut primer = GREETING.to_vec();
        Frame::Hello(Hello {
            client: ClientId(0),
            listen_port: 0,
            alone: false,
        })
        .encode(&mut primer);
        let mut input = &primer[..];
        while decoder
            .decode(&mut input)
            .expect("a valid stream")
            .is_some()
        {}
    }
    let mut items = Vec::new();
    let mut input = bytes;
    while let Some(item) = decoder
        .decode(&mut input)
        .map_err(|err| format!("bytes that are not floodchat: {err}"))?
    {
        items.push(item);
    }
    if decoder.is_mid_item() {
        return Err("part of a frame".into());
    }
    Ok(items)
}

struct Ctx {
    t0: Instant,
    clients: usize,
    texts: Vec<String>,
    events: Vec<Event>,
}

/// One transition being applied: the successor under construction.
struct Succ<'a> {
    ctx: &'a Ctx,
    node: Node,
    states: HashMap<usize, FloodState>,
    /// The end being fed `Closed`, which must answer with `Disconnect`.
    closing: Option<(usize, usize)>,
}

impl Ctx {
    /// Client `c`'s identity.
    fn id(c: usize) -> ClientId {
        Self::identity(c).client_id()
    }

    /// Client `c`'s key.
    fn identity(c: usize) -> Identity {
        Identity::from_seed(c as u64 + 1)
    }

    /// Client `c`'s process number `incarnation`, which restored the strings `restored`
    /// from its data directory, started with no contact.
    fn fresh(&self, c: usize, incarnation: u8, restored: &[usize]) -> FloodState {
        let config = Config {
            identity: Self::identity(c),
            entropy: [c as u8 | incarnation << 4; 32],
            seed: c as u64,
            listen_port: LISTEN_PORT,
            ..Config::default()
        };
        let mut s = FloodState::new(config, self.t0);
        s.tap();
        for &i in restored {
            assert!(
                s.restore(self.texts[i].as_bytes()),
                "a kept string restores"
            );
        }
        s.handle_input(self.t0, Input::Start { contact: None })
            .expect("a client starts");
        while s.poll_output().is_some() {}
        s
    }

    /// The public view of a client: everything its getters tell.
    fn view(&self, s: &FloodState, links: usize) -> u64 {
        let mut h = DefaultHasher::new();
        s.messages().collect::<Vec<_>>().hash(&mut h);
        s.peer_count().hash(&mut h);
        for p in (0..2 * links as u64).filter(|&p| s.is_connected(PeerId(p))) {
            (p, s.is_ready(PeerId(p))).hash(&mut h);
        }
        s.is_flushed().hash(&mut h);
        s.poll_timeout()
            .map(|t| t.saturating_duration_since(self.t0))
            .hash(&mut h);
        h.finish()
    }

    fn moves(&self, abs: &Abs, lossy: bool) -> Vec<Move> {
        let mut moves = Vec::new();
        for (i, event) in self.events.iter().enumerate() {
            if abs.fired & (1 << i) != 0 {
                continue;
            }
            let enabled = match *event {
                Event::Type(_) | Event::Connect(..) | Event::Restart(_) => true,
                Event::Disconnect(a, b) => newest_link(abs, a, b).is_some(),
            };
            if enabled {
                moves.push(Move::Env(i));
            }
        }
        for (l, link) in abs.links.iter().enumerate() {
            for e in 0..2 {
                if link.up && link.open[1 - e] && !link.queue[e].is_empty() {
                    moves.push(Move::Deliver { link: l, from: e });
                    if lossy {
                        moves.push(Move::Lose { link: l, from: e });
                    }
                }
                if link.may_close(e) {
                    moves.push(Move::Close { link: l, end: e });
                }
            }
        }
        moves
    }

    fn apply(&self, node: &Node, m: Move) -> Result<Node, String> {
        let mut next = node.clone();
        next.trace = push(&node.trace, m);
        next.depth += 1;
        let mut step = Succ {
            ctx: self,
            node: next,
            states: HashMap::new(),
            closing: None,
        };
        match m {
            Move::Env(i) => {
                step.node.abs.fired |= 1 << i;
                match self.events[i] {
                    Event::Type(c) => step.feed(c, Owned::Typed(self.texts[i].clone()))?,
                    Event::Connect(a, b) => {
                        let Some((a, b)) = dial_side(&step.node.abs, a, b) else {
                            return Ok(step.node);
                        };
                        let l = step.node.abs.links.len();
                        step.node.abs.links.push(AbsLink {
                            ends: [a, b],
                            up: true,
                            open: [true, true],
                            introduced: [false, false],
                            ready: [false, false],
                            bye: [None, None],
                            queue: Default::default(),
                            handshake: [0, 0],
                            close_pending: [false, false],
                        });
                        let remote = SocketAddr::new(client_addr(a).ip(), 49152 + l as u16);
                        step.feed(a, Owned::Dialed(peer_id(l, 0).0, client_addr(b)))?;
                        step.feed(b, Owned::Accepted(peer_id(l, 1).0, remote))?;
                        step.handshake(l)?;
                    }
                    Event::Restart(c) => step.restart(c),
                    Event::Disconnect(a, b) => {
                        let l = newest_link(&step.node.abs, a, b).expect("enabled");
                        let link = &mut step.node.abs.links[l];
                        link.up = false;
                        link.queue = Default::default();
                        link.handshake = [0, 0];
                        link.close_pending = link.open;
                    }
                }
            }
            Move::Deliver { link, from } => {
                let l = &mut step.node.abs.links[link];
                l.handshake[from] = l.handshake[from].saturating_sub(1);
                let bytes = l.queue[from].pop_front().expect("enabled");
                let c = step.node.abs.links[link].ends[1 - from];
                step.feed(c, Owned::Received(peer_id(link, 1 - from).0, bytes))?;
            }
            Move::Lose { link, from } => {
                let link = &mut step.node.abs.links[link];
                link.queue[from].pop_front();
                link.handshake[from] = link.handshake[from].saturating_sub(1);
            }
            Move::Close { link, end } => {
                step.node.abs.links[link].close_pending[end] = false;
                let c = step.node.abs.links[link].ends[end];
                step.closing = Some((link, end));
                step.feed(c, Owned::Closed(peer_id(link, end).0))?;
                if step.node.abs.links[link].open[end] {
                    return Err(format!(
                        "client {c}: Closed({}) not answered by Disconnect",
                        peer_id(link, end)
                    ));
                }
            }
        }
        let links = step.node.abs.links.len();
        for (&c, s) in &step.states {
            step.node.view[c] = self.view(s, links);
            step.node.flushed[c] = s.is_flushed();
        }
        Ok(step.node)
    }

    fn check_converged(&self, node: &Node) -> Result<(), String> {
        let abs = &node.abs;
        let n = abs.logs.len();
        // A link either end has said Bye on carries nothing more: each end ignores what it
        // reads once closing, and both may wait for the linger, which the model never fires.
        let working = |l: &AbsLink| l.up && l.open == [true, true] && l.bye == [None, None];
        let mut components =
            Components::new(n, abs.links.iter().filter(|l| working(l)).map(|l| l.ends));
        let set = |c: usize| {
            let mut s: Vec<usize> = abs.logs[c].iter().map(|&(i, _)| i).collect();
            s.sort_unstable();
            s
        };
        for c in 0..n {
            if !node.flushed[c] {
                return Err(format!("client {c} is not flushed in a quiescent state"));
            }
            for d in 0..n {
                if components.of(c) != components.of(d) {
                    continue;
                }
                if set(c) != set(d) {
                    return Err(format!(
                        "clients {c} and {d} are connected and quiet but hold {:?} and {:?}",
                        set(c),
                        set(d)
                    ));
                }
                for (i, event) in self.events.iter().enumerate() {
                    if abs.fired & (1 << i) != 0 && *event == Event::Type(d) && !set(c).contains(&i)
                    {
                        return Err(format!(
                            "client {c} lacks s{i}, typed by client {d} of its component"
                        ));
                    }
                }
            }
            for d in c + 1..n {
                let between: Vec<&AbsLink> = abs
                    .links
                    .iter()
                    .filter(|l| l.ends == [c, d] || l.ends == [d, c])
                    .collect();
                if between.iter().filter(|l| working(l)).count() > 1 {
                    return Err(format!(
                        "clients {c} and {d} are joined by more than one working link"
                    ));
                }
                let duplicate = |l: &&AbsLink| l.bye.contains(&Some(ByeReason::Duplicate));
                if !between.is_empty() && between.iter().all(duplicate) {
                    return Err(format!(
                        "clients {c} and {d} closed every link between them as a duplicate"
                    ));
                }
            }
        }
        Ok(())
    }

    fn describe(&self, trace: &Option<Rc<List<Move>>>) -> String {
        let mut s = String::from("path from the start:\n");
        for m in to_vec(trace) {
            let _ = match m {
                Move::Env(i) => writeln!(s, "  {:?}", self.events[i]),
                Move::Deliver { link, from } => {
                    writeln!(s, "  deliver the oldest write of {}", peer_id(link, from))
                }
                Move::Lose { link, from } => {
                    writeln!(s, "  lose the oldest write of {}", peer_id(link, from))
                }
                Move::Close { link, end } => {
                    writeln!(s, "  {} hears that its link closed", peer_id(link, end))
                }
            };
        }
        s
    }
}

impl Succ<'_> {
    /// Client `c`'s process dies and starts again on its data directory: its links break
    /// (its own ends are gone; the other ends hear of it later), and the new process holds
    /// what the old one printed.
    fn restart(&mut self, c: usize) {
        let abs = &mut self.node.abs;
        for link in abs.links.iter_mut().filter(|l| l.ends.contains(&c)) {
            link.up = false;
            link.queue = Default::default();
            link.handshake = [0, 0];
            for e in 0..2 {
                if link.ends[e] == c {
                    link.open[e] = false;
                    link.close_pending[e] = false;
                } else {
                    link.close_pending[e] = link.open[e];
                }
            }
        }
        let (incarnation, _) = abs.incarnations[c];
        let restored: Vec<usize> = abs.logs[c].iter().map(|&(i, _)| i).collect();
        abs.incarnations[c] = (incarnation + 1, restored);
        let mut h = DefaultHasher::new();
        abs.incarnations[c].hash(&mut h);
        abs.inputs[c] = h.finish();
        self.node.history[c] = None;
        self.states.remove(&c);
        self.state(c);
    }

    /// Delivers link `l`'s handshake messages at once, in order, until neither end has one
    /// to deliver: the model explores interleavings of the links' frames; those of the
    /// handshake are the random simulator's and the fuzzers' to explore.
    fn handshake(&mut self, l: usize) -> Result<(), String> {
        loop {
            let link = &self.node.abs.links[l];
            let Some(from) = (0..2).find(|&e| link.handshake[e] > 0) else {
                return Ok(());
            };
            let link = &mut self.node.abs.links[l];
            link.handshake[from] -= 1;
            let bytes = link.queue[from].pop_front().expect("a handshake message");
            if !(link.up && link.open[1 - from]) {
                continue;
            }
            let c = link.ends[1 - from];
            self.feed(c, Owned::Received(peer_id(l, 1 - from).0, bytes))?;
        }
    }

    /// The state of client `c`, rebuilt from its history on first use.
    fn state(&mut self, c: usize) -> &mut FloodState {
        let ctx = self.ctx;
        let history = &self.node.history[c];
        let (incarnation, restored) = &self.node.abs.incarnations[c];
        self.states.entry(c).or_insert_with(|| {
            let mut s = ctx.fresh(c, *incarnation, restored);
            for input in to_vec(history) {
                s.handle_input(ctx.t0, input.as_input())
                    .expect("an input accepted before is accepted again");
                while s.poll_output().is_some() {}
                while s.tapped_send().is_some() {}
            }
            s
        })
    }

    /// Feeds `input` to client `c` and carries out the outputs, acknowledging writes at once
    /// and failing dials at once.
    fn feed(&mut self, c: usize, input: Owned) -> Result<(), String> {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let t0 = self.ctx.t0;
            let state = self.state(c);
            state
                .handle_input(t0, input.as_input())
                .map_err(|e| format!("client {c} refused {input:?}: {e}"))?;
            let mut outputs = Vec::new();
            let mut printed = VecDeque::new();
            // What each Send's records carry, in order.
            let mut carried = VecDeque::new();
            while let Some(o) = state.poll_output() {
                match o {
                    Output::Print(index) => printed.push_back(state.message(index).to_string()),
                    Output::Send { .. } => {
                        carried.push_back(state.tapped_send().unwrap_or_default())
                    }
                    _ => {}
                }
                outputs.push(o);
            }
            let opened = state.tapped_read().unwrap_or_default().to_vec();
            let (origin, bye_in) = match &input {
                Owned::Received(p, _) => {
                    let bye = decode_write(&opened).ok().and_then(|items| {
                        items.iter().find_map(|item| match item {
                            Decoded::Frame(Frame::Bye { reason, .. }) => Some(*reason),
                            _ => None,
                        })
                    });
                    (Some(*p as usize / 2), bye)
                }
                _ => (None, None),
            };
            let received_on = match &input {
                Owned::Received(p, _) => Some(PeerId(*p)),
                _ => None,
            };
            let mut h = DefaultHasher::new();
            (self.node.abs.inputs[c], &input).hash(&mut h);
            self.node.abs.inputs[c] = h.finish();
            self.node.history[c] = push(&self.node.history[c], input);
            for output in outputs {
                match output {
                    Output::Print(_) => {
                        let text = printed.pop_front().expect("one text per Print");
                        let i = self
                            .ctx
                            .texts
                            .iter()
                            .position(|t| **t == *text)
                            .ok_or_else(|| format!("client {c} printed {text:?}, never typed"))?;
                        let log = &mut self.node.abs.logs[c];
                        if log.iter().any(|&(j, _)| j == i) {
                            return Err(format!("client {c} printed {text:?} twice"));
                        }
                        log.push((i, origin));
                    }
                    Output::Send { peer, bytes } => {
                        let (l, e) = self.end(c, peer)?;
                        let plain = carried.pop_front().unwrap_or_default();
                        // A handshake message carries no frames.
                        if !plain.is_empty() {
                            self.check_send(c, l, e, &plain)?;
                        }
                        let link = &mut self.node.abs.links[l];
                        if link.up && link.open[1 - e] {
                            link.handshake[e] += usize::from(plain.is_empty());
                            link.queue[e].push_back(bytes);
                        }
                        inputs.push_back(Owned::Sent(peer.0));
                    }
                    Output::PeerReady(peer) => {
                        let (l, e) = self.end(c, peer)?;
                        let link = &mut self.node.abs.links[l];
                        if link.ready[e] {
                            return Err(format!("client {c}: PeerReady({peer}) twice"));
                        }
                        link.ready[e] = true;
                    }
                    Output::Disconnect { peer, reason } => {
                        let (l, e) = self.end(c, peer)?;
                        let fits = match reason {
                            _ if self.closing == Some((l, e)) => true,
                            DisconnectReason::Local(_) => true,
                            DisconnectReason::Bye(r) => {
                                received_on == Some(peer) && bye_in == Some(r)
                            }
                            _ => false,
                        };
                        if !fits {
                            return Err(format!("client {c} dropped {peer}: {reason}"));
                        }
                        self.end_closes(l, e);
                    }
                    Output::Dial(addr) => inputs.push_back(Owned::DialFailed(addr)),
                    Output::Notice(_) => {}
                }
            }
            // A write acknowledged after its peer is gone has nobody to tell.
            inputs.retain(|i| match i {
                Owned::Sent(p) => {
                    let link = &self.node.abs.links[*p as usize / 2];
                    link.open[*p as usize % 2]
                }
                _ => true,
            });
        }
        Ok(())
    }

    /// End `e` of link `l` closes its socket: it reads nothing more, and the other end hears
    /// that the link closed once what `e` wrote is delivered.
    fn end_closes(&mut self, l: usize, e: usize) {
        let link = &mut self.node.abs.links[l];
        link.open[e] = false;
        link.close_pending[e] = false;
        link.queue[1 - e].clear();
        link.handshake[1 - e] = 0;
        link.close_pending[1 - e] = link.open[1 - e] && self.closing != Some((l, 1 - e));
    }

    /// The link and end of `peer` at client `c`, which must be open.
    fn end(&self, c: usize, peer: PeerId) -> Result<(usize, usize), String> {
        let (l, e) = (peer.0 as usize / 2, peer.0 as usize % 2);
        self.node
            .abs
            .links
            .get(l)
            .filter(|link| link.ends[e] == c && link.open[e])
            .map(|_| (l, e))
            .ok_or_else(|| format!("client {c} addressed {peer}, which is not connected"))
    }

    fn check_send(&mut self, c: usize, l: usize, e: usize, bytes: &[u8]) -> Result<(), String> {
        let peer = peer_id(l, e);
        let items = decode_write(bytes).map_err(|err| format!("client {c} sent {peer} {err}"))?;
        let link = &self.node.abs.links[l];
        let mut expect_hello = false;
        if !link.introduced[e] {
            if items.first() != Some(&Decoded::Greeting) {
                return Err(format!("client {c} wrote to {peer} before its greeting"));
            }
            expect_hello = true;
        }
        self.node.abs.links[l].introduced[e] = true;
        for item in items {
            let link = &self.node.abs.links[l];
            if let Some(bye) = link.bye[e] {
                return Err(format!(
                    "client {c} sent {peer} more after its Bye ({bye}): {item:?}"
                ));
            }
            if expect_hello && !matches!(item, Decoded::Greeting | Decoded::Frame(Frame::Hello(_)))
            {
                return Err(format!("client {c} sent {peer} {item:?} before its Hello"));
            }
            match item {
                Decoded::Greeting => {}
                Decoded::Frame(Frame::Hello(hello)) => {
                    expect_hello = false;
                    if hello.client != Ctx::id(c) || hello.listen_port != LISTEN_PORT {
                        return Err(format!(
                            "client {c} introduced itself to {peer} as {hello:?}"
                        ));
                    }
                }
                Decoded::Frame(Frame::Text(text)) => {
                    if !link.ready[e] {
                        return Err(format!(
                            "client {c} sent {text:?} to {peer} before its Hello"
                        ));
                    }
                    let entry = self.node.abs.logs[c]
                        .iter()
                        .find(|&&(i, _)| self.ctx.texts[i] == text)
                        .ok_or_else(|| {
                            format!("client {c} sent {text:?}, which it does not hold")
                        })?;
                    if entry.1 == Some(l) {
                        return Err(format!(
                            "client {c} sent {text:?} back to {peer}, where it first came from"
                        ));
                    }
                }
                Decoded::Frame(Frame::Addrs(addrs)) => self.check_addrs(c, peer, &addrs)?,
                Decoded::Frame(Frame::Bye { reason, addrs }) => {
                    self.check_addrs(c, peer, &addrs)?;
                    self.check_bye(c, l, e, reason)?;
                    self.node.abs.links[l].bye[e] = Some(reason);
                }
                Decoded::Frame(Frame::Ping | Frame::Recon(_) | Frame::Want(_)) => {}
                Decoded::Skipped { kind } => {
                    return Err(format!(
                        "client {c} sent {peer} a frame of unknown kind {kind}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_addrs(&self, c: usize, peer: PeerId, addrs: &[SocketAddr]) -> Result<(), String> {
        match addrs
            .iter()
            .find(|&&a| client_at(a).is_none_or(|t| t >= self.ctx.clients))
        {
            Some(addr) => Err(format!(
                "client {c} told {peer} of {addr}, where no client listens"
            )),
            None => Ok(()),
        }
    }

    /// What a Bye from end `e` of link `l` claims must hold.
    fn check_bye(&self, c: usize, l: usize, e: usize, reason: ByeReason) -> Result<(), String> {
        let links = &self.node.abs.links;
        let other = links[l].ends[1 - e];
        let fits = match reason {
            ByeReason::SelfConnection => other == c,
            ByeReason::Duplicate => {
                other != c
                    && links.iter().enumerate().any(|(m, k)| {
                        m != l
                            && (0..2).any(|f| {
                                k.ends[f] == c
                                    && k.ends[1 - f] == other
                                    && k.open[f]
                                    && k.bye[f].is_none()
                            })
                    })
            }
            _ => true,
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "client {c} said Bye ({reason}) to {} of client {other}, which is not so",
                peer_id(l, e)
            ))
        }
    }
}

/// Who dials for `Connect(a, b)`: `a`, unless a link `a` dialed to `b` is still open at
/// either end, then `b` (and if that is open too, nobody), as [`super::Sim::connect`] does.
fn dial_side(abs: &Abs, a: usize, b: usize) -> Option<(usize, usize)> {
    let open = |x, y| {
        abs.links
            .iter()
            .any(|l| l.ends == [x, y] && l.open.contains(&true))
    };
    if a == b || !open(a, b) {
        Some((a, b))
    } else if !open(b, a) {
        Some((b, a))
    } else {
        None
    }
}

fn newest_link(abs: &Abs, a: usize, b: usize) -> Option<usize> {
    abs.links
        .iter()
        .rposition(|l| l.up && (l.ends == [a, b] || l.ends == [b, a]))
}
