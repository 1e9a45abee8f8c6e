//! Range-based set reconciliation of two [`Store`]s over an ordered byte channel.
//!
//! The two sides compare fingerprints (count and sum of ids, see [`Fingerprint`]) of ranges of
//! the id space. A range whose fingerprints differ is split into 16 parts by id value, or
//! answered with the list of our ids in it when we hold few; a list settles its range on the
//! side that reads it, which then knows both what it lacks and what the writer lacks. So each
//! side finds out by itself which of its strings to send and which ids to ask for, and neither
//! keeps any copy of the set: a [`Reconciler`] is a few words, and every message is judged
//! against the store as it is at that moment, so strings that arrive meanwhile are harmless.
//!
//! # Message format (the body of one Recon frame, at most [`MAX_RECON`] bytes)
//!
//! A message is a sequence of entries, each about the range that starts where the previous one
//! ended (the first at the smallest id) and ends before its *bound*:
//!
//! ```text
//! entry = tag:u8 bound:[u8; len] payload
//! tag   = mode << 5 | len      len 0..=16: the bound is these bytes, then zeros (16 in all)
//!                              len 17: the range ends at the largest id, and is the last one
//! mode 0 Skip         payload: none.             Nothing to do in this range.
//! mode 1 Fingerprint  payload: count, and the sum (16 bytes, big-endian) when count > 0.
//!                              The writer's fingerprint: compare and answer.
//! mode 2 Ids          payload: count, then count ids in increasing order.
//!                              All the writer's ids in the range: the reader settles it.
//! count = unsigned LEB128, at most 10 bytes
//! ```
//!
//! Ranges after the last entry are Skip. Each message with at least one Fingerprint gets a
//! reply (possibly empty); a message without one is the last of the exchange, and both sides
//! are then done. The side that dialed starts with [`Reconciler::initiate`].
//!
//! A reply that would outgrow [`MAX_RECON`] stops early with one Fingerprint for the rest
//! of the id space, which the next rounds split again (Negentropy's rule for frame limits).

use std::fmt;

use crate::store::{Fingerprint, Id, IdRange, Store};
use crate::wire::{ID_LEN, MAX_RECON};

/// Parts a differing range is split into.
const SPLIT: u128 = 16;

/// Most ids we answer a differing range with instead of splitting it.
const ID_LIST_MAX: u64 = 16;

/// Room kept free in a reply for one more range's answer plus the closing Fingerprint.
const RESERVE: usize = 1024;

/// Rounds allowed before any store size is counted.
const BASE_ROUNDS: u64 = 64;

/// Strings of our store per extra round allowed.
const STRINGS_PER_ROUND: u64 = 64;

const MODE_SKIP: u8 = 0;
const MODE_FINGERPRINT: u8 = 1;
const MODE_IDS: u8 = 2;
/// Bound length meaning "up to the largest id".
const LEN_END: u8 = 17;

/// What one reconciliation message means for this side.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// A message to send to the peer in one Recon frame (possibly empty), if one is due.
    pub reply: Option<Vec<u8>>,
    /// Ranges of ids the peer held none of ours in: send it our strings in them
    /// (walk them with [`Store::walk`]).
    pub peer_lacks: Vec<IdRange>,
    /// Ids the peer has and we lack: ask for them.
    pub we_lack: Vec<Id>,
    /// At most how many strings the peer may send us unasked because of our reply: its
    /// counts of the ranges we answered with our own ids (it sends what we lack there).
    pub peer_may_send: u64,
    /// Whether reconciliation is over on this side; later messages are errors.
    pub done: bool,
}

