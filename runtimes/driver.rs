//! The driver: moves bytes and lines between the world and a [`FloodState`], on any [`Runtime`].
//!
//! One task owns the state and every connection's handle. Each connection has a reader task
//! and a writer task and the listener has its own task (`net.rs`); stdin and stdout each have
//! a thread (`stdio.rs`). They all talk to the owner over channels (stdout over a
//! [`Handoff`]) whose contents are bounded, so memory stays bounded and a slow party slows its
//! sender down instead of piling up bytes. The owner decides nothing: it feeds the state
//! what happened, carries out what the state asks, and sleeps until its next deadline.
//!
//! Every boundary moves batches: stdin hands over many lines at once, the owner handles every
//! event that is ready before it waits again and then writes each peer's sends of that step
//! in one write (the writer task takes only what the socket would not), and stdout prints
//! many lines in one write. Stdout is never waited on: it prints the room's log behind a
//! cursor, taking whatever the owner appended since its last write, so a stopped stdout
//! stops neither relaying nor Ctrl-C, and costs no memory beyond the room.

use std::fmt::Display;
use std::future::Future;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TryRecvError};
use async_io::{Async, Timer};
use floodchat::MeshConfig;
use floodchat::secure::Invite;
use floodchat::{Config, FloodState, Input, Output, PeerId};
use futures_lite::future::{or, pending, race};
use hashbrown::HashMap;

use crate::cli::{Cli, Contact, parse_contact};
use crate::datadir::Kept;
use crate::handoff::Handoff;
use crate::keys::{self, Room, os_random_32};
use crate::lines::Lines;
use crate::net::{
    Event, Owner, Stream, accept_loop, dial, reachable_ip, read_loop, shutdown, write_loop,
    write_now,
};
use crate::stdio::{handle_signals, read_stdin, spawn_stdout};
use crate::terminal::{self, Terminal};

/// The largest buffer of a step's sends kept for a link's next step.
const PENDING_KEPT: usize = 64 * 1024;
/// Events from tasks waiting for the owner.
const EVENT_QUEUE: usize = 256;
/// Batches of lines from stdin waiting for the owner.
const STDIN_QUEUE: usize = 4;
/// Bytes of the room's strings handed to stdout at once (at least one string).
const STDOUT_CHUNK: usize = 128 * 1024;
/// Events and stdin batches handled after a wake-up before the owner looks at timers again.
const DRAIN_MAX: usize = 1024;
/// How long an interrupted client waits for a print already handed to stdout.
const STOP_GRACE: Duration = Duration::from_millis(300);
/// The most characters of a bad answer to the prompt that are shown back.
const ECHO_MAX: usize = 80;
/// The start-up question when no `--peer` is given.
const PEER_QUESTION: &str =
    "Address of a peer (IP:PORT) or an invite, or empty to start a new network: ";

/// What differs between smol and async-std: the executor that runs the tasks. Sockets and
/// timers are async-io's, written once in this module for both.
pub trait Runtime: 'static {
    /// Runs `fut` to completion on this thread, as a task beside the ones [`Runtime::spawn`]
    /// starts: a task waking it then wakes no thread, only the executor's queue.
    fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T;
    /// Runs `fut` in the background, on the thread that runs [`Runtime::block_on`].
    fn spawn(fut: impl Future<Output = ()> + Send + 'static);
}

/// Whether to ask for a peer at start-up: not when one is given, nor when a new private room
/// is asked for.
fn asks_peer(cli: &Cli) -> bool {
    cli.peer.is_none() && !cli.private
}

/// Prints a line on stderr as it is (through the terminal when there is one).
fn tell(line: std::fmt::Arguments<'_>) {
    if !terminal::notice(line) {
        let _ = writeln!(io::stderr(), "{line}");
    }
}

