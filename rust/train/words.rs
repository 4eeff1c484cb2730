//! The trainer's words: every distinct pretoken as a sequence of token ids, all in one
//! buffer of symbols (`u16` when every id fits, else `u32`: [`Symbol`]), and the merge of
//! one pair in one block of a word, which reports how the pair counts change.
//!
//! A word of at most [`BLOCK`] symbols is one block `[len, count, ids...]`. A longer word
//! is a chain of blocks of [`BLOCK`] symbols, each `[len | LINKED, count, prev, next,
//! ids...]` with the numbers of its neighbours (a block that merges lose all their symbols
//! to is unlinked). Header fields take as many symbols as they need (a count is 64 bits:
//! four `u16`s or two `u32`s). Blocks are numbered in the order they were added, and
//! [`Words::offset`] maps a number to its place in the buffer. The pair index lists block
//! numbers, not words, so merging a pair rescans only the blocks that hold it: at most
//! [`BLOCK`] symbols per occurrence, however long the word (a 4 MB pretoken no longer
//! costs 4 MB per merge). A pair whose left symbol ends a block and whose right one
//! starts the next belongs to the left block. Blocks only shrink, in place.

use crate::error::{try_reserve, Error, Result};

/// Token ids of an adjacent pair.
pub type Pair = (u32, u32);

/// Symbols per block.
pub const BLOCK: usize = 64;

/// No block (the end of a chain).
const NONE: u32 = u32::MAX;

/// The type a word stores its token ids in: `u16` halves the memory of words when every
/// id is below 2^16 (vocabularies up to 65,536), `u32` holds any id.
pub trait Symbol: Copy + Eq + std::fmt::Debug + Default + Send + Sync + 'static {
    const BITS: u32;
    /// The low [`Self::BITS`] bits of `v`.
    fn truncate(v: u64) -> Self;
    fn get(self) -> u32;
}

impl Symbol for u16 {
    const BITS: u32 = 16;
    #[inline(always)]
    fn truncate(v: u64) -> Self {
        v as u16
    }
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl Symbol for u32 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn truncate(v: u64) -> Self {
        v as u32
    }
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

/// The blocks of every word; see the module docs.
#[derive(Debug, Default)]
pub struct Words<S> {
    data: Vec<S>,
    /// Offset in `data` of every block, by block number (in increasing order).
    blocks: Vec<u32>,
}

impl<S: Symbol> Words<S> {
    /// Symbols of a count.
    const COUNT: usize = 64 / S::BITS as usize;
    /// Symbols of a block number.
    const LINK: usize = 32 / S::BITS as usize;
    const SHORT_HEADER: usize = 1 + Self::COUNT;
    const LINKED_HEADER: usize = Self::SHORT_HEADER + 2 * Self::LINK;
    /// The flag of linked blocks in the length field.
    const LINKED: u32 = 1 << (S::BITS - 1);

    /// The number held in the `units` symbols at `at`.
    #[inline(always)]
    fn read(&self, at: usize, units: usize) -> u64 {
        (0..units).fold(0, |v, k| {
            v | (u64::from(self.data[at + k].get()) << (k as u32 * S::BITS))
        })
    }

    #[inline(always)]
    fn write(&mut self, at: usize, units: usize, v: u64) {
        for k in 0..units {
            self.data[at + k] = S::truncate(v >> (k as u32 * S::BITS));
        }
    }

