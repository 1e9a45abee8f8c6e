//! [`Herald`]: what the user is told about links, decided from what happened to them.
//!
//! The connections race (two clients dial each other at once, one of the two connections is
//! closed as a duplicate, a link is shed to keep the room mixed), but the user's situation
//! does not: they are linked to some clients of the room, or to none. The herald turns the
//! connection events into lines that follow that situation:
//!
//! - A client becomes linked ("connected to ADDR" when we dialed it, "ADDR joined" when it
//!   dialed us): said once per client, however many connections to it come and go. After
//!   [`MeshNotice::Alone`] the first link says so ("linked to the room again: …") in the same
//!   line.
//! - A client is lost: "ADDR: why", said when the last link to it ends for a reason a user
//!   should hear of. A link ended by the room's own upkeep (a duplicate of another link, a
//!   link shed or rotated) is not news while another link to that client, or the room, is
//!   there. Such an ending is held for [`STALE_FOR`]: the client usually comes back on the
//!   other connection (a duplicate) and nothing is said; if the client is left alone first,
//!   the line about it comes before the line that says so.
//! - [`MeshNotice::Alone`] is said only once every client the user was told about has been
//!   said to be lost, so "connected to X" is never followed by "no links" with X unexplained.
//! - Once the client leaves, the ends of its links are its own doing and not news.
//! - Connections that never became links (a failed dial, a stranger that never greeted) and
//!   inbound joins are summarised when they come fast: at most [`SHOWN_MAX`] a
//!   [`WINDOW`], then one line with the count. While the first contact is being joined,
//!   failed dials are not shown: how joining went is said once, by the driver.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::mesh::MeshNotice;
use crate::peer::{DisconnectReason, PeerId};
use crate::wire::{ByeReason, ClientId};

/// How long a link ended by the room's upkeep stays shown while its client may come back.
#[cfg_attr(not(feature = "sim"), allow(unreachable_pub))] // `sim::notices` re-exports it
pub const STALE_FOR: Duration = Duration::from_secs(5);
/// The window over which notices about connections are counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Notices about connections shown per [`WINDOW`]; the rest are summed up at its end.
pub(crate) const SHOWN_MAX: u32 = 20;

/// A line about one link or connection, for [`Notice::Link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkNotice {
    /// A client we were not linked to is linked now.
    Up {
        /// The connection's remote address (the address dialed, if we dialed).
        addr: SocketAddr,
        /// Whether we dialed it.
        dialed: bool,
        /// Whether this ends a time with no links ([`MeshNotice::Alone`]).
        again: bool,
    },
    /// The last link to a client we were linked to ended.
    Lost {
        /// The address the client was announced with.
        addr: SocketAddr,
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// A connection that never became a link ended.
    Failed {
        /// The connection's remote address.
        addr: SocketAddr,
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// Joining through the first contact failed: the client is a room of its own.
    JoinFailed {
        /// The contact the user gave.
        contact: SocketAddr,
        /// Why the last attempt failed; `None` when no connection was made.
        why: Option<DisconnectReason>,
    },
    /// While joining, a client we dialed said it is full: what we try next.
    TurnedAway {
        /// The client's address.
        addr: SocketAddr,
        /// How many clients it named to try instead.
        named: usize,
    },
    /// This many notices about connections were held back over the last `over`.
    Held {
        /// How many.
        count: u64,
        /// Over how long.
        over: Duration,
    },
}

impl fmt::Display for LinkNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Up {
                addr,
                dialed,
                again,
            } => {
                if *again {
                    f.write_str("linked to the room again: ")?;
                }
                if *dialed {
                    write!(f, "connected to {addr}")
                } else {
                    write!(f, "{addr} joined")
                }
            }
            Self::Lost { addr, reason } | Self::Failed { addr, reason } => {
                write!(f, "{addr}: {reason}")
            }
            Self::JoinFailed { contact, why } => match why {
                Some(DisconnectReason::Bye(ByeReason::Full)) => write!(
                    f,
                    "{contact} is full, and no client it named could be reached; \
                     starting a new network"
                ),
                // A floodchat client answered, in a room this client cannot enter.
                Some(why @ DisconnectReason::Link(e)) if e.is_room_mismatch() => {
                    write!(f, "cannot join {contact}: {why}; starting a new network")
                }
                Some(why) => {
                    write!(
                        f,
                        "no floodchat peer at {contact} ({why}); starting a new network"
                    )
                }
                None => write!(
                    f,
                    "no floodchat peer at {contact} (could not connect); starting a new network"
                ),
            },
            Self::TurnedAway { addr, named: 0 } => {
                write!(f, "{addr} is full and named no other client to try")
            }
            Self::TurnedAway { addr, named } => write!(
                f,
                "{addr} is full; trying the {named} client(s) it named instead"
            ),
            Self::Held { count, over } => write!(
                f,
                "... {} more connection notices in the last {} s",
                thousands(*count),
                over.as_secs()
            ),
        }
    }
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
    /// Leaving gave up on links that stopped making progress before they had everything.
    LeftUnfinished,
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
            Self::LeftUnfinished => {
                f.write_str("leaving although some links never finished comparing what they hold")
            }
        }
    }
}

