//! [`Mesh`]: who to be connected to. The membership sub-machine: an address book, a target
//! number of links, dialing with backoff, and the connection limits that keep a hostile
//! network from taking every slot. Sans-IO like the rest of the core: time comes in as an
//! argument, randomness from a seed, and it never encodes bytes (addresses are
//! [`SocketAddr`]s, identities [`ClientId`]s).
//!
//! # Interface
//!
//! ```text
//! Mesh::new(config: MeshConfig, me: ClientId, seed: u64, now: Instant) -> Mesh
//! Mesh::handle(&mut self, now: Instant, input: MeshInput<'_>)
//! Mesh::poll(&mut self) -> Option<MeshOutput>          // drain to None after every handle
//! Mesh::poll_timeout(&self) -> Option<Instant>         // then handle(now, Timeout) at that time
//! getters: id, config, links, inbound_links, linked, is_alone, connections, unproven,
//!          pending_dials, book_len, knows, is_verified
//!
//! MeshInput:  Start { contact } | Accepted { peer, remote } | Dialed { peer, addr }
//!             | DialFailed { addr } | Answered { peer } | Hello { peer, id, listen_port, alone }
//!             | Addrs { peer, addrs } | Bye { peer, reason, addrs } | Closed { peer }
//!             | Leave | Timeout
//! MeshOutput: Dial(addr) | LinkUp { peer, id } | SendAddrs { peer, addrs }
//!             | Close { peer, bye, why } | Notice(MeshNotice)
//! ```
//!
//! The parent (the flood part's owner) feeds every connection event in and carries out every
//! output: it dials when told and reports `Dialed` or `DialFailed`; it tells the mesh about
//! each inbound connection before reading from it (`Accepted`: admission); it passes the
//! peer's Hello, Addrs and Bye frames as typed values; and it reports `Closed` when a
//! connection ends on its own. `LinkUp` says a connection is now a link (start flooding on it);
//! `Close` says drop it (send the `Bye` first, if any). After the mesh said `Close` for a peer
//! it has forgotten that peer: later inputs naming it are ignored, `Closed` included.
//!
//! # Rules
//!
//! - **Admission** (`Accepted`): an inbound connection is refused (closed at once, no bytes)
//!   when its IP already has [`MeshConfig::max_per_ip`] inbound connections that have not
//!   said Hello (a Hello is what a limit on its links can answer). When the table
//!   is full ([`MeshConfig::max_connections`] in all, or [`MeshConfig::max_unproven`]
//!   inbound connections that have not said Hello), the oldest unproven inbound connection is
//!   evicted so that a newcomer still gets in; if there is none, the newcomer is refused. The
//!   parent times the Hello out (it owns the connection and its deadlines) and reports
//!   `Closed`; a dialed connection closed before Hello counts as a failed dial. Refusals are
//!   reported as [`MeshNotice::Refused`], summarised every [`MeshConfig::notice_interval`].
//! - **Hello**: our own id closes the connection (`Bye SelfConnection`; a dialed address that
//!   was ourselves is never dialed again). A second connection to a client already linked
//!   keeps the one dialed by the smaller [`ClientId`] (both sides compute the same; if one
//!   client dialed both, each side keeps the older it saw), the other gets `Bye Duplicate`
//!   (and the address it was dialed at waits as after `Bye Full`). An inbound link beyond
//!   [`MeshConfig::max_inbound`] first makes room by the eviction rule below, for a link of
//!   a crowded address group. If none may go, or the link is beyond
//!   [`MeshConfig::max_per_ip`] from its IP (clients behind one NAT, or on one machine,
//!   share an IP), and its Hello says it has no link, the youngest inbound link (from that
//!   IP, for its limit) of a client that had others (or has had
//!   [`MeshConfig::make_room_every`] to dial some) is shed (`Bye Shed`, with addresses) to
//!   make room, at most once per `make_room_every`, so a swarm claiming to be alone churns
//!   out at most one link per interval; otherwise it gets `Bye Full` with addresses to try.
//!   Otherwise the connection becomes a link: the newcomer is sent up to [`MAX_ADDRS`]
//!   addresses, and (for an inbound link) up to [`MeshConfig::links`] other links are told
//!   the newcomer's address, as HyParView's forward-join does, so the graph is not a tree.
//! - **Address book**: at most [`MeshConfig::book_size`] entries. An address is tied to a
//!   client (verified, and busy while linked) only when our own dial of it reached that
//!   client; an inbound peer's Hello `listen_port` at its IP is a claim (an impostor at that
//!   IP may name another client's port), passed on to other links and learned as gossip is
//!   (a failure backs it off rather than forgetting it, as it names the claimant's IP). An
//!   address our dial reached, or the user's contact, is *verified*: gossip never evicts it.
//!   Learned addresses (Addrs, Bye) are unverified: at most [`MAX_ADDRS`] per message, at
//!   most [`MeshConfig::per_source`] in the book per source IP, only from linked peers (or
//!   a Bye), and a new one evicts a random idle unverified entry when the book is full.
//! - **Testing hints**: a learned address is *untested* until a dial to it answers with
//!   floodchat's prologue ([`MeshInput::Answered`], or a Hello). A source is *vouched for*
//!   while it has no strike and either one of its hints answered or we had a link with it at
//!   its own address (a verified entry at its IP): its hints are treated as any learned
//!   address (tested several at once, kept, passed on), so an honest room spreads addresses
//!   as fast as before. Other sources' untested hints are never passed on (Addrs, Bye,
//!   shuffles), are dropped [`MeshConfig::hint_ttl`] after they were learned, and are
//!   dialed one at a time per source IP: the next waits for the outcome. One
//!   that answered as something else (connected, closed or timed out before the prologue)
//!   makes its source wait [`MeshConfig::probe_backoff`], doubling with each in a row, and is
//!   not learned again for [`MeshConfig::shun_for`]; one where nothing answered is forgotten
//!   as before (no connection was made). A hint that answered resets its source's wait. So a peer naming third parties costs each of them at most one
//!   connection per client per `probe_backoff`, and nothing once its hints have expired.
//! - **Dialing**: below [`MeshConfig::links`] links (pending dials counted) the mesh dials a
//!   random due address, at most [`MeshConfig::dial_burst`] at once and then one per
//!   [`MeshConfig::dial_interval`] (a token bucket), and never the same address twice within
//!   [`MeshConfig::backoff_min`]. A learned address that fails, or that connects but closes
//!   or times out before Hello (not floodchat), is forgotten and not learned again for
//!   [`MeshConfig::forget_for`]; an IP with [`MeshConfig::max_failures_per_ip`] such
//!   failures in that time is not learned at all, so a peer cannot turn the room into a port
//!   scanner. A verified address that fails backs off exponentially with jitter, and is
//!   forgotten after [`MeshConfig::max_failures`] failures in a row unless it is the last
//!   address known (a client never gives up its last hope). `Bye Full`/`Shed`
//!   delays the next dial to that address by [`MeshConfig::backoff_max`] / 2.
//! - **Outbound quota** (issue 16, eclipse): half the target, rounded up
//!   ([`Mesh::outbound_quota`]), is dialed whatever the inbound links; such a dial above the
//!   target picks a verified address first. Every dial prefers an address group
//!   (`addr::group`: /16, /32 for IPv6, one IP on loopback) no outbound link or dial uses.
//! - **Eviction**: when room is needed, half the inbound links are protected (the oldest of
//!   each of the rarest groups, then the oldest), and the youngest of the most crowded
//!   group goes, as Bitcoin Core does after Heilman et al. (2015).
//! - **Healing**: a lost link is replaced by the same rule. A client that had a link (or was
//!   given a contact) and has none, with no dial pending and no inbound connection still to
//!   say Hello (it may be the other half of a duplicate), says [`MeshNotice::Alone`] once,
//!   keeps dialing with backoff, and says [`MeshNotice::Rejoined`] when a link comes up.
//! - **Shuffle and rotation**: every [`MeshConfig::shuffle_interval`] (jittered) one random
//!   link is sent [`MeshConfig::shuffle_len`] addresses, so addresses spread through the room;
//!   and the graph is stirred: above the target the oldest link we dialed beyond the
//!   quota's oldest (the anchors, never shed), else the inbound link eviction names, is shed
//!   (`Bye Shed`, with addresses), at or below it one more random address is dialed. Without
//!   this, two parts that healed after a partition would each sit at their target and never
//!   dial across; with it, any two parts whose books still know each other merge.
//!
//! Outputs never depend on hash-map order: the same inputs and seed give the same outputs.

