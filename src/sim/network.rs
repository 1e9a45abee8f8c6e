//! [`Sim`]: many [`FloodState`]s on an in-memory network that moves in virtual time.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use super::Components;
use super::node::Node;
use super::notices::{NoticeCheck, Said};
use super::report::{Report, Violations};
use crate::rng::SplitMix64;
use crate::secure::{Framing, Identity};
use crate::wire::{ByeReason, ClientId, Decoded, Frame, FrameDecoder};
use crate::{Config, DisconnectReason, FloodState, Input, MAX_MESSAGE_LEN, Output, PeerId};

/// The port every simulated client listens on, at its own address ([`client_addr`]).
pub const LISTEN_PORT: u16 = 4000;

/// The address client `c` listens at: `127.x.y.z:4000`, where `x.y.z` is `c + 1` in base 256.
///
/// These addresses are names inside the simulator; nothing is ever sent to them.
///
/// # Panics
/// If `c + 1` does not fit in 24 bits.
pub fn client_addr(c: usize) -> SocketAddr {
    let n = u32::try_from(c + 1)
        .ok()
        .filter(|&n| n < 1 << 24)
        .expect("at most 2^24 - 1 simulated clients");
    let [_, x, y, z] = n.to_be_bytes();
    SocketAddr::new(Ipv4Addr::new(127, x, y, z).into(), LISTEN_PORT)
}

/// The client index whose [`client_addr`] is `addr`, if it is one.
pub fn client_at(addr: SocketAddr) -> Option<usize> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let [a, x, y, z] = ip.octets();
    let n = u32::from_be_bytes([0, x, y, z]);
    (a == 127 && addr.port() == LISTEN_PORT && n > 0).then(|| n as usize - 1)
}

/// How the simulated network behaves; every choice within these bounds comes from `seed`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice: latencies, split points, which link breaks when, and the
    /// clients' identities and seeds.
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
    /// How long a dial across a partition takes to fail (a connect timeout); a dial to an
    /// address where no client runs fails after one round trip (refused).
    pub dial_timeout: Duration,
    /// The configuration of every client; the simulator sets `client`, `seed` and
    /// `listen_port` per client (and a new identity for each restart).
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
            dial_timeout: Duration::from_secs(3),
            flood: Config::default(),
            fault: None,
            max_events: 50_000_000,
        }
    }
}

/// A defect no TCP network has, injected to prove the checks can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Silently lose one in `one_in` writes that carry Text frames (greetings, Hellos and
    /// control frames alone always arrive).
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
    /// Dial `dial` reaches its address: the connection opens there, or the dial fails.
    Dial { dial: usize },
    /// The dialer of `dial` learns that it failed: feed it [`Input::DialFailed`].
    DialFailed { dial: usize },
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
struct Client<N> {
    /// `None` while crashed.
    state: Option<N>,
    /// Bumped by every restart; events of an older incarnation are ignored.
    incarnation: u32,
    /// The identity of this incarnation.
    id: ClientId,
    /// When the earliest pending [`Event::Timer`] for this incarnation fires.
    armed: Option<Duration>,
    /// Every string printed, with the peer it came from (`None`: typed here, or kept on
    /// disk by an earlier incarnation).
    printed: HashMap<u32, Option<PeerId>>,
    /// What a driver with a data directory keeps: every string printed (by this incarnation
    /// or restored from an earlier one), with when, in order.
    kept: Vec<(u32, Arc<str>, Duration)>,
    /// The addresses kept, as of the crash.
    kept_addrs: Vec<SocketAddr>,
    /// When the client last crashed.
    crashed_at: Duration,
    /// Strings typed by this incarnation.
    typed: Vec<u32>,
    /// Links this incarnation took part in.
    links: Vec<usize>,
    frames_sent: u64,
    bytes_sent: u64,
    /// The story this incarnation's notices told so far.
    notices: NoticeCheck,
    /// Connections that were under way when this incarnation last said it had no links: one
    /// of them becoming a link shows that the notice was said too soon.
    under_way_when_alone: Vec<PeerId>,
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
    /// Follows the records the receiver is fed, to know when one is cut short.
    framing: Framing,
    /// Strings sent this way, to catch a string sent twice on one connection.
    sent: HashSet<u32>,
}

/// One TCP connection; end 0 dialed it, end 1 accepted it. End `e` knows it as
/// [`PeerId`]`(2 * index + e)`, so a client connected to itself has two names for it.
#[derive(Debug)]
struct Link {
    ends: [usize; 2],
    incarnations: [u32; 2],
    latency: Duration,
    /// Whether the network still carries it: not broken, and not yet closed by both ends.
    up: bool,
    /// Whether the network broke it (a break, a partition or a crash).
    broken: bool,
    /// Whether `ends[e]`'s state has the peer (connected, not yet closed or disconnected).
    open: [bool; 2],
    /// Whether `ends[e]` is being fed [`Input::Closed`] right now.
    closing: [bool; 2],
    /// Whether `ends[e]` said [`Output::PeerReady`].
    ready: [bool; 2],
    /// The Bye `ends[e]` sent, if any.
    bye: [Option<ByeReason>; 2],
    /// `dirs[e]` carries the bytes written by `ends[e]`.
    dirs: [Direction; 2],
}

