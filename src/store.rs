//! The room's strings: a compact, append-only set that remembers learning order and keeps
//! the strings' ids sorted for set reconciliation.
//!
//! Memory per string is its text plus about 28 bytes: a 4-byte end offset into one text
//! arena, a 20-byte entry (id and index) in the sorted view, which also serves dedup, and 1
//! to 2 bytes of a Bloom filter (`filter`) that turns most new ids away before any search.
//! Ids are uniformly distributed, so an interpolation search finds one in a few probes per
//! run. The sorted view is a few sorted runs of growing size (64, 1 Ki, 16 Ki, ... entries);
//! an insert goes into the smallest run, and a run that outgrows its size is merged into the
//! next. So an insert moves a handful of entries on average and never the whole set. Each run
//! keeps the sum of its ids every 32 entries, so the
//! [`Fingerprint`] of any range of ids costs a few binary searches.

use std::fmt;

use filter::Filter;

mod filter;

pub(crate) use crate::wire::ID_LEN;

/// Entries in the smallest sorted run before it is merged into the next.
const FIRST_RUN: usize = 64;

/// How much larger each sorted run may grow than the one before it.
const FANOUT: usize = 16;

/// Entries between two stored prefix sums of a run.
const BLOCK: usize = 32;

/// The id of a string: the first 16 bytes of the BLAKE3 hash of its text.
///
/// Ids compare as big-endian numbers, which is the order of the sorted view.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// The smallest id.
    pub const MIN: Id = Id([0; ID_LEN]);
    /// The largest id.
    pub const MAX: Id = Id([0xff; ID_LEN]);

    /// The id of `text`.
    pub fn of(text: &str) -> Id {
        let hash = blake3::hash(text.as_bytes());
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&hash.as_bytes()[..ID_LEN]);
        Id(id)
    }

    /// The id as a number, in the same order as the id.
    pub fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The id whose number is `key`.
    pub fn from_u128(key: u128) -> Id {
        Id(key.to_be_bytes())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// An inclusive range of ids, `first..=last`, in id order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IdRange {
    /// The smallest id in the range.
    pub first: Id,
    /// The largest id in the range.
    pub last: Id,
}

impl IdRange {
    /// Every id.
    pub const ALL: IdRange = IdRange {
        first: Id::MIN,
        last: Id::MAX,
    };

    /// The range `first..=last`, or `None` if `first > last`.
    pub fn new(first: Id, last: Id) -> Option<IdRange> {
        (first <= last).then_some(IdRange { first, last })
    }

    /// Whether `id` lies in the range.
    pub fn contains(&self, id: &Id) -> bool {
        self.first <= *id && *id <= self.last
    }
}

/// A summary of the ids in a range: how many, and their sum modulo 2^128.
///
/// Two ranges with equal fingerprints hold the same ids but for a chance of about 2^-128
/// (ids are cryptographic hashes, so sums of different sets collide only by accident).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Fingerprint {
    /// Number of ids.
    pub count: u64,
    /// Sum of the ids as big-endian numbers, modulo 2^128.
    pub sum: u128,
}

/// One string in the sorted view: its id and its index in learning order.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: [u8; ID_LEN],
    index: u32,
}

impl Entry {
    fn key(&self) -> u128 {
        u128::from_be_bytes(self.id)
    }
}

/// One sorted run of the sorted view, with prefix sums every [`BLOCK`] entries.
#[derive(Default)]
struct Run {
    entries: Vec<Entry>,
    /// `sums[j]` is the sum of the keys of `entries[..j * BLOCK]`; only `sums[0]` in the
    /// smallest run.
    sums: Vec<u128>,
    /// `starts[j]` is the first entry whose key's top bits, shifted right by `shift`, are at
    /// least `j`; empty for the smallest run, which changes on every insert.
    starts: Vec<u32>,
    shift: u32,
    /// `2^-shift`: turns a key's place inside its bucket into a fraction.
    scale: f64,
}

/// The top 64 bits of a key.
fn top(key: u128) -> u64 {
    (key >> 64) as u64
}

