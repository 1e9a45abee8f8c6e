//! [`Timers`]: one table of named deadlines, read by `poll_timeout`.
//!
//! In the spirit of quinn-proto's `TimerTable`: each kind of timer has a key, setting a key
//! replaces its deadline, and cancelling is setting `None`, so no stale timer ever fires.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::time::Instant;

use hashbrown::HashMap;

/// Deadlines keyed by `K`; at most one per key.
#[derive(Debug, Clone)]
pub(crate) struct Timers<K> {
    by_key: HashMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_time: BTreeSet::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Sets `key` to fire at `at`, or cancels it with `None`.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
        if let Some(at) = at {
            self.by_key.insert(key, at);
            self.by_time.insert((at, key));
        }
    }

    /// When `key` fires, if it is set.
    pub(crate) fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Removes and returns one key whose deadline is at or before `now`, earliest first (ties
    /// in key order, so the order never depends on hashing).
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_key.remove(&key);
        Some(key)
    }

    /// Cancels every key for which `f` is true.
    pub(crate) fn cancel_where(&mut self, mut f: impl FnMut(&K) -> bool) {
        let by_time = &mut self.by_time;
        self.by_key.retain(|k, at| {
            let drop = f(k);
            if drop {
                by_time.remove(&(*at, *k));
            }
            !drop
        });
    }

    /// How many timers are set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn setting_replaces_and_none_cancels() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Timers::default();
        t.set(1, Some(t0 + 3 * s));
        t.set(2, Some(t0 + 2 * s));
        t.set(1, Some(t0 + s));
        assert_eq!(t.next(), Some(t0 + s));
        t.set(1, None);
        assert_eq!(t.next(), Some(t0 + 2 * s));
        t.set(2, Some(t0 + s));
        assert_eq!(t.get(2), Some(t0 + s));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + s), Some(2));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn expired_keys_come_out_earliest_first_then_in_key_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for k in [5, 3, 9] {
            t.set(k, Some(t0));
        }
        t.set(1, Some(t0 + Duration::from_secs(1)));
        let got: Vec<_> = std::iter::from_fn(|| t.pop_expired(t0)).collect();
        assert_eq!(got, [3, 5, 9]);
        t.cancel_where(|&k| k == 1);
        assert_eq!(t.next(), None);
    }
}
