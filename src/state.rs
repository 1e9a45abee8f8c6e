//! [`FloodState`]: everything a client decides, with no IO.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use crate::wire::{self, DecodeError, Decoded, FrameDecoder, GREETING, MAX_MESSAGE_LEN};

/// A connection, named by the driver; never reused within one [`FloodState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Tunables of a [`FloodState`].
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a new connection may take to send its greeting.
    pub greeting_timeout: Duration,
    /// How long a peer may leave sent bytes unacknowledged before it is dropped as not reading.
    pub stall_timeout: Duration,
    /// Target size of one [`Output::Send`]; frames are batched up to about this many bytes.
    pub send_batch: usize,
    /// How many [`Output::Send`]s may await [`Input::Sent`] per peer.
    pub max_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            greeting_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(30),
            send_batch: 32 * 1024,
            max_in_flight: 4,
        }
    }
}

/// Something that happened, for [`FloodState::handle_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// The user typed a line (without its `\n`; a trailing `\r` is removed here).
    LineTyped(&'a [u8]),
    /// A new connection, inbound or outbound.
    Connected(PeerId),
    /// Bytes read from a peer.
    Received(PeerId, &'a [u8]),
    /// The bytes of one [`Output::Send`] to this peer were written to the socket.
    Sent(PeerId),
    /// The peer's connection ended (end of stream or an IO error).
    Closed(PeerId),
    /// The time is at or past [`FloodState::poll_timeout`].
    Timeout,
}

/// Something the driver must do, from [`FloodState::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Print this string, which is new to the room, on its own line.
    Print(Arc<str>),
    /// Write these bytes to this peer, then report [`Input::Sent`].
    Send {
        /// The connection to write to.
        peer: PeerId,
        /// The bytes, one or more whole frames (or the greeting).
        bytes: Vec<u8>,
    },
    /// This peer's greeting was valid: it is a floodchat client.
    PeerReady(PeerId),
    /// Close this connection and forget the peer; nothing more is said about it.
    Disconnect {
        /// The connection to close.
        peer: PeerId,
        /// Why, for a person to read.
        reason: DisconnectReason,
    },
}

/// Why a peer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection before sending a whole greeting.
    ClosedBeforeGreeting,
    /// The peer closed the connection in the middle of a frame.
    ClosedMidFrame,
    /// The peer sent bytes that are not floodchat.
    Protocol(DecodeError),
    /// The peer sent no greeting in time.
    GreetingTimeout(Duration),
    /// The peer left sent bytes unread for too long.
    Stalled(Duration),
}

impl DisconnectReason {
    /// Whether this is an ordinary departure rather than a fault of the peer.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::ClosedBeforeGreeting => f.write_str("connection closed before the greeting"),
            Self::ClosedMidFrame => f.write_str("connection closed in the middle of a frame"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::GreetingTimeout(d) => write!(f, "no greeting within {}s", d.as_secs_f64()),
            Self::Stalled(d) => write!(f, "stopped reading for {}s", d.as_secs_f64()),
        }
    }
}

/// A local caller's mistake, returned by [`FloodState::handle_input`]; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// A typed line longer than [`MAX_MESSAGE_LEN`] bytes; holds the length given.
    LineTooLong(usize),
    /// A typed line that is not UTF-8.
    LineNotUtf8,
    /// A typed line holding a line feed.
    LineHasLineFeed,
    /// A typed line already in the room; it is not sent again.
    AlreadySaid,
    /// An input names a peer that is not connected (never was, or already gone).
    UnknownPeer(PeerId),
    /// [`Input::Connected`] for a peer that is already connected.
    PeerExists(PeerId),
    /// [`Input::Sent`] with no [`Output::Send`] outstanding.
    NothingInFlight(PeerId),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong(_) => write!(
                f,
                "line is longer than the maximum of {MAX_MESSAGE_LEN} bytes; not sent"
            ),
            Self::LineNotUtf8 => f.write_str("line is not valid UTF-8; not sent"),
            Self::LineHasLineFeed => f.write_str("line contains a line feed; not sent"),
            Self::AlreadySaid => f.write_str("already said in this room; not sent again"),
            Self::UnknownPeer(p) => write!(f, "{p} is not connected"),
            Self::PeerExists(p) => write!(f, "{p} is already connected"),
            Self::NothingInFlight(p) => write!(f, "{p} had nothing in flight"),
        }
    }
}

