//! Runs the real `floodchat` binary as a child process and watches what it prints.
//!
//! Every wait is on a condition (a line printed, a process gone) with a generous deadline
//! that only turns a hang into a failure; nothing here sleeps to synchronise.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use floodchat::ClientId;
use floodchat::secure::{Identity, Link, LinkError, Role, RoomKey};
use floodchat::wire::{Decoded, Frame, FrameDecoder, GREETING, Hello, encode_text};
use socket2::{Domain, Socket, Type};

/// How long any single condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Lines a child printed on one stream, and whether that stream has ended.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    /// When each line of `lines` was read, in the same order.
    times: Vec<Instant>,
    ended: bool,
}

#[derive(Clone, Default)]
struct Watched(Arc<(Mutex<Lines>, Condvar)>);

impl Watched {
    fn follow(&self, stream: impl Read + Send + 'static) {
        let me = self.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
                        let mut lines = me.0.0.lock().unwrap();
                        lines.lines.push(text);
                        lines.times.push(Instant::now());
                        drop(lines);
                        me.0.1.notify_all();
                    }
                }
            }
            me.0.0.lock().unwrap().ended = true;
            me.0.1.notify_all();
        });
    }

    /// Waits until `done` holds for the lines so far; `Err` with them after [`DEADLINE`].
    fn wait(
        &self,
        mut done: impl FnMut(&[String], bool) -> bool,
    ) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + DEADLINE;
        let (lock, cvar) = &*self.0;
        let mut guard = lock.lock().unwrap();
        loop {
            if done(&guard.lines, guard.ended) {
                return Ok(guard.lines.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(guard.lines.clone());
            }
            guard = cvar.wait_timeout(guard, left).unwrap().0;
        }
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.0.lock().unwrap().lines.clone()
    }

    fn timed_snapshot(&self) -> Vec<(Instant, String)> {
        let lines = self.0.0.lock().unwrap();
        lines
            .times
            .iter()
            .copied()
            .zip(lines.lines.iter().cloned())
            .collect()
    }
}

/// Which driver a client runs on.
#[derive(Debug, Clone, Copy)]
pub enum Rt {
    Smol,
    AsyncStd,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Smol => "smol",
            Rt::AsyncStd => "async-std",
        }
    }
}

/// One running client.
pub struct Client {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Watched,
    stderr: Watched,
    /// The port from `Listening on IP:PORT`, once printed.
    pub port: u16,
    /// A stdout pipe held open and never read.
    _unread: Option<ChildStdout>,
    /// When the process was started.
    started: Instant,
}

/// Builder of a client's command line.
pub struct Spawn {
    name: String,
    args: Vec<String>,
    answer: Option<String>,
    listen: bool,
    close_stdout: bool,
    unread_stdout: bool,
    stdout_file: Option<std::fs::File>,
    netns: Option<String>,
    fd_limit: Option<u32>,
    env: Vec<(String, String)>,
}

