//! The trainer's words: every distinct pretoken as a sequence of token ids, all in one
//! buffer, and the merge of one pair in one block of a word, which reports how the pair
//! counts change.
//!
//! A word of at most [`BLOCK`] symbols is one block `[len, count lo, count hi, ids...]`. A
//! longer word is a chain of blocks of [`BLOCK`] symbols, each
//! `[len | LINKED, count lo, count hi, prev, next, ids...]` with the offsets of its
//! neighbours (a block that merges lose all their symbols to is unlinked). The pair
//! index lists blocks, not words, so merging a pair rescans only the blocks that hold it:
//! at most [`BLOCK`] symbols per occurrence, however long the word (a 4 MB pretoken no
//! longer costs 4 MB per merge). A pair whose left symbol ends a block and whose right
//! one starts the next belongs to the left block. Blocks only shrink, in place.

use crate::error::{try_reserve, Error, Result};

/// Token ids of an adjacent pair.
pub type Pair = (u32, u32);

/// Symbols per block.
pub const BLOCK: usize = 32;

const LINKED: u32 = 1 << 31;
const NONE: u32 = u32::MAX;
const SHORT_HEADER: usize = 3;
const LINKED_HEADER: usize = 5;

/// The blocks of every word; see the module docs.
#[derive(Debug, Default)]
pub struct Words {
    data: Vec<u32>,
    /// Offset of every block, in increasing order.
    blocks: Vec<u32>,
}

