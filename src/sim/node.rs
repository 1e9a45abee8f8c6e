//! [`Node`]: what the simulator runs at each client, a whole [`FloodState`] or the mesh
//! alone ([`MeshNode`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::mesh::{CloseWhy, Mesh, MeshInput, MeshOutput};
use crate::wire::{self, ByeReason, ClientId, Decoded, Frame, FrameDecoder, GREETING, Hello};
use crate::{Config, DisconnectReason, FloodState, Input, InputError, Output, PeerId, Stats};

/// A sans-IO client the simulator can run: the door of [`FloodState`].
pub trait Node {
    /// A client started with `config` at `now`.
    fn start(config: Config, now: Instant) -> Self;
    /// Feeds one input, as [`FloodState::handle_input`].
    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError>;
    /// The next output, as [`FloodState::poll_output`].
    fn poll_output(&mut self) -> Option<Output>;
    /// When the client next wants [`Input::Timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether nothing is waiting to be sent or acknowledged.
    fn is_flushed(&self) -> bool;
    /// The string [`Output::Print`] names.
    fn message(&self, index: usize) -> &str;
    /// Every string the client holds, in the order it printed them.
    fn messages(&self) -> impl ExactSizeIterator<Item = &str>;
    /// The client's counters.
    fn stats(&self) -> Stats;
    /// Links the client has (connections whose Hello it accepted).
    fn link_count(&self) -> usize;
    /// Whether its connections carry frames in records (protocol 3's record layer), so the
    /// simulator reads them through [`Node::tapped_send`] and [`Node::tapped_read`].
    const RECORDS: bool = false;
    /// The frame stream the oldest [`Output::Send`] not yet asked about carried.
    fn tapped_send(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The frame stream the last [`Input::Received`] carried.
    fn tapped_read(&self) -> Option<&[u8]> {
        None
    }
    /// Takes a string kept on disk by an earlier run, as [`FloodState::restore`]; a node
    /// that holds no room ignores it.
    fn restore(&mut self, _text: &str) {}
    /// The addresses a driver would keep on disk, as [`FloodState::addrs_to_keep`].
    fn addrs_to_keep(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
    /// Whether it is an adversary, whose Hellos may name other identities.
    fn is_adversary(&self) -> bool {
        false
    }
}

impl Node for FloodState {
    const RECORDS: bool = true;
    fn start(config: Config, now: Instant) -> Self {
        let mut state = FloodState::new(config, now);
        state.tap();
        state
    }
    fn tapped_send(&mut self) -> Option<Vec<u8>> {
        FloodState::tapped_send(self)
    }
    fn tapped_read(&self) -> Option<&[u8]> {
        FloodState::tapped_read(self)
    }
    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        FloodState::handle_input(self, now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        FloodState::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        FloodState::poll_timeout(self)
    }
    fn is_flushed(&self) -> bool {
        FloodState::is_flushed(self)
    }
    fn message(&self, index: usize) -> &str {
        FloodState::message(self, index)
    }
    fn messages(&self) -> impl ExactSizeIterator<Item = &str> {
        FloodState::messages(self)
    }
    fn stats(&self) -> Stats {
        FloodState::stats(self)
    }
    fn link_count(&self) -> usize {
        FloodState::link_count(self)
    }
    fn restore(&mut self, text: &str) {
        FloodState::restore(self, text.as_bytes());
    }
    fn addrs_to_keep(&self) -> Vec<SocketAddr> {
        FloodState::addrs_to_keep(self)
    }
}

/// A client that runs only the [`Mesh`]: it greets, says Hello, and carries the mesh's
/// Addrs and Bye frames, but holds no room (typed lines are ignored) and says no notices.
///
/// For properties of membership alone, where the test must see each mesh's address book
/// ([`MeshNode::mesh`]), and for runs too large for whole clients. It closes a connection
/// as soon as its Bye is written, without lingering, and sends no keepalives.
#[derive(Debug)]
pub struct MeshNode {
    mesh: Mesh,
    hello: Hello,
    /// What each open connection has received so far.
    decoders: BTreeMap<PeerId, FrameDecoder>,
    outputs: VecDeque<Output>,
    stats: Stats,
    /// Set for an adversary ([`MeshNode::swarm`]).
    swarm: Option<Swarm>,
}

/// What an eclipse attacker does instead of running its mesh.
#[derive(Debug)]
struct Swarm {
    /// The clients it keeps connections to.
    victims: Vec<SocketAddr>,
    /// How many connections it keeps to each victim.
    per_victim: usize,
    /// The addresses it tells everyone (its fellows').
    addrs: Vec<SocketAddr>,
    /// The victim each of its dialed connections goes to.
    held: BTreeMap<PeerId, SocketAddr>,
    /// Dials in flight, per victim.
    dialing: BTreeMap<SocketAddr, usize>,
    /// When it next redials the victims it lost and repeats its addresses.
    next: Instant,
    /// Rounds of redials so far.
    rounds: u64,
}

/// How soon an adversary takes back a slot it lost (issue 16 measured the swarm refilling a
/// freed slot within 0.5 s).
const SWARM_REFILL: Duration = Duration::from_millis(500);

impl MeshNode {
    /// An eclipse attacker (issue 16) at one address that runs no mesh: it keeps
    /// `per_victim` connections to each of `victims` (retaking one within `SWARM_REFILL`
    /// when it ends), accepts every connection, says Hello on each as a different client
    /// (not alone), tells every connection `addrs` at once and again every 5 s, and relays
    /// nothing: it holds slots and fills books.
    pub fn swarm(
        config: Config,
        now: Instant,
        victims: Vec<SocketAddr>,
        per_victim: usize,
        addrs: Vec<SocketAddr>,
    ) -> Self {
        let mut node = <Self as Node>::start(config, now);
        node.swarm = Some(Swarm {
            victims,
            per_victim,
            addrs,
            held: BTreeMap::new(),
            dialing: BTreeMap::new(),
            next: now,
            rounds: 0,
        });
        node
    }

    /// An adversary's answer to `input`.
    fn swarm_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        let swarm = self.swarm.as_mut().expect("an adversary");
        match input {
            Input::Start { .. } => {}
            Input::Accepted { peer, .. } => {
                self.open(peer)?;
                self.tell_addrs(peer);
            }
            Input::Dialed { peer, addr } => {
                Self::dial_done(swarm, addr);
                swarm.held.insert(peer, addr);
                self.open(peer)?;
                self.tell_addrs(peer);
            }
            Input::DialFailed(addr) => Self::dial_done(swarm, addr),
            Input::Received(peer, mut bytes) => {
                let Some(decoder) = self.decoders.get_mut(&peer) else {
                    return Err(InputError::UnknownPeer(peer));
                };
                // Read and ignored: it answers nothing and relays nothing.
                while let Ok(Some(_)) = decoder.decode(&mut bytes) {}
            }
            Input::Sent(peer) => {
                if !self.decoders.contains_key(&peer) {
                    return Err(InputError::UnknownPeer(peer));
                }
            }
            Input::Closed(peer) => {
                let Some(decoder) = self.decoders.get(&peer) else {
                    return Err(InputError::UnknownPeer(peer));
                };
                let reason = if decoder.hello_seen() {
                    DisconnectReason::Closed
                } else {
                    DisconnectReason::ClosedBeforeGreeting
                };
                swarm.held.remove(&peer);
                self.close(peer, reason);
            }
            Input::Timeout | Input::Leave | Input::EndOfInput | Input::LineTyped(_) => {}
        }
        let swarm = self.swarm.as_mut().expect("an adversary");
        if now >= swarm.next {
            swarm.next = now + SWARM_REFILL;
            swarm.rounds += 1;
            let repeat = swarm.rounds % 10 == 0;
            for &v in &swarm.victims {
                let held = swarm.held.values().filter(|&&h| h == v).count();
                let dialing = swarm.dialing.entry(v).or_insert(0);
                while held + *dialing < swarm.per_victim {
                    *dialing += 1;
                    self.outputs.push_back(Output::Dial(v));
                }
            }
            // Every tenth round (5 s), its addresses again on every connection.
            if repeat {
                let peers: Vec<PeerId> = self.decoders.keys().copied().collect();
                for peer in peers {
                    self.tell_addrs(peer);
                }
            }
        }
        Ok(())
    }

    fn dial_done(swarm: &mut Swarm, addr: SocketAddr) {
        if let Some(n) = swarm.dialing.get_mut(&addr) {
            *n = n.saturating_sub(1);
        }
    }

    /// Sends an adversary's addresses on `peer`.
    fn tell_addrs(&mut self, peer: PeerId) {
        let Some(swarm) = &self.swarm else {
            return;
        };
        let mut bytes = Vec::new();
        for chunk in swarm.addrs.chunks(wire::MAX_ADDRS) {
            Frame::Addrs(chunk.to_vec()).encode(&mut bytes);
        }
        if !bytes.is_empty() {
            self.send(peer, bytes);
        }
    }

    /// The client's mesh.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    fn send(&mut self, peer: PeerId, bytes: Vec<u8>) {
        self.stats.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { peer, bytes });
    }

    fn open(&mut self, peer: PeerId) -> Result<(), InputError> {
        if self.decoders.insert(peer, FrameDecoder::new()).is_some() {
            return Err(InputError::PeerExists(peer));
        }
        let mut bytes = GREETING.to_vec();
        let hello = match self.swarm {
            // A different client on each connection.
            Some(_) => Hello {
                client: ClientId(
                    self.hello
                        .client
                        .0
                        .wrapping_add(peer.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                ),
                alone: false,
                ..self.hello
            },
            None => Hello {
                alone: self.mesh.links() == 0,
                ..self.hello
            },
        };
        Frame::Hello(hello).encode(&mut bytes);
        self.send(peer, bytes);
        Ok(())
    }

    fn close(&mut self, peer: PeerId, reason: DisconnectReason) {
        if self.decoders.remove(&peer).is_some() {
            self.outputs.push_back(Output::Disconnect { peer, reason });
        }
    }

    fn received(&mut self, now: Instant, peer: PeerId, mut bytes: &[u8]) {
        loop {
            let Some(decoder) = self.decoders.get_mut(&peer) else {
                return;
            };
            let frame = match decoder.decode(&mut bytes) {
                Ok(Some(Decoded::Frame(frame))) => frame,
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(e) => return self.close(peer, DisconnectReason::Protocol(e)),
            };
            match frame {
                Frame::Hello(h) => {
                    let hello = MeshInput::Hello {
                        peer,
                        id: h.client,
                        listen_port: h.listen_port,
                        alone: h.alone,
                    };
                    self.feed(now, hello);
                }
                Frame::Addrs(addrs) => self.feed(
                    now,
                    MeshInput::Addrs {
                        peer,
                        addrs: &addrs,
                    },
                ),
                Frame::Bye { reason, addrs } => self.feed(
                    now,
                    MeshInput::Bye {
                        peer,
                        reason,
                        addrs: &addrs,
                    },
                ),
                _ => {}
            }
        }
    }

    /// Feeds the mesh and carries out what it decides.
    fn feed(&mut self, now: Instant, input: MeshInput<'_>) {
        self.mesh.handle(now, input);
        #[cfg(feature = "fuzzing")]
        self.mesh.check_invariants();
        while let Some(output) = self.mesh.poll() {
            match output {
                MeshOutput::Dial(addr) => self.outputs.push_back(Output::Dial(addr)),
                MeshOutput::LinkUp { peer, .. } => self.outputs.push_back(Output::PeerReady(peer)),
                MeshOutput::SendAddrs { peer, addrs } => {
                    if self.decoders.contains_key(&peer) {
                        let mut bytes = Vec::new();
                        for chunk in addrs.chunks(wire::MAX_ADDRS) {
                            Frame::Addrs(chunk.to_vec()).encode(&mut bytes);
                        }
                        self.send(peer, bytes);
                    }
                }
                MeshOutput::Close { peer, bye, why } => self.mesh_closes(peer, bye, why),
                // What a user is told is FloodState's to decide; a mesh node tells nobody.
                MeshOutput::Notice(_) => {}
            }
        }
    }

    fn mesh_closes(
        &mut self,
        peer: PeerId,
        bye: Option<(ByeReason, Vec<SocketAddr>)>,
        why: CloseWhy,
    ) {
        if !self.decoders.contains_key(&peer) {
            return;
        }
        if let Some((reason, addrs)) = bye {
            let mut bytes = Vec::new();
            let addrs = addrs.into_iter().take(wire::MAX_ADDRS).collect();
            Frame::Bye { reason, addrs }.encode(&mut bytes);
            self.send(peer, bytes);
        }
        let reason = match why {
            CloseWhy::Bye(said) => DisconnectReason::Bye(said),
            why => DisconnectReason::Local(why),
        };
        self.close(peer, reason);
    }
}

