//! A link made again costs what the two sides lack, not the history: a real client that
//! holds 50,000 lines (fed through its stdin pipe) against a peer inside the test, a
//! [`FloodState`] driven over a real TCP socket, which counts the bytes the real client sends.
//!
//! The count is of real bytes on the wire, as protocol 3 carries them: the clear prologue,
//! the Noise handshake (under 200 bytes), and the frame stream in encrypted records, each of
//! which adds 18 bytes (a 2-byte length and a 16-byte tag) to the frames it carries. Both
//! links pay the handshake, so the ratio below still compares what the frames cost.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Instant;

use common::{Client, DEADLINE, Rt, Spawn, assert_exactly};
use floodchat::MeshConfig;
use floodchat::secure::Identity;
use floodchat::{Config, FloodState, Input, Output, PeerId};

use Rt::{AsyncStd, Smol};

/// Lines of shared history.
const HISTORY: usize = 50_000;

/// The most a link made again may cost, as a fraction of the first: 1/`SMALL_FRACTION`.
const SMALL_FRACTION: usize = 20;

fn history() -> Vec<String> {
    (0..HISTORY)
        .map(|i| format!("history line {i:05}: said long ago, still in the room"))
        .collect()
}

/// What a connection's reader thread reports.
enum Event {
    Bytes(PeerId, Vec<u8>),
    Closed(PeerId),
}

/// The link to the real client.
struct Link {
    peer: PeerId,
    stream: TcpStream,
    /// Bytes the real client sent on this connection, as read from the socket: handshake and
    /// record overhead included.
    received: usize,
}

/// A floodchat client inside the test: a [`FloodState`] and a small loop that does what the
/// state asks over real sockets, dialing only the real client.
struct TestPeer {
    state: FloodState,
    target: SocketAddr,
    link: Option<Link>,
    /// A dial the state asked for while dials are held back.
    held_dial: Option<SocketAddr>,
    hold_dials: bool,
    next_peer: u64,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    /// The indices of [`Output::Print`], in order.
    printed: Vec<usize>,
}

impl TestPeer {
    /// A peer that will join the room through `target`; it does not listen.
    fn new(target: &Client, client: u64) -> Self {
        let config = Config {
            identity: Identity::from_seed(client),
            entropy: blake3::derive_key("floodchat tests: reconnect", &client.to_le_bytes()),
            seed: client,
            mesh: MeshConfig::with_links(1),
            ..Config::default()
        };
        let (events_tx, events) = mpsc::channel();
        Self {
            state: FloodState::new(config, Instant::now()),
            target: target.addr().parse().unwrap(),
            link: None,
            held_dial: None,
            hold_dials: false,
            next_peer: 0,
            events_tx,
            events,
            printed: Vec::new(),
        }
    }

    /// Types `lines` into this peer, as its user would.
    fn type_lines<S: AsRef<str>>(&mut self, lines: &[S]) {
        for line in lines {
            self.feed(Input::LineTyped(line.as_ref().as_bytes()));
        }
    }

    /// Joins the room: the state dials its contact at once.
    fn start(&mut self) {
        let contact = Some(self.target);
        self.feed(Input::Start { contact });
    }

    /// Feeds one input and carries out every output.
    fn feed(&mut self, input: Input<'_>) {
        let result = self.state.handle_input(Instant::now(), input);
        // Only typed lines may be refused, and the test types each line once.
        result.unwrap_or_else(|e| panic!("the test peer refused an input: {e}"));
        loop {
            let mut written = Vec::new();
            while let Some(output) = self.state.poll_output() {
                match output {
                    Output::Print(index) => self.printed.push(index),
                    Output::Send { peer, bytes } => {
                        if let Some(link) = self.link.as_mut().filter(|l| l.peer == peer) {
                            // A failed write shows up as the reader's end of stream.
                            let _ = link.stream.write_all(&bytes);
                            written.push(peer);
                        }
                    }
                    Output::Dial(addr) if addr == self.target && self.link.is_none() => {
                        if self.hold_dials {
                            self.held_dial = Some(addr);
                        } else {
                            self.dial(addr);
                        }
                    }
                    Output::Dial(addr) => self.feed(Input::DialFailed(addr)),
                    Output::Disconnect { peer, .. } => {
                        if let Some(link) = self.link.take_if(|l| l.peer == peer) {
                            let _ = link.stream.shutdown(Shutdown::Both);
                        }
                    }
                    Output::PeerReady(_) | Output::Notice(_) => {}
                }
            }
            if written.is_empty() {
                return;
            }
            for peer in written {
                if self.state.is_connected(peer) {
                    let now = Instant::now();
                    self.state.handle_input(now, Input::Sent(peer)).unwrap();
                }
            }
        }
    }

