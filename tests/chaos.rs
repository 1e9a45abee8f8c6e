//! The whole client under real faults, checked the way Jepsen checks a database: real clients
//! of both runtimes on four hosts (network namespaces on one bridge), a nemesis that breaks
//! the network and the processes on a seeded schedule, writers that type unique lines, a
//! record of every line typed and printed, and a checker that says afterwards what was lost,
//! printed twice or invented.
//!
//! Needs root, iproute2 and nftables, so it is ignored by default; CI runs the short schedule
//! with `cargo test --all-features --test chaos -- --ignored --nocapture four_hosts`.
//! `CHAOS_SECONDS` sets the schedule's length and `CHAOS_SEED` its seed (a number, or
//! `random`); the test prints both and the command that replays them.
//!
//! A separate ignored test, `hundred_clients_on_loopback`, needs no root: 100 clients on
//! loopback, 30 of them killed at once while 1,000 lines are typed.

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{Client, Rt, Spawn};

/// How many hosts (network namespaces) the room spans.
const HOSTS: usize = 4;
/// How many clients, spread over the hosts.
const CLIENTS: usize = 16;
/// Clients `0..WRITERS` type lines throughout the schedule.
const WRITERS: usize = 8;
/// Each writer types a line this often.
const WRITE_EVERY: Duration = Duration::from_millis(500);
/// The seed of CI's schedule. It was picked so that every kind of fault occurs (any seed does,
/// since the kinds are dealt in turn) and kept fixed so that CI runs one known schedule.
const CI_SEED: u64 = 20_261_205;
/// The length of CI's schedule: one black hole outlasting the 60 s idle timeout, with
/// every other fault dealt in turn beside it.
const CI_SECONDS: u64 = 72;
/// The most time, after the network is whole again, for every running client to print the
/// same set. Generous: a client that lost its links backs off its dials by up to 60 s.
const CONVERGE_BOUND: Duration = Duration::from_secs(150);
/// How often the checker looks at what the clients printed while waiting for convergence.
const POLL: Duration = Duration::from_millis(200);

/// A small seeded generator (SplitMix64): the same seed gives the same schedule.
struct Rng(u64);

impl Rng {
    /// The next number of the sequence.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// A duration from `lo` to `hi` seconds, to the millisecond.
    fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo * 1000, hi * 1000))
    }

    /// Shuffles `items` in place (Fisher-Yates).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Host `i`'s address: RFC 2544's benchmarking range, inside the test's namespaces only.
fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 7, 1 + i as u8)
}

/// Runs `program` with `args`, feeding it `stdin`; panics unless it succeeds.
fn run(program: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let status = child.wait().unwrap();
    assert!(status.success(), "{program} {}: {status}", args.join(" "));
}

/// Runs iproute2's `ip`; panics unless it succeeds.
fn ip(args: &[&str]) {
    run("ip", args, None);
}

/// Four hosts, each a namespace with one veth into a fifth namespace holding the bridge.
/// Every namespace (and so every interface) is deleted on drop, also when the test fails.
struct Net {
    prefix: String,
    namespaces: Vec<String>,
}

