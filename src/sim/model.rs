//! Exhaustive exploration of a small network: every interleaving of typing, connecting,
//! disconnecting, delivering and closing, breadth first over the sans-IO states.
//!
//! The environment is a set of [`Event`]s, each happening once at any moment (a
//! `Disconnect` only while its pair has a working link). Between them, any link direction
//! may deliver its oldest write, whole, and any end of a broken link may hear that it
//! closed. Writes are acknowledged at once, and time stands still (no timers fire): what
//! varies is only the order of things, which is what flooding must survive. Splitting bytes
//! and time are the random simulator's job ([`super::Sim`]).
//!
//! [`FloodState`] is neither `Clone` nor `Hash`, so a state of the exploration is an
//! abstract one, `Abs`: each client's log with the origin of each string, and each link's
//! ends, greetings and queued writes. With writes acknowledged at once and no timers, that
//! fixes everything the core keeps (cursors are at the end of the log, nothing is in
//! flight). To expand a state, each client's `FloodState` is rebuilt by replaying its own
//! inputs. The abstraction is checked as it is used: whenever a path reaches a state seen
//! before, the public view of every client (messages in order, peers, readiness, flushed,
//! timer) must be the same as the first time.
//!
//! Checked on every transition: nothing printed twice or untyped; nothing sent to a peer
//! that is not connected, before its greeting, or back where it first came from; no peer
//! dropped by a client on its own. Checked in every quiescent state (nothing queued, no close
//! pending), whatever events remain: in each component of working links, every client holds
//! the same set, which holds everything typed in the component, and is flushed.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::Instant;

use hashbrown::HashMap;

use super::Components;
use crate::wire::{Decoded, FrameDecoder, GREETING};
use crate::{Config, FloodState, Input, Output, PeerId};

/// Something the environment does once, at any point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The client types a string, named after the event's position in the list.
    Type(usize),
    /// The two clients open a new link.
    Connect(usize, usize),
    /// The newest working link between the two clients breaks; writes in it are lost, and
    /// each end hears of it later.
    Disconnect(usize, usize),
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
    /// Three clients in a chain 0–1–2, a string typed at each end, link 0–1 broken and made
    /// again: the configuration `cargo test` checks.
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
    ends: [usize; 2],
    up: bool,
    /// Whether `ends[e]` has the peer.
    open: [bool; 2],
    /// Whether `ends[e]` has received the other end's greeting.
    greeted: [bool; 2],
    /// `queue[e]`: writes of `ends[e]` not yet delivered.
    queue: [VecDeque<Vec<u8>>; 2],
    /// Whether `ends[e]` has yet to hear that the link closed.
    close_pending: [bool; 2],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Abs {
    fired: u64,
    /// Per client: (string, link it first came from) in the order learned.
    logs: Vec<Vec<(usize, Option<usize>)>>,
    links: Vec<AbsLink>,
}

#[derive(Debug, Clone, Copy)]
enum Move {
    Env(usize),
    Deliver { link: usize, from: usize },
    Lose { link: usize, from: usize },
    Close { link: usize, end: usize },
}

#[derive(Debug, Clone)]
enum Owned {
    Typed(String),
    Connected(u64),
    Received(u64, Vec<u8>),
    Sent(u64),
    Closed(u64),
}

