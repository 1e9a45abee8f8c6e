//! Bytes and time to bring two stores together by reconciliation, against sending the whole
//! history both ways, measured in the same run: `cargo bench --features sim --bench reconcile`.
//!
//! Two stores share 100,000 strings of 32 bytes and differ by k more (half on each side).
//! Reconciliation counts its messages (5-byte frame head each), the strings each side then
//! sends (a 5-byte frame head plus the text) and the Want frames for ids it lacks (3 bytes
//! plus 16 a id). The full-history exchange sends every string both ways, each side inserting
//! what it receives. Times are the best of a few runs and include the receivers' inserts.

use std::time::{Duration, Instant};

use floodchat::internals::{Progress, Reconciler, Store};

const SHARED: usize = 100_000;
const RUNS: usize = 3;
const FRAME_HEAD: usize = 5;

fn line(i: usize) -> String {
    format!("bench shared line {i:014}")
}

fn stores(k: usize) -> (Store, Store) {
    let mut a = Store::new();
    let mut b = Store::new();
    for i in 0..SHARED {
        a.insert(&line(i));
        b.insert(&line(i));
    }
    for i in 0..k {
        let side = if i % 2 == 0 { &mut a } else { &mut b };
        side.insert(&line(SHARED + i));
    }
    (a, b)
}

/// Bytes of a reconciliation, split by what they carried.
#[derive(Default, Clone, Copy)]
struct Bytes {
    messages: usize,
    recon: usize,
    strings: usize,
    want: usize,
}

impl Bytes {
    fn total(self) -> usize {
        self.recon + self.strings + self.want
    }
}

/// Sends `to` what `progress` says it lacks, and what `progress` says we want from it.
fn apply(progress: &Progress, me: &mut Store, peer: &mut Store, bytes: &mut Bytes) {
    let mut indices = Vec::new();
    for &range in &progress.peer_lacks {
        let mut rest = Some(range);
        while let Some(range) = rest {
            rest = me.walk(range, 1024, &mut indices);
        }
    }
    for index in indices {
        let text = me.get(index);
        bytes.strings += FRAME_HEAD + text.len();
        peer.insert(text);
    }
    for ids in progress.we_lack.chunks(2048) {
        bytes.want += FRAME_HEAD + 2 + 16 * ids.len();
        for id in ids {
            let index = peer.index_of(id).expect("the peer listed it");
            let text = peer.get(index);
            bytes.strings += FRAME_HEAD + text.len();
            me.insert(text);
        }
    }
}

fn reconcile(a: &mut Store, b: &mut Store) -> Bytes {
    let mut bytes = Bytes::default();
    let mut ra = Reconciler::new();
    let mut rb = Reconciler::new();
    let mut msg = Some(ra.initiate(a));
    let mut a_turn = false;
    while let Some(m) = msg.take() {
        bytes.messages += 1;
        bytes.recon += FRAME_HEAD + m.len();
        let (me, peer, rec) = if a_turn {
            (&mut *a, &mut *b, &mut ra)
        } else {
            (&mut *b, &mut *a, &mut rb)
        };
        let progress = rec.handle(me, &m).expect("well-formed");
        apply(&progress, me, peer, &mut bytes);
        msg = progress.reply;
        a_turn = !a_turn;
    }
    bytes
}

/// Every string of each side sent to the other; returns the bytes sent.
fn full_history(a: &mut Store, b: &mut Store) -> usize {
    send_all(a, b) + send_all(b, a)
}

/// Frames every string of `from` and inserts it into `to`; returns the bytes framed.
fn send_all(from: &Store, to: &mut Store) -> usize {
    let mut sent = 0;
    let mut wire = Vec::new();
    for text in from.iter() {
        wire.clear();
        wire.extend_from_slice(&(text.len() as u32 + 1).to_be_bytes());
        wire.push(2);
        wire.extend_from_slice(text.as_bytes());
        sent += wire.len();
        let received = std::str::from_utf8(&wire[FRAME_HEAD..]).expect("UTF-8");
        to.insert(received);
    }
    sent
}

fn main() {
    println!(
        "{:>7} {:>5} {:>10} {:>10} {:>10} {:>11} | {:>11} {:>9} | {:>7} {:>7}",
        "k",
        "msgs",
        "recon B",
        "strings B",
        "want B",
        "recon time",
        "full B",
        "full time",
        "B ratio",
        "t ratio"
    );
    for k in [0, 10, 1000, 100_000] {
        let mut best = Duration::MAX;
        let mut bytes = Bytes::default();
        for _ in 0..RUNS {
            let (mut a, mut b) = stores(k);
            let start = Instant::now();
            bytes = reconcile(&mut a, &mut b);
            best = best.min(start.elapsed());
            assert_eq!(a.len(), SHARED + k);
            assert_eq!(b.len(), SHARED + k);
        }
        let mut best_full = Duration::MAX;
        let mut full = 0;
        for _ in 0..RUNS {
            let (mut a, mut b) = stores(k);
            let start = Instant::now();
            full = full_history(&mut a, &mut b);
            best_full = best_full.min(start.elapsed());
            assert_eq!(a.len(), SHARED + k);
        }
        println!(
            "{k:>7} {:>5} {:>10} {:>10} {:>10} {:>9.1}ms | {full:>11} {:>7.1}ms | {:>7.4} {:>7.3}",
            bytes.messages,
            bytes.recon,
            bytes.strings,
            bytes.want,
            best.as_secs_f64() * 1e3,
            best_full.as_secs_f64() * 1e3,
            bytes.total() as f64 / full as f64,
            best.as_secs_f64() / best_full.as_secs_f64(),
        );
    }
    hostile_split();
}

/// The costliest Recon an attacker can send for its size: a Fingerprint on every short
/// range (two-byte bounds, 16 apart), each differing from ours, against a store of `n`: we
/// split each into 16 parts until our reply fills. Prints the best time per message byte.
fn hostile_split() {
    for n in [SHARED, 1_000_000] {
        let mut store = Store::new();
        for i in 0..n {
            store.insert(&line(i));
        }
        let mut msg = Vec::new();
        let mut bound = 16u16;
        while msg.len() + 22 <= floodchat::wire::MAX_RECON && bound < u16::MAX - 16 {
            // Tag: Fingerprint (mode 1) with a two-byte bound; count 1000; any sum.
            msg.push(1 << 5 | 2);
            msg.extend_from_slice(&bound.to_be_bytes());
            msg.extend_from_slice(&[0xe8, 0x07]);
            msg.extend_from_slice(&[0x5a; 16]);
            bound += 16;
        }
        let mut best = Duration::MAX;
        let mut reply = 0;
        for _ in 0..RUNS * 3 {
            let mut r = Reconciler::new();
            let start = Instant::now();
            let progress = r.handle(&store, &msg).expect("a valid message");
            best = best.min(start.elapsed());
            reply = progress.reply.map_or(0, |r| r.len());
        }
        println!(
            "hostile splitting Recon of {} bytes against {n} strings: {:.1} us, {:.1} ns a byte \
             (reply {reply} bytes)",
            msg.len(),
            best.as_secs_f64() * 1e6,
            best.as_secs_f64() * 1e9 / msg.len() as f64,
        );
    }
}