/// Prints `floodchat: <message>` on stderr, ignoring a closed stderr.
pub fn say(message: impl Display) {
    if !terminal::notice(format_args!("floodchat: {message}")) {
        let _ = writeln!(io::stderr(), "floodchat: {message}");
    }
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), if it can be read.
fn memory_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The default room limits (bytes of text, lines) for a machine of `memory` bytes: an eighth
/// of it for the room, a line counted as 64 bytes (its text and about 40 of index), within
/// 16 MB to 512 MB and 100,000 to 4,000,000 lines; 128 MB and 2,000,000 lines when the
/// memory is unknown, as for a 1 GiB machine.
fn room_limits(memory: Option<u64>) -> (usize, usize) {
    const MB: u64 = 1024 * 1024;
    let share = memory.map_or(128 * MB, |m| m / 8);
    let bytes = share.clamp(16 * MB, 512 * MB);
    let lines = (share / 64).clamp(100_000, 4_000_000);
    (bytes as usize, lines as usize)
}

/// Runs a client until stdin ends (or forever with `--stay`) or a signal; `Err` holds why it
/// could not run.
pub fn run<R: Runtime>(cli: &Cli) -> Result<(), String> {
    // First, so that a second client on the same directory stops before anything else.
    let kept = cli.data_dir.as_deref().map(Kept::open).transpose()?;
    let identity = keys::identity(kept.as_ref().map(Kept::dir))?;
    let (entropy, seed) = (os_random_32()?, os_random()?);
    let (stop_tx, stop_rx) = async_channel::bounded(1);
    handle_signals(stop_tx.clone());
    let (handoff, heard) = Handoff::new();
    let handoff = Arc::new(handoff);
    let (default_mb, default_lines) = room_limits(memory_total());
    let defaults = Config::default();
    let config = Config {
        identity,
        entropy,
        seed,
        greeting_timeout: cli.greeting_timeout,
        stall_timeout: cli.stall_timeout,
        max_room_bytes: cli
            .max_room_mb
            .map_or(default_mb, |mb| mb as usize * 1024 * 1024),
        max_room_strings: cli.max_room_lines.map_or(default_lines, |n| n as usize),
        flood_burst: cli.flood_burst.unwrap_or(defaults.flood_burst),
        // The default's bytes a line, for a burst raised.
        flood_burst_bytes: cli.flood_burst.map_or(defaults.flood_burst_bytes, |n| {
            n.saturating_mul(defaults.flood_burst_bytes / defaults.flood_burst)
                .max(defaults.flood_burst_bytes)
        }),
        mesh: MeshConfig {
            dial_timeout: cli.greeting_timeout,
            max_per_ip: usize::from(cli.max_per_ip),
            ..MeshConfig::with_links(usize::from(cli.links))
        },
        known: kept.as_ref().map_or(Vec::new(), |k| k.known().to_vec()),
        ..defaults
    };
    let ask = asks_peer(cli) && config.known.is_empty();
    let now = Instant::now();
    let mut state = FloodState::new(config, now);
    let (mut said, mut scrollback) = (Vec::new(), Vec::new());
    if let Some(kept) = &kept {
        let (mut keeper, notes) = kept.restore(&mut state)?;
        handoff.keep_with(move |chunk| keeper.keep(chunk));
        said = notes;
        scrollback = kept.scrollback(&state);
    }
    let (stdin_rx, stdout) = match Terminal::open() {
        Some(mut terminal) => {
            if let Some(kept) = &kept {
                let (lines, file) = kept.dir().open_recall();
                terminal.keep_recall(lines, file);
            }
            let question = ask.then_some(PEER_QUESTION);
            terminal.spawn(question, handoff.clone(), stop_tx)
        }
        None => {
            let (stdin_tx, stdin_rx) = async_channel::bounded(STDIN_QUEUE);
            thread::spawn(move || read_stdin(stdin_tx));
            (stdin_rx, spawn_stdout(handoff.clone())?)
        }
    };
    for line in scrollback {
        if !terminal::notice(&line) {
            let _ = writeln!(io::stdout(), "{line}");
        }
    }
    said.into_iter().for_each(say);
    let (events_tx, events_rx) = async_channel::bounded(EVENT_QUEUE);
    // What the history holds was printed by an earlier run.
    let printed = state.messages().len();
    let client = Client::<R> {
        stdout: Stdout {
            handoff: handoff.clone(),
            heard,
            cursor: printed,
            draining: false,
        },
        state,
        kept,
        ask,
        sockets: HashMap::new(),
        next_id: 0,
        events_tx,
        events_rx,
        early: Lines::default(),
        alarm: Alarm::default(),
        unflushed: Vec::new(),
        stop: stop_rx,
        stopped: false,
        failed: None,
        accepting: true,
        runtime: PhantomData,
    };
    let result = R::block_on(client.run(cli.clone(), stdin_rx));
    handoff.close();
    // A stdout thread stuck in a write is left behind: the process ends without it.
    if handoff.is_idle() {
        let _ = stdout.join();
    }
    result
}