impl Net {
    fn new() -> Self {
        Self::sweep_stale();
        // Unique per run: the pid, and a counter in case one process builds two.
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let nth = RUNS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fcc{}x{nth}", std::process::id());
        let mut net = Self {
            prefix,
            namespaces: Vec::new(),
        };
        let bridge = net.bridge();
        ip(&["netns", "add", &bridge]);
        net.namespaces.push(bridge.clone());
        ip(&[
            "-n", &bridge, "link", "add", "name", "cbr", "type", "bridge",
        ]);
        ip(&["-n", &bridge, "link", "set", "cbr", "up"]);
        for h in 0..HOSTS {
            let ns = net.host(h);
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "sysctl", "-qw"])
                .arg("net.ipv6.conf.all.disable_ipv6=1")
                .status();
            let (dev, port) = (Self::dev(), format!("p{h}"));
            ip(&[
                "-n", &ns, "link", "add", &dev, "type", "veth", "peer", "name", &port, "netns",
                &bridge,
            ]);
            ip(&["-n", &bridge, "link", "set", &port, "master", "cbr"]);
            ip(&["-n", &bridge, "link", "set", &port, "up"]);
            let addr = format!("{}/24", host_ip(h));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &dev]);
            ip(&["-n", &ns, "link", "set", &dev, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let table = "table inet chaos {\n\
                 chain input { type filter hook input priority 0; policy accept; }\n\
                 chain output { type filter hook output priority 0; policy accept; }\n\
                 }\n";
            run("ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(table));
        }
        net
    }

    /// Deletes the namespaces of earlier runs whose test process is gone (killed before its
    /// guard could run, as by a second Ctrl-C): only names of this test's form, `fcc<pid>x…`.
    fn sweep_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some((pid, _)) = name.strip_prefix("fcc").and_then(|r| r.split_once('x')) else {
                continue;
            };
            let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
            if pid.parse::<u32>().is_ok() && gone {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }

    /// The namespace that holds the bridge.
    fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }

    /// Host `h`'s namespace.
    fn host(&self, h: usize) -> String {
        format!("{}h{h}", self.prefix)
    }

    /// The name of each host's link to the bridge, inside its own namespace.
    fn dev() -> String {
        "eth0".to_string()
    }

    /// Replaces host `h`'s filter rules with `input` and `output` (nftables rule bodies).
    fn set_rules(&self, h: usize, input: &[String], output: &[String]) {
        let mut script =
            String::from("flush chain inet chaos input\nflush chain inet chaos output\n");
        for rule in input {
            script += &format!("add rule inet chaos input {rule}\n");
        }
        for rule in output {
            script += &format!("add rule inet chaos output {rule}\n");
        }
        run(
            "ip",
            &["netns", "exec", &self.host(h), "nft", "-f", "-"],
            Some(&script),
        );
    }

    /// Caps host `h`'s link both ways with a token bucket, or lifts the cap.
    fn set_rate(&self, h: usize, kbit: Option<u64>) {
        let port = format!("p{h}");
        for (ns, dev) in [(self.host(h), Self::dev()), (self.bridge(), port)] {
            match kbit {
                Some(k) => run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns,
                        "tc",
                        "qdisc",
                        "replace",
                        "dev",
                        &dev,
                        "root",
                        "tbf",
                        "rate",
                        &format!("{k}kbit"),
                        "burst",
                        "16kb",
                        "latency",
                        "400ms",
                    ],
                    None,
                ),
                None => {
                    let _ = Command::new("ip")
                        .args([
                            "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
                        ])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }

    /// Bytes the hosts sent to the bridge so far (their links' transmit counters).
    fn wire_bytes(&self) -> u64 {
        (0..HOSTS)
            .map(|h| {
                let path = format!("/sys/class/net/{}/statistics/tx_bytes", Self::dev());
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.host(h), "cat", &path])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One fault the nemesis injects for a while.
#[derive(Debug, Clone)]
enum Fault {
    /// Hosts `a` and `b` cannot reach each other, either way.
    Partition { a: Vec<usize>, b: Vec<usize> },
    /// Packets from hosts `from` to hosts `to` are dropped; the other way passes.
    OneWay { from: Vec<usize>, to: Vec<usize> },
    /// `percent` of the packets on host `host`'s link are dropped, each way.
    Loss { host: usize, percent: u64 },
    /// Host `host`'s link is capped at `kbit` each way (tc token bucket).
    Bandwidth { host: usize, kbit: u64 },
    /// Host `host`'s link drops every packet, and nothing is closed.
    BlackHole { host: usize },
    /// Client `seat` (a writer) types a line and is SIGKILLed at once; it is started afresh
    /// at the end through `contact`.
    Kill { seat: usize, contact: usize },
    /// Client `seat` is SIGSTOPped, and SIGCONTed at the end.
    Stop { seat: usize },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { a, b } => write!(f, "partition hosts {a:?} | {b:?}"),
            Fault::OneWay { from, to } => write!(f, "drop hosts {from:?} -> {to:?}"),
            Fault::Loss { host, percent } => write!(f, "{percent}% loss on host {host}"),
            Fault::Bandwidth { host, kbit } => write!(f, "{kbit} kbit/s on host {host}"),
            Fault::BlackHole { host } => write!(f, "black hole on host {host}"),
            Fault::Kill { seat, contact } => {
                write!(f, "SIGKILL c{seat:02}, restart through c{contact:02}")
            }
            Fault::Stop { seat } => write!(f, "SIGSTOP c{seat:02}, then SIGCONT"),
        }
    }
}

/// A fault and when it holds, from the start of the schedule.
#[derive(Debug, Clone)]
struct Step {
    start: Duration,
    end: Duration,
    fault: Fault,
}

/// Client `seat`'s host.
fn host_of(seat: usize) -> usize {
    seat % HOSTS
}

/// Client `seat`'s runtime: each host has two of each.
fn rt_of(seat: usize) -> Rt {
    if (seat / HOSTS) % 2 == 0 {
        Rt::Smol
    } else {
        Rt::AsyncStd
    }
}