    /// Connects to `addr` and starts reading from it.
    fn dial(&mut self, addr: SocketAddr) {
        let Ok(stream) = TcpStream::connect(addr) else {
            self.feed(Input::DialFailed(addr));
            return;
        };
        stream.set_nodelay(true).unwrap();
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        let mut reader = stream.try_clone().unwrap();
        let events = self.events_tx.clone();
        thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if events.send(Event::Bytes(peer, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(Event::Closed(peer));
        });
        self.link = Some(Link {
            peer,
            stream,
            received: 0,
        });
        self.feed(Input::Dialed { peer, addr });
    }

    /// Lets the state dial again, carrying out a dial it asked for meanwhile.
    fn release_dials(&mut self) {
        self.hold_dials = false;
        if let Some(addr) = self.held_dial.take() {
            self.dial(addr);
        }
    }

    /// Runs the loop until `done` holds; panics with `what` after [`DEADLINE`].
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}");
            let wake = self.state.poll_timeout().unwrap_or(deadline).min(deadline);
            match self
                .events
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(Event::Bytes(peer, bytes)) => {
                    if let Some(link) = self.link.as_mut().filter(|l| l.peer == peer) {
                        link.received += bytes.len();
                        self.feed(Input::Received(peer, &bytes));
                    }
                }
                Ok(Event::Closed(peer)) => {
                    if self.state.is_connected(peer) {
                        self.link = None;
                        self.feed(Input::Closed(peer));
                    }
                }
                Err(_) => {
                    if self
                        .state
                        .poll_timeout()
                        .is_some_and(|t| t <= Instant::now())
                    {
                        self.feed(Input::Timeout);
                    }
                }
            }
        }
    }

    /// Runs until the link to the real client is up.
    fn wait_linked(&mut self) {
        self.run_until("a link to the real client", |p| {
            p.link.as_ref().is_some_and(|l| p.state.is_ready(l.peer))
        });
    }

    /// Cuts the link as a network failure would; returns the bytes the real client sent on
    /// it. Dials are held back until [`TestPeer::release_dials`].
    fn cut_link(&mut self) -> usize {
        let link = self.link.take().expect("a link to cut");
        let _ = link.stream.shutdown(Shutdown::Both);
        self.hold_dials = true;
        self.feed(Input::Closed(link.peer));
        link.received
    }

    /// Whether this peer holds every string of `lines`.
    fn holds<S: AsRef<str>>(&self, lines: &[S]) -> bool {
        lines.iter().all(|l| self.state.contains(l.as_ref()))
    }

    /// Checks that each string of the room was printed exactly once, in order.
    fn assert_printed_once(&self, count: usize) {
        assert_eq!(self.state.messages().len(), count, "the test peer's room");
        let want: Vec<usize> = (0..count).collect();
        assert!(
            self.printed == want,
            "the test peer printed something twice or not at all"
        );
    }
}

/// Starts a real client on `rt` and feeds it the history through its stdin pipe.
fn client_with_history(rt: Rt, history: &[String]) -> Client {
    let mut real = Spawn::new("real", rt).start();
    real.say_many(history);
    real.wait_printed_count(history.len());
    real
}

