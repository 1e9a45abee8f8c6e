//! [`FloodState`]: everything a client decides, with no IO.
//!
//! Three parts behind one door, and a router between them: the [`Mesh`] decides which
//! clients to be linked to (dialing, admission, addresses); the [`Room`] keeps the set of
//! strings and decides what each link is sent (live flooding, reconciliation, owed strings,
//! batching within the in-flight budget); the [`Herald`] decides what the user hears about
//! links. `FloodState` owns the connections: it decodes their bytes, keeps every deadline in
//! one [`Timers`] table, routes each frame to the part it concerns (Hello, Addrs and Bye to
//! the mesh; Text, Recon and Want to the room), passes `LinkUp`s from the mesh to the room,
//! closes what either part says to close, and turns what the parts decide into [`Output`]s.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::herald::{Herald, Notice};
use crate::mesh::{CloseWhy, Mesh, MeshConfig, MeshInput, MeshOutput};
use crate::peer::{DisconnectReason, PeerId};
use crate::room::{Refused, Room, RoomConfig, RoomInput, RoomOutput, Stats};
use crate::secure::{Identity, Link, LinkError, Read, Role, RoomKey};
use crate::sources::Sources;
use crate::timers::Timers;
use crate::wire::{
    self, ByeReason, ClientId, Decoded, DecodedRef, Frame, FrameDecoder, GREETING, Hello, TextError,
};

/// Tunables and identity of a [`FloodState`].
#[derive(Debug, Clone)]
pub struct Config {
    /// This client's identity: its Noise static key. A real client sets a random one; the
    /// default is a fixed key, for tests only.
    pub identity: Identity,
    /// The room this client is in: open, or private to holders of its key.
    pub room: RoomKey,
    /// Secret randomness for the handshakes' ephemeral keys. A real client sets 32 random
    /// bytes; the default (zeros) makes them predictable, for tests only.
    pub entropy: [u8; 32],
    /// Seeds every other random choice of the core.
    pub seed: u64,
    /// The port this client accepts connections on, told to peers in the Hello (0: none).
    pub listen_port: u16,
    /// How long a new connection may take to send its greeting and Hello.
    pub greeting_timeout: Duration,
    /// How long a frame, once begun, may take to arrive whole.
    pub frame_timeout: Duration,
    /// How long a linked peer may send nothing at all before it is dropped.
    pub idle_timeout: Duration,
    /// After how long without sending anything a link gets a keepalive.
    pub keepalive: Duration,
    /// How long a peer may leave sent bytes unacknowledged before it is dropped as not reading.
    pub stall_timeout: Duration,
    /// How long a connection closed on purpose may take to write its Bye.
    pub linger: Duration,
    /// Target size of one [`Output::Send`]; frames are batched up to about this many bytes.
    pub send_batch: usize,
    /// How many [`Output::Send`]s may await [`Input::Sent`] per peer.
    pub max_in_flight: usize,
    /// The most strings the room holds here; later ones are neither printed nor relayed.
    pub max_room_strings: usize,
    /// The most bytes of text the room holds here.
    pub max_room_bytes: usize,
    /// New strings one connection may introduce unasked (live, not asked for nor expected
    /// from reconciliation) in a burst: a paste relayed, a partition healed.
    pub flood_burst: u64,
    /// New strings a second one connection may introduce unasked, sustained.
    pub flood_rate: f64,
    /// Bytes of new strings one connection may introduce unasked in a burst.
    pub flood_burst_bytes: u64,
    /// Bytes a second of new strings one connection may introduce unasked, sustained.
    pub flood_rate_bytes: f64,
    /// How long the address of a connection dropped for flooding is refused and not dialed.
    pub flood_backoff: Duration,
    /// Bytes of history one IP address may be sent in an hour, as a multiple of the room's
    /// text (at least [`Config::history_floor`]).
    pub history_rooms_per_hour: u64,
    /// Bytes of history any IP address may be sent in an hour, whatever the room's size.
    pub history_floor: u64,
    /// The mesh's tunables.
    pub mesh: MeshConfig,
    /// Addresses of the room's clients kept from an earlier run (see
    /// [`FloodState::addrs_to_keep`]): dialed from [`Input::Start`] on, as a contact is.
    pub known: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            room: RoomKey::Open,
            entropy: [0; 32],
            seed: 0,
            listen_port: 0,
            greeting_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(1),
            send_batch: 32 * 1024,
            max_in_flight: 4,
            max_room_strings: 4_000_000,
            max_room_bytes: 512 * 1024 * 1024,
            flood_burst: 50_000,
            flood_rate: 200.0,
            flood_burst_bytes: 64 * 1024 * 1024,
            flood_rate_bytes: 256.0 * 1024.0,
            flood_backoff: Duration::from_secs(600),
            history_rooms_per_hour: 4,
            history_floor: 16 * 1024 * 1024,
            mesh: MeshConfig::default(),
            known: Vec::new(),
        }
    }
}

