//! Load on the real binary against a raw TCP relay of the same shape, timed in the same run:
//! `cargo bench --bench load -- [--clients 5] [--shape chain] [--lines 100000] [--runtime smol]
//! [--data-dir]`.
//!
//! The tool starts `floodchat` N times on loopback, joined in a chain or a star, pipes distinct
//! lines into the stdin of one or more of them, and waits until every client printed every
//! line; then it checks that each client printed each line exactly once. In the same run it
//! builds a raw relay of the same shape out of threads and TCP sockets: each node copies the
//! bytes from an input to its stdout (a socket pair standing for a pipe) and to its other links, with no framing and no
//! dedup (with several feeders it cuts at line ends, so that lines do not interleave). The
//! ratio of the two throughputs is steadier across noisy machines than either alone.
//!
//! A second phase sends one line at a time (line k+1 when line k reached the farthest
//! client) to measure latency; the time floodchat adds per hop is the difference of the two
//! medians divided by the hops. Peak RSS is each client's `VmHWM` from `/proc/PID/status`.
//! The CPU time a line costs a node, in each phase, is what every thread of the tool and of
//! the clients ran meanwhile (`/proc/PID/task/*/schedstat`), over lines times nodes: the
//! tool's own readers and feeders count in both.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

/// How long one phase may take before the tool gives up.
const DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
struct Args {
    /// How many clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// How the clients are joined.
    #[arg(long, value_enum, default_value_t = Shape::Chain)]
    shape: Shape,
    /// Lines fed in all (split among the feeders).
    #[arg(long, default_value_t = 100_000)]
    lines: usize,
    /// Bytes per line, without its line feed.
    #[arg(long, default_value_t = 32)]
    len: usize,
    /// How many clients are fed (the first ones).
    #[arg(long, default_value_t = 1)]
    feeders: usize,
    /// The runtime of every client.
    #[arg(long, default_value = "smol")]
    runtime: String,
    /// Throughput runs, each on a fresh room and a fresh raw relay.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Lines of the one-line-at-a-time latency run (0 skips it).
    #[arg(long, default_value_t = 500)]
    latency_lines: usize,
    /// The binary to run, instead of the one this bench was built with.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Let each client's mesh add links of its own (`--links` left at its default), instead
    /// of keeping the room the shape the raw relay has (for builds before the mesh, too).
    #[arg(long)]
    mesh: bool,
    /// Also time each throughput run on a room whose every client keeps a fresh
    /// `--data-dir`, and compare it with the room without one, in the same run.
    #[arg(long)]
    data_dir: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    Chain,
    Star,
}

impl Shape {
    /// The node that node `i` (> 0) is linked to.
    fn parent(self, i: usize) -> usize {
        match self {
            Shape::Chain => i - 1,
            Shape::Star => 0,
        }
    }
}

/// What one stdout pipe has delivered so far.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    lines: usize,
    last: Option<Instant>,
    ended: bool,
}

/// A thread reading one stdout pipe, counting lines as they arrive.
#[derive(Clone, Default)]
struct Sink(Arc<(Mutex<Seen>, Condvar)>);

impl Sink {
    fn follow(stream: impl Read + Send + 'static) -> Self {
        let sink = Sink::default();
        let me = sink.clone();
        thread::spawn(move || {
            let mut stream = stream;
            let mut buf = vec![0; 256 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = Instant::now();
                let mut seen = me.0.0.lock().unwrap();
                seen.lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                seen.bytes.extend_from_slice(&buf[..n]);
                seen.last = Some(now);
                drop(seen);
                me.0.1.notify_all();
            }
            me.0.0.lock().unwrap().ended = true;
            me.0.1.notify_all();
        });
        sink
    }

    /// Waits until `lines` lines arrived; returns when the last of them did.
    fn wait_lines(&self, lines: usize, what: &str) -> Instant {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.0.0.lock().unwrap();
        while seen.lines < lines {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !seen.ended,
                "{what}: {} of {lines} lines arrived",
                seen.lines
            );
            seen = self.0.1.wait_timeout(seen, left).unwrap().0;
        }
        seen.last.unwrap()
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.0.lock().unwrap().bytes)
    }

    fn lines(&self) -> usize {
        self.0.0.lock().unwrap().lines
    }
}

