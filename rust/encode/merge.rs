//! Applying the merges within one pretoken: by a scan for short pretokens, by a heap for
//! long ones; both merge the pair of lowest rank first, leftmost first among equals.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Encoder, PackedMerge, NO_MERGE};
use crate::error::{try_reserve, Error, Result};
use crate::progress::Progress;

/// Pretokens at most this long are merged by a linear scan per merge (fast for the
/// short pieces of real text); longer ones by a heap, so a long run is not quadratic.
const SHORT_PIECE: usize = 64;

/// Heap pops between two polls of the caller's check in a long merge.
const POLL_EVERY: usize = 1 << 16;

const END: u32 = u32::MAX;

/// Reused buffers of the merge loops. Their sizes follow the longest pretoken merged, and
/// they grow fallibly, so a pretoken too long for memory is a clean error.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The pretoken's token ids (the result, once merged).
    pub ids: Vec<u32>,
    /// `ranks[i]`: the merge of the pair that starts at live position `i`.
    ranks: Vec<PackedMerge>,
    next: Vec<u32>,
    prev: Vec<u32>,
    heap: Vec<Reverse<(PackedMerge, u32)>>,
}

/// Clear `v` and make room for `n` items, fallibly.
fn reset<T>(v: &mut Vec<T>, n: usize) -> Result<()> {
    v.clear();
    try_reserve(v, n)
}

impl Encoder {
    /// Merge the bytes of one pretoken into `scratch.ids`.
    pub(super) fn merge_piece(
        &self,
        piece: &[u8],
        scratch: &mut Scratch,
        progress: &Progress,
    ) -> Result<()> {
        self.start_merging(piece, scratch)?;
        if piece.len() <= SHORT_PIECE {
            self.merge_short(scratch);
            Ok(())
        } else {
            self.merge_long(scratch, progress)
        }
    }

    /// The byte tokens of `piece` in `scratch.ids`, and the merge of each adjacent pair in
    /// `scratch.ranks` (from the dense byte-pair table: no hashing).
    pub(super) fn start_merging(&self, piece: &[u8], scratch: &mut Scratch) -> Result<()> {
        reset(&mut scratch.ids, piece.len())?;
        scratch
            .ids
            .extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        reset(&mut scratch.ranks, piece.len())?;
        scratch
            .ranks
            .extend(piece.windows(2).map(|w| self.merge_of_bytes(w[0], w[1])));
        Ok(())
    }

    /// Merge by scanning the pair ranks for the minimum, once per merge.
    pub(super) fn merge_short(&self, scratch: &mut Scratch) {
        let Scratch { ids, ranks, .. } = scratch;
        // The leftmost pair with the lowest rank (`min_by_key` returns the first minimum).
        while let Some((i, &best)) = ranks.iter().enumerate().min_by_key(|&(_, r)| *r) {
            if best == NO_MERGE {
                break;
            }
            ids[i] = best as u32;
            ids.remove(i + 1);
            ranks.remove(i);
            if i + 1 < ids.len() {
                ranks[i] = self.merge_of(ids[i], ids[i + 1]);
            }
            if i > 0 {
                ranks[i - 1] = self.merge_of(ids[i - 1], ids[i]);
            }
        }
    }

    /// Merge with a linked list and a heap of `(rank, position)`: O(n log n) for any
    /// length. `ranks` is kept up to date for every live position, so a heap entry is
    /// stale exactly when its rank differs from its position's (no lookup to tell).
    pub(super) fn merge_long(&self, scratch: &mut Scratch, progress: &Progress) -> Result<()> {
        let Scratch {
            ids,
            ranks,
            next,
            prev,
            heap,
        } = scratch;
        let n = ids.len();
        ranks.push(NO_MERGE); // the last position has no right neighbour
        reset(next, n)?;
        next.extend((1..=n as u32).map(|j| if j as usize == n { END } else { j }));
        reset(prev, n)?;
        prev.extend((0..n as u32).map(|i| i.wrapping_sub(1)));
        reset(heap, n)?;
        heap.extend(
            ranks
                .iter()
                .enumerate()
                .filter(|&(_, &m)| m != NO_MERGE)
                .map(|(i, &m)| Reverse((m, i as u32))),
        );
        // Heapify in O(n); the vector goes back to the scratch afterwards.
        let mut queue = BinaryHeap::from(std::mem::take(heap));
        let mut pops = 0;
        while let Some(Reverse((m, i))) = queue.pop() {
            pops += 1;
            if pops % POLL_EVERY == 0 {
                progress.poll()?;
            }
            let i = i as usize;
            if ranks[i] != m {
                continue;
            }
            queue.try_reserve(2).map_err(|_| Error::OutOfMemory {
                bytes: queue.len() * std::mem::size_of::<Reverse<(PackedMerge, u32)>>(),
            })?;
            let j = next[i] as usize;
            ids[i] = m as u32;
            next[i] = next[j];
            ranks[j] = NO_MERGE;
            ranks[i] = if next[i] == END {
                NO_MERGE
            } else {
                let k = next[i] as usize;
                prev[k] = i as u32;
                self.merge_of(ids[i], ids[k])
            };
            if ranks[i] != NO_MERGE {
                queue.push(Reverse((ranks[i], i as u32)));
            }
            if prev[i] != u32::MAX {
                let h = prev[i] as usize;
                ranks[h] = self.merge_of(ids[h], ids[i]);
                if ranks[h] != NO_MERGE {
                    queue.push(Reverse((ranks[h], h as u32)));
                }
            }
        }
        *heap = queue.into_vec();
        let mut w = 0;
        let mut i = 0;
        while i != END as usize {
            ids[w] = ids[i];
            w += 1;
            i = next[i] as usize;
        }
        ids.truncate(w);
        Ok(())
    }
}
