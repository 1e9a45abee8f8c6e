//! The names every part of the core shares: a connection ([`PeerId`]), why one ends
//! ([`DisconnectReason`]) and why the mesh closes one ([`CloseWhy`]). The ground floor: it
//! imports only the wire format and the reconciler's error, never the parts that use it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::reconcile::ReconcileError;
use crate::secure::LinkError;
use crate::wire::{ByeReason, DecodeError};

/// A connection, named by the driver; never reused within one [`FloodState`](crate::FloodState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Why a peer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection before its greeting and Hello.
    ClosedBeforeGreeting,
    /// The peer closed the connection in the middle of a frame.
    ClosedMidFrame,
    /// The peer sent bytes that are not floodchat.
    Protocol(DecodeError),
    /// The encrypted link failed: a wrong room key, a failed handshake, an altered record.
    Link(LinkError),
    /// The peer sent no greeting and Hello in time.
    GreetingTimeout(Duration),
    /// The peer began a frame and did not finish it in time.
    FrameTimeout(Duration),
    /// The peer sent nothing at all for this long.
    Idle(Duration),
    /// The peer left sent bytes unread for too long.
    Stalled(Duration),
    /// The peer said Bye.
    Bye(ByeReason),
    /// This client closed it on purpose.
    Local(CloseWhy),
    /// The peer's set reconciliation broke the protocol.
    Reconcile(ReconcileError),
    /// The peer asked for more strings at once than 16,384, or in all for more than
    /// the room holds.
    AskedTooMuch,
    /// The peer sent reconciliation messages without reading our answers.
    ReconcileOutOfTurn,
}

impl DisconnectReason {
    /// Whether this is an ordinary departure rather than a fault of the peer.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Closed | Self::Bye(_) | Self::Local(_))
    }

    /// Whether the link ended as the duplicate of another link to the same client, which
    /// stays.
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            Self::Bye(ByeReason::Duplicate) | Self::Local(CloseWhy::Duplicate)
        )
    }

    /// Whether this is the mesh's own upkeep, which a user need not hear of: a duplicate or
    /// self connection, a link shed or refused to keep the room mixed, a stranger turned away
    /// by a limit (those the mesh summarises in a [`MeshNotice::Refused`](crate::mesh::MeshNotice::Refused)).
    pub fn is_routine(&self) -> bool {
        match self {
            Self::Bye(reason) => matches!(
                reason,
                ByeReason::Duplicate | ByeReason::SelfConnection | ByeReason::Shed
            ),
            Self::Local(why) => !matches!(why, CloseWhy::Leaving),
            _ => false,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| d.as_secs_f64();
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::ClosedBeforeGreeting => f.write_str("connection closed before the greeting"),
            Self::ClosedMidFrame => f.write_str("connection closed in the middle of a frame"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Link(e) => e.fmt(f),
            Self::GreetingTimeout(d) => write!(f, "no greeting within {}s", secs(d)),
            Self::FrameTimeout(d) => write!(f, "a frame took longer than {}s", secs(d)),
            Self::Idle(d) => write!(f, "silent for {}s", secs(d)),
            Self::Stalled(d) => write!(f, "stopped reading for {}s", secs(d)),
            Self::Bye(reason) => write!(f, "it closed the link: {reason}"),
            Self::Local(why) => why.fmt(f),
            Self::Reconcile(e) => write!(f, "reconciliation error: {e}"),
            Self::ReconcileOutOfTurn => {
                f.write_str("sent reconciliation messages without reading the answers")
            }
            Self::AskedTooMuch => f.write_str("asked for more strings than it can lack"),
        }
    }
}

/// Why the mesh closes a connection, for a person to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// The table of connections is full.
    TooManyConnections,
    /// Too many connections have not said Hello yet.
    TooManyUnproven,
    /// Too many connections come from this IP.
    TooManyFromIp(IpAddr),
    /// The oldest connection without a Hello, closed to make room for a newcomer.
    Evicted,
    /// The connection joins this client to itself.
    SelfConnection,
    /// Another connection to the same client stays.
    Duplicate,
    /// Our inbound links are full; the peer was given addresses to try.
    Full,
    /// The peer said Bye.
    Bye(ByeReason),
    /// We are leaving.
    Leaving,
    /// Shed to make room for a fresh link, so the room stays mixed.
    Rotated,
    /// Shed so that a client with no link could have the slot.
    MadeRoom,
}

impl fmt::Display for CloseWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyConnections => f.write_str("too many connections"),
            Self::TooManyUnproven => f.write_str("too many connections without a greeting"),
            Self::TooManyFromIp(ip) => write!(f, "too many connections from {ip}"),
            Self::Evicted => f.write_str("no greeting yet, and a newcomer needs the slot"),
            Self::SelfConnection => f.write_str("connected to itself"),
            Self::Duplicate => f.write_str("already linked to that client"),
            Self::Full => f.write_str("inbound links full; sent addresses to try"),
            Self::Bye(reason) => write!(f, "the peer said goodbye: {reason}"),
            Self::Leaving => f.write_str("leaving"),
            Self::Rotated => f.write_str("rotated out for a fresh link"),
            Self::MadeRoom => f.write_str("shed so that a client with no link could join"),
        }
    }
}