/// Something that happened, for [`FloodState::handle_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// The client starts; `contact` is the address the user gave to join through.
    Start {
        /// Where to join, or `None` for a new room.
        contact: Option<SocketAddr>,
    },
    /// The user typed a line (without its `\n`; a trailing `\r` is removed here).
    LineTyped(&'a [u8]),
    /// An inbound connection was accepted.
    Accepted {
        /// The name the driver gives it.
        peer: PeerId,
        /// The remote address.
        remote: SocketAddr,
    },
    /// An [`Output::Dial`] connected.
    Dialed {
        /// The name the driver gives it.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
    },
    /// An [`Output::Dial`] failed.
    DialFailed(SocketAddr),
    /// Bytes read from a peer.
    Received(PeerId, &'a [u8]),
    /// The bytes of one [`Output::Send`] to this peer were written to the socket.
    Sent(PeerId),
    /// The peer's connection ended (end of stream or an IO error).
    Closed(PeerId),
    /// The client is leaving now: each link is told so, and no new one is made. To leave
    /// once the links have everything, feed [`Input::EndOfInput`] instead.
    Leave,
    /// The user's input ended: leave once every link has been sent all it needs, or once the
    /// links made no progress for [`Config::stall_timeout`] (said in a notice), as
    /// [`Input::Leave`] does; [`FloodState::has_left`] tells when every connection is closed.
    EndOfInput,
    /// The time is at or past [`FloodState::poll_timeout`].
    Timeout,
}

/// Something the driver must do, from [`FloodState::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The string at this index of the room ([`FloodState::message`]) is new: print it on its
    /// own line. Indices come in order, one more each time.
    Print(usize),
    /// Write these bytes to this peer, then report [`Input::Sent`].
    Send {
        /// The connection to write to.
        peer: PeerId,
        /// The bytes: the greeting and Hello, or whole frames.
        bytes: Vec<u8>,
    },
    /// Connect to this address, then report [`Input::Dialed`] or [`Input::DialFailed`].
    Dial(SocketAddr),
    /// This peer said a valid Hello and is now a link of the room.
    PeerReady(PeerId),
    /// Close this connection at once and forget it; nothing more comes about it.
    Disconnect {
        /// The connection to close.
        peer: PeerId,
        /// Why, for a person to read.
        reason: DisconnectReason,
    },
    /// Something the user should hear of, on stderr.
    Notice(Notice),
}

/// A local caller's mistake or a refused line, returned by [`FloodState::handle_input`]; the
/// state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// A typed line that is not a chat string.
    BadLine(TextError),
    /// A typed line already in the room; it is not sent again.
    AlreadySaid,
    /// The room is at this client's size limit.
    RoomFull,
    /// An input names a peer that is not connected (never was, or already gone).
    UnknownPeer(PeerId),
    /// A connection input for a peer that is already connected.
    PeerExists(PeerId),
    /// [`Input::Sent`] with no [`Output::Send`] outstanding.
    NothingInFlight(PeerId),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLine(e) => write!(f, "line not sent: {e}"),
            Self::AlreadySaid => f.write_str("already said in this room; not sent again"),
            Self::RoomFull => f.write_str("the room is full here; not sent"),
            Self::UnknownPeer(p) => write!(f, "{p} is not connected"),
            Self::PeerExists(p) => write!(f, "{p} is already connected"),
            Self::NothingInFlight(p) => write!(f, "{p} had nothing in flight"),
        }
    }
}

impl std::error::Error for InputError {}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The encrypted handshake is under way.
    Handshake,
    /// Waiting for the peer's greeting and Hello.
    Greeting,
    /// A link of the room.
    Linked,
    /// Closing on purpose: the Bye is on its way, then [`Output::Disconnect`].
    Closing,
}

/// The kinds of timer a connection has, one slot each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKind {
    /// The greeting and Hello are due.
    Greeting,
    /// A begun frame is due whole.
    Frame,
    /// The peer must have said something by then.
    Idle,
    /// We must have sent something by then.
    Keepalive,
    /// The oldest unacknowledged send is due.
    Stall,
    /// A closing connection is closed by then.
    Linger,
    /// Live strings wait for the link's pace until then.
    Pace,
}

/// A connection's life: its record layer, decoder, phase and clocks. What it is sent is the
/// room's.
#[derive(Debug)]
struct Connection {
    /// The prologue, handshake and records around the frame stream.
    link: Link,
    /// Handshake messages written and not yet reported [`Input::Sent`].
    handshake_in_flight: usize,
    decoder: FrameDecoder,
    phase: Phase,
    /// Whether we dialed it, and so start reconciliation.
    dialed: bool,
    last_received: Instant,
    last_sent: Instant,
    /// Why a closing connection is closed.
    closing: Option<DisconnectReason>,
    /// The remote IP address, which prices are kept by.
    ip: IpAddr,
}