impl Words {
    /// Add a word of single-byte tokens (at least two) seen `count` times.
    pub fn push(&mut self, bytes: &[u8], count: u64) -> Result<()> {
        debug_assert!(bytes.len() >= 2);
        let linked = bytes.len() > BLOCK;
        let header = if linked { LINKED_HEADER } else { SHORT_HEADER };
        let num_blocks = bytes.len().div_ceil(BLOCK);
        let needed = bytes.len() + num_blocks * header;
        if self.data.len() + needed >= NONE as usize {
            return Err(Error::TooLarge {
                what: "the trainer's buffer of distinct pretokens holds 32-bit offsets",
                limit: u64::from(NONE),
            });
        }
        try_reserve(&mut self.data, needed)?;
        try_reserve(&mut self.blocks, num_blocks)?;
        let (lo, hi) = (count as u32, (count >> 32) as u32);
        let mut prev = NONE;
        for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
            let offset = self.data.len() as u32;
            self.blocks.push(offset);
            if linked {
                let next = if i + 1 < num_blocks {
                    offset + (LINKED_HEADER + chunk.len()) as u32
                } else {
                    NONE
                };
                self.data
                    .extend([chunk.len() as u32 | LINKED, lo, hi, prev, next]);
            } else {
                self.data.extend([chunk.len() as u32, lo, hi]);
            }
            self.data.extend(chunk.iter().map(|&b| u32::from(b)));
            prev = offset;
        }
        Ok(())
    }

    /// Offsets of all blocks, in increasing order.
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// How often the word of the block at `offset` occurs.
    pub fn count(&self, offset: u32) -> u64 {
        let o = offset as usize;
        u64::from(self.data[o + 1]) | (u64::from(self.data[o + 2]) << 32)
    }

    fn is_linked(&self, o: u32) -> bool {
        self.data[o as usize] & LINKED != 0
    }

    fn len(&self, o: u32) -> usize {
        (self.data[o as usize] & !LINKED) as usize
    }

    fn start(&self, o: u32) -> usize {
        o as usize
            + if self.is_linked(o) {
                LINKED_HEADER
            } else {
                SHORT_HEADER
            }
    }

    fn prev(&self, o: u32) -> u32 {
        if self.is_linked(o) {
            self.data[o as usize + 3]
        } else {
            NONE
        }
    }

    fn next(&self, o: u32) -> u32 {
        if self.is_linked(o) {
            self.data[o as usize + 4]
        } else {
            NONE
        }
    }

    /// The ids of the block at `offset`.
    pub fn ids(&self, offset: u32) -> &[u32] {
        let start = self.start(offset);
        &self.data[start..start + self.len(offset)]
    }

    /// The first symbol of the block after `offset` in its word, if any.
    pub fn first_after(&self, offset: u32) -> Option<u32> {
        let next = self.next(offset);
        (next != NONE).then(|| self.data[self.start(next)])
    }

    /// The last symbol of the block before `offset` in its word, with that block.
    fn last_before(&self, offset: u32) -> Option<(u32, u32)> {
        let prev = self.prev(offset);
        (prev != NONE).then(|| (prev, self.data[self.start(prev) + self.len(prev) - 1]))
    }

    /// Remove the first symbol of the (linked) block at `o`, unlinking it when it empties.
    fn pop_front(&mut self, o: u32) {
        let (start, len) = (self.start(o), self.len(o));
        self.data.copy_within(start + 1..start + len, start);
        self.data[o as usize] -= 1;
        if len == 1 {
            let (prev, next) = (self.prev(o), self.next(o));
            if prev != NONE {
                self.data[prev as usize + 4] = next;
            }
            if next != NONE {
                self.data[next as usize + 3] = prev;
            }
        }
    }

    /// Replace every occurrence of `pair` whose left symbol is in the block at `offset`,
    /// left to right and without overlap, by `new_id`. Calls `delta(block, pair, change)`
    /// for each change in the word's pair counts: the merged pair goes away, and so do the
    /// pairs it formed with its neighbours, replaced by pairs with `new_id`; `block` is the
    /// block of the pair's left symbol. A change may be reported more than once (the caller
    /// sums them).
    ///
    /// `[a, b, a, b]` merging `(a, b)` into `N` gives `[N, N]` and the changes
    /// `(a,b) -1, (b,a) -1, (N,a) +1, (N,a) -1, (N,N) +1, (a,b) -1`.
    pub fn merge_pair(
        &mut self,
        offset: u32,
        pair: Pair,
        new_id: u32,
        mut delta: impl FnMut(u32, Pair, i64),
    ) {
        let (a, b) = pair;
        let start = self.start(offset);
        let n = self.len(offset);
        // Nothing moves before the first occurrence: start there.
        let ids = &self.data[start..start + n];
        let Some(first) = ids.iter().enumerate().position(|(i, &id)| {
            id == a
                && if i + 1 < n {
                    ids[i + 1] == b
                } else {
                    self.first_after(offset) == Some(b)
                }
        }) else {
            return;
        };
        let (mut read, mut write) = (first, first);
        while read < n {
            let here = self.data[start + read];
            let partner = || {
                if read + 1 < n {
                    Some(self.data[start + read + 1])
                } else {
                    self.first_after(offset)
                }
            };
            if here != a || partner() != Some(b) {
                self.data[start + write] = here;
                read += 1;
                write += 1;
                continue;
            }
            // `write` <= `read`, so the block's ids before `write` are the merged prefix.
            let left = if write > 0 {
                Some((offset, self.data[start + write - 1]))
            } else {
                self.last_before(offset)
            };
            if let Some((block, left)) = left {
                delta(block, (left, a), -1);
                delta(block, (left, new_id), 1);
            }
            delta(offset, pair, -1);
            let right = if read + 2 < n {
                Some(self.data[start + read + 2])
            } else if read + 1 < n {
                self.first_after(offset)
            } else {
                // The partner starts the next block: take it from there.
                self.pop_front(self.next(offset));
                self.first_after(offset)
            };
            if let Some(right) = right {
                delta(offset, (b, right), -1);
                delta(offset, (new_id, right), 1);
            }
            self.data[start + write] = new_id;
            read += 2;
            write += 1;
        }
        self.data[offset as usize] = (self.data[offset as usize] & LINKED) | write as u32;
    }

    /// The ids of the word whose first block is at `offset` (for tests).
    #[cfg(test)]
    pub fn word(&self, mut offset: u32) -> Vec<u32> {
        let mut out = self.ids(offset).to_vec();
        while self.next(offset) != NONE {
            offset = self.next(offset);
            out.extend_from_slice(self.ids(offset));
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
    fn merge(ids: &[u8], pair: Pair, new_id: u32) -> (Vec<u32>, Vec<(Pair, i64)>) {
        let mut words = Words::default();
        words.push(ids, 1).unwrap();
        let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
        for &block in &words.blocks().to_vec() {
            words.merge_pair(block, pair, new_id, |_, p, d| {
                *deltas.entry(p).or_default() += d
            });
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

    #[test]
    fn merge_pair_reports_neighbour_deltas() {
        let (ids, deltas) = merge(&[1, 2, 1, 2], (1, 2), 9);
        assert_eq!(ids, [9, 9]);
        assert_eq!(deltas, [((1, 2), -2), ((2, 1), -1), ((9, 9), 1)]);
        let (ids, deltas) = merge(&[1, 1, 1], (1, 1), 9);
        assert_eq!(ids, [9, 1]);
        assert_eq!(deltas, [((1, 1), -2), ((9, 1), 1)]);
        let (ids, deltas) = merge(&[3, 4], (1, 2), 9);
        assert_eq!(ids, [3, 4]);
        assert!(deltas.is_empty());
    }

    #[test]
    fn merges_and_deltas_match_a_recount_across_blocks() {
        // Random words over a 3-letter alphabet, long enough to span several blocks, merged
        // repeatedly; each step must equal the naive merge and its deltas a recount.
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
            let mut words = Words::default();
            words.push(&bytes, 1).unwrap();
            let mut expected: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
            for step in 0..6 {
                let Some(&pair) = pairs(&expected).keys().max() else {
                    break;
                };
                let new_id = 100 + step;
                let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
                for &block in &words.blocks().to_vec() {
                    words.merge_pair(block, pair, new_id, |_, p, d| {
                        *deltas.entry(p).or_default() += d;
                    });
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
}