pub(crate) mod addr;
mod book;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

pub(crate) use crate::peer::CloseWhy;
use crate::peer::PeerId;
use crate::rng::SplitMix64;
use crate::timers::Timers;
pub(crate) use crate::wire::{ByeReason, ClientId, MAX_ADDRS};
use addr::{Group, canonical, canonical_ip, dialable, group};
use book::{Book, Entry};

/// How many addresses of our own the mesh remembers (they are never dialed).
const MAX_SELF_ADDRS: usize = 16;

/// Tunables of the mesh, the part of [`FloodState`](crate::FloodState) that decides which
/// clients to be linked to.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Target number of links: below it, the mesh dials.
    pub links: usize,
    /// Most inbound links; more are refused with addresses to try.
    pub max_inbound: usize,
    /// Most connections of any kind, unproven ones included.
    pub max_connections: usize,
    /// Most inbound connections that have not yet said Hello.
    pub max_unproven: usize,
    /// Most inbound connections from one remote IP that have not said Hello, and most inbound
    /// links from one (more are turned away as a full client turns them away).
    pub max_per_ip: usize,
    /// Most entries in the address book.
    pub book_size: usize,
    /// Most learned (unverified) book entries from one source IP.
    pub per_source: usize,
    /// How long a dial may take before it counts as failed.
    pub dial_timeout: Duration,
    /// Dials that may start at once (the token bucket's size).
    pub dial_burst: u32,
    /// One more dial may start per this interval (the token bucket's refill).
    pub dial_interval: Duration,
    /// First backoff after a failed dial, and the least time between two dials of an address.
    pub backoff_min: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Failed dials in a row after which a verified address is forgotten.
    pub max_failures: u32,
    /// How long a failed learned address is not learned again.
    pub forget_for: Duration,
    /// Failed learned addresses at one IP (within `forget_for`) after which that IP is not
    /// learned.
    pub max_failures_per_ip: u32,
    /// How often a random link is sent some addresses.
    pub shuffle_interval: Duration,
    /// How many addresses a shuffle sends.
    pub shuffle_len: usize,
    /// Refusals are summarised at most once per this interval.
    pub notice_interval: Duration,
    /// How long an address heard from a peer is kept untested (not yet dialed).
    pub hint_ttl: Duration,
    /// How long a source of hints waits after a hint that answered as something other than
    /// floodchat (doubling with each in a row, up to 16 times).
    pub probe_backoff: Duration,
    /// How long an address that answered as something other than floodchat is not learned
    /// again.
    pub shun_for: Duration,
    /// At most one inbound link is shed per this interval to make room for a client with no
    /// link.
    pub make_room_every: Duration,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self::with_links(5)
    }
}

impl MeshConfig {
    /// The defaults for a target of `links` links (`max_inbound` is three times that).
    pub fn with_links(links: usize) -> Self {
        Self {
            links,
            max_inbound: links.saturating_mul(3),
            max_connections: 64,
            max_unproven: 16,
            max_per_ip: 8,
            book_size: 256,
            per_source: 64,
            dial_timeout: Duration::from_secs(5),
            dial_burst: 4,
            dial_interval: Duration::from_millis(500),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_failures: 10,
            forget_for: Duration::from_secs(60),
            max_failures_per_ip: 4,
            shuffle_interval: Duration::from_secs(30),
            shuffle_len: 8,
            notice_interval: Duration::from_secs(10),
            hint_ttl: Duration::from_secs(20),
            probe_backoff: Duration::from_secs(60),
            shun_for: Duration::from_secs(3600),
            make_room_every: Duration::from_secs(30),
        }
    }

    /// The backoff after `failures` failed dials in a row (before jitter).
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Something the user should hear about, already rate-limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshNotice {
    /// Every link is gone (said once until a link comes back); the mesh keeps dialing.
    Alone,
    /// A link came back after [`MeshNotice::Alone`].
    Rejoined,
    /// `count` connections were refused by the limits over the last `over` (zero for the first
    /// refusal, said at once).
    Refused {
        /// How many.
        count: u64,
        /// Over how long.
        over: Duration,
    },
}

impl fmt::Display for MeshNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alone => f.write_str("no links to the room; still trying the addresses known"),
            Self::Rejoined => f.write_str("linked to the room again"),
            Self::Refused { count, over } if over.is_zero() => {
                write!(
                    f,
                    "refused {count} connection(s): connection limits reached"
                )
            }
            Self::Refused { count, over } => write!(
                f,
                "... {count} more connection(s) refused in the last {} s",
                over.as_secs()
            ),
        }
    }
}