/// `4812` as `4,812`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the herald knows of one connection.
#[derive(Debug)]
struct Info {
    addr: SocketAddr,
    dialed: bool,
    /// The client, once the connection is a link.
    client: Option<ClientId>,
}

/// A client the user was told is linked.
#[derive(Debug)]
struct Shown {
    addr: SocketAddr,
    /// Its last link ended by the room's upkeep: until when it may come back unsaid, and
    /// what to say if it does not and the client is left alone.
    stale: Option<(Instant, DisconnectReason)>,
}

/// Decides the user's notices about links; see the module docs.
#[derive(Debug)]
pub(crate) struct Herald {
    conns: BTreeMap<PeerId, Info>,
    /// Links per client.
    links: BTreeMap<ClientId, usize>,
    shown: BTreeMap<ClientId, Shown>,
    /// Whether [`MeshNotice::Alone`] was said and no link came since.
    alone: bool,
    /// Whether the first contact is still being joined.
    joining: bool,
    /// Whether this client is leaving: its links' ends are its own doing, not news.
    leaving: bool,
    /// The contact the user gave.
    contact: Option<SocketAddr>,
    /// Why the last connection made while joining ended (a dial that fails before it
    /// connects leaves it as it was: a contact that said it is full stays the reason).
    last_failure: Option<DisconnectReason>,
    window_start: Instant,
    shown_in_window: u32,
    held: u64,
}