impl std::error::Error for InputError {}

/// Counters since creation, for tests and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Message frames queued for sending, over all peers.
    pub frames_sent: u64,
    /// Bytes queued for sending (greetings and frames), over all peers.
    pub bytes_sent: u64,
    /// Message frames received, duplicates included.
    pub frames_received: u64,
}

/// One string of the room, in the order this client learned it.
#[derive(Debug)]
struct Entry {
    text: Arc<str>,
    /// The peer it came from, which is not sent it back; `None` if typed here.
    origin: Option<PeerId>,
}

#[derive(Debug)]
struct Peer {
    decoder: FrameDecoder,
    /// Index into the log of the next entry this peer may need.
    cursor: usize,
    /// [`Output::Send`]s not yet acknowledged by [`Input::Sent`].
    in_flight: usize,
    /// When the greeting is due, or, once greeted, when the oldest unacknowledged send stalls.
    deadline: Option<Instant>,
}

/// The state of one client: the grow-only set of strings and its peers, with no IO.
///
/// Methods come in three kinds, in the spirit of quinn-proto and str0m:
/// - [`handle_input`](Self::handle_input): something happened (a typed line, bytes, a timer);
/// - [`poll_output`](Self::poll_output) and [`poll_timeout`](Self::poll_timeout): what to do
///   now, and when to call again with [`Input::Timeout`]. Drain `poll_output` to `None` after
///   every input;
/// - getters that only read.
///
/// Every string is kept in a log in the order it was learned. What a peer still needs is the
/// part of the log after its cursor, so a slow peer or a late joiner costs no queue: history
/// of any size is sent in batches as fast as the peer reads it, never more than
/// [`Config::max_in_flight`] batches at once.
#[derive(Debug)]
pub struct FloodState {
    config: Config,
    now: Instant,
    seen: HashSet<Arc<str>>,
    log: Vec<Entry>,
    peers: HashMap<PeerId, Peer>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl FloodState {
    /// An empty room at time `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            config,
            now,
            seen: HashSet::new(),
            log: Vec::new(),
            peers: HashMap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Feeds one input at time `now`; drain [`poll_output`](Self::poll_output) afterwards.
    ///
    /// A misbehaving remote peer is never an `Err`: it becomes an [`Output::Disconnect`].
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        self.now = self.now.max(now);
        match input {
            Input::LineTyped(line) => self.line_typed(line),
            Input::Connected(peer) => self.connected(peer),
            Input::Received(peer, bytes) => self.received(peer, bytes),
            Input::Sent(peer) => self.sent(peer),
            Input::Closed(peer) => {
                let p = self.peer(peer)?;
                let reason = if !p.decoder.greeted() {
                    DisconnectReason::ClosedBeforeGreeting
                } else if p.decoder.is_mid_item() {
                    DisconnectReason::ClosedMidFrame
                } else {
                    DisconnectReason::Closed
                };
                self.disconnect(peer, reason);
                Ok(())
            }
            Input::Timeout => {
                self.timeout();
                Ok(())
            }
        }
    }