/// The state of one client: the grow-only set of strings, its links and its mesh, with no IO.
///
/// Methods come in four kinds, as in quinn-proto's `Connection`:
/// - getters (`&self`): [`messages`](Self::messages), [`is_flushed`](Self::is_flushed),
///   [`stats`](Self::stats) and the like, which only read;
/// - [`handle_input`](Self::handle_input): something happened (bytes from a peer, a
///   connection opened or closed, a send written, the time of [`poll_timeout`](Self::poll_timeout)
///   reached), including the user's typed lines;
/// - commands that change the setup without an event: [`set_listen_port`](Self::set_listen_port);
/// - `poll_*`: what to do now. Drain [`poll_output`](Self::poll_output) to `None` after every
///   input, then read [`poll_timeout`](Self::poll_timeout) (the outputs may have moved it) and
///   feed [`Input::Timeout`] once that time is reached.
///
/// Time comes in only as the `now` of [`handle_input`](Self::handle_input), and never goes back:
/// a `now` earlier than one already given is taken as the latest time seen, so a clock that
/// steps back delays deadlines rather than firing or reordering them.
///
/// Every string is kept in a string store in the order it was learned. When a link is made the
/// two sides reconcile their sets, so each sends only what the other lacks, as ranges of ids
/// walked in batches; strings learned after the link is made are flooded live from a cursor.
/// So a slow peer or a late joiner costs no queue: what it lacks is sent as fast as it reads,
/// never more than [`Config::max_in_flight`] batches at once.
#[derive(Debug)]
pub struct FloodState {
    config: Config,
    now: Instant,
    conns: HashMap<PeerId, Connection>,
    timers: Timers<(PeerId, TimerKind)>,
    mesh: Mesh,
    /// The set of strings and what each link is sent.
    room: Room,
    /// What the user is told about links.
    herald: Herald,
    /// What each remote address cost lately.
    sources: Sources,
    /// Since [`Input::EndOfInput`]: the links' progress last seen, and since when.
    leaving: Option<((u64, u64, u64), Instant)>,
    /// Whether the client left: links were told Bye.
    left: bool,
    outputs: VecDeque<Output>,
    /// The secret the next handshake's randomness is drawn from; it moves on at each draw.
    entropy: [u8; 32],
    /// The frame stream a read's records carried, reused from read to read.
    plain: Vec<u8>,
    /// What the simulator sees inside the records, when it asks.
    #[cfg(feature = "sim")]
    tap: Option<Tap>,
}

/// The frame streams inside the records, for the simulator's checks: per [`Output::Send`] in
/// order, what it carried (empty for a handshake message), and what the last read opened.
#[cfg(feature = "sim")]
#[derive(Debug, Default)]
struct Tap {
    sent: VecDeque<Vec<u8>>,
    opened: Vec<u8>,
}

