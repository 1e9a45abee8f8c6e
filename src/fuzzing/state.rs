//! Fuzz entry point `state`: [`Action`]s applied to one [`FloodState`] with several peers,
//! every output checked against a model of what the inputs allow.
//!
//! Input layout (read with [`arbitrary`]): a byte for [`Config::max_in_flight`] (1 + b % 4), a
//! byte for [`Config::send_batch`] (b + 1, or the default for 255), then the actions.
//!
//! Checked after every step:
//! - `handle_input` is `Err` exactly for the caller mistakes the model predicts, and then
//!   queues no output;
//! - each output fits the input that caused it: `Print` only of a new string typed or received
//!   in this step, and all of them; `PeerReady` once per peer, when its greeting arrived;
//!   `Disconnect` exactly for a closed connection, a protocol error (the decoder's), or a due
//!   timer, with the matching reason; `Send` only to connected peers, the greeting first;
//! - no output names a peer after its `Disconnect`, and each peer gets at most one;
//! - per peer, unacknowledged `Send`s never exceed [`Config::max_in_flight`];
//! - the bytes sent to a peer decode as floodchat, in whole frames, each string at most once,
//!   only strings in the room, never a string first learned from that peer;
//! - a greeted peer with room in its in-flight budget has been sent every string it lacks, and
//!   [`FloodState::is_flushed`] agrees with the model;
//! - [`FloodState::messages`] is exactly what was printed, in order (so it never shrinks), and
//!   [`FloodState::contains`] holds for each string when printed and for all at the end;
//! - [`FloodState::poll_timeout`] is the earliest greeting or stall deadline of the model.
//!
//! At the end every `Send` is acknowledged until none is left: then every greeted peer must
//! have been sent every string it did not send first, and the state is flushed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::wire::{Decoded, FrameDecoder, GREETING, HEADER_LEN};
use crate::{
    Config, DecodeError, DisconnectReason, FloodState, Input, InputError, MAX_MESSAGE_LEN, Output,
    PeerId,
};

/// The texts that actions type and receive: few, so the same text comes from several sides.
pub const WORDS: [&str; 8] = [
    "hello",
    "hi",
    "héllo",
    "🦀",
    "a b",
    "x",
    "cr\r",
    "hello world",
];

/// How far one unit of [`Action::Advance`] moves the clock.
const TICK: Duration = Duration::from_millis(250);

/// One step of a `state` fuzz run. A peer is named by a byte `k`: 255 (or any `k` before the
/// first connection) is a peer never connected; `k < 128` picks among connected peers; other
/// values pick among all peers ever connected, departed ones included.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Type `WORDS[i % 8]`, with a trailing `\r` when `i >= 128`.
    TypeWord(u8),
    /// Type these bytes.
    TypeBytes(Vec<u8>),
    /// Type a line of `MAX_MESSAGE_LEN - 1 + i % 3` bytes.
    TypeLong(u8),
    /// Connect a new peer; ids count up from 0 and are never reused.
    Connect,
    /// Report `Connected` again for this peer, if it is still connected.
    ConnectAgain(u8),
    /// These bytes arrive from this peer.
    ReceiveBytes(u8, Vec<u8>),
    /// Frames arrive from a peer, after its greeting if not yet sent.
    ReceiveWords {
        /// The peer.
        peer: u8,
        /// One frame of `WORDS[w % 8]` for each `w`.
        words: Vec<u8>,
        /// The last `hold_back % 8` bytes wait for this peer's next `ReceiveWords`.
        hold_back: u8,
    },
    /// One `Send` to this peer was written.
    Ack(u8),
    /// This peer's connection ended.
    Close(u8),
    /// The clock moves on by this many quarter seconds; `Timeout` is fed if it is due.
    Advance(u8),
    /// `Timeout` is fed now, due or not.
    Timeout,
}

/// Runs one fuzz input; panics if the state breaks an invariant listed in the module docs.
pub fn run(data: &[u8]) {
    let Some((config, actions)) = parse(data) else {
        return;
    };
    let mut harness = Harness::new(config);
    for action in &actions {
        harness.apply(action);
    }
    harness.settle();
}