/// A peer's reconciliation traffic that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileError {
    /// A message longer than [`MAX_RECON`].
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A message that ends inside an entry.
    Truncated,
    /// An entry whose tag names no mode or bound length.
    BadTag(u8),
    /// A range that ends before it starts.
    BoundNotIncreasing,
    /// Bytes after the range that ends at the largest id.
    AfterEnd,
    /// A count that does not fit 64 bits.
    BadCount,
    /// A list of ids out of order or outside its range.
    IdsOutOfOrder,
    /// A message when none was due: before we started as initiator, or after the end.
    Unexpected,
    /// More rounds than a set of this size can need.
    TooManyRounds {
        /// The limit that was passed.
        limit: u64,
    },
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileError::TooLong { len } => write!(
                f,
                "reconciliation message of {len} bytes exceeds the maximum of {MAX_RECON}"
            ),
            ReconcileError::Truncated => f.write_str("reconciliation message ends mid-entry"),
            ReconcileError::BadTag(tag) => {
                write!(f, "reconciliation entry with unknown tag {tag:#04x}")
            }
            ReconcileError::BoundNotIncreasing => {
                f.write_str("reconciliation range ends before it starts")
            }
            ReconcileError::AfterEnd => {
                f.write_str("reconciliation message goes on past the last id")
            }
            ReconcileError::BadCount => f.write_str("reconciliation count does not fit 64 bits"),
            ReconcileError::IdsOutOfOrder => {
                f.write_str("reconciliation id list out of order or outside its range")
            }
            ReconcileError::Unexpected => f.write_str("reconciliation message when none was due"),
            ReconcileError::TooManyRounds { limit } => {
                write!(f, "reconciliation still going after {limit} rounds")
            }
        }
    }
}

impl std::error::Error for ReconcileError {}

/// Where a link's reconciliation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's next message (the first one, on the side that did not dial).
    Waiting,
    /// The exchange is over.
    Done,
}

/// One link's side of a reconciliation: a few words, whatever the size of the set.
#[derive(Debug, Clone)]
pub struct Reconciler {
    phase: Phase,
    rounds: u64,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler::new()
    }
}

impl Reconciler {
    /// A reconciler that waits for the peer's first message (the side that did not dial).
    pub fn new() -> Reconciler {
        Reconciler {
            phase: Phase::Waiting,
            rounds: 0,
        }
    }

    /// Whether reconciliation is over on this side.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Messages handled so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Starts reconciliation from this side (the side that dialed): the first message.
    ///
    /// Starts over if called again. When it returns, [`Reconciler::is_done`] may already be
    /// true: a small or empty set is sent as a list of ids, which needs no answer.
    pub fn initiate(&mut self, store: &Store) -> Vec<u8> {
        self.rounds = 0;
        let mut writer = Writer::default();
        let all = Range {
            first: 0,
            last: u128::MAX,
        };
        answer(store, all, None, &mut writer);
        self.phase = if writer.asks {
            Phase::Waiting
        } else {
            Phase::Done
        };
        writer.out
    }

    /// Handles one message from the peer: what to send back, to send and to ask for.
    ///
    /// An `Err` means the peer broke the protocol; drop the link with the error as reason.
    pub fn handle(&mut self, store: &Store, msg: &[u8]) -> Result<Progress, ReconcileError> {
        if msg.len() > MAX_RECON {
            return Err(ReconcileError::TooLong { len: msg.len() });
        }
        if self.phase == Phase::Done {
            return Err(ReconcileError::Unexpected);
        }
        self.rounds += 1;
        let limit = BASE_ROUNDS + store.len() as u64 / STRINGS_PER_ROUND;
        if self.rounds > limit {
            return Err(ReconcileError::TooManyRounds { limit });
        }
        let mut progress = Progress::default();
        let mut writer = Writer::default();
        let mut reader = Reader {
            rest: msg,
            next: Some(0),
        };
        let mut asked = false;
        while let Some((range, entry)) = reader.entry()? {
            match entry {
                Entry::Skip => {}
                Entry::Fingerprint(theirs) => {
                    asked = true;
                    if writer.out.len() + RESERVE > MAX_RECON {
                        // No room for more answers: one fingerprint for all the rest.
                        let rest = Range {
                            first: range.first,
                            last: u128::MAX,
                        };
                        writer.fingerprint(rest, store.fingerprint(rest.ids()));
                        break;
                    }
                    progress.peer_may_send = progress.peer_may_send.saturating_add(answer(
                        store,
                        range,
                        Some(theirs),
                        &mut writer,
                    ));
                    if let Some(lacked) = lacked_range(store, range, theirs) {
                        progress.peer_lacks.push(lacked);
                    }
                }
                Entry::Ids(ids) => settle(store, range, ids, &mut progress)?,
            }
        }
        if asked {
            if !writer.asks {
                self.phase = Phase::Done;
            }
            progress.reply = Some(writer.out);
        } else {
            self.phase = Phase::Done;
        }
        progress.done = self.phase == Phase::Done;
        Ok(progress)
    }
}

