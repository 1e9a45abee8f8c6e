//! [`Sim`]: many [`FloodState`]s on an in-memory network that moves in virtual time.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use super::Components;
use super::report::{Report, Violations};
use super::rng::SplitMix64;
use crate::wire::{Decoded, FrameDecoder};
use crate::{Config, DisconnectReason, FloodState, Input, MAX_MESSAGE_LEN, Output, PeerId};

/// How the simulated network behaves; every choice within these bounds comes from `seed`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice: latencies, split points, which link breaks when.
    pub seed: u64,
    /// Smallest one-way latency of a link, drawn once per link.
    pub latency_min: Duration,
    /// Largest one-way latency of a link.
    pub latency_max: Duration,
    /// Extra delay of each piece of a write, on top of the link's latency (order is kept).
    pub jitter: Duration,
    /// A write travels as up to this many pieces, and a read is fed as up to this many inputs.
    pub max_split: usize,
    /// Bytes one direction holds unread before further writes wait (and go unacknowledged).
    pub window: usize,
    /// The configuration of every client.
    pub flood: Config,
    /// A deliberate defect of the network, to show that the checks catch what it breaks.
    pub fault: Option<Fault>,
    /// Events [`Sim::settle`] may process before it reports that the network never went quiet.
    pub max_events: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(50),
            jitter: Duration::from_millis(2),
            max_split: 3,
            window: 64 * 1024,
            flood: Config::default(),
            fault: None,
            max_events: 50_000_000,
        }
    }
}

/// A defect no TCP network has, injected to prove the checks can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Silently lose one in `one_in` writes that carry messages (the greeting always arrives).
    DropSends {
        /// One write in this many is lost.
        one_in: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// Bytes of `links[link].dirs[dir]` may have arrived at the receiving end.
    Readable { link: usize, dir: usize },
    /// The sending end's write was taken by the network: feed it [`Input::Sent`].
    Ack { link: usize, end: usize },
    /// The end learns that the connection is gone: feed it [`Input::Closed`].
    Close { link: usize, end: usize },
    /// A client's [`FloodState::poll_timeout`] may be due.
    Timer { client: usize, incarnation: u32 },
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
struct Client {
    /// `None` while crashed.
    state: Option<FloodState>,
    /// Bumped by every restart; events of an older incarnation are ignored.
    incarnation: u32,
    /// When the earliest pending [`Event::Timer`] for this incarnation fires.
    armed: Option<Duration>,
    /// Every string printed, with the peer it came from (`None`: typed here).
    printed: HashMap<u32, Option<PeerId>>,
    /// Strings typed by this incarnation.
    typed: Vec<u32>,
    /// Links this incarnation took part in.
    links: Vec<usize>,
    frames_sent: u64,
    bytes_sent: u64,
}

/// One direction of a link: a FIFO byte stream.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes in the network with their arrival times (non-decreasing).
    segments: VecDeque<(Duration, Vec<u8>)>,
    /// Bytes in `segments`.
    buffered: usize,
    /// Writes not yet taken because the window is full.
    waiting: VecDeque<Vec<u8>>,
    last_arrival: Duration,
    /// Decodes what the sender writes, for the checks.
    tx: FrameDecoder,
    /// Decodes what the receiver is fed, for the checks.
    rx: FrameDecoder,
    /// Strings sent this way, to catch a string sent twice on one connection.
    sent: HashSet<u32>,
}

/// One TCP connection between two clients; its index is the [`PeerId`] at both ends.
#[derive(Debug)]
struct Link {
    ends: [usize; 2],
    incarnations: [u32; 2],
    latency: Duration,
    /// Whether bytes still flow; false once broken or closed by either end.
    up: bool,
    /// Whether `ends[e]`'s state has the peer (connected, not yet closed or disconnected).
    open: [bool; 2],
    /// Whether `ends[e]` is being fed [`Input::Closed`] right now.
    closing: [bool; 2],
    /// Whether `ends[e]` said [`Output::PeerReady`].
    ready: [bool; 2],
    /// `dirs[e]` carries the bytes written by `ends[e]`.
    dirs: [Direction; 2],
}

/// What the simulator knows of one typed string.
#[derive(Debug)]
struct Typed {
    client: usize,
    at: Duration,
    last_print: Duration,
    prints: u32,
    frames: u64,
}