/// The nemesis's schedule for `seed` over `total`: a track of black holes, each longer than
/// the 60 s idle timeout so that peers must time the lost links out, and beside it a track
/// of the other faults, one at a time, dealt in a shuffled order so each kind occurs, on
/// hosts that no black hole touches meanwhile.
fn schedule(seed: u64, total: Duration) -> Vec<Step> {
    let mut rng = Rng(seed);
    let mut steps = Vec::new();
    let mut holes: Vec<Step> = Vec::new();
    let mut t = Duration::from_secs(2);
    loop {
        let len = rng.secs(63, 67);
        if t + len > total {
            break;
        }
        let host = rng.below(HOSTS);
        holes.push(Step {
            start: t,
            end: t + len,
            fault: Fault::BlackHole { host },
        });
        t += len + rng.secs(10, 30);
    }
    let margin = Duration::from_secs(3);
    let mut kinds = Vec::new();
    let mut t = Duration::from_secs(3);
    loop {
        if kinds.is_empty() {
            kinds = vec![0, 1, 2, 3, 4, 5];
            rng.shuffle(&mut kinds);
        }
        let kind = kinds.pop().unwrap();
        let len = match kind {
            4 => rng.secs(2, 6),
            5 => rng.secs(4, 10),
            _ => rng.secs(3, 8),
        };
        let end = t + len;
        if end + Duration::from_secs(2) > total {
            break;
        }
        let busy = |h: usize| {
            holes.iter().any(|s| {
                matches!(s.fault, Fault::BlackHole { host } if host == h)
                    && s.start < end + margin
                    && t < s.end + margin
            })
        };
        let mut free: Vec<usize> = (0..HOSTS).filter(|&h| !busy(h)).collect();
        rng.shuffle(&mut free);
        let seats_on = |hosts: &[usize], writers_only: bool| -> Vec<usize> {
            (0..CLIENTS)
                .filter(|&s| hosts.contains(&host_of(s)) && (!writers_only || s < WRITERS))
                .collect()
        };
        let fault = match kind {
            0 | 1 => {
                let cut = 1 + rng.below(free.len() - 1);
                let (a, b) = (free[..cut].to_vec(), free[cut..].to_vec());
                if kind == 0 {
                    Fault::Partition { a, b }
                } else {
                    Fault::OneWay { from: a, to: b }
                }
            }
            2 => Fault::Loss {
                host: free[0],
                percent: rng.range(15, 45),
            },
            3 => Fault::Bandwidth {
                host: free[0],
                kbit: rng.range(48, 256),
            },
            4 => {
                // A writer, so that some lines typed there may be lost with it.
                let writers = seats_on(&free, true);
                let seat = writers[rng.below(writers.len())];
                let others: Vec<usize> = seats_on(&free, false)
                    .into_iter()
                    .filter(|&s| s != seat)
                    .collect();
                let contact = others[rng.below(others.len())];
                Fault::Kill { seat, contact }
            }
            _ => {
                let seats = seats_on(&free, false);
                Fault::Stop {
                    seat: seats[rng.below(seats.len())],
                }
            }
        };
        steps.push(Step {
            start: t,
            end,
            fault,
        });
        t = end + rng.secs(2, 4);
    }
    steps.extend(holes);
    steps.sort_by_key(|s| s.start);
    steps
}

/// The nftables rules of host `h` under the network faults `active`: (input, output).
fn rules(h: usize, active: &[&Fault]) -> (Vec<String>, Vec<String>) {
    let set = |hosts: &[usize]| {
        let ips: Vec<String> = hosts.iter().map(|&h| host_ip(h).to_string()).collect();
        format!("{{ {} }}", ips.join(", "))
    };
    let dev = Net::dev();
    let (mut input, mut output) = (Vec::new(), Vec::new());
    for fault in active {
        match fault {
            Fault::Partition { a, b } => {
                for (mine, theirs) in [(a, b), (b, a)] {
                    if mine.contains(&h) {
                        input.push(format!("ip saddr {} drop", set(theirs)));
                        output.push(format!("ip daddr {} drop", set(theirs)));
                    }
                }
            }
            Fault::OneWay { from, to } if from.contains(&h) => {
                output.push(format!("ip daddr {} drop", set(to)));
            }
            Fault::Loss { host, percent } if *host == h => {
                input.push(format!(
                    "iifname \"{dev}\" numgen random mod 100 < {percent} drop"
                ));
                output.push(format!(
                    "oifname \"{dev}\" numgen random mod 100 < {percent} drop"
                ));
            }
            Fault::BlackHole { host } if *host == h => {
                input.push(format!("iifname \"{dev}\" drop"));
                output.push(format!("oifname \"{dev}\" drop"));
            }
            _ => {}
        }
    }
    (input, output)
}

/// One process of a client: a client killed and started again is a new process.
struct Proc {
    name: String,
    client: Client,
    /// The address it printed, for others to join through.
    addr: SocketAddr,
    /// Its host (0 on loopback).
    host: usize,
    /// When it printed its address.
    started: Instant,
    killed: bool,
}

/// A line typed: which process typed it, and when.
struct Typed {
    by: usize,
    at: Instant,
}

/// Everything typed and printed in a run, for the checker.
#[derive(Default)]
struct Record {
    procs: Vec<Proc>,
    typed: HashMap<String, Typed>,
}

impl Record {
    /// Types `line` at process `p` and records it; false if the process is gone.
    fn type_line(&mut self, p: usize, line: String) -> bool {
        let at = Instant::now();
        if self.procs[p].client.try_say(&line).is_err() {
            return false;
        }
        self.typed.insert(line, Typed { by: p, at });
        true
    }