/// What woke the owner up.
enum Wake {
    Event(Event),
    Lines(Lines),
    StdinEnded,
    /// Stdout took or printed lines, or failed.
    Printed,
    Timer,
    Stop,
}

/// The owner's handle on one connection's socket and its writer task.
struct Socket {
    /// Bytes for the writer task, with how many sends they hold.
    writer: Sender<(Vec<u8>, usize)>,
    /// Sends handed to the writer task and not yet reported written.
    queued: usize,
    /// Bytes of this step's sends, written at its end (empty while the writer task has some).
    pending: Vec<u8>,
    /// How many sends `pending` holds.
    pending_sends: usize,
    /// Closed when the owner drops the connection, so that its tasks stop at once instead of
    /// holding their buffers while they wait for room in the owner's queue.
    _alive: Sender<()>,
    stream: Stream,
}

/// The owner's side of the stdout thread: a cursor into the room's log.
struct Stdout {
    handoff: Arc<Handoff>,
    /// Wakes the owner when stdout took or printed lines it waits on, or failed.
    heard: Receiver<()>,
    /// How many of the room's strings were handed to the thread.
    cursor: usize,
    /// Whether the owner waits for stdout to print everything.
    draining: bool,
}

/// The owner's timer, kept across steps and reset in place: arming the reactor's timer costs
/// system calls and a wake-up of the reactor, and the core's deadlines move later with almost
/// every frame. So the alarm moves only when a deadline comes before it; ringing early is
/// harmless (the owner looks at the core's deadline again).
struct Alarm {
    /// When the alarm rings; `None` when it is not armed.
    at: Option<Instant>,
    /// Set exactly when `at` is: a timer that rang, or was never set, waits forever.
    timer: Timer,
}

impl Default for Alarm {
    fn default() -> Self {
        Self {
            at: None,
            timer: Timer::never(),
        }
    }
}

impl Alarm {
    /// Makes sure the alarm rings by `deadline`, if any.
    fn arm(&mut self, deadline: Option<Instant>, now: Instant) {
        let Some(deadline) = deadline else {
            return;
        };
        // An alarm already due may have rung into a wait that lost its race: set it again.
        if self.at.is_some_and(|at| now < at && at <= deadline) {
            return;
        }
        self.at = Some(deadline);
        self.timer.set_at(deadline);
    }

    /// Waits until the alarm rings, then disarms it; forever if it is not armed.
    async fn ring(&mut self) {
        (&mut self.timer).await;
        self.at = None;
    }
}