/// A deterministic network of [`FloodState`]s: the simulator plays every driver and the
/// network between them, in virtual time, and checks the core's promises as it goes.
///
/// Each client is a `FloodState` with no IO. A link is a pair of FIFO byte streams with a
/// latency; writes are split into pieces and reads are fed in pieces at random points, but
/// order is kept, as TCP keeps it. Links break (in-flight bytes lost, both ends told after a
/// while), clients crash and restart empty, partitions cut and heal. Time moves only when
/// [`advance`](Self::advance) or [`settle`](Self::settle) moves it, and every choice comes
/// from [`SimConfig::seed`], so the same calls give the same run.
///
/// Checked at every output: nothing printed that nobody typed, nor twice, nor from a peer that
/// did not send it; nothing sent to a peer not connected; no message before the peer's
/// greeting; no string sent back to the peer it first came from, nor twice on one
/// connection; only whole frames; `Closed` always answered by the right `Disconnect`; no
/// peer ever dropped by a client on its own. [`check`](Self::check) adds convergence.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    rng: SplitMix64,
    start: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// Events in `queue` other than timers.
    pending_io: usize,
    clients: Vec<Client>,
    links: Vec<Link>,
    strings: Vec<Typed>,
    ids: HashMap<Arc<str>, u32>,
    /// The side of each client while a partition is in force.
    cut: Option<Vec<bool>>,
    /// Pairs whose links a partition broke, reconnected by [`heal`](Self::heal).
    severed: Vec<(usize, usize)>,
    violations: Violations,
    /// Ids of the messages in the piece being fed right now.
    rx_ids: Vec<u32>,
    outputs: Vec<Output>,
    fingerprint: u64,
    events: u64,
    inputs: u64,
    sends: u64,
    frames: u64,
    bytes: u64,
    breaks: u64,
    crashes: u64,
    partitions: u64,
}

impl Sim {
    /// `clients` clients, each with an empty room, no links, at virtual time zero.
    pub fn new(clients: usize, config: SimConfig) -> Self {
        let start = Instant::now();
        let clients = (0..clients)
            .map(|_| Client {
                state: Some(FloodState::new(config.flood.clone(), start)),
                incarnation: 0,
                armed: None,
                printed: HashMap::new(),
                typed: Vec::new(),
                links: Vec::new(),
                frames_sent: 0,
                bytes_sent: 0,
            })
            .collect();
        Self {
            rng: SplitMix64::new(config.seed),
            config,
            start,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            pending_io: 0,
            clients,
            links: Vec::new(),
            strings: Vec::new(),
            ids: HashMap::new(),
            cut: None,
            severed: Vec::new(),
            violations: Violations::default(),
            rx_ids: Vec::new(),
            outputs: Vec::new(),
            fingerprint: 0xcbf2_9ce4_8422_2325,
            events: 0,
            inputs: 0,
            sends: 0,
            frames: 0,
            bytes: 0,
            breaks: 0,
            crashes: 0,
            partitions: 0,
        }
    }

    // ---- getters ----

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of clients, crashed ones included.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Whether client `c` is running (not crashed).
    pub fn is_alive(&self, c: usize) -> bool {
        self.clients[c].state.is_some()
    }

    /// The state of client `c`, unless it is crashed.
    pub fn state(&self, c: usize) -> Option<&FloodState> {
        self.clients[c].state.as_ref()
    }