/// An event for the [`Mesh`].
#[derive(Debug, Clone, Copy)]
pub enum MeshInput<'a> {
    /// Start; `contact` (given by the user, trusted) is dialed at once.
    Start {
        /// The first client to join through, if any.
        contact: Option<SocketAddr>,
    },
    /// An inbound connection arrived (no bytes read yet): admit or refuse it.
    Accepted {
        /// The connection.
        peer: PeerId,
        /// Where it comes from.
        remote: SocketAddr,
    },
    /// Our [`MeshOutput::Dial`] of `addr` connected as `peer`.
    Dialed {
        /// The connection.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
    },
    /// Our [`MeshOutput::Dial`] of `addr` failed.
    DialFailed {
        /// The address dialed.
        addr: SocketAddr,
    },
    /// The peer's clear prologue arrived: what we dialed answers as floodchat.
    Answered {
        /// The connection.
        peer: PeerId,
    },
    /// The peer's Hello: it speaks floodchat.
    Hello {
        /// The connection.
        peer: PeerId,
        /// Its identity.
        id: ClientId,
        /// The port it listens on (0: none).
        listen_port: u16,
        /// It has no links (a joiner).
        alone: bool,
    },
    /// The peer told us addresses.
    Addrs {
        /// The connection.
        peer: PeerId,
        /// The addresses, as decoded.
        addrs: &'a [SocketAddr],
    },
    /// The peer says goodbye, with addresses to try instead.
    Bye {
        /// The connection.
        peer: PeerId,
        /// Why.
        reason: ByeReason,
        /// Addresses to try.
        addrs: &'a [SocketAddr],
    },
    /// The connection is gone, for any reason.
    Closed {
        /// The connection.
        peer: PeerId,
    },
    /// We quit: say Bye to every link.
    Leave,
    /// The time given by [`Mesh::poll_timeout`] has come.
    Timeout,
}

/// An action the [`Mesh`] asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshOutput {
    /// Open a connection to this address; report [`MeshInput::Dialed`] or
    /// [`MeshInput::DialFailed`].
    Dial(SocketAddr),
    /// This connection is now a link to client `id`: flood on it.
    LinkUp {
        /// The connection.
        peer: PeerId,
        /// The client at its other end.
        id: ClientId,
    },
    /// Send these addresses to the peer (an Addrs frame).
    SendAddrs {
        /// The connection.
        peer: PeerId,
        /// At most [`MAX_ADDRS`] addresses.
        addrs: Vec<SocketAddr>,
    },
    /// Close this connection, after sending the Bye if there is one.
    Close {
        /// The connection.
        peer: PeerId,
        /// The Bye to send first: reason and at most [`MAX_ADDRS`] addresses to try.
        bye: Option<(ByeReason, Vec<SocketAddr>)>,
        /// Why, for a person.
        why: CloseWhy,
    },
    /// Tell the user.
    Notice(MeshNotice),
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    /// We dialed this address.
    Out(SocketAddr),
}

/// A connection as the mesh sees it: where it comes from, and the client once it said Hello.
#[derive(Debug)]
struct Neighbor {
    remote: SocketAddr,
    dir: Dir,
    since: Instant,
    link: Option<Link>,
}

#[derive(Debug)]
struct Link {
    id: ClientId,
    /// Its entry in the book, if it has one.
    addr: Option<SocketAddr>,
    /// Its Hello said it had no other link.
    alone: bool,
    /// Where an inbound peer says it listens: passed on, never stored.
    hint: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Dial,
    Shuffle,
    Notice,
    DialDeadline(SocketAddr),
}

/// The membership sub-machine: address book, links, dialing and connection limits.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    me: ClientId,
    rng: SplitMix64,
    book: Book,
    conns: BTreeMap<PeerId, Neighbor>,
    by_client: HashMap<ClientId, PeerId>,
    dialing: BTreeSet<SocketAddr>,
    self_addrs: HashSet<SocketAddr>,
    /// Dials of the last `backoff_min`, oldest first: an address that left the book and came
    /// back is not dialed again sooner (at most `dial_burst` + one per `dial_interval`).
    recent_dials: VecDeque<(Instant, SocketAddr)>,
    tokens: u32,
    refilled: Instant,
    timers: Timers<Timer>,
    out: VecDeque<MeshOutput>,
    started: bool,
    left: bool,
    has_contact: bool,
    had_link: bool,
    alone_said: bool,
    refused_pending: u64,
    refused_total: u64,
    /// When an inbound link was last shed for a client with no link.
    made_room: Option<Instant>,
}

impl Mesh {
    /// A mesh for client `me`, whose choices are fixed by `seed`.
    pub fn new(config: MeshConfig, me: ClientId, seed: u64, now: Instant) -> Self {
        let mut book = Book::new(
            config.book_size,
            config.per_source,
            config.forget_for,
            config.max_failures_per_ip,
        );
        book.hint_ttl = config.hint_ttl;
        book.probe_backoff = config.probe_backoff;
        book.shun_for = config.shun_for;
        Self {
            tokens: config.dial_burst,
            config,
            me,
            rng: SplitMix64::new(seed),
            book,
            conns: BTreeMap::new(),
            by_client: HashMap::new(),
            dialing: BTreeSet::new(),
            self_addrs: HashSet::new(),
            recent_dials: VecDeque::new(),
            refilled: now,
            timers: Timers::default(),
            out: VecDeque::new(),
            started: false,
            left: false,
            has_contact: false,
            had_link: false,
            alone_said: false,
            refused_pending: 0,
            refused_total: 0,
            made_room: None,
        }
    }

    /// Our identity.
    pub fn id(&self) -> ClientId {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// How many links (connections past Hello) there are.
    pub fn links(&self) -> usize {
        self.by_client.len()
    }

    /// How many links the other side dialed.
    pub fn inbound_links(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.link.is_some() && c.dir == Dir::In)
            .count()
    }

    /// How many inbound links come from `ip`.
    fn inbound_links_from(&self, ip: IpAddr) -> usize {
        self.conns
            .values()
            .filter(|c| c.link.is_some() && c.dir == Dir::In && c.remote.ip() == ip)
            .count()
    }