impl Run {
    /// Position of the first entry whose key is at least `key`.
    ///
    /// Keys are uniformly spread, so the top bits of `key` pick a bucket of a few dozen entries
    /// from `starts` (small, mostly in cache), and the position inside it is interpolated:
    /// usually one cache miss into `entries`.
    fn lower_bound(&self, key: u128) -> usize {
        if self.starts.is_empty() {
            return self.entries.partition_point(|e| e.key() < key);
        }
        let target = top(key);
        let bucket = (target >> self.shift) as usize;
        let (lo, hi) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        let block = &self.entries[lo..hi];
        if block.len() > 4 * BLOCK {
            // Crowded, as ids ground to share their top bits would make it: search it whole.
            return lo + block.partition_point(|e| e.key() < key);
        }
        if block.is_empty() {
            return lo;
        }
        let within = target - ((bucket as u64) << self.shift);
        let fraction = within as f64 * self.scale;
        let mut at = ((block.len() as f64 * fraction) as usize).min(block.len() - 1);
        while at > 0 && block[at - 1].key() >= key {
            at -= 1;
        }
        while at < block.len() && block[at].key() < key {
            at += 1;
        }
        lo + at
    }

    /// Rebuilds `starts` for the current entries (or drops it for a small run).
    fn reindex(&mut self) {
        self.starts.clear();
        let buckets = self.entries.len() / BLOCK;
        if buckets < 2 {
            return;
        }
        let bits = buckets.ilog2();
        self.shift = 64 - bits;
        self.scale = (-f64::from(self.shift)).exp2();
        self.starts.reserve_exact((1 << bits) + 1);
        let mut next = 0usize;
        for (at, entry) in self.entries.iter().enumerate() {
            let bucket = (top(entry.key()) >> self.shift) as usize;
            while next <= bucket {
                self.starts.push(at as u32);
                next += 1;
            }
        }
        while next <= 1 << bits {
            self.starts.push(self.entries.len() as u32);
            next += 1;
        }
    }

    /// The entry whose key is `key`, if any.
    fn find(&self, key: u128) -> Option<&Entry> {
        let at = self.lower_bound(key);
        self.entries.get(at).filter(|e| e.key() == key)
    }

    /// Position just after the last entry whose key is at most `key`.
    fn upper_bound(&self, key: u128) -> usize {
        match key.checked_add(1) {
            Some(next) => self.lower_bound(next),
            None => self.entries.len(),
        }
    }

    /// Sum of the keys of `entries[..end]`.
    ///
    /// The smallest run keeps only `sums[0]` (it changes on every insert and is short), so
    /// its sums are folded here.
    fn prefix_sum(&self, end: usize) -> u128 {
        let block = (end / BLOCK).min(self.sums.len() - 1);
        self.entries[block * BLOCK..end]
            .iter()
            .fold(self.sums[block], |sum, e| sum.wrapping_add(e.key()))
    }

    /// Recomputes the prefix sums from entry `from` on.
    fn resum(&mut self, from: usize) {
        let first_block = from / BLOCK;
        self.sums.truncate(first_block + 1);
        if self.sums.is_empty() {
            self.sums.push(0);
        }
        let mut sum = self.sums[first_block];
        let blocks = self.entries[first_block * BLOCK..].chunks(BLOCK);
        for chunk in blocks {
            if chunk.len() < BLOCK {
                break;
            }
            sum = chunk.iter().fold(sum, |s, e| s.wrapping_add(e.key()));
            self.sums.push(sum);
        }
    }

    /// Merges `other`'s entries into this run, leaving `other` empty.
    fn absorb(&mut self, other: &mut Run) {
        let old = self.entries.len();
        let extra = other.entries.len();
        self.entries.reserve_exact(extra);
        let filler = Entry {
            id: [0; ID_LEN],
            index: 0,
        };
        self.entries.resize(old + extra, filler);
        // Merge from the back so that no second buffer is needed.
        let (mut i, mut j, mut k) = (old, extra, old + extra);
        while j > 0 {
            if i > 0 && self.entries[i - 1].key() > other.entries[j - 1].key() {
                self.entries[k - 1] = self.entries[i - 1];
                i -= 1;
            } else {
                self.entries[k - 1] = other.entries[j - 1];
                j -= 1;
            }
            k -= 1;
        }
        other.entries.clear();
        other.sums.clear();
        other.sums.push(0);
        other.starts.clear();
        self.reindex();
        // Entries before `i` did not move.
        self.resum(i);
    }

    fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
            + self.sums.capacity() * size_of::<u128>()
            + self.starts.capacity() * size_of::<u32>()
    }
}