/// The task that owns the state and the connections.
struct Client<R: Runtime> {
    state: FloodState,
    /// The data directory, with `--data-dir`.
    kept: Option<Kept>,
    /// Whether to ask for a peer: none given, and none kept.
    ask: bool,
    sockets: HashMap<PeerId, Socket>,
    next_id: u64,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    stdout: Stdout,
    /// Lines typed after the answer to the prompt, before the room was joined.
    early: Lines,
    alarm: Alarm,
    /// Peers with sends in `pending`, to be written at the end of the step.
    unflushed: Vec<PeerId>,
    stop: Receiver<()>,
    stopped: bool,
    /// Why the client must end with an error.
    failed: Option<String>,
    accepting: bool,
    /// The runtime that spawns the tasks.
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> Client<R> {
    /// Runs the client; returns the result.
    async fn run(mut self, cli: Cli, stdin: Receiver<Lines>) -> Result<(), String> {
        let result = self.chat(&cli, stdin).await;
        let result = match self.failed.take() {
            Some(e) => Err(e),
            None => result,
        };
        // Interrupted while printing: a moment for the lines already handed over.
        let grace = Instant::now() + STOP_GRACE;
        self.stdout.draining = true;
        while !self.stdout.handoff.is_idle() && Instant::now() < grace {
            let _ = self.stdout.handoff.offer(|_| false, true);
            let heard = async { self.stdout.heard.recv().await.is_ok() };
            let late = async {
                Timer::at(grace).await;
                false
            };
            if !or(heard, late).await {
                break;
            }
        }
        result
    }

    async fn chat(&mut self, cli: &Cli, stdin: Receiver<Lines>) -> Result<(), String> {
        // The port kept from the last run, where the room's clients look for us, if free.
        let kept_port =
            (self.kept.as_ref()).and_then(|k| k.port().filter(|_| cli.listen.port() == 0));
        let kept_listener = kept_port
            .and_then(|p| Async::<TcpListener>::bind(SocketAddr::new(cli.listen.ip(), p)).ok());
        let listener = match kept_listener {
            Some(listener) => listener,
            None => Async::<TcpListener>::bind(cli.listen)
                .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?,
        };
        let port = listener
            .get_ref()
            .local_addr()
            .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?
            .port();
        self.state.set_listen_port(port);
        if let Some(kept) = &self.kept {
            kept.save_port(port);
        }
        let contact = match cli.peer {
            Some(contact) => Some(contact),
            None if !self.ask => None,
            None => self.ask_peer(&stdin).await,
        };
        let room = Room::choose_kept(cli, contact.as_ref(), self.kept.as_ref().map(Kept::dir))?;
        self.state.set_room(room.key);
        let via = self.join(contact.map(|c| c.addr())).await;
        if self.stopped {
            return Ok(());
        }
        let shown = SocketAddr::new(reachable_ip(cli.listen.ip(), via), port);
        tell(format_args!("Listening on {shown}"));
        if let Some(key) = room.invite_key {
            tell(format_args!("Invite: {}", Invite { addr: shown, key }));
        }
        R::spawn(accept_loop(listener, self.events_tx.clone()));

        let early = std::mem::take(&mut self.early);
        self.typed(&early);
        self.print();
        let mut stdin = Some(stdin);
        while !self.stopped && (stdin.is_some() || cli.stay) {
            self.step(&mut stdin).await;
        }
        self.leave().await;
        Ok(())
    }

    /// Asks for a peer's address or an invite on stdin; `None` for a new network.
    async fn ask_peer(&mut self, stdin: &Receiver<Lines>) -> Option<Contact> {
        if !terminal::is_open() {
            let _ = write!(io::stderr(), "{PEER_QUESTION}");
        }
        let lines = self.or_stop(stdin.recv()).await?.ok()?;
        let (answer, early) = lines.split_first()?;
        self.early = early;
        let answer = String::from_utf8_lossy(&answer);
        let answer = answer.trim();
        if answer.is_empty() {
            return None;
        }
        match parse_contact(answer) {
            Ok(contact) => Some(contact),
            Err(e) => {
                let shown: String = answer.chars().take(ECHO_MAX).collect();
                let more = if shown.len() < answer.len() {
                    "..."
                } else {
                    ""
                };
                say(format!("\"{shown}{more}\": {e}; starting a new network"));
                None
            }
        }
    }

    /// Starts the state, and with a first contact waits until it is linked or has failed (the
    /// state tells the user which); returns our IP on the socket to the contact.
    async fn join(&mut self, contact: Option<SocketAddr>) -> Option<IpAddr> {
        self.feed(Input::Start { contact });
        contact?;
        while !self.stopped && self.state.is_joining() {
            self.step(&mut None).await;
        }
        // Joined through the contact or through a client it pointed us to.
        let linked = self
            .sockets
            .iter()
            .find(|(p, _)| self.state.is_ready(**p))?
            .1;
        linked.stream.get_ref().local_addr().ok().map(|a| a.ip())
    }

    /// Leaves as the state decides (once the links have everything, or have stopped making
    /// progress), waits for every connection to close, and prints what is left to print.
    async fn leave(&mut self) {
        self.accepting = false;
        self.feed(Input::EndOfInput);
        while !self.stopped && !self.state.has_left() {
            self.step(&mut None).await;
        }
        self.stdout.draining = true;
        self.print();
        while !self.stopped && !self.all_printed() {
            self.step(&mut None).await;
        }
    }

    /// Whether stdout has printed every string of the room.
    fn all_printed(&self) -> bool {
        self.stdout.cursor == self.state.messages().len() && self.stdout.handoff.is_idle()
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

    /// Waits for something to happen, handles it and everything else already waiting, and
    /// hands stdout its next chunk; sets `stdin` to `None` when it ends.
    async fn step(&mut self, stdin: &mut Option<Receiver<Lines>>) {
        // What was fed since the last step (joining, leaving) goes out before the wait.
        self.flush();
        self.alarm.arm(self.state.poll_timeout(), Instant::now());
        let alarm = &mut self.alarm;
        let timer = async {
            alarm.ring().await;
            Wake::Timer
        };
        let lines = async {
            match stdin {
                Some(rx) => rx.recv().await.map_or(Wake::StdinEnded, Wake::Lines),
                None => pending().await,
            }
        };
        let event = async { self.events_rx.recv().await.map_or(Wake::Stop, Wake::Event) };
        let printed = async {
            match self.stdout.heard.recv().await {
                Ok(()) => Wake::Printed,
                Err(_) => pending().await,
            }
        };
        let stop = async {
            signalled(&self.stop).await;
            Wake::Stop
        };
        // `race` so that neither a busy network nor a due timer starves the other.
        let wake = or(stop, race(timer, race(printed, race(event, lines)))).await;
        self.handle(wake, stdin);
        // Everything else already waiting, before sleeping again.
        for _ in 0..DRAIN_MAX {
            if self.stopped {
                break;
            }
            let wake = match self.events_rx.try_recv() {
                Ok(event) => Wake::Event(event),
                Err(_) => match stdin.as_ref().map(Receiver::try_recv) {
                    Some(Ok(lines)) => Wake::Lines(lines),
                    Some(Err(TryRecvError::Closed)) => Wake::StdinEnded,
                    _ => break,
                },
            };
            self.handle(wake, stdin);
        }
        self.flush();
        self.print();
    }

    /// Handles one wake-up.
    fn handle(&mut self, wake: Wake, stdin: &mut Option<Receiver<Lines>>) {
        match wake {
            Wake::Event(Event::Bytes(id, bytes)) if self.sockets.contains_key(&id) => {
                self.feed(Input::Received(id, &bytes))
            }
            Wake::Event(Event::Sent(id, count)) => {
                if let Some(socket) = self.sockets.get_mut(&id) {
                    socket.queued -= count;
                }
                self.written(id, count);
            }
            Wake::Event(Event::Closed(id)) if self.sockets.contains_key(&id) => {
                self.feed(Input::Closed(id))
            }
            Wake::Event(Event::Accepted(stream, addr)) if self.accepting => {
                self.add_conn(stream, addr, false);
            }
            Wake::Event(Event::Dialed(stream, addr)) => {
                if self.accepting {
                    self.add_conn(stream, addr, true);
                }
            }
            Wake::Event(Event::DialFailed(addr)) => {
                self.feed(Input::DialFailed(addr));
            }
            // Stale: about a connection already closed, or one accepted while leaving.
            Wake::Event(_) => {}
            Wake::Lines(lines) => self.typed(&lines),
            Wake::StdinEnded => *stdin = None,
            // `print`, at the end of the step, hands over more or hears of a failure.
            Wake::Printed => {}
            Wake::Timer => {
                if self
                    .state
                    .poll_timeout()
                    .is_some_and(|t| t <= Instant::now())
                {
                    self.feed(Input::Timeout);
                }
            }
            Wake::Stop => self.stopped = true,
        }
    }

    /// Feeds each line of a batch to the state.
    fn typed(&mut self, lines: &Lines) {
        for line in lines.iter() {
            self.feed(Input::LineTyped(line));
        }
    }

    /// Hands stdout the next strings of the room, as many as its buffer takes.
    fn print(&mut self) {
        let Stdout {
            handoff,
            cursor,
            draining,
            ..
        } = &mut self.stdout;
        let state = &self.state;
        let fill = |buf: &mut Vec<u8>| {
            for text in state.messages_from(*cursor) {
                if !buf.is_empty() && buf.len() + text.len() >= STDOUT_CHUNK {
                    return true;
                }
                buf.extend_from_slice(text.as_bytes());
                buf.push(b'\n');
                *cursor += 1;
            }
            false
        };
        if let Err(e) = handoff.offer(fill, *draining) {
            // A closed pipe is a reader that left, as with `| head`; anything else is an
            // error the user must hear about.
            if e.kind() != io::ErrorKind::BrokenPipe {
                self.failed = Some(format!("cannot write to stdout: {e}"));
            }
            self.stopped = true;
        }
    }

    /// Starts the tasks of a new connection and tells the state.
    fn add_conn(&mut self, stream: Async<TcpStream>, addr: SocketAddr, outbound: bool) -> PeerId {
        let id = PeerId(self.next_id);
        self.next_id += 1;
        // Small writes go out at once: writes are batched here.
        let _ = stream.get_ref().set_nodelay(true);
        let stream = Arc::new(stream);
        // Unbounded here, bounded by the state: it has at most `Config::max_in_flight` sends
        // to a peer unacknowledged, and a send leaves this queue before it is acknowledged.
        let (writer, queue) = async_channel::unbounded();
        let (alive_tx, alive) = async_channel::bounded(1);
        let owner = Owner {
            events: self.events_tx.clone(),
            alive,
        };
        R::spawn(read_loop(id, stream.clone(), owner.clone()));
        R::spawn(write_loop(id, stream.clone(), queue, owner));
        let socket = Socket {
            writer,
            queued: 0,
            pending: Vec::new(),
            pending_sends: 0,
            _alive: alive_tx,
            stream,
        };
        self.sockets.insert(id, socket);
        let input = if outbound {
            Input::Dialed { peer: id, addr }
        } else {
            Input::Accepted {
                peer: id,
                remote: addr,
            }
        };
        self.feed(input);
        id
    }

    /// Tells the state that `count` sends to `peer` were written, while it is connected.
    fn written(&mut self, peer: PeerId, count: usize) {
        for _ in 0..count {
            if self.sockets.contains_key(&peer) {
                self.feed(Input::Sent(peer));
            }
        }
    }

    /// Hands `bytes`, holding `sends` sends, to the connection's writer task.
    fn to_writer(socket: &mut Socket, bytes: Vec<u8>, sends: usize) {
        // Closed means the writer failed; the reader's Closed will follow the shutdown.
        if socket.writer.try_send((bytes, sends)).is_err() {
            shutdown(&socket.stream);
        } else {
            socket.queued += sends;
        }
    }

    /// Feeds one input to the state and carries out everything it asks.
    fn feed(&mut self, input: Input<'_>) {
        if let Err(e) = self.state.handle_input(Instant::now(), input) {
            say(e);
        }
        while let Some(output) = self.state.poll_output() {
            self.act(output);
        }
    }

    /// Writes each peer's sends of this step in one write if its socket takes them at once
    /// (no wake-up of a writer task and back), else hands the rest to the writer task; tells
    /// the state of the sends written, and writes what that makes it send, until it is done.
    fn flush(&mut self) {
        while let Some(peer) = self.unflushed.pop() {
            let Some(socket) = self.sockets.get_mut(&peer) else {
                continue;
            };
            let sends = std::mem::take(&mut socket.pending_sends);
            let mut bytes = std::mem::take(&mut socket.pending);
            match write_now(socket.stream.get_ref(), &bytes) {
                Ok(n) if n == bytes.len() => {
                    // Kept for the next step's sends, unless a burst made it large: an idle
                    // link should not hold a burst's worth of memory.
                    if bytes.capacity() <= PENDING_KEPT {
                        bytes.clear();
                        socket.pending = bytes;
                    }
                    self.written(peer, sends);
                }
                Ok(n) => {
                    bytes.drain(..n);
                    Self::to_writer(socket, bytes, sends);
                }
                // The reader then sees the end and reports it.
                Err(_) => shutdown(&socket.stream),
            }
        }
    }

    /// Keeps the addresses to rejoin through, as links come and go.
    fn keep_addrs(&mut self) {
        if let Some(kept) = &mut self.kept {
            kept.save_addrs(&self.state);
        }
    }

    /// Carries out one output of the state.
    fn act(&mut self, output: Output) {
        match output {
            // Stdout prints the room's log in order, which holds this string: see `print`.
            Output::Print(_) => {}
            Output::Send { peer, bytes } => {
                if let Some(socket) = self.sockets.get_mut(&peer) {
                    if socket.queued == 0 {
                        // Written at the end of the step, with the step's other sends.
                        if socket.pending_sends == 0 {
                            self.unflushed.push(peer);
                        }
                        socket.pending.extend_from_slice(&bytes);
                        socket.pending_sends += 1;
                    } else {
                        // Behind what the writer task has.
                        Self::to_writer(socket, bytes, 1);
                    }
                }
            }
            Output::Dial(addr) => {
                R::spawn(dial(
                    addr,
                    // The mesh's own deadline, so that the socket gives up when it does.
                    self.state.config().mesh.dial_timeout,
                    self.events_tx.clone(),
                ));
            }
            // The prompt, redrawn with the notice, counts the links as they are now.
            Output::Notice(notice) => {
                terminal::set_peers(self.state.link_count());
                say(notice);
            }
            Output::PeerReady(_) => {
                terminal::set_peers(self.state.link_count());
                self.keep_addrs();
            }
            // What the user hears of it, the state said in a notice.
            Output::Disconnect { peer, .. } => {
                if let Some(socket) = self.sockets.remove(&peer) {
                    shutdown(&socket.stream);
                }
                terminal::set_peers(self.state.link_count());
                self.keep_addrs();
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

/// 64 random bits from the operating system, for the client's identity and the core's seed.
fn os_random() -> Result<u64, String> {
    getrandom::u64().map_err(|e| format!("cannot get random bits from the system: {e}"))
}

#[cfg(test)]
mod tests {
    use super::room_limits;

    #[test]
    fn room_limits_follow_the_machine_memory() {
        const GIB: u64 = 1 << 30;
        let mb = |b: usize| b / (1024 * 1024);
        let (bytes, lines) = room_limits(Some(GIB));
        assert_eq!((mb(bytes), lines), (128, 2_097_152));
        let (bytes, lines) = room_limits(Some(16 * GIB));
        assert_eq!((mb(bytes), lines), (512, 4_000_000));
        let (bytes, lines) = room_limits(Some(GIB / 8));
        assert_eq!((mb(bytes), lines), (16, 262_144));
        assert_eq!(room_limits(None), room_limits(Some(GIB)));
    }
}