/// Reads the configuration and the actions from a fuzz input.
fn parse(data: &[u8]) -> Option<(Config, Vec<Action>)> {
    let mut u = Unstructured::new(data);
    let in_flight = u8::arbitrary(&mut u).ok()?;
    let batch = u8::arbitrary(&mut u).ok()?;
    let actions = Vec::<Action>::arbitrary_take_rest(u).ok()?;
    let config = Config {
        max_in_flight: 1 + usize::from(in_flight % 4),
        send_batch: match batch {
            u8::MAX => Config::default().send_batch,
            b => usize::from(b) + 1,
        },
        ..Config::default()
    };
    Some((config, actions))
}

/// What the harness knows about one connected peer.
struct PeerModel {
    /// Decodes the bytes fed from this peer, as the state's own decoder does.
    inbound: FrameDecoder,
    /// Decodes the state's `Send`s to this peer.
    outbound: FrameDecoder,
    /// Whether [`Action::ReceiveWords`] has written this peer's greeting.
    greeting_written: bool,
    /// Bytes [`Action::ReceiveWords`] held back.
    held: Vec<u8>,
    /// Whether `PeerReady` was output.
    ready: bool,
    /// `Send`s not yet acknowledged.
    in_flight: usize,
    /// Indices in the room of the strings sent to this peer.
    sent: HashSet<usize>,
    /// How many strings of the room were first learned from this peer.
    originated: usize,
    /// When `Connected` was fed.
    connected_at: Instant,
    /// When the stall clock last restarted: readiness, an ack, or a send to an idle peer.
    busy_since: Instant,
}

impl PeerModel {
    /// When the state should drop this peer if nothing happens.
    fn deadline(&self, config: &Config) -> Option<Instant> {
        if !self.ready {
            Some(self.connected_at + config.greeting_timeout)
        } else if self.in_flight > 0 {
            Some(self.busy_since + config.stall_timeout)
        } else {
            None
        }
    }
}

/// The input of one step, with what the model expects of its outputs.
#[derive(Debug)]
enum Cause {
    /// A typed line, with its text if that is new to the room.
    Typed(Option<Arc<str>>),
    /// A new peer.
    Connected(PeerId),
    /// Bytes from a peer, with the model's reading of them.
    Received {
        peer: PeerId,
        /// Strings new to the room, in order.
        new: Vec<Arc<str>>,
        /// Whether the greeting was among them.
        greeted: bool,
        /// The decode error that ends the connection.
        error: Option<DecodeError>,
    },
    /// An ack.
    Sent(PeerId),
    /// A closed connection, with the expected reason.
    Closed(PeerId, DisconnectReason),
    /// A timer, with the peers due and why, by id.
    Timeout(Vec<(PeerId, DisconnectReason)>),
    /// An input that must be refused.
    Refused,
}

