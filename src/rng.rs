//! [`SplitMix64`]: the crate's one seeded generator, for the mesh's choices at run time and
//! for the simulator's (feature `sim`).

use std::time::Duration;

/// A tiny seeded pseudo-random generator (SplitMix64): the same seed gives the same choices.
///
/// Good enough to pick peers, jitter and split points; not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose whole future is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `0` if `n` is `0`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi` (`lo` if `hi < lo`).
    #[cfg(feature = "sim")]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// An index in `0..len`; `0` if `len` is `0`.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `num / den`.
    #[cfg(feature = "sim")]
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// `d` scaled by a random factor in `[1 - 1/4, 1 + 1/4)`: jitter so that clients that
    /// lost the same neighbour do not all dial at the same instant.
    pub fn jitter(&mut self, d: Duration) -> Duration {
        let quarter = d / 4;
        let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX);
        d - quarter + Duration::from_nanos(self.below(nanos.saturating_mul(2)))
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_ranges_hold() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let r = a.range(3, 9);
            assert!((3..=9).contains(&r));
            b.range(3, 9);
        }
        assert_eq!(a.range(5, 5), 5);
        assert_eq!(a.range(0, u64::MAX), b.range(0, u64::MAX));
        // The reference first output of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut r = SplitMix64::new(3);
        let d = Duration::from_secs(4);
        for _ in 0..1000 {
            let j = r.jitter(d);
            assert!(
                j >= Duration::from_secs(3) && j < Duration::from_secs(5),
                "{j:?}"
            );
        }
    }
}
