//! The history on disk (`--data-dir`): the append-only log floodchat uses against redb, an
//! embedded database made for crash safety, on the same strings in the same run; then the
//! real binary restarted on a log of that many strings.
//!
//! `cargo bench --all-features --bench history -- [--strings 1000000] [--len 32]`
//!
//! Both stores are written in batches of `--batch` strings (a chunk of stdout), each batch
//! written at once, and made durable at most 100 ms late (the log: `fdatasync` when 100 ms
//! passed; redb: a commit without durability per batch, a durable one when 100 ms passed).
//! Then each is opened again and read whole, in order. The figures: time of each phase, file
//! bytes per string beyond the text, and the peak RSS of a child process doing each phase
//! alone. Last, `floodchat --data-dir` is started on the log: the time until it listens
//! (ready: prompt shown, accepting) and its peak RSS.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use redb::{Database, Durability, ReadableTable, TableDefinition};

#[allow(dead_code)]
#[path = "../runtimes/history.rs"]
mod history;

/// How late a batch may become durable.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("room");

#[derive(Debug, Parser)]
struct Args {
    /// Strings stored.
    #[arg(long, default_value_t = 1_000_000)]
    strings: usize,
    /// Bytes per string.
    #[arg(long, default_value_t = 32)]
    len: usize,
    /// Strings per write.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Runs one phase in this process (the parent starts one child per phase).
    #[arg(long, hide = true)]
    phase: Option<String>,
    /// Where the files go (the parent's temporary directory).
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// String `i`, `len` bytes long.
fn string(i: usize, len: usize) -> String {
    let mut s = format!("string {i:010} ");
    while s.len() < len {
        s.push('x');
    }
    s.truncate(len);
    s
}

fn write_log(path: &Path, args: &Args) {
    let (mut file, _) = history::open(path, &mut |_| {}).unwrap();
    let mut buf = Vec::new();
    let mut synced = Instant::now();
    for start in (0..args.strings).step_by(args.batch) {
        buf.clear();
        for i in start..(start + args.batch).min(args.strings) {
            history::encode(string(i, args.len).as_bytes(), &mut buf);
        }
        file.write_all(&buf).unwrap();
        if synced.elapsed() >= SYNC_INTERVAL {
            file.sync_data().unwrap();
            synced = Instant::now();
        }
    }
    file.sync_data().unwrap();
}

fn read_log(path: &Path) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    history::open(path, &mut |t| {
        n += 1;
        bytes += t.len();
    })
    .unwrap();
    (n, bytes)
}

fn write_redb(path: &Path, args: &Args) {
    let db = Database::create(path).unwrap();
    let mut synced = Instant::now();
    for start in (0..args.strings).step_by(args.batch) {
        let mut tx = db.begin_write().unwrap();
        if synced.elapsed() >= SYNC_INTERVAL {
            synced = Instant::now();
        } else {
            tx.set_durability(Durability::None);
        }
        {
            let mut table = tx.open_table(TABLE).unwrap();
            for i in start..(start + args.batch).min(args.strings) {
                table
                    .insert(i as u64, string(i, args.len).as_bytes())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    // The last batch durable too.
    let tx = db.begin_write().unwrap();
    tx.commit().unwrap();
}

fn read_redb(path: &Path) -> (usize, usize) {
    let db = Database::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    let (mut n, mut bytes) = (0, 0);
    for entry in table.iter().unwrap() {
        let (_, v) = entry.unwrap();
        n += 1;
        bytes += v.value().len();
    }
    (n, bytes)
}

/// A `kB` field of this process's `/proc/self/status`.
fn status_kb(pid: &str, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line[field.len() + 1..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

/// Runs one phase in this process and prints `seconds peak_rss_kib`.
fn phase(args: &Args, phase: &str, dir: &Path) {
    let start = Instant::now();
    match phase {
        "write-log" => write_log(&dir.join("room.log"), args),
        "read-log" => assert_eq!(read_log(&dir.join("room.log")).0, args.strings),
        "write-redb" => write_redb(&dir.join("room.redb"), args),
        "read-redb" => assert_eq!(read_redb(&dir.join("room.redb")).0, args.strings),
        other => panic!("no phase {other}"),
    }
    println!(
        "{} {}",
        start.elapsed().as_secs_f64(),
        status_kb("self", "VmHWM")
    );
}

/// Runs `phase` in a child process; returns its time and peak RSS.
fn child(args: &Args, phase: &str, dir: &Path) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--phase", phase, "--dir"])
        .arg(dir)
        .args(["--strings", &args.strings.to_string()])
        .args(["--len", &args.len.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{phase}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    let secs = words.next().unwrap().parse().unwrap();
    let kib = words.next().unwrap().parse().unwrap();
    (secs, kib)
}

/// Starts the real binary on `data` and returns the time until it listens and its peak RSS
/// then, in KiB.
fn restart(data: &Path) -> (f64, u64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_floodchat"))
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin).unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no Listening line"
        );
        if line.contains("Listening on") {
            break;
        }
    }
    let ready = start.elapsed().as_secs_f64();
    let rss = status_kb(&child.id().to_string(), "VmHWM");
    drop(stdin);
    child.wait().unwrap();
    (ready, rss)
}

fn main() {
    let args = Args::parse();
    if let (Some(p), Some(dir)) = (&args.phase, &args.dir) {
        phase(&args, p, dir);
        return;
    }
    let dir = std::env::temp_dir().join(format!("floodchat-history-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let text = (args.strings * args.len) as f64;
    println!(
        "history: {} strings of {} B, written in batches of {}, durable at most 100 ms late",
        args.strings, args.len, args.batch
    );
    for (name, file) in [("log", "room.log"), ("redb", "room.redb")] {
        let (w, w_rss) = child(&args, &format!("write-{name}"), &dir);
        let size = fs::metadata(dir.join(file)).unwrap().len() as f64;
        let (r, r_rss) = child(&args, &format!("read-{name}"), &dir);
        println!(
            "{name:>4}: write {w:.3} s ({:.0} strings/s), peak RSS {:.1} MiB | file {:.1} MB, \
             {:.1} B a string beyond the text | read all {r:.3} s, peak RSS {:.1} MiB",
            args.strings as f64 / w,
            w_rss as f64 / 1024.0,
            size / 1e6,
            (size - text) / args.strings as f64,
            r_rss as f64 / 1024.0,
        );
    }
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::rename(dir.join("room.log"), data.join("room.log")).unwrap();
    let empty = dir.join("empty");
    let (ready, base) = restart(&empty);
    println!(
        "floodchat --data-dir on an empty directory: listening after {ready:.3} s, peak RSS \
         {:.1} MiB",
        base as f64 / 1024.0
    );
    for _ in 0..3 {
        let (ready, rss) = restart(&data);
        println!(
            "floodchat --data-dir on {} strings: listening after {ready:.3} s, peak RSS {:.1} \
             MiB, {:.1} B a string above the empty client's (the goal: text + 32 B, {:.1} MiB)",
            args.strings,
            rss as f64 / 1024.0,
            rss.saturating_sub(base) as f64 * 1024.0 / args.strings as f64,
            (text + 32.0 * args.strings as f64) / (1024.0 * 1024.0),
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}
