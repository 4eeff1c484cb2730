//! The trainer's table of pairs: for every adjacent pair its count (weighted by word
//! counts) and the blocks that hold it (or once did: entries go stale, and are checked when
//! the pair is merged). Millions of distinct pairs appear in text with many characters
//! (CJK), most of them in a few blocks, so a short list is stored inline.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::words::{Pair, Words};
use crate::error::{try_reserve, try_reserve_map, Result};

/// Blocks stored inline in a [`BlockList`] before it moves to the heap.
const INLINE: usize = 5;

/// The blocks of one pair, in the order they were added.
#[derive(Debug, Clone)]
pub enum BlockList {
    Inline { len: u32, blocks: [u32; INLINE] },
    Heap(Vec<u32>),
}

impl Default for BlockList {
    fn default() -> Self {
        BlockList::Inline {
            len: 0,
            blocks: [0; INLINE],
        }
    }
}

impl BlockList {
    fn as_slice(&self) -> &[u32] {
        match self {
            BlockList::Inline { len, blocks } => &blocks[..*len as usize],
            BlockList::Heap(v) => v,
        }
    }

    /// Add `block` unless it is the last one added.
    pub fn push(&mut self, block: u32) -> Result<()> {
        if self.as_slice().last() == Some(&block) {
            return Ok(());
        }
        match self {
            BlockList::Inline { len, blocks } if (*len as usize) < INLINE => {
                blocks[*len as usize] = block;
                *len += 1;
            }
            BlockList::Inline { blocks, .. } => {
                let mut v = Vec::new();
                try_reserve(&mut v, 2 * INLINE)?;
                v.extend_from_slice(blocks);
                v.push(block);
                *self = BlockList::Heap(v);
            }
            BlockList::Heap(v) => {
                if v.len() == v.capacity() {
                    // Grow by half: millions of lists, so their slack adds up.
                    v.try_reserve_exact(v.len() / 2 + 1)
                        .map_err(|_| crate::Error::OutOfMemory { bytes: 2 * v.len() })?;
                }
                v.push(block);
            }
        }
        Ok(())
    }

    /// The blocks in increasing order, each once (a list gets entries from more than one
    /// merge step, each in order, so it may hold several sorted runs).
    pub fn into_sorted(self) -> Result<Vec<u32>> {
        let mut v = match self {
            BlockList::Inline { len, blocks } => {
                let mut v = Vec::new();
                try_reserve(&mut v, len as usize)?;
                v.extend_from_slice(&blocks[..len as usize]);
                v
            }
            BlockList::Heap(v) => v,
        };
        if !v.windows(2).all(|w| w[0] <= w[1]) {
            v.sort_unstable();
        }
        v.dedup();
        Ok(v)
    }
}

/// A pair's count and blocks.
#[derive(Debug, Clone, Default)]
pub struct PairInfo {
    pub count: i64,
    pub blocks: BlockList,
}

/// Every pair of the words: a hash map from the pair to a slot of a slab (12-byte
/// entries, so the map's doubling costs little), the slots holding the pair's info.
#[derive(Debug, Default)]
pub struct PairTable {
    slot_of: FxHashMap<Pair, u32>,
    slots: Vec<PairInfo>,
    free: Vec<u32>,
}

impl PairTable {
    /// The number of pairs.
    pub fn num_pairs(&self) -> usize {
        self.slot_of.len()
    }

    /// The pair's info, if it is in the table.
    pub fn get(&self, pair: &Pair) -> Option<&PairInfo> {
        self.slot_of.get(pair).map(|&i| &self.slots[i as usize])
    }

    /// The pair's info, added (count 0, no blocks) when missing.
    pub fn get_or_add(&mut self, pair: Pair) -> Result<&mut PairInfo> {
        if let Some(&i) = self.slot_of.get(&pair) {
            return Ok(&mut self.slots[i as usize]);
        }
        if self.slot_of.len() == self.slot_of.capacity() {
            let more = self.slot_of.len().max(1024);
            try_reserve_map(&mut self.slot_of, more)?;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                try_reserve(&mut self.slots, 1)?;
                self.slots.push(PairInfo::default());
                (self.slots.len() - 1) as u32
            }
        };
        self.slot_of.insert(pair, i);
        Ok(&mut self.slots[i as usize])
    }

    /// Remove the pair and return its info.
    pub fn remove(&mut self, pair: &Pair) -> Result<Option<PairInfo>> {
        let Some(i) = self.slot_of.remove(pair) else {
            return Ok(None);
        };
        try_reserve(&mut self.free, 1)?;
        self.free.push(i);
        Ok(Some(std::mem::take(&mut self.slots[i as usize])))
    }

    /// Every pair with its info.
    pub fn iter(&self) -> impl Iterator<Item = (Pair, &PairInfo)> {
        self.slot_of
            .iter()
            .map(|(&pair, &i)| (pair, &self.slots[i as usize]))
    }
}