impl Link {
    /// Carried, open at both ends, and neither end has said Bye: a closing end reads no more
    /// of it, and two ends that both said Bye may each wait out their linger.
    fn works(&self) -> bool {
        self.up && self.open == [true, true] && self.bye == [None, None]
    }
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

/// One [`Output::Dial`], kept aside so that events stay small.
#[derive(Debug, Clone, Copy)]
struct Dial {
    client: usize,
    incarnation: u32,
    addr: SocketAddr,
    latency: Duration,
}

/// The name end `e` of link `l` has for it.
fn peer_id(l: usize, e: usize) -> PeerId {
    PeerId(2 * l as u64 + e as u64)
}

/// Counts of what the clients did besides flooding, for the [`Report`].
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    dials: u64,
    dials_failed: u64,
    byes: u64,
    addrs: u64,
    pings: u64,
    notices: u64,
    closed_on_purpose: u64,
}

/// A deterministic network of [`FloodState`]s (or of [`MeshNode`](super::MeshNode)s, the
/// mesh alone): the simulator plays every driver and the network between them, in virtual
/// time, and checks the core's promises as it goes.
///
/// Each client is a [`Node`] with no IO, with its own [`ClientId`] and seed (from
/// [`SimConfig::seed`]; a restart gets new ones), listening at [`client_addr`]. A link is a
/// pair of FIFO byte streams with a latency; writes are split into pieces and reads are fed
/// in pieces at random points, but order is kept, as TCP keeps it. Links break (in-flight
/// bytes lost, both ends told after a while), clients crash and restart empty, partitions
/// cut and heal. Time moves only when [`advance`](Self::advance) or
/// [`settle`](Self::settle) moves it, and every choice comes from [`SimConfig::seed`], so
/// the same calls give the same run.
///
/// Connections: every client is fed [`Input::Start`] when it starts. An [`Output::Dial`] is
/// carried out as a driver would: after a link latency, if a client runs at that address and
/// no partition separates the two, the connection opens (the dialer gets
/// [`Input::Dialed`], the other [`Input::Accepted`] with the dialer's address and an
/// ephemeral port); otherwise [`Input::DialFailed`] comes after one more latency (refused)
/// or after [`SimConfig::dial_timeout`] (across a partition). [`connect`](Self::connect)
/// opens a connection at once, as if a driver had dialed on its own. A client that closes a
/// connection ([`Output::Disconnect`]) closes its socket: what it wrote is still delivered,
/// then the other end reads the end of the stream; what is sent to it is lost.
///
/// Checked at every output: nothing printed that nobody typed, nor twice, nor from a peer that
/// did not send it; nothing sent to a peer not connected; every connection opens with the
/// greeting and a Hello naming the client and its port; no Text before the peer's Hello; no
/// string sent back to the peer it first came from, nor twice on one connection; only whole
/// frames, of known kinds, and none after a Bye; addresses told to peers are clients'
/// listening addresses; a Bye for a self-connection only on one, a Bye for a duplicate only
/// while another connection to that client stays; `Closed` always answered by the right
/// `Disconnect`; a `Disconnect` for a Bye only when a Bye arrived; no peer ever dropped by a
/// client on its own for any other reason (a timeout, a protocol error).
/// [`check`](Self::check) adds convergence.
#[derive(Debug)]
pub struct Sim<N = FloodState> {
    config: SimConfig,
    rng: SplitMix64,
    start: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// Events in `queue` other than timers: bytes, acknowledgements, closes and dials.
    pending_io: usize,
    clients: Vec<Client<N>>,
    links: Vec<Link>,
    /// Every dial asked for.
    dials: Vec<Dial>,
    strings: Vec<Typed>,
    ids: HashMap<Arc<str>, u32>,
    /// The side of each client while a partition is in force.
    cut: Option<Vec<bool>>,
    violations: Violations,
    /// Ids of the Text frames in the piece being fed right now.
    rx_ids: Vec<u32>,
    /// The Bye in the piece being fed right now.
    rx_bye: Option<ByeReason>,
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
    counts: Counts,
    /// Whether an adversary ever joined ([`Sim::join_with`]).
    adversaries: bool,
}

impl Sim {
    /// `clients` whole clients ([`FloodState`]s), each started (with no contact) with an
    /// empty room and no links, at virtual time zero.
    pub fn new(clients: usize, config: SimConfig) -> Self {
        Self::start(clients, config)
    }
}

impl<N: Node> Sim<N> {
    /// `clients` clients of kind `N`, each started (with no contact) with no links, at
    /// virtual time zero.
    pub fn start(clients: usize, config: SimConfig) -> Self {
        let start = Instant::now();
        let mut sim = Self {
            rng: SplitMix64::new(config.seed),
            config,
            start,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            pending_io: 0,
            clients: Vec::with_capacity(clients),
            links: Vec::new(),
            dials: Vec::new(),
            strings: Vec::new(),
            ids: HashMap::new(),
            cut: None,
            violations: Violations::default(),
            rx_ids: Vec::new(),
            rx_bye: None,
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
            counts: Counts::default(),
            adversaries: false,
        };
        for _ in 0..clients {
            sim.push_client();
        }
        for c in 0..clients {
            sim.feed(c, Input::Start { contact: None });
        }
        sim
    }

    fn push_client(&mut self) -> usize {
        self.push_client_with(N::start)
    }