impl FloodState {
    /// An empty room at time `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        let config_entropy = config.entropy;
        let client = config.identity.client_id();
        let mesh = Mesh::new(config.mesh.clone(), client, config.seed, now);
        let room = Room::new(
            RoomConfig {
                send_batch: config.send_batch,
                max_in_flight: config.max_in_flight,
                max_strings: config.max_room_strings,
                max_bytes: config.max_room_bytes,
                flood_burst: config.flood_burst,
                flood_rate: config.flood_rate,
                flood_burst_bytes: config.flood_burst_bytes,
                flood_rate_bytes: config.flood_rate_bytes,
            },
            now,
        );
        Self {
            config,
            now,
            conns: HashMap::new(),
            timers: Timers::default(),
            mesh,
            room,
            herald: Herald::new(now),
            sources: Sources::default(),
            leaving: None,
            left: false,
            outputs: VecDeque::new(),
            entropy: config_entropy,
            plain: Vec::new(),
            #[cfg(feature = "sim")]
            tap: None,
        }
    }

    /// Feeds one input at time `now` (clamped to the latest time seen); drain
    /// [`poll_output`](Self::poll_output) afterwards.
    ///
    /// A misbehaving remote peer is never an `Err`: it becomes an [`Output::Disconnect`].
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        self.now = self.now.max(now);
        let result = self.handle(input);
        self.end_joining();
        self.end_leaving();
        result
    }

    fn handle(&mut self, input: Input<'_>) -> Result<(), InputError> {
        match input {
            Input::Start { contact } => {
                self.herald.start(contact);
                let known = std::mem::take(&mut self.config.known);
                self.mesh.remember(self.now, &known);
                self.mesh_input(MeshInput::Start { contact });
            }
            Input::LineTyped(line) => return self.line_typed(line),
            Input::Accepted { peer, remote } => {
                if self.conns.contains_key(&peer) {
                    return Err(InputError::PeerExists(peer));
                }
                if self.sources.is_banned(remote.ip(), self.now) {
                    // Flooded lately: closed before a byte is read; the mesh never hears.
                    let reason = DisconnectReason::BackedOff(remote.ip().to_canonical());
                    self.outputs.push_back(Output::Disconnect { peer, reason });
                    return Ok(());
                }
                self.open(peer, remote.ip(), false)?;
                self.herald.opened(peer, remote, false);
                self.mesh_input(MeshInput::Accepted { peer, remote });
            }
            Input::Dialed { peer, addr } => {
                self.open(peer, addr.ip(), true)?;
                self.herald.opened(peer, addr, true);
                self.mesh_input(MeshInput::Dialed { peer, addr });
            }
            Input::DialFailed(addr) => self.mesh_input(MeshInput::DialFailed { addr }),
            Input::Received(peer, bytes) => return self.received(peer, bytes),
            Input::Sent(peer) => return self.sent(peer),
            Input::Closed(peer) => {
                let c = self.conn(peer)?;
                let reason = if let Some(reason) = &c.closing {
                    reason.clone()
                } else if !c.decoder.hello_seen() {
                    DisconnectReason::ClosedBeforeGreeting
                } else if c.decoder.is_mid_item() || c.link.is_mid_record() {
                    DisconnectReason::ClosedMidFrame
                } else {
                    DisconnectReason::Closed
                };
                self.disconnect(peer, reason);
            }
            Input::Leave => self.leave(),
            Input::EndOfInput => {
                if self.leaving.is_none() {
                    self.leaving = Some((self.progress(), self.now));
                }
            }
            Input::Timeout => self.timeout(),
        }
        Ok(())
    }

    /// The next thing to do, or `None` when there is nothing more until the next input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to feed [`Input::Timeout`], or `None` if no timer is needed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let give_up = self
            .leaving
            .filter(|_| !self.left)
            .map(|(_, since)| since + self.config.stall_timeout);
        [
            self.timers.next(),
            self.mesh.poll_timeout(),
            self.herald.poll_timeout(),
            give_up,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The strings of the room, in the order this client learned them.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = &str> {
        self.room.store().iter()
    }

    /// The string at `index` in the order this client learned them.
    ///
    /// # Panics
    /// If `index` is not below the number of strings.
    pub fn message(&self, index: usize) -> &str {
        self.room.store().get(index)
    }

    /// The strings of the room from the `start`th on, in the order this client learned them.
    pub fn messages_from(&self, start: usize) -> impl ExactSizeIterator<Item = &str> {
        let store = self.room.store();
        (start.min(store.len())..store.len()).map(|i| store.get(i))
    }

    /// Adds a string kept from an earlier run (a driver's history on disk), before
    /// [`Input::Start`]: it is in the room, offered to links as any other, but gives no
    /// [`Output::Print`], as it was printed in that run. `false` if the string is not a chat
    /// string, already held, or beyond the room's limits.
    pub fn restore(&mut self, line: &[u8]) -> bool {
        wire::check_text(line).is_ok_and(|text| self.room.restore(text))
    }

    /// The addresses a driver keeps for the next run ([`Config::known`]): the clients this
    /// one had a link with, or was given; at most the address book's size.
    pub fn addrs_to_keep(&self) -> Vec<SocketAddr> {
        self.mesh.verified_addrs().collect()
    }

    /// Whether the client still waits for its first link through the contact it was started
    /// with: false once linked, or once every attempt failed (then it is a room of its own).
    pub fn is_joining(&self) -> bool {
        self.herald.is_joining()
    }

    /// Whether `text` is in the room.
    pub fn contains(&self, text: &str) -> bool {
        self.room.store().contains(text)
    }

    /// Connections, linked or not.
    pub fn peer_count(&self) -> usize {
        self.conns.len()
    }

    /// Connections that are links of the room.
    pub fn link_count(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.phase == Phase::Linked)
            .count()
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.conns.contains_key(&peer)
    }

    /// Whether `peer` is connected and a link of the room.
    pub fn is_ready(&self, peer: PeerId) -> bool {
        self.conns
            .get(&peer)
            .is_some_and(|c| c.phase == Phase::Linked)
    }

    /// Whether every link has been sent, and has acknowledged, all it needs.
    pub fn is_flushed(&self) -> bool {
        self.outputs.is_empty() && self.room.is_flushed()
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.room.stats()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts keeping the frame streams inside the records for the simulator's checks.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn tap(&mut self) {
        self.tap = Some(Tap::default());
    }

    /// The frame stream the oldest [`Output::Send`] not yet asked about carried (empty for a
    /// handshake message); `None` without [`tap`](Self::tap).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn tapped_send(&mut self) -> Option<Vec<u8>> {
        self.tap.as_mut()?.sent.pop_front()
    }

    /// The frame stream the last [`Input::Received`] carried; `None` without
    /// [`tap`](Self::tap).
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn tapped_read(&self) -> Option<&[u8]> {
        self.tap.as_ref().map(|t| &t.opened[..])
    }

    /// The id this client's key proves.
    pub fn client_id(&self) -> ClientId {
        self.config.identity.client_id()
    }

    /// Sets the room later connections are made in (before [`Input::Start`], once the user
    /// chose it).
    pub fn set_room(&mut self, room: RoomKey) {
        self.config.room = room;
    }

    /// Sets the port told to peers in later Hellos, once the driver has bound it.
    pub fn set_listen_port(&mut self, port: u16) {
        self.config.listen_port = port;
    }

    fn conn(&mut self, peer: PeerId) -> Result<&mut Connection, InputError> {
        self.conns
            .get_mut(&peer)
            .ok_or(InputError::UnknownPeer(peer))
    }

    fn line_typed(&mut self, line: &[u8]) -> Result<(), InputError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let text = wire::check_text(line).map_err(InputError::BadLine)?;
        self.room_input(RoomInput::Typed(text))
            .map_err(|refused| match refused {
                Refused::Known => InputError::AlreadySaid,
                Refused::Full => InputError::RoomFull,
            })
    }

    /// A new connection: starts the handshake (the prologue, and the first message if we
    /// dialed); the greeting and Hello follow in records once it is done.
    fn open(&mut self, peer: PeerId, ip: IpAddr, dialed: bool) -> Result<(), InputError> {
        if self.conns.contains_key(&peer) {
            return Err(InputError::PeerExists(peer));
        }
        let seed = blake3::derive_key("floodchat 3 handshake", &self.entropy);
        self.entropy = blake3::derive_key("floodchat 3 next entropy", &self.entropy);
        let role = if dialed {
            Role::Initiator
        } else {
            Role::Responder
        };
        let (link, first) = Link::new(role, &self.config.identity, &self.config.room, seed);
        self.conns.insert(
            peer,
            Connection {
                link,
                handshake_in_flight: 0,
                decoder: FrameDecoder::new(),
                phase: Phase::Handshake,
                dialed,
                last_received: self.now,
                last_sent: self.now,
                closing: None,
                ip: ip.to_canonical(),
            },
        );
        let due = self.now.checked_add(self.config.greeting_timeout);
        self.timers.set((peer, TimerKind::Greeting), due);
        self.send_handshake(peer, first);
        Ok(())
    }

    /// Writes handshake bytes, which the room does not count: their [`Input::Sent`]s come
    /// before any of the room's.
    fn send_handshake(&mut self, peer: PeerId, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        c.handshake_in_flight += 1;
        c.last_sent = self.now;
        #[cfg(feature = "sim")]
        if let Some(tap) = &mut self.tap {
            tap.sent.push_back(Vec::new());
        }
        self.outputs.push_back(Output::Send { peer, bytes });
    }

    /// The handshake is done: the room sends the greeting and Hello, in records.
    fn established(&mut self, peer: PeerId) {
        let mut hello = GREETING.to_vec();
        Frame::Hello(Hello {
            client: self.config.identity.client_id(),
            listen_port: self.config.listen_port,
            alone: self.link_count() == 0,
        })
        .encode(&mut hello);
        if let Some(c) = self.conns.get_mut(&peer) {
            c.phase = Phase::Greeting;
        }
        let _ = self.room_input(RoomInput::Opened { peer, hello });
    }

    /// Bytes from `peer` through its record layer: handshake messages are answered, and the
    /// frame stream the records carry is decoded.
    fn received(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), InputError> {
        self.conn(peer)?;
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let c = self.conns.get_mut(&peer).expect("checked above");
        let mut reply = Vec::new();
        let greeted = c.link.has_greeted();
        let read = c.link.read(bytes, &mut reply, &mut plain);
        // What we dialed answers as floodchat (of another version or room, too): the mesh
        // may pass its address on, and test its source's next hint.
        let answered = c.dialed
            && !greeted
            && (c.link.has_greeted()
                || matches!(&read, Err(e) if e.is_room_mismatch()
                    || matches!(e, LinkError::Greeting(wire::DecodeError::UnsupportedVersion(_)))));
        let handshaking = c.phase == Phase::Handshake;
        let refusal = read.is_err() && !reply.is_empty();
        self.send_handshake(peer, reply);
        if answered {
            self.mesh_input(MeshInput::Answered { peer });
        }
        #[cfg(feature = "sim")]
        if let Some(tap) = &mut self.tap {
            tap.opened.clone_from(&plain);
        }
        let result = match read {
            Err(e) => {
                if refusal {
                    // The refusal must reach the peer before the connection closes.
                    self.linger(peer, DisconnectReason::Link(e));
                } else if self
                    .conns
                    .get(&peer)
                    .is_some_and(|c| c.phase != Phase::Closing)
                {
                    self.disconnect(peer, DisconnectReason::Link(e));
                } else if let Some(c) = self.conns.get_mut(&peer) {
                    c.last_received = self.now;
                }
                Ok(())
            }
            Ok(read) => {
                if handshaking && matches!(read, Read::Established(_)) {
                    self.established(peer);
                }
                if let Some(c) = self.conns.get_mut(&peer) {
                    c.last_received = self.now;
                }
                self.received_frames(peer, &plain)
            }
        };
        self.plain = plain;
        result
    }

    /// The frame stream from `peer`'s records (possibly nothing, mid-record or mid-handshake).
    fn received_frames(&mut self, peer: PeerId, mut bytes: &[u8]) -> Result<(), InputError> {
        let now = self.now;
        let c = self.conn(peer)?;
        if c.phase == Phase::Closing {
            // Only the peer's own Bye matters now: both sides are done with the link.
            let mut bye = false;
            while let Ok(Some(item)) = c.decoder.decode(&mut bytes) {
                bye |= matches!(item, Decoded::Frame(Frame::Bye { .. }));
            }
            if bye {
                let reason = c.closing.clone().expect("closing has a reason");
                self.disconnect(peer, reason);
            }
            return Ok(());
        }
        c.last_received = now;
        let mut decoded = Vec::new();
        let error = loop {
            match c.decoder.decode_borrowed(&mut bytes) {
                Ok(Some(item)) => decoded.push(item),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let mid_frame = (c.decoder.greeted() && c.decoder.is_mid_item()) || c.link.is_mid_record();
        // An item ended in this read, so the unfinished one (or the record under way) began
        // in it.
        let began_here = !decoded.is_empty();
        // The strings of one read are offered to the links once, after it (the room waits for
        // `ReadDone`): one send to each link for all of them, not one for each string until
        // the link's budget runs out.
        let mut cut = false;
        for item in decoded {
            if self
                .conns
                .get(&peer)
                .is_none_or(|c| c.phase == Phase::Closing)
            {
                cut = true;
                break;
            }
            match item {
                DecodedRef::Text(text) => {
                    let _ = self.room_input(RoomInput::Text { peer, text });
                }
                DecodedRef::Owned(Decoded::Frame(frame)) => self.frame(peer, frame),
                DecodedRef::Owned(Decoded::Greeting | Decoded::Skipped { .. }) => {}
            }
        }
        let _ = self.room_input(RoomInput::ReadDone);
        if cut {
            return Ok(());
        }
        if let Some(e) = error {
            // Closing on purpose already decided this connection's end.
            if self
                .conns
                .get(&peer)
                .is_some_and(|c| c.phase != Phase::Closing)
            {
                self.disconnect(peer, DisconnectReason::Protocol(e));
            }
            return Ok(());
        }
        if self.is_connected(peer) {
            // A frame that has begun must end in time; one that ended cancels the timer.
            let begun = now.checked_add(self.config.frame_timeout);
            let frame_due = match (mid_frame, began_here) {
                (false, _) => None,
                (true, true) => begun,
                (true, false) => self.timers.get((peer, TimerKind::Frame)).or(begun),
            };
            self.timers.set((peer, TimerKind::Frame), frame_due);
        }
        Ok(())
    }

    /// Routes one whole frame from `peer`: the Hello, Addrs and Bye to the mesh, Text, Recon
    /// and Want to the room.
    fn frame(&mut self, peer: PeerId, frame: Frame) {
        let input = match frame {
            Frame::Hello(hello) => {
                let proven = self.conns.get(&peer).and_then(|c| c.link.remote());
                if proven != Some(hello.client) {
                    // Identities are keys: a Hello may only name the client its key proves.
                    self.disconnect(peer, DisconnectReason::Link(LinkError::NotItsId));
                    return;
                }
                self.timers.set((peer, TimerKind::Greeting), None);
                self.mesh_input(MeshInput::Hello {
                    peer,
                    id: hello.client,
                    listen_port: hello.listen_port,
                    alone: hello.alone,
                });
                return;
            }
            Frame::Addrs(addrs) => {
                self.mesh_input(MeshInput::Addrs {
                    peer,
                    addrs: &addrs,
                });
                return;
            }
            Frame::Ping => return,
            Frame::Bye { reason, addrs } => {
                if reason == ByeReason::Full {
                    let named = addrs.len();
                    self.tell(|h, out| h.turned_away(peer, named, out));
                }
                self.mesh_input(MeshInput::Bye {
                    peer,
                    reason,
                    addrs: &addrs,
                });
                self.disconnect(peer, DisconnectReason::Bye(reason));
                return;
            }
            Frame::Text(text) => {
                let _ = self.room_input(RoomInput::Text { peer, text: &text });
                return;
            }
            Frame::Recon(message) => RoomInput::Recon { peer, message },
            Frame::Want(ids) => RoomInput::Want { peer, ids },
        };
        let _ = self.room_input(input);
    }

    fn sent(&mut self, peer: PeerId) -> Result<(), InputError> {
        let c = self.conn(peer)?;
        if c.handshake_in_flight > 0 {
            c.handshake_in_flight -= 1;
            return Ok(());
        }
        if self.room.in_flight(peer) == 0 {
            return Err(InputError::NothingInFlight(peer));
        }
        let _ = self.room_input(RoomInput::Sent(peer));
        // The peer closes once it reads the Bye; until then (or the linger) we read on, so
        // that closing with unread bytes cannot reset the connection under the Bye.
        if self
            .conns
            .get(&peer)
            .is_some_and(|c| c.phase != Phase::Closing)
        {
            let due = self.now.checked_add(self.config.stall_timeout);
            let busy = self.room.in_flight(peer) > 0;
            self.timers
                .set((peer, TimerKind::Stall), due.filter(|_| busy));
        }
        Ok(())
    }

    fn timeout(&mut self) {
        let now = self.now;
        while let Some((peer, kind)) = self.timers.pop_expired(now) {
            let Some(c) = self.conns.get(&peer) else {
                continue;
            };
            let config = &self.config;
            let reason = match kind {
                TimerKind::Greeting => DisconnectReason::GreetingTimeout(config.greeting_timeout),
                TimerKind::Frame => DisconnectReason::FrameTimeout(config.frame_timeout),
                TimerKind::Stall => DisconnectReason::Stalled(config.stall_timeout),
                TimerKind::Linger => c.closing.clone().expect("closing has a reason"),
                TimerKind::Idle => {
                    if c.last_received
                        .checked_add(config.idle_timeout)
                        .is_some_and(|due| due > now)
                    {
                        self.arm_idle(peer);
                        continue;
                    }
                    DisconnectReason::Idle(config.idle_timeout)
                }
                TimerKind::Pace => {
                    let _ = self.room_input(RoomInput::Paced(peer));
                    continue;
                }
                TimerKind::Keepalive => {
                    let quiet = self.room.in_flight(peer) == 0
                        && c.last_sent
                            .checked_add(config.keepalive)
                            .is_some_and(|due| due <= now);
                    if quiet {
                        let frames = [Frame::Ping];
                        let _ = self.room_input(RoomInput::Control {
                            peer,
                            frames: &frames,
                        });
                    }
                    self.arm_keepalive(peer);
                    continue;
                }
            };
            self.disconnect(peer, reason);
        }
        self.mesh_input(MeshInput::Timeout);
        self.tell(|h, out| h.timeout(now, out));
    }

    /// Leaves now: every link is told Bye and closes once it has read everything.
    fn leave(&mut self) {
        self.left = true;
        self.herald.leave();
        self.mesh_input(MeshInput::Leave);
    }

    /// What shows that the links still make progress while leaving.
    fn progress(&self) -> (u64, u64, u64) {
        let s = self.stats();
        (s.frames_sent, s.recon_frames_sent, s.frames_received)
    }

    /// When leaving was asked for: leaves once the links have everything, or gives up on
    /// links that made no progress for the stall timeout.
    fn end_leaving(&mut self) {
        let Some((seen, since)) = self.leaving else {
            return;
        };
        if self.left {
            return;
        }
        // Everything queued went out with this input's outputs; what counts is the links.
        let linked_all = self.room.is_flushed();
        if !linked_all {
            let now = self.progress();
            if now != seen {
                self.leaving = Some((now, self.now));
                return;
            }
            if self.now < since + self.config.stall_timeout {
                return;
            }
            self.outputs
                .push_back(Output::Notice(Notice::LeftUnfinished));
        }
        self.leave();
    }

    /// Whether the client left ([`Input::Leave`], or [`Input::EndOfInput`] once the links
    /// had everything) and every connection is closed.
    pub fn has_left(&self) -> bool {
        self.left && self.conns.is_empty()
    }

    /// Ends joining the first contact once linked, or when nothing is left that could link.
    fn end_joining(&mut self) {
        // Every input comes here, a relayed line's too: only a joining client counts links.
        if !self.herald.is_joining() {
            return;
        }
        let linked = self.link_count() > 0;
        let hopeless = self.conns.is_empty() && self.mesh.pending_dials() == 0;
        if linked || hopeless {
            self.tell(|h, out| h.joined(linked, out));
        }
    }

    /// Tells the herald something, and queues the notices it says.
    fn tell(&mut self, event: impl FnOnce(&mut Herald, &mut Vec<Notice>)) {
        let mut said = Vec::new();
        event(&mut self.herald, &mut said);
        self.outputs.extend(said.into_iter().map(Output::Notice));
    }

    /// Tells the herald that `peer` ended.
    fn herald_ended(&mut self, peer: PeerId, reason: &DisconnectReason) {
        let now = self.now;
        self.tell(|h, out| h.ended(now, peer, reason, out));
    }

    fn arm_idle(&mut self, peer: PeerId) {
        let due = self.conns[&peer]
            .last_received
            .checked_add(self.config.idle_timeout);
        self.timers.set((peer, TimerKind::Idle), due);
    }

    fn arm_keepalive(&mut self, peer: PeerId) {
        let keepalive = self.config.keepalive;
        // Due a keepalive after the last send; if that is past (the link was busy), from now.
        let due = self.conns[&peer]
            .last_sent
            .checked_add(keepalive)
            .filter(|&due| due > self.now)
            .or_else(|| self.now.checked_add(keepalive));
        self.timers.set((peer, TimerKind::Keepalive), due);
    }

    /// Forgets `peer` and tells the room, the driver and the mesh.
    fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if self.conns.remove(&peer).is_some() {
            let _ = self.room_input(RoomInput::Gone(peer));
            self.timers.cancel_where(|&(p, _)| p == peer);
            self.herald_ended(peer, &reason);
            self.outputs.push_back(Output::Disconnect { peer, reason });
            self.mesh_input(MeshInput::Closed { peer });
        }
    }

    /// Closes `peer` on purpose: says Bye, then disconnects once the peer closes (or lingers
    /// too long).
    fn close(&mut self, peer: PeerId, bye: Option<(ByeReason, Vec<SocketAddr>)>, why: CloseWhy) {
        let reason = match why {
            CloseWhy::Bye(said) => DisconnectReason::Bye(said),
            why => DisconnectReason::Local(why),
        };
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        // A Bye needs the records of a finished handshake.
        let Some((bye, addrs)) = bye.filter(|_| c.phase != Phase::Handshake) else {
            self.disconnect(peer, reason);
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        self.linger(peer, reason);
        let bye = Frame::Bye {
            reason: bye,
            addrs: addrs.into_iter().take(wire::MAX_ADDRS).collect(),
        };
        let _ = self.room_input(RoomInput::Closing { peer, bye: &bye });
    }

    /// Ends `peer` for the user now, and the connection once what was written to it is out
    /// (the peer closes on reading it) or the linger ends.
    fn linger(&mut self, peer: PeerId, reason: DisconnectReason) {
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        c.phase = Phase::Closing;
        c.closing = Some(reason.clone());
        self.herald_ended(peer, &reason);
        self.timers.cancel_where(|&(p, _)| p == peer);
        let due = self.now.checked_add(self.config.linger);
        self.timers.set((peer, TimerKind::Linger), due);
    }

    /// `peer` said a Hello the mesh accepted: it is a link of the room now.
    fn link_up(&mut self, peer: PeerId, client: ClientId) {
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        if c.phase != Phase::Greeting {
            return;
        }
        c.phase = Phase::Linked;
        let dialed = c.dialed;
        self.outputs.push_back(Output::PeerReady(peer));
        let now = self.now;
        self.tell(|h, out| h.linked(now, peer, client, out));
        self.arm_idle(peer);
        self.arm_keepalive(peer);
        let _ = self.room_input(RoomInput::LinkUp { peer, dialed });
    }

    /// Feeds the mesh and carries out what it decides. A dial of an address that flooded
    /// lately fails at once.
    fn mesh_input(&mut self, input: MeshInput<'_>) {
        self.mesh.handle(self.now, input);
        let mut refused = Vec::new();
        while let Some(output) = self.mesh.poll() {
            match output {
                MeshOutput::Dial(addr) if self.sources.is_banned(addr.ip(), self.now) => {
                    refused.push(addr);
                }
                MeshOutput::Dial(addr) => self.outputs.push_back(Output::Dial(addr)),
                MeshOutput::LinkUp { peer, id } => self.link_up(peer, id),
                MeshOutput::SendAddrs { peer, addrs } => {
                    if self
                        .conns
                        .get(&peer)
                        .is_some_and(|c| c.phase != Phase::Closing)
                        && !addrs.is_empty()
                    {
                        let frames: Vec<Frame> = addrs
                            .chunks(wire::MAX_ADDRS)
                            .map(|chunk| Frame::Addrs(chunk.to_vec()))
                            .collect();
                        let _ = self.room_input(RoomInput::Control {
                            peer,
                            frames: &frames,
                        });
                    }
                }
                MeshOutput::Close { peer, bye, why } => self.close(peer, bye, why),
                MeshOutput::Notice(notice) => {
                    self.tell(|h, out| h.mesh(notice, out));
                }
            }
        }
        for addr in refused {
            self.mesh_input(MeshInput::DialFailed { addr });
        }
    }

    /// `peer` was sent `bytes` of history: charges its address, and closes it if the address
    /// was sent more than its hourly share.
    fn served(&mut self, peer: PeerId, bytes: u64) {
        let Some(c) = self.conns.get(&peer) else {
            return;
        };
        let ip = c.ip;
        let served = self.sources.charge(ip, bytes, self.now);
        let room = self.room.store().text_bytes() as u64;
        let budget = room
            .saturating_mul(self.config.history_rooms_per_hour)
            .max(self.config.history_floor);
        if served > budget {
            self.disconnect(peer, DisconnectReason::HistoryBudget { bytes: served });
        }
    }

    /// Feeds the room and carries out what it decides, before anything else happens.
    fn room_input(&mut self, input: RoomInput<'_>) -> Result<(), Refused> {
        let result = self.room.handle(input, self.now);
        while let Some(output) = self.room.poll() {
            match output {
                RoomOutput::Print(index) => self.outputs.push_back(Output::Print(index)),
                RoomOutput::Send { peer, bytes, first } => {
                    if first {
                        let due = self.now.checked_add(self.config.stall_timeout);
                        self.timers.set((peer, TimerKind::Stall), due);
                    }
                    let Some(c) = self.conns.get_mut(&peer) else {
                        continue;
                    };
                    c.last_sent = self.now;
                    let mut sealed = Vec::new();
                    c.link.seal(&bytes, &mut sealed);
                    #[cfg(feature = "sim")]
                    if let Some(tap) = &mut self.tap {
                        tap.sent.push_back(bytes);
                    }
                    self.outputs.push_back(Output::Send {
                        peer,
                        bytes: sealed,
                    });
                }
                RoomOutput::Served { peer, bytes } => self.served(peer, bytes),
                RoomOutput::Paced { peer, until } => {
                    self.timers.set((peer, TimerKind::Pace), Some(until));
                }
                RoomOutput::Close { peer, why } => {
                    if matches!(why, DisconnectReason::Flooding { .. })
                        && let Some(c) = self.conns.get(&peer)
                    {
                        let (ip, now, backoff) = (c.ip, self.now, self.config.flood_backoff);
                        self.sources.ban(ip, now, backoff);
                    }
                    self.disconnect(peer, why);
                }
                RoomOutput::Full { strings, bytes } => self
                    .outputs
                    .push_back(Output::Notice(Notice::RoomFull { strings, bytes })),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests;
