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
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::herald::{Herald, LinkNotice};
use crate::mesh::{CloseWhy, Mesh, MeshConfig, MeshInput, MeshNotice, MeshOutput};
use crate::peer::{DisconnectReason, PeerId};
use crate::room::{Refused, Room, RoomConfig, RoomInput, RoomOutput, Stats};
use crate::store::Store;
use crate::timers::Timers;
use crate::wire::{
    self, ByeReason, ClientId, Decoded, DecodedRef, Frame, FrameDecoder, GREETING, Hello, TextError,
};

/// Tunables and identity of a [`FloodState`].
#[derive(Debug, Clone)]
pub struct Config {
    /// This client's identity, random per run (chosen by the driver).
    pub client: ClientId,
    /// Seeds every random choice of the core.
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
    /// The mesh's tunables.
    pub mesh: MeshConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client: ClientId(0),
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
            mesh: MeshConfig::default(),
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
    /// The client is leaving: each link is told so, and no new one is made. Feed it once
    /// [`FloodState::is_flushed`], so that the links get everything first.
    Leave,
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

/// What the user should hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The room reached this client's size limit; said once.
    RoomFull {
        /// Strings held.
        strings: usize,
        /// Bytes of text held.
        bytes: usize,
    },
    /// From the mesh: alone, back in the room, connections refused.
    Mesh(MeshNotice),
    /// About one link or connection.
    Link(LinkNotice),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoomFull { strings, bytes } => write!(
                f,
                "the room reached this client's limit ({strings} strings, {bytes} bytes): \
                 newer lines are no longer shown or relayed by this client"
            ),
            Self::Mesh(n) => n.fmt(f),
            Self::Link(n) => n.fmt(f),
        }
    }
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
}

/// A connection's life: its decoder, phase and clocks. What it is sent is the room's.
#[derive(Debug)]
struct Conn {
    decoder: FrameDecoder,
    phase: Phase,
    /// Whether we dialed it, and so start reconciliation.
    dialed: bool,
    last_received: Instant,
    last_sent: Instant,
    /// Why a closing connection is closed.
    closing: Option<DisconnectReason>,
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
/// Every string is kept in a [`Store`] in the order it was learned. When a link is made the
/// two sides reconcile their sets, so each sends only what the other lacks, as ranges of ids
/// walked in batches; strings learned after the link is made are flooded live from a cursor.
/// So a slow peer or a late joiner costs no queue: what it lacks is sent as fast as it reads,
/// never more than [`Config::max_in_flight`] batches at once.
#[derive(Debug)]
pub struct FloodState {
    config: Config,
    now: Instant,
    conns: HashMap<PeerId, Conn>,
    timers: Timers<(PeerId, TimerKind)>,
    mesh: Mesh,
    /// The set of strings and what each link is sent.
    room: Room,
    /// What the user is told about links.
    herald: Herald,
    outputs: VecDeque<Output>,
}

impl FloodState {
    /// An empty room at time `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        let mesh = Mesh::new(config.mesh.clone(), config.client, config.seed, now);
        let room = Room::new(RoomConfig {
            send_batch: config.send_batch,
            max_in_flight: config.max_in_flight,
            max_strings: config.max_room_strings,
            max_bytes: config.max_room_bytes,
        });
        Self {
            config,
            now,
            conns: HashMap::new(),
            timers: Timers::default(),
            mesh,
            room,
            herald: Herald::new(now),
            outputs: VecDeque::new(),
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
        result
    }