/// A fresh peer receives the whole history; the link is cut; both sides type while apart;
/// the link is made again and costs a small fraction of the first; nothing prints twice.
fn a_link_made_again_costs_the_difference(rt: Rt, client: u64) {
    let history = history();
    let mut real = client_with_history(rt, &history);

    let mut peer = TestPeer::new(&real, client);
    peer.start();
    peer.wait_linked();
    peer.run_until("the whole history at the test peer", |p| p.holds(&history));
    let first = peer.cut_link();

    let at_real = ["typed at the real client while apart", "and one more"];
    let at_peer = ["typed at the test peer while apart"];
    real.say_many(&at_real);
    peer.type_lines(&at_peer);
    real.wait_printed(&at_real);
    peer.release_dials();
    peer.wait_linked();
    peer.run_until("the lines typed apart at the test peer", |p| {
        p.holds(&at_real)
    });
    real.wait_printed(&at_peer);
    let second = peer.cut_link();

    eprintln!("{rt:?}: first link {first} bytes, link made again {second} bytes");
    assert!(
        first > HISTORY * 40,
        "the first link carried the history: {first} bytes"
    );
    assert!(
        second * SMALL_FRACTION < first,
        "the link made again cost {second} bytes, the first {first}"
    );
    peer.assert_printed_once(HISTORY + at_real.len() + at_peer.len());
    let mut want: Vec<&str> = history.iter().map(String::as_str).collect();
    want.extend(at_real);
    want.extend(at_peer);
    real.end_input();
    let (status, out) = real.wait_exit();
    assert!(status.success(), "the real client exited with {status}");
    assert_exactly("the real client", &out, &want);
}

/// A peer that already holds the same history (typed there too) costs little to link to,
/// while a fresh one must be sent all of it.
fn a_peer_that_holds_the_history_costs_little(rt: Rt, client: u64) {
    let history = history();
    let mut real = client_with_history(rt, &history);

    let mut fresh = TestPeer::new(&real, client);
    fresh.start();
    fresh.wait_linked();
    fresh.run_until("the whole history at the fresh peer", |p| p.holds(&history));
    let full = fresh.cut_link();

    let mut twin = TestPeer::new(&real, client + 1);
    twin.type_lines(&history);
    twin.type_lines(&["only the twin had this"]);
    real.say("only the real client had this");
    real.wait_printed(&["only the real client had this"]);
    twin.start();
    twin.wait_linked();
    twin.run_until("the real client's line at the twin", |p| {
        p.holds(&["only the real client had this"])
    });
    real.wait_printed(&["only the twin had this"]);
    let little = twin.cut_link();

    eprintln!("{rt:?}: fresh peer {full} bytes, peer with the history {little} bytes");
    assert!(
        full > HISTORY * 40,
        "the fresh peer got the history: {full} bytes"
    );
    assert!(
        little * SMALL_FRACTION < full,
        "the peer that holds the history cost {little} bytes, a fresh one {full}"
    );
    twin.assert_printed_once(HISTORY + 2);
    let mut want: Vec<&str> = history.iter().map(String::as_str).collect();
    want.extend(["only the real client had this", "only the twin had this"]);
    real.end_input();
    let (status, out) = real.wait_exit();
    assert!(status.success(), "the real client exited with {status}");
    assert_exactly("the real client", &out, &want);
}

#[test]
fn a_link_made_again_costs_the_difference_on_smol() {
    a_link_made_again_costs_the_difference(Smol, 0x7e57_0001);
}

#[test]
fn a_link_made_again_costs_the_difference_on_async_std() {
    a_link_made_again_costs_the_difference(AsyncStd, 0x7e57_0011);
}

#[test]
fn a_peer_that_holds_the_history_costs_little_on_smol() {
    a_peer_that_holds_the_history_costs_little(Smol, 0x7e57_0021);
}

#[test]
fn a_peer_that_holds_the_history_costs_little_on_async_std() {
    a_peer_that_holds_the_history_costs_little(AsyncStd, 0x7e57_0031);
}