    /// Pushes a client whose first state `make` builds from its configuration.
    fn push_client_with(&mut self, make: impl FnOnce(Config, Instant) -> N) -> usize {
        let c = self.clients.len();
        // A client that starts during a partition is on the first side.
        if let Some(cut) = &mut self.cut {
            cut.push(false);
        }
        let (id, config) = self.new_config(c, 0, Vec::new());
        let state = make(config, self.start + self.now);
        self.clients.push(Client {
            state: Some(state),
            incarnation: 0,
            id,
            armed: None,
            printed: HashMap::new(),
            kept: Vec::new(),
            kept_addrs: Vec::new(),
            crashed_at: Duration::ZERO,
            typed: Vec::new(),
            links: Vec::new(),
            frames_sent: 0,
            bytes_sent: 0,
            notices: NoticeCheck::default(),
            under_way_when_alone: Vec::new(),
        });
        c
    }

    /// A new client starts now and joins through the address of client `via` (a dial, as
    /// `floodchat ADDR` does; `None`: a room of its own). Returns its index.
    pub fn join(&mut self, via: Option<usize>) -> usize {
        let c = self.push_client();
        self.feed(
            c,
            Input::Start {
                contact: via.map(client_addr),
            },
        );
        c
    }

    /// A new client starts now as `make` builds it from its configuration and the time (an
    /// adversary, say, as [`MeshNode::swarm`](super::MeshNode::swarm) builds one), with no
    /// contact; a restart makes it an ordinary client. Returns its index.
    pub fn join_with(&mut self, make: impl FnOnce(Config, Instant) -> N) -> usize {
        let c = self.push_client_with(make);
        self.adversaries |= self.clients[c].state.as_ref().is_some_and(N::is_adversary);
        self.feed(c, Input::Start { contact: None });
        c
    }

    /// The graph of working links between running clients: each link once, as its two ends,
    /// the one that dialed first.
    pub fn graph(&self) -> Vec<[usize; 2]> {
        self.links
            .iter()
            .filter(|l| l.works() && l.ends[0] != l.ends[1])
            .map(|l| l.ends)
            .collect()
    }

    /// The identity and a fresh state of incarnation `incarnation` of client `c`, with `known`
    /// addresses kept from an earlier incarnation.
    fn new_state_knowing(
        &self,
        c: usize,
        incarnation: u32,
        known: Vec<SocketAddr>,
    ) -> (ClientId, N) {
        let (id, config) = self.new_config(c, incarnation, known);
        (id, N::start(config, self.start + self.now))
    }

    /// The identity and configuration of incarnation `incarnation` of client `c`.
    fn new_config(&self, c: usize, incarnation: u32, known: Vec<SocketAddr>) -> (ClientId, Config) {
        // A bijection of (incarnation, c), so identities never collide.
        let unique = (u64::from(incarnation) << 32) | c as u64;
        let identity = Identity::from_seed(scramble(unique.wrapping_add(self.config.seed)));
        let id = identity.client_id();
        let config = Config {
            identity,
            entropy: blake3::derive_key("floodchat simulated entropy", &id.0.to_le_bytes()),
            seed: scramble(id.0 ^ 0x5eed_0fc1_1e47),
            listen_port: LISTEN_PORT,
            known,
            ..self.config.flood.clone()
        };
        (id, config)
    }

    // ---- getters ----

    /// How the network behaves.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

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
    pub fn state(&self, c: usize) -> Option<&N> {
        self.clients[c].state.as_ref()
    }

    /// The identity of client `c`'s current incarnation.
    pub fn client_id(&self, c: usize) -> ClientId {
        self.clients[c].id
    }

    /// Links the network still carries, by index.
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

    /// Opens a connection between `a` and `b` at once, as if `a`'s driver had dialed `b` on
    /// its own: `a` gets [`Input::Dialed`], `b` [`Input::Accepted`]. Returns the link, or
    /// `None` if either is crashed or a partition separates them. `a == b` connects a
    /// client to itself.
    ///
    /// If a connection `a` dialed to `b` is still open at either end, `b` dials instead (and
    /// if that is open too, nothing happens), so that scripts stay close to what drivers do;
    /// [`open`](Self::open) dials whatever is open.
    pub fn connect(&mut self, a: usize, b: usize) -> Option<usize> {
        let (a, b) = self.dial_side(a, b)?;
        self.open(a, b)
    }

