//! Memory and insert speed of the room's string store: `cargo bench --features sim --bench store`.
//!
//! Inserts 1,000,000 distinct strings of 32 bytes, then inserts them all again (every one a
//! duplicate), and reports the time per string, the heap the store holds (capacity included)
//! and the growth of the process's resident memory. Then a look-up by index and by id over
//! the whole set, and the time to hash one string into its id. Each time is the best of a
//! few runs; memory is from the first.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use floodchat::internals::{Id, Store};

const STRINGS: usize = 1_000_000;
const RUNS: usize = 3;

/// The `i`th string of the run: 32 bytes.
fn line(buf: &mut String, i: usize) -> &str {
    buf.clear();
    write!(buf, "bench line number {i:014}").expect("write to a String");
    assert_eq!(buf.len(), 32);
    buf
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let mut buf = String::new();
    let mut best_new = Duration::MAX;
    let mut best_dup = Duration::MAX;
    let mut best_get = Duration::MAX;
    let mut best_id = Duration::MAX;
    let mut best_hash = Duration::MAX;
    for run in 0..RUNS {
        let before = rss();
        let mut store = Store::new();
        let start = Instant::now();
        for i in 0..STRINGS {
            black_box(store.insert(line(&mut buf, i)));
        }
        best_new = best_new.min(start.elapsed());
        let after = rss();
        let start = Instant::now();
        for i in 0..STRINGS {
            assert!(store.insert(line(&mut buf, i)).is_none());
        }
        best_dup = best_dup.min(start.elapsed());
        let start = Instant::now();
        let mut bytes = 0;
        for i in (0..STRINGS).map(|i| (i * 7919) % STRINGS) {
            bytes += black_box(store.get(i)).len();
        }
        assert_eq!(bytes, STRINGS * 32);
        best_get = best_get.min(start.elapsed());
        let ids: Vec<Id> = (0..STRINGS)
            .step_by(10)
            .map(|i| Id::of(line(&mut buf, i)))
            .collect();
        let start = Instant::now();
        for id in &ids {
            assert!(store.index_of(id).is_some());
        }
        best_id = best_id.min(start.elapsed());
        let texts: Vec<String> = (0..STRINGS)
            .step_by(10)
            .map(|i| line(&mut buf, i).to_owned())
            .collect();
        let start = Instant::now();
        for text in &texts {
            black_box(Id::of(black_box(text)));
        }
        best_hash = best_hash.min(start.elapsed());
        if run == 0 {
            let heap = store.heap_bytes();
            let text = store.text_bytes();
            println!(
                "store of {STRINGS} strings of 32 bytes: text {:.1} MB, heap {:.1} MB \
                 ({:.1} bytes a string beyond its text), resident growth {:.1} MB",
                mb(text),
                mb(heap),
                (heap - text) as f64 / STRINGS as f64,
                mb(after.saturating_sub(before)),
            );
        }
    }
    let rate = |d: Duration, n: usize| n as f64 / d.as_secs_f64() / 1e6;
    println!(
        "insert new:       {:>7.1} ms, {:.2} M strings/s",
        best_new.as_secs_f64() * 1e3,
        rate(best_new, STRINGS)
    );
    println!(
        "insert duplicate: {:>7.1} ms, {:.2} M strings/s",
        best_dup.as_secs_f64() * 1e3,
        rate(best_dup, STRINGS)
    );
    println!(
        "get by index:     {:>7.1} ms, {:.1} M/s",
        best_get.as_secs_f64() * 1e3,
        rate(best_get, STRINGS)
    );
    println!(
        "index of id:      {:>7.1} ms, {:.2} M/s",
        best_id.as_secs_f64() * 1e3,
        rate(best_id, STRINGS / 10)
    );
    println!(
        "id of a string:   {:>7.1} ns (BLAKE3 of 32 bytes, part of every insert)",
        best_hash.as_secs_f64() * 1e9 / (STRINGS / 10) as f64
    );
}