    /// How many links we dialed.
    pub fn outbound_links(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.link.is_some() && c.dir != Dir::In)
            .count()
    }

    /// How many links we dial whatever the inbound ones: half the target, rounded up.
    pub fn outbound_quota(&self) -> usize {
        self.config.links.div_ceil(2)
    }

    /// The links, as connection and client, in connection order.
    pub fn linked(&self) -> impl Iterator<Item = (PeerId, ClientId)> + '_ {
        self.conns
            .iter()
            .filter_map(|(&p, c)| c.link.as_ref().map(|l| (p, l.id)))
    }

    /// Whether there is no link.
    pub fn is_alone(&self) -> bool {
        self.links() == 0
    }

    /// How many connections are open, of any kind.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// How many inbound connections have not said Hello.
    pub fn unproven(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.link.is_none() && c.dir == Dir::In)
            .count()
    }

    /// How many dials are in flight, or connected and waiting for Hello.
    pub fn pending_dials(&self) -> usize {
        self.dialing.len()
            + self
                .conns
                .values()
                .filter(|c| c.link.is_none() && matches!(c.dir, Dir::Out(_)))
                .count()
    }

    /// How many addresses the book holds.
    pub fn book_len(&self) -> usize {
        self.book.len()
    }

    /// Whether `addr` is in the book.
    pub fn knows(&self, addr: SocketAddr) -> bool {
        self.book.get(addr).is_some()
    }

    /// Whether `addr` is in the book as verified.
    pub fn is_verified(&self, addr: SocketAddr) -> bool {
        self.book.get(addr).is_some_and(|e| e.verified)
    }

    /// How many learned entries of the book came from `source`.
    pub fn learned_from(&self, source: IpAddr) -> usize {
        self.book.learned_from(source)
    }

    /// How many connections the limits have refused in all.
    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }

    /// The next output, if any; drain to `None` after every [`Mesh::handle`].
    #[must_use]
    pub fn poll(&mut self) -> Option<MeshOutput> {
        self.out.pop_front()
    }

    /// Stores `addrs`, kept from an earlier run, as verified addresses to dial once started,
    /// as the user's contact is (but none is dialed before the others).
    pub(crate) fn remember(&mut self, now: Instant, addrs: &[SocketAddr]) {
        for &addr in addrs {
            let addr = canonical(addr);
            if !self.self_addrs.contains(&addr) && self.verify(now, addr) {
                self.has_contact = true;
            }
        }
    }

    /// The addresses worth keeping for a later run: those we had a link with, or were given.
    pub(crate) fn verified_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.book.verified()
    }

    /// When to call [`Mesh::handle`] with [`MeshInput::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Feeds one event in.
    pub fn handle(&mut self, now: Instant, input: MeshInput<'_>) {
        // Every rule sees one spelling of each address (see `addr`); learned addresses are
        // made canonical in `learn`.
        match input {
            MeshInput::Start { contact } => self.on_start(now, contact.map(canonical)),
            MeshInput::Accepted { peer, remote } => self.on_accepted(now, peer, canonical(remote)),
            MeshInput::Dialed { peer, addr } => self.on_dialed(now, peer, canonical(addr)),
            MeshInput::DialFailed { addr } => {
                let addr = canonical(addr);
                if self.dialing.remove(&addr) {
                    self.timers.set(Timer::DialDeadline(addr), None);
                    self.dial_failed(now, addr, false);
                }
            }
            MeshInput::Answered { peer } => {
                if let Some(&Neighbor {
                    dir: Dir::Out(addr),
                    ..
                }) = self.conns.get(&peer)
                {
                    self.book.answered(addr, now);
                }
            }
            MeshInput::Hello {
                peer,
                id,
                listen_port,
                alone,
            } => self.on_hello(now, peer, id, listen_port, alone),
            MeshInput::Addrs { peer, addrs } => {
                if let Some(c) = self.conns.get(&peer).filter(|c| c.link.is_some()) {
                    let source = c.remote.ip();
                    self.learn(now, source, addrs);
                }
            }
            MeshInput::Bye {
                peer,
                reason,
                addrs,
            } => self.on_bye(now, peer, reason, addrs),
            MeshInput::Closed { peer } => self.on_closed(now, peer),
            MeshInput::Leave => self.on_leave(),
            MeshInput::Timeout => self.on_timeout(now),
        }
        self.maintain(now);
        self.update_alone();
    }

    fn on_start(&mut self, now: Instant, contact: Option<SocketAddr>) {
        if self.started || self.left {
            return;
        }
        self.started = true;
        let first = self.rng.jitter(self.config.shuffle_interval);
        self.timers.set(Timer::Shuffle, Some(now + first));
        if let Some(addr) = contact {
            self.has_contact = true;
            self.verify(now, addr);
            if self.book.get(addr).is_some() {
                self.refill(now);
                self.dial(now, addr);
            }
        }
    }

    fn on_accepted(&mut self, now: Instant, peer: PeerId, remote: SocketAddr) {
        if self.conns.contains_key(&peer) {
            return;
        }
        if self.left {
            self.out.push_back(MeshOutput::Close {
                peer,
                bye: None,
                why: CloseWhy::Leaving,
            });
            return;
        }
        let from_ip = self
            .conns
            .values()
            .filter(|c| c.dir == Dir::In && c.link.is_none() && c.remote.ip() == remote.ip())
            .count();
        if from_ip >= self.config.max_per_ip {
            return self.refuse(now, peer, CloseWhy::TooManyFromIp(remote.ip()));
        }
        let full = if self.conns.len() >= self.config.max_connections {
            Some(CloseWhy::TooManyConnections)
        } else if self.unproven() >= self.config.max_unproven {
            Some(CloseWhy::TooManyUnproven)
        } else {
            None
        };
        if let Some(why) = full {
            let oldest = self
                .conns
                .iter()
                .filter(|(_, c)| c.link.is_none() && c.dir == Dir::In)
                .min_by_key(|(p, c)| (c.since, **p))
                .map(|(p, _)| *p);
            match oldest {
                Some(old) => {
                    self.drop_conn(old);
                    self.out.push_back(MeshOutput::Close {
                        peer: old,
                        bye: None,
                        why: CloseWhy::Evicted,
                    });
                }
                None => return self.refuse(now, peer, why),
            }
        }
        self.conns.insert(
            peer,
            Neighbor {
                remote,
                dir: Dir::In,
                since: now,
                link: None,
            },
        );
    }

    fn refuse(&mut self, now: Instant, peer: PeerId, why: CloseWhy) {
        self.out.push_back(MeshOutput::Close {
            peer,
            bye: None,
            why,
        });
        self.refused_total += 1;
        self.refused_pending += 1;
        if self.timers.get(Timer::Notice).is_none() {
            self.out.push_back(MeshOutput::Notice(MeshNotice::Refused {
                count: self.refused_pending,
                over: Duration::ZERO,
            }));
            self.refused_pending = 0;
            self.timers
                .set(Timer::Notice, Some(now + self.config.notice_interval));
        }
    }

    fn on_dialed(&mut self, now: Instant, peer: PeerId, addr: SocketAddr) {
        if self.conns.contains_key(&peer) {
            return;
        }
        self.dialing.remove(&addr);
        self.timers.set(Timer::DialDeadline(addr), None);
        let why = if self.left {
            Some(CloseWhy::Leaving)
        } else if self.conns.len() >= self.config.max_connections {
            Some(CloseWhy::TooManyConnections)
        } else {
            None
        };
        if let Some(why) = why {
            self.release(addr);
            self.out.push_back(MeshOutput::Close {
                peer,
                bye: None,
                why,
            });
            return;
        }
        if let Some(e) = self.book.get_mut(addr) {
            e.busy = true;
        }
        self.conns.insert(
            peer,
            Neighbor {
                remote: addr,
                dir: Dir::Out(addr),
                since: now,
                link: None,
            },
        );
    }

    fn on_hello(
        &mut self,
        now: Instant,
        peer: PeerId,
        id: ClientId,
        listen_port: u16,
        alone: bool,
    ) {
        let Some(conn) = self.conns.get(&peer) else {
            return;
        };
        if conn.link.is_some() {
            return;
        }
        let (remote, dir) = (conn.remote, conn.dir);
        if let Dir::Out(a) = dir {
            self.book.answered(a, now);
        }
        if self.left {
            return self.close(peer, Some(ByeReason::Leaving), CloseWhy::Leaving);
        }
        if id == self.me {
            if let Dir::Out(addr) = dir {
                if self.self_addrs.len() < MAX_SELF_ADDRS {
                    self.self_addrs.insert(addr);
                }
                self.drop_conn(peer);
                self.book.remove(addr, false, now);
                self.out.push_back(MeshOutput::Close {
                    peer,
                    bye: Some((ByeReason::SelfConnection, Vec::new())),
                    why: CloseWhy::SelfConnection,
                });
                return;
            }
            return self.close(
                peer,
                Some(ByeReason::SelfConnection),
                CloseWhy::SelfConnection,
            );
        }
        if let Some(&old) = self.by_client.get(&id) {
            let dialer = |d: Dir| if d == Dir::In { id } else { self.me };
            let old_dialer = dialer(self.conns[&old].dir);
            let new_dialer = dialer(dir);
            let keep_new = new_dialer != old_dialer && new_dialer == self.me.min(id);
            if !keep_new {
                if let Dir::Out(a) = dir {
                    self.reached_linked(now, a, id);
                }
                return self.close(peer, Some(ByeReason::Duplicate), CloseWhy::Duplicate);
            }
            self.close(old, Some(ByeReason::Duplicate), CloseWhy::Duplicate);
        }
        // Where the peer says it listens: a hint to pass on, never proof (an impostor at the
        // same IP may claim another client's port), so it verifies, ties and marks nothing.
        let claimed = (listen_port != 0)
            .then(|| SocketAddr::new(remote.ip(), listen_port))
            .filter(|&a| addr::can_listen(a) && !self.self_addrs.contains(&a));
        if dir == Dir::In
            && self.inbound_links() >= self.config.max_inbound
            && let Some(old) = self.evictable_inbound(true)
        {
            // Full: make room by the eviction rule, which protects the diverse and the
            // long-lived, so that many connections from few address groups cannot lock a
            // newcomer out. A link alone in its group is never evicted for a newcomer, so
            // that honest clients do not push each other out in a chain.
            self.shed(old);
        }
        // Full, or full for its IP (clients behind one NAT, or on one machine, share it): a
        // newcomer with no link gets a slot made, any other is turned away with addresses.
        let ip = remote.ip();
        let full = [
            (self.inbound_links() >= self.config.max_inbound, None),
            (
                self.inbound_links_from(ip) >= self.config.max_per_ip,
                Some(ip),
            ),
        ];
        for (over, from) in full {
            if dir == Dir::In && over && !(alone && self.make_room(now, from)) {
                return self.turn_away(peer, ByeReason::Full, claimed, CloseWhy::Full);
            }
        }
        // An address is tied to a client (verified, and busy while linked) only when our own
        // dial of it reached that client.
        let addr = match dir {
            Dir::Out(a) => Some(a),
            Dir::In => None,
        };
        let addr = addr.filter(|&a| !self.self_addrs.contains(&a) && self.verify(now, a));
        if let Some(a) = addr
            && let Some(e) = self.book.get_mut(a)
        {
            e.busy = true;
            e.failures = 0;
            e.client = Some(id);
        }
        if let Some(c) = self.conns.get_mut(&peer) {
            c.link = Some(Link {
                id,
                addr,
                alone,
                hint: claimed.filter(|_| dir == Dir::In),
            });
        }
        self.by_client.insert(id, peer);
        self.had_link = true;
        self.out.push_back(MeshOutput::LinkUp { peer, id });
        let addrs = self.book.sample(MAX_ADDRS, addr.or(claimed), &mut self.rng);
        if !addrs.is_empty() {
            self.out.push_back(MeshOutput::SendAddrs { peer, addrs });
        }
        if dir == Dir::In
            && let Some(a) = claimed
        {
            // Learned as any gossip is (unverified, never busy): a later dial of it is what
            // ties it to a client, and lets clients whose links were all inbound find their
            // peers again after a partition or a restart.
            self.learn(now, remote.ip(), &[a]);
            let mut others: Vec<PeerId> = self
                .linked()
                .map(|(p, _)| p)
                .filter(|&p| p != peer)
                .collect();
            self.rng.shuffle(&mut others);
            others.truncate(self.config.links);
            others.sort();
            for p in others {
                self.out.push_back(MeshOutput::SendAddrs {
                    peer: p,
                    addrs: vec![a],
                });
            }
        }
    }

    /// Sheds one inbound link (`from` that IP, if given) so that a client with no link can
    /// have its slot: the youngest of a client whose Hello said it had other links (or that
    /// has had time to dial some), at most once per [`MeshConfig::make_room_every`], so that
    /// clients claiming to be alone cannot churn out links faster. Whether a link was shed.
    fn make_room(&mut self, now: Instant, from: Option<IpAddr>) -> bool {
        let every = self.config.make_room_every;
        if self.made_room.is_some_and(|t| now < t + every) {
            return false;
        }
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.dir == Dir::In
                    && from.is_none_or(|ip| c.remote.ip() == ip)
                    && c.link
                        .as_ref()
                        .is_some_and(|l| !l.alone || c.since + every <= now)
            })
            .max_by_key(|(p, c)| (c.since, **p))
            .map(|(p, c)| (*p, c.link.as_ref().and_then(|l| l.addr)));
        let Some((peer, addr)) = victim else {
            return false;
        };
        self.made_room = Some(now);
        let addrs = self.book.sample(MAX_ADDRS, addr, &mut self.rng);
        self.drop_conn(peer);
        self.out.push_back(MeshOutput::Close {
            peer,
            bye: Some((ByeReason::Shed, addrs)),
            why: CloseWhy::MadeRoom,
        });
        true
    }

    fn on_bye(&mut self, now: Instant, peer: PeerId, reason: ByeReason, addrs: &[SocketAddr]) {
        let Some(conn) = self.conns.get(&peer) else {
            return;
        };
        let source = conn.remote.ip();
        let addr = match (&conn.link, conn.dir) {
            (Some(l), _) => l.addr,
            (None, Dir::Out(a)) => Some(a),
            (None, Dir::In) => None,
        };
        self.drop_conn(peer);
        self.out.push_back(MeshOutput::Close {
            peer,
            bye: None,
            why: CloseWhy::Bye(reason),
        });
        if let Some(a) = addr {
            match reason {
                ByeReason::Full | ByeReason::Shed | ByeReason::Duplicate => {
                    let later = now + self.rng.jitter(self.config.backoff_max / 2);
                    if let Some(e) = self.book.get_mut(a) {
                        e.next_try = e.next_try.max(later);
                    }
                }
                ByeReason::Leaving => self.book.remove(a, false, now),
                ByeReason::SelfConnection => {
                    if self.self_addrs.len() < MAX_SELF_ADDRS {
                        self.self_addrs.insert(a);
                    }
                    self.book.remove(a, false, now);
                }
                ByeReason::Other(_) => {}
            }
        }
        self.learn(now, source, addrs);
    }

    fn on_closed(&mut self, now: Instant, peer: PeerId) {
        let Some(conn) = self.drop_conn(peer) else {
            return;
        };
        if conn.link.is_none()
            && let Dir::Out(a) = conn.dir
        {
            self.dial_failed(now, a, true);
        }
    }

    fn on_leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        let peers: Vec<PeerId> = self.conns.keys().copied().collect();
        for peer in peers {
            let conn = &self.conns[&peer];
            let bye = match &conn.link {
                Some(l) => {
                    let exclude = l.addr;
                    Some((ByeReason::Leaving, self.sample_or_hints(exclude)))
                }
                None => None,
            };
            self.drop_conn(peer);
            self.out.push_back(MeshOutput::Close {
                peer,
                bye,
                why: CloseWhy::Leaving,
            });
        }
        for addr in std::mem::take(&mut self.dialing) {
            self.release(addr);
        }
        self.timers.cancel_where(|_| true);
    }

    fn on_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Dial => {}
                Timer::Shuffle => {
                    self.shuffle();
                    self.rotate(now);
                    let next = self.rng.jitter(self.config.shuffle_interval);
                    self.timers.set(Timer::Shuffle, Some(now + next));
                }
                Timer::Notice => {
                    if self.refused_pending > 0 {
                        self.out.push_back(MeshOutput::Notice(MeshNotice::Refused {
                            count: self.refused_pending,
                            over: self.config.notice_interval,
                        }));
                        self.refused_pending = 0;
                        self.timers
                            .set(Timer::Notice, Some(now + self.config.notice_interval));
                    }
                }
                Timer::DialDeadline(addr) => {
                    if self.dialing.remove(&addr) {
                        self.dial_failed(now, addr, false);
                    }
                }
            }
        }
    }

    /// Sends a few addresses to one random link.
    fn shuffle(&mut self) {
        let links: Vec<(PeerId, Option<SocketAddr>)> = self
            .conns
            .iter()
            .filter_map(|(&p, c)| c.link.as_ref().map(|l| (p, l.addr)))
            .collect();
        if links.is_empty() {
            return;
        }
        let (peer, exclude) = links[self.rng.index(links.len())];
        let addrs = self.book.sample(
            self.config.shuffle_len.min(MAX_ADDRS),
            exclude,
            &mut self.rng,
        );
        if !addrs.is_empty() {
            self.out.push_back(MeshOutput::SendAddrs { peer, addrs });
        }
    }

    /// Keeps the graph mixing, so that parts that lost each other find each other again: above
    /// the target, one link is shed, with addresses to try: the oldest link we dialed beyond
    /// the [`Mesh::outbound_quota`] oldest ones (the anchors, which inbound pressure never
    /// pushes out), else the inbound link [`Mesh::evictable_inbound`] names; then, at or below
    /// it, one more random address is dialed, for one link above the target.
    fn rotate(&mut self, now: Instant) {
        if self.links() > self.config.links {
            let mut outbound: Vec<(Instant, PeerId)> = self
                .conns
                .iter()
                .filter(|(_, c)| c.link.is_some() && c.dir != Dir::In)
                .map(|(&p, c)| (c.since, p))
                .collect();
            outbound.sort();
            let victim = match outbound.get(self.outbound_quota()) {
                Some(&(_, p)) => Some(p),
                None => self.evictable_inbound(false),
            };
            if let Some(peer) = victim {
                self.shed(peer);
            }
        }
        if self.links() + self.pending_dials() <= self.config.links {
            self.refill(now);
            if self.tokens > 0
                && let Some(addr) = self.pick(now, false)
            {
                self.dial(now, addr);
            }
        }
    }

    /// Addresses for a peer we turn away or leave: up to [`MAX_ADDRS`] from the book, and if
    /// it has fewer, where our inbound links say they listen (hints, for it to test by
    /// dialing), so that a client whose links are all inbound still points somewhere.
    fn sample_or_hints(&mut self, exclude: Option<SocketAddr>) -> Vec<SocketAddr> {
        let mut addrs = self.book.sample(MAX_ADDRS, exclude, &mut self.rng);
        for c in self.conns.values() {
            if addrs.len() >= MAX_ADDRS {
                break;
            }
            if let Some(h) = c.link.as_ref().and_then(|l| l.hint)
                && Some(h) != exclude
                && !addrs.contains(&h)
            {
                addrs.push(h);
            }
        }
        addrs
    }

    /// Closes link `peer` with `Bye Shed` and addresses to try.
    fn shed(&mut self, peer: PeerId) {
        let addr = self.conns[&peer].link.as_ref().and_then(|l| l.addr);
        self.turn_away(peer, ByeReason::Shed, addr, CloseWhy::Rotated);
    }

    /// Closes `peer` with a Bye of `reason` and addresses to try other than `own`.
    fn turn_away(
        &mut self,
        peer: PeerId,
        reason: ByeReason,
        own: Option<SocketAddr>,
        why: CloseWhy,
    ) {
        let addrs = self.sample_or_hints(own);
        self.drop_conn(peer);
        self.out.push_back(MeshOutput::Close {
            peer,
            bye: Some((reason, addrs)),
            why,
        });
    }

    /// The inbound link to let go when room is needed, as Bitcoin Core picks one (after
    /// Heilman et al., 2015): half the inbound links (rounded down) are protected, first the
    /// oldest link of each of the rarest address groups (diversity, half of the protected),
    /// then the oldest of the rest (the long-lived); of the others, the youngest of the
    /// address group with the most. An attacker's many connections from few groups are the
    /// ones to go, and its newest first. `None` if there is no inbound link, or if `crowded`
    /// and that link is the only inbound one of its group.
    fn evictable_inbound(&self, crowded: bool) -> Option<PeerId> {
        let mut inbound: Vec<(Instant, PeerId, Group)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.link.is_some() && c.dir == Dir::In)
            .map(|(&p, c)| (c.since, p, group(c.remote)))
            .collect();
        inbound.sort();
        let protect = inbound.len() / 2;
        let mut groups: BTreeMap<Group, (usize, Instant, PeerId)> = BTreeMap::new();
        for &(since, p, g) in &inbound {
            groups.entry(g).or_insert((0, since, p)).0 += 1;
        }
        let sizes: BTreeMap<Group, usize> = groups.iter().map(|(&g, v)| (g, v.0)).collect();
        let mut rarest: Vec<(usize, Instant, PeerId)> = groups.into_values().collect();
        rarest.sort();
        let mut protected: BTreeSet<PeerId> = rarest
            .iter()
            .take(protect.div_ceil(2))
            .map(|&(_, _, p)| p)
            .collect();
        for &(_, p, _) in &inbound {
            if protected.len() >= protect {
                break;
            }
            protected.insert(p);
        }
        let mut rest: BTreeMap<Group, (usize, Instant, PeerId)> = BTreeMap::new();
        for &(since, p, g) in inbound.iter().filter(|x| !protected.contains(&x.1)) {
            let e = rest.entry(g).or_insert((0, since, p));
            e.0 += 1;
            (e.1, e.2) = (since, p);
        }
        let (g, (_, _, p)) = rest.into_iter().max_by_key(|&(_, v)| v)?;
        (!crowded || sizes[&g] > 1).then_some(p)
    }

    /// A due address to dial, not ours and not dialed within `backoff_min`: for an `anchor`
    /// (a dial toward the [`Mesh::outbound_quota`]) a verified one if any is due; in either
    /// case one of an address group that no link or dial of ours uses yet, if any.
    fn pick(&mut self, now: Instant, anchor: bool) -> Option<SocketAddr> {
        let used: BTreeSet<Group> = self
            .conns
            .values()
            .filter_map(|c| match c.dir {
                Dir::Out(a) => Some(group(a)),
                Dir::In => None,
            })
            .chain(self.dialing.iter().map(|&a| group(a)))
            .collect();
        let (self_addrs, recent) = (&self.self_addrs, &self.recent_dials);
        let by_client = &self.by_client;
        // Not an address where our own dial last reached a client we are linked with now
        // (a proven tie, never a claim): that dial would only make a duplicate.
        let allowed = |e: &Entry| {
            !self_addrs.contains(&e.addr)
                && !recent.iter().any(|&(_, r)| r == e.addr)
                && !e.client.is_some_and(|c| by_client.contains_key(&c))
        };
        let tiers: &[(bool, bool)] = if anchor {
            &[(true, true), (true, false), (false, true), (false, false)]
        } else {
            &[(false, true), (false, false)]
        };
        tiers.iter().find_map(|&(verified, diverse)| {
            self.book.pick_due(now, &mut self.rng, |e| {
                allowed(e)
                    && (!verified || e.verified)
                    && (!diverse || !used.contains(&group(e.addr)))
            })
        })
    }

    /// Our dial of `addr` reached a client we are already linked with: the address is proven,
    /// and not worth dialing again soon.
    fn reached_linked(&mut self, now: Instant, addr: SocketAddr, id: ClientId) {
        if self.self_addrs.contains(&addr) || !self.verify(now, addr) {
            return;
        }
        let later = now + self.rng.jitter(self.config.backoff_max / 2);
        if let Some(e) = self.book.get_mut(addr) {
            e.next_try = e.next_try.max(later);
            e.client = Some(id);
        }
    }

    fn learn(&mut self, now: Instant, source: IpAddr, addrs: &[SocketAddr]) {
        let source = canonical_ip(source);
        for &addr in addrs.iter().take(MAX_ADDRS) {
            let addr = canonical(addr);
            if dialable(addr, source)
                && !self.self_addrs.contains(&addr)
                && self.book.learn(addr, source, now, &mut self.rng).is_ok()
            {
                self.sync_busy(addr);
            }
        }
    }

    /// Closes a connection we know, with a Bye of `reason` (no addresses).
    fn close(&mut self, peer: PeerId, reason: Option<ByeReason>, why: CloseWhy) {
        if self.drop_conn(peer).is_some() {
            self.out.push_back(MeshOutput::Close {
                peer,
                bye: reason.map(|r| (r, Vec::new())),
                why,
            });
        }
    }

    /// Forgets a connection and everything that pointed at it.
    fn drop_conn(&mut self, peer: PeerId) -> Option<Neighbor> {
        let conn = self.conns.remove(&peer)?;
        match &conn.link {
            Some(link) => {
                if self.by_client.get(&link.id) == Some(&peer) {
                    self.by_client.remove(&link.id);
                }
                if let Some(a) = link.addr {
                    self.release(a);
                }
            }
            None => {
                if let Dir::Out(a) = conn.dir {
                    self.release(a);
                }
            }
        }
        Some(conn)
    }

    /// Verifies `addr` in the book (adding it if absent, as [`Book::verify`] does) and keeps
    /// its busy flag true to what uses it; whether it is in the book.
    fn verify(&mut self, now: Instant, addr: SocketAddr) -> bool {
        let kept = self.book.verify(addr, now, &mut self.rng);
        if kept {
            self.sync_busy(addr);
        }
        kept
    }

    /// Sets the busy flag of `addr`'s entry from what uses it: an entry that comes back to the
    /// book while a dial or a connection to it is still open is busy at once.
    fn sync_busy(&mut self, addr: SocketAddr) {
        let busy = self.in_use(addr);
        if let Some(e) = self.book.get_mut(addr) {
            e.busy = busy;
        }
    }

    /// Marks `addr` idle unless a dial or another connection still uses it.
    fn release(&mut self, addr: SocketAddr) {
        if !self.in_use(addr)
            && let Some(e) = self.book.get_mut(addr)
        {
            e.busy = false;
        }
    }

    /// Whether a dial or a connection uses `addr`.
    fn in_use(&self, addr: SocketAddr) -> bool {
        self.dialing.contains(&addr)
            || self.conns.values().any(|c| match &c.link {
                Some(l) => l.addr == Some(addr),
                None => c.dir == Dir::Out(addr),
            })
    }

    /// A dial of `addr` failed: nothing answered, or (`connected`) what answered closed
    /// before its Hello.
    fn dial_failed(&mut self, now: Instant, addr: SocketAddr, connected: bool) {
        self.release(addr);
        let Some(e) = self.book.get(addr) else {
            return;
        };
        if e.busy {
            return;
        }
        // A learned address is forgotten at its first failure, but for a peer's claim of its
        // own address (told from that IP), which backs off as a verified one does: it is how
        // a client whose links were inbound finds them again after a partition.
        let own_claim = e.source == Some(addr.ip());
        if e.untested() && !own_claim {
            // A hint that did not answer as floodchat: its source is paced (see `Book`).
            self.book.probe_failed(addr, connected, now);
            return;
        }
        if !e.verified && !own_claim {
            self.book.remove(addr, true, now);
            return;
        }
        let failures = e.failures + 1;
        if failures >= self.config.max_failures && self.book.len() > 1 {
            self.book.remove(addr, false, now);
            return;
        }
        let wait = self.rng.jitter(self.config.backoff(failures));
        if let Some(e) = self.book.get_mut(addr) {
            e.failures = failures;
            e.next_try = e.next_try.max(now + wait);
        }
    }

    fn refill(&mut self, now: Instant) {
        let burst = self.config.dial_burst;
        if self.tokens >= burst {
            self.refilled = now;
            return;
        }
        let interval = self.config.dial_interval.max(Duration::from_nanos(1));
        let elapsed = now.saturating_duration_since(self.refilled);
        let n = elapsed.as_nanos() / interval.as_nanos();
        if n > 0 {
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(n32).min(burst);
            self.refilled = if self.tokens >= burst {
                now
            } else {
                self.refilled + interval * n32
            };
        }
    }

    /// Starts a dial of `addr` (a book entry), spending a token.
    fn dial(&mut self, now: Instant, addr: SocketAddr) {
        self.tokens = self.tokens.saturating_sub(1);
        // A hint's test: until it answers, its source's other hints wait.
        let hold = now + self.config.dial_timeout.saturating_mul(3);
        self.book.probe_started(addr, now, hold);
        if let Some(e) = self.book.get_mut(addr) {
            e.busy = true;
            e.next_try = now + self.config.backoff_min;
        }
        self.dialing.insert(addr);
        self.recent_dials.push_back((now, addr));
        self.timers.set(
            Timer::DialDeadline(addr),
            Some(now + self.config.dial_timeout),
        );
        self.out.push_back(MeshOutput::Dial(addr));
    }

    /// Dials while below the target, as tokens and due addresses allow; arms the dial timer.
    fn maintain(&mut self, now: Instant) {
        if !self.started || self.left {
            return;
        }
        self.book.expire_hints(now);
        self.refill(now);
        while let Some(&(at, _)) = self.recent_dials.front() {
            if now.saturating_duration_since(at) < self.config.backoff_min {
                break;
            }
            self.recent_dials.pop_front();
        }
        loop {
            let pending = self.pending_dials();
            let below_target = self.links() + pending < self.config.links;
            // Inbound links never stop the dials that keep the outbound quota.
            let below_quota = self.outbound_links() + pending < self.outbound_quota();
            if !below_target && !below_quota {
                self.timers.set(Timer::Dial, None);
                return;
            }
            if self.tokens == 0 {
                let at = self.refilled + self.config.dial_interval;
                self.timers.set(Timer::Dial, Some(at.max(now)));
                return;
            }
            match self.pick(now, !below_target) {
                Some(addr) => self.dial(now, addr),
                None => {
                    let (self_addrs, recent) = (&self.self_addrs, &self.recent_dials);
                    let next = self.book.next_due(|a| self_addrs.contains(&a));
                    // A due address held back by a recent dial of it: wake when that ends.
                    let next = match next {
                        Some(t) if t <= now => recent
                            .front()
                            .map(|&(at, _)| (at + self.config.backoff_min).max(now)),
                        other => other,
                    };
                    self.timers.set(Timer::Dial, next);
                    return;
                }
            }
        }
    }

    fn update_alone(&mut self) {
        if self.links() > 0 {
            if self.alone_said {
                self.alone_said = false;
                self.out.push_back(MeshOutput::Notice(MeshNotice::Rejoined));
            }
        } else if !self.alone_said
            && !self.left
            && (self.had_link || self.has_contact)
            && self.pending_dials() == 0
            && self.unproven() == 0
        {
            self.alone_said = true;
            self.out.push_back(MeshOutput::Notice(MeshNotice::Alone));
        }
    }

    /// Panics if a limit is exceeded or the bookkeeping disagrees with itself.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check_invariants(&self) {
        let c = &self.config;
        self.book.check();
        assert!(
            self.conns.len() <= c.max_connections,
            "too many connections"
        );
        assert!(self.unproven() <= c.max_unproven, "too many unproven");
        assert!(
            self.inbound_links() <= c.max_inbound,
            "too many inbound links"
        );
        let mut per_ip: HashMap<(IpAddr, bool), usize> = HashMap::new();
        for conn in self.conns.values().filter(|c| c.dir == Dir::In) {
            *per_ip
                .entry((conn.remote.ip(), conn.link.is_some()))
                .or_insert(0) += 1;
        }
        assert!(per_ip.values().all(|&n| n <= c.max_per_ip), "per-IP limit");
        assert_eq!(self.by_client.len(), self.linked().count());
        for (&id, &p) in &self.by_client {
            assert_eq!(self.conns[&p].link.as_ref().map(|l| l.id), Some(id));
        }
        assert!(self.tokens <= c.dial_burst);
        for e in self.book.entries() {
            assert_eq!(e.busy, self.in_use(e.addr), "busy flag of {}", e.addr);
        }
    }
}