    /// Opens a connection dialed by `a` and accepted by `b` at once, whatever links they
    /// have already; `None` if either is crashed or a partition separates them.
    pub fn open(&mut self, a: usize, b: usize) -> Option<usize> {
        if !self.is_alive(a) || !self.is_alive(b) || self.separated(a, b) {
            return None;
        }
        let latency = self.draw(self.config.latency_min, self.config.latency_max);
        Some(self.open_link(a, b, latency))
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
    /// link's latency. Returns whether the network still carried it.
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
        let Some(state) = client.state.take() else {
            return false;
        };
        client.kept_addrs = state.addrs_to_keep();
        client.crashed_at = self.now;
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

    /// A crashed client `c` starts again, with a new identity, an empty room and no
    /// contact; false if it was running.
    pub fn restart(&mut self, c: usize) -> bool {
        self.start_again(c, None, None)
    }

    /// A crashed client `c` starts again on its data directory, as `floodchat --data-dir`
    /// does: with a new identity, the strings it printed (but those printed in the last
    /// `lost` before the crash: a machine's crash loses the unsynced tail, a killed process
    /// nothing), which it does not print again, and the addresses it kept, through which it
    /// rejoins. False if `c` was running.
    ///
    /// The strings typed by the crashed incarnation that are kept must reach its component,
    /// as those typed by a running client must.
    pub fn resume(&mut self, c: usize, lost: Duration) -> bool {
        self.start_again(c, None, Some(lost))
    }

    /// A crashed client `c` starts again, with a new identity and an empty room, and joins
    /// through the address of client `via` (a dial, which fails if `via` is not running or
    /// is across a partition); false if `c` was running.
    pub fn rejoin(&mut self, c: usize, via: usize) -> bool {
        self.start_again(c, Some(client_addr(via)), None)
    }

    /// Starts crashed client `c` again; from its disk if `disk` says what the crash lost.
    fn start_again(
        &mut self,
        c: usize,
        contact: Option<SocketAddr>,
        disk: Option<Duration>,
    ) -> bool {
        if self.is_alive(c) {
            return false;
        }
        let incarnation = self.clients[c].incarnation + 1;
        let known = match disk {
            Some(_) => self.clients[c].kept_addrs.clone(),
            None => Vec::new(),
        };
        let (id, mut state) = self.new_state_knowing(c, incarnation, known);
        let client = &mut self.clients[c];
        client.printed.clear();
        match disk {
            Some(lost) => {
                let crashed_at = client.crashed_at;
                client
                    .kept
                    .retain(|&(_, _, at)| lost.is_zero() || at + lost <= crashed_at);
                for (id, text, _) in &client.kept {
                    state.restore(text);
                    client.printed.insert(*id, None);
                }
                let printed = &client.printed;
                client.typed.retain(|id| printed.contains_key(id));
            }
            None => {
                client.kept.clear();
                client.typed.clear();
            }
        }
        client.incarnation = incarnation;
        client.id = id;
        client.state = Some(state);
        client.armed = None;
        client.links.clear();
        client.frames_sent = 0;
        client.bytes_sent = 0;
        client.notices = NoticeCheck::default();
        client.under_way_when_alone.clear();
        self.feed(c, Input::Start { contact });
        true
    }

    /// Splits the clients in two by `side`: links across the cut break (the connections
    /// die, as they do when a cut outlasts their timeouts or a middlebox resets them; a short
    /// cut on a real network may only stall them) and no new one crosses it until
    /// [`heal`](Self::heal).
    pub fn partition(&mut self, side: Vec<bool>) {
        assert_eq!(side.len(), self.clients.len(), "one side per client");
        self.partitions += 1;
        for l in 0..self.links.len() {
            let [a, b] = self.links[l].ends;
            if self.links[l].up && side[a] != side[b] {
                self.break_link(l);
            }
        }
        self.cut = Some(side);
    }

    /// Ends the partition, and reconnects nothing: dials may cross again, and the meshes
    /// find each other from what their address books hold.
    ///
    /// That is what a network does when a cut heals: it carries packets again, but a TCP
    /// connection that died in the cut stays dead, and no driver redials on its own (only
    /// the core's [`Output::Dial`] does). During the cut each end heard its connection
    /// close and its mesh dialed replacements on its own side; after it, a mesh still
    /// below its target dials again, across the cut too. Restoring the severed links here,
    /// on top of those replacements, would leave clients above their target and flooding
    /// over links nobody dialed.
    pub fn heal(&mut self) {
        self.cut = None;
    }

    /// Lets `by` of virtual time pass, handling everything due in it.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            self.step();
        }
        self.now = until;
    }

    /// Runs until the network is quiet: no bytes in flight, no acknowledgement, close or
    /// dial pending, and every running client [flushed](FloodState::is_flushed). Timers
    /// run while it is not quiet, but pending timers alone (a keepalive, an idle check) do
    /// not keep it going. Returns false (and records a violation) if that takes more than
    /// [`SimConfig::max_events`] events, or if a client is not flushed with nothing left
    /// that could change it.
    pub fn settle(&mut self) -> bool {
        let mut budget = self.config.max_events;
        loop {
            if self.pending_io == 0
                && self
                    .clients
                    .iter()
                    .all(|c| c.state.as_ref().is_none_or(N::is_flushed))
            {
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
            if !self.step() {
                self.violation("a client is not flushed and nothing is pending".into());
                return false;
            }
        }
    }

    /// Handles the next event; false if there is none.
    fn step(&mut self) -> bool {
        let Some(Reverse(s)) = self.queue.pop() else {
            return false;
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
                    let c = self.links[link].ends[end];
                    self.feed(c, Input::Sent(peer_id(link, end)));
                }
            }
            Event::Close { link, end } => self.closed(link, end),
            Event::Dial { dial } => self.dial_arrives(dial),
            Event::DialFailed { dial } => {
                let Dial {
                    client,
                    incarnation,
                    addr,
                    ..
                } = self.dials[dial];
                if self.clients[client].incarnation == incarnation && self.is_alive(client) {
                    self.counts.dials_failed += 1;
                    self.feed(client, Input::DialFailed(addr));
                }
            }
            Event::Timer {
                client,
                incarnation,
            } => {
                let c = &mut self.clients[client];
                if c.incarnation != incarnation || c.state.is_none() {
                    return true;
                }
                if c.armed == Some(self.now) {
                    c.armed = None;
                }
                let due = c
                    .state
                    .as_ref()
                    .and_then(N::poll_timeout)
                    .is_some_and(|t| t <= self.start + self.now);
                if due {
                    self.feed(client, Input::Timeout);
                } else {
                    self.arm_timer(client);
                }
            }
        }
        true
    }

    // ---- connections ----

    /// Whether a partition separates `a` and `b`.
    fn separated(&self, a: usize, b: usize) -> bool {
        self.cut.as_ref().is_some_and(|side| side[a] != side[b])
    }

    /// Who dials whom for [`connect`](Self::connect)`(a, b)`.
    fn dial_side(&self, a: usize, b: usize) -> Option<(usize, usize)> {
        if a == b {
            return Some((a, b));
        }
        let dialed_open = |x: usize, y: usize| {
            let inc = [self.clients[x].incarnation, self.clients[y].incarnation];
            self.clients[x].links.iter().any(|&l| {
                let link = &self.links[l];
                link.ends == [x, y] && link.incarnations == inc && link.open.contains(&true)
            })
        };
        if !dialed_open(a, b) {
            Some((a, b))
        } else if !dialed_open(b, a) {
            Some((b, a))
        } else {
            None
        }
    }

    /// Opens a connection dialed by `a` and accepted by `b`; returns its index.
    fn open_link(&mut self, a: usize, b: usize, latency: Duration) -> usize {
        let l = self.links.len();
        self.links.push(Link {
            ends: [a, b],
            incarnations: [self.clients[a].incarnation, self.clients[b].incarnation],
            latency,
            up: true,
            broken: false,
            open: [true, true],
            closing: [false, false],
            ready: [false, false],
            bye: [None, None],
            dirs: Default::default(),
        });
        self.clients[a].links.push(l);
        if a != b {
            self.clients[b].links.push(l);
        }
        let remote = SocketAddr::new(client_addr(a).ip(), 49152 + (l % 16384) as u16);
        self.feed(
            a,
            Input::Dialed {
                peer: peer_id(l, 0),
                addr: client_addr(b),
            },
        );
        self.feed(
            b,
            Input::Accepted {
                peer: peer_id(l, 1),
                remote,
            },
        );
        l
    }

    /// Client `c` asked to dial `addr`: the attempt reaches it after a link latency.
    fn on_dial(&mut self, c: usize, addr: SocketAddr) {
        self.counts.dials += 1;
        let latency = self.draw(self.config.latency_min, self.config.latency_max);
        self.dials.push(Dial {
            client: c,
            incarnation: self.clients[c].incarnation,
            addr,
            latency,
        });
        let dial = self.dials.len() - 1;
        self.schedule(self.now + latency, Event::Dial { dial });
    }

    fn dial_arrives(&mut self, dial: usize) {
        let Dial {
            client: c,
            incarnation,
            addr,
            latency,
        } = self.dials[dial];
        if self.clients[c].incarnation != incarnation || !self.is_alive(c) {
            return;
        }
        let failed_at = match client_at(addr).filter(|&t| t < self.clients.len()) {
            Some(t) if self.is_alive(t) && !self.separated(c, t) => {
                self.open_link(c, t, latency);
                return;
            }
            // The attempt is lost across the cut: the dialer gives up after its timeout.
            Some(t) if self.is_alive(t) => {
                self.now + self.config.dial_timeout.saturating_sub(latency)
            }
            // Nobody listens there: refused, one latency later.
            _ => self.now + latency,
        };
        self.schedule(failed_at, Event::DialFailed { dial });
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
        self.rx_ids.clear();
        self.rx_bye = None;
        if let Input::Received(peer, piece) = input {
            // What the client was given to decode: the frames the records carried.
            let plain = state.tapped_read().unwrap_or(piece).to_vec();
            if let Some((l, e)) = self.end_of(c, peer) {
                self.decode_received(l, 1 - e, &plain);
            }
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
                Output::Print(index) => {
                    let text = self.clients[c]
                        .state
                        .as_ref()
                        .expect("a running client printed")
                        .message(index)
                        .to_string();
                    self.on_print(c, &text, origin, may_print)
                }
                Output::Send { peer, bytes } => self.on_send(c, peer, bytes),
                Output::Dial(addr) => self.on_dial(c, addr),
                Output::PeerReady(peer) => match self.end_of(c, peer) {
                    Some((l, e)) => {
                        let link = &mut self.links[l];
                        if link.ready[e] || !link.dirs[1 - e].rx.hello_seen() {
                            self.violation(format!(
                                "client {c}: PeerReady({peer}) twice or before its Hello"
                            ));
                        }
                        self.links[l].ready[e] = true;
                        if self.clients[c].under_way_when_alone.contains(&peer) {
                            self.violation(format!(
                                "client {c}: said \"no links\" while {peer}, linked now, was \
                                 under way"
                            ));
                        }
                    }
                    None => self.violation(format!(
                        "client {c}: PeerReady({peer}), which is not connected"
                    )),
                },
                Output::Disconnect { peer, reason } => {
                    self.on_disconnect(c, peer, reason, origin == Some(peer));
                }
                Output::Notice(notice) => {
                    self.counts.notices += 1;
                    let links = self.clients[c].state.as_ref().map(N::link_count);
                    let at = self.now();
                    let said = Said::from_notice(&notice);
                    if said == Said::Alone {
                        self.clients[c].under_way_when_alone = self.under_way(c);
                    }
                    if let Err(e) = self.clients[c].notices.said(at, said, links) {
                        self.violation(format!("client {c}: notice \"{notice}\": {e}"));
                    }
                }
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
        let text = self.ids.get_key_value(text).expect("known").0.clone();
        let now = self.now;
        self.clients[c].kept.push((id, text, now));
        let s = &mut self.strings[id as usize];
        s.prints += 1;
        s.last_print = s.last_print.max(self.now);
    }

    fn on_send(&mut self, c: usize, peer: PeerId, bytes: Vec<u8>) {
        let Some((l, e)) = self.end_of(c, peer) else {
            self.violation(format!(
                "client {c} sent {} bytes to {peer}, which is not connected",
                bytes.len()
            ));
            return;
        };
        self.sends += 1;
        self.bytes += bytes.len() as u64;
        // What the records carry, when the client has a record layer.
        let plain = self.clients[c].state.as_mut().and_then(N::tapped_send);
        if N::RECORDS && plain.is_none() {
            self.violation(format!(
                "client {c}: a Send to {peer} the tap does not know"
            ));
        }
        // The client's own count is of the frame stream, inside the records.
        self.clients[c].bytes_sent += plain.as_ref().map_or(bytes.len(), Vec::len) as u64;
        let mut texts = 0;
        let mut input = plain.as_deref().unwrap_or(&bytes[..]);
        loop {
            let decoded = match self.links[l].dirs[e].tx.decode(&mut input) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(err) => {
                    self.violation(format!(
                        "client {c} sent {peer} bytes that are not floodchat: {err}"
                    ));
                    break;
                }
            };
            if let Some(bye) = self.links[l].bye[e] {
                self.violation(format!(
                    "client {c} sent {peer} more after its Bye ({bye}): {decoded:?}"
                ));
            }
            match decoded {
                Decoded::Greeting => {}
                Decoded::Frame(Frame::Hello(hello)) => {
                    let id = self.clients[c].id;
                    let adversary = self.clients[c].state.as_ref().is_some_and(N::is_adversary);
                    if !adversary && (hello.client != id || hello.listen_port != LISTEN_PORT) {
                        self.violation(format!(
                            "client {c} (id {id}, port {LISTEN_PORT}) introduced itself to \
                             {peer} as {} on port {}",
                            hello.client, hello.listen_port
                        ));
                    }
                }
                Decoded::Frame(Frame::Text(text)) => {
                    texts += 1;
                    self.on_text_sent(c, l, e, &text);
                }
                Decoded::Frame(Frame::Addrs(addrs)) => {
                    self.counts.addrs += 1;
                    self.check_addrs(c, peer, &addrs);
                }
                Decoded::Frame(Frame::Bye { reason, addrs }) => {
                    self.counts.byes += 1;
                    self.check_addrs(c, peer, &addrs);
                    self.on_bye_sent(c, l, e, reason);
                }
                Decoded::Frame(Frame::Ping) => self.counts.pings += 1,
                Decoded::Frame(Frame::Recon(_) | Frame::Want(_)) => {}
                Decoded::Skipped { kind } => self.violation(format!(
                    "client {c} sent {peer} a frame of kind {kind}, which it does not know"
                )),
            }
        }
        if self.links[l].dirs[e].tx.is_mid_item() {
            self.violation(format!(
                "client {c}: a Send to {peer} ended in the middle of a frame"
            ));
        }
        self.frames += texts;
        self.clients[c].frames_sent += texts;
        if let Some(Fault::DropSends { one_in }) = self.config.fault {
            if texts > 0 && self.rng.chance(1, one_in) {
                self.schedule(self.now, Event::Ack { link: l, end: e });
                return;
            }
        }
        self.write(l, e, bytes);
    }

    fn on_text_sent(&mut self, c: usize, l: usize, e: usize, text: &str) {
        let peer = peer_id(l, e);
        let Some(&id) = self.ids.get(text) else {
            self.violation(format!("client {c} sent {text:?}, which nobody typed"));
            return;
        };
        if !self.links[l].ready[e] {
            self.violation(format!("client {c} sent #{id} to {peer} before its Hello"));
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

    /// Addresses a client tells a peer must be where some client listens.
    fn check_addrs(&mut self, c: usize, peer: PeerId, addrs: &[SocketAddr]) {
        // An adversary tells what it likes, and honest clients pass it on: the check holds
        // only in a room without adversaries.
        if self.adversaries {
            return;
        }
        let n = self.clients.len();
        for addr in addrs {
            if client_at(*addr).is_none_or(|t| t >= n) {
                self.violation(format!(
                    "client {c} told {peer} of {addr}, where no client listens"
                ));
            }
        }
    }

    /// Checks what a Bye from end `e` of link `l` claims.
    fn on_bye_sent(&mut self, c: usize, l: usize, e: usize, reason: ByeReason) {
        let peer = peer_id(l, e);
        self.links[l].bye[e] = Some(reason);
        let link = &self.links[l];
        let (other, other_incarnation) = (link.ends[1 - e], link.incarnations[1 - e]);
        match reason {
            ByeReason::SelfConnection if link.ends[0] != link.ends[1] => {
                self.violation(format!(
                    "client {c} said Bye to {peer} as a connection to itself, but it goes to \
                     client {other}"
                ));
            }
            ByeReason::Duplicate => {
                let incarnation = self.clients[c].incarnation;
                let stays = self.clients[c].links.iter().any(|&m| {
                    let k = &self.links[m];
                    m != l
                        && (0..2).any(|f| {
                            k.ends[f] == c
                                && k.incarnations[f] == incarnation
                                && k.open[f]
                                && k.bye[f].is_none()
                                && k.ends[1 - f] == other
                                && k.incarnations[1 - f] == other_incarnation
                        })
                });
                if other == c || !stays {
                    self.violation(format!(
                        "client {c} said Bye to {peer} as a duplicate, but has no other \
                         connection to client {other} that stays"
                    ));
                }
            }
            _ => {}
        }
    }

    fn on_disconnect(&mut self, c: usize, peer: PeerId, reason: DisconnectReason, received: bool) {
        let Some((l, e)) = self.end_of(c, peer) else {
            self.violation(format!(
                "client {c}: Disconnect({peer}), which is not connected"
            ));
            return;
        };
        let link = &self.links[l];
        if link.closing[e] {
            let rx = &link.dirs[1 - e].rx;
            let fits = if link.bye[e].is_some() {
                // It was closing on purpose when the peer's end of stream came.
                matches!(reason, DisconnectReason::Local(_))
            } else if !rx.hello_seen() {
                reason == DisconnectReason::ClosedBeforeGreeting
            } else if rx.is_mid_item() || (N::RECORDS && link.dirs[1 - e].framing.is_mid_message())
            {
                reason == DisconnectReason::ClosedMidFrame
            } else {
                reason == DisconnectReason::Closed
            };
            if !fits {
                self.violation(format!(
                    "client {c}: Closed({peer}) gave reason \"{reason}\", which does not fit \
                     what it received and sent"
                ));
            }
        } else {
            match &reason {
                DisconnectReason::Local(_) => self.counts.closed_on_purpose += 1,
                DisconnectReason::Bye(bye) if received && self.rx_bye == Some(*bye) => {}
                DisconnectReason::Bye(bye) => self.violation(format!(
                    "client {c} dropped {peer} for a Bye ({bye}) it did not just receive"
                )),
                _ => self.violation(format!("client {c} dropped {peer}: {reason}")),
            }
        }
        self.end_closes(l, e);
    }

    /// Which link and end `peer` is at client `c`, if that end is open.
    /// Client `c`'s connections that are open and not yet links.
    fn under_way(&self, c: usize) -> Vec<PeerId> {
        let incarnation = self.clients[c].incarnation;
        let mut peers = Vec::new();
        for &l in &self.clients[c].links {
            let link = &self.links[l];
            for e in 0..2 {
                if link.ends[e] == c
                    && link.incarnations[e] == incarnation
                    && link.open[e]
                    && !link.ready[e]
                {
                    peers.push(peer_id(l, e));
                }
            }
        }
        peers
    }

    fn end_of(&self, c: usize, peer: PeerId) -> Option<(usize, usize)> {
        let l = usize::try_from(peer.0 / 2).ok()?;
        let e = (peer.0 % 2) as usize;
        let link = self.links.get(l)?;
        (link.ends[e] == c && link.incarnations[e] == self.clients[c].incarnation && link.open[e])
            .then_some((l, e))
    }

    fn arm_timer(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let Some(deadline) = client.state.as_ref().and_then(N::poll_timeout) else {
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
        if !link.up || !link.open[1 - e] {
            // Written into a connection that is gone or closed at the other end: taken, then
            // lost, as TCP would lose it.
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
        self.links[l].dirs[dir].framing.feed(piece, |_, _| {});
        self.feed(c, Input::Received(peer_id(l, 1 - dir), piece));
        self.rx_ids.clear();
        self.rx_bye = None;
    }

    /// Decodes what end `1 - dir` of link `l` was just given, for the checks of its outputs.
    fn decode_received(&mut self, l: usize, dir: usize, mut input: &[u8]) {
        loop {
            match self.links[l].dirs[dir].rx.decode(&mut input) {
                Ok(Some(Decoded::Frame(Frame::Text(text)))) => {
                    if let Some(&id) = self.ids.get(text.as_str()) {
                        self.rx_ids.push(id);
                    }
                }
                Ok(Some(Decoded::Frame(Frame::Bye { reason, .. }))) => self.rx_bye = Some(reason),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn closed(&mut self, l: usize, e: usize) {
        if !self.links[l].open[e] {
            return;
        }
        let c = self.links[l].ends[e];
        self.links[l].closing[e] = true;
        self.feed(c, Input::Closed(peer_id(l, e)));
        if self.links[l].open[e] {
            self.violation(format!(
                "client {c}: Closed({}) was not answered by Disconnect",
                peer_id(l, e)
            ));
            self.end_closes(l, e);
        }
        self.links[l].closing[e] = false;
    }

    /// End `e` of link `l` closes its socket: it reads nothing more (bytes towards it are
    /// lost, writes towards it taken and lost), what it wrote still arrives, and then the
    /// other end reads the end of the stream.
    fn end_closes(&mut self, l: usize, e: usize) {
        let now = self.now;
        let link = &mut self.links[l];
        link.open[e] = false;
        link.dirs[e].waiting.clear();
        let towards = &mut link.dirs[1 - e];
        towards.segments.clear();
        towards.buffered = 0;
        let lost = std::mem::take(&mut towards.waiting).len();
        let other_open = link.open[1 - e] && !link.closing[1 - e];
        let fin = (now + link.latency).max(link.dirs[e].last_arrival);
        if !link.open[1 - e] {
            link.up = false;
        }
        for _ in 0..lost {
            self.schedule(
                now,
                Event::Ack {
                    link: l,
                    end: 1 - e,
                },
            );
        }
        if self.links[l].up && other_open {
            self.schedule(
                fin,
                Event::Close {
                    link: l,
                    end: 1 - e,
                },
            );
        }
    }

    /// The network stops carrying link `l`: bytes in flight are lost and each end still
    /// open is told, after the link's latency (or, if `random`, any time up to it).
    fn close_link(&mut self, l: usize, random: bool) {
        if !self.links[l].up {
            return;
        }
        let link = &mut self.links[l];
        link.up = false;
        link.broken = true;
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
        const PIECES: [&str; 7] = [" ", "a", "Z", "é", "€", "🦀", "\t"];
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
    /// member; each is flushed and has no timer overdue; its counters match what it was seen
    /// to send. When no client ever crashed and all form one component, each printed
    /// exactly every string ever typed. Per string, frames never exceed two per link
    /// session (one each way). No two working links join the same two clients, and of the
    /// links between two clients, not all were closed as duplicates.
    pub fn check(&mut self) -> &Violations {
        let n = self.clients.len();
        let now = self.start + self.now;
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
                if !state.is_flushed() {
                    found.push(format!(
                        "client {m} is not flushed when the network is quiet"
                    ));
                }
                if state.poll_timeout().is_some_and(|t| t < now) {
                    found.push(format!("client {m} has a timer overdue"));
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
        found.extend(self.check_pairs());
        for f in found {
            self.violation(f);
        }
        &self.violations
    }

    /// Between any two client incarnations: at most one working link, and not every link
    /// closed as a duplicate.
    fn check_pairs(&self) -> Vec<String> {
        // (client, incarnation) of both ends, smaller first -> (working links, links, links
        // closed as duplicates).
        type Pair = [(usize, u32); 2];
        let mut pairs: HashMap<Pair, (usize, usize, usize)> = HashMap::new();
        for link in &self.links {
            let mut ends = [
                (link.ends[0], link.incarnations[0]),
                (link.ends[1], link.incarnations[1]),
            ];
            if ends[0] == ends[1] {
                continue;
            }
            ends.sort_unstable();
            let entry = pairs.entry(ends).or_default();
            entry.0 += usize::from(link.works());
            entry.1 += 1;
            entry.2 += usize::from(link.bye.contains(&Some(ByeReason::Duplicate)));
        }
        let mut keys: Vec<Pair> = pairs.keys().copied().collect();
        keys.sort_unstable();
        let mut found = Vec::new();
        for key in keys {
            let (working, all, duplicates) = pairs[&key];
            let [(a, _), (b, _)] = key;
            if working > 1 {
                found.push(format!(
                    "clients {a} and {b} are joined by {working} working links"
                ));
            }
            if duplicates > 0 && duplicates == all {
                found.push(format!(
                    "clients {a} and {b} closed every one of their {all} links as a duplicate"
                ));
            }
        }
        found
    }

    fn printed_set(&self, c: usize) -> Vec<u32> {
        let mut set: Vec<u32> = self.clients[c].printed.keys().copied().collect();
        set.sort_unstable();
        set
    }

    /// The clients grouped by every link that works.
    fn components(&self) -> Components {
        let working = self.links.iter().filter(|l| l.works());
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
            links_up: self.links.iter().filter(|l| l.works()).count(),
            sends: self.sends,
            frames: self.frames,
            bytes: self.bytes,
            max_frames_one_string: self.strings.iter().map(|s| s.frames).max().unwrap_or(0),
            latencies,
            breaks: self.breaks,
            crashes: self.crashes,
            partitions: self.partitions,
            dials: self.counts.dials,
            dials_failed: self.counts.dials_failed,
            byes: self.counts.byes,
            closed_on_purpose: self.counts.closed_on_purpose,
            addrs_frames: self.counts.addrs,
            pings: self.counts.pings,
            notices: self.counts.notices,
            events: self.events,
            inputs: self.inputs,
            virtual_time: self.now,
            violations: self.violations.len(),
        }
    }
}

/// A bijection of `u64` that scatters its input (the SplitMix64 finaliser).
fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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

fn addr_code(addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => u64::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip) as u64,
    };
    (ip << 16) | u64::from(addr.port())
}

fn input_code(input: &Input<'_>) -> u64 {
    match *input {
        Input::LineTyped(b) => 1 ^ ((b.len() as u64) << 8),
        Input::Accepted { peer, remote } => mix(2 ^ (peer.0 << 8), addr_code(remote)),
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
        Input::Start { contact } => mix(7, contact.map_or(0, addr_code)),
        Input::Dialed { peer, addr } => mix(8 ^ (peer.0 << 8), addr_code(addr)),
        Input::DialFailed(addr) => mix(9, addr_code(addr)),
        Input::Leave => 10,
        Input::EndOfInput => 11,
    }
}

fn describe(input: &Input<'_>) -> String {
    match input {
        Input::LineTyped(b) => format!("LineTyped({} bytes)", b.len()),
        Input::Received(p, b) => format!("Received({p}, {} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_loopback_and_map_back() {
        for c in [0, 1, 254, 255, 256, 65_535, 70_000] {
            let addr = client_addr(c);
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_eq!(client_at(addr), Some(c));
        }
        assert_eq!(client_addr(0).to_string(), "127.0.0.1:4000");
        assert_eq!(client_addr(256).to_string(), "127.0.1.1:4000");
        assert_eq!(client_at("127.0.0.1:4001".parse().unwrap()), None);
        assert_eq!(client_at("127.0.0.0:4000".parse().unwrap()), None);
        assert_eq!(client_at("10.0.0.1:4000".parse().unwrap()), None);
    }
}
