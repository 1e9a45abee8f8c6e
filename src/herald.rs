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

use crate::mesh::{CloseWhy, MeshNotice};
use crate::peer::{DisconnectReason, PeerId};
use crate::state::Notice;
use crate::wire::{ByeReason, ClientId};

/// How long a link ended by the room's upkeep stays shown while its client may come back.
pub const STALE_FOR: Duration = Duration::from_secs(5);
/// The window over which notices about connections are counted.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Notices about connections shown per [`WINDOW`]; the rest are summed up at its end.
pub const SHOWN_MAX: u32 = 20;

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
            Self::Held { count, over } => write!(
                f,
                "... {} more connection notices in the last {} s",
                thousands(*count),
                over.as_secs()
            ),
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
        if is_upkeep(reason) && !self.links.is_empty() || is_duplicate(reason) {
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
            let reason = if is_duplicate(&reason) {
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

/// Whether the link ended as a duplicate of another link to the same client.
fn is_duplicate(reason: &DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::Bye(ByeReason::Duplicate) | DisconnectReason::Local(CloseWhy::Duplicate)
    )
}

/// Whether the link ended by the room's own upkeep rather than a fault or a departure.
fn is_upkeep(reason: &DisconnectReason) -> bool {
    reason.is_routine()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::mesh::MeshConfig;
    use crate::wire::{Frame, GREETING, Hello};
    use crate::{Config, FloodState, Input, Output};

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);
    const X: ClientId = ClientId(7);

    fn at(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)), port)
    }

    fn hello(client: ClientId) -> Vec<u8> {
        let mut bytes = GREETING.to_vec();
        Frame::Hello(Hello {
            client,
            listen_port: 4000,
            alone: false,
        })
        .encode(&mut bytes);
        bytes
    }

    fn bye(reason: ByeReason) -> Vec<u8> {
        let mut bytes = Vec::new();
        Frame::Bye {
            reason,
            addrs: Vec::new(),
        }
        .encode(&mut bytes);
        bytes
    }

    /// A client with a clock the test moves, and the lines it told its user.
    struct Client {
        state: FloodState,
        now: Instant,
        dials: Vec<SocketAddr>,
    }

    impl Client {
        fn new(links: usize) -> Self {
            let now = Instant::now();
            let config = Config {
                client: ClientId(100),
                listen_port: 4001,
                mesh: MeshConfig {
                    max_per_ip: 64,
                    ..MeshConfig::with_links(links)
                },
                ..Config::default()
            };
            Self {
                state: FloodState::new(config, now),
                now,
                dials: Vec::new(),
            }
        }

        /// Feeds `input`, and reports every send written at once; returns the notices said,
        /// as the user reads them.
        fn input(&mut self, input: Input<'_>) -> Vec<String> {
            self.state.handle_input(self.now, input).unwrap();
            let mut said = Vec::new();
            let mut written = Vec::new();
            loop {
                while let Some(output) = self.state.poll_output() {
                    match output {
                        Output::Notice(n) => said.push(n.to_string()),
                        Output::Dial(addr) => self.dials.push(addr),
                        Output::Send { peer, .. } => written.push(peer),
                        _ => {}
                    }
                }
                let Some(peer) = written.pop() else {
                    return said;
                };
                if self.state.is_connected(peer) {
                    self.state
                        .handle_input(self.now, Input::Sent(peer))
                        .unwrap();
                }
            }
        }

        fn advance(&mut self, by: Duration) -> Vec<String> {
            self.now += by;
            self.input(Input::Timeout)
        }
    }

    /// The race behind contradictory notices: we dialed X (A) while X dialed us (B). X keeps
    /// B and closes A as a duplicate, and its Bye on A is read before its Hello on B. The user
    /// was told "connected to X" once; nothing changed for them, so nothing more is said: no
    /// "no links", no lost link, no second announcement.
    #[test]
    fn a_duplicate_closed_by_the_peer_before_its_twin_greets_is_not_news() {
        let x = at(1, 4000);
        let mut c = Client::new(1);
        assert_eq!(
            c.input(Input::Start { contact: Some(x) }),
            Vec::<String>::new()
        );
        c.input(Input::Dialed { peer: A, addr: x });
        assert_eq!(
            c.input(Input::Received(A, &hello(X))),
            [format!("connected to {x}")]
        );
        assert!(!c.state.is_joining());
        c.input(Input::Accepted {
            peer: B,
            remote: at(1, 50_000),
        });
        assert_eq!(
            c.input(Input::Received(A, &bye(ByeReason::Duplicate))),
            Vec::<String>::new()
        );
        assert_eq!(c.input(Input::Received(B, &hello(X))), Vec::<String>::new());
        assert_eq!(c.state.link_count(), 1);
        // Nothing is held back for later either.
        assert_eq!(c.advance(STALE_FOR * 2), Vec::<String>::new());
    }

    /// A duplicate whose twin never greets: once nothing is under way, the user hears that the
    /// link is gone and then that there are no links, in that order.
    #[test]
    fn a_duplicate_whose_twin_never_greets_is_said_lost_before_being_alone() {
        let x = at(1, 4000);
        let mut c = Client::new(1);
        c.input(Input::Start { contact: Some(x) });
        c.input(Input::Dialed { peer: A, addr: x });
        c.input(Input::Received(A, &hello(X)));
        c.input(Input::Accepted {
            peer: B,
            remote: at(1, 50_000),
        });
        assert_eq!(
            c.input(Input::Received(A, &bye(ByeReason::Duplicate))),
            Vec::<String>::new()
        );
        let said = c.input(Input::Closed(B));
        assert_eq!(
            said,
            [
                "127.0.0.1:50000: connection closed before the greeting".to_string(),
                format!("{x}: connection closed"),
                "no links to the room; still trying the addresses known".to_string()
            ]
        );
    }

    /// The whole story of losing the last link and coming back: one line for the loss, one
    /// for being alone (the address may not be dialed again at once), nothing while dials
    /// fail, and one line when a link is back, which says so.
    #[test]
    fn losing_the_last_link_and_coming_back_tells_one_story() {
        let x = at(1, 4000);
        let mut c = Client::new(1);
        c.input(Input::Start { contact: Some(x) });
        c.input(Input::Dialed { peer: A, addr: x });
        c.input(Input::Received(A, &hello(X)));
        let alone = "no links to the room; still trying the addresses known";
        assert_eq!(
            c.input(Input::Closed(A)),
            [format!("{x}: connection closed"), alone.to_string()]
        );
        // The mesh dials the address again once its backoff allows; the dial fails.
        c.dials.clear();
        let mut waited = Duration::ZERO;
        while c.dials.is_empty() && waited < Duration::from_secs(120) {
            assert_eq!(c.advance(Duration::from_millis(100)), Vec::<String>::new());
            waited += Duration::from_millis(100);
        }
        assert_eq!(c.dials, [x]);
        assert_eq!(c.input(Input::DialFailed(x)), Vec::<String>::new());
        c.dials.clear();
        while c.dials.is_empty() {
            assert_eq!(c.advance(Duration::from_millis(100)), Vec::<String>::new());
        }
        c.input(Input::Dialed { peer: B, addr: x });
        assert_eq!(
            c.input(Input::Received(B, &hello(X))),
            [format!("linked to the room again: connected to {x}")]
        );
    }

    /// Many clients joining at once: the first [`SHOWN_MAX`] are shown, the rest summed up
    /// when the window ends.
    #[test]
    fn joins_beyond_the_window_s_share_are_summed_up() {
        let mut c = Client::new(10);
        c.input(Input::Start { contact: None });
        let mut said = Vec::new();
        for i in 0..25u64 {
            let peer = PeerId(10 + i);
            let remote = at(2 + i as u8, 50_000);
            said.extend(c.input(Input::Accepted { peer, remote }));
            said.extend(c.input(Input::Received(peer, &hello(ClientId(1000 + i)))));
        }
        assert_eq!(said.len(), SHOWN_MAX as usize, "{said:#?}");
        assert!(said.iter().all(|l| l.ends_with(" joined")), "{said:#?}");
        assert_eq!(
            c.advance(WINDOW),
            ["... 5 more connection notices in the last 10 s"]
        );
    }

    /// A contact that is not there: one line says so, with why, and joining is over.
    #[test]
    fn a_contact_that_does_not_answer_is_said_once() {
        let x = at(1, 4000);
        let mut c = Client::new(5);
        c.input(Input::Start { contact: Some(x) });
        assert!(c.state.is_joining());
        assert_eq!(
            c.input(Input::DialFailed(x)),
            [format!(
                "no floodchat peer at {x} (could not connect); starting a new network"
            )]
        );
        assert!(!c.state.is_joining());
    }

    /// A contact that greets and says it is full, naming a client nobody answers at: the
    /// user hears that the room was full, not that there was no floodchat peer.
    #[test]
    fn a_full_contact_whose_named_clients_fail_is_said_to_be_full() {
        let x = at(1, 4000);
        let named = at(2, 4000);
        let mut c = Client::new(5);
        c.input(Input::Start { contact: Some(x) });
        c.input(Input::Dialed { peer: A, addr: x });
        let mut bytes = hello(X);
        Frame::Bye {
            reason: ByeReason::Full,
            addrs: vec![named],
        }
        .encode(&mut bytes);
        c.input(Input::Received(A, &bytes));
        assert!(
            c.state.is_joining(),
            "the client it named is still to be tried"
        );
        assert!(c.dials.contains(&named), "{:?}", c.dials);
        assert_eq!(
            c.input(Input::DialFailed(named)),
            [format!(
                "{x} is full, and no client it named could be reached; starting a new network"
            )]
        );
    }

    /// Leaving at the end of input waits while the links make progress, and gives up, saying
    /// so, on a link that stops answering for the stall timeout.
    #[test]
    fn leaving_gives_up_on_a_link_that_makes_no_progress() {
        let mut c = Client::new(5);
        c.input(Input::Start { contact: None });
        c.input(Input::Accepted {
            peer: A,
            remote: at(1, 50_000),
        });
        c.input(Input::Received(A, &hello(X)));
        // The peer reads what we send but never starts the comparison of what the two hold,
        // which the side that dialed starts: the link never has everything, and nothing
        // moves.
        assert_eq!(c.input(Input::EndOfInput), Vec::<String>::new());
        assert!(!c.state.has_left());
        let stall = c.state.config().stall_timeout;
        let due = c.state.poll_timeout().expect("a deadline to give up");
        assert!(due <= c.now + stall, "{due:?}");
        let said = c.advance(stall);
        assert!(
            said.contains(
                &"leaving although some links never finished comparing what they hold".to_string()
            ),
            "{said:#?}"
        );
        // The link is told Bye; once it closes, the client has left, which needs no notice.
        assert_eq!(c.input(Input::Closed(A)), Vec::<String>::new());
        assert!(c.state.has_left());
    }

    /// With nothing owed, the end of input leaves at once, and nothing is said about it.
    #[test]
    fn leaving_with_nothing_owed_is_immediate() {
        let mut c = Client::new(5);
        c.input(Input::Start { contact: None });
        assert_eq!(c.input(Input::EndOfInput), Vec::<String>::new());
        assert!(c.state.has_left());
    }
}