    /// Add a word of single-byte tokens (at least two) seen `count` times.
    pub fn push(&mut self, bytes: &[u8], count: u64) -> Result<()> {
        debug_assert!(bytes.len() >= 2);
        let linked = bytes.len() > BLOCK;
        let header = if linked {
            Self::LINKED_HEADER
        } else {
            Self::SHORT_HEADER
        };
        let num_blocks = bytes.len().div_ceil(BLOCK);
        let needed = bytes.len() + num_blocks * header;
        if self.data.len() + needed >= NONE as usize
            || self.blocks.len() + num_blocks >= NONE as usize
        {
            return Err(Error::TooLarge {
                what: "the trainer's buffer of distinct pretokens holds 32-bit offsets",
                limit: u64::from(NONE),
            });
        }
        try_reserve(&mut self.data, needed)?;
        try_reserve(&mut self.blocks, num_blocks)?;
        let first = self.blocks.len() as u32;
        for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
            let offset = self.data.len();
            self.blocks.push(offset as u32);
            let flag = if linked { Self::LINKED } else { 0 };
            self.data
                .push(S::truncate(u64::from(chunk.len() as u32 | flag)));
            self.data.resize(offset + header, S::default());
            self.write(offset + 1, Self::COUNT, count);
            if linked {
                let i = i as u32;
                let prev = if i > 0 { first + i - 1 } else { NONE };
                let next = if (i as usize) + 1 < num_blocks {
                    first + i + 1
                } else {
                    NONE
                };
                self.write(offset + Self::SHORT_HEADER, Self::LINK, u64::from(prev));
                let at = offset + Self::SHORT_HEADER + Self::LINK;
                self.write(at, Self::LINK, u64::from(next));
            }
            self.data
                .extend(chunk.iter().map(|&b| S::truncate(u64::from(b))));
        }
        Ok(())
    }

    /// The number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    #[inline(always)]
    fn offset(&self, block: u32) -> usize {
        self.blocks[block as usize] as usize
    }

    /// How often the word of `block` occurs.
    #[inline(always)]
    pub fn count(&self, block: u32) -> u64 {
        self.read(self.offset(block) + 1, Self::COUNT)
    }

    #[inline(always)]
    fn is_linked(&self, o: usize) -> bool {
        self.data[o].get() & Self::LINKED != 0
    }

    #[inline(always)]
    fn len(&self, o: usize) -> usize {
        (self.data[o].get() & !Self::LINKED) as usize
    }

    #[inline(always)]
    fn start(&self, o: usize) -> usize {
        o + if self.is_linked(o) {
            Self::LINKED_HEADER
        } else {
            Self::SHORT_HEADER
        }
    }

    #[inline(always)]
    fn prev(&self, o: usize) -> u32 {
        if self.is_linked(o) {
            self.read(o + Self::SHORT_HEADER, Self::LINK) as u32
        } else {
            NONE
        }
    }

    #[inline(always)]
    fn next(&self, o: usize) -> u32 {
        if self.is_linked(o) {
            self.read(o + Self::SHORT_HEADER + Self::LINK, Self::LINK) as u32
        } else {
            NONE
        }
    }

    /// The ids of `block`.
    pub fn ids(&self, block: u32) -> &[S] {
        let o = self.offset(block);
        let start = self.start(o);
        &self.data[start..start + self.len(o)]
    }

    /// The first symbol of the block after `block` in its word, if any.
    #[inline]
    pub fn first_after(&self, block: u32) -> Option<u32> {
        let next = self.next(self.offset(block));
        (next != NONE).then(|| self.data[self.start(self.offset(next))].get())
    }

    /// The last symbol of the block before the one at offset `o` in its word, with that
    /// block's number.
    fn last_before(&self, o: usize) -> Option<(u32, u32)> {
        let prev = self.prev(o);
        (prev != NONE).then(|| {
            let p = self.offset(prev);
            (prev, self.data[self.start(p) + self.len(p) - 1].get())
        })
    }

    /// Remove the first symbol of the (linked) `block`, unlinking it when it empties.
    fn pop_front(&mut self, block: u32) {
        let o = self.offset(block);
        let (start, len) = (self.start(o), self.len(o));
        self.data.copy_within(start + 1..start + len, start);
        self.data[o] = S::truncate(u64::from(self.data[o].get() - 1));
        if len == 1 {
            let (prev, next) = (self.prev(o), self.next(o));
            if prev != NONE {
                let at = self.offset(prev) + Self::SHORT_HEADER + Self::LINK;
                self.write(at, Self::LINK, u64::from(next));
            }
            if next != NONE {
                let at = self.offset(next) + Self::SHORT_HEADER;
                self.write(at, Self::LINK, u64::from(prev));
            }
        }
    }

