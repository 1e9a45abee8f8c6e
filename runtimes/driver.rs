//! The driver: moves bytes and lines between the world and a [`FloodState`], on any [`Runtime`].
//!
//! One task owns the state and every connection's handle. Each connection has a reader task
//! and a writer task; the listener has its own task; stdin and stdout each have a thread. They
//! all talk to the owner over bounded channels, so memory stays bounded and a slow party
//! slows its sender down instead of piling up bytes.

use std::fmt::Display;
use std::future::Future;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TryRecvError};
use floodchat::{Config, FloodState, Input, MAX_MESSAGE_LEN, Output, PeerId};
use futures_lite::future::{or, pending, race};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use hashbrown::HashMap;

use crate::cli::Cli;
use crate::terminal::{self, Terminal};

/// Bytes read from a socket at once.
const READ_BUF: usize = 16 * 1024;
/// Events from tasks waiting for the owner.
const EVENT_QUEUE: usize = 256;
/// Lines from stdin waiting for the owner.
const STDIN_QUEUE: usize = 16;
/// Strings waiting to be printed on stdout.
const STDOUT_QUEUE: usize = 256;
/// The longest line kept from stdin: one more than a message and its `\r`, so that the core
/// still sees that an over-long line is too long.
const LINE_KEPT: usize = MAX_MESSAGE_LEN + 2;
/// How long to wait for peers to close after our last bytes, when leaving.
const LINGER: Duration = Duration::from_secs(2);
/// The most characters of a bad answer to the prompt that are shown back.
const ECHO_MAX: usize = 80;
/// How long the listener rests after a failed accept (for example, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The start-up question when no `--peer` is given.
const PEER_QUESTION: &str = "Address of a peer (IP:PORT), or empty to start a new network: ";