/// The room's set of strings, in learning order, with ids in sorted order.
///
/// Indices are given in learning order from 0 and never change. Up to 2^32 - 1 strings.
pub struct Store {
    /// Every string's text, one after the other.
    text: String,
    /// `ends[i]` is the end of string `i` in `text`, modulo 2^32.
    ends: Vec<u32>,
    /// For each multiple of 2^32 that `text` crossed, the first index ending beyond it.
    wraps: Vec<u32>,
    /// The sorted view: runs of growing size limits, smallest first.
    runs: Vec<Run>,
    /// Every id in `runs`, for answering "absent" without searching them.
    filter: Filter,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("text_bytes", &self.text_bytes())
            .finish_non_exhaustive()
    }
}

/// Makes room for `extra` more items in `vec`, growing by an eighth instead of doubling.
fn grow_gently<T>(vec: &mut Vec<T>, extra: usize) {
    if vec.capacity() - vec.len() < extra {
        vec.reserve_exact((vec.len() / 8).max(extra).max(1024));
    }
}

/// The end of string `index`, from the stored offsets.
fn end_of(ends: &[u32], wraps: &[u32], index: usize) -> usize {
    let wrapped = wraps.partition_point(|&w| w as usize <= index);
    (wrapped << 32) | ends[index] as usize
}

