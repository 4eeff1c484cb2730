//! The trainer's table of pairs: for every adjacent pair its count (weighted by word
//! counts) and the blocks that hold it (or once did: entries go stale, and are checked when
//! the pair is merged). The lists are the bulk of the trainer's memory when a corpus has
//! many distinct pretokens (text without spaces: a 40 MB Chinese-like text has 32 million
//! (pair, block) entries), so each is stored compactly: the difference of each block
//! number from the one before, zigzag varint-coded (one byte per block in the dense lists
//! of frequent pairs, where four bytes were spent before), short lists inline.

use std::ops::Range;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::words::{Pair, Symbol, Words};
use crate::error::{try_reserve, try_reserve_map, Error, Result};
use crate::progress::Progress;

/// Bytes stored inline in a [`BlockList`] before it moves to the heap.
const INLINE: usize = 15;

/// The zigzag varint of `delta` into `out`; returns its length.
#[inline]
fn encode(delta: i64, out: &mut [u8; 10]) -> usize {
    let mut v = ((delta << 1) ^ (delta >> 63)) as u64;
    let mut n = 0;
    while v >= 0x80 {
        out[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// The length of the zigzag varint of `delta`.
#[inline]
fn encoded_len(delta: i64) -> usize {
    let v = ((delta << 1) ^ (delta >> 63)) as u64;
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[derive(Debug, Clone)]
enum Bytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

/// The blocks of one pair, in the order they were added (see the module docs).
#[derive(Debug, Clone)]
pub struct BlockList {
    /// The last block added (0 when none, the base of the first difference).
    last: u32,
    bytes: Bytes,
}

impl Default for BlockList {
    fn default() -> Self {
        BlockList {
            last: 0,
            bytes: Bytes::Inline {
                len: 0,
                buf: [0; INLINE],
            },
        }
    }
}

impl BlockList {
    /// A list of the encoded bytes `bytes` whose last block is `last`.
    fn from_encoded(last: u32, bytes: Vec<u8>) -> Self {
        if bytes.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..bytes.len()].copy_from_slice(&bytes);
            let len = bytes.len() as u8;
            BlockList {
                last,
                bytes: Bytes::Inline { len, buf },
            }
        } else {
            BlockList {
                last,
                bytes: Bytes::Heap(bytes),
            }
        }
    }

    fn encoded(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Inline { len, buf } => &buf[..*len as usize],
            Bytes::Heap(v) => v,
        }
    }

    /// Add `block` unless it is the last one added.
    pub fn push(&mut self, block: u32) -> Result<()> {
        if block == self.last && !self.encoded().is_empty() {
            return Ok(());
        }
        let mut code = [0u8; 10];
        let n = encode(i64::from(block) - i64::from(self.last), &mut code);
        self.last = block;
        match &mut self.bytes {
            Bytes::Inline { len, buf } if *len as usize + n <= INLINE => {
                buf[*len as usize..*len as usize + n].copy_from_slice(&code[..n]);
                *len += n as u8;
            }
            Bytes::Inline { len, buf } => {
                let mut v = Vec::new();
                try_reserve(&mut v, 2 * INLINE)?;
                v.extend_from_slice(&buf[..*len as usize]);
                v.extend_from_slice(&code[..n]);
                self.bytes = Bytes::Heap(v);
            }
            Bytes::Heap(v) => {
                if v.len() + n > v.capacity() {
                    // Grow by half: millions of lists, so their slack adds up.
                    v.try_reserve_exact(v.len() / 2 + n)
                        .map_err(|_| Error::OutOfMemory { bytes: v.len() })?;
                }
                v.extend_from_slice(&code[..n]);
            }
        }
        Ok(())
    }

    /// The blocks in increasing order, each once (a list gets entries from more than one
    /// merge step, each in order, so it may hold several sorted runs).
    pub fn into_sorted(self) -> Result<Vec<u32>> {
        let bytes = self.encoded();
        let mut v = Vec::new();
        // At least one byte per block.
        try_reserve(&mut v, bytes.len())?;
        let (mut block, mut code, mut shift) = (0i64, 0u64, 0);
        for &byte in bytes {
            code |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                block += (code >> 1) as i64 ^ -((code & 1) as i64);
                v.push(block as u32);
                (code, shift) = (0, 0);
            }
        }
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

    /// The pair's info, if it is in the table.
    pub fn get_mut(&mut self, pair: &Pair) -> Option<&mut PairInfo> {
        self.slot_of.get(pair).map(|&i| &mut self.slots[i as usize])
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

/// The pair table of `words` as they are: every pair with its count and blocks (one
/// pass, for the rare run that needs every pair again: see `train`).
pub fn all_pairs<S: Symbol>(words: &Words<S>, progress: &Progress) -> Result<PairTable> {
    let mut table = PairTable::default();
    for block in 0..words.num_blocks() as u32 {
        if block % 4096 == 0 {
            progress.poll()?;
        }
        let count = words.count(block) as i64;
        let ids = words.ids(block);
        let cross = ids.last().map(|s| s.get()).zip(words.first_after(block));
        for pair in ids
            .windows(2)
            .map(|w| (w[0].get(), w[1].get()))
            .chain(cross)
        {
            let info = table.get_or_add(pair)?;
            info.count += count;
            info.blocks.push(block)?;
        }
    }
    Ok(table)
}

/// One run's part of an initial pair's list: the pair's count in the run, its blocks, the
/// bytes of their differences after the first, and its first and last block.
#[derive(Debug, Clone, Copy, Default)]
struct RunPart {
    count: i64,
    blocks: usize,
    bytes: usize,
    first: u32,
    last: u32,
}

/// Pairs of single bytes, `(a, b)` as key `a << 8 | b`: the initial pairs of every word.
const KEYS: usize = 1 << 16;

/// A further occurrence of a pair in a block already reported (see [`byte_pairs_in`]).
const REPEAT: u32 = u32::MAX;

/// The pair table of `words` (all of single bytes), built in two parallel passes over
/// contiguous runs of blocks on `pool`: the first sizes each pair's list per run, the
/// second writes each run's blocks into its own slice of the pair's list, allocated once
/// at its exact size. So the lists come out in increasing order, with no copy and no slack.
pub fn initial_pairs<S: Symbol>(words: &Words<S>, pool: &rayon::ThreadPool) -> Result<PairTable> {
    let num_blocks = words.num_blocks() as u32;
    let per_part = num_blocks
        .div_ceil(pool.current_num_threads().max(1) as u32)
        .max(1);
    let parts: Vec<Range<u32>> = (0..num_blocks)
        .step_by(per_part as usize)
        .map(|start| start..(start + per_part).min(num_blocks))
        .collect();
    let sizes: Vec<Vec<RunPart>> = pool.install(|| {
        parts
            .par_iter()
            .map(|part| run_sizes(words, part.clone()))
            .collect()
    });
    let (mut lists, mut starts) = allocate_lists(&sizes)?;
    fill_lists(words, &parts, &sizes, &mut starts, &mut lists, pool);
    let mut table = PairTable::default();
    for (key, (last, list)) in lists.into_iter().enumerate() {
        let count: i64 = sizes.iter().map(|part| part[key].count).sum();
        if count > 0 {
            let pair = ((key >> 8) as u32, (key & 0xff) as u32);
            *table.get_or_add(pair)? = PairInfo {
                count,
                blocks: BlockList::from_encoded(last, list),
            };
        }
    }
    Ok(table)
}

/// Call `f(key, block, count)` for each byte pair in the blocks of `part`, in order:
/// with the block at its first occurrence in a block, with [`REPEAT`] for the others.
fn byte_pairs_in<S: Symbol>(
    words: &Words<S>,
    part: Range<u32>,
    mut f: impl FnMut(usize, u32, i64),
) {
    let mut last = vec![REPEAT; KEYS];
    for block in part {
        let count = words.count(block) as i64;
        let ids = words.ids(block);
        let cross = ids.last().map(|s| s.get()).zip(words.first_after(block));
        let inner = ids.windows(2).map(|w| (w[0].get(), w[1].get()));
        for (a, b) in inner.chain(cross) {
            let key = (a as usize) << 8 | b as usize;
            let first = last[key] != block;
            last[key] = block;
            f(key, if first { block } else { REPEAT }, count);
        }
    }
}

/// Pass 1, for one run of blocks: each pair's count, blocks and encoded size.
fn run_sizes<S: Symbol>(words: &Words<S>, part: Range<u32>) -> Vec<RunPart> {
    let mut sizes = vec![RunPart::default(); KEYS];
    byte_pairs_in(words, part, |key, block, count| {
        let s = &mut sizes[key];
        s.count += count;
        if block != REPEAT {
            if s.blocks == 0 {
                s.first = block;
            } else {
                s.bytes += encoded_len(i64::from(block) - i64::from(s.last));
            }
            s.last = block;
            s.blocks += 1;
        }
    });
    sizes
}

/// Each pair's list, zeroed at its exact size, with its last block; and where each run's
/// slice of it starts (`starts[run][key]`: the block before the run's first, the base of
/// its first difference).
#[allow(clippy::type_complexity)]
fn allocate_lists(sizes: &[Vec<RunPart>]) -> Result<(Vec<(u32, Vec<u8>)>, Vec<Vec<u32>>)> {
    let mut lists: Vec<(u32, Vec<u8>)> = Vec::new();
    try_reserve(&mut lists, KEYS)?;
    let mut starts = vec![vec![0u32; KEYS]; sizes.len()];
    for key in 0..KEYS {
        let (mut len, mut last) = (0, 0u32);
        for (run, part) in sizes.iter().enumerate() {
            let s = &part[key];
            starts[run][key] = last;
            if s.blocks > 0 {
                len += encoded_len(i64::from(s.first) - i64::from(last)) + s.bytes;
                last = s.last;
            }
        }
        let mut list = Vec::new();
        list.try_reserve_exact(len)
            .map_err(|_| Error::OutOfMemory { bytes: len })?;
        list.resize(len, 0);
        lists.push((last, list));
    }
    Ok((lists, starts))
}

/// Pass 2: each run writes its blocks into its own slice of every pair's list.
fn fill_lists<S: Symbol>(
    words: &Words<S>,
    parts: &[Range<u32>],
    sizes: &[Vec<RunPart>],
    starts: &mut [Vec<u32>],
    lists: &mut [(u32, Vec<u8>)],
    pool: &rayon::ThreadPool,
) {
    let mut slices: Vec<Vec<&mut [u8]>> = parts.iter().map(|_| Vec::with_capacity(KEYS)).collect();
    for (key, (_, list)) in lists.iter_mut().enumerate() {
        let mut rest = &mut list[..];
        for (run, run_slices) in slices.iter_mut().enumerate() {
            let s = &sizes[run][key];
            let len = if s.blocks > 0 {
                encoded_len(i64::from(s.first) - i64::from(starts[run][key])) + s.bytes
            } else {
                0
            };
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(len);
            run_slices.push(mine);
            rest = tail;
        }
    }
    pool.install(|| {
        parts
            .par_iter()
            .zip(slices.par_iter_mut())
            .zip(starts.par_iter_mut())
            .for_each(|((part, slices), last)| {
                let mut filled = vec![0usize; KEYS];
                let mut code = [0u8; 10];
                byte_pairs_in(words, part.clone(), |key, block, _| {
                    if block != REPEAT {
                        let n = encode(i64::from(block) - i64::from(last[key]), &mut code);
                        slices[key][filled[key]..filled[key] + n].copy_from_slice(&code[..n]);
                        filled[key] += n;
                        last[key] = block;
                    }
                });
            })
    });
}

#[cfg(test)]
#[path = "pairs_tests.rs"]
mod tests;