impl Owned {
    fn as_input(&self) -> Input<'_> {
        match self {
            Owned::Typed(t) => Input::LineTyped(t.as_bytes()),
            Owned::Connected(p) => Input::Connected(PeerId(*p)),
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
    let ctx = Ctx {
        t0: Instant::now(),
        flood: Config::default(),
        texts: (0..config.events.len()).map(|i| format!("s{i}")).collect(),
        events: config.events.clone(),
    };
    let n = config.clients;
    let root = Node {
        abs: Abs {
            fired: 0,
            logs: vec![Vec::new(); n],
            links: Vec::new(),
        },
        history: vec![None; n],
        view: (0..n)
            .map(|_| ctx.view(&FloodState::new(ctx.flood.clone(), ctx.t0), 0))
            .collect(),
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
        l.close_pending == [false, false] && (!l.up || l.queue.iter().all(VecDeque::is_empty))
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

struct Ctx {
    t0: Instant,
    flood: Config,
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
    /// The public view of a client: everything its getters tell.
    fn view(&self, s: &FloodState, links: usize) -> u64 {
        let mut h = DefaultHasher::new();
        s.messages().collect::<Vec<_>>().hash(&mut h);
        s.peer_count().hash(&mut h);
        for l in (0..links as u64).filter(|&l| s.is_connected(PeerId(l))) {
            (l, s.is_ready(PeerId(l))).hash(&mut h);
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
                Event::Type(_) | Event::Connect(..) => true,
                Event::Disconnect(a, b) => newest_link(abs, a, b).is_some(),
            };
            if enabled {
                moves.push(Move::Env(i));
            }
        }
        for (l, link) in abs.links.iter().enumerate() {
            for e in 0..2 {
                if link.up && !link.queue[e].is_empty() {
                    moves.push(Move::Deliver { link: l, from: e });
                    if lossy {
                        moves.push(Move::Lose { link: l, from: e });
                    }
                }
                if link.close_pending[e] {
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
                        let l = step.node.abs.links.len();
                        step.node.abs.links.push(AbsLink {
                            ends: [a, b],
                            up: true,
                            open: [true, true],
                            greeted: [false, false],
                            queue: Default::default(),
                            close_pending: [false, false],
                        });
                        step.feed(a, Owned::Connected(l as u64))?;
                        step.feed(b, Owned::Connected(l as u64))?;
                    }
                    Event::Disconnect(a, b) => {
                        let l = newest_link(&step.node.abs, a, b).expect("enabled");
                        let link = &mut step.node.abs.links[l];
                        link.up = false;
                        link.queue = Default::default();
                        link.close_pending = link.open;
                    }
                }
            }
            Move::Deliver { link, from } => {
                let bytes = step.node.abs.links[link].queue[from]
                    .pop_front()
                    .expect("enabled");
                let c = step.node.abs.links[link].ends[1 - from];
                step.feed(c, Owned::Received(link as u64, bytes))?;
            }
            Move::Lose { link, from } => {
                step.node.abs.links[link].queue[from].pop_front();
            }
            Move::Close { link, end } => {
                step.node.abs.links[link].close_pending[end] = false;
                let c = step.node.abs.links[link].ends[end];
                step.closing = Some((link, end));
                step.feed(c, Owned::Closed(link as u64))?;
                if step.node.abs.links[link].open[end] {
                    return Err(format!(
                        "client {c}: Closed(peer#{link}) not answered by Disconnect"
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
        let working = abs.links.iter().filter(|l| l.up && l.open == [true, true]);
        let mut components = Components::new(n, working.map(|l| l.ends));
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
        }
        Ok(())
    }

    fn describe(&self, trace: &Option<Rc<List<Move>>>) -> String {
        let mut s = String::from("path from the start:\n");
        for m in to_vec(trace) {
            let _ = match m {
                Move::Env(i) => writeln!(s, "  {:?}", self.events[i]),
                Move::Deliver { link, from } => {
                    writeln!(
                        s,
                        "  deliver the oldest write on peer#{link} from end {from}"
                    )
                }
                Move::Lose { link, from } => {
                    writeln!(s, "  lose the oldest write on peer#{link} from end {from}")
                }
                Move::Close { link, end } => {
                    writeln!(s, "  end {end} of peer#{link} hears that it closed")
                }
            };
        }
        s
    }
}

impl Succ<'_> {
    /// The state of client `c`, rebuilt from its history on first use.
    fn state(&mut self, c: usize) -> &mut FloodState {
        let ctx = self.ctx;
        let history = &self.node.history[c];
        self.states.entry(c).or_insert_with(|| {
            let mut s = FloodState::new(ctx.flood.clone(), ctx.t0);
            for input in to_vec(history) {
                s.handle_input(ctx.t0, input.as_input())
                    .expect("an input accepted before is accepted again");
                while s.poll_output().is_some() {}
            }
            s
        })
    }

    /// Feeds `input` to client `c` and carries out the outputs, acknowledging writes at once.
    fn feed(&mut self, c: usize, input: Owned) -> Result<(), String> {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let t0 = self.ctx.t0;
            let state = self.state(c);
            state
                .handle_input(t0, input.as_input())
                .map_err(|e| format!("client {c} refused {input:?}: {e}"))?;
            let mut outputs = Vec::new();
            while let Some(o) = state.poll_output() {
                outputs.push(o);
            }
            let origin = match input {
                Owned::Received(l, _) => Some(l as usize),
                _ => None,
            };
            self.node.history[c] = push(&self.node.history[c], input);
            for output in outputs {
                match output {
                    Output::Print(text) => {
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
                        self.check_send(c, l, e, &bytes)?;
                        let link = &mut self.node.abs.links[l];
                        if link.up {
                            link.queue[e].push_back(bytes);
                        }
                        inputs.push_back(Owned::Sent(peer.0));
                    }
                    Output::PeerReady(peer) => {
                        let (l, e) = self.end(c, peer)?;
                        let link = &mut self.node.abs.links[l];
                        if link.greeted[e] {
                            return Err(format!("client {c}: PeerReady({peer}) twice"));
                        }
                        link.greeted[e] = true;
                    }
                    Output::Disconnect { peer, reason } => {
                        let (l, e) = self.end(c, peer)?;
                        if self.closing != Some((l, e)) {
                            return Err(format!("client {c} dropped {peer}: {reason}"));
                        }
                        self.node.abs.links[l].open[e] = false;
                    }
                }
            }
            // A write acknowledged after its peer is gone has nobody to tell.
            inputs.retain(|i| match i {
                Owned::Sent(p) => self.node.abs.links[*p as usize]
                    .ends
                    .iter()
                    .zip(self.node.abs.links[*p as usize].open)
                    .any(|(&end, open)| end == c && open),
                _ => true,
            });
        }
        Ok(())
    }

    /// The link and end of `peer` at client `c`, which must be open.
    fn end(&self, c: usize, peer: PeerId) -> Result<(usize, usize), String> {
        let l = peer.0 as usize;
        let link = self.node.abs.links.get(l);
        link.and_then(|link| (0..2).find(|&e| link.ends[e] == c && link.open[e]))
            .map(|e| (l, e))
            .ok_or_else(|| format!("client {c} addressed {peer}, which is not connected"))
    }

    fn check_send(&self, c: usize, l: usize, e: usize, bytes: &[u8]) -> Result<(), String> {
        if bytes == GREETING {
            return Ok(());
        }
        if !self.node.abs.links[l].greeted[e] {
            return Err(format!(
                "client {c} sent frames to peer#{l} before its greeting"
            ));
        }
        let mut decoder = FrameDecoder::new();
        let mut greeting = &GREETING[..];
        let _ = decoder.decode(&mut greeting);
        let mut input = bytes;
        while let Some(item) = decoder
            .decode(&mut input)
            .map_err(|err| format!("client {c} sent bytes that are not floodchat: {err}"))?
        {
            let Decoded::Message(text) = item else {
                return Err(format!("client {c} sent a second greeting"));
            };
            let entry = self.node.abs.logs[c]
                .iter()
                .find(|&&(i, _)| self.ctx.texts[i] == text)
                .ok_or_else(|| format!("client {c} sent {text:?}, which it does not hold"))?;
            if entry.1 == Some(l) {
                return Err(format!(
                    "client {c} sent {text:?} back to peer#{l}, where it first came from"
                ));
            }
        }
        if decoder.is_mid_item() {
            return Err(format!("client {c} sent part of a frame"));
        }
        Ok(())
    }
}

fn newest_link(abs: &Abs, a: usize, b: usize) -> Option<usize> {
    abs.links
        .iter()
        .rposition(|l| l.up && (l.ends == [a, b] || l.ends == [b, a]))
}