impl Node for MeshNode {
    fn start(config: Config, now: Instant) -> Self {
        let hello = Hello {
            client: config.identity.client_id(),
            listen_port: config.listen_port,
            alone: true,
        };
        Self {
            mesh: Mesh::new(config.mesh, hello.client, config.seed, now),
            hello,
            decoders: BTreeMap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            swarm: None,
        }
    }

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        if self.swarm.is_some() {
            return self.swarm_input(now, input);
        }
        let known = |node: &Self, peer| match node.decoders.contains_key(&peer) {
            true => Ok(()),
            false => Err(InputError::UnknownPeer(peer)),
        };
        match input {
            Input::Start { contact } => self.feed(now, MeshInput::Start { contact }),
            Input::Accepted { peer, remote } => {
                self.open(peer)?;
                self.feed(now, MeshInput::Accepted { peer, remote });
            }
            Input::Dialed { peer, addr } => {
                self.open(peer)?;
                self.feed(now, MeshInput::Dialed { peer, addr });
            }
            Input::DialFailed(addr) => self.feed(now, MeshInput::DialFailed { addr }),
            Input::Received(peer, bytes) => {
                known(self, peer)?;
                self.received(now, peer, bytes);
            }
            Input::Sent(peer) => known(self, peer)?,
            Input::Closed(peer) => {
                known(self, peer)?;
                let decoder = &self.decoders[&peer];
                let reason = if !decoder.hello_seen() {
                    DisconnectReason::ClosedBeforeGreeting
                } else if decoder.is_mid_item() {
                    DisconnectReason::ClosedMidFrame
                } else {
                    DisconnectReason::Closed
                };
                self.close(peer, reason);
                self.feed(now, MeshInput::Closed { peer });
            }
            Input::Timeout => self.feed(now, MeshInput::Timeout),
            Input::Leave | Input::EndOfInput => self.feed(now, MeshInput::Leave),
            Input::LineTyped(_) => {}
        }
        Ok(())
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.swarm {
            Some(swarm) => Some(swarm.next),
            None => self.mesh.poll_timeout(),
        }
    }

    fn is_flushed(&self) -> bool {
        self.outputs.is_empty()
    }

    fn message(&self, index: usize) -> &str {
        panic!("a mesh node holds no string, not even #{index}")
    }

    fn messages(&self) -> impl ExactSizeIterator<Item = &str> {
        std::iter::empty()
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn is_adversary(&self) -> bool {
        self.swarm.is_some()
    }

    fn link_count(&self) -> usize {
        match &self.swarm {
            Some(_) => self.decoders.len(),
            None => self.mesh.links(),
        }
    }
}