    /// The processes not killed.
    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.procs.len()).filter(|&p| !self.procs[p].killed)
    }
}

/// What the checker saw.
struct Verdict {
    typed: usize,
    acknowledged: usize,
    lost_unacknowledged: usize,
    final_lines: usize,
    /// For each running client, from the heal until it had printed every line of the final
    /// set typed before the heal (zero if it had them all by then).
    converged: Vec<Duration>,
    /// What each process printed, with arrival times.
    printed: Vec<Vec<(Instant, String)>>,
    /// The set every running client printed.
    final_set: HashSet<String>,
}

/// The median and the maximum of `v` (not empty).
fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

/// The median and the maximum of `v` (not empty).
fn median_max_u64(mut v: Vec<u64>) -> (u64, u64) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

/// Checks the record's safety properties on what was printed so far; the first violation.
fn safety(record: &Record, printed: &[Vec<(Instant, String)>]) -> Result<(), String> {
    for (p, out) in printed.iter().enumerate() {
        let mut seen = HashSet::new();
        for (_, line) in out {
            if !record.typed.contains_key(line) {
                return Err(format!(
                    "{} printed {line:?}, which nobody typed",
                    record.procs[p].name
                ));
            }
            if !seen.insert(line) {
                return Err(format!("{} printed {line:?} twice", record.procs[p].name));
            }
        }
    }
    Ok(())
}

/// Lines printed by a client other than the one that typed them: the room has them.
fn acknowledged(record: &Record, printed: &[Vec<(Instant, String)>]) -> HashSet<String> {
    let mut acked = HashSet::new();
    for (p, out) in printed.iter().enumerate() {
        for (_, line) in out {
            if record.typed.get(line).is_some_and(|t| t.by != p) {
                acked.insert(line.clone());
            }
        }
    }
    acked
}

/// `heal` is when the network became whole and every process ran again (writers may go on
/// typing after it). Waits (up to [`CONVERGE_BOUND`] after `heal`) until every running client printed the same
/// set, holding every acknowledged line and every line typed at a client never killed; then
/// ends every running client's input and checks its whole stdout. Panics with `context` and
/// what differs on any violation.
fn check(record: &mut Record, heal: Instant, context: &str) -> Verdict {
    let deadline = heal + CONVERGE_BOUND;
    let required = |record: &Record, printed: &[Vec<(Instant, String)>]| {
        let mut want = acknowledged(record, printed);
        for (line, t) in &record.typed {
            if !record.procs[t.by].killed {
                want.insert(line.clone());
            }
        }
        want
    };
    let printed = loop {
        let printed: Vec<_> = record
            .procs
            .iter()
            .map(|p| p.client.printed_timed())
            .collect();
        if let Err(e) = safety(record, &printed) {
            panic!("{context}: {e}");
        }
        let want = required(record, &printed);
        let sets: Vec<(usize, HashSet<&String>)> = record
            .running()
            .map(|p| (p, printed[p].iter().map(|(_, l)| l).collect()))
            .collect();
        let first = &sets[0].1;
        let same = sets.iter().all(|(_, s)| s == first);
        if same && want.iter().all(|l| first.contains(l)) {
            break printed;
        }
        if Instant::now() > deadline {
            let mut why = String::new();
            for (p, set) in &sets {
                let missing: Vec<&String> = want.iter().filter(|l| !set.contains(l)).collect();
                let extra = set.len() - want.iter().filter(|l| set.contains(l)).count();
                why += &format!(
                    "\n  {}: printed {}, missing {} of the {} required (e.g. {:?}), {} not required",
                    record.procs[*p].name,
                    set.len(),
                    missing.len(),
                    want.len(),
                    missing.iter().take(3).collect::<Vec<_>>(),
                    extra
                );
                let errs = record.procs[*p].client.errors();
                let tail: Vec<&String> = errs.iter().rev().take(6).collect();
                why += &format!("\n    stderr (last lines, newest first): {tail:?}");
            }
            panic!("{context}: no convergence within {CONVERGE_BOUND:?} of the heal:{why}");
        }
        thread::sleep(POLL);
    };
    let final_set: HashSet<String> = printed[record.running().next().unwrap()]
        .iter()
        .map(|(_, l)| l.clone())
        .collect();
    let acked = acknowledged(record, &printed);
    let lost_acked: Vec<&String> = acked.iter().filter(|l| !final_set.contains(*l)).collect();
    assert!(
        lost_acked.is_empty(),
        "{context}: acknowledged lines lost: {lost_acked:?}"
    );
    let lost_unacknowledged = record
        .typed
        .iter()
        .filter(|(l, t)| record.procs[t.by].killed && !final_set.contains(*l))
        .count();
    let mut converged = Vec::new();
    for p in record.running().collect::<Vec<_>>() {
        // When this client had printed every line of the final set typed before the heal.
        let last = printed[p]
            .iter()
            .filter(|(_, l)| record.typed[l].at <= heal)
            .map(|(at, _)| *at)
            .max()
            .unwrap_or(heal);
        converged.push(last.saturating_duration_since(heal));
    }
    // Every running client leaves; its whole stdout is the final set, each line once.
    let running: Vec<usize> = record.running().collect();
    for &p in &running {
        record.procs[p].client.end_input();
    }
    for &p in &running {
        let proc = &mut record.procs[p];
        let (status, out) = proc.client.wait_exit();
        assert!(
            status.success(),
            "{context}: {} exited with {status}",
            proc.name
        );
        let got: HashSet<&String> = out.iter().collect();
        assert_eq!(
            out.len(),
            got.len(),
            "{context}: {} printed a line twice",
            proc.name
        );
        assert!(
            got.len() == final_set.len() && got.iter().all(|l| final_set.contains(*l)),
            "{context}: {} ended with {} lines, not the final {}",
            proc.name,
            got.len(),
            final_set.len()
        );
    }
    Verdict {
        typed: record.typed.len(),
        acknowledged: acked.len(),
        lost_unacknowledged,
        final_lines: final_set.len(),
        converged,
        printed,
        final_set,
    }
}