/// The relay under test: where to feed and what comes out.
trait Room {
    /// Every node's stdin.
    fn inputs(&mut self) -> Vec<&mut (dyn Write + Send)>;
    fn sink(&self, i: usize) -> &Sink;
}

/// N floodchat processes.
struct Clients {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    sinks: Vec<Sink>,
}

/// Lines of one stderr, kept for waiting on notices.
#[derive(Clone, Default)]
struct Notes(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Notes {
    fn follow(stream: impl Read + Send + 'static) -> Self {
        let notes = Notes::default();
        let me = notes.clone();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                me.0.0.lock().unwrap().push(line);
                me.0.1.notify_all();
            }
        });
        notes
    }

    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = self.0.0.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} on stderr: {lines:#?}");
            lines = self.0.1.wait_timeout(lines, left).unwrap().0;
        }
    }
}

impl Clients {
    /// Starts the clients; with `data`, client `i` keeps its history in `data/i`.
    fn start(args: &Args, data: Option<&std::path::Path>) -> Self {
        let bin = args
            .bin
            .clone()
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_floodchat").into());
        let mut room = Clients {
            children: Vec::new(),
            stdins: Vec::new(),
            sinks: Vec::new(),
        };
        let mut ports = Vec::new();
        let mut notes = Vec::new();
        for i in 0..args.clients {
            let mut cmd = Command::new(&bin);
            cmd.args(["--runtime", &args.runtime, "--listen", "127.0.0.1:0"]);
            // All the lines at once from one client is a flood by the room's rules (50,000
            // new lines at once, then 200 a second): every client of the room allows it here,
            // twice over, as a sender paces itself to a share of it.
            let burst = args.lines.max(50_000) * 2;
            cmd.args(["--flood-burst", &burst.to_string()]);
            if let Some(data) = data {
                cmd.arg("--data-dir").arg(data.join(i.to_string()));
            }
            if !args.mesh {
                // The same graph as the raw relay: leaves and chain links want one link, a
                // star's hub wants them all, so no client dials beyond the shape.
                let links = if args.shape == Shape::Star && i == 0 {
                    args.clients.max(1)
                } else {
                    1
                };
                cmd.args(["--links", &links.to_string()]);
            }
            if args.shape == Shape::Star && i == 0 {
                // Every leaf comes from 127.0.0.1.
                let per_ip = args.clients.clamp(8, 64);
                cmd.args(["--max-per-ip", &per_ip.to_string()]);
            }
            if i > 0 {
                let port: u16 = ports[args.shape.parent(i)];
                cmd.args(["--peer", &format!("127.0.0.1:{port}")]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start floodchat");
            let mut stdin = child.stdin.take().unwrap();
            if i == 0 {
                stdin.write_all(b"\n").unwrap();
            }
            room.sinks.push(Sink::follow(child.stdout.take().unwrap()));
            let note = Notes::follow(child.stderr.take().unwrap());
            let line = note.wait("Listening on", |l| l.contains("Listening on "));
            let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
            ports.push(port);
            notes.push(note);
            room.children.push(child);
            room.stdins.push(Some(stdin));
        }
        for note in notes.iter().skip(1) {
            note.wait("connected to", |l| l.contains("connected to"));
        }
        // Every link is greeted both ways once each parent has seen its children join.
        let mut joined = vec![0; args.clients];
        for i in 1..args.clients {
            joined[args.shape.parent(i)] += 1;
        }
        for (i, note) in notes.iter().enumerate() {
            // A client shows 20 connection notices per 10 s and sums up the rest later; a
            // link not yet greeted when the lines come still gets them, by reconciliation.
            let want = joined[i].min(20);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let n = note
                    .0
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.contains(" joined"))
                    .count();
                if n >= want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "client {i} saw {n} of {want} joins"
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
        room
    }

    /// Peak RSS of each client, in KiB.
    fn peak_rss(&self) -> Vec<u64> {
        self.children
            .iter()
            .map(|c| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Ends every stdin and checks that each client leaves with status 0.
    fn finish(mut self) {
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, child) in self.children.iter_mut().enumerate() {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "client {i} exited with {status}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("client {i} did not leave after the end of its input");
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Room for Clients {
    fn inputs(&mut self) -> Vec<&mut (dyn Write + Send)> {
        let all = self.stdins.iter_mut().map(|s| s.as_mut().unwrap());
        all.map(|s| s as &mut (dyn Write + Send)).collect()
    }
    fn sink(&self, i: usize) -> &Sink {
        &self.sinks[i]
    }
}

/// The raw relay: one thread per node input, copying to the node's stdout and other links.
struct Raw {
    inputs: Vec<UnixStream>,
    sinks: Vec<Sink>,
    links: Vec<TcpStream>,
}

impl Raw {
    fn start(args: &Args) -> Self {
        let n = args.clients;
        let cut = args.feeders > 1;
        // Each node's links, as (reader, shared writer).
        let mut node_links: Vec<Vec<TcpStream>> = (0..n).map(|_| Vec::new()).collect();
        let mut all = Vec::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for i in 1..n {
            let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (b, _) = listener.accept().unwrap();
            for s in [&a, &b] {
                s.set_nodelay(true).unwrap();
                all.push(s.try_clone().unwrap());
            }
            node_links[i].push(a);
            node_links[args.shape.parent(i)].push(b);
        }
        let mut inputs = Vec::new();
        let mut sinks = Vec::new();
        for links in node_links {
            let (stdin_w, stdin_r) = UnixStream::pair().unwrap();
            let (stdout_w, stdout_r) = UnixStream::pair().unwrap();
            inputs.push(stdin_w);
            sinks.push(Sink::follow(stdout_r));
            let stdout = Arc::new(Mutex::new(stdout_w));
            let writers: Vec<Arc<Mutex<TcpStream>>> = links
                .iter()
                .map(|s| Arc::new(Mutex::new(s.try_clone().unwrap())))
                .collect();
            let mut sources: Vec<(Box<dyn Read + Send>, Option<usize>)> =
                vec![(Box::new(stdin_r) as Box<dyn Read + Send>, None)];
            for (j, s) in links.into_iter().enumerate() {
                sources.push((Box::new(s), Some(j)));
            }
            for (source, from) in sources {
                let stdout = stdout.clone();
                let writers = writers.clone();
                thread::spawn(move || copy(source, from, &stdout, &writers, cut));
            }
        }
        Raw {
            inputs,
            sinks,
            links: all,
        }
    }

    fn finish(self) {
        drop(self.inputs);
        for s in &self.links {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `source` to `stdout` and to every link but the one it came from.
fn copy(
    mut source: Box<dyn Read + Send>,
    from: Option<usize>,
    stdout: &Mutex<UnixStream>,
    links: &[Arc<Mutex<TcpStream>>],
    cut: bool,
) {
    let mut buf = vec![0; 256 * 1024];
    let mut kept = 0;
    loop {
        let n = match source.read(&mut buf[kept..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => kept + n,
        };
        let end = if cut {
            buf[..n]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
        } else {
            n
        };
        if end > 0 {
            if stdout.lock().unwrap().write_all(&buf[..end]).is_err() {
                return;
            }
            for (j, link) in links.iter().enumerate() {
                if Some(j) != from {
                    let _ = link.lock().unwrap().write_all(&buf[..end]);
                }
            }
        }
        buf.copy_within(end..n, 0);
        kept = n - end;
    }
}

impl Room for Raw {
    fn inputs(&mut self) -> Vec<&mut (dyn Write + Send)> {
        let all = self.inputs.iter_mut();
        all.map(|s| s as &mut (dyn Write + Send)).collect()
    }
    fn sink(&self, i: usize) -> &Sink {
        &self.sinks[i]
    }
}

/// The lines fed to feeder `f` in run `run`, each `len` bytes, all distinct.
fn lines_for(run: usize, f: usize, count: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (len + 1));
    for i in 0..count {
        let start = out.len();
        write!(out, "r{run}f{f}n{i}.").unwrap();
        assert!(out.len() - start <= len, "--len {len} is too short");
        while out.len() - start < len {
            out.push(b'a' + ((out.len() - start) % 26) as u8);
        }
        out.push(b'\n');
    }
    out
}

/// Feeds every feeder at once and waits until every node printed every line; returns the
/// time from the first byte fed to the last line printed.
fn throughput(room: &mut dyn Room, args: &Args, inputs: &[Vec<u8>], what: &str) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for (input, w) in inputs.iter().zip(room.inputs()) {
            // Each feeder writes in 64 KiB pieces, as a shell pipe would.
            s.spawn(move || {
                for piece in input.chunks(64 * 1024) {
                    w.write_all(piece).unwrap();
                }
                w.flush().unwrap();
            });
        }
    });
    let mut end = start;
    for i in 0..args.clients {
        end = end.max(
            room.sink(i)
                .wait_lines(args.lines, &format!("{what} node {i}")),
        );
    }
    end - start
}

/// CPU time that the live threads of process `pid` (this one if `None`) have run so far, in
/// nanoseconds, from the scheduler's per-thread statistics.
fn cpu_ns(pid: Option<u32>) -> u64 {
    let dir = pid.map_or_else(|| "/proc/self/task".into(), |p| format!("/proc/{p}/task"));
    let tasks = std::fs::read_dir(dir).into_iter().flatten().flatten();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time of the tool (the raw relay's threads, the readers of every stdout, the feeders)
/// and of the given clients.
fn cpu_of(clients: &[Child]) -> u64 {
    cpu_ns(None) + clients.iter().map(|c| cpu_ns(Some(c.id()))).sum::<u64>()
}

/// Checks that every node printed each fed line exactly once.
fn check_exactly_once(room: &dyn Room, args: &Args, inputs: &[Vec<u8>], what: &str) {
    let mut want: Vec<&[u8]> = inputs
        .iter()
        .flat_map(|i| i.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
        .collect();
    want.sort_unstable();
    for i in 0..args.clients {
        let got = room.sink(i).take();
        let mut got: Vec<&[u8]> = got
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        got.sort_unstable();
        assert!(
            got == want,
            "{what}: node {i} did not print each line exactly once"
        );
    }
}

/// The farthest node from node 0, and how many hops away it is.
fn farthest(args: &Args) -> (usize, usize) {
    match (args.clients, args.shape) {
        (1, _) => (0, 0),
        (n, Shape::Chain) => (n - 1, n - 1),
        (n, Shape::Star) => (n - 1, 1),
    }
}

/// Sends lines one at a time to node 0; returns each line's time to the farthest node.
fn latency(room: &mut dyn Room, args: &Args, tag: &str) -> Vec<Duration> {
    let (far, _) = farthest(args);
    let base = room.sink(far).lines();
    let mut times = Vec::with_capacity(args.latency_lines);
    for k in 0..args.latency_lines {
        let mut line = format!("latency {tag} {k}.");
        while line.len() < args.len {
            line.push('z');
        }
        line.push('\n');
        let start = Instant::now();
        let mut all = room.inputs();
        let w = &mut all[0];
        w.write_all(line.as_bytes()).unwrap();
        w.flush().unwrap();
        let end = room.sink(far).wait_lines(base + k + 1, "latency");
        times.push(end - start);
    }
    times.sort_unstable();
    times
}

fn pct(times: &[Duration], p: f64) -> Duration {
    times[((times.len() - 1) as f64 * p) as usize]
}

fn main() {
    let args = Args::parse();
    assert!(args.clients >= 1 && args.feeders >= 1 && args.feeders <= args.clients);
    assert!(
        args.lines % args.feeders == 0,
        "--lines must divide by --feeders"
    );
    let per_feeder = args.lines / args.feeders;
    let mb = (args.lines * args.len) as f64 / 1e6;
    println!(
        "load: {} clients in a {:?}, {} lines of {} B from {} feeder(s), runtime {}",
        args.clients, args.shape, args.lines, args.len, args.feeders, args.runtime
    );
    let mut ratios = Vec::new();
    let mut dd_shares = Vec::new();
    let mut best = (Duration::MAX, Duration::MAX);
    let mut rss_max = 0;
    for run in 0..args.runs {
        let inputs: Vec<Vec<u8>> = (0..args.feeders)
            .map(|f| lines_for(run, f, per_feeder, args.len))
            .collect();
        let mut raw = Raw::start(&args);
        let cpu = cpu_of(&[]);
        let t_raw = throughput(&mut raw, &args, &inputs, "raw relay");
        let cpu_raw = cpu_of(&[]) - cpu;
        check_exactly_once(&raw, &args, &inputs, "raw relay");
        raw.finish();
        let mut room = Clients::start(&args, None);
        let cpu = cpu_of(&room.children);
        let t_fc = throughput(&mut room, &args, &inputs, "floodchat");
        let cpu_fc = cpu_of(&room.children) - cpu;
        let rss = room.peak_rss();
        check_exactly_once(&room, &args, &inputs, "floodchat");
        room.finish();
        let ratio = t_raw.as_secs_f64() / t_fc.as_secs_f64();
        ratios.push(ratio);
        if args.data_dir {
            let data = std::env::temp_dir().join(format!("floodchat-load-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data);
            let mut room = Clients::start(&args, Some(&data));
            let t_dd = throughput(&mut room, &args, &inputs, "floodchat --data-dir");
            check_exactly_once(&room, &args, &inputs, "floodchat --data-dir");
            room.finish();
            let kept = std::fs::metadata(data.join("0").join("room.log")).map_or(0, |m| m.len());
            let _ = std::fs::remove_dir_all(&data);
            let share = t_fc.as_secs_f64() / t_dd.as_secs_f64();
            dd_shares.push(share);
            println!(
                "run {run}: floodchat --data-dir {:>9.0} lines/s ({:.3} s), {:.3} of the \
                 throughput without; a history file of {kept} B",
                args.lines as f64 / t_dd.as_secs_f64(),
                t_dd.as_secs_f64(),
                share,
            );
        }
        best = (best.0.min(t_raw), best.1.min(t_fc));
        rss_max = rss_max.max(rss.iter().copied().max().unwrap_or(0));
        println!(
            "run {run}: raw {:>9.0} lines/s {:>7.1} MB/s | floodchat {:>9.0} lines/s {:>7.1} MB/s \
             ({:.3} s) | ratio {:.3} | CPU a line a node: raw {:.0} ns, floodchat {:.0} ns | \
             peak RSS KiB {rss:?}",
            args.lines as f64 / t_raw.as_secs_f64(),
            mb / t_raw.as_secs_f64(),
            args.lines as f64 / t_fc.as_secs_f64(),
            mb / t_fc.as_secs_f64(),
            t_fc.as_secs_f64(),
            ratio,
            cpu_raw as f64 / (args.lines * args.clients) as f64,
            cpu_fc as f64 / (args.lines * args.clients) as f64,
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput: floodchat {:.0} lines/s {:.1} MB/s (best), raw {:.0} lines/s {:.1} MB/s \
         (best); median ratio {:.3}; peak RSS {:.1} MiB ({:.0} B per line)",
        args.lines as f64 / best.1.as_secs_f64(),
        mb / best.1.as_secs_f64(),
        args.lines as f64 / best.0.as_secs_f64(),
        mb / best.0.as_secs_f64(),
        ratios[ratios.len() / 2],
        rss_max as f64 / 1024.0,
        rss_max as f64 * 1024.0 / args.lines as f64,
    );
    if !dd_shares.is_empty() {
        dd_shares.sort_by(f64::total_cmp);
        println!(
            "with --data-dir: median {:.3} of the throughput without (runs: {dd_shares:.3?})",
            dd_shares[dd_shares.len() / 2]
        );
    }
    if args.latency_lines > 0 {
        let (_, hops) = farthest(&args);
        let mut raw = Raw::start(&args);
        let t_raw = latency(&mut raw, &args, "raw");
        raw.finish();
        let mut room = Clients::start(&args, None);
        let t_fc = latency(&mut room, &args, "fc");
        room.finish();
        let (m_raw, m_fc) = (pct(&t_raw, 0.5), pct(&t_fc, 0.5));
        let added = m_fc.saturating_sub(m_raw).as_secs_f64() * 1e6 / hops.max(1) as f64;
        println!(
            "latency over {hops} hop(s), one line at a time: raw median {:.1} us (p99 {:.1}), \
             floodchat median {:.1} us (p99 {:.1}); added per hop {added:.1} us",
            m_raw.as_secs_f64() * 1e6,
            pct(&t_raw, 0.99).as_secs_f64() * 1e6,
            m_fc.as_secs_f64() * 1e6,
            pct(&t_fc, 0.99).as_secs_f64() * 1e6,
        );
    }
}