/// An inclusive range of ids as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    first: u128,
    last: u128,
}

impl Range {
    fn ids(self) -> IdRange {
        IdRange {
            first: Id::from_u128(self.first),
            last: Id::from_u128(self.last),
        }
    }
}

/// The whole of `range`, if the peer's fingerprint says it holds none of our ids there.
fn lacked_range(store: &Store, range: Range, theirs: Fingerprint) -> Option<IdRange> {
    (theirs.count == 0 && store.count(range.ids()) > 0).then(|| range.ids())
}

/// Writes our answer for `range`, given the peer's fingerprint (`None`: the first message);
/// returns the peer's count there if the answer lists ids of ours, as the peer then sends
/// us up to that many strings of the range unasked (0 otherwise).
fn answer(store: &Store, range: Range, theirs: Option<Fingerprint>, writer: &mut Writer) -> u64 {
    let ours = store.fingerprint(range.ids());
    let listed = match theirs {
        Some(theirs) if theirs == ours => false,
        // The peer has nothing here: it gets our strings, nothing to say.
        Some(theirs) if theirs.count == 0 => false,
        _ if ours.count <= ID_LIST_MAX => {
            writer.ids(range, store);
            true
        }
        None => {
            writer.fingerprint(range, ours);
            false
        }
        Some(_) => split(store, range, writer),
    };
    match theirs {
        Some(theirs) if listed => theirs.count,
        _ => 0,
    }
}

/// Writes the fingerprints (or id lists, for parts with at most one id) of `range`'s parts;
/// whether any part was a list.
fn split(store: &Store, range: Range, writer: &mut Writer) -> bool {
    let mut listed = false;
    let width = range.last - range.first;
    let step = width / SPLIT + 1;
    // Round each bound down to a power of two near the step, so that bounds are short.
    let align = 1u128 << (127 - step.leading_zeros());
    let mut first = range.first;
    for part in 1..=SPLIT {
        let last = if part == SPLIT {
            range.last
        } else {
            let Some(bound) = step
                .checked_mul(part)
                .and_then(|offset| range.first.checked_add(offset))
                .map(|raw| raw & !(align - 1))
            else {
                continue;
            };
            if bound <= first || bound > range.last {
                continue;
            }
            bound - 1
        };
        let part_range = Range { first, last };
        let fingerprint = store.fingerprint(part_range.ids());
        if fingerprint.count <= 1 {
            writer.ids(part_range, store);
            listed = true;
        } else {
            writer.fingerprint(part_range, fingerprint);
        }
        if last == range.last {
            break;
        }
        first = last + 1;
    }
    listed
}

/// Settles `range` from the peer's full list of ids in it.
fn settle(
    store: &Store,
    range: Range,
    ids: &[u8],
    progress: &mut Progress,
) -> Result<(), ReconcileError> {
    let mut gap_first = Some(range.first);
    for chunk in ids.chunks_exact(ID_LEN) {
        let id = Id(chunk.try_into().expect("chunks of ID_LEN bytes"));
        let key = id.to_u128();
        // Ids increase strictly, so each starts at or after the current gap.
        let first = gap_first.ok_or(ReconcileError::IdsOutOfOrder)?;
        if key < first || key > range.last {
            return Err(ReconcileError::IdsOutOfOrder);
        }
        if key > first {
            lacked_gap(store, first, key - 1, progress);
        }
        if store.index_of(&id).is_none() {
            progress.we_lack.push(id);
        }
        gap_first = key.checked_add(1);
    }
    if let Some(first) = gap_first.filter(|&first| first <= range.last) {
        lacked_gap(store, first, range.last, progress);
    }
    Ok(())
}

/// Notes that the peer lacks our ids in `first..=last`, if we have any.
fn lacked_gap(store: &Store, first: u128, last: u128, progress: &mut Progress) {
    let gap = Range { first, last }.ids();
    if store.count(gap) > 0 {
        progress.peer_lacks.push(gap);
    }
}

/// One entry read from a message.
enum Entry<'a> {
    Skip,
    Fingerprint(Fingerprint),
    /// The ids, `ID_LEN` bytes each.
    Ids(&'a [u8]),
}

