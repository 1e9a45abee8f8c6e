//! A room that outlives its clients (`--data-dir`): the real binary restarted on its
//! directory, killed at random moments, and given damaged, full or read-only directories.
//! Both runtimes.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, DEADLINE, Rt, Spawn, assert_exactly};
use floodchat::secure::Identity;
use floodchat::{Config, FloodState, Input, MeshConfig, Output, PeerId};

use Rt::{AsyncStd, Smol};

/// A new, empty directory for one test.
fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("floodchat-persist-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:05}")).collect()
}

fn strs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

/// The lines of a file that stdout was appended to.
fn file_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

/// Waits until `done` holds, looking again every 20 ms; panics with `what` after [`DEADLINE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::park_timeout(Duration::from_millis(20));
    }
}

/// Runs a client alone on `dir` that says `said`, and leaves.
fn fill(rt: Rt, dir: &Path, said: &[String]) {
    let mut c = Spawn::new("filler", rt).data_dir(dir).start();
    c.say_many(said);
    c.end_input();
    let (status, out) = c.wait_exit();
    assert!(status.success(), "{status}");
    assert_exactly("filler", &out, &strs(said));
}

/// A restarted client prints only what it missed, and rejoins by itself.
fn a_restarted_client_prints_only_what_it_missed(rt: Rt) {
    let dir = temp(&format!("restart-{rt:?}"));
    let mut hub = Spawn::new("hub", Smol).start();
    let first = lines("before", 10);
    let mut b = Spawn::new("b", rt).peer(&hub).data_dir(&dir).start();
    hub.say_many(&first);
    b.wait_printed(&strs(&first));
    b.end_input();
    let (status, out) = b.wait_exit();
    assert!(status.success());
    assert_exactly("b, first run", &out, &strs(&first));

    let missed = lines("while b was away", 5);
    hub.say_many(&missed);
    hub.wait_printed(&strs(&missed));
    // No --peer: it rejoins through the address it kept.
    let mut b = Spawn::new("b again", rt).data_dir(&dir).start();
    b.wait_printed(&strs(&missed));
    b.say("b is back");
    hub.wait_printed(&["b is back"]);
    b.end_input();
    let (status, out) = b.wait_exit();
    assert!(status.success());
    let mut want = strs(&missed);
    want.push("b is back");
    assert_exactly("b, second run", &out, &want);
    hub.end_input();
    let (status, _) = hub.wait_exit();
    assert!(status.success());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_restarted_client_prints_only_what_it_missed_on_smol() {
    a_restarted_client_prints_only_what_it_missed(Smol);
}

#[test]
fn a_restarted_client_prints_only_what_it_missed_on_async_std() {
    a_restarted_client_prints_only_what_it_missed(AsyncStd);
}

#[test]
fn a_second_client_on_one_directory_stops_at_once() {
    let dir = temp("lock");
    let first = Spawn::new("first", Smol).data_dir(&dir).start();
    for rt in [Smol, AsyncStd] {
        let mut second = Spawn::new("second", rt)
            .data_dir(&dir)
            // A --peer, so that the test writes no answer to a client gone at once.
            .arg("--peer")
            .arg("127.0.0.1:9")
            .start_without_waiting();
        let (status, _) = second.wait_exit();
        assert_eq!(status.code(), Some(1));
        let said = second.errors().join("\n");
        assert!(
            said.contains("another floodchat is using the data directory"),
            "{said}"
        );
    }
    drop(first);
    fs::remove_dir_all(dir).unwrap();
}

/// Damages the history of a client that said `said`, restarts it, and checks what a fresh
/// client joining it receives: `kept`. Returns the restarted client's stderr.
fn restart_after(rt: Rt, name: &str, damage: impl FnOnce(&mut Vec<u8>), kept: &[&str]) -> String {
    let dir = temp(&format!("{name}-{rt:?}"));
    let said = lines("said", 20);
    fill(rt, &dir, &said);
    let log = dir.join("room.log");
    let mut bytes = fs::read(&log).unwrap();
    damage(&mut bytes);
    fs::write(&log, &bytes).unwrap();
    let mut restarted = Spawn::new("restarted", rt).data_dir(&dir).start();
    let mut fresh = Spawn::new("fresh", Smol).peer(&restarted).start();
    fresh.wait_printed(kept);
    fresh.end_input();
    let (status, out) = fresh.wait_exit();
    assert!(status.success());
    assert_exactly("the fresh client", &out, kept);
    restarted.end_input();
    let (status, out) = restarted.wait_exit();
    assert!(status.success());
    assert!(out.is_empty(), "nothing kept is printed again: {out:?}");
    let said = restarted.errors().join("\n");
    fs::remove_dir_all(dir).unwrap();
    said
}

/// Bytes of one record of `said NNNNN` (8 bytes beside 10 of text), and of the file's head.
const RECORD: usize = 8 + 10;
const HEAD: usize = 16;

fn damage_cases(rt: Rt) {
    let said = lines("said", 20);
    let all = strs(&said);
    // Cut inside the last record: it is cut off, once, with one notice.
    let err = restart_after(rt, "torn", |b| b.truncate(b.len() - 5), &all[..19]);
    assert_eq!(err.matches("torn record").count(), 1, "{err}");
    // A flipped byte in the 8th record's text: that record only is lost, and said so.
    let at = HEAD + 7 * RECORD + 10;
    let err = restart_after(
        rt,
        "flipped",
        |b| b[at] ^= 0x01,
        &[&all[..7], &all[8..]].concat(),
    );
    assert!(
        err.contains("is damaged") && err.contains("19 good lines"),
        "{err}"
    );
    // An empty file is a new history.
    let err = restart_after(rt, "empty", |b| b.clear(), &[]);
    assert!(!err.contains("history"), "{err}");
}

#[test]
fn a_damaged_history_keeps_its_intact_part_on_smol() {
    damage_cases(Smol);
}

#[test]
fn a_damaged_history_keeps_its_intact_part_on_async_std() {
    damage_cases(AsyncStd);
}

#[test]
fn a_history_from_a_newer_version_is_not_touched() {
    for rt in [Smol, AsyncStd] {
        let dir = temp(&format!("newer-{rt:?}"));
        fill(rt, &dir, &lines("said", 3));
        let log = dir.join("room.log");
        let mut bytes = fs::read(&log).unwrap();
        bytes[8] = 9;
        fs::write(&log, &bytes).unwrap();
        let mut c = Spawn::new("older", rt)
            .data_dir(&dir)
            // A --peer, so that the test writes no answer to a client gone at once.
            .arg("--peer")
            .arg("127.0.0.1:9")
            .start_without_waiting();
        let (status, _) = c.wait_exit();
        assert_eq!(status.code(), Some(1));
        let said = c.errors().join("\n");
        assert!(
            said.contains("written by a newer floodchat (format 9"),
            "{said}"
        );
        assert_eq!(fs::read(&log).unwrap(), bytes, "not a byte changed");
        fs::remove_dir_all(dir).unwrap();
    }
}

/// Whether the tests run as root (mounts need it).
fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A tmpfs of `size` mounted at `dir` for the test; unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        assert!(
            is_root(),
            "this test mounts a tmpfs: run it as root (CI does)"
        );
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {}", dir.display());
        Mount(dir.to_path_buf())
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {} read-only", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs; CI runs it"]
fn a_read_only_directory_is_read_and_the_client_chats_on() {
    for rt in [Smol, AsyncStd] {
        let dir = temp(&format!("ro-{rt:?}"));
        let mount = Mount::tmpfs(&dir, "1m");
        let said = lines("said", 5);
        fill(rt, &dir, &said);
        mount.read_only();
        let mut c = Spawn::new("read-only", rt).data_dir(&dir).start();
        let fresh = Spawn::new("fresh", Smol).peer(&c).start();
        fresh.wait_printed(&strs(&said));
        c.say("said on a read-only directory");
        fresh.wait_printed(&["said on a read-only directory"]);
        c.end_input();
        let (status, out) = c.wait_exit();
        assert!(status.success());
        assert_eq!(out, ["said on a read-only directory"]);
        let err = c.errors().join("\n");
        assert_eq!(
            err.matches("cannot write in the data directory").count(),
            1,
            "{err}"
        );
        drop(fresh);
        drop(mount);
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs; CI runs it"]
fn a_full_disk_says_so_once_and_the_client_chats_on() {
    for rt in [Smol, AsyncStd] {
        let dir = temp(&format!("full-{rt:?}"));
        let _mount = Mount::tmpfs(&dir, "64k");
        let mut c = Spawn::new("full", rt).data_dir(&dir).start();
        // Far more than 64 KiB: the disk fills on the way.
        let said = lines("a line long enough to fill a small disk soon, number", 4000);
        c.say_many(&said);
        c.wait_printed(&strs(&said));
        c.say("still chatting");
        c.wait_printed(&["still chatting"]);
        c.end_input();
        let (status, out) = c.wait_exit();
        assert!(status.success(), "{status}");
        let mut want = strs(&said);
        want.push("still chatting");
        assert_exactly("full", &out, &want);
        let err = c.errors().join("\n");
        assert_eq!(err.matches("no longer kept").count(), 1, "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        // What was kept loads back whole: no torn record was left behind.
        let mut again = Spawn::new("again", rt).data_dir(&dir).start();
        again.end_input();
        let (status, _) = again.wait_exit();
        assert!(status.success());
        let err = again.errors().join("\n");
        assert!(!err.contains("torn") && !err.contains("damaged"), "{err}");
    }
}

/// What a reader thread of [`Holder`] reports.
enum Event {
    Accepted(TcpStream, SocketAddr),
    Bytes(PeerId, Vec<u8>),
    Closed(PeerId),
}

/// A floodchat client inside the test that holds the room, listens and never dials, and
/// counts the bytes it sends on each connection.
struct Holder {
    state: FloodState,
    addr: SocketAddr,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    links: HashMap<PeerId, TcpStream>,
    sent: HashMap<PeerId, usize>,
    next: u64,
}

impl Holder {
    fn new() -> Holder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::channel();
        let tx = events_tx.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let remote = stream.peer_addr().unwrap();
                if tx.send(Event::Accepted(stream, remote)).is_err() {
                    return;
                }
            }
        });
        let config = Config {
            identity: Identity::from_seed(0x401d),
            entropy: [7; 32],
            seed: 7,
            listen_port: addr.port(),
            mesh: MeshConfig::with_links(1),
            ..Config::default()
        };
        Holder {
            state: FloodState::new(config, Instant::now()),
            addr,
            events,
            events_tx,
            links: HashMap::new(),
            sent: HashMap::new(),
            next: 0,
        }
    }

    fn feed(&mut self, input: Input<'_>) {
        let _ = self.state.handle_input(Instant::now(), input);
        let mut written = Vec::new();
        loop {
            while let Some(output) = self.state.poll_output() {
                match output {
                    Output::Send { peer, bytes } => {
                        if let Some(stream) = self.links.get_mut(&peer) {
                            let _ = stream.write_all(&bytes);
                            *self.sent.entry(peer).or_default() += bytes.len();
                            written.push(peer);
                        }
                    }
                    // It never dials: the restarted client must come to it.
                    Output::Dial(addr) => {
                        let now = Instant::now();
                        let _ = self.state.handle_input(now, Input::DialFailed(addr));
                    }
                    Output::Disconnect { peer, .. } => {
                        if let Some(stream) = self.links.remove(&peer) {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    }
                    _ => {}
                }
            }
            if written.is_empty() {
                return;
            }
            for peer in written.drain(..) {
                if self.state.is_connected(peer) {
                    let _ = self.state.handle_input(Instant::now(), Input::Sent(peer));
                }
            }
        }
    }

    fn type_lines(&mut self, lines: &[String]) {
        for l in lines {
            self.feed(Input::LineTyped(l.as_bytes()));
        }
    }

    /// Runs until `done` holds.
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
                Ok(Event::Accepted(stream, remote)) => {
                    stream.set_nodelay(true).unwrap();
                    let peer = PeerId(self.next);
                    self.next += 1;
                    let mut reader = stream.try_clone().unwrap();
                    let tx = self.events_tx.clone();
                    thread::spawn(move || {
                        let mut buf = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = reader.read(&mut buf) {
                            if tx.send(Event::Bytes(peer, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        let _ = tx.send(Event::Closed(peer));
                    });
                    self.links.insert(peer, stream);
                    self.feed(Input::Accepted { peer, remote });
                }
                Ok(Event::Bytes(peer, bytes)) => {
                    if self.state.is_connected(peer) {
                        self.feed(Input::Received(peer, &bytes));
                    }
                }
                Ok(Event::Closed(peer)) => {
                    if self.state.is_connected(peer) {
                        self.links.remove(&peer);
                        self.feed(Input::Closed(peer));
                    }
                }
                Err(_) => self.feed(Input::Timeout),
            }
        }
    }

    /// The one link's connection, once it is up and has everything.
    fn linked_and_flushed(&self) -> Option<PeerId> {
        let mut ready = self.links.keys().filter(|&&p| self.state.is_ready(p));
        let peer = *ready.next()?;
        self.state.is_flushed().then_some(peer)
    }
}