impl Herald {
    /// A herald at time `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            conns: BTreeMap::new(),
            links: BTreeMap::new(),
            shown: BTreeMap::new(),
            alone: false,
            joining: false,
            leaving: false,
            contact: None,
            last_failure: None,
            window_start: now,
            shown_in_window: 0,
            held: 0,
        }
    }

    /// The client starts, joining through `contact` if any.
    pub(crate) fn start(&mut self, contact: Option<SocketAddr>) {
        self.joining = contact.is_some();
        self.contact = contact;
    }

    /// Whether the first contact is still being joined (no link yet).
    pub(crate) fn is_joining(&self) -> bool {
        self.joining
    }

    /// Joining the first contact is over: `linked`, or not, which is said.
    pub(crate) fn joined(&mut self, linked: bool, out: &mut Out) {
        self.joining = false;
        if let (false, Some(contact)) = (linked, self.contact) {
            let why = self.last_failure.take();
            out.push(Notice::Link(LinkNotice::JoinFailed { contact, why }));
        }
    }

    /// While joining, `peer` (a client we dialed) said it is full and named `named` clients
    /// to try: said, since joining is slower than the user expects.
    pub(crate) fn turned_away(&mut self, peer: PeerId, named: usize, out: &mut Out) {
        let Some(info) = self.conns.get(&peer).filter(|i| i.dialed) else {
            return;
        };
        if self.joining {
            out.push(Notice::Link(LinkNotice::TurnedAway {
                addr: info.addr,
                named,
            }));
        }
    }

    /// This client leaves: what happens to its links from now on is not news.
    pub(crate) fn leave(&mut self) {
        self.leaving = true;
    }

    /// A connection was opened.
    pub(crate) fn opened(&mut self, peer: PeerId, addr: SocketAddr, dialed: bool) {
        self.conns.insert(
            peer,
            Info {
                addr,
                dialed,
                client: None,
            },
        );
    }

    /// `peer` became a link to `client`.
    pub(crate) fn linked(&mut self, now: Instant, peer: PeerId, client: ClientId, out: &mut Out) {
        let Some(info) = self.conns.get_mut(&peer) else {
            return;
        };
        info.client = Some(client);
        let (addr, dialed) = (info.addr, info.dialed);
        *self.links.entry(client).or_default() += 1;
        if let Some(shown) = self.shown.get_mut(&client) {
            // Back on another connection before anything was said: nothing changed for the
            // user.
            shown.stale = None;
            return;
        }
        let notice = LinkNotice::Up {
            addr,
            dialed,
            again: self.alone,
        };
        // Leaving the time alone, and our own dials, are always said; joins may be many.
        let said = if self.alone || dialed {
            out.push(Notice::Link(notice));
            true
        } else {
            self.say(now, notice, out)
        };
        self.alone = false;
        if said {
            self.shown.insert(client, Shown { addr, stale: None });
        }
    }

    /// `peer` ended (closed by either side): says what the user should hear of it.
    pub(crate) fn ended(
        &mut self,
        now: Instant,
        peer: PeerId,
        reason: &DisconnectReason,
        out: &mut Out,
    ) {
        let Some(info) = self.conns.remove(&peer) else {
            return;
        };
        if self.joining && info.dialed {
            self.last_failure = Some(reason.clone());
        }
        if self.leaving {
            return;
        }
        let Some(client) = info.client else {
            let quiet = reason.is_routine() || (self.joining && info.dialed);
            if !quiet {
                let notice = LinkNotice::Failed {
                    addr: info.addr,
                    reason: reason.clone(),
                };
                self.say(now, notice, out);
            }
            return;
        };
        let left = self.links.get_mut(&client).map_or(0, |n| {
            *n -= 1;
            *n
        });
        if left > 0 {
            return;
        }
        self.links.remove(&client);
        let Some(shown) = self.shown.get_mut(&client) else {
            // Its joining was held back with the other notices of a busy time: so is this.
            return;
        };
        if reason.is_routine() && !self.links.is_empty() || reason.is_duplicate() {
            shown.stale = Some((now + STALE_FOR, reason.clone()));
            return;
        }
        // Named as the user was told of it, whichever connection to it ended last.
        let addr = shown.addr;
        self.shown.remove(&client);
        out.push(Notice::Link(LinkNotice::Lost {
            addr,
            reason: reason.clone(),
        }));
    }

    /// The mesh says something: the herald decides how it reaches the user.
    pub(crate) fn mesh(&mut self, notice: MeshNotice, out: &mut Out) {
        match notice {
            // While joining, how joining went is said instead.
            MeshNotice::Alone if self.joining => {}
            MeshNotice::Alone => {
                self.say_stale(None, out);
                self.alone = true;
                out.push(Notice::Mesh(MeshNotice::Alone));
            }
            // The first link after Alone already said so.
            MeshNotice::Rejoined => {
                if self.alone {
                    self.alone = false;
                    out.push(Notice::Mesh(MeshNotice::Rejoined));
                }
            }
            refused @ MeshNotice::Refused { .. } => out.push(Notice::Mesh(refused)),
        }
    }

    /// When [`Herald::timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let stale = self
            .shown
            .values()
            .filter_map(|s| s.stale.as_ref().map(|s| s.0));
        let window = (self.held > 0).then(|| self.window_start + WINDOW);
        stale.chain(window).min()
    }

    /// Ends what is due at `now`.
    pub(crate) fn timeout(&mut self, now: Instant, out: &mut Out) {
        // A client that did not come back after the room's upkeep ended its link: while other
        // links are up, that is upkeep and not news; with none, it is said.
        if self.links.is_empty() {
            self.say_stale(Some(now), out);
        } else {
            self.shown
                .retain(|_, s| s.stale.as_ref().is_none_or(|&(due, _)| due > now));
        }
        self.tick(now, out);
    }

    /// Says the stale clients due by `by` (all with `None`) lost.
    fn say_stale(&mut self, by: Option<Instant>, out: &mut Out) {
        let due: Vec<ClientId> = self
            .shown
            .iter()
            .filter(|(_, s)| {
                s.stale
                    .as_ref()
                    .is_some_and(|&(at, _)| by.is_none_or(|by| at <= by))
            })
            .map(|(&c, _)| c)
            .collect();
        for client in due {
            let shown = self.shown.remove(&client).expect("listed above");
            let (_, reason) = shown.stale.expect("stale");
            // A duplicate's client was to stay on its other connection, which never came.
            let reason = if reason.is_duplicate() {
                DisconnectReason::Closed
            } else {
                reason
            };
            out.push(Notice::Link(LinkNotice::Lost {
                addr: shown.addr,
                reason,
            }));
        }
    }

    /// Shows `notice`, or counts it if this window has shown enough; whether it was shown.
    fn say(&mut self, now: Instant, notice: LinkNotice, out: &mut Out) -> bool {
        self.tick(now, out);
        if self.shown_in_window < SHOWN_MAX {
            self.shown_in_window += 1;
            out.push(Notice::Link(notice));
            true
        } else {
            self.held += 1;
            false
        }
    }

    /// Ends the window if it is over, summing up what it held back.
    fn tick(&mut self, now: Instant, out: &mut Out) {
        if now < self.window_start + WINDOW {
            return;
        }
        if self.held > 0 {
            out.push(Notice::Link(LinkNotice::Held {
                count: self.held,
                over: WINDOW,
            }));
        }
        self.window_start = now;
        self.shown_in_window = 0;
        self.held = 0;
    }
}

/// Where the herald's notices go.
pub(crate) type Out = Vec<Notice>;