    /// Replace every occurrence of `pair` whose left symbol is in `block`, left to right
    /// and without overlap, by `new_id`. Calls `delta(block, pair, change)` for each change
    /// in the word's pair counts: the merged pair goes away, and so do the pairs it formed
    /// with its neighbours, replaced by pairs with `new_id`; `block` is the block of the
    /// pair's left symbol. A change may be reported more than once (the caller sums them).
    ///
    /// `[a, b, a, b]` merging `(a, b)` into `N` gives `[N, N]` and the changes
    /// `(a,b) -1, (b,a) -1, (N,a) +1, (N,a) -1, (N,N) +1, (a,b) -1`. An error of `delta`
    /// (its memory) stops the merge and is returned: the words are then half merged, and
    /// training ends with that error.
    pub fn merge_pair(
        &mut self,
        block: u32,
        pair: Pair,
        new_id: u32,
        mut delta: impl FnMut(u32, Pair, i64) -> Result<()>,
    ) -> Result<()> {
        let (a, b) = pair;
        let (sa, sb, new) = (
            S::truncate(u64::from(a)),
            S::truncate(u64::from(b)),
            S::truncate(u64::from(new_id)),
        );
        let o = self.offset(block);
        let start = self.start(o);
        let n = self.len(o);
        // Nothing moves before the first occurrence: start there.
        let ids = &self.data[start..start + n];
        let Some(first) = ids.iter().enumerate().position(|(i, &id)| {
            id == sa
                && if i + 1 < n {
                    ids[i + 1] == sb
                } else {
                    self.first_after(block) == Some(b)
                }
        }) else {
            return Ok(());
        };
        let (mut read, mut write) = (first, first);
        while read < n {
            let here = self.data[start + read];
            let partner = || {
                if read + 1 < n {
                    Some(self.data[start + read + 1].get())
                } else {
                    self.first_after(block)
                }
            };
            if here != sa || partner() != Some(b) {
                self.data[start + write] = here;
                read += 1;
                write += 1;
                continue;
            }
            // `write` <= `read`, so the block's ids before `write` are the merged prefix.
            let left = if write > 0 {
                Some((block, self.data[start + write - 1].get()))
            } else {
                self.last_before(o)
            };
            if let Some((left_block, left)) = left {
                delta(left_block, (left, a), -1)?;
                delta(left_block, (left, new_id), 1)?;
            }
            delta(block, pair, -1)?;
            let right = if read + 2 < n {
                Some(self.data[start + read + 2].get())
            } else if read + 1 < n {
                self.first_after(block)
            } else {
                // The partner starts the next block: take it from there.
                self.pop_front(self.next(o));
                self.first_after(block)
            };
            if let Some(right) = right {
                delta(block, (b, right), -1)?;
                delta(block, (new_id, right), 1)?;
            }
            self.data[start + write] = new;
            read += 2;
            write += 1;
        }
        let flag = self.data[o].get() & Self::LINKED;
        self.data[o] = S::truncate(u64::from(flag | write as u32));
        Ok(())
    }

