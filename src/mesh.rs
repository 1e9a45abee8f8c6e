//! [`Mesh`]: who to be connected to. A placeholder with the final interface: it dials the
//! first contact and closes connections to oneself and duplicate connections.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::PeerId;
use crate::wire::{ByeReason, ClientId};

/// Tunables of the [`Mesh`].
#[derive(Debug, Clone, Default)]
pub struct MeshConfig {}

/// Something that happened to the mesh.
#[derive(Debug, Clone, Copy)]
pub enum MeshInput<'a> {
    /// The client starts, with the first contact the user gave, if any.
    Start {
        /// The address to join through.
        contact: Option<SocketAddr>,
    },
    /// An inbound connection, before any bytes.
    Accepted {
        /// The connection.
        peer: PeerId,
        /// Where it comes from.
        remote: SocketAddr,
    },
    /// A [`MeshOutput::Dial`] connected.
    Dialed {
        /// The connection.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
    },
    /// A [`MeshOutput::Dial`] failed.
    DialFailed {
        /// The address dialed.
        addr: SocketAddr,
    },
    /// The peer's Hello arrived.
    Hello {
        /// The connection.
        peer: PeerId,
        /// The client at the other end.
        id: ClientId,
        /// Its listening port.
        listen_port: u16,
        /// Whether it has no other link.
        alone: bool,
    },
    /// The peer told us addresses.
    Addrs {
        /// The connection.
        peer: PeerId,
        /// The addresses.
        addrs: &'a [SocketAddr],
    },
    /// The peer said Bye.
    Bye {
        /// The connection.
        peer: PeerId,
        /// Why.
        reason: ByeReason,
        /// Addresses to try instead.
        addrs: &'a [SocketAddr],
    },
    /// The connection is gone.
    Closed {
        /// The connection.
        peer: PeerId,
    },
    /// The time is at or past [`Mesh::poll_timeout`].
    Timeout,
}

/// Something the mesh wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshOutput {
    /// Connect to this address.
    Dial(SocketAddr),
    /// Tell this peer these addresses.
    SendAddrs {
        /// The connection.
        peer: PeerId,
        /// The addresses.
        addrs: Vec<SocketAddr>,
    },
    /// Close this connection, saying Bye first if `bye` is given.
    Close {
        /// The connection.
        peer: PeerId,
        /// What to say first.
        bye: Option<(ByeReason, Vec<SocketAddr>)>,
        /// Why, for a person.
        why: CloseWhy,
    },
    /// Something the user should hear of.
    Notice(MeshNotice),
}

/// Why the mesh closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseWhy {
    /// It goes to this client itself.
    SelfConnection,
    /// Another connection to the same client stays.
    Duplicate,
}

impl fmt::Display for CloseWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SelfConnection => f.write_str("connection to this client itself"),
            Self::Duplicate => f.write_str("another connection to the same client stays"),
        }
    }
}

/// What the mesh tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshNotice {
    /// Refused connections over a while, summarised.
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
            Self::Refused { count, over } => write!(
                f,
                "{count} connections refused in the last {}s",
                over.as_secs()
            ),
        }
    }
}

#[derive(Debug)]
struct Conn {
    dialed: bool,
    client: Option<ClientId>,
}

/// Decides which clients to be connected to.
#[derive(Debug)]
pub struct Mesh {
    me: ClientId,
    conns: HashMap<PeerId, Conn>,
    outputs: std::collections::VecDeque<MeshOutput>,
}

impl Mesh {
    /// A mesh for client `me`.
    pub fn new(_config: MeshConfig, me: ClientId, _seed: u64, _now: Instant) -> Self {
        Self {
            me,
            conns: HashMap::new(),
            outputs: Default::default(),
        }
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, _now: Instant, input: MeshInput<'_>) {
        match input {
            MeshInput::Start { contact } => {
                if let Some(addr) = contact {
                    self.outputs.push_back(MeshOutput::Dial(addr));
                }
            }
            MeshInput::Accepted { peer, .. } | MeshInput::Dialed { peer, .. } => {
                let dialed = matches!(input, MeshInput::Dialed { .. });
                self.conns.insert(
                    peer,
                    Conn {
                        dialed,
                        client: None,
                    },
                );
            }
            MeshInput::Hello { peer, id, .. } => {
                if id == self.me {
                    self.close(peer, ByeReason::SelfConnection, CloseWhy::SelfConnection);
                    return;
                }
                let other = self
                    .conns
                    .iter()
                    .find(|(p, c)| **p != peer && c.client == Some(id))
                    .map(|(p, c)| (*p, c.dialed));
                if let Some(conn) = self.conns.get_mut(&peer) {
                    conn.client = Some(id);
                }
                if let Some((other, other_dialed)) = other {
                    // Keep the connection dialed by the smaller id.
                    let this_dialed = self.conns[&peer].dialed;
                    let keep_dialed_by_me = self.me < id;
                    let drop = if this_dialed == keep_dialed_by_me {
                        other
                    } else {
                        debug_assert_eq!(other_dialed, keep_dialed_by_me);
                        peer
                    };
                    self.close(drop, ByeReason::Duplicate, CloseWhy::Duplicate);
                }
            }
            MeshInput::Closed { peer } => {
                self.conns.remove(&peer);
            }
            MeshInput::DialFailed { .. }
            | MeshInput::Addrs { .. }
            | MeshInput::Bye { .. }
            | MeshInput::Timeout => {}
        }
    }

    fn close(&mut self, peer: PeerId, reason: ByeReason, why: CloseWhy) {
        if let Some(conn) = self.conns.get_mut(&peer) {
            conn.client = None;
        }
        self.outputs.push_back(MeshOutput::Close {
            peer,
            bye: Some((reason, Vec::new())),
            why,
        });
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<MeshOutput> {
        self.outputs.pop_front()
    }

    /// When to feed [`MeshInput::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Whether the client has no link.
    pub fn is_alone(&self) -> bool {
        self.conns.values().all(|c| c.client.is_none())
    }
}