/// What one fault did, from the record: lines typed while it held, the longest any of them
/// took to reach every client, and how long after it ended every client had every line typed
/// before its end. Only clients running at the end of the run count (and a client started
/// after `end` only if `restarted` names it); hosts in `skip` (under another fault at the
/// end) are left out, as clients and as authors.
struct StepFigures {
    typed: usize,
    slowest: Duration,
    settled: Duration,
}

fn step_figures(
    record: &Record,
    verdict: &Verdict,
    (start, end): (Instant, Instant),
    skip: &[usize],
    restarted: Option<usize>,
) -> StepFigures {
    let clients: Vec<usize> = record
        .running()
        .filter(|&p| !skip.contains(&record.procs[p].host))
        .filter(|&p| record.procs[p].started <= end || restarted == Some(p))
        .collect();
    let counted = |line: &String| {
        verdict.final_set.contains(line)
            && !skip.contains(&record.procs[record.typed[line].by].host)
    };
    // The last arrival of each counted line over the clients.
    let mut last: HashMap<&String, Instant> = HashMap::new();
    for &p in &clients {
        for (at, line) in &verdict.printed[p] {
            if counted(line) {
                let e = last.entry(line).or_insert(*at);
                *e = (*e).max(*at);
            }
        }
    }
    let (mut typed, mut slowest, mut settled) = (0, Duration::ZERO, Duration::ZERO);
    for (line, at) in last {
        let t = record.typed[line].at;
        if t >= start && t <= end {
            typed += 1;
            slowest = slowest.max(at.saturating_duration_since(t));
        }
        if t <= end {
            settled = settled.max(at.saturating_duration_since(end));
        }
    }
    StepFigures {
        typed,
        slowest,
        settled,
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The chaos run: clients, writers and nemesis over `seconds` with `seed`, then the checker.
fn chaos(seed: u64, seconds: u64) {
    let total = Duration::from_secs(seconds);
    let steps = schedule(seed, total);
    let replay = format!(
        "CHAOS_SEED={seed} CHAOS_SECONDS={seconds} \
         cargo test --all-features --test chaos -- --ignored --nocapture four_hosts"
    );
    eprintln!("chaos: seed {seed}, {seconds} s; replay with: {replay}");
    for s in &steps {
        eprintln!(
            "  {:6.1}s .. {:6.1}s  {}",
            s.start.as_secs_f64(),
            s.end.as_secs_f64(),
            s.fault
        );
    }
    let net = Net::new();
    let mut record = Record::default();
    // Client `seat`'s current process.
    let mut seat_proc: Vec<usize> = Vec::new();
    let mut rng = Rng(seed ^ 0x00c0_ffee);
    let start = |record: &Record, seat: usize, generation: usize, via: Option<usize>| {
        let name = if generation == 0 {
            format!("c{seat:02}")
        } else {
            format!("c{seat:02}r{generation}")
        };
        let h = host_of(seat);
        let mut spawn = Spawn::new(&name, rt_of(seat))
            .default_listen()
            .in_netns(&net.host(h));
        if let Some(p) = via {
            spawn = spawn.arg("--peer").arg(&record.procs[p].addr.to_string());
        }
        let mut client = spawn.start_without_waiting();
        let addr = client.wait_listening();
        assert_eq!(
            addr.ip(),
            IpAddr::V4(host_ip(h)),
            "{name} printed {addr}, not its host's address"
        );
        Proc {
            name,
            client,
            addr,
            host: h,
            started: Instant::now(),
            killed: false,
        }
    };
    for seat in 0..CLIENTS {
        let via = (seat > 0).then(|| seat_proc[rng.below(seat)]);
        let proc = start(&record, seat, 0, via);
        seat_proc.push(record.procs.len());
        record.procs.push(proc);
    }
    let mut generation = [0usize; CLIENTS];
    let mut sequence = [0u64; WRITERS];
    let wire_before = net.wire_bytes();
    let t0 = Instant::now();
    // Events in time order: (when, step, begins).
    let mut events: Vec<(Duration, usize, bool)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        events.push((s.start, i, true));
        events.push((s.end, i, false));
    }
    events.sort_by_key(|&(at, i, begins)| (at, !begins, i));
    let mut next_event = 0;
    // When each step began and ended, and the process a Kill started again.
    let mut began: Vec<Option<Instant>> = vec![None; steps.len()];
    let mut ended: Vec<Option<Instant>> = vec![None; steps.len()];
    let mut restarted: Vec<Option<usize>> = vec![None; steps.len()];
    let mut active: Vec<usize> = Vec::new();
    let mut down: HashSet<usize> = HashSet::new();
    // When the last fault ended: from then on the network is whole and every client runs.
    let mut healed = t0;
    let mut next_write: Vec<Duration> = (0..WRITERS)
        .map(|w| WRITE_EVERY * w as u32 / WRITERS as u32)
        .collect();
    let apply_network = |active: &[usize]| {
        let faults: Vec<&Fault> = active.iter().map(|&i| &steps[i].fault).collect();
        for h in 0..HOSTS {
            let (input, output) = rules(h, &faults);
            net.set_rules(h, &input, &output);
        }
    };
    loop {
        let now = t0.elapsed();
        if now >= total && next_event >= events.len() {
            break;
        }
        while next_event < events.len() && events[next_event].0 <= now {
            let (_, i, begins) = events[next_event];
            next_event += 1;
            let fault = &steps[i].fault;
            eprintln!(
                "  {:6.1}s {} {fault}",
                now.as_secs_f64(),
                if begins { "begin" } else { "end  " }
            );
            if begins {
                began[i] = Some(Instant::now());
            } else {
                healed = Instant::now();
                ended[i] = Some(healed);
            }
            match fault {
                Fault::Kill { seat, contact } => {
                    if begins {
                        // A line typed just before the crash: it may be lost, but if any
                        // other client prints it, every client must.
                        let p = seat_proc[*seat];
                        let line = format!(
                            "{} #{} at {:.3}s, last words",
                            record.procs[p].name,
                            sequence[*seat],
                            now.as_secs_f64()
                        );
                        sequence[*seat] += 1;
                        assert!(
                            record.type_line(p, line),
                            "{}: stdin closed",
                            record.procs[p].name
                        );
                        record.procs[p].client.kill();
                        record.procs[p].killed = true;
                        down.insert(*seat);
                    } else {
                        generation[*seat] += 1;
                        let via = seat_proc[*contact];
                        let proc = start(&record, *seat, generation[*seat], Some(via));
                        seat_proc[*seat] = record.procs.len();
                        restarted[i] = Some(record.procs.len());
                        record.procs.push(proc);
                        down.remove(seat);
                    }
                }
                Fault::Stop { seat } => {
                    let pid = record.procs[seat_proc[*seat]].client.pid();
                    signal(pid, if begins { "STOP" } else { "CONT" });
                }
                Fault::Bandwidth { host, kbit } => {
                    net.set_rate(*host, begins.then_some(*kbit));
                }
                _ => {
                    if begins {
                        active.push(i);
                    } else {
                        active.retain(|&a| a != i);
                    }
                    apply_network(&active);
                }
            }
        }
        let now = t0.elapsed();
        if now < total {
            for w in 0..WRITERS {
                if next_write[w] <= now {
                    next_write[w] += WRITE_EVERY;
                    if down.contains(&w) {
                        continue;
                    }
                    let p = seat_proc[w];
                    let line = format!(
                        "{} #{} at {:.3}s",
                        record.procs[p].name,
                        sequence[w],
                        now.as_secs_f64()
                    );
                    sequence[w] += 1;
                    assert!(
                        record.type_line(p, line),
                        "{}: stdin closed",
                        record.procs[p].name
                    );
                }
            }
        }
        let mut wake = events.get(next_event).map_or(total, |e| e.0);
        if now < total {
            wake = wake.min(next_write.iter().copied().min().unwrap());
        }
        // Pacing, not synchronisation: the writers' rate and the schedule's times.
        thread::sleep(wake.saturating_sub(t0.elapsed()));
    }
    // Every step has ended; make sure nothing is left broken.
    assert!(
        active.is_empty() && down.is_empty(),
        "a fault outlived the schedule"
    );
    apply_network(&[]);
    for h in 0..HOSTS {
        net.set_rate(h, None);
    }
    let heal = healed;
    eprintln!(
        "  {:6.1}s writers stopped; the last fault ended at {:.1}s",
        t0.elapsed().as_secs_f64(),
        heal.duration_since(t0).as_secs_f64()
    );
    let context = format!("chaos seed {seed} ({replay})");
    let verdict = check(&mut record, heal, &context);
    let wire = net.wire_bytes() - wire_before;
    let idle_drops: usize = record
        .procs
        .iter()
        .map(|p| {
            p.client
                .errors()
                .iter()
                .filter(|l| l.contains("silent for"))
                .count()
        })
        .sum();
    eprintln!(
        "per fault: lines typed while it held; the slowest of them to reach every client; \
               every client had every line typed before its end this long after it ended"
    );
    for (i, step) in steps.iter().enumerate() {
        let (start, end) = (began[i].unwrap(), ended[i].unwrap());
        // Hosts under another network fault when this one ended.
        let skip: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i && began[j].unwrap() <= end && ended[j].unwrap() > end)
            .flat_map(|(_, s)| match &s.fault {
                Fault::BlackHole { host }
                | Fault::Loss { host, .. }
                | Fault::Bandwidth { host, .. } => {
                    vec![*host]
                }
                Fault::Partition { a, b } | Fault::OneWay { from: a, to: b } => {
                    a.iter().chain(b).copied().collect()
                }
                Fault::Kill { seat, .. } | Fault::Stop { seat } => vec![host_of(*seat)],
            })
            .collect();
        let f = step_figures(&record, &verdict, (start, end), &skip, restarted[i]);
        eprintln!(
            "  {:<44} typed {:4}, slowest {:6.2} s, settled {:6.2} s after{}",
            step.fault.to_string(),
            f.typed,
            f.slowest.as_secs_f64(),
            f.settled.as_secs_f64(),
            if skip.is_empty() {
                String::new()
            } else {
                format!(" (hosts {skip:?} left out: another fault held them)")
            }
        );
    }
    let (median, max) = median_max(verdict.converged.clone());
    eprintln!(
        "chaos seed {seed}, {seconds} s, {} processes ({} restarts): typed {}, acknowledged {}, \
         lost acknowledged 0, unacknowledged lost with killed clients {}, final set {} lines \
         at {} running clients; heal to convergence median {:.2} s, max {:.2} s; \
         {} bytes between hosts, {} per line ({} per line and client); links dropped as \
         silent: {idle_drops}",
        record.procs.len(),
        record.procs.len() - CLIENTS,
        verdict.typed,
        verdict.acknowledged,
        verdict.lost_unacknowledged,
        verdict.final_lines,
        verdict.converged.len(),
        median.as_secs_f64(),
        max.as_secs_f64(),
        wire,
        wire / verdict.final_lines.max(1) as u64,
        wire / (verdict.final_lines * verdict.converged.len()).max(1) as u64,
    );
}