    fn handle(&mut self, input: Input<'_>) -> Result<(), InputError> {
        match input {
            Input::Start { contact } => {
                self.herald.start(contact);
                self.mesh_input(MeshInput::Start { contact });
            }
            Input::LineTyped(line) => return self.line_typed(line),
            Input::Accepted { peer, remote } => {
                self.open(peer, false)?;
                self.herald.opened(peer, remote, false);
                self.mesh_input(MeshInput::Accepted { peer, remote });
            }
            Input::Dialed { peer, addr } => {
                self.open(peer, true)?;
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
                } else if c.decoder.is_mid_item() {
                    DisconnectReason::ClosedMidFrame
                } else {
                    DisconnectReason::Closed
                };
                self.disconnect(peer, reason);
            }
            Input::Leave => self.mesh_input(MeshInput::Leave),
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
        [
            self.timers.next(),
            self.mesh.poll_timeout(),
            self.herald.poll_timeout(),
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

    /// The room's strings.
    pub fn store(&self) -> &Store {
        self.room.store()
    }

    /// The strings of the room from the `start`th on, in the order this client learned them.
    pub fn messages_from(&self, start: usize) -> impl ExactSizeIterator<Item = &str> {
        let store = self.room.store();
        (start.min(store.len())..store.len()).map(|i| store.get(i))
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

    /// Sets the port told to peers in later Hellos, once the driver has bound it.
    pub fn set_listen_port(&mut self, port: u16) {
        self.config.listen_port = port;
    }

    fn conn(&mut self, peer: PeerId) -> Result<&mut Conn, InputError> {
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

    /// A new connection: sends the greeting and Hello, and waits for the peer's.
    fn open(&mut self, peer: PeerId, dialed: bool) -> Result<(), InputError> {
        if self.conns.contains_key(&peer) {
            return Err(InputError::PeerExists(peer));
        }
        let mut hello = GREETING.to_vec();
        Frame::Hello(Hello {
            client: self.config.client,
            listen_port: self.config.listen_port,
            alone: self.link_count() == 0,
        })
        .encode(&mut hello);
        self.conns.insert(
            peer,
            Conn {
                decoder: FrameDecoder::new(),
                phase: Phase::Greeting,
                dialed,
                last_received: self.now,
                last_sent: self.now,
                closing: None,
            },
        );
        let due = self.now.checked_add(self.config.greeting_timeout);
        self.timers.set((peer, TimerKind::Greeting), due);
        let _ = self.room_input(RoomInput::Opened { peer, hello });
        Ok(())
    }

    fn received(&mut self, peer: PeerId, mut bytes: &[u8]) -> Result<(), InputError> {
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
        let mid_frame = c.decoder.greeted() && c.decoder.is_mid_item();
        // An item ended in this read, so the unfinished one began in it.
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
        self.conn(peer)?;
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
        let mut said = Vec::new();
        self.herald.timeout(now, &mut said);
        self.outputs.extend(said.into_iter().map(Output::Notice));
    }

    /// Ends joining the first contact once linked, or when nothing is left that could link.
    fn end_joining(&mut self) {
        let linked = self.link_count() > 0;
        let hopeless = self.conns.is_empty() && self.mesh.pending_dials() == 0;
        if self.herald.is_joining() && (linked || hopeless) {
            self.herald.joined();
        }
    }

    /// Tells the herald that `peer` ended, and queues what it says.
    fn herald_ended(&mut self, peer: PeerId, reason: &DisconnectReason) {
        let mut said = Vec::new();
        self.herald.ended(self.now, peer, reason, &mut said);
        self.outputs.extend(said.into_iter().map(Output::Notice));
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
        let Some((bye, addrs)) = bye else {
            self.disconnect(peer, reason);
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Closing;
        c.closing = Some(reason.clone());
        // The link ends now for the user; the connection, once its Bye is out.
        self.herald_ended(peer, &reason);
        self.timers.cancel_where(|&(p, _)| p == peer);
        let due = self.now.checked_add(self.config.linger);
        self.timers.set((peer, TimerKind::Linger), due);
        let bye = Frame::Bye {
            reason: bye,
            addrs: addrs.into_iter().take(wire::MAX_ADDRS).collect(),
        };
        let _ = self.room_input(RoomInput::Closing { peer, bye: &bye });
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
        let mut said = Vec::new();
        self.herald.linked(self.now, peer, client, &mut said);
        self.outputs.extend(said.into_iter().map(Output::Notice));
        self.arm_idle(peer);
        self.arm_keepalive(peer);
        let _ = self.room_input(RoomInput::LinkUp { peer, dialed });
    }

    /// Feeds the mesh and carries out what it decides.
    fn mesh_input(&mut self, input: MeshInput<'_>) {
        self.mesh.handle(self.now, input);
        while let Some(output) = self.mesh.poll() {
            match output {
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
                    let mut said = Vec::new();
                    self.herald.mesh(notice, &mut said);
                    self.outputs.extend(said.into_iter().map(Output::Notice));
                }
            }
        }
    }

    /// Feeds the room and carries out what it decides, before anything else happens.
    fn room_input(&mut self, input: RoomInput<'_>) -> Result<(), Refused> {
        let result = self.room.handle(input);
        while let Some(output) = self.room.poll() {
            match output {
                RoomOutput::Print(index) => self.outputs.push_back(Output::Print(index)),
                RoomOutput::Send { peer, bytes, first } => {
                    if first {
                        let due = self.now.checked_add(self.config.stall_timeout);
                        self.timers.set((peer, TimerKind::Stall), due);
                    }
                    if let Some(c) = self.conns.get_mut(&peer) {
                        c.last_sent = self.now;
                    }
                    self.outputs.push_back(Output::Send { peer, bytes });
                }
                RoomOutput::Close { peer, why } => self.disconnect(peer, why),
                RoomOutput::Full { strings, bytes } => self
                    .outputs
                    .push_back(Output::Notice(Notice::RoomFull { strings, bytes })),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::OWED_MAX;
    use crate::wire::{DecodeError, FrameDecoder, encode_text};

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);
    const ME: ClientId = ClientId(100);

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], 4000))
    }

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
                state: FloodState::new(
                    Config {
                        client: ME,
                        listen_port: 4000,
                        ..config
                    },
                    now,
                ),
                now,
            }
        }

        fn input(&mut self, input: Input<'_>) -> Vec<Output> {
            self.state.handle_input(self.now, input).unwrap();
            self.drain()
        }

        /// The outputs so far, but the notices about links (the mesh and herald tests cover
        /// them).
        fn drain(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.state.poll_output())
                .filter(|o| !matches!(o, Output::Notice(Notice::Mesh(_) | Notice::Link(_))))
                .collect()
        }

        /// Accepts `peer`, acknowledges our greeting and feeds theirs with client id `peer + 1000`.
        fn linked(&mut self, peer: PeerId) -> Vec<Output> {
            let alone = self.state.link_count() == 0;
            let out = self.input(Input::Accepted {
                peer,
                remote: addr(peer.0 as u8),
            });
            assert_eq!(out, vec![send(peer, hello_bytes(ME, alone))]);
            self.input(Input::Sent(peer));
            self.input(Input::Received(
                peer,
                &hello_bytes(ClientId(peer.0 + 1000), false),
            ))
        }