/// Reads entries from a message, checking the format.
struct Reader<'a> {
    rest: &'a [u8],
    /// Where the next range starts; `None` after the range that ends at the largest id.
    next: Option<u128>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReconcileError> {
        if self.rest.len() < n {
            return Err(ReconcileError::Truncated);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn count(&mut self) -> Result<u64, ReconcileError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.take(1)?[0];
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(ReconcileError::BadCount);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ReconcileError::BadCount)
    }

    /// The next entry and its range, or `None` at the end of the message.
    fn entry(&mut self) -> Result<Option<(Range, Entry<'a>)>, ReconcileError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let Some(first) = self.next else {
            return Err(ReconcileError::AfterEnd);
        };
        let tag = self.take(1)?[0];
        let (mode, len) = (tag >> 5, tag & 0x1f);
        let last = match len {
            0..=16 => {
                let mut bound = [0u8; ID_LEN];
                bound[..usize::from(len)].copy_from_slice(self.take(usize::from(len))?);
                let bound = u128::from_be_bytes(bound);
                if bound <= first {
                    return Err(ReconcileError::BoundNotIncreasing);
                }
                bound - 1
            }
            LEN_END => u128::MAX,
            _ => return Err(ReconcileError::BadTag(tag)),
        };
        self.next = last.checked_add(1);
        let range = Range { first, last };
        let entry = match mode {
            MODE_SKIP => Entry::Skip,
            MODE_FINGERPRINT => {
                let count = self.count()?;
                let sum = if count == 0 {
                    0
                } else {
                    let bytes = self.take(16)?;
                    u128::from_be_bytes(bytes.try_into().expect("16 bytes"))
                };
                Entry::Fingerprint(Fingerprint { count, sum })
            }
            MODE_IDS => {
                let count = self.count()?;
                let bytes = usize::try_from(count)
                    .ok()
                    .and_then(|count| count.checked_mul(ID_LEN))
                    .ok_or(ReconcileError::Truncated)?;
                Entry::Ids(self.take(bytes)?)
            }
            _ => return Err(ReconcileError::BadTag(tag)),
        };
        Ok(Some((range, entry)))
    }
}

/// Builds a message: entries for the ranges written, Skip entries for the gaps between them.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    /// Where the last written range ended (exclusive); 0 at the start.
    next: u128,
    /// Whether a Fingerprint was written, so that an answer is due.
    asks: bool,
}

impl Writer {
    fn head(&mut self, range: Range, mode: u8) {
        if range.first > self.next {
            self.bound(MODE_SKIP, range.first);
        }
        match range.last.checked_add(1) {
            Some(bound) => self.bound(mode, bound),
            None => self.out.push(mode << 5 | LEN_END),
        }
        self.next = range.last.wrapping_add(1);
    }

    fn bound(&mut self, mode: u8, bound: u128) {
        let bytes = bound.to_be_bytes();
        let len = ID_LEN - (bound.trailing_zeros() / 8) as usize;
        self.out.push(mode << 5 | len as u8);
        self.out.extend_from_slice(&bytes[..len]);
    }