    /// The ids of the word whose first block is `block` (for tests).
    #[cfg(test)]
    pub fn word(&self, mut block: u32) -> Vec<u32> {
        let mut out: Vec<u32> = self.ids(block).iter().map(|s| s.get()).collect();
        while self.next(self.offset(block)) != NONE {
            block = self.next(self.offset(block));
            out.extend(self.ids(block).iter().map(|s| s.get()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashMap;

    /// Merge `pair` in every block of a word of `ids` (bytes), in order, as the trainer
    /// does; returns the merged ids and the summed non-zero deltas.
    fn merge<S: Symbol>(ids: &[u8], pair: Pair, new_id: u32) -> (Vec<u32>, Vec<(Pair, i64)>) {
        let mut words = Words::<S>::default();
        words.push(ids, 1).unwrap();
        let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
        for block in 0..words.num_blocks() as u32 {
            words
                .merge_pair(block, pair, new_id, |_, p, d| {
                    *deltas.entry(p).or_default() += d;
                    Ok(())
                })
                .unwrap();
        }
        let mut deltas: Vec<_> = deltas.into_iter().filter(|&(_, d)| d != 0).collect();
        deltas.sort();
        (words.word(0), deltas)
    }

    fn pairs(ids: &[u32]) -> FxHashMap<Pair, i64> {
        let mut out = FxHashMap::default();
        for w in ids.windows(2) {
            *out.entry((w[0], w[1])).or_default() += 1;
        }
        out
    }

    /// The reference merge: left to right, without overlap.
    fn naive_merge(ids: &[u32], pair: Pair, new_id: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < ids.len() {
            if i + 1 < ids.len() && (ids[i], ids[i + 1]) == pair {
                out.push(new_id);
                i += 2;
            } else {
                out.push(ids[i]);
                i += 1;
            }
        }
        out
    }

    fn reports_neighbour_deltas<S: Symbol>() {
        let (ids, deltas) = merge::<S>(&[1, 2, 1, 2], (1, 2), 9);
        assert_eq!(ids, [9, 9]);
        assert_eq!(deltas, [((1, 2), -2), ((2, 1), -1), ((9, 9), 1)]);
        let (ids, deltas) = merge::<S>(&[1, 1, 1], (1, 1), 9);
        assert_eq!(ids, [9, 1]);
        assert_eq!(deltas, [((1, 1), -2), ((9, 1), 1)]);
        let (ids, deltas) = merge::<S>(&[3, 4], (1, 2), 9);
        assert_eq!(ids, [3, 4]);
        assert!(deltas.is_empty());
    }

    #[test]
    fn merge_pair_reports_neighbour_deltas() {
        reports_neighbour_deltas::<u16>();
        reports_neighbour_deltas::<u32>();
    }

    /// Random words over a 3-letter alphabet, long enough to span several blocks, merged
    /// repeatedly; each step must equal the naive merge and its deltas a recount. New ids
    /// start at `first_id` (above 2^16 for `u32`, so a truncation would show).
    fn match_a_recount<S: Symbol>(first_id: u32) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let len = 2 + (rand() % (4 * BLOCK as u64)) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (rand() % 3) as u8).collect();
            let count = rand() >> (rand() % 64);
            let mut words = Words::<S>::default();
            words.push(&bytes, count).unwrap();
            let mut expected: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
            for step in 0..6 {
                let Some(&pair) = pairs(&expected).keys().max() else {
                    break;
                };
                let new_id = first_id + step;
                let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
                for block in 0..words.num_blocks() as u32 {
                    assert_eq!(words.count(block), count);
                    words
                        .merge_pair(block, pair, new_id, |_, p, d| {
                            *deltas.entry(p).or_default() += d;
                            Ok(())
                        })
                        .unwrap();
                }
                let after = naive_merge(&expected, pair, new_id);
                assert_eq!(words.word(0), after, "{expected:?} merging {pair:?}");
                let mut recount = pairs(&after);
                for (p, n) in pairs(&expected) {
                    *recount.entry(p).or_default() -= n;
                }
                recount.retain(|_, d| *d != 0);
                deltas.retain(|_, d| *d != 0);
                assert_eq!(deltas, recount);
                expected = after;
            }
        }
    }

    #[test]
    fn merges_and_deltas_match_a_recount_across_blocks() {
        match_a_recount::<u16>(65_000);
        match_a_recount::<u32>(100_000);
    }
}