/// The text of string `index`.
fn text_of<'a>(text: &'a str, ends: &[u32], wraps: &[u32], index: usize) -> &'a str {
    let start = if index == 0 {
        0
    } else {
        end_of(ends, wraps, index - 1)
    };
    &text[start..end_of(ends, wraps, index)]
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store {
            text: String::new(),
            ends: Vec::new(),
            wraps: Vec::new(),
            runs: Vec::new(),
            filter: Filter::default(),
        }
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the store holds no string.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of text.
    pub fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Heap bytes held, allocated capacity included.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * size_of::<u32>()
            + self.wraps.capacity() * size_of::<u32>()
            + self.runs.iter().map(Run::heap_bytes).sum::<usize>()
            + self.filter.heap_bytes()
    }

    /// Adds `text` if it is new: its index in learning order, or `None` if already present.
    ///
    /// Strings are told apart by their [`Id`]s (two texts with one id, a chance of about
    /// 2^-128 per pair, count as one).
    ///
    /// # Panics
    /// If the store already holds 2^32 - 1 strings.
    pub fn insert(&mut self, text: &str) -> Option<usize> {
        let id = Id::of(text);
        if self.index_of(&id).is_some() {
            return None;
        }
        let index = self.ends.len();
        let index32 = u32::try_from(index)
            .ok()
            .filter(|&i| i < u32::MAX)
            .expect("a store holds fewer than 2^32 - 1 strings");
        grow_gently(&mut self.ends, 1);
        let spare = self.text.capacity() - self.text.len();
        if spare < text.len() {
            // Grow by an eighth rather than doubling: the arena is most of the memory.
            let step = (self.text.len() / 8).max(text.len()).max(1 << 16);
            self.text.reserve_exact(step);
        }
        self.text.push_str(text);
        let after = self.text.len();
        if (after as u64) >> 32 > self.wraps.len() as u64 {
            // This string is the first to end in the next 2^32 bytes of text.
            self.wraps.push(index32);
        }
        self.ends.push(after as u32);
        let entry = Entry {
            id: id.0,
            index: index32,
        };
        self.add_sorted(entry);
        if self.filter.is_full() {
            let keys = self
                .runs
                .iter()
                .flat_map(|r| r.entries.iter().map(Entry::key));
            self.filter.rebuild(self.ends.len(), keys);
        } else {
            self.filter.add(entry.key());
        }
        Some(index)
    }

    /// Puts `entry` into the smallest run, and merges runs that outgrew their limit.
    fn add_sorted(&mut self, entry: Entry) {
        if self.runs.is_empty() {
            self.runs.push(Run {
                entries: Vec::with_capacity(FIRST_RUN + 1),
                sums: vec![0],
                starts: Vec::new(),
                shift: 0,
                scale: 0.0,
            });
        }
        let first = &mut self.runs[0];
        let at = first.lower_bound(entry.key());
        first.entries.insert(at, entry);
        let mut level = 0;
        let mut limit = FIRST_RUN;
        while self.runs[level].entries.len() > limit {
            if level + 1 == self.runs.len() {
                self.runs.push(Run {
                    entries: Vec::new(),
                    sums: vec![0],
                    starts: Vec::new(),
                    shift: 0,
                    scale: 0.0,
                });
            }
            let (small, large) = self.runs.split_at_mut(level + 1);
            large[0].absorb(&mut small[level]);
            level += 1;
            limit *= FANOUT;
        }
    }

    /// Whether `text` is in the store.
    pub fn contains(&self, text: &str) -> bool {
        self.index_of(&Id::of(text)).is_some()
    }

    /// The text of string `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn get(&self, index: usize) -> &str {
        text_of(&self.text, &self.ends, &self.wraps, index)
    }

    /// The strings in learning order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The id of string `index` (hashed again from its text).
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn id(&self, index: usize) -> Id {
        Id::of(self.get(index))
    }

    /// The index of the string whose id is `id`, if present.
    pub fn index_of(&self, id: &Id) -> Option<usize> {
        let key = id.to_u128();
        if !self.filter.may_contain(key) {
            return None;
        }
        self.runs
            .iter()
            .find_map(|run| run.find(key).map(|e| e.index as usize))
    }

    /// The count and sum of the ids in `range`.
    pub fn fingerprint(&self, range: IdRange) -> Fingerprint {
        let (first, last) = (range.first.to_u128(), range.last.to_u128());
        let mut fingerprint = Fingerprint::default();
        for run in &self.runs {
            let start = run.lower_bound(first);
            let end = run.upper_bound(last);
            if start < end {
                fingerprint.count += (end - start) as u64;
                let sum = run.prefix_sum(end).wrapping_sub(run.prefix_sum(start));
                fingerprint.sum = fingerprint.sum.wrapping_add(sum);
            }
        }
        fingerprint
    }

    /// Number of ids in `range`.
    pub fn count(&self, range: IdRange) -> usize {
        let (first, last) = (range.first.to_u128(), range.last.to_u128());
        self.runs
            .iter()
            .map(|run| run.upper_bound(last) - run.lower_bound(first))
            .sum()
    }

    /// Walks `range` in id order: appends the indices of up to `max` strings whose ids lie in
    /// it to `out`, and returns the part of `range` still to walk (`None` when done).
    ///
    /// Strings added later with ids in the returned range are found by the next call.
    pub fn walk(&self, range: IdRange, max: usize, out: &mut Vec<usize>) -> Option<IdRange> {
        self.merge(range, max, |entry| out.push(entry.index as usize))
    }

    /// The ids in `range` in id order, appended to `out` (at most `max` of them).
    pub(crate) fn ids_in(&self, range: IdRange, max: usize, out: &mut Vec<Id>) {
        self.merge(range, max, |entry| out.push(Id(entry.id)));
    }

    /// Calls `each` on up to `max` entries of `range` in id order, merged from every run;
    /// returns the part of `range` not visited.
    fn merge(&self, range: IdRange, max: usize, mut each: impl FnMut(&Entry)) -> Option<IdRange> {
        let (first, last) = (range.first.to_u128(), range.last.to_u128());
        let mut at: Vec<usize> = self.runs.iter().map(|r| r.lower_bound(first)).collect();
        let mut next = first;
        for _ in 0..max {
            let smallest = self
                .runs
                .iter()
                .zip(&at)
                .enumerate()
                .filter_map(|(r, (run, &pos))| run.entries.get(pos).map(|e| (e.key(), r)))
                .filter(|&(key, _)| key <= last)
                .min()?;
            let (key, r) = smallest;
            each(&self.runs[r].entries[at[r]]);
            at[r] += 1;
            next = key.checked_add(1)?;
        }
        IdRange::new(Id::from_u128(next), range.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> String {
        format!("line {i:027}")
    }

    #[test]
    fn insert_dedups_and_keeps_learning_order() {
        let mut store = Store::new();
        assert_eq!(store.insert("a"), Some(0));
        assert_eq!(store.insert("bc"), Some(1));
        assert_eq!(store.insert("a"), None);
        assert_eq!(store.insert(""), Some(2));
        assert_eq!(store.len(), 3);
        assert_eq!(store.text_bytes(), 3);
        assert_eq!(store.get(0), "a");
        assert_eq!(store.get(1), "bc");
        assert_eq!(store.get(2), "");
        assert!(store.contains("bc"));
        assert!(!store.contains("b"));
        assert_eq!(store.iter().collect::<Vec<_>>(), ["a", "bc", ""]);
    }

    #[test]
    fn ids_map_back_to_indices() {
        let mut store = Store::new();
        for i in 0..5000 {
            store.insert(&line(i));
        }
        for i in (0..5000).step_by(7) {
            let id = store.id(i);
            assert_eq!(id, Id::of(&line(i)));
            assert_eq!(store.index_of(&id), Some(i));
        }
        assert_eq!(store.index_of(&Id::of("absent")), None);
    }

    #[test]
    fn fingerprints_and_walks_agree_with_a_sorted_list() {
        let mut store = Store::new();
        let mut ids = Vec::new();
        for i in 0..20_000 {
            store.insert(&line(i));
            ids.push(Id::of(&line(i)));
            if i % 4999 == 4998 {
                ids.sort();
                let cuts = [0, 1, ids.len() / 3, ids.len() / 2, ids.len() - 1];
                for &a in &cuts {
                    for &b in &cuts {
                        let Some(range) = IdRange::new(ids[a], ids[b]) else {
                            continue;
                        };
                        let inside: Vec<&Id> = ids.iter().filter(|id| range.contains(id)).collect();
                        let fp = store.fingerprint(range);
                        assert_eq!(fp.count, inside.len() as u64);
                        let sum = inside
                            .iter()
                            .fold(0u128, |s, id| s.wrapping_add(id.to_u128()));
                        assert_eq!(fp.sum, sum);
                        assert_eq!(store.count(range), inside.len());
                        // Walk in small steps: the same ids, in order.
                        let mut walked = Vec::new();
                        let mut rest = Some(range);
                        while let Some(r) = rest {
                            rest = store.walk(r, 7, &mut walked);
                        }
                        let walked: Vec<Id> = walked.iter().map(|&i| store.id(i)).collect();
                        let inside: Vec<Id> = inside.into_iter().copied().collect();
                        assert_eq!(walked, inside);
                    }
                }
            }
        }
    }

    #[test]
    fn memory_of_a_large_store_stays_within_text_plus_32_bytes_a_string() {
        // 200,000 strings keep the test fast; the bench measures 1,000,000.
        let n = 200_000;
        let mut store = Store::new();
        for i in 0..n {
            store.insert(&line(i));
        }
        let text = store.text_bytes();
        assert_eq!(text, n * 32);
        let per_string = (store.heap_bytes() - text) as f64 / n as f64;
        assert!(
            per_string <= 40.0,
            "{per_string:.1} bytes of overhead per string"
        );
    }

    #[test]
    fn searches_agree_with_partition_point_on_skewed_keys() {
        // Interpolation assumes spread keys; clustered ones must still be found exactly.
        let mut keys: Vec<u128> = (0..3000u128).map(|i| i * i * i).collect();
        keys.extend((0..500u128).map(|i| u128::MAX - i * 7));
        keys.extend([1 << 100, (1 << 100) + 1, 1 << 127]);
        keys.sort();
        keys.dedup();
        let mut run = Run {
            entries: keys
                .iter()
                .map(|&k| Entry {
                    id: k.to_be_bytes(),
                    index: 0,
                })
                .collect(),
            sums: vec![0],
            starts: Vec::new(),
            shift: 0,
            scale: 0.0,
        };
        run.resum(0);
        run.reindex();
        let probes = keys
            .iter()
            .flat_map(|&k| [k, k.wrapping_add(1), k.wrapping_sub(1)])
            .chain([0, u128::MAX, 5, 1 << 64]);
        for key in probes {
            assert_eq!(run.lower_bound(key), keys.partition_point(|&k| k < key));
            assert_eq!(run.upper_bound(key), keys.partition_point(|&k| k <= key));
            assert_eq!(run.find(key).is_some(), keys.binary_search(&key).is_ok());
        }
    }

    #[test]
    fn offsets_past_four_gibibytes_are_computed_from_wraps() {
        let ends = [u32::MAX - 1, 3, 10];
        let wraps = [1u32];
        assert_eq!(end_of(&ends, &wraps, 0), (1 << 32) - 2);
        assert_eq!(end_of(&ends, &wraps, 1), (1 << 32) + 3);
        assert_eq!(end_of(&ends, &wraps, 2), (1 << 32) + 10);
    }
}