    /// Links whose bytes still flow, by index.
    pub fn live_links(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&l| self.links[l].up)
            .collect()
    }

    /// Strings typed so far, over all clients and incarnations.
    pub fn typed(&self) -> usize {
        self.strings.len()
    }

    /// The broken promises seen so far (empty if none).
    pub fn violations(&self) -> &Violations {
        &self.violations
    }

    /// A hash of every input fed to every client, with its time: equal runs have equal ones.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    // ---- what the world does ----

    /// Opens a link between `a` and `b`; `None` if either is crashed, they are the same
    /// client, or a partition separates them.
    pub fn connect(&mut self, a: usize, b: usize) -> Option<usize> {
        if a == b || !self.is_alive(a) || !self.is_alive(b) {
            return None;
        }
        if self.cut.as_ref().is_some_and(|side| side[a] != side[b]) {
            return None;
        }
        let l = self.links.len();
        let latency = self.draw(self.config.latency_min, self.config.latency_max);
        self.links.push(Link {
            ends: [a, b],
            incarnations: [self.clients[a].incarnation, self.clients[b].incarnation],
            latency,
            up: true,
            open: [true, true],
            closing: [false, false],
            ready: [false, false],
            dirs: Default::default(),
        });
        self.clients[a].links.push(l);
        self.clients[b].links.push(l);
        self.feed(a, Input::Connected(PeerId(l as u64)));
        self.feed(b, Input::Connected(PeerId(l as u64)));
        Some(l)
    }

    /// Client `c` types a new string (tens of bytes, or 20 KiB up to the maximum if `long`);
    /// returns its id, or `None` if `c` is crashed.
    pub fn type_line(&mut self, c: usize, long: bool) -> Option<u32> {
        if !self.is_alive(c) {
            return None;
        }
        let id = self.strings.len() as u32;
        let text: Arc<str> = self.make_text(id, c, long).into();
        self.ids.insert(text.clone(), id);
        self.strings.push(Typed {
            client: c,
            at: self.now,
            last_print: self.now,
            prints: 0,
            frames: 0,
        });
        self.clients[c].typed.push(id);
        self.feed(c, Input::LineTyped(text.as_bytes()));
        if !self.clients[c].printed.contains_key(&id) {
            self.violation(format!("client {c}: typing string #{id} printed nothing"));
        }
        Some(id)
    }

    /// Breaks link `l`: bytes in flight are lost, and each end hears of it within the
    /// link's latency. Returns whether it was up.
    pub fn break_link(&mut self, l: usize) -> bool {
        if !self.links[l].up {
            return false;
        }
        self.breaks += 1;
        self.close_link(l, true);
        true
    }

    /// Client `c` crashes: its state is gone and its peers hear that its links closed.
    pub fn crash(&mut self, c: usize) -> bool {
        let client = &mut self.clients[c];
        if client.state.take().is_none() {
            return false;
        }
        self.crashes += 1;
        client.armed = None;
        let incarnation = client.incarnation;
        for l in std::mem::take(&mut client.links) {
            let link = &mut self.links[l];
            for e in 0..2 {
                if link.ends[e] == c && link.incarnations[e] == incarnation {
                    link.open[e] = false;
                }
            }
            self.close_link(l, false);
        }
        true
    }

    /// A crashed client `c` starts again with an empty room; false if it was running.
    pub fn restart(&mut self, c: usize) -> bool {
        let now = self.start + self.now;
        let client = &mut self.clients[c];
        if client.state.is_some() {
            return false;
        }
        client.incarnation += 1;
        client.state = Some(FloodState::new(self.config.flood.clone(), now));
        client.printed.clear();
        client.typed.clear();
        client.frames_sent = 0;
        client.bytes_sent = 0;
        true
    }

    /// Splits the clients in two by `side`: links across the cut break and no new one
    /// crosses it until [`heal`](Self::heal).
    pub fn partition(&mut self, side: Vec<bool>) {
        assert_eq!(side.len(), self.clients.len(), "one side per client");
        self.partitions += 1;
        for l in 0..self.links.len() {
            let [a, b] = self.links[l].ends;
            if self.links[l].up && side[a] != side[b] {
                self.severed.push((a, b));
                self.break_link(l);
            }
        }
        self.cut = Some(side);
    }

    /// Ends the partition and reconnects every pair whose link a partition broke.
    pub fn heal(&mut self) {
        self.cut = None;
        for (a, b) in std::mem::take(&mut self.severed) {
            self.connect(a, b);
        }
    }

    /// Lets `by` of virtual time pass, handling everything due in it.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            self.step();
        }
        self.now = until;
    }

    /// Runs until nothing is in flight and no timer is due: the network is quiet. Returns
    /// false (and records a violation) if that takes more than [`SimConfig::max_events`].
    pub fn settle(&mut self) -> bool {
        let mut budget = self.config.max_events;
        loop {
            if self.pending_io == 0
                && self
                    .clients
                    .iter()
                    .all(|c| c.state.as_ref().is_none_or(|s| s.poll_timeout().is_none()))
            {
                return true;
            }
            if self.queue.is_empty() {
                return true;
            }
            if budget == 0 {
                self.violation(format!(
                    "the network was not quiet after {} events",
                    self.config.max_events
                ));
                return false;
            }
            budget -= 1;
            self.step();
        }
    }

    fn step(&mut self) {
        let Some(Reverse(s)) = self.queue.pop() else {
            return;
        };
        self.now = self.now.max(s.at);
        self.events += 1;
        if !matches!(s.event, Event::Timer { .. }) {
            self.pending_io -= 1;
        }
        match s.event {
            Event::Readable { link, dir } => self.readable(link, dir),
            Event::Ack { link, end } => {
                if self.links[link].open[end] {
                    self.feed(self.links[link].ends[end], Input::Sent(PeerId(link as u64)));
                }
            }
            Event::Close { link, end } => self.closed(link, end),
            Event::Timer {
                client,
                incarnation,
            } => {
                let c = &mut self.clients[client];
                if c.incarnation != incarnation || c.state.is_none() {
                    return;
                }
                if c.armed == Some(self.now) {
                    c.armed = None;
                }
                let due = c
                    .state
                    .as_ref()
                    .and_then(FloodState::poll_timeout)
                    .is_some_and(|t| t <= self.start + self.now);
                if due {
                    self.feed(client, Input::Timeout);
                } else {
                    self.arm_timer(client);
                }
            }
        }
    }

    // ---- the driver of one client ----

    /// Feeds `input` to client `c`, drains its outputs and carries them out.
    fn feed(&mut self, c: usize, input: Input<'_>) {
        let at = self.start + self.now;
        let mut outputs = std::mem::take(&mut self.outputs);
        let Some(state) = self.clients[c].state.as_mut() else {
            return;
        };
        self.inputs += 1;
        self.fingerprint = mix(self.fingerprint, self.now.as_nanos() as u64);
        self.fingerprint = mix(self.fingerprint, c as u64);
        self.fingerprint = mix(self.fingerprint, input_code(&input));
        let result = state.handle_input(at, input);
        while let Some(output) = state.poll_output() {
            outputs.push(output);
        }
        if let Err(e) = result {
            self.violation(format!("client {c} refused {}: {e}", describe(&input)));
        }
        let origin = match input {
            Input::Received(peer, _) => Some(peer),
            _ => None,
        };
        let may_print = matches!(input, Input::LineTyped(_) | Input::Received(..));
        for output in outputs.drain(..) {
            match output {
                Output::Print(text) => self.on_print(c, &text, origin, may_print),
                Output::Send { peer, bytes } => self.on_send(c, peer, bytes),
                Output::PeerReady(peer) => match self.end_of(c, peer) {
                    Some(e) => {
                        let link = &mut self.links[peer.0 as usize];
                        if link.ready[e] || !link.dirs[1 - e].rx.greeted() {
                            self.violation(format!(
                                "client {c}: PeerReady({peer}) twice or before its greeting"
                            ));
                        }
                        self.links[peer.0 as usize].ready[e] = true;
                    }
                    None => self.violation(format!(
                        "client {c}: PeerReady({peer}), which is not connected"
                    )),
                },
                Output::Disconnect { peer, reason } => self.on_disconnect(c, peer, reason),
            }
        }
        self.outputs = outputs;
        self.arm_timer(c);
    }

    fn on_print(&mut self, c: usize, text: &str, origin: Option<PeerId>, may_print: bool) {
        let Some(&id) = self.ids.get(text) else {
            self.violation(format!("client {c} printed {text:?}, which nobody typed"));
            return;
        };
        if !may_print {
            self.violation(format!(
                "client {c} printed #{id} on an input that brings none"
            ));
        }
        if origin.is_some() && !self.rx_ids.contains(&id) {
            self.violation(format!(
                "client {c} printed #{id}, which the bytes just received did not hold"
            ));
        }
        if self.clients[c].printed.insert(id, origin).is_some() {
            self.violation(format!("client {c} printed #{id} twice"));
        }
        let s = &mut self.strings[id as usize];
        s.prints += 1;
        s.last_print = s.last_print.max(self.now);
    }

    fn on_send(&mut self, c: usize, peer: PeerId, bytes: Vec<u8>) {
        let Some(e) = self.end_of(c, peer) else {
            self.violation(format!(
                "client {c} sent {} bytes to {peer}, which is not connected",
                bytes.len()
            ));
            return;
        };
        let l = peer.0 as usize;
        self.sends += 1;
        self.bytes += bytes.len() as u64;
        self.clients[c].bytes_sent += bytes.len() as u64;
        let mut frames = 0;
        let mut input = &bytes[..];
        loop {
            let decoded = self.links[l].dirs[e].tx.decode(&mut input);
            match decoded {
                Ok(Some(Decoded::Greeting)) => {}
                Ok(Some(Decoded::Message(text))) => {
                    frames += 1;
                    self.on_frame_sent(c, l, e, &text);
                }
                Ok(None) => break,
                Err(err) => {
                    self.violation(format!(
                        "client {c} sent {peer} bytes that are not floodchat: {err}"
                    ));
                    break;
                }
            }
        }
        if self.links[l].dirs[e].tx.is_mid_item() {
            self.violation(format!(
                "client {c}: a Send to {peer} ended in the middle of a frame"
            ));
        }
        self.frames += frames;
        self.clients[c].frames_sent += frames;
        if let Some(Fault::DropSends { one_in }) = self.config.fault {
            if frames > 0 && self.rng.chance(1, one_in) {
                self.schedule(self.now, Event::Ack { link: l, end: e });
                return;
            }
        }
        self.write(l, e, bytes);
    }

    fn on_frame_sent(&mut self, c: usize, l: usize, e: usize, text: &str) {
        let peer = PeerId(l as u64);
        let Some(&id) = self.ids.get(text) else {
            self.violation(format!("client {c} sent {text:?}, which nobody typed"));
            return;
        };
        if !self.links[l].ready[e] {
            self.violation(format!(
                "client {c} sent #{id} to {peer} before its greeting"
            ));
        }
        match self.clients[c].printed.get(&id) {
            None => self.violation(format!("client {c} sent #{id}, which it never printed")),
            Some(&Some(origin)) if origin == peer => self.violation(format!(
                "client {c} sent #{id} back to {peer}, where it first came from"
            )),
            Some(_) => {}
        }
        if !self.links[l].dirs[e].sent.insert(id) {
            self.violation(format!("client {c} sent #{id} twice to {peer}"));
        }
        self.strings[id as usize].frames += 1;
    }

    fn on_disconnect(&mut self, c: usize, peer: PeerId, reason: DisconnectReason) {
        let Some(e) = self.end_of(c, peer) else {
            self.violation(format!(
                "client {c}: Disconnect({peer}), which is not connected"
            ));
            return;
        };
        let l = peer.0 as usize;
        let link = &mut self.links[l];
        if link.closing[e] {
            let rx = &link.dirs[1 - e].rx;
            let expected = if !rx.greeted() {
                DisconnectReason::ClosedBeforeGreeting
            } else if rx.is_mid_item() {
                DisconnectReason::ClosedMidFrame
            } else {
                DisconnectReason::Closed
            };
            if reason != expected {
                self.violation(format!(
                    "client {c}: Closed({peer}) gave reason \"{reason}\", expected \"{expected}\""
                ));
            }
        } else {
            self.violation(format!("client {c} dropped {peer}: {reason}"));
        }
        self.links[l].open[e] = false;
        self.close_link(l, false);
    }

    /// Which end of `peer`'s link client `c` is, if that end is open.
    fn end_of(&self, c: usize, peer: PeerId) -> Option<usize> {
        let link = self.links.get(usize::try_from(peer.0).ok()?)?;
        (0..2).find(|&e| {
            link.ends[e] == c && link.incarnations[e] == self.clients[c].incarnation && link.open[e]
        })
    }

    fn arm_timer(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let Some(deadline) = client.state.as_ref().and_then(FloodState::poll_timeout) else {
            return;
        };
        let at = deadline.saturating_duration_since(self.start).max(self.now);
        if client.armed.is_none_or(|armed| at < armed) {
            client.armed = Some(at);
            let incarnation = client.incarnation;
            self.schedule(
                at,
                Event::Timer {
                    client: c,
                    incarnation,
                },
            );
        }
    }

    // ---- the network ----

    fn write(&mut self, l: usize, e: usize, bytes: Vec<u8>) {
        let window = self.config.window;
        let link = &mut self.links[l];
        if !link.up {
            // Written into a connection that is already gone: lost, as TCP would lose it.
            self.schedule(self.now, Event::Ack { link: l, end: e });
            return;
        }
        let d = &mut link.dirs[e];
        if d.waiting.is_empty() && (d.buffered == 0 || d.buffered + bytes.len() <= window) {
            self.take(l, e, bytes);
        } else {
            d.waiting.push_back(bytes);
        }
    }

    /// The network takes a write: acknowledge it, and let it arrive in pieces, in order.
    fn take(&mut self, l: usize, e: usize, bytes: Vec<u8>) {
        self.schedule(self.now, Event::Ack { link: l, end: e });
        let cuts = self.cuts(bytes.len());
        let latency = self.links[l].latency;
        let mut from = 0;
        for to in cuts {
            let jitter = self.draw(Duration::ZERO, self.config.jitter);
            let d = &mut self.links[l].dirs[e];
            let arrive = (self.now + latency + jitter).max(d.last_arrival);
            d.last_arrival = arrive;
            d.segments.push_back((arrive, bytes[from..to].to_vec()));
            d.buffered += to - from;
            self.schedule(arrive, Event::Readable { link: l, dir: e });
            from = to;
        }
    }

    fn readable(&mut self, l: usize, dir: usize) {
        let r = 1 - dir;
        let (now, window) = (self.now, self.config.window);
        let link = &mut self.links[l];
        if !link.up || !link.open[r] {
            return;
        }
        let d = &mut link.dirs[dir];
        let mut bytes = Vec::new();
        while d.segments.front().is_some_and(|(at, _)| *at <= now) {
            let (_, segment) = d.segments.pop_front().expect("front exists");
            if bytes.is_empty() {
                bytes = segment;
            } else {
                bytes.extend_from_slice(&segment);
            }
        }
        if bytes.is_empty() {
            return;
        }
        d.buffered -= bytes.len();
        loop {
            let d = &mut self.links[l].dirs[dir];
            let fits = d
                .waiting
                .front()
                .is_some_and(|w| d.buffered == 0 || d.buffered + w.len() <= window);
            if !fits {
                break;
            }
            let w = d.waiting.pop_front().expect("front exists");
            self.take(l, dir, w);
        }
        let mut from = 0;
        for to in self.cuts(bytes.len()) {
            if !self.links[l].up || !self.links[l].open[r] {
                break;
            }
            self.feed_received(l, dir, &bytes[from..to]);
            from = to;
        }
    }

    fn feed_received(&mut self, l: usize, dir: usize, piece: &[u8]) {
        let c = self.links[l].ends[1 - dir];
        self.rx_ids.clear();
        let mut input = piece;
        loop {
            match self.links[l].dirs[dir].rx.decode(&mut input) {
                Ok(Some(Decoded::Message(text))) => {
                    if let Some(&id) = self.ids.get(text.as_str()) {
                        self.rx_ids.push(id);
                    }
                }
                Ok(Some(Decoded::Greeting)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.feed(c, Input::Received(PeerId(l as u64), piece));
        self.rx_ids.clear();
    }

    fn closed(&mut self, l: usize, e: usize) {
        if !self.links[l].open[e] {
            return;
        }
        let c = self.links[l].ends[e];
        self.links[l].closing[e] = true;
        self.feed(c, Input::Closed(PeerId(l as u64)));
        if self.links[l].open[e] {
            self.violation(format!(
                "client {c}: Closed(peer#{l}) was not answered by Disconnect"
            ));
            self.links[l].open[e] = false;
        }
        self.links[l].closing[e] = false;
    }

    /// Stops link `l`: bytes in flight are lost and each end still open is told, after the
    /// link's latency (or, if `random`, any time up to it).
    fn close_link(&mut self, l: usize, random: bool) {
        if !self.links[l].up {
            return;
        }
        let link = &mut self.links[l];
        link.up = false;
        for d in &mut link.dirs {
            d.segments.clear();
            d.waiting.clear();
            d.buffered = 0;
        }
        let latency = link.latency;
        for e in 0..2 {
            if self.links[l].open[e] && !self.links[l].closing[e] {
                let delay = if random {
                    self.draw(Duration::ZERO, latency)
                } else {
                    latency
                };
                self.schedule(self.now + delay, Event::Close { link: l, end: e });
            }
        }
    }

    // ---- helpers ----

    fn schedule(&mut self, at: Duration, event: Event) {
        if !matches!(event, Event::Timer { .. }) {
            self.pending_io += 1;
        }
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn draw(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_nanos(self.rng.range(lo.as_nanos() as u64, hi.as_nanos() as u64))
    }

    /// Where to cut `len` bytes: increasing ends of pieces, the last one `len`. Mostly a
    /// few random pieces; now and then one byte at a time.
    fn cuts(&mut self, len: usize) -> Vec<usize> {
        if len > 1 && len <= 64 && self.rng.chance(1, 16) {
            return (1..=len).collect();
        }
        let pieces = self.rng.range(1, self.config.max_split.max(1) as u64);
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| self.rng.range(1, len as u64) as usize)
            .filter(|&at| at < len)
            .collect();
        cuts.push(len);
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    fn make_text(&mut self, id: u32, c: usize, long: bool) -> String {
        const PIECES: [&str; 6] = [" ", "a", "Z", "é", "€", "🦀"];
        let mut text = format!("#{id} from {c}:");
        let target = if long {
            self.rng.range(20_000, MAX_MESSAGE_LEN as u64 + 1_000) as usize
        } else {
            text.len() + self.rng.range(0, 24) as usize
        }
        .min(MAX_MESSAGE_LEN);
        while text.len() + 4 <= target && text.len() < 64 {
            text.push_str(PIECES[self.rng.index(PIECES.len())]);
        }
        while text.len() < target {
            text.push('x');
        }
        text
    }

    fn violation(&mut self, what: String) {
        let at = self.now;
        self.violations.push(format!("[t={at:?}] {what}"));
    }

    // ---- the end of a run ----

    /// Checks convergence now, which should be called once the network is quiet (after
    /// [`settle`](Self::settle)); records and returns the violations of the whole run.
    ///
    /// Clients joined by links that work form components. In each component, every running
    /// client printed the same set of strings, each once, which holds every string typed by a
    /// member; each is flushed and waits on no timer; its counters match what it was seen
    /// to send. When no client ever crashed and all form one component, each printed
    /// exactly every string ever typed. Per string, frames never exceed two per link
    /// session (one each way).
    pub fn check(&mut self) -> &Violations {
        let n = self.clients.len();
        let mut forest = self.components();
        let mut components: HashMap<usize, Vec<usize>> = HashMap::new();
        for c in (0..n).filter(|&c| self.is_alive(c)) {
            components.entry(forest.of(c)).or_default().push(c);
        }
        let mut roots: Vec<usize> = components.keys().copied().collect();
        roots.sort_unstable();
        let mut found = Vec::new();
        for root in roots {
            let members = &components[&root];
            let mut must: Vec<u32> = members
                .iter()
                .flat_map(|&m| self.clients[m].typed.iter().copied())
                .collect();
            must.sort_unstable();
            let reference = self.printed_set(members[0]);
            for &m in members {
                let mine = self.printed_set(m);
                let state = self.clients[m].state.as_ref().expect("alive");
                let mut logged: Vec<u32> = state
                    .messages()
                    .filter_map(|t| self.ids.get(t).copied())
                    .collect();
                logged.sort_unstable();
                if logged != mine || state.messages().len() != mine.len() {
                    found.push(format!(
                        "client {m}: messages() differ from what it printed"
                    ));
                }
                if mine != reference {
                    found.push(format!(
                        "clients {} and {m} disagree: {} lacks {}, {m} lacks {}",
                        members[0],
                        members[0],
                        list(&difference(&mine, &reference)),
                        list(&difference(&reference, &mine)),
                    ));
                }
                let lacking = difference(&must, &mine);
                if !lacking.is_empty() {
                    found.push(format!(
                        "client {m} lacks strings typed in its component: {}",
                        list(&lacking)
                    ));
                }
                if !state.is_flushed() || state.poll_timeout().is_some() {
                    found.push(format!(
                        "client {m} is not flushed when the network is quiet"
                    ));
                }
                let stats = state.stats();
                let client = &self.clients[m];
                if (stats.frames_sent, stats.bytes_sent) != (client.frames_sent, client.bytes_sent)
                {
                    found.push(format!(
                        "client {m}: stats say {} frames / {} bytes sent, the network saw {} / {}",
                        stats.frames_sent, stats.bytes_sent, client.frames_sent, client.bytes_sent
                    ));
                }
            }
        }
        if self.crashes == 0 && components.len() == 1 {
            let all: Vec<u32> = (0..self.strings.len() as u32).collect();
            for c in 0..n {
                let lacking = difference(&all, &self.printed_set(c));
                if !lacking.is_empty() {
                    found.push(format!("client {c} lacks {}", list(&lacking)));
                }
            }
        }
        let sessions = self.links.len() as u64;
        for (id, s) in self.strings.iter().enumerate() {
            if s.frames > 2 * sessions {
                found.push(format!(
                    "#{id} went out in {} frames, more than 2 x {sessions} link sessions",
                    s.frames
                ));
            }
        }
        for f in found {
            self.violation(f);
        }
        &self.violations
    }

    fn printed_set(&self, c: usize) -> Vec<u32> {
        let mut set: Vec<u32> = self.clients[c].printed.keys().copied().collect();
        set.sort_unstable();
        set
    }

    /// The clients grouped by every link that works.
    fn components(&self) -> Components {
        let working = self.links.iter().filter(|l| l.up && l.open == [true, true]);
        Components::new(self.clients.len(), working.map(|l| l.ends))
    }

    /// The figures of the run so far.
    pub fn report(&self) -> Report {
        let alive: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.is_alive(c))
            .collect();
        let mut components = self.components();
        let mut roots: Vec<usize> = alive.iter().map(|&c| components.of(c)).collect();
        roots.sort_unstable();
        roots.dedup();
        let mut latencies: Vec<Duration> =
            self.strings.iter().map(|s| s.last_print - s.at).collect();
        latencies.sort_unstable();
        Report {
            clients: self.clients.len(),
            alive: alive.len(),
            components: roots.len(),
            typed: self.strings.len(),
            typed_by: self.strings.iter().map(|s| s.client).collect(),
            delivered: alive
                .iter()
                .map(|&c| self.clients[c].printed.len())
                .collect(),
            prints: self.strings.iter().map(|s| s.prints).collect(),
            link_sessions: self.links.len(),
            links_up: self.links.iter().filter(|l| l.up).count(),
            sends: self.sends,
            frames: self.frames,
            bytes: self.bytes,
            max_frames_one_string: self.strings.iter().map(|s| s.frames).max().unwrap_or(0),
            latencies,
            breaks: self.breaks,
            crashes: self.crashes,
            partitions: self.partitions,
            events: self.events,
            inputs: self.inputs,
            virtual_time: self.now,
            violations: self.violations.len(),
        }
    }
}

/// Sorted `a` minus sorted `b`.
fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter()
        .filter(|x| b.binary_search(x).is_err())
        .copied()
        .collect()
}

fn list(ids: &[u32]) -> String {
    let mut s = String::new();
    for id in ids.iter().take(10) {
        let _ = write!(s, "#{id} ");
    }
    if ids.len() > 10 {
        let _ = write!(s, "and {} more", ids.len() - 10);
    }
    if ids.is_empty() {
        s.push_str("nothing");
    }
    s.trim_end().to_owned()
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01B3)
}

fn input_code(input: &Input<'_>) -> u64 {
    match *input {
        Input::LineTyped(b) => 1 ^ ((b.len() as u64) << 8),
        Input::Connected(p) => 2 ^ (p.0 << 8),
        Input::Received(p, b) => {
            let mut h = 3 ^ (p.0 << 8);
            for &x in b {
                h = mix(h, u64::from(x));
            }
            h
        }
        Input::Sent(p) => 4 ^ (p.0 << 8),
        Input::Closed(p) => 5 ^ (p.0 << 8),
        Input::Timeout => 6,
    }
}

fn describe(input: &Input<'_>) -> String {
    match input {
        Input::LineTyped(b) => format!("LineTyped({} bytes)", b.len()),
        Input::Received(p, b) => format!("Received({p}, {} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}