impl Spawn {
    /// A client on `rt`, listening on loopback only.
    pub fn new(name: &str, rt: Rt) -> Self {
        Self {
            name: name.to_string(),
            args: vec!["--runtime".into(), rt.name().into()],
            answer: None,
            listen: true,
            close_stdout: false,
            fd_limit: None,
            unread_stdout: false,
            stdout_file: None,
            netns: None,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of the client (`FLOODCHAT_PASSPHRASE` is otherwise unset).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Joins the room through `peer` with `--peer 127.0.0.1:PORT`.
    pub fn peer(self, peer: &Client) -> Self {
        let addr = peer.addr();
        self.arg("--peer").arg(&addr)
    }

    /// Answers the start-up prompt with `text` instead of passing `--peer`.
    pub fn answer(mut self, text: &str) -> Self {
        self.answer = Some(text.to_string());
        self
    }

    /// Leaves `--listen` at its default (all interfaces).
    pub fn default_listen(mut self) -> Self {
        self.listen = false;
        self
    }

    /// Closes the reading end of the client's stdout at once, so its writes fail with EPIPE.
    pub fn close_stdout(mut self) -> Self {
        self.close_stdout = true;
        self
    }

    /// Keeps the client's stdout pipe open but never reads it, as a paused pager would.
    pub fn unread_stdout(mut self) -> Self {
        self.unread_stdout = true;
        self
    }

    /// Sends the client's stdout to `file` instead of a pipe.
    pub fn stdout_to(mut self, file: std::fs::File) -> Self {
        self.stdout_file = Some(file);
        self
    }

    /// Runs the client inside the network namespace `name` (`ip netns exec`).
    pub fn in_netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// Runs the client with at most `n` open file descriptors (util-linux `prlimit`).
    pub fn fd_limit(mut self, n: u32) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// Keeps the client's history and addresses in `dir` (`--data-dir`).
    pub fn data_dir(self, dir: &std::path::Path) -> Self {
        self.arg("--data-dir")
            .arg(dir.to_str().expect("a UTF-8 path"))
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts the client and waits until it prints `Listening on`.
    pub fn start(self) -> Client {
        let mut client = self.start_without_waiting();
        client.wait_listening();
        client
    }

    /// Starts the client; the caller decides what to wait for.
    pub fn start_without_waiting(mut self) -> Client {
        if self.listen {
            self.args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        if self.answer.is_none() && !self.args.iter().any(|a| a == "--peer") {
            self.answer = Some(String::new());
        }
        let bin = env!("CARGO_BIN_EXE_floodchat");
        let mut command = match &self.netns {
            // `ip netns exec` execs the binary itself, so the child's pid is the client's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => match self.fd_limit {
                // `prlimit` execs the binary itself, so the child's pid is the client's.
                Some(n) => {
                    let mut c = Command::new("prlimit");
                    c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                    c
                }
                None => Command::new(bin),
            },
        };
        let to_file = self.stdout_file.is_some();
        let stdout_to = match self.stdout_file.take() {
            Some(file) => Stdio::from(file),
            None => Stdio::piped(),
        };
        command.env_remove("FLOODCHAT_PASSPHRASE");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(stdout_to)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start floodchat");
        let stdout = Watched::default();
        let mut unread = None;
        if to_file {
            stdout.0.0.lock().unwrap().ended = true;
        } else {
            let pipe = child.stdout.take().unwrap();
            if self.close_stdout {
                drop(pipe);
                stdout.0.0.lock().unwrap().ended = true;
            } else if self.unread_stdout {
                unread = Some(pipe);
                stdout.0.0.lock().unwrap().ended = true;
            } else {
                stdout.follow(pipe);
            }
        }
        let stderr = Watched::default();
        stderr.follow(child.stderr.take().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        if let Some(answer) = &self.answer {
            writeln!(stdin, "{answer}").unwrap();
        }
        Client {
            name: self.name,
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            port: 0,
            _unread: unread,
            started: Instant::now(),
        }
    }
}

impl Client {
    /// Waits for `Listening on IP:PORT` and records the port.
    pub fn wait_listening(&mut self) -> SocketAddr {
        // The prompt has no line end of its own, so with piped stdin it shares this line.
        const LISTENING: &str = "Listening on ";
        let lines = self.wait_stderr("Listening on", |l| l.contains(LISTENING));
        let line = lines.iter().find(|l| l.contains(LISTENING)).unwrap();
        let (_, addr) = line.split_once(LISTENING).unwrap();
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{}: bad address in {line:?}: {e}", self.name));
        self.port = addr.port();
        addr
    }

    /// Waits for `Invite: floodchat:KEY@IP:PORT` (a private room's) and returns the invite.
    pub fn invite(&self) -> String {
        const INVITE: &str = "Invite: ";
        let lines = self.wait_stderr("its invite", |l| l.contains(INVITE));
        let line = lines.iter().find(|l| l.contains(INVITE)).unwrap();
        let (_, invite) = line.split_once(INVITE).unwrap();
        invite.trim().to_string()
    }

    /// Where tests reach this client: loopback and the printed port.
    pub fn addr(&self) -> String {
        assert_ne!(self.port, 0, "{} is not listening yet", self.name);
        format!("127.0.0.1:{}", self.port)
    }

    /// Types one line.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Types one line; an error (the client is gone) is returned instead of panicking.
    pub fn try_say(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()
    }

    /// Types many lines at once, in one write.
    pub fn say_many<S: AsRef<str>>(&mut self, lines: &[S]) {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.as_ref().as_bytes());
            bytes.push(b'\n');
        }
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(&bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// What a wait got, or a panic that says what was awaited and what the client said last.
    fn waited(&self, what: &str, got: Result<Vec<String>, Vec<String>>) -> Vec<String> {
        got.unwrap_or_else(|_| {
            let tail = |lines: Vec<String>, n: usize| {
                let skip = lines.len().saturating_sub(n);
                format!(
                    "last {} of {}:\n  {}",
                    lines.len() - skip,
                    lines.len(),
                    lines[skip..].join("\n  ")
                )
            };
            panic!(
                "timed out waiting for {what}\nstdout, {}\nstderr, {}",
                tail(self.stdout.snapshot(), 20),
                tail(self.stderr.snapshot(), 60)
            )
        })
    }

    /// Waits until stdout holds at least `count` lines; returns all of stdout.
    pub fn wait_printed_count(&self, count: usize) -> Vec<String> {
        let what = format!("{} to print {count} lines", self.name);
        let got = self.stdout.wait(|lines, _| lines.len() >= count);
        self.waited(&what, got)
    }

    /// Waits until at least `count` stderr lines satisfy `pred`; returns all of stderr.
    pub fn wait_stderr_count(
        &self,
        what: &str,
        count: usize,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let what = format!("{} to print {count} times {what} on stderr", self.name);
        let got = self
            .stderr
            .wait(|lines, _| lines.iter().filter(|l| pred(l)).count() >= count);
        self.waited(&what, got)
    }

    /// Takes standard input, for a thread to type into; dropping it ends the input.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin still open")
    }

    /// Ends standard input, as Ctrl-D does.
    pub fn end_input(&mut self) {
        self.stdin = None;
    }

    /// Waits until stdout holds every line of `want` (in any order) and returns all of stdout.
    pub fn wait_printed(&self, want: &[&str]) -> Vec<String> {
        let what = format!("{} to print {want:?}", self.name);
        let got = self
            .stdout
            .wait(|lines, _| want.iter().all(|w| lines.iter().any(|l| l == w)));
        self.waited(&what, got)
    }

    /// Waits until some stderr line satisfies `pred`; returns all of stderr.
    pub fn wait_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let what = format!("{} to print {what} on stderr", self.name);
        let got = self.stderr.wait(|lines, _| lines.iter().any(|l| pred(l)));
        self.waited(&what, got)
    }

    /// Waits until the process exits and both its outputs end; returns its status and stdout.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let what = format!("{} to close stdout", self.name);
        let got = self.stdout.wait(|_, ended| ended);
        let out = self.waited(&what, got);
        // So that `errors()` afterwards holds everything the client said.
        let what = format!("{} to close stderr", self.name);
        let got = self.stderr.wait(|_, ended| ended);
        self.waited(&what, got);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, out);
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// How many lines were printed on stdout so far.
    pub fn printed_count(&self) -> usize {
        self.stdout.0.0.lock().unwrap().lines.len()
    }

    /// What was printed on stdout so far.
    pub fn printed(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// What was printed on stdout so far, each line with the time the test read it.
    pub fn printed_timed(&self) -> Vec<(Instant, String)> {
        self.stdout.timed_snapshot()
    }

    /// What was printed on stderr so far.
    pub fn errors(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Checks that the notices on stderr so far tell a story a user can trust (see
    /// `floodchat::sim::NoticeCheck`): never "no links" about the moment a link was announced.
    #[cfg(feature = "sim")]
    pub fn assert_notices_hold_together(&self) {
        let lines: Vec<(Duration, String)> = (self.stderr.timed_snapshot().into_iter())
            .map(|(at, line)| (at.saturating_duration_since(self.started), line))
            .collect();
        if let Err(e) = floodchat::sim::NoticeCheck::check_lines(&lines) {
            panic!("{}: {e}\nall of stderr: {lines:#?}", self.name);
        }
    }

    /// Waits until the process holds no TCP socket connected to `remote` (IPv4, Linux
    /// `/proc`): a connection it ended is gone, not kept by a task left behind.
    pub fn wait_no_socket_to(&self, remote: SocketAddr) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let peers = tcp_peers(self.pid());
            if !peers.contains(&remote) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still holds a socket connected to {remote}",
                self.name
            );
            thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// A `kB` field of `/proc/PID/status`, such as `VmRSS` or `VmHWM`.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        line[field.len() + 1..]
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts `printed` holds exactly the strings of `want`, each once, and nothing else.
/// Starts `n` clients named `prefix` and a number, alternating runtimes, each (but the first)
/// joining the one at half its index: a binary tree, built as fast as clients listen.
pub fn tree(prefix: &str, n: usize) -> Vec<Client> {
    let mut room: Vec<Client> = Vec::new();
    for i in 0..n {
        let rt = if i % 2 == 0 { Rt::Smol } else { Rt::AsyncStd };
        let mut spawn = Spawn::new(&format!("{prefix}{i}"), rt);
        if i > 0 {
            spawn = spawn.peer(&room[i / 2]);
        }
        room.push(spawn.start());
    }
    room
}

pub fn assert_exactly(name: &str, printed: &[String], want: &[&str]) {
    let mut got: Vec<&str> = printed.iter().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    want.dedup();
    assert_eq!(got, want, "{name} printed something other than the union");
}

/// A raw TCP connection from the test to a client, for speaking (or not speaking) floodchat.
pub fn raw_connect(client: &Client) -> TcpStream {
    let stream = TcpStream::connect(client.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Ends every client's input, waits for each to leave, and checks its whole stdout.
pub fn leave_all(clients: &mut [Client], want: &[&str]) {
    for c in clients.iter_mut() {
        c.end_input();
    }
    for c in clients.iter_mut() {
        let (status, out) = c.wait_exit();
        assert!(status.success(), "{} exited with {status}", c.name);
        assert_exactly(&c.name, &out, want);
    }
}

/// A TCP listener on loopback that is not floodchat; `serve` runs on each connection.
pub fn fake_server(serve: impl Fn(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            serve(stream);
        }
    });
    addr
}

/// A number that differs between calls, so that raw peers have distinct identities.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u64::from(std::process::id()) << 32 | NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Why a [`SecurePeer`]'s handshake did not finish.
#[derive(Debug)]
pub enum HandshakeError {
    /// The record layer refused: a wrong key, no key, an altered message...
    Link(LinkError),
    /// The other side closed the connection first.
    Closed,
    /// A read or write failed (a timeout included).
    Io(std::io::Error),
}

/// A floodchat peer inside a test, speaking protocol 3 by hand over a blocking [`TcpStream`]:
/// the clear prologue, the Noise handshake, then greeting, Hello and frames sealed in records.
///
/// It reads only when asked ([`SecurePeer::read_frames`]), so a peer that never reads is one
/// that never calls it.
pub struct SecurePeer {
    pub stream: TcpStream,
    link: Link,
    identity: Identity,
    decoder: FrameDecoder,
    /// Frame-stream bytes opened and not yet decoded.
    pending: Vec<u8>,
    /// Every frame-stream byte the other side sent and [`SecurePeer::read_frames`] decoded.
    pub opened: Vec<u8>,
    /// Raw bytes read from the socket, handshake and records included.
    pub wire_bytes: usize,
}

impl SecurePeer {
    /// Dials `addr` and does the handshake in the open room.
    pub fn connect(addr: &str) -> Self {
        Self::connect_to(addr, &RoomKey::Open)
            .unwrap_or_else(|e| panic!("handshake with {addr}: {e:?}"))
    }

    /// Dials `addr` and does the handshake in `room`.
    pub fn connect_to(addr: &str, room: &RoomKey) -> Result<Self, HandshakeError> {
        let stream = TcpStream::connect(addr).map_err(HandshakeError::Io)?;
        Self::handshake(stream, Role::Initiator, room)
    }

    /// Does the handshake on a connection: writes this side's first bytes, then answers until
    /// the link is established. Reads time out after [`DEADLINE`].
    pub fn handshake(
        stream: TcpStream,
        role: Role,
        room: &RoomKey,
    ) -> Result<Self, HandshakeError> {
        Self::handshake_within(stream, role, room, DEADLINE)
    }

    /// [`SecurePeer::handshake`], each read timing out after `timeout`.
    pub fn handshake_within(
        mut stream: TcpStream,
        role: Role,
        room: &RoomKey,
        timeout: Duration,
    ) -> Result<Self, HandshakeError> {
        stream.set_nodelay(true).map_err(HandshakeError::Io)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(HandshakeError::Io)?;
        let n = unique();
        let identity = Identity::from_seed(n);
        let seed = blake3::derive_key("floodchat tests: a secure peer", &n.to_le_bytes());
        let (mut link, first) = Link::new(role, &identity, room, seed);
        stream.write_all(&first).map_err(HandshakeError::Io)?;
        let mut buf = vec![0; 4096];
        let mut plain = Vec::new();
        let mut wire_bytes = 0;
        while !link.is_established() {
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) => n,
                Err(e) => return Err(HandshakeError::Io(e)),
            };
            wire_bytes += n;
            let mut reply = Vec::new();
            let result = link.read(&buf[..n], &mut reply, &mut plain);
            // A refusal is written too (the responder's empty message to a wrong key).
            let _ = stream.write_all(&reply);
            result.map_err(HandshakeError::Link)?;
        }
        Ok(Self {
            stream,
            link,
            identity,
            decoder: FrameDecoder::new(),
            // Records that came with the last handshake message.
            pending: plain,
            opened: Vec::new(),
            wire_bytes,
        })
    }

    /// The id this peer's key proves, the only one its Hello may name.
    pub fn client_id(&self) -> ClientId {
        self.identity.client_id()
    }

    /// The id the other side's key proved in the handshake.
    pub fn remote_id(&self) -> ClientId {
        self.link
            .remote()
            .expect("an established link has proven its peer")
    }

    /// The greeting and this peer's Hello, as a client that does not listen sends them.
    pub fn hello(&self) -> Vec<u8> {
        self.hello_with(0, true)
    }

    /// The greeting and this peer's Hello with `listen_port` and `alone`.
    pub fn hello_with(&self, listen_port: u16, alone: bool) -> Vec<u8> {
        let mut bytes = GREETING.to_vec();
        Frame::Hello(Hello {
            client: self.client_id(),
            listen_port,
            alone,
        })
        .encode(&mut bytes);
        bytes
    }

    /// The greeting and Hello followed by one Text frame per message.
    pub fn greeting_and_frames(&self, messages: &[&str]) -> Vec<u8> {
        let mut bytes = self.hello();
        for m in messages {
            encode_text(m, &mut bytes);
        }
        bytes
    }

    /// Seals frame-stream bytes into records (each adds 18 bytes: its length and its tag).
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.link.seal(plain, &mut out);
        out
    }

    /// Seals frame-stream bytes and writes the records.
    pub fn send(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let records = self.seal(plain);
        self.stream.write_all(&records)
    }

    /// Writes bytes as they are, outside any record.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads and opens records until `done` holds for the items decoded so far (the greeting
    /// included) or the other side closes; panics after [`DEADLINE`]. Returns every item
    /// decoded, and the error that ended the stream, if any.
    pub fn read_frames(
        &mut self,
        mut done: impl FnMut(&[Decoded]) -> bool,
    ) -> (Vec<Decoded>, Option<String>) {
        let deadline = Instant::now() + DEADLINE;
        let mut items = Vec::new();
        let mut pending = std::mem::take(&mut self.pending);
        let mut buf = vec![0; 64 * 1024];
        loop {
            let mut input = &pending[..];
            while !input.is_empty() {
                match self.decoder.decode(&mut input) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => {}
                    Err(e) => return (items, Some(e.to_string())),
                }
            }
            self.opened.extend_from_slice(&pending);
            pending.clear();
            if done(&items) {
                return (items, None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out reading frames; got {items:?}");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return (items, None),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (items, None),
                Err(e) => panic!("reading frames: {e}"),
            };
            self.wire_bytes += n;
            let mut reply = Vec::new();
            if let Err(e) = self.link.read(&buf[..n], &mut reply, &mut pending) {
                return (items, Some(e.to_string()));
            }
        }
    }

    /// The connection, for holding it open or closing it.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// A TCP connection to `to` from `ip`; `None` if it was refused.
pub fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((ip, 0)).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .ok()?;
    let stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    Some(stream)
}

/// The remote ends of the IPv4 TCP sockets process `pid` holds open, from `/proc/net/tcp`.
pub fn tcp_peers(pid: u32) -> Vec<SocketAddr> {
    let inodes = socket_inodes(pid);
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    // "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...", addresses as
    // "0100007F:1F90": the IP as the host stores it, the port big-endian.
    let endpoint = |hex: &str| -> Option<SocketAddr> {
        let (ip, port) = hex.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip.to_ne_bytes(), port)))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(9)?;
            inodes.contains(*inode).then(|| endpoint(fields.get(2)?))?
        })
        .collect()
}

/// The inodes of the sockets process `pid` holds open, from `/proc/PID/fd`.
pub fn socket_inodes(pid: u32) -> std::collections::HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}
