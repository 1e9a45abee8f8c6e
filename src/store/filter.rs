//! A split-block Bloom filter over the store's ids: "surely absent" for most new ids after
//! reading one cache line, so a new string is not searched for in every sorted run.
//!
//! Ids are already uniform hash output, so the filter takes its bits straight from the key:
//! the top 64 bits pick a 32-byte block, and 8 five-bit fields of the low 64 bits pick one
//! bit in each of the block's 8 words. The filter holds 8 to 16 bits per id (it doubles and
//! is rebuilt from the runs when full), about 1 to 2 bytes a string; a false "maybe" only
//! costs the search it would have cost without the filter.

/// Ids per block before the filter doubles: 8 bits per id.
const IDS_PER_BLOCK: usize = 32;

/// The blocks of a filter before its first doubling.
const FIRST_BLOCKS: usize = 8;

/// A set of ids that may answer "maybe" for an absent id but never "no" for a present one.
#[derive(Default)]
pub(super) struct Filter {
    blocks: Vec<[u32; 8]>,
    /// Ids it holds.
    ids: usize,
}

/// One bit in each of a block's 8 words, from the low 64 bits of `key`.
fn mask(key: u128) -> [u32; 8] {
    let low = key as u64;
    std::array::from_fn(|word| 1 << ((low >> (5 * word)) & 31))
}

impl Filter {
    /// The block `key` belongs to.
    fn block(&self, key: u128) -> usize {
        // `blocks.len()` is a power of two.
        ((key >> 64) as usize) & (self.blocks.len() - 1)
    }

    /// Whether `key` may have been added; `false` means it surely was not.
    pub(super) fn may_contain(&self, key: u128) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let block = &self.blocks[self.block(key)];
        let mask = mask(key);
        (0..8).all(|word| block[word] & mask[word] != 0)
    }

    /// Whether one more id would take the filter past 8 bits per id (or it has no block yet).
    pub(super) fn is_full(&self) -> bool {
        self.ids >= self.blocks.len() * IDS_PER_BLOCK
    }

    /// Adds `key`.
    pub(super) fn add(&mut self, key: u128) {
        debug_assert!(!self.blocks.is_empty(), "rebuild an empty filter first");
        let at = self.block(key);
        let mask = mask(key);
        for (word, bit) in self.blocks[at].iter_mut().zip(mask) {
            *word |= bit;
        }
        self.ids += 1;
    }

    /// Starts again with room for twice `count` ids (at least the first size), holding `keys`.
    pub(super) fn rebuild(&mut self, count: usize, keys: impl Iterator<Item = u128>) {
        let blocks = (2 * count)
            .div_ceil(IDS_PER_BLOCK)
            .max(FIRST_BLOCKS)
            .next_power_of_two();
        self.blocks.clear();
        self.blocks.shrink_to(0);
        self.blocks.resize(blocks, [0; 8]);
        self.ids = 0;
        for key in keys {
            self.add(key);
        }
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<[u32; 8]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spread of keys, as BLAKE3 output would be.
    fn key(i: u64) -> u128 {
        let mut x = u128::from(i).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 61)).wrapping_mul(0xbf58_476d_1ce4_e5b9_94d0_49bb_1331_11eb);
        x ^ (x >> 67)
    }

    #[test]
    fn never_says_no_for_an_added_key_and_mostly_no_for_others() {
        let mut filter = Filter::default();
        assert!(!filter.may_contain(key(0)), "an empty filter holds nothing");
        let n = 50_000u64;
        for i in 0..n {
            if filter.is_full() {
                filter.rebuild(i as usize, (0..i).map(key));
            }
            filter.add(key(i));
        }
        assert!((0..n).all(|i| filter.may_contain(key(i))));
        let maybes = (n..2 * n).filter(|&i| filter.may_contain(key(i))).count();
        // 8 to 16 bits per key: a few in a hundred at most.
        assert!(maybes < (n / 25) as usize, "{maybes} false maybes of {n}");
        assert!(filter.heap_bytes() <= 2 * n as usize + 32 * FIRST_BLOCKS);
    }
}