        fn advance(&mut self, by: Duration) -> Vec<Output> {
            self.now += by;
            self.input(Input::Timeout)
        }

        /// Acknowledges every Send in `outputs`.
        fn ack(&mut self, outputs: &[Output]) -> Vec<Output> {
            let mut more = Vec::new();
            for o in outputs {
                if let Output::Send { peer, .. } = o
                    && self.state.is_connected(*peer)
                {
                    more.extend(self.input(Input::Sent(*peer)));
                }
            }
            more
        }
    }

    fn hello_bytes(client: ClientId, alone: bool) -> Vec<u8> {
        let mut bytes = GREETING.to_vec();
        Frame::Hello(Hello {
            client,
            listen_port: 4000,
            alone,
        })
        .encode(&mut bytes);
        bytes
    }

    fn send(peer: PeerId, bytes: Vec<u8>) -> Output {
        Output::Send { peer, bytes }
    }

    fn print(index: usize) -> Output {
        Output::Print(index)
    }

    fn texts(messages: &[&str]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for m in messages {
            encode_text(m, &mut bytes);
        }
        bytes
    }

    fn disconnect(peer: PeerId, reason: DisconnectReason) -> Output {
        Output::Disconnect { peer, reason }
    }

    /// The frames carried by a peer's Sends (greeting skipped).
    fn sent_frames(outputs: &[Output], to: PeerId) -> Vec<Frame> {
        let mut decoder = FrameDecoder::new();
        let mut input: &[u8] = &hello_bytes(ClientId(0), false);
        while decoder.decode(&mut input).unwrap().is_some() {}
        let mut got = Vec::new();
        for o in outputs {
            if let Output::Send { peer, bytes } = o
                && *peer == to
            {
                let mut input = &bytes[..];
                if input.starts_with(&GREETING) {
                    continue;
                }
                while let Some(Decoded::Frame(f)) = decoder.decode(&mut input).unwrap() {
                    got.push(f);
                }
                assert!(input.is_empty());
            }
        }
        got
    }

    #[test]
    fn typed_line_is_printed_and_sent_to_every_link() {
        let mut h = Harness::new();
        assert_eq!(h.linked(A), vec![Output::PeerReady(A)]);
        // The mesh tells the newcomer about A, and A about the newcomer.
        let out = h.linked(B);
        assert_eq!(out[0], Output::PeerReady(B));
        assert_eq!(
            sent_frames(&out, B),
            vec![Frame::Addrs(vec![addr(1)])],
            "{out:?}"
        );
        h.ack(&out);
        let out = h.input(Input::LineTyped(b"hello\r"));
        assert_eq!(
            out,
            vec![
                print(0),
                send(A, texts(&["hello"])),
                send(B, texts(&["hello"]))
            ]
        );
        assert!(h.state.contains("hello"));
        assert_eq!(h.state.message(0), "hello");
        assert_eq!(h.state.link_count(), 2);
    }

    #[test]
    fn origins_are_kept_only_as_far_back_as_the_slowest_link() {
        let mut h = Harness::new();
        let out = h.linked(A);
        h.ack(&out);
        let out = h.linked(B);
        h.ack(&out);
        let from_a: Vec<String> = (0..20_000).map(|i| format!("from a {i:05}")).collect();
        let from_a: Vec<&str> = from_a.iter().map(String::as_str).collect();
        let mut out = h.input(Input::Received(A, &texts(&from_a)));
        // B's budget ran out before its live cursor reached the end: only what it has yet to
        // be sent keeps an origin.
        let (from, kept) = h.state.room.origins_kept();
        assert!(from > 0 && kept < 20_000, "{kept} kept");
        assert_eq!(from + kept, 20_000);
        // B types while it is behind: its strings go to A, never back to B.
        out.extend(h.input(Input::Received(B, &texts(&["from b 1", "from b 2"]))));
        let mut to_a = Vec::new();
        let mut to_b = Vec::new();
        while !out.is_empty() {
            to_a.extend(sent_frames(&out, A));
            to_b.extend(sent_frames(&out, B));
            out = h.ack(&out);
        }
        let text = |f: &Frame| match f {
            Frame::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        };
        let to_b: Vec<String> = to_b.iter().map(text).collect();
        assert_eq!(to_b, from_a, "B gets A's strings once each, in order");
        let to_a: Vec<String> = to_a.iter().map(text).collect();
        assert_eq!(to_a, ["from b 1", "from b 2"]);
        assert_eq!(
            h.state.room.origins_kept(),
            (20_002, 0),
            "every link caught up"
        );
    }

    #[test]
    fn refused_lines_leave_the_state_unchanged() {
        let mut h = Harness::new();
        h.linked(A);
        h.input(Input::LineTyped(b"once"));
        let long = vec![b'x'; MAX + 1];
        let cases: [(&[u8], InputError); 6] = [
            (&long, InputError::BadLine(TextError::TooLong(MAX + 1))),
            (b"\xff", InputError::BadLine(TextError::NotUtf8)),
            (b"a\nb", InputError::BadLine(TextError::Control('\n'))),
            (b"\x1b[2J", InputError::BadLine(TextError::Control('\x1b'))),
            (
                b"bye\ralice: hi",
                InputError::BadLine(TextError::Control('\r')),
            ),
            (b"once", InputError::AlreadySaid),
        ];
        for (line, err) in cases {
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
        let max = "m".repeat(MAX);
        assert_eq!(h.input(Input::LineTyped(max.as_bytes()))[0], print(1));
    }

    const MAX: usize = crate::MAX_MESSAGE_LEN;

    #[test]
    fn new_string_is_printed_and_forwarded_to_all_but_its_sender() {
        let mut h = Harness::new();
        h.linked(A);
        h.linked(B);
        let out = h.input(Input::Received(A, &texts(&["from a"])));
        assert_eq!(out, vec![print(0), send(B, texts(&["from a"]))]);
        h.input(Input::Sent(B));
        assert_eq!(h.input(Input::Received(B, &texts(&["from a"]))), vec![]);
        assert_eq!(h.input(Input::Received(A, &texts(&["from a"]))), vec![]);
        assert_eq!(h.state.stats().frames_received, 3);
        assert_eq!(h.state.messages().count(), 1);
    }

    #[test]
    fn disconnect_forgets_the_peer() {
        let mut h = Harness::new();
        h.linked(A);
        h.linked(B);
        let out = h.input(Input::Closed(A));
        assert_eq!(out, vec![disconnect(A, DisconnectReason::Closed)]);
        assert!(!h.state.is_connected(A));
        assert_eq!(
            h.state.handle_input(h.now, Input::Received(A, b"x")),
            Err(InputError::UnknownPeer(A))
        );
        let out = h.input(Input::LineTyped(b"after"));
        assert_eq!(out, vec![print(0), send(B, texts(&["after"]))]);
    }

    #[test]
    fn close_reasons_tell_where_the_stream_stopped() {
        let mut h = Harness::new();
        h.input(Input::Accepted {
            peer: A,
            remote: addr(1),
        });
        h.input(Input::Received(A, &GREETING));
        assert_eq!(
            h.input(Input::Closed(A)),
            vec![disconnect(A, DisconnectReason::ClosedBeforeGreeting)]
        );
        h.linked(B);
        h.input(Input::Received(B, &texts(&["cut"])[..5]));
        assert_eq!(
            h.input(Input::Closed(B)),
            vec![disconnect(B, DisconnectReason::ClosedMidFrame)]
        );
    }

    #[test]
    fn bytes_split_at_every_point_give_the_same_outputs() {
        let mut stream = hello_bytes(ClientId(5), false);
        stream.extend(texts(&["alpha", "βeta", "alpha", "gamma"]));
        Frame::Ping.encode(&mut stream);
        let run = |parts: &[&[u8]]| {
            let mut h = Harness::new();
            h.input(Input::Accepted {
                peer: A,
                remote: addr(1),
            });
            h.input(Input::Sent(A));
            let mut out = Vec::new();
            for p in parts {
                out.extend(h.input(Input::Received(A, p)));
            }
            out
        };
        let whole = run(&[&stream]);
        assert_eq!(
            whole,
            vec![Output::PeerReady(A), print(0), print(1), print(2)]
        );
        for split in 0..=stream.len() {
            assert_eq!(
                run(&[&stream[..split], &stream[split..]]),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn misbehaving_peers_are_disconnected_with_a_reason_and_print_nothing() {
        let mut oversized = hello_bytes(ClientId(5), false);
        oversized.extend_from_slice(&u32::MAX.to_be_bytes());
        oversized.push(2);
        let mut escape = hello_bytes(ClientId(5), false);
        escape.extend_from_slice(&[0, 0, 0, 5, 2, b'a', 0x1b, b'[', b'J']);
        let cases: [(&[u8], DecodeError); 4] = [
            (
                b"GET / HTTP/1.1\r\n",
                DecodeError::BadMagic { got: b"G".to_vec() },
            ),
            (b"FLOODCHAT\x01", DecodeError::UnsupportedVersion(1)),
            (
                &oversized,
                DecodeError::FrameTooLarge {
                    kind: 2,
                    len: u32::MAX as usize - 1,
                },
            ),
            (&escape, DecodeError::BadText(TextError::Control('\x1b'))),
        ];
        for (bytes, err) in cases {
            let mut h = Harness::new();
            h.linked(B);
            h.input(Input::Accepted {
                peer: A,
                remote: addr(1),
            });
            let out = h.input(Input::Received(A, bytes));
            assert_eq!(
                out.last(),
                Some(&disconnect(A, DisconnectReason::Protocol(err)))
            );
            assert!(!out.iter().any(|o| matches!(o, Output::Print(_))));
            assert!(!h.state.is_connected(A));
            assert!(h.state.is_connected(B), "other peers carry on");
        }
    }

    #[test]
    fn silent_connection_times_out_waiting_for_the_greeting() {
        let mut h = Harness::new();
        h.input(Input::Accepted {
            peer: A,
            remote: addr(1),
        });
        h.input(Input::Sent(A));
        assert_eq!(h.state.poll_timeout(), Some(h.now + Duration::from_secs(5)));
        assert_eq!(h.advance(Duration::from_millis(4999)), vec![]);
        assert_eq!(
            h.advance(Duration::from_millis(1)),
            vec![disconnect(
                A,
                DisconnectReason::GreetingTimeout(Duration::from_secs(5))
            )]
        );
        assert_eq!(h.state.poll_timeout(), None);
    }

    #[test]
    fn a_begun_frame_must_end_in_time_however_slowly_it_trickles() {
        let mut h = Harness::new();
        h.linked(A);
        let frame = texts(&["slow"]);
        h.input(Input::Received(A, &frame[..2]));
        h.advance(Duration::from_secs(9));
        h.input(Input::Received(A, &frame[2..4]));
        assert_eq!(
            h.advance(Duration::from_secs(1)),
            vec![disconnect(
                A,
                DisconnectReason::FrameTimeout(Duration::from_secs(10))
            )]
        );
        // A read that ends one frame and begins the next gives the new one its own time.
        let mut h = Harness::new();
        h.linked(A);
        let two = texts(&["first", "second"]);
        h.input(Input::Received(A, &two[..3]));
        h.advance(Duration::from_secs(9));
        h.input(Input::Received(A, &two[..3 + 8][3..]));
        let out = h.advance(Duration::from_secs(9));
        h.ack(&out);
        assert!(
            h.state.is_ready(A),
            "dropped 18 s into a frame begun 9 s ago"
        );
        // Whole frames, however far apart, set no frame timer.
        let mut h = Harness::new();
        h.linked(A);
        for i in 0..5 {
            h.input(Input::Received(A, &texts(&[&format!("m{i}")])));
            let out = h.advance(Duration::from_secs(11));
            h.ack(&out);
            assert!(h.state.is_ready(A), "{out:?}");
        }
    }

    #[test]
    fn a_keepalive_is_due_a_keepalive_after_the_last_send() {
        let mut h = Harness::new();
        h.linked(A);
        h.advance(Duration::from_secs(5));
        let out = h.input(Input::LineTyped(b"at five seconds"));
        h.ack(&out);
        assert!(
            h.advance(Duration::from_secs(15)).is_empty(),
            "not quiet yet at 20 s"
        );
        assert_eq!(
            h.state.poll_timeout(),
            Some(h.now + Duration::from_secs(5)),
            "the next keepalive is 20 s after the send at 5 s"
        );
        let out = h.advance(Duration::from_secs(5));
        assert_eq!(sent_frames(&out, A), vec![Frame::Ping]);
    }

    #[test]
    fn quiet_links_get_keepalives_and_silent_peers_are_dropped() {
        let mut h = Harness::new();
        h.linked(A);
        let out = h.advance(Duration::from_secs(20));
        assert_eq!(sent_frames(&out, A), vec![Frame::Ping]);
        h.ack(&out);
        // A peer that pings back stays.
        for _ in 0..5 {
            let mut ping = Vec::new();
            Frame::Ping.encode(&mut ping);
            h.input(Input::Received(A, &ping));
            let out = h.advance(Duration::from_secs(20));
            h.ack(&out);
            assert!(h.state.is_connected(A));
        }
        // One that says nothing for a minute goes.
        let mut out = Vec::new();
        for _ in 0..3 {
            let o = h.advance(Duration::from_secs(20));
            h.ack(&o);
            out.extend(o);
        }
        assert_eq!(
            out.last(),
            Some(&disconnect(
                A,
                DisconnectReason::Idle(Duration::from_secs(60))
            ))
        );
    }

    #[test]
    fn peer_that_stops_reading_is_dropped() {
        let mut h = Harness::with(Config {
            keepalive: Duration::MAX,
            idle_timeout: Duration::MAX,
            ..Config::default()
        });
        h.linked(A);
        assert_eq!(h.state.poll_timeout(), None, "idle: no timer, no spinning");
        h.input(Input::LineTyped(b"unread"));
        let stall = Config::default().stall_timeout;
        assert_eq!(h.state.poll_timeout(), Some(h.now + stall));
        assert_eq!(h.advance(stall - Duration::from_millis(1)), vec![]);
        assert_eq!(
            h.advance(Duration::from_millis(1)),
            vec![disconnect(A, DisconnectReason::Stalled(stall))]
        );
    }

    #[test]
    fn the_room_stops_growing_at_its_limit_and_says_so_once() {
        let mut h = Harness::with(Config {
            max_room_strings: 2,
            ..Config::default()
        });
        h.linked(A);
        h.input(Input::LineTyped(b"one"));
        h.input(Input::Received(A, &texts(&["two"])));
        let out = h.input(Input::Received(A, &texts(&["three", "four"])));
        assert_eq!(
            out,
            vec![Output::Notice(Notice::RoomFull {
                strings: 2,
                bytes: 6
            })]
        );
        assert_eq!(
            h.state.handle_input(h.now, Input::LineTyped(b"five")),
            Err(InputError::RoomFull)
        );
        assert_eq!(h.drain(), vec![]);
        assert_eq!(h.state.stats().refused_full, 3);
        assert!(
            h.state.is_connected(A),
            "a full room still relays what it has"
        );
        let mut h = Harness::with(Config {
            max_room_bytes: 5,
            ..Config::default()
        });
        h.input(Input::LineTyped(b"12345"));
        assert_eq!(
            h.state.handle_input(h.now, Input::LineTyped(b"6")),
            Err(InputError::RoomFull)
        );
    }

    #[test]
    fn a_connection_to_oneself_is_closed_with_a_bye() {
        let mut h = Harness::new();
        h.input(Input::Dialed {
            peer: A,
            addr: addr(1),
        });
        h.input(Input::Sent(A));
        let out = h.input(Input::Received(A, &hello_bytes(ME, true)));
        assert_eq!(
            sent_frames(&out, A),
            vec![Frame::Bye {
                reason: ByeReason::SelfConnection,
                addrs: vec![]
            }]
        );
        assert!(!out.contains(&Output::PeerReady(A)));
        assert_eq!(h.ack(&out), vec![]);
        // The other end (ourselves) says Bye as well: the link ends at once, no linger.
        let mut bye = Vec::new();
        Frame::Bye {
            reason: ByeReason::SelfConnection,
            addrs: vec![],
        }
        .encode(&mut bye);
        assert_eq!(
            h.input(Input::Received(A, &bye)),
            vec![disconnect(
                A,
                DisconnectReason::Local(CloseWhy::SelfConnection)
            )]
        );
        h.input(Input::Dialed {
            peer: B,
            addr: addr(1),
        });
        h.input(Input::Sent(B));
        let out = h.input(Input::Received(B, &hello_bytes(ME, true)));
        h.ack(&out);
        assert_eq!(
            h.input(Input::Closed(B)),
            vec![disconnect(
                B,
                DisconnectReason::Local(CloseWhy::SelfConnection)
            )]
        );
    }

    #[test]
    fn of_two_connections_between_the_same_clients_both_ends_keep_the_same_one() {
        // Client ME (100) and client 7 and 200 each dial the other at once.
        for (other, kept_dialed_by_me) in [(ClientId(7), false), (ClientId(200), true)] {
            let mut h = Harness::new();
            h.input(Input::Dialed {
                peer: A,
                addr: addr(1),
            });
            h.input(Input::Accepted {
                peer: B,
                remote: addr(1),
            });
            let ack = h.drain();
            h.ack(&ack);
            h.input(Input::Sent(A));
            h.input(Input::Sent(B));
            let mut out = h.input(Input::Received(A, &hello_bytes(other, false)));
            out.extend(h.input(Input::Received(B, &hello_bytes(other, false))));
            let (kept, dropped) = if kept_dialed_by_me { (A, B) } else { (B, A) };
            assert_eq!(
                sent_frames(&out, dropped).last(),
                Some(&Frame::Bye {
                    reason: ByeReason::Duplicate,
                    addrs: vec![]
                })
            );
            h.ack(&out);
            assert!(h.state.is_ready(kept));
            assert!(!h.state.is_ready(dropped));
            // A peer that does not close after the Bye is closed after the linger; one that
            // says Bye too is closed at once.
            assert_eq!(
                h.advance(Duration::from_secs(1)),
                vec![disconnect(
                    dropped,
                    DisconnectReason::Local(CloseWhy::Duplicate)
                )]
            );
        }
    }

    #[test]
    fn a_bye_from_the_peer_ends_the_link() {
        let mut h = Harness::new();
        h.linked(A);
        let mut bye = Vec::new();
        Frame::Bye {
            reason: ByeReason::Leaving,
            addrs: vec![addr(9)],
        }
        .encode(&mut bye);
        assert_eq!(
            h.input(Input::Received(A, &bye)),
            vec![disconnect(A, DisconnectReason::Bye(ByeReason::Leaving))]
        );
    }

    #[test]
    fn a_start_with_a_contact_dials_it() {
        let mut h = Harness::new();
        assert_eq!(
            h.input(Input::Start {
                contact: Some(addr(3))
            }),
            vec![Output::Dial(addr(3))]
        );
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
        h.linked(A);
        assert_eq!(
            h.state.handle_input(
                h.now,
                Input::Accepted {
                    peer: A,
                    remote: addr(1)
                }
            ),
            Err(InputError::PeerExists(A))
        );
        assert_eq!(
            h.state.handle_input(h.now, Input::Sent(A)),
            Err(InputError::NothingInFlight(A))
        );
        assert_eq!(h.drain(), vec![]);
    }

    /// Two states joined by one in-memory link that delivers every write at once, in order.
    struct Pair {
        sides: [FloodState; 2],
        now: Instant,
        /// Bytes each side wrote.
        bytes: [u64; 2],
        disconnects: Vec<(usize, DisconnectReason)>,
        /// Writes not yet delivered, per side.
        pending: [VecDeque<Vec<u8>>; 2],
        /// The side whose write moves next.
        turn: usize,
    }

    const LINK: PeerId = PeerId(1);

    impl Pair {
        /// Side 0 dials side 1; each first types its own strings.
        fn new(config: Config, typed: [&[String]; 2]) -> Self {
            let now = Instant::now();
            let side = |i: u64| {
                let mut s = FloodState::new(
                    Config {
                        client: ClientId(i + 1),
                        ..config.clone()
                    },
                    now,
                );
                for t in typed[i as usize] {
                    s.handle_input(now, Input::LineTyped(t.as_bytes())).unwrap();
                }
                while s.poll_output().is_some() {}
                s
            };
            Self {
                sides: [side(0), side(1)],
                now,
                bytes: [0; 2],
                disconnects: Vec::new(),
                pending: Default::default(),
                turn: 0,
            }
        }

        fn link(&mut self) {
            let (now, addr) = (self.now, addr(1));
            self.sides[0]
                .handle_input(now, Input::Dialed { peer: LINK, addr })
                .unwrap();
            self.sides[1]
                .handle_input(
                    now,
                    Input::Accepted {
                        peer: LINK,
                        remote: addr,
                    },
                )
                .unwrap();
        }

        /// Side `i` types `text` now.
        fn type_line(&mut self, i: usize, text: &str) {
            self.sides[i]
                .handle_input(self.now, Input::LineTyped(text.as_bytes()))
                .unwrap();
        }

        /// Moves writes both ways, oldest first, until neither side has anything to say or
        /// `steps` writes moved (`usize::MAX` for all). Returns what each side printed.
        fn drive(&mut self, steps: usize) -> [Vec<String>; 2] {
            let mut printed: [Vec<String>; 2] = Default::default();
            for _ in 0..steps {
                for (i, printed) in printed.iter_mut().enumerate() {
                    while let Some(o) = self.sides[i].poll_output() {
                        match o {
                            Output::Send { bytes, .. } => self.pending[i].push_back(bytes),
                            Output::Print(index) => {
                                printed.push(self.sides[i].message(index).to_string())
                            }
                            Output::Disconnect { reason, .. } => self.disconnects.push((i, reason)),
                            _ => {}
                        }
                    }
                }
                let from = if self.pending[self.turn].is_empty() {
                    1 - self.turn
                } else {
                    self.turn
                };
                self.turn = 1 - self.turn;
                let Some(bytes) = self.pending[from].pop_front() else {
                    break;
                };
                self.bytes[from] += bytes.len() as u64;
                let now = self.now;
                if self.sides[1 - from].is_connected(LINK) {
                    self.sides[1 - from]
                        .handle_input(now, Input::Received(LINK, &bytes))
                        .unwrap();
                }
                if self.sides[from].is_connected(LINK) {
                    self.sides[from]
                        .handle_input(now, Input::Sent(LINK))
                        .unwrap();
                }
            }
            printed
        }
    }

    fn strings(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix} string number {i}"))
            .collect()
    }

    /// Both sides hold `shared`; each holds `k` more of its own. Returns the pair after it
    /// linked and went quiet.
    fn reconcile_with(shared: usize, k: usize) -> Pair {
        let common = strings("shared", shared);
        let own: [Vec<String>; 2] = [strings("a", k), strings("b", k)];
        let typed = [
            [&common[..], &own[0][..]].concat(),
            [&common[..], &own[1][..]].concat(),
        ];
        let mut pair = Pair::new(Config::default(), [&typed[0], &typed[1]]);
        pair.link();
        let printed = pair.drive(usize::MAX);
        assert!(pair.disconnects.is_empty(), "{:?}", pair.disconnects);
        for i in 0..2 {
            let mut got = printed[i].clone();
            got.sort();
            let mut want = own[1 - i].clone();
            want.sort();
            assert_eq!(got, want, "side {i} printed exactly what it lacked");
            assert_eq!(pair.sides[i].messages().count(), shared + 2 * k);
            assert!(pair.sides[i].is_flushed());
        }
        pair
    }

    #[test]
    fn equal_sets_exchange_only_a_few_small_frames() {
        let pair = reconcile_with(20_000, 0);
        for i in 0..2 {
            let stats = pair.sides[i].stats();
            assert_eq!(stats.frames_sent, 0, "no string is sent again");
            assert!(stats.recon_frames_sent <= 2, "{stats:?}");
        }
        // Greeting, Hello and one short Recon frame each way.
        assert!(pair.bytes.iter().all(|&b| b < 100), "{:?}", pair.bytes);
    }

    #[test]
    fn reconnecting_sends_exactly_the_difference() {
        for k in [1, 10, 1000] {
            let pair = reconcile_with(20_000, k);
            let full_history: u64 = 20_000 * (5 + 30);
            for i in 0..2 {
                let stats = pair.sides[i].stats();
                assert_eq!(stats.frames_sent, k as u64, "side {i}, k = {k}");
                assert!(
                    pair.bytes[i] < full_history / 4,
                    "k = {k}: {} bytes against {full_history} for the whole history",
                    pair.bytes[i]
                );
            }
        }
    }

    #[test]
    fn a_late_joiner_gets_everything_in_bounded_batches_without_being_dropped() {
        let config = Config {
            send_batch: 1000,
            max_in_flight: 2,
            ..Config::default()
        };
        let history = strings("history", 5000);
        for joiner in [0, 1] {
            let typed: [&[String]; 2] = if joiner == 0 {
                [&[], &history]
            } else {
                [&history, &[]]
            };
            let mut pair = Pair::new(config.clone(), typed);
            pair.link();
            let mut printed = Vec::new();
            // One write at a time, with the clock moving: slow, never dropped as stalled.
            for _ in 0..100_000 {
                pair.now += Duration::from_millis(500);
                let now = pair.now;
                for side in &mut pair.sides {
                    side.handle_input(now, Input::Timeout).unwrap();
                }
                let [a, b] = pair.drive(1);
                printed.extend(if joiner == 0 { a } else { b });
                if printed.len() == history.len() {
                    break;
                }
            }
            assert!(pair.disconnects.is_empty(), "{:?}", pair.disconnects);
            printed.sort();
            let mut want = history.clone();
            want.sort();
            assert_eq!(printed, want);
        }
    }

    #[test]
    fn strings_typed_during_reconciliation_are_neither_lost_nor_printed_twice() {
        let common = strings("shared", 3000);
        let a = [&common[..], &strings("a", 500)[..]].concat();
        let b = [&common[..], &strings("b", 500)[..]].concat();
        let mut pair = Pair::new(Config::default(), [&a, &b]);
        pair.link();
        let mut printed: [Vec<String>; 2] = Default::default();
        for round in 0..200 {
            pair.type_line(round % 2, &format!("live {round}"));
            for (all, new) in printed.iter_mut().zip(pair.drive(3)) {
                all.extend(new);
            }
        }
        let p = pair.drive(usize::MAX);
        for i in 0..2 {
            printed[i].extend(p[i].iter().cloned());
            let mut once = printed[i].clone();
            once.sort();
            once.dedup();
            assert_eq!(
                once.len(),
                printed[i].len(),
                "side {i} printed something twice"
            );
        }
        let all = |s: &FloodState| {
            let mut m: Vec<String> = s.messages().map(str::to_string).collect();
            m.sort();
            m
        };
        assert_eq!(all(&pair.sides[0]), all(&pair.sides[1]));
        assert_eq!(pair.sides[0].messages().count(), 3000 + 1000 + 200);
    }

    #[test]
    fn a_peer_that_sends_reconciliation_without_reading_cannot_pile_up_answers() {
        let mut h = Harness::with(Config {
            max_in_flight: 1,
            ..Config::default()
        });
        for t in strings("history", 2000) {
            h.input(Input::LineTyped(t.as_bytes()));
        }
        h.linked(A);
        // A peer's opening message, sent again and again while our answers stay unread.
        let mut peer_view = Store::new();
        for t in strings("other", 2000) {
            peer_view.insert(&t);
        }
        let mut opening = Vec::new();
        Frame::Recon(crate::Reconciler::new().initiate(&peer_view)).encode(&mut opening);
        let mut out = Vec::new();
        for _ in 0..10 {
            if !h.state.is_connected(A) {
                break;
            }
            out.extend(h.input(Input::Received(A, &opening)));
        }
        assert_eq!(
            out.last(),
            Some(&disconnect(A, DisconnectReason::ReconcileOutOfTurn))
        );
    }

    #[test]
    fn a_peer_that_lacks_the_room_again_every_round_loses_its_link() {
        let mut h = Harness::new();
        let room = strings("room", 20_000);
        for t in &room {
            h.input(Input::LineTyped(t.as_bytes()));
        }
        h.linked(A);
        // "I hold nothing in the lower half of the id space, and one string in the upper
        // half": we answer the upper half (so the same message may come again) and owe the
        // peer every string of the lower half, each time.
        let mut lie = vec![1 << 5 | 1, 0x80, 0]; // Fingerprint, bound 0x80..., count 0
        lie.extend([1 << 5 | 17, 1]); // Fingerprint to the end, count 1,
        lie.extend([0x11; 16]); // and a sum no set of ours has.
        let mut opening = Vec::new();
        Frame::Recon(lie).encode(&mut opening);
        let mut sent = 0;
        for _ in 0..20 {
            if !h.state.is_connected(A) {
                break;
            }
            let out = h.input(Input::Received(A, &opening));
            // Read everything we send, so that our answers are never out of turn.
            let mut more = h.ack(&out);
            while !more.is_empty() {
                more = h.ack(&more);
            }
            sent = h.state.stats().frames_sent;
        }
        assert!(!h.state.is_connected(A), "still linked after 20 rounds");
        assert!(
            sent >= room.len() as u64 / 3,
            "the first round is believed: the peer gets the lower half ({sent} strings)"
        );
        assert!(
            sent <= 2 * room.len() as u64 + OWED_MAX as u64,
            "sent {sent} strings for a room of {}",
            room.len()
        );
    }

    #[test]
    fn broken_reconciliation_and_greedy_asks_cost_the_peer_its_link() {
        let mut h = Harness::new();
        h.linked(A);
        let mut bad = Vec::new();
        Frame::Recon(vec![0xff, 1, 2]).encode(&mut bad);
        let out = h.input(Input::Received(A, &bad));
        assert!(
            matches!(
                out.last(),
                Some(Output::Disconnect {
                    reason: DisconnectReason::Reconcile(_),
                    ..
                })
            ),
            "{out:?}"
        );
        let mut h = Harness::new();
        h.input(Input::LineTyped(b"the only string"));
        h.linked(A);
        let id = crate::store::Id::of("the only string").0;
        let mut want = Vec::new();
        Frame::Want(vec![id; wire::MAX_WANT]).encode(&mut want);
        let mut out = Vec::new();
        for _ in 0..2 * OWED_MAX / wire::MAX_WANT {
            out.extend(h.input(Input::Received(A, &want)));
            if !h.state.is_connected(A) {
                break;
            }
        }
        assert_eq!(
            out.last(),
            Some(&disconnect(A, DisconnectReason::AskedTooMuch))
        );
    }
}