/// CHAOS_SEED: a number, `random`, or unset (CI's seed).
fn seed_from_env() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(s) if s == "random" => {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            (nanos as u64) ^ u64::from(std::process::id())
        }
        Ok(s) => s.parse().expect("CHAOS_SEED is a number or `random`"),
        Err(_) => CI_SEED,
    }
}

/// CI's schedule (or `CHAOS_SECONDS` with `CHAOS_SEED`) on four hosts, then the checker.
#[test]
#[ignore = "needs root, iproute2 and nftables; CI runs it with --ignored"]
fn four_hosts_sixteen_clients_under_a_nemesis() {
    let seconds = std::env::var("CHAOS_SECONDS").map_or(CI_SECONDS, |s| {
        s.parse().expect("CHAOS_SECONDS is a number")
    });
    chaos(seed_from_env(), seconds);
}

/// How many clients the loopback run starts.
const SCALE_CLIENTS: usize = 100;
/// How many of them it kills at once.
const SCALE_KILLED: usize = 30;
/// Lines typed in the loopback run, one every [`SCALE_EVERY`].
const SCALE_LINES: usize = 1_000;
/// Lines typed before the kill.
const SCALE_BEFORE_KILL: usize = 100;
/// One line is typed this often, at a random running client.
const SCALE_EVERY: Duration = Duration::from_millis(20);

