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
            && self.peers.values().all(|p| {
                p.in_flight == 0 && (!p.decoder.greeted() || p.cursor == self.log.len())
            })
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
        if self.seen.contains(text) {
            return Err(InputError::AlreadySaid);
        }
        self.learn(text.into(), None);
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
                deadline: Some(self.now + self.config.greeting_timeout),
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
                    let deadline = self.now + self.config.stall_timeout;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.deadline = (p.in_flight > 0).then_some(deadline);
                    }
                    self.outputs.push_back(Output::PeerReady(peer));
                    self.pump(peer);
                }
                Decoded::Message(text) => {
                    self.stats.frames_received += 1;
                    if !self.seen.contains(text.as_str()) {
                        self.learn(text.into(), Some(peer));
                    }
                }
            }
        }
        if let Some(e) = error {
            self.disconnect(peer, DisconnectReason::Protocol(e));
        }
        Ok(())
    }

    fn sent(&mut self, peer: PeerId) -> Result<(), InputError> {
        let now = self.now;
        let stall = self.config.stall_timeout;
        let p = self.peer(peer)?;
        if p.in_flight == 0 {
            return Err(InputError::NothingInFlight(peer));
        }
        p.in_flight -= 1;
        if p.decoder.greeted() {
            p.deadline = (p.in_flight > 0).then_some(now + stall);
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

    /// Adds a string new to this client, prints it and offers it to every greeted peer.
    fn learn(&mut self, text: Arc<str>, origin: Option<PeerId>) {
        let inserted = self.seen.insert(text.clone());
        debug_assert!(inserted, "learn() called with a known string");
        self.outputs.push_back(Output::Print(text.clone()));
        self.log.push(Entry { text, origin });
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        for peer in ids {
            self.pump(peer);
        }
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
                p.deadline = Some(self.now + self.config.stall_timeout);
            }
            p.in_flight += 1;
            self.stats.bytes_sent += bytes.len() as u64;
            self.outputs.push_back(Output::Send { peer, bytes });
        }
    }
}