/// The pair table of `words` (all of single bytes), built in two parallel passes over
/// contiguous runs of blocks on `pool`: the first counts each pair's blocks per run, the
/// second writes each run's blocks into its own slice of the pair's list, allocated once at
/// its exact size. So the lists come out in increasing order and cost 4 bytes an entry,
/// with no copy.
pub fn initial_pairs(words: &Words, pool: &rayon::ThreadPool) -> Result<PairTable> {
    const KEYS: usize = 1 << 16;
    let blocks = words.blocks();
    let per_part = blocks
        .len()
        .div_ceil(pool.current_num_threads().max(1))
        .max(1);
    let parts: Vec<&[u32]> = blocks.chunks(per_part).collect();
    // Initial ids are bytes: pair `(a, b)` is key `a << 8 | b`. Calls `f(key, block)` once
    // per pair and block that holds it, blocks in order.
    let for_each_pair = |part: &[u32], f: &mut dyn FnMut(usize, u32, i64)| {
        let mut last = vec![u32::MAX; KEYS];
        for &block in part {
            let count = words.count(block) as i64;
            let ids = words.ids(block);
            let cross = ids.last().copied().zip(words.first_after(block));
            for (a, b) in ids.windows(2).map(|w| (w[0], w[1])).chain(cross) {
                let key = (a as usize) << 8 | b as usize;
                let first = last[key] != block;
                last[key] = block;
                f(key, if first { block } else { u32::MAX }, count);
            }
        }
    };
    // Pass 1: per run, each pair's count and number of blocks.
    let sizes: Vec<Vec<(i64, usize)>> = pool.install(|| {
        parts
            .par_iter()
            .map(|part| {
                let mut sizes = vec![(0i64, 0usize); KEYS];
                for_each_pair(part, &mut |key, block, count| {
                    sizes[key].0 += count;
                    sizes[key].1 += usize::from(block != u32::MAX);
                });
                sizes
            })
            .collect()
    });
    let mut lists: Vec<Vec<u32>> = Vec::new();
    try_reserve(&mut lists, KEYS)?;
    for key in 0..KEYS {
        let len = sizes.iter().map(|part| part[key].1).sum();
        let mut list = Vec::new();
        list.try_reserve_exact(len)
            .map_err(|_| crate::Error::OutOfMemory { bytes: 4 * len })?;
        list.resize(len, 0);
        lists.push(list);
    }
    // Pass 2: each run fills its slice of every list.
    let mut slices: Vec<Vec<&mut [u32]>> = parts.iter().map(|_| Vec::with_capacity(KEYS)).collect();
    for (key, list) in lists.iter_mut().enumerate() {
        let mut rest = &mut list[..];
        for (k, part_slices) in slices.iter_mut().enumerate() {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(sizes[k][key].1);
            part_slices.push(mine);
            rest = tail;
        }
    }
    pool.install(|| {
        parts
            .par_iter()
            .zip(slices.par_iter_mut())
            .for_each(|(part, slices)| {
                let mut filled = vec![0usize; KEYS];
                for_each_pair(part, &mut |key, block, _| {
                    if block != u32::MAX {
                        slices[key][filled[key]] = block;
                        filled[key] += 1;
                    }
                });
            })
    });
    drop(slices);
    let mut table = PairTable::default();
    for (key, list) in lists.into_iter().enumerate() {
        let count: i64 = sizes.iter().map(|part| part[key].0).sum();
        if count > 0 {
            let pair = ((key >> 8) as u32, (key & 0xff) as u32);
            *table.get_or_add(pair)? = PairInfo {
                count,
                blocks: BlockList::Heap(list),
            };
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_keep_order_and_drop_repeats() {
        let mut list = BlockList::default();
        for b in [1, 1, 2, 3, 3, 4, 5, 6, 7, 2] {
            list.push(b).unwrap();
        }
        assert!(matches!(list, BlockList::Heap(_)));
        assert_eq!(list.into_sorted().unwrap(), [1, 2, 3, 4, 5, 6, 7]);
        let mut small = BlockList::default();
        small.push(9).unwrap();
        small.push(4).unwrap();
        assert_eq!(small.into_sorted().unwrap(), [4, 9]);
    }
}