/// 100 clients on loopback, each joining through a random one; 1,000 lines typed, 30 clients
/// killed at once after the 100th; the same checker, with time to one room again, peak RSS
/// and descriptors per client.
#[test]
#[ignore = "100 processes; run it with --ignored --nocapture hundred_clients"]
fn hundred_clients_on_loopback() {
    let seed = seed_from_env();
    let context = format!(
        "loopback run, seed {seed} (CHAOS_SEED={seed} cargo test --all-features --test chaos \
         -- --ignored --nocapture hundred_clients)"
    );
    eprintln!("{context}");
    let mut rng = Rng(seed);
    let mut record = Record::default();
    for i in 0..SCALE_CLIENTS {
        let rt = if i % 2 == 0 { Rt::Smol } else { Rt::AsyncStd };
        let mut spawn = Spawn::new(&format!("c{i:03}"), rt)
            .arg("--max-per-ip")
            .arg("64");
        if i > 0 {
            let via = &record.procs[rng.below(i)];
            spawn = spawn.arg("--peer").arg(&via.addr.to_string());
        }
        let mut client = spawn.start_without_waiting();
        let addr = client.wait_listening();
        record.procs.push(Proc {
            name: format!("c{i:03}"),
            client,
            addr,
            host: 0,
            started: Instant::now(),
            killed: false,
        });
    }
    let mut victims: Vec<usize> = (0..SCALE_CLIENTS).collect();
    rng.shuffle(&mut victims);
    victims.truncate(SCALE_KILLED);
    let t0 = Instant::now();
    let mut kill_at = None;
    for n in 0..SCALE_LINES {
        if n == SCALE_BEFORE_KILL {
            for &v in &victims {
                record.procs[v].client.kill();
                record.procs[v].killed = true;
            }
            kill_at = Some(Instant::now());
        }
        let alive: Vec<usize> = record.running().collect();
        let p = alive[rng.below(alive.len())];
        let line = format!(
            "{} #{n} at {:.3}s",
            record.procs[p].name,
            t0.elapsed().as_secs_f64()
        );
        assert!(record.type_line(p, line), "stdin closed");
        // Pacing, not synchronisation: a steady rate of typing.
        thread::sleep((SCALE_EVERY * (n as u32 + 1)).saturating_sub(t0.elapsed()));
    }
    let typing_done = Instant::now();
    let kill_at = kill_at.unwrap();
    // Peak RSS and descriptors are read before the checker ends the clients' input.
    let survivors: Vec<usize> = record.running().collect();
    let rss_and_fds = |record: &Record| {
        let rss: Vec<u64> = survivors
            .iter()
            .map(|&p| record.procs[p].client.status_kb("VmHWM"))
            .collect();
        let fds: Vec<u64> = survivors
            .iter()
            .map(|&p| record.procs[p].client.open_fds() as u64)
            .collect();
        (rss, fds)
    };
    let (figures, one_room) = {
        // Wait for the room first (the checker waits again, and says what differs if it
        // never comes), then read the processes' figures while they still run.
        let deadline = typing_done + CONVERGE_BOUND;
        loop {
            let printed: Vec<_> = record
                .procs
                .iter()
                .map(|p| p.client.printed_timed())
                .collect();
            let first: HashSet<&String> = printed[survivors[0]].iter().map(|(_, l)| l).collect();
            if survivors.iter().all(|&p| {
                printed[p].len() == first.len() && printed[p].iter().all(|(_, l)| first.contains(l))
            }) && record
                .typed
                .iter()
                .all(|(l, t)| record.procs[t.by].killed || first.contains(l))
            {
                break;
            }
            if Instant::now() > deadline {
                break; // The checker below says what differs.
            }
            thread::sleep(POLL);
        }
        let figures = rss_and_fds(&record);
        // The first line typed after the kill from which on every line reached every survivor.
        let printed: Vec<_> = record
            .procs
            .iter()
            .map(|p| p.client.printed_timed())
            .collect();
        let mut after: Vec<(&String, &Typed)> = record
            .typed
            .iter()
            .filter(|(_, t)| t.at >= kill_at)
            .collect();
        after.sort_by_key(|(_, t)| t.at);
        let everywhere = |line: &String| {
            survivors
                .iter()
                .all(|&p| printed[p].iter().any(|(_, l)| l == line))
        };
        let mut one_room = None;
        for (line, t) in after.iter().rev() {
            if everywhere(line) {
                one_room = Some(t.at.saturating_duration_since(kill_at));
            } else {
                break;
            }
        }
        (figures, one_room)
    };
    let (rss, fds) = figures;
    let verdict = check(&mut record, typing_done, &context);
    let (median, max) = median_max(verdict.converged.clone());
    let (rss_median, rss_max) = median_max_u64(rss);
    let (fd_median, fd_max) = median_max_u64(fds);
    eprintln!(
        "{SCALE_CLIENTS} clients on loopback, {SCALE_KILLED} killed at once after \
         {SCALE_BEFORE_KILL} lines: typed {}, acknowledged {}, lost acknowledged 0, \
         unacknowledged lost with killed clients {}, final set {} lines at {} survivors; \
         one room again {} after the kill; last line printed after typing ended: median \
         {:.2} s, max {:.2} s; peak RSS per client median {} kB, max {} kB; descriptors per \
         client median {fd_median}, max {fd_max}",
        verdict.typed,
        verdict.acknowledged,
        verdict.lost_unacknowledged,
        verdict.final_lines,
        verdict.converged.len(),
        one_room.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64())),
        median.as_secs_f64(),
        max.as_secs_f64(),
        rss_median,
        rss_max,
    );
}