/// One [`FloodState`] and the model it is checked against.
struct Harness {
    state: FloodState,
    config: Config,
    now: Instant,
    next_id: u64,
    /// Connected peers.
    peers: BTreeMap<PeerId, PeerModel>,
    /// Every peer ever connected, in order.
    all: Vec<PeerId>,
    /// The room, in the order printed.
    printed: Vec<Arc<str>>,
    /// The peer each string of `printed` was first learned from, if any.
    origin: Vec<Option<PeerId>>,
    /// Each string's index in `printed`.
    seen: HashMap<Arc<str>, usize>,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = Instant::now();
        Self {
            state: FloodState::new(config.clone(), now),
            config,
            now,
            next_id: 0,
            peers: BTreeMap::new(),
            all: Vec::new(),
            printed: Vec::new(),
            origin: Vec::new(),
            seen: HashMap::new(),
        }
    }

    /// The peer named by `k`, as described on [`Action`].
    fn pick(&self, k: u8) -> PeerId {
        if k == u8::MAX || self.all.is_empty() {
            return PeerId(u64::MAX - u64::from(k));
        }
        let k = usize::from(k);
        match self.peers.keys().nth(k % self.peers.len().max(1)) {
            Some(&peer) if k < 128 => peer,
            _ => self.all[k % self.all.len()],
        }
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::TypeWord(i) => {
                let mut line = WORDS[usize::from(i) % WORDS.len()].as_bytes().to_vec();
                if i >= 128 {
                    line.push(b'\r');
                }
                self.type_line(&line);
            }
            Action::TypeBytes(ref line) => self.type_line(line),
            Action::TypeLong(i) => {
                let fill = b'l' + i / 3 % 3;
                self.type_line(&vec![fill; MAX_MESSAGE_LEN - 1 + usize::from(i % 3)]);
            }
            Action::Connect => {
                let peer = PeerId(self.next_id);
                self.next_id += 1;
                self.all.push(peer);
                let model = PeerModel {
                    inbound: FrameDecoder::new(),
                    outbound: FrameDecoder::new(),
                    greeting_written: false,
                    held: Vec::new(),
                    ready: false,
                    in_flight: 0,
                    sent: HashSet::new(),
                    originated: 0,
                    connected_at: self.now,
                    busy_since: self.now,
                };
                self.peers.insert(peer, model);
                self.step(Input::Connected(peer), Ok(()), Cause::Connected(peer));
            }
            Action::ConnectAgain(k) => {
                let peer = self.pick(k);
                if self.peers.contains_key(&peer) {
                    let refused = Err(vec![InputError::PeerExists(peer)]);
                    self.step(Input::Connected(peer), refused, Cause::Refused);
                }
            }
            Action::ReceiveBytes(k, ref bytes) => self.receive(self.pick(k), bytes),
            Action::ReceiveWords {
                peer,
                ref words,
                hold_back,
            } => {
                let peer = self.pick(peer);
                let mut bytes = Vec::new();
                if let Some(model) = self.peers.get_mut(&peer) {
                    bytes.append(&mut model.held);
                    if !model.greeting_written {
                        model.greeting_written = true;
                        bytes.extend_from_slice(&GREETING);
                    }
                    for &w in words {
                        crate::wire::encode_frame(WORDS[usize::from(w) % WORDS.len()], &mut bytes);
                    }
                    let keep = bytes.len() - usize::from(hold_back % 8).min(bytes.len());
                    model.held = bytes.split_off(keep);
                }
                self.receive(peer, &bytes);
            }
            Action::Ack(k) => self.ack(self.pick(k)),
            Action::Close(k) => self.close(self.pick(k)),
            Action::Advance(n) => {
                self.now += TICK * u32::from(n);
                if self.state.poll_timeout().is_some_and(|due| due <= self.now) {
                    self.timeout();
                }
            }
            Action::Timeout => self.timeout(),
        }
    }

    fn type_line(&mut self, line: &[u8]) {
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        let mut errors = Vec::new();
        if trimmed.len() > MAX_MESSAGE_LEN {
            errors.push(InputError::LineTooLong(trimmed.len()));
        }
        let mut new = None;
        match std::str::from_utf8(trimmed) {
            Err(_) => errors.push(InputError::LineNotUtf8),
            Ok(text) if text.contains('\n') => errors.push(InputError::LineHasLineFeed),
            Ok(text) if self.seen.contains_key(text) => errors.push(InputError::AlreadySaid),
            Ok(text) if !text.is_empty() => new = Some(Arc::from(text)),
            Ok(_) => {}
        }
        let (expected, cause) = if errors.is_empty() {
            (Ok(()), Cause::Typed(new))
        } else {
            (Err(errors), Cause::Refused)
        };
        self.step(Input::LineTyped(line), expected, cause);
    }

    fn receive(&mut self, peer: PeerId, bytes: &[u8]) {
        let Some(model) = self.peers.get_mut(&peer) else {
            let refused = Err(vec![InputError::UnknownPeer(peer)]);
            return self.step(Input::Received(peer, bytes), refused, Cause::Refused);
        };
        let mut input = bytes;
        let mut new: Vec<Arc<str>> = Vec::new();
        let mut greeted = false;
        let error = loop {
            match model.inbound.decode(&mut input) {
                Ok(Some(Decoded::Greeting)) => greeted = true,
                Ok(Some(Decoded::Message(text))) => {
                    let known = self.seen.contains_key(text.as_str());
                    if !known && !new.iter().any(|t| **t == *text) {
                        new.push(text.into());
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let cause = Cause::Received {
            peer,
            new,
            greeted,
            error,
        };
        self.step(Input::Received(peer, bytes), Ok(()), cause);
    }

    fn ack(&mut self, peer: PeerId) {
        let (expected, cause) = match self.peers.get_mut(&peer) {
            None => (Err(vec![InputError::UnknownPeer(peer)]), Cause::Refused),
            Some(model) if model.in_flight == 0 => {
                (Err(vec![InputError::NothingInFlight(peer)]), Cause::Refused)
            }
            Some(model) => {
                model.in_flight -= 1;
                if model.ready {
                    model.busy_since = self.now;
                }
                (Ok(()), Cause::Sent(peer))
            }
        };
        self.step(Input::Sent(peer), expected, cause);
    }

    fn close(&mut self, peer: PeerId) {
        let (expected, cause) = match self.peers.get(&peer) {
            None => (Err(vec![InputError::UnknownPeer(peer)]), Cause::Refused),
            Some(model) => {
                let reason = if !model.inbound.greeted() {
                    DisconnectReason::ClosedBeforeGreeting
                } else if model.inbound.is_mid_item() {
                    DisconnectReason::ClosedMidFrame
                } else {
                    DisconnectReason::Closed
                };
                (Ok(()), Cause::Closed(peer, reason))
            }
        };
        self.step(Input::Closed(peer), expected, cause);
    }

    fn timeout(&mut self) {
        let due = self
            .peers
            .iter()
            .filter(|(_, m)| m.deadline(&self.config).is_some_and(|d| d <= self.now))
            .map(|(&peer, m)| {
                let reason = if m.ready {
                    DisconnectReason::Stalled(self.config.stall_timeout)
                } else {
                    DisconnectReason::GreetingTimeout(self.config.greeting_timeout)
                };
                (peer, reason)
            })
            .collect();
        self.step(Input::Timeout, Ok(()), Cause::Timeout(due));
    }

    /// Acknowledges every `Send` until none is in flight, then checks that all was delivered.
    fn settle(&mut self) {
        let limit = 100 + 10 * self.all.len() * (self.printed.len() + 1);
        for _ in 0..limit {
            let busy = self.peers.iter().find(|(_, m)| m.in_flight > 0);
            let Some((&peer, _)) = busy else {
                break;
            };
            self.ack(peer);
        }
        assert!(
            self.peers.values().all(|m| m.in_flight == 0),
            "still sending after {limit} acks"
        );
        for (peer, model) in &self.peers {
            if model.ready {
                assert_eq!(self.owed(model), 0, "{peer} not sent everything");
            }
        }
        assert!(
            self.state.is_flushed(),
            "not flushed with nothing in flight"
        );
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.close(peer);
        }
        for text in &self.printed {
            assert!(self.state.contains(text), "{text:?} no longer contained");
        }
    }

    /// Feeds `input`, checks the result against `expected`, then drains and checks the outputs.
    fn step(&mut self, input: Input<'_>, expected: Result<(), Vec<InputError>>, cause: Cause) {
        let result = self.state.handle_input(self.now, input);
        match (&result, &expected) {
            (Ok(()), Ok(())) => {}
            (Err(error), Err(allowed)) if allowed.contains(error) => {
                assert_eq!(self.state.poll_output(), None, "output after {error:?}");
            }
            _ => panic!("{input:?} gave {result:?}, expected {expected:?}"),
        }
        let mut prints = Vec::new();
        let mut ready = Vec::new();
        let mut dropped = Vec::new();
        while let Some(output) = self.state.poll_output() {
            match output {
                Output::Print(text) => {
                    let index = self.printed.len();
                    let old = self.seen.insert(text.clone(), index);
                    assert!(old.is_none(), "printed twice: {text:?}");
                    assert!(
                        self.state.contains(&text),
                        "{text:?} printed, not contained"
                    );
                    let origin = match cause {
                        Cause::Received { peer, .. } => Some(peer),
                        _ => None,
                    };
                    if let Some(model) = origin.and_then(|peer| self.peers.get_mut(&peer)) {
                        model.originated += 1;
                    }
                    self.origin.push(origin);
                    self.printed.push(text.clone());
                    prints.push(text);
                }
                Output::Send { peer, bytes } => self.check_send(peer, &bytes, &cause),
                Output::PeerReady(peer) => {
                    let model = self.peers.get_mut(&peer);
                    let model = model.unwrap_or_else(|| panic!("PeerReady({peer}) not connected"));
                    assert!(!model.ready, "PeerReady({peer}) twice");
                    model.ready = true;
                    model.busy_since = self.now;
                    ready.push(peer);
                }
                Output::Disconnect { peer, reason } => {
                    let model = self.peers.remove(&peer);
                    assert!(model.is_some(), "Disconnect of {peer}, not connected");
                    dropped.push((peer, reason));
                }
            }
        }
        dropped.sort_by_key(|(peer, _)| *peer);
        let (want_prints, want_ready, want_dropped) = match cause {
            Cause::Typed(new) => (new.into_iter().collect(), vec![], vec![]),
            Cause::Connected(_) | Cause::Sent(_) | Cause::Refused => (vec![], vec![], vec![]),
            Cause::Received {
                peer,
                new,
                greeted,
                error,
            } => {
                let ready = if greeted { vec![peer] } else { vec![] };
                let dropped = error.map(|e| (peer, DisconnectReason::Protocol(e)));
                (new, ready, dropped.into_iter().collect())
            }
            Cause::Closed(peer, reason) => (vec![], vec![], vec![(peer, reason)]),
            Cause::Timeout(due) => (vec![], vec![], due),
        };
        assert_eq!(prints, want_prints, "prints after {input:?}");
        assert_eq!(ready, want_ready, "PeerReady after {input:?}");
        assert_eq!(dropped, want_dropped, "disconnects after {input:?}");
        if let Input::Connected(peer) = input {
            let model = &self.peers[&peer];
            assert!(model.outbound.greeted(), "no greeting sent to {peer}");
        }
        self.check_invariants();
    }

    /// Checks one `Send` and records what it carries.
    fn check_send(&mut self, peer: PeerId, bytes: &[u8], cause: &Cause) {
        let model = self.peers.get_mut(&peer);
        let model = model.unwrap_or_else(|| panic!("Send to {peer}, not connected"));
        match *cause {
            Cause::Connected(p) => {
                assert!(
                    p == peer && bytes == GREETING,
                    "Connected({p}) sent {bytes:?} to {peer}"
                );
            }
            Cause::Sent(p) => assert_eq!(p, peer, "ack of {p} sent to another peer"),
            Cause::Typed(_) | Cause::Received { .. } => {}
            Cause::Closed(..) | Cause::Timeout(_) | Cause::Refused => {
                panic!("Send to {peer} after {cause:?}")
            }
        }
        assert!(!bytes.is_empty(), "empty Send to {peer}");
        let largest = self.config.send_batch + HEADER_LEN + MAX_MESSAGE_LEN;
        assert!(bytes.len() < largest, "Send of {} bytes", bytes.len());
        if model.in_flight == 0 {
            model.busy_since = self.now;
        }
        model.in_flight += 1;
        assert!(
            model.in_flight <= self.config.max_in_flight,
            "{} Sends in flight to {peer}",
            model.in_flight
        );
        let mut input = bytes;
        loop {
            match model.outbound.decode(&mut input) {
                Ok(Some(Decoded::Greeting)) => {}
                Ok(Some(Decoded::Message(text))) => {
                    assert!(model.ready, "{text:?} sent to {peer} before its greeting");
                    let index = self.seen.get(text.as_str()).copied();
                    let index = index.expect("sent a string that is not in the room");
                    assert_ne!(self.origin[index], Some(peer), "{text:?} sent back");
                    assert!(model.sent.insert(index), "{text:?} sent twice");
                }
                Ok(None) => break,
                Err(e) => panic!("Send to {peer} is not floodchat: {e}"),
            }
        }
        assert!(
            !model.outbound.is_mid_item(),
            "Send to {peer} ends mid-frame"
        );
    }

    /// How many strings of the room this peer has not been sent and did not send first.
    ///
    /// Exact because `check_send` asserts that what is sent is in the room and did not come
    /// from the peer, and each string is counted once.
    fn owed(&self, model: &PeerModel) -> usize {
        self.printed.len() - model.sent.len() - model.originated
    }

    /// Checks what the getters say against the model.
    fn check_invariants(&self) {
        let state = &self.state;
        assert_eq!(
            state.messages().len(),
            self.printed.len(),
            "messages().len()"
        );
        // Compare addresses first: the state prints the very `Arc` it keeps, and long
        // strings would otherwise be compared byte by byte after every step.
        let same = |(a, b): (&str, &Arc<str>)| std::ptr::eq(a, &**b) || a == &**b;
        assert!(
            state.messages().zip(&self.printed).all(same),
            "messages() is not what was printed"
        );
        assert_eq!(state.peer_count(), self.peers.len(), "peer_count()");
        for &peer in &self.all {
            let model = self.peers.get(&peer);
            assert_eq!(
                state.is_connected(peer),
                model.is_some(),
                "is_connected({peer})"
            );
            assert_eq!(
                state.is_ready(peer),
                model.is_some_and(|m| m.ready),
                "is_ready"
            );
        }
        let mut flushed = true;
        for (&peer, model) in &self.peers {
            let owed = self.owed(model);
            if model.ready && model.in_flight < self.config.max_in_flight {
                assert_eq!(owed, 0, "{peer} has sends to spare but still lacks strings");
            }
            flushed &= model.in_flight == 0 && (!model.ready || owed == 0);
        }
        assert_eq!(state.is_flushed(), flushed, "is_flushed()");
        let deadline = self.peers.values().filter_map(|m| m.deadline(&self.config));
        assert_eq!(state.poll_timeout(), deadline.min(), "poll_timeout()");
    }
}

#[cfg(test)]
mod tests {
    //! The hand-made seeds of `fuzz/corpus/state/`, written out as actions.
    //!
    //! `FLOODCHAT_WRITE_SEEDS=1 cargo test --features fuzzing --lib seeds` rewrites the files.

    use super::*;
    use std::path::Path;

    /// Number of [`Action`] variants, for the discriminant `derive(Arbitrary)` reads.
    const VARIANTS: u64 = 11;

    /// The bytes that `parse` reads back as `config` and `actions` (arbitrary 1.x layout).
    fn encode(config: [u8; 2], actions: &[Action]) -> Vec<u8> {
        fn variant(index: u64, out: &mut Vec<u8>) {
            let raw = (index << 32).div_ceil(VARIANTS);
            out.extend_from_slice(&(raw as u32).to_le_bytes());
        }
        fn with_byte(index: u64, byte: u8, out: &mut Vec<u8>) {
            variant(index, out);
            out.push(byte);
        }
        fn bytes(bytes: &[u8], out: &mut Vec<u8>) {
            for &b in bytes {
                out.extend_from_slice(&[1, b]);
            }
            out.push(0);
        }
        let mut out = config.to_vec();
        for action in actions {
            out.push(1);
            match action {
                Action::TypeWord(i) => with_byte(0, *i, &mut out),
                Action::TypeBytes(b) => {
                    variant(1, &mut out);
                    bytes(b, &mut out);
                }
                Action::TypeLong(i) => with_byte(2, *i, &mut out),
                Action::Connect => variant(3, &mut out),
                Action::ConnectAgain(k) => with_byte(4, *k, &mut out),
                Action::ReceiveBytes(k, b) => {
                    variant(5, &mut out);
                    out.push(*k);
                    bytes(b, &mut out);
                }
                Action::ReceiveWords {
                    peer,
                    words,
                    hold_back,
                } => {
                    variant(6, &mut out);
                    out.push(*peer);
                    bytes(words, &mut out);
                    out.push(*hold_back);
                }
                Action::Ack(k) => with_byte(7, *k, &mut out),
                Action::Close(k) => with_byte(8, *k, &mut out),
                Action::Advance(n) => with_byte(9, *n, &mut out),
                Action::Timeout => variant(10, &mut out),
            }
        }
        out
    }

    fn words(peer: u8, words: &[u8], hold_back: u8) -> Action {
        Action::ReceiveWords {
            peer,
            words: words.to_vec(),
            hold_back,
        }
    }

    fn seeds() -> Vec<(&'static str, [u8; 2], Vec<Action>)> {
        use Action::*;
        let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let huge = [&GREETING[..], &[0xff; 4]].concat();
        vec![
            (
                "three-peers-chat",
                [3, 255],
                vec![
                    Connect,
                    Connect,
                    Connect,
                    Ack(0),
                    Ack(1),
                    Ack(2),
                    words(0, &[0, 1, 2], 0),
                    TypeWord(3),
                    words(1, &[0, 4], 0),
                    Ack(1),
                    Ack(2),
                    Ack(2),
                    Close(0),
                ],
            ),
            (
                "late-joiner-small-batches",
                [0, 4],
                vec![
                    TypeWord(0),
                    TypeWord(1),
                    TypeWord(2),
                    TypeWord(3),
                    TypeWord(7),
                    Connect,
                    words(0, &[5], 0),
                    Ack(0),
                    Ack(0),
                    Ack(0),
                ],
            ),
            (
                "http-request",
                [3, 255],
                vec![Connect, ReceiveBytes(0, http)],
            ),
            (
                "4gib-length",
                [3, 255],
                vec![Connect, ReceiveBytes(0, huge)],
            ),
            (
                "typed-lines",
                [3, 255],
                vec![
                    TypeWord(0),
                    TypeWord(128),
                    TypeWord(134),
                    TypeBytes(vec![0xff, 0xfe]),
                    TypeBytes(b"two\nlines".to_vec()),
                    TypeBytes(Vec::new()),
                    TypeBytes(b"\r".to_vec()),
                    TypeLong(0),
                    TypeLong(1),
                    TypeLong(2),
                ],
            ),
            (
                "timeouts",
                [3, 255],
                vec![
                    Connect,
                    Advance(20),
                    Connect,
                    Ack(0),
                    words(0, &[], 0),
                    TypeWord(0),
                    Advance(119),
                    Advance(1),
                    Timeout,
                ],
            ),
            (
                "caller-mistakes",
                [3, 255],
                vec![
                    ReceiveBytes(255, b"x".to_vec()),
                    Ack(255),
                    Close(255),
                    Connect,
                    Ack(0),
                    Ack(0),
                    ConnectAgain(0),
                    Close(0),
                    ReceiveBytes(0, b"x".to_vec()),
                    Ack(200),
                ],
            ),
            (
                "closed-mid-frame",
                [3, 255],
                vec![Connect, words(0, &[7, 2], 3), Close(0)],
            ),
        ]
    }

    #[test]
    fn seeds_read_back_and_match_the_corpus() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/state");
        let write = std::env::var_os("FLOODCHAT_WRITE_SEEDS").is_some();
        for (name, config, actions) in seeds() {
            let bytes = encode(config, &actions);
            let (_, parsed) = parse(&bytes).expect("seed parses");
            assert_eq!(parsed, actions, "{name} reads back differently");
            run(&bytes);
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(committed == bytes, "{} is stale", path.display());
        }
    }
}