    /// The next thing to do, or `None` when there is nothing more until the next input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to feed [`Input::Timeout`], or `None` if no timer is needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(|p| p.deadline).min()
    }

    /// The strings of the room, in the order this client learned them.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = &str> {
        self.log.iter().map(|e| &*e.text)
    }

    /// The strings of the room from the `start`th on, in the order this client learned them.
    pub fn messages_from(&self, start: usize) -> impl ExactSizeIterator<Item = &str> {
        self.log[start.min(self.log.len())..]
            .iter()
            .map(|e| &*e.text)
    }

    /// Whether `text` is in the room.
    pub fn contains(&self, text: &str) -> bool {
        self.seen.contains(text)
    }

    /// Connected peers, greeted or not.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Whether `peer` is connected and has greeted.
    pub fn is_ready(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.decoder.greeted())
    }

    /// Whether every greeted peer has been sent, and has acknowledged, all it needs.
    pub fn is_flushed(&self) -> bool {
        self.outputs.is_empty()
            && self
                .peers
                .values()
                .all(|p| p.in_flight == 0 && (!p.decoder.greeted() || p.cursor == self.log.len()))
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn peer(&mut self, peer: PeerId) -> Result<&mut Peer, InputError> {
        self.peers
            .get_mut(&peer)
            .ok_or(InputError::UnknownPeer(peer))
    }

    fn line_typed(&mut self, line: &[u8]) -> Result<(), InputError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_MESSAGE_LEN {
            return Err(InputError::LineTooLong(line.len()));
        }
        let text = std::str::from_utf8(line).map_err(|_| InputError::LineNotUtf8)?;
        if text.is_empty() {
            return Ok(());
        }
        if text.contains('\n') {
            return Err(InputError::LineHasLineFeed);
        }
        if !self.learn(text, None) {
            return Err(InputError::AlreadySaid);
        }
        Ok(())
    }

    fn connected(&mut self, peer: PeerId) -> Result<(), InputError> {
        if self.peers.contains_key(&peer) {
            return Err(InputError::PeerExists(peer));
        }
        self.peers.insert(
            peer,
            Peer {
                decoder: FrameDecoder::new(),
                cursor: 0,
                in_flight: 1,
                deadline: self.now.checked_add(self.config.greeting_timeout),
            },
        );
        self.stats.bytes_sent += GREETING.len() as u64;
        self.outputs.push_back(Output::Send {
            peer,
            bytes: GREETING.to_vec(),
        });
        Ok(())
    }

    fn received(&mut self, peer: PeerId, mut bytes: &[u8]) -> Result<(), InputError> {
        let decoder = &mut self.peer(peer)?.decoder;
        let mut decoded = Vec::new();
        let error = loop {
            match decoder.decode(&mut bytes) {
                Ok(Some(item)) => decoded.push(item),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        for item in decoded {
            match item {
                Decoded::Greeting => {
                    let deadline = self.now.checked_add(self.config.stall_timeout);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.deadline = deadline.filter(|_| p.in_flight > 0);
                    }
                    self.outputs.push_back(Output::PeerReady(peer));
                    self.pump(peer);
                }
                Decoded::Message(text) => {
                    self.stats.frames_received += 1;
                    self.learn(&text, Some(peer));
                }
            }
        }
        if let Some(e) = error {
            self.disconnect(peer, DisconnectReason::Protocol(e));
        }
        Ok(())
    }

    fn sent(&mut self, peer: PeerId) -> Result<(), InputError> {
        let deadline = self.now.checked_add(self.config.stall_timeout);
        let p = self.peer(peer)?;
        if p.in_flight == 0 {
            return Err(InputError::NothingInFlight(peer));
        }
        p.in_flight -= 1;
        if p.decoder.greeted() {
            p.deadline = deadline.filter(|_| p.in_flight > 0);
        }
        self.pump(peer);
        Ok(())
    }

    fn timeout(&mut self) {
        let now = self.now;
        let mut expired: Vec<(PeerId, DisconnectReason)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(&id, p)| {
                let reason = if p.decoder.greeted() {
                    DisconnectReason::Stalled(self.config.stall_timeout)
                } else {
                    DisconnectReason::GreetingTimeout(self.config.greeting_timeout)
                };
                (id, reason)
            })
            .collect();
        expired.sort_by_key(|(id, _)| *id);
        for (peer, reason) in expired {
            self.disconnect(peer, reason);
        }
    }

    fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if self.peers.remove(&peer).is_some() {
            self.outputs.push_back(Output::Disconnect { peer, reason });
        }
    }

    /// Adds `text` if it is new to this client, prints it and offers it to every greeted
    /// peer; returns whether it was new. One hash lookup either way.
    fn learn(&mut self, text: &str, origin: Option<PeerId>) -> bool {
        let known = self.seen.len();
        let text = self.seen.get_or_insert_with(text, |t| Arc::from(t)).clone();
        if self.seen.len() == known {
            return false;
        }
        self.outputs.push_back(Output::Print(text.clone()));
        self.log.push(Entry { text, origin });
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        for peer in ids {
            self.pump(peer);
        }
        true
    }

    /// Sends `peer` the next part of the log it lacks, as far as its in-flight budget allows.
    fn pump(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.decoder.greeted() {
            return;
        }
        while p.in_flight < self.config.max_in_flight && p.cursor < self.log.len() {
            let mut bytes = Vec::new();
            while p.cursor < self.log.len() && bytes.len() < self.config.send_batch {
                let entry = &self.log[p.cursor];
                p.cursor += 1;
                if entry.origin != Some(peer) {
                    wire::encode_frame(&entry.text, &mut bytes);
                    self.stats.frames_sent += 1;
                }
            }
            if bytes.is_empty() {
                continue;
            }
            if p.in_flight == 0 {
                p.deadline = self.now.checked_add(self.config.stall_timeout);
            }
            p.in_flight += 1;
            self.stats.bytes_sent += bytes.len() as u64;
            self.outputs.push_back(Output::Send { peer, bytes });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameDecoder, encode_frame};

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    /// A state under test with a clock the test moves.
    struct Harness {
        state: FloodState,
        now: Instant,
    }

    impl Harness {
        fn new() -> Self {
            Self::with(Config::default())
        }

        fn with(config: Config) -> Self {
            let now = Instant::now();
            Self {
                state: FloodState::new(config, now),
                now,
            }
        }

        fn input(&mut self, input: Input<'_>) -> Vec<Output> {
            self.state.handle_input(self.now, input).unwrap();
            self.drain()
        }

        fn drain(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.state.poll_output()).collect()
        }

        /// Connects `peer`, acknowledges our greeting and feeds theirs.
        fn greeted(&mut self, peer: PeerId) -> Vec<Output> {
            let out = self.input(Input::Connected(peer));
            assert_eq!(out, vec![send(peer, GREETING.to_vec())]);
            self.input(Input::Sent(peer));
            self.input(Input::Received(peer, &GREETING))
        }

        fn advance(&mut self, by: Duration) -> Vec<Output> {
            self.now += by;
            self.input(Input::Timeout)
        }
    }

    fn send(peer: PeerId, bytes: Vec<u8>) -> Output {
        Output::Send { peer, bytes }
    }

    fn print(text: &str) -> Output {
        Output::Print(text.into())
    }

    fn frames(messages: &[&str]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for m in messages {
            encode_frame(m, &mut bytes);
        }
        bytes
    }

    /// The messages carried by a peer's Sends (greetings skipped).
    fn sent_messages(outputs: &[Output], to: PeerId) -> Vec<String> {
        let mut decoder = FrameDecoder::new();
        let mut input: &[u8] = &GREETING;
        decoder.decode(&mut input).unwrap();
        let mut got = Vec::new();
        for o in outputs {
            if let Output::Send { peer, bytes } = o
                && *peer == to
                && bytes[..] != GREETING
            {
                let mut input = &bytes[..];
                while let Some(Decoded::Message(m)) = decoder.decode(&mut input).unwrap() {
                    got.push(m);
                }
                assert!(input.is_empty());
            }
        }
        got
    }

    #[test]
    fn typed_line_is_printed_and_sent_to_every_greeted_peer() {
        let mut h = Harness::new();
        assert_eq!(h.greeted(A), vec![Output::PeerReady(A)]);
        assert_eq!(h.greeted(B), vec![Output::PeerReady(B)]);
        let out = h.input(Input::LineTyped(b"hello\r"));
        assert_eq!(
            out,
            vec![
                print("hello"),
                send(A, frames(&["hello"])),
                send(B, frames(&["hello"]))
            ]
        );
        assert!(h.state.contains("hello"));
    }

    #[test]
    fn typed_line_errors_leave_the_state_unchanged() {
        let mut h = Harness::new();
        h.greeted(A);
        let long = vec![b'x'; MAX_MESSAGE_LEN + 1];
        let cases: [(&[u8], InputError); 4] = [
            (&long, InputError::LineTooLong(MAX_MESSAGE_LEN + 1)),
            (b"\xff", InputError::LineNotUtf8),
            (b"a\nb", InputError::LineHasLineFeed),
            (b"", InputError::AlreadySaid),
        ];
        h.input(Input::LineTyped(b"once"));
        for (line, err) in cases {
            let line = if line.is_empty() { b"once" } else { line };
            assert_eq!(
                h.state.handle_input(h.now, Input::LineTyped(line)),
                Err(err)
            );
            assert_eq!(h.drain(), vec![]);
        }
        assert_eq!(h.state.messages().collect::<Vec<_>>(), ["once"]);
        assert_eq!(
            h.input(Input::LineTyped(b"")),
            vec![],
            "empty lines are ignored"
        );
        assert_eq!(h.input(Input::LineTyped(b"\r")), vec![]);
        let max = "m".repeat(MAX_MESSAGE_LEN);
        assert_eq!(h.input(Input::LineTyped(max.as_bytes()))[0], print(&max));
    }

    #[test]
    fn new_string_is_printed_and_forwarded_to_all_but_its_sender() {
        let mut h = Harness::new();
        h.greeted(A);
        h.greeted(B);
        let out = h.input(Input::Received(A, &frames(&["from a"])));
        assert_eq!(out, vec![print("from a"), send(B, frames(&["from a"]))]);
    }

    #[test]
    fn duplicate_string_is_ignored() {
        let mut h = Harness::new();
        h.greeted(A);
        h.greeted(B);
        h.input(Input::Received(A, &frames(&["x"])));
        h.input(Input::Sent(B));
        assert_eq!(h.input(Input::Received(B, &frames(&["x"]))), vec![]);
        assert_eq!(h.input(Input::Received(A, &frames(&["x"]))), vec![]);
        assert_eq!(h.state.stats().frames_received, 3);
        assert_eq!(h.state.messages().count(), 1);
    }

    #[test]
    fn connect_sends_history_only_after_the_greeting() {
        let mut h = Harness::new();
        h.input(Input::LineTyped(b"one"));
        h.input(Input::LineTyped(b"two"));
        assert_eq!(
            h.input(Input::Connected(A)),
            vec![send(A, GREETING.to_vec())],
            "no history before the peer proves it speaks floodchat"
        );
        h.input(Input::Sent(A));
        let out = h.input(Input::Received(A, &GREETING));
        assert_eq!(
            out,
            vec![Output::PeerReady(A), send(A, frames(&["one", "two"]))]
        );
    }

    #[test]
    fn history_of_any_size_flows_in_bounded_batches_as_the_peer_reads() {
        let config = Config {
            send_batch: 100,
            max_in_flight: 2,
            ..Config::default()
        };
        let mut h = Harness::with(config);
        let typed: Vec<String> = (0..500).map(|i| format!("message {i}")).collect();
        for t in &typed {
            h.input(Input::LineTyped(t.as_bytes()));
        }
        let mut all = h.greeted(A);
        assert_eq!(
            all.iter()
                .filter(|o| matches!(o, Output::Send { .. }))
                .count(),
            2
        );
        // Ack slowly, one at a time, past many stall timeouts in total: never dropped.
        for _ in 0..1000 {
            h.now += Duration::from_secs(20);
            let out = h.input(Input::Sent(A));
            let sends = out
                .iter()
                .filter(|o| matches!(o, Output::Send { .. }))
                .count();
            assert!(sends <= 1, "one ack frees one slot");
            for o in &out {
                if let Output::Send { bytes, .. } = o {
                    assert!(bytes.len() < 100 + 4 + 20);
                }
            }
            all.extend(out);
            if h.state.is_flushed() {
                break;
            }
            assert!(h.drain().is_empty());
            all.extend(h.input(Input::Timeout));
        }
        assert!(h.state.is_flushed());
        assert!(h.state.is_connected(A));
        assert_eq!(sent_messages(&all, A), typed);
    }

    #[test]
    fn string_is_not_sent_back_to_its_sender_in_history() {
        let mut h = Harness::new();
        h.greeted(A);
        h.input(Input::Received(A, &frames(&["from a"])));
        h.input(Input::LineTyped(b"mine"));
        let out = h.greeted(B);
        assert_eq!(sent_messages(&out, B), ["from a", "mine"]);
        let out = h.input(Input::Sent(A));
        assert_eq!(sent_messages(&out, A), Vec::<String>::new());
    }

    #[test]
    fn disconnect_forgets_the_peer() {
        let mut h = Harness::new();
        h.greeted(A);
        h.greeted(B);
        let out = h.input(Input::Closed(A));
        assert_eq!(
            out,
            vec![Output::Disconnect {
                peer: A,
                reason: DisconnectReason::Closed
            }]
        );
        assert!(!h.state.is_connected(A));
        assert_eq!(
            h.state.handle_input(h.now, Input::Received(A, b"x")),
            Err(InputError::UnknownPeer(A))
        );
        let out = h.input(Input::LineTyped(b"after"));
        assert_eq!(out, vec![print("after"), send(B, frames(&["after"]))]);
    }

    #[test]
    fn close_reasons_tell_where_the_stream_stopped() {
        let mut h = Harness::new();
        h.input(Input::Connected(A));
        assert_eq!(
            h.input(Input::Closed(A)),
            vec![Output::Disconnect {
                peer: A,
                reason: DisconnectReason::ClosedBeforeGreeting
            }]
        );
        h.greeted(B);
        h.input(Input::Received(B, &frames(&["cut"])[..5]));
        assert_eq!(
            h.input(Input::Closed(B)),
            vec![Output::Disconnect {
                peer: B,
                reason: DisconnectReason::ClosedMidFrame
            }]
        );
    }

    #[test]
    fn bytes_split_at_every_point_give_the_same_outputs() {
        let mut stream = GREETING.to_vec();
        stream.extend(frames(&["alpha", "βeta", "alpha", "gamma"]));
        let whole = {
            let mut h = Harness::new();
            h.input(Input::Connected(A));
            h.input(Input::Received(A, &stream))
        };
        assert_eq!(
            whole,
            vec![
                Output::PeerReady(A),
                print("alpha"),
                print("βeta"),
                print("gamma")
            ]
        );
        for split in 0..=stream.len() {
            let mut h = Harness::new();
            h.input(Input::Connected(A));
            let mut out = h.input(Input::Received(A, &stream[..split]));
            out.extend(h.input(Input::Received(A, &stream[split..])));
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn misbehaving_peers_are_disconnected_with_a_reason_and_print_nothing() {
        let mut oversized = GREETING.to_vec();
        oversized.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut bad_utf8 = GREETING.to_vec();
        bad_utf8.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0x28]);
        let cases: [(&[u8], DecodeError); 3] = [
            (
                b"GET / HTTP/1.1\r\n",
                DecodeError::BadMagic { got: b"G".to_vec() },
            ),
            (&oversized, DecodeError::FrameTooLarge(u32::MAX)),
            (&bad_utf8, DecodeError::InvalidUtf8),
        ];
        for (bytes, err) in cases {
            let mut h = Harness::new();
            h.greeted(B);
            h.input(Input::Connected(A));
            let out = h.input(Input::Received(A, bytes));
            let disconnect = Output::Disconnect {
                peer: A,
                reason: DisconnectReason::Protocol(err),
            };
            assert_eq!(out.last(), Some(&disconnect));
            assert!(!out.iter().any(|o| matches!(o, Output::Print(_))));
            assert!(!h.state.is_connected(A));
            assert!(h.state.is_connected(B), "other peers carry on");
        }
    }

    #[test]
    fn good_frames_before_a_bad_one_still_count() {
        let mut h = Harness::new();
        h.input(Input::Connected(A));
        let mut bytes = GREETING.to_vec();
        bytes.extend(frames(&["fine"]));
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        let out = h.input(Input::Received(A, &bytes));
        assert_eq!(
            out,
            vec![
                Output::PeerReady(A),
                print("fine"),
                Output::Disconnect {
                    peer: A,
                    reason: DisconnectReason::Protocol(DecodeError::EmptyFrame)
                }
            ]
        );
    }

    #[test]
    fn silent_connection_times_out_waiting_for_the_greeting() {
        let mut h = Harness::new();
        h.input(Input::Connected(A));
        h.input(Input::Sent(A));
        let due = h.state.poll_timeout().unwrap();
        assert_eq!(due, h.now + Config::default().greeting_timeout);
        assert_eq!(h.advance(Duration::from_millis(4999)), vec![]);
        assert_eq!(
            h.advance(Duration::from_millis(1)),
            vec![Output::Disconnect {
                peer: A,
                reason: DisconnectReason::GreetingTimeout(Duration::from_secs(5))
            }]
        );
        assert_eq!(h.state.poll_timeout(), None);
    }

    #[test]
    fn peer_that_stops_reading_is_dropped_and_idle_peers_need_no_timer() {
        let mut h = Harness::new();
        h.greeted(A);
        assert_eq!(h.state.poll_timeout(), None, "idle: no timer, no spinning");
        h.input(Input::LineTyped(b"unread"));
        let stall = Config::default().stall_timeout;
        assert_eq!(h.state.poll_timeout(), Some(h.now + stall));
        assert_eq!(h.advance(stall - Duration::from_millis(1)), vec![]);
        assert_eq!(
            h.advance(Duration::from_millis(1)),
            vec![Output::Disconnect {
                peer: A,
                reason: DisconnectReason::Stalled(stall)
            }]
        );
        assert_eq!(
            DisconnectReason::Stalled(stall).to_string(),
            "stopped reading for 30s"
        );
    }

    #[test]
    fn timeouts_too_long_for_the_clock_mean_no_deadline() {
        let mut h = Harness::with(Config {
            greeting_timeout: Duration::MAX,
            stall_timeout: Duration::MAX,
            ..Config::default()
        });
        h.greeted(A);
        h.input(Input::LineTyped(b"never times out"));
        assert_eq!(h.state.poll_timeout(), None);
    }

    #[test]
    fn caller_mistakes_are_errors() {
        let mut h = Harness::new();
        assert_eq!(
            h.state.handle_input(h.now, Input::Received(A, b"x")),
            Err(InputError::UnknownPeer(A))
        );
        assert_eq!(
            h.state.handle_input(h.now, Input::Closed(A)),
            Err(InputError::UnknownPeer(A))
        );
        h.greeted(A);
        assert_eq!(
            h.state.handle_input(h.now, Input::Connected(A)),
            Err(InputError::PeerExists(A))
        );
        assert_eq!(
            h.state.handle_input(h.now, Input::Sent(A)),
            Err(InputError::NothingInFlight(A))
        );
        assert_eq!(h.drain(), vec![]);
    }
}