    fn count(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    fn fingerprint(&mut self, range: Range, fingerprint: Fingerprint) {
        self.asks = true;
        self.head(range, MODE_FINGERPRINT);
        self.count(fingerprint.count);
        if fingerprint.count > 0 {
            self.out.extend_from_slice(&fingerprint.sum.to_be_bytes());
        }
    }

    fn ids(&mut self, range: Range, store: &Store) {
        let mut ids = Vec::new();
        store.ids_in(range.ids(), ID_LIST_MAX as usize, &mut ids);
        self.head(range, MODE_IDS);
        self.count(ids.len() as u64);
        for id in ids {
            self.out.extend_from_slice(&id.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one reconciliation between two stores cost.
    #[derive(Debug, Default)]
    struct Report {
        messages: usize,
        recon_bytes: usize,
        /// Strings sent, to either side.
        sent: usize,
        /// Strings sent that the receiver already had.
        wasted: usize,
    }

    fn line(i: usize) -> String {
        format!("shared line number {i:013}")
    }

    fn store_of(texts: impl IntoIterator<Item = String>) -> Store {
        let mut store = Store::new();
        for text in texts {
            store.insert(&text);
        }
        store
    }

    /// Sends `to` every string of `from` that `progress` says `to` lacks or asked for.
    fn deliver(progress: &Progress, from: &Store, to: &mut Store, report: &mut Report) {
        let mut indices = Vec::new();
        for &range in &progress.peer_lacks {
            let mut rest = Some(range);
            while let Some(range) = rest {
                rest = from.walk(range, 100, &mut indices);
            }
        }
        for &index in &indices {
            report.sent += 1;
            if to.insert(from.get(index)).is_none() {
                report.wasted += 1;
            }
        }
    }

    /// Asks `from` for the ids `progress` says `to` lacks.
    fn fetch(progress: &Progress, from: &Store, to: &mut Store, report: &mut Report) {
        for id in &progress.we_lack {
            let index = from.index_of(id).expect("the peer has what it listed");
            report.sent += 1;
            if to.insert(from.get(index)).is_none() {
                report.wasted += 1;
            }
        }
    }

    /// Reconciles `a` (which dials) with `b`, delivering strings as soon as each side knows;
    /// `between` runs before each message is handled, with the message's receiver first.
    fn sync_with(
        a: &mut Store,
        b: &mut Store,
        mut between: impl FnMut(&mut Store, &mut Store),
    ) -> Report {
        let mut report = Report::default();
        let mut ra = Reconciler::new();
        let mut rb = Reconciler::new();
        let mut msg = Some(ra.initiate(a));
        let mut a_turn = false;
        while let Some(m) = msg.take() {
            report.messages += 1;
            report.recon_bytes += m.len();
            assert!(m.len() <= MAX_RECON);
            let (me, peer, rec) = if a_turn {
                (&mut *a, &mut *b, &mut ra)
            } else {
                (&mut *b, &mut *a, &mut rb)
            };
            between(me, peer);
            let progress = rec.handle(me, &m).expect("well-formed traffic");
            assert_eq!(progress.done, rec.is_done());
            deliver(&progress, me, peer, &mut report);
            fetch(&progress, peer, me, &mut report);
            msg = progress.reply;
            a_turn = !a_turn;
        }
        assert!(ra.is_done() && rb.is_done(), "both sides know the end");
        report
    }

    fn sync(a: &mut Store, b: &mut Store) -> Report {
        sync_with(a, b, |_, _| {})
    }

    fn sorted(store: &Store) -> Vec<&str> {
        let mut all: Vec<&str> = store.iter().collect();
        all.sort_unstable();
        all
    }

    /// 100,000 shared strings, and `k` more split between the two sides.
    fn differing(k: usize) -> (Store, Store) {
        const SHARED: usize = 100_000;
        let a = (0..SHARED).chain((0..k).step_by(2).map(|i| SHARED + i));
        let b = (0..SHARED).chain((1..k).step_by(2).map(|i| SHARED + i));
        (store_of(a.map(line)), store_of(b.map(line)))
    }

    #[test]
    fn equal_sets_exchange_two_small_messages() {
        let (mut a, mut b) = differing(0);
        let report = sync(&mut a, &mut b);
        eprintln!("equal sets of 100,000: {report:?}");
        assert_eq!(report.messages, 2);
        assert!(report.recon_bytes <= 32, "{report:?}");
        assert_eq!(report.sent, 0);
    }

    #[test]
    fn differences_are_found_exactly() {
        for k in [1, 10, 1000] {
            let (mut a, mut b) = differing(k);
            let report = sync(&mut a, &mut b);
            eprintln!("100,000 shared, {k} different: {report:?}");
            assert_eq!(report.sent, k, "exactly the difference is sent");
            assert_eq!(report.wasted, 0);
            assert_eq!(a.len(), 100_000 + k);
            assert_eq!(sorted(&a), sorted(&b));
        }
    }

    #[test]
    fn an_empty_side_gets_everything_from_ranges() {
        for empty_dials in [true, false] {
            let full = store_of((0..20_000).map(line));
            let (mut a, mut b) = if empty_dials {
                (Store::new(), full)
            } else {
                (full, Store::new())
            };
            let report = sync(&mut a, &mut b);
            eprintln!("empty side dials: {empty_dials}: {report:?}");
            assert_eq!(report.sent, 20_000);
            assert_eq!(report.wasted, 0);
            assert!(
                report.messages <= 3 && report.recon_bytes <= 64,
                "{report:?}"
            );
            assert_eq!(sorted(&a), sorted(&b));
        }
    }

    #[test]
    fn both_empty_is_one_message() {
        let report = sync(&mut Store::new(), &mut Store::new());
        assert_eq!(report.messages, 1);
        assert_eq!(report.sent, 0);
    }

    #[test]
    fn large_differences_stay_within_the_message_limit() {
        let a = store_of((0..30_000).map(line));
        let b = store_of((30_000..60_000).map(line));
        let (mut a, mut b) = (a, b);
        let report = sync(&mut a, &mut b);
        eprintln!("two disjoint sets of 30,000: {report:?}");
        assert_eq!(report.sent, 60_000);
        assert_eq!(report.wasted, 0);
        assert_eq!(sorted(&a), sorted(&b));
    }

    #[test]
    fn strings_typed_during_reconciliation_are_neither_lost_nor_an_error() {
        let (mut a, mut b) = differing(1000);
        let mut typed = 0;
        // Each side types a line before each message; the line floods to the peer one step
        // later, as on a link with latency.
        let mut in_flight: Vec<(bool, String)> = Vec::new();
        let report = sync_with(&mut a, &mut b, |me, peer| {
            // Sides swap roles at every message: last call's receiver is now the peer.
            for (to_last_receiver, text) in in_flight.drain(..) {
                if to_last_receiver {
                    peer.insert(&text);
                } else {
                    me.insert(&text);
                }
            }
            for to_me in [false, true] {
                let text = format!("typed line {typed}");
                typed += 1;
                if to_me {
                    peer.insert(&text);
                } else {
                    me.insert(&text);
                }
                in_flight.push((to_me, text));
            }
        });
        for (_, text) in in_flight {
            a.insert(&text);
            b.insert(&text);
        }
        eprintln!("1,000 different, with typing: {report:?}");
        assert_eq!(a.len(), 100_000 + 1000 + typed);
        assert_eq!(sorted(&a), sorted(&b));
    }

    #[test]
    fn malformed_messages_are_errors_with_reasons() {
        let store = store_of((0..100).map(line));
        let cases: [(&[u8], ReconcileError); 6] = [
            (&[0x21, 0x80], ReconcileError::Truncated),
            (&[0x7f], ReconcileError::BadTag(0x7f)),
            (&[0x31, 0x00, 0x00], ReconcileError::AfterEnd),
            (
                &[0x21, 0x00, 0x01, 0x00],
                ReconcileError::BoundNotIncreasing,
            ),
            (
                &[
                    0x31, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
                ],
                ReconcileError::BadCount,
            ),
            (&[0x51, 0x01, 0x00], ReconcileError::Truncated),
        ];
        for (msg, expected) in cases {
            let error = Reconciler::new().handle(&store, msg).unwrap_err();
            assert_eq!(error, expected, "{msg:02x?}");
            assert!(!error.to_string().is_empty());
        }
        let mut two_ids_backwards = vec![0x40 | LEN_END, 2];
        two_ids_backwards.extend_from_slice(&[9; 16]);
        two_ids_backwards.extend_from_slice(&[8; 16]);
        assert_eq!(
            Reconciler::new().handle(&store, &two_ids_backwards),
            Err(ReconcileError::IdsOutOfOrder)
        );
        let too_long = vec![0; MAX_RECON + 1];
        assert_eq!(
            Reconciler::new()
                .handle(&store, &too_long)
                .unwrap_err()
                .to_string(),
            "reconciliation message of 61441 bytes exceeds the maximum of 61440"
        );
    }

    #[test]
    fn a_message_after_the_end_is_unexpected() {
        let store = store_of((0..100).map(line));
        let mut reconciler = Reconciler::new();
        // An empty message is a last one: nothing to compare.
        let progress = reconciler.handle(&store, &[]).expect("valid");
        assert!(progress.done && progress.reply.is_none());
        assert_eq!(
            reconciler.handle(&store, &[]),
            Err(ReconcileError::Unexpected)
        );
    }

    #[test]
    fn endless_fingerprints_hit_the_round_limit() {
        let store = store_of((0..1000).map(line));
        let mut reconciler = Reconciler::new();
        // A fingerprint of the whole id space that never matches ours.
        let mut msg = vec![0x20 | LEN_END, 0x05];
        msg.extend_from_slice(&[7; 16]);
        let error = (0..10_000)
            .find_map(|_| reconciler.handle(&store, &msg).err())
            .expect("the rounds end");
        assert_eq!(
            error,
            ReconcileError::TooManyRounds {
                limit: 64 + 1000 / 64
            }
        );
    }
}