/// What differs between async runtimes: spawning, sockets and timers.
pub trait Runtime: 'static {
    /// A TCP stream; clones share the socket.
    type Stream: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static;
    /// A TCP listener.
    type Listener: Send + Sync + 'static;
    /// Runs `fut` to completion on this thread.
    fn block_on<T>(fut: impl Future<Output = T>) -> T;
    /// Runs `fut` in the background.
    fn spawn(fut: impl Future<Output = ()> + Send + 'static);
    /// Connects to `addr`.
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Listens on `addr`.
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Accepts one connection.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;
    /// The local address of `stream`.
    fn stream_local_addr(stream: &Self::Stream) -> io::Result<SocketAddr>;
    /// Shuts down one or both directions of `stream`, ignoring errors.
    fn shutdown(stream: &Self::Stream, how: Shutdown);
    /// Waits until `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// Writes the socket half of a [`Runtime`] impl for a runtime whose `net` module has the
/// usual `TcpStream` and `TcpListener`, as smol's and async-std's both do.
macro_rules! tcp_sockets {
    ($net:ident) => {
        type Stream = $net::TcpStream;
        type Listener = $net::TcpListener;

        fn connect(
            addr: std::net::SocketAddr,
        ) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send {
            $net::TcpStream::connect(addr)
        }

        fn bind(
            addr: std::net::SocketAddr,
        ) -> impl std::future::Future<Output = std::io::Result<Self::Listener>> + Send {
            $net::TcpListener::bind(addr)
        }

        fn accept(
            listener: &Self::Listener,
        ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, std::net::SocketAddr)>>
        + Send {
            listener.accept()
        }

        fn local_addr(listener: &Self::Listener) -> std::io::Result<std::net::SocketAddr> {
            listener.local_addr()
        }

        fn stream_local_addr(stream: &Self::Stream) -> std::io::Result<std::net::SocketAddr> {
            stream.local_addr()
        }

        fn shutdown(stream: &Self::Stream, how: std::net::Shutdown) {
            let _ = stream.shutdown(how);
        }
    };
}
pub(crate) use tcp_sockets;

/// Prints `floodchat: <message>` on stderr, ignoring a closed stderr.
pub fn say(message: impl Display) {
    if !terminal::notice(format_args!("floodchat: {message}")) {
        let _ = writeln!(io::stderr(), "floodchat: {message}");
    }
}

/// Runs a client until stdin ends (or forever with `--stay`) or a signal; `Err` holds why it
/// could not run.
pub fn run<R: Runtime>(cli: &Cli) -> Result<(), String> {
    let (stop_tx, stop_rx) = async_channel::bounded(1);
    handle_signals(stop_tx.clone());
    let (stdin_tx, stdin_rx) = async_channel::bounded(STDIN_QUEUE);
    let (stdout_tx, stdout_rx) = async_channel::bounded(STDOUT_QUEUE);
    let stdout = match Terminal::open() {
        Some(terminal) => {
            let question = cli.peer.is_none().then_some(PEER_QUESTION);
            terminal.spawn(question, stdin_tx, stdout_rx, stop_tx)
        }
        None => {
            thread::spawn(move || read_stdin(stdin_tx));
            spawn_stdout(stdout_rx, stop_tx)
        }
    };
    let config = Config {
        greeting_timeout: cli.greeting_timeout,
        stall_timeout: cli.stall_timeout,
        ..Config::default()
    };
    let (events_tx, events_rx) = async_channel::bounded(EVENT_QUEUE);
    let client = Client::<R> {
        state: FloodState::new(config, Instant::now()),
        conns: HashMap::new(),
        next_id: 0,
        events_tx,
        events_rx,
        stdout: stdout_tx,
        stop: stop_rx,
        stopped: false,
        accepting: true,
    };
    let result = R::block_on(client.run(cli, stdin_rx));
    let _ = stdout.join();
    result
}

/// Something a task tells the owner.
enum Event<S> {
    Bytes(PeerId, Vec<u8>),
    Sent(PeerId),
    Closed(PeerId),
    Accepted(S, SocketAddr),
}

/// What woke the owner up.
enum Wake<S> {
    Event(Event<S>),
    Line(Vec<u8>),
    StdinEnded,
    Timer,
    Stop,
}

/// The owner's handle on one connection.
struct Conn<S> {
    writer: Sender<Vec<u8>>,
    stream: S,
    addr: SocketAddr,
    outbound: bool,
    ready: bool,
}

/// The task that owns the state and the connections.
struct Client<R: Runtime> {
    state: FloodState,
    conns: HashMap<PeerId, Conn<R::Stream>>,
    next_id: u64,
    events_tx: Sender<Event<R::Stream>>,
    events_rx: Receiver<Event<R::Stream>>,
    stdout: Sender<Arc<str>>,
    stop: Receiver<()>,
    stopped: bool,
    accepting: bool,
}

impl<R: Runtime> Client<R> {
    async fn run(mut self, cli: &Cli, stdin: Receiver<Vec<u8>>) -> Result<(), String> {
        let peer = match cli.peer {
            Some(addr) => Some(addr),
            None => self.ask_peer(&stdin).await,
        };
        let via = match peer {
            Some(addr) => self.join(addr).await,
            None => None,
        };
        if self.stopped {
            return Ok(());
        }
        let listener = R::bind(cli.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
        let port = R::local_addr(&listener)
            .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?
            .port();
        let shown = SocketAddr::new(reachable_ip(cli.listen.ip(), via), port);
        if !terminal::notice(format_args!("Listening on {shown}")) {
            let _ = writeln!(io::stderr(), "Listening on {shown}");
        }
        R::spawn(accept_loop::<R>(listener, self.events_tx.clone()));

        let mut stdin = Some(stdin);
        while !self.stopped && (stdin.is_some() || cli.stay) {
            self.step(&mut stdin, None).await;
        }
        self.leave().await;
        Ok(())
    }

    /// Asks for a peer's address on stdin; `None` for a new network.
    async fn ask_peer(&mut self, stdin: &Receiver<Vec<u8>>) -> Option<SocketAddr> {
        if !terminal::is_open() {
            let _ = write!(io::stderr(), "{PEER_QUESTION}");
        }
        let line = self.or_stop(stdin.recv()).await?.ok()?;
        let answer = String::from_utf8_lossy(&line);
        let answer = answer.trim();
        if answer.is_empty() {
            return None;
        }
        let addr = answer.parse().ok();
        if addr.is_none() {
            let shown: String = answer.chars().take(ECHO_MAX).collect();
            let more = if shown.len() < answer.len() {
                "..."
            } else {
                ""
            };
            say(format!(
                "\"{shown}{more}\" is not an IP:PORT address; starting a new network"
            ));
        }
        addr
    }

    /// Connects to the first peer and waits for its greeting; returns our IP on that socket.
    async fn join(&mut self, addr: SocketAddr) -> Option<IpAddr> {
        let timeout = self.state.config().greeting_timeout;
        let give_up = async move {
            R::sleep_until(Instant::now() + timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        let stream = match self.or_stop(or(R::connect(addr), give_up)).await? {
            Ok(stream) => stream,
            Err(e) => {
                say(format!(
                    "no floodchat peer at {addr} ({e}); starting a new network"
                ));
                return None;
            }
        };
        let via = R::stream_local_addr(&stream).ok().map(|a| a.ip());
        let id = self.add_conn(stream, addr, true).await;
        while !self.stopped && self.conns.get(&id).is_some_and(|c| !c.ready) {
            self.step(&mut None, None).await;
        }
        via
    }

    /// Sends what is owed, closes our side of every connection and waits a little for peers
    /// to close theirs.
    async fn leave(&mut self) {
        self.accepting = false;
        while !self.stopped && !self.state.is_flushed() {
            self.step(&mut None, None).await;
        }
        for conn in self.conns.values() {
            R::shutdown(&conn.stream, Shutdown::Write);
        }
        let deadline = Instant::now() + LINGER;
        while !self.stopped && !self.conns.is_empty() && Instant::now() < deadline {
            self.step(&mut None, Some(deadline)).await;
        }
    }

    /// Waits for `fut`, or `None` if a stop signal comes first.
    async fn or_stop<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        let stop = async {
            signalled(&self.stop).await;
            None
        };
        let result = or(async { Some(fut.await) }, stop).await;
        self.stopped |= result.is_none();
        result
    }

    /// Waits for one thing to happen and handles it; sets `stdin` to `None` when it ends.
    async fn step(&mut self, stdin: &mut Option<Receiver<Vec<u8>>>, until: Option<Instant>) {
        let deadline = [self.state.poll_timeout(), until]
            .into_iter()
            .flatten()
            .min();
        let timer = async {
            match deadline {
                Some(deadline) => R::sleep_until(deadline).await,
                None => pending().await,
            }
            Wake::Timer
        };
        let line = async {
            match stdin {
                Some(rx) => rx.recv().await.map_or(Wake::StdinEnded, Wake::Line),
                None => pending().await,
            }
        };
        let event = async { self.events_rx.recv().await.map_or(Wake::Stop, Wake::Event) };
        let stop = async {
            signalled(&self.stop).await;
            Wake::Stop
        };
        // `race` so that neither a busy network nor a due timer starves the other.
        let wake = or(stop, race(timer, race(event, line))).await;
        match wake {
            Wake::Event(Event::Bytes(id, bytes)) if self.conns.contains_key(&id) => {
                self.feed(Input::Received(id, &bytes)).await
            }
            Wake::Event(Event::Sent(id)) if self.conns.contains_key(&id) => {
                self.feed(Input::Sent(id)).await
            }
            Wake::Event(Event::Closed(id)) if self.conns.contains_key(&id) => {
                self.feed(Input::Closed(id)).await
            }
            Wake::Event(Event::Accepted(stream, addr)) if self.accepting => {
                self.add_conn(stream, addr, false).await;
            }
            // Stale: about a connection already closed, or one accepted while leaving.
            Wake::Event(_) => {}
            Wake::Line(line) => self.feed(Input::LineTyped(&line)).await,
            Wake::StdinEnded => *stdin = None,
            Wake::Timer => self.feed(Input::Timeout).await,
            Wake::Stop => self.stopped = true,
        }
    }

    /// Starts the tasks of a new connection and tells the state.
    async fn add_conn(&mut self, stream: R::Stream, addr: SocketAddr, outbound: bool) -> PeerId {
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let (writer, queue) = async_channel::bounded(self.state.config().max_in_flight + 1);
        R::spawn(read_loop(id, stream.clone(), self.events_tx.clone()));
        R::spawn(write_loop::<R>(
            id,
            stream.clone(),
            queue,
            self.events_tx.clone(),
        ));
        let conn = Conn {
            writer,
            stream,
            addr,
            outbound,
            ready: false,
        };
        self.conns.insert(id, conn);
        self.feed(Input::Connected(id)).await;
        id
    }

    /// Feeds one input to the state and carries out everything it asks.
    async fn feed(&mut self, input: Input<'_>) {
        if let Err(e) = self.state.handle_input(Instant::now(), input) {
            say(e);
        }
        while let Some(output) = self.state.poll_output() {
            self.act(output).await;
        }
    }

    /// Carries out one output of the state.
    async fn act(&mut self, output: Output) {
        match output {
            Output::Print(text) => {
                // A closed stdout is reported by its thread as a stop.
                let _ = self.stdout.send(text).await;
            }
            Output::Send { peer, bytes } => {
                if let Some(conn) = self.conns.get(&peer) {
                    // Full cannot happen (see Config::max_in_flight); closed means the writer
                    // failed. Either way the reader's Closed will follow the shutdown.
                    if conn.writer.try_send(bytes).is_err() {
                        R::shutdown(&conn.stream, Shutdown::Both);
                    }
                }
            }
            Output::PeerReady(peer) => {
                if let Some(conn) = self.conns.get_mut(&peer) {
                    conn.ready = true;
                    terminal::peer_ready();
                    if conn.outbound {
                        say(format!("connected to {}", conn.addr));
                    } else {
                        say(format!("{} joined", conn.addr));
                    }
                }
            }
            Output::Disconnect { peer, reason } => {
                if let Some(conn) = self.conns.remove(&peer) {
                    R::shutdown(&conn.stream, Shutdown::Both);
                    if conn.ready {
                        terminal::peer_gone();
                    }
                    if conn.outbound && !conn.ready {
                        say(format!(
                            "no floodchat peer at {} ({reason}); starting a new network",
                            conn.addr
                        ));
                    } else {
                        say(format!("{}: {reason}", conn.addr));
                    }
                }
            }
        }
    }
}

/// Returns when a stop is asked for; never if no one can ask any more.
async fn signalled(stop: &Receiver<()>) {
    if stop.recv().await.is_err() {
        pending().await
    }
}

/// Forwards what `stream` says to the owner until it ends.
async fn read_loop<S: AsyncRead + Unpin>(id: PeerId, mut stream: S, events: Sender<Event<S>>) {
    let mut buf = vec![0; READ_BUF];
    loop {
        let event = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => Event::Bytes(id, buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
    let _ = events.send(Event::Closed(id)).await;
}

/// Writes each batch of bytes to `stream` and acknowledges it, until the owner drops the queue.
async fn write_loop<R: Runtime>(
    id: PeerId,
    mut stream: R::Stream,
    queue: Receiver<Vec<u8>>,
    events: Sender<Event<R::Stream>>,
) {
    while let Ok(bytes) = queue.recv().await {
        if stream.write_all(&bytes).await.is_err() {
            // The reader then sees the end and reports it.
            R::shutdown(&stream, Shutdown::Both);
            return;
        }
        if events.send(Event::Sent(id)).await.is_err() {
            return;
        }
    }
}

/// Hands accepted connections to the owner.
async fn accept_loop<R: Runtime>(listener: R::Listener, events: Sender<Event<R::Stream>>) {
    let mut failing = false;
    loop {
        match R::accept(&listener).await {
            Ok((stream, addr)) => {
                failing = false;
                if events.send(Event::Accepted(stream, addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    say(format!("cannot accept a connection: {e}"));
                    failing = true;
                }
                R::sleep_until(Instant::now() + ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The stdin thread: sends each line, without its `\n`, until the end of input.
fn read_stdin(lines: Sender<Vec<u8>>) {
    let mut input = io::stdin().lock();
    while let Ok(Some(line)) = read_line(&mut input) {
        if lines.send_blocking(line).is_err() {
            return;
        }
    }
}

/// Reads one line without its `\n`, keeping at most [`LINE_KEPT`] bytes of it; `None` at the
/// end of input.
fn read_line(mut input: impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut kept = (&mut input).take(LINE_KEPT as u64);
    if kept.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() == LINE_KEPT {
        input.skip_until(b'\n')?;
    }
    Ok(Some(line))
}

/// The stdout thread: prints each string on its own line, flushing whenever it has nothing
/// more to print; on a write error (stdout closed) it asks the owner to stop.
fn spawn_stdout(texts: Receiver<Arc<str>>, stop: Sender<()>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut out = BufWriter::new(io::stdout().lock());
        let mut print = || -> io::Result<()> {
            loop {
                let text = match texts.try_recv() {
                    Ok(text) => text,
                    Err(TryRecvError::Empty) => {
                        out.flush()?;
                        match texts.recv_blocking() {
                            Ok(text) => text,
                            Err(_) => break,
                        }
                    }
                    Err(TryRecvError::Closed) => break,
                };
                out.write_all(text.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()
        };
        if print().is_err() {
            let _ = stop.try_send(());
        }
    })
}

/// On Ctrl-C or SIGTERM, asks the owner to stop; on a second one, exits at once.
fn handle_signals(stop: Sender<()>) {
    let signalled = AtomicBool::new(false);
    let handler = move || {
        if signalled.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        let _ = stop.try_send(());
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        say(format!("cannot handle Ctrl-C: {e}"));
    }
}

/// The IP to tell others: the listen IP, else our side of the socket to the first peer, else
/// an interface's, else loopback.
fn reachable_ip(listen: IpAddr, via: Option<IpAddr>) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    let usable = |ip: &IpAddr| {
        !ip.is_unspecified() && !ip.is_loopback() && (ip.is_ipv4() || listen.is_ipv6())
    };
    if let Some(ip) = via.filter(usable) {
        return ip;
    }
    let mut found: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            use if_addrs::IfOperStatus::{Unknown, Up};
            matches!(i.oper_status, Up | Unknown) && !i.is_loopback() && !i.is_link_local()
        })
        .map(|i| i.ip())
        .filter(usable)
        .collect();
    found.sort_by_key(IpAddr::is_ipv6);
    found.first().copied().unwrap_or(Ipv4Addr::LOCALHOST.into())
}