/// Lines a restarted client holds, and lines it missed while down.
const HELD: usize = 50_000;
const MISSED: usize = 100;

/// A client restarted on its directory is sent what it missed, not the history.
fn a_restart_costs_what_was_missed(rt: Rt) {
    let dir = temp(&format!("cost-{rt:?}"));
    let history = lines("history line said long ago, still in the room:", HELD);
    let mut holder = Holder::new();
    holder.type_lines(&history);
    let mut first = Spawn::new("first run", rt)
        .arg("--peer")
        .arg(&holder.addr.to_string())
        .data_dir(&dir)
        .start_without_waiting();
    holder.run_until("the history at the fresh client", |h| {
        h.linked_and_flushed().is_some() && first.printed_count() >= HELD
    });
    let fresh_peer = holder.linked_and_flushed().unwrap();
    first.wait_listening();
    let fresh = holder.sent[&fresh_peer];
    first.kill();
    holder.run_until("the killed client's link to end", |h| h.links.is_empty());

    let missed = lines("said while the client was down", MISSED);
    holder.type_lines(&missed);
    let mut again = Spawn::new("restarted", rt)
        .data_dir(&dir)
        .start_without_waiting();
    holder.run_until("the restarted client to have what it missed", |h| {
        h.linked_and_flushed().is_some() && again.printed_count() >= MISSED
    });
    let peer = holder.linked_and_flushed().unwrap();
    again.wait_listening();
    let restart = holder.sent[&peer];
    eprintln!(
        "{rt:?}: a fresh client was sent {fresh} bytes; restarted holding {HELD} lines, \
         having missed {MISSED}, it was sent {restart} bytes"
    );
    assert!(
        fresh > HELD * 50,
        "the fresh client got the history: {fresh} bytes"
    );
    assert!(
        restart * 20 < fresh,
        "a restart cost {restart} bytes, a fresh client {fresh}"
    );
    again.end_input();
    holder.run_until("the restarted client to leave", |h| h.links.is_empty());
    let (status, out) = again.wait_exit();
    assert!(status.success());
    assert_exactly("the restarted client", &out, &strs(&missed));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_restart_costs_what_was_missed_on_smol() {
    a_restart_costs_what_was_missed(Smol);
}

#[test]
fn a_restart_costs_what_was_missed_on_async_std() {
    a_restart_costs_what_was_missed(AsyncStd);
}

/// A small seeded generator for the kill schedule (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Kills in the crash loop.
const KILLS: usize = 20;

/// A room of four under a steady flood of lines; one client, on `rt`, is SIGKILLed at
/// [`KILLS`] random moments and restarted on its directory each time, its stdout appended
/// to one file. At the end every client printed the same set, every line typed at the
/// clients that stayed is in it, and the killed client's file holds each line once.
fn crash_loop(rt: Rt) {
    let seed = match std::env::var("PERSIST_SEED") {
        Ok(s) => s.parse().unwrap(),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64 ^ u64::from(std::process::id())
        }
    };
    eprintln!("{rt:?}: crash loop seed {seed} (PERSIST_SEED={seed} replays the schedule)");
    let mut rng = Rng(seed | 1);
    let dir = temp(&format!("crash-{rt:?}"));
    let data = dir.join("data");
    let out_path = dir.join("stdout.log");
    let out_file = || {
        File::options()
            .create(true)
            .append(true)
            .open(&out_path)
            .unwrap()
    };
    let mut a = Spawn::new("a", Smol).start();
    let mut b = Spawn::new("b", AsyncStd).peer(&a).start();
    let mut c = Spawn::new("c", rt).peer(&b).start();
    let start_victim = |peer: Option<&Client>, run: usize| {
        let spawn = Spawn::new(&format!("victim run {run}"), rt)
            .data_dir(&data)
            .stdout_to(out_file());
        match peer {
            Some(p) => spawn.peer(p),
            None => spawn,
        }
        .start()
    };
    let mut victim = start_victim(Some(&c), 0);

    // The flood: a line every 2 ms, in turn at a, b and c.
    let stop = Arc::new(AtomicBool::new(false));
    let mut stdins = vec![a.take_stdin(), b.take_stdin(), c.take_stdin()];
    let flooded = Arc::new(Mutex::new(Vec::new()));
    let flood = {
        let (stop, flooded) = (stop.clone(), flooded.clone());
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let line = format!("flood line {i:06}");
                writeln!(stdins[i % 3], "{line}").unwrap();
                flooded.lock().unwrap().push(line);
                i += 1;
                // The flood's pace, not a wait for anything.
                thread::sleep(Duration::from_millis(2));
            }
            stdins
        })
    };
    for run in 1..=KILLS {
        for j in 0..5 {
            let _ = victim.try_say(&format!("typed at the victim, run {run} line {j}"));
        }
        // A random moment: a schedule, not a wait for anything.
        thread::sleep(Duration::from_millis(rng.below(400)));
        victim.kill();
        victim = start_victim(None, run);
    }
    stop.store(true, Ordering::SeqCst);
    let stdins = flood.join().unwrap();
    let flooded = flooded.lock().unwrap().clone();
    victim.say("the victim's last line");

    // Converged: every client printed the same set.
    let survivors = [&a, &b, &c];
    let union = || {
        let mut all: HashSet<String> = file_lines(&out_path).into_iter().collect();
        for s in survivors {
            all.extend(s.printed());
        }
        all
    };
    wait_until("every client to print the same set", || {
        let all = union();
        let victim: HashSet<String> = file_lines(&out_path).into_iter().collect();
        victim.len() == all.len()
            && survivors
                .iter()
                .all(|s| s.printed().into_iter().collect::<HashSet<_>>().len() == all.len())
    });
    let all = union();
    drop(stdins);
    victim.end_input();
    let mut want: Vec<&str> = all.iter().map(String::as_str).collect();
    want.sort_unstable();
    for s in [&mut a, &mut b, &mut c, &mut victim] {
        let (status, out) = s.wait_exit();
        assert!(status.success(), "{} exited with {status}", s.name);
        if s.name.starts_with("victim") {
            continue;
        }
        assert_exactly(&s.name, &out, &want);
    }
    // The victim's stdout across its 21 runs holds each line once.
    assert_exactly("the victim, across its runs", &file_lines(&out_path), &want);
    for line in &flooded {
        assert!(all.contains(line), "{line:?} was typed and lost");
    }
    assert!(all.contains("the victim's last line"));
    let victim_lines = all
        .iter()
        .filter(|l| l.starts_with("typed at the victim"))
        .count();
    eprintln!(
        "{rt:?}: {} lines in the room, {} flooded, {victim_lines} typed at the victim kept",
        all.len(),
        flooded.len()
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_client_killed_twenty_times_loses_and_repeats_nothing_on_smol() {
    crash_loop(Smol);
}

#[test]
fn a_client_killed_twenty_times_loses_and_repeats_nothing_on_async_std() {
    crash_loop(AsyncStd);
}
