//! The incremental BPE trainer.
//!
//! Input: each distinct pretoken with its count ([`counts`], into [`table`]s). Each
//! pretoken becomes a *word* of token ids, initially its bytes, stored in blocks ([`words`];
//! `u16` ids when the vocabulary allows). The trainer keeps
//! - the count of every adjacent pair, weighted by word counts,
//! - an index pair -> the blocks that contain (or once contained) it ([`pairs`]),
//! - a max-heap of (count, pair) ordered by count, then (left bytes, right bytes)
//!   ([`queue`]).
//!
//! Each step pops the best pair; a stale heap entry (its count has dropped since it was
//! pushed) is pushed back with the current count. Merging a pair only visits the blocks
//! in its index entry, and [`Words::merge_pair`] reports how the counts of the
//! neighbouring pairs change, so no step rescans the corpus, and a long word costs at most
//! a block's length per occurrence of the pair. Pairs that a merge forms only once are not
//! tracked until they could win (see [`train`]), which bounds the memory of text with
//! many distinct pretokens (text without spaces).

use std::path::PathBuf;

use rustc_hash::FxHashMap;

use crate::error::{try_reserve, try_reserve_map, Error, Result};
use crate::pool::pool;
use crate::pretokenize::{Pretokenizer, SpecialTokens};
use crate::progress::Progress;

pub mod counts;
pub mod pairs;
pub mod queue;
pub mod table;
pub mod words;

pub use counts::{Chunking, PretokenCounter};
use pairs::{all_pairs, initial_pairs, PairTable};
use queue::Queue;
pub use table::Counts;
use words::{Pair, Symbol, Words};

/// Everything that defines a training run except the input.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Final vocabulary size: 256 bytes + merges + special tokens.
    pub vocab_size: usize,
    pub special_tokens: Vec<String>,
    pub pattern: String,
    /// Threads for counting (all cores when `None`).
    pub num_threads: Option<usize>,
    pub chunking: Chunking,
    /// No merge creates a token longer than this many bytes (no limit when `None`).
    pub max_token_length: Option<usize>,
}

impl TrainConfig {
    /// Check the configuration and return an empty counter for it, with the number of
    /// merges to learn.
    pub fn counter(&self) -> Result<(PretokenCounter, usize)> {
        let specials = SpecialTokens::new(&self.special_tokens)?;
        let num_merges = merges_for(self.vocab_size, specials.tokens().len())?;
        let pretokenizer = Pretokenizer::new(&self.pattern)?;
        let counter =
            PretokenCounter::new(pretokenizer, specials, self.num_threads, self.chunking)?;
        Ok((counter, num_merges))
    }
}

/// What training learned: the bytes of every token (the 256 bytes, then one per merge)
/// and the merges as token-id pairs, in creation order (merge `i` creates id `256 + i`).
#[derive(Debug, Clone)]
pub struct Trained {
    pub tokens: Vec<Vec<u8>>,
    pub merges: Vec<Pair>,
}

impl Trained {
    /// The merges as the bytes of their two tokens.
    pub fn merge_bytes(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.merges
            .iter()
            .map(|&(a, b)| {
                let token = |id: u32| self.tokens[id as usize].to_vec();
                (token(a), token(b))
            })
            .collect()
    }
}

/// Train on the concatenation of the files at `paths` (each file is its own document:
/// no pretoken spans two files).
pub fn train_files(
    paths: &[PathBuf],
    config: &TrainConfig,
    progress: &Progress,
) -> Result<Trained> {
    let (counter, num_merges) = config.counter()?;
    for path in paths {
        counter.count_file(path, progress)?;
    }
    train_counts(
        counter.finish(),
        num_merges,
        config.max_token_length,
        config.num_threads,
        progress,
    )
}

/// Learn up to `num_merges` merges from pretoken counts (consumed, so their memory is
/// freed as the words are built).
pub fn train_counts(
    counts: Counts,
    num_merges: usize,
    max_token_length: Option<usize>,
    num_threads: Option<usize>,
    progress: &Progress,
) -> Result<Trained> {
    let limits = Limits {
        num_merges,
        max_token_length,
        num_threads,
    };
    if symbols_fit_u16(num_merges) {
        train(words_of_counts::<u16>(counts, progress)?, &limits, progress)
    } else {
        train(words_of_counts::<u32>(counts, progress)?, &limits, progress)
    }
}

/// The words of the pretokens of at least two bytes in `counts`.
fn words_of_counts<S: Symbol>(counts: Counts, progress: &Progress) -> Result<Words<S>> {
    let mut words = Words::default();
    let mut i = 0usize;
    let distinct = counts.drain(|pretoken, count| {
        if pretoken.len() >= 2 {
            words.push(pretoken, count)?;
        }
        i += 1;
        if i % 4096 == 0 {
            progress.poll()?;
        }
        Ok(())
    })?;
    progress.report(|| format!("counted {distinct} distinct pretokens"));
    Ok(words)
}

/// Learn up to `num_merges` merges from `(pretoken bytes, count)` pairs (for tests).
pub fn train_words<'a>(
    pretokens: impl IntoIterator<Item = (&'a [u8], u64)>,
    num_merges: usize,
    max_token_length: Option<usize>,
) -> Result<Trained> {
    fn words<'a, S: Symbol>(
        pretokens: impl IntoIterator<Item = (&'a [u8], u64)>,
    ) -> Result<Words<S>> {
        let mut words = Words::default();
        for (bytes, count) in pretokens {
            if bytes.len() >= 2 {
                words.push(bytes, count)?;
            }
        }
        Ok(words)
    }
    let limits = Limits {
        num_merges,
        max_token_length,
        num_threads: Some(2),
    };
    let progress = Progress::silent();
    if symbols_fit_u16(num_merges) {
        train(words::<u16>(pretokens)?, &limits, &progress)
    } else {
        train(words::<u32>(pretokens)?, &limits, &progress)
    }
}

/// Whether every id of a run of `num_merges` merges fits in a `u16` (ids go up to
/// `255 + num_merges`).
fn symbols_fit_u16(num_merges: usize) -> bool {
    255 + num_merges <= usize::from(u16::MAX)
}

/// How far [`train`] goes, and on how many threads.
#[derive(Debug, Clone, Copy)]
struct Limits {
    num_merges: usize,
    max_token_length: Option<usize>,
    num_threads: Option<usize>,
}

/// New pairs formed fewer times than this are not tracked until they might win (see
/// [`train`]).
const UNTRACKED_BELOW: u64 = 2;

/// Blocks whose headers are loaded together before they are merged (see [`train`]).
const BATCH: usize = 32;

const NO_BLOCK: u32 = u32::MAX;

/// One merge step's change to a pair: its count, and the first and last entry of its
/// chain of blocks in the step's `formed` list (`NO_BLOCK` when empty).
#[derive(Debug, Clone, Copy)]
struct Delta {
    change: i64,
    head: u32,
    tail: u32,
}

/// Record that pair `p` changed by `change` in `block` (where it formed, if positive).
fn record(
    deltas: &mut FxHashMap<Pair, Delta>,
    formed: &mut Vec<(u32, u32)>,
    p: Pair,
    change: i64,
    block: u32,
) -> Result<()> {
    if deltas.len() == deltas.capacity() {
        try_reserve_map(deltas, deltas.len().max(16))?;
    }
    let delta = deltas.entry(p).or_insert(Delta {
        change: 0,
        head: NO_BLOCK,
        tail: NO_BLOCK,
    });
    delta.change += change;
    if change > 0 && (delta.tail == NO_BLOCK || formed[delta.tail as usize].0 != block) {
        if formed.len() == formed.capacity() {
            try_reserve(formed, formed.len().max(16))?;
        }
        let link = formed.len() as u32;
        formed.push((block, NO_BLOCK));
        match delta.tail {
            NO_BLOCK => delta.head = link,
            tail => formed[tail as usize].1 = link,
        }
        delta.tail = link;
    }
    Ok(())
}

/// The number of merges that `vocab_size` leaves room for, after the 256 byte tokens and
/// `num_special` special tokens; [`Error::VocabTooSmall`] if it cannot hold those.
pub fn merges_for(vocab_size: usize, num_special: usize) -> Result<usize> {
    let minimum = 256 + num_special;
    vocab_size.checked_sub(minimum).ok_or(Error::VocabTooSmall {
        vocab_size,
        minimum,
    })
}

/// Learn up to `num_merges` merges from `words`. Stops early when no pair is left (or
/// none makes a token of at most `max_token_length` bytes). `progress` is polled between
/// merges and within long ones.
fn train<S: Symbol>(words: Words<S>, limits: &Limits, progress: &Progress) -> Result<Trained> {
    progress.check()?;
    let mut merger = Merger::new(words, limits)?;
    progress.check()?;
    progress.report(|| {
        format!(
            "merging: {} blocks, {} distinct pairs, {} merges to learn",
            merger.words.num_blocks(),
            merger.pairs.num_pairs(),
            merger.num_merges
        )
    });
    while merger.merges.len() < merger.num_merges {
        progress.poll()?;
        let Some(pair) = merger.next_pair(progress)? else {
            break;
        };
        let new_id = merger.add_token(pair)?;
        merger.merge_blocks(pair, new_id, progress)?;
        merger.apply_deltas(pair)?;
        if merger.merges.len() % 1000 == 0 {
            progress.report(|| format!("merges: {}/{}", merger.merges.len(), merger.num_merges));
        }
    }
    progress.report(|| {
        format!(
            "done: {} merges ({} distinct pairs left)",
            merger.merges.len(),
            merger.pairs.num_pairs()
        )
    });
    Ok(Trained {
        tokens: merger.tokens,
        merges: merger.merges,
    })
}

/// The state of a training run between merge steps.
struct Merger<S: Symbol> {
    words: Words<S>,
    /// The bytes of every token so far: the 256 bytes, then one per merge.
    tokens: Vec<Vec<u8>>,
    merges: Vec<Pair>,
    pairs: PairTable,
    queue: Queue,
    /// A pair that a merge forms fewer than `floor` times is not tracked (no entry, no
    /// block list, not queued): in text with many distinct pretokens most new pairs occur
    /// once. That is exact: a pair gains occurrences only in the step that makes its newer
    /// token, so an untracked pair never reaches `floor`, and while the best queued pair
    /// occurs at least `floor` times, it beats every untracked one. Should the queue fall
    /// below `floor`, every pair is counted again and tracked from then on (`floor` 0).
    floor: u64,
    /// The changes of one merge step: per pair, the count change and the chain (in
    /// `formed`) of the blocks where it formed, for the pair table.
    deltas: FxHashMap<Pair, Delta>,
    formed: Vec<(u32, u32)>,
    num_merges: usize,
    max_token_length: Option<usize>,
}

impl<S: Symbol> Merger<S> {
    /// Count the pairs of `words` (on `limits.num_threads`) and queue them.
    fn new(words: Words<S>, limits: &Limits) -> Result<Self> {
        let pairs = initial_pairs(&words, &*pool(limits.num_threads)?)?;
        // Ids are u32 (the corpus runs out of pairs long before this bound).
        let num_merges = limits.num_merges.min(u32::MAX as usize - 256);
        let mut merges = Vec::new();
        try_reserve(&mut merges, num_merges.min(1 << 20))?;
        let mut merger = Merger {
            words,
            tokens: (0..=255u8).map(|b| vec![b]).collect(),
            merges,
            pairs,
            queue: Queue::default(),
            floor: UNTRACKED_BELOW,
            deltas: FxHashMap::default(),
            formed: Vec::new(),
            num_merges,
            max_token_length: limits.max_token_length,
        };
        merger.queue = merger.queue_all()?;
        Ok(merger)
    }

    /// Whether merging `pair` keeps within `max_token_length`.
    fn fits(&self, pair: Pair) -> bool {
        self.max_token_length.map_or(true, |max| {
            self.tokens[pair.0 as usize].len() + self.tokens[pair.1 as usize].len() <= max
        })
    }

    /// A queue of every pair in the table (that fits).
    fn queue_all(&self) -> Result<Queue> {
        let mut queue = Queue::default();
        queue.reserve(self.pairs.num_pairs())?;
        for (pair, info) in self.pairs.iter() {
            if self.fits(pair) {
                queue.push(info.count as u64, pair, &self.tokens)?;
            }
        }
        Ok(queue)
    }

    /// The pair to merge next (the most frequent, ties by bytes), or None when none is
    /// left: stale queue entries are re-queued with their current count, and should the
    /// best fall below `floor`, every pair is counted again.
    fn next_pair(&mut self, progress: &Progress) -> Result<Option<Pair>> {
        loop {
            if self.floor > 0
                && self
                    .queue
                    .peek()
                    .map_or(true, |(count, _)| count < self.floor)
            {
                drop(std::mem::take(&mut self.queue));
                drop(std::mem::take(&mut self.pairs));
                self.pairs = all_pairs(&self.words, progress)?;
                self.queue = self.queue_all()?;
                self.floor = 0;
                continue;
            }
            let Some((count, pair)) = self.queue.pop(&self.tokens) else {
                return Ok(None);
            };
            let current = self.pairs.get(&pair).map_or(0, |info| info.count);
            if current <= 0 {
                continue;
            }
            if current as u64 == count {
                return Ok(Some(pair));
            }
            // Stale: counts only fall, so re-queue with the current count.
            self.queue.push(current as u64, pair, &self.tokens)?;
        }
    }

    /// Record `pair`'s merge and its token; the new token's id.
    fn add_token(&mut self, pair: Pair) -> Result<u32> {
        let new_id = self.tokens.len() as u32;
        let (left, right) = (&self.tokens[pair.0 as usize], &self.tokens[pair.1 as usize]);
        let mut token = Vec::new();
        try_reserve(&mut token, left.len() + right.len())?;
        token.extend_from_slice(left);
        token.extend_from_slice(right);
        try_reserve(&mut self.tokens, 1)?;
        self.tokens.push(token);
        try_reserve(&mut self.merges, 1)?;
        self.merges.push(pair);
        Ok(new_id)
    }

    /// Merge `pair` into `new_id` in every block its index lists, collecting how the
    /// neighbouring pairs' counts change (in `deltas`, `formed`).
    fn merge_blocks(&mut self, pair: Pair, new_id: u32, progress: &Progress) -> Result<()> {
        self.deltas.clear();
        self.formed.clear();
        let blocks = match self.pairs.remove(&pair)? {
            Some(info) => info.blocks.into_sorted()?,
            None => Vec::new(),
        };
        let (deltas, formed) = (&mut self.deltas, &mut self.formed);
        for batch in blocks.chunks(BATCH) {
            progress.poll()?;
            // Read the counts of a batch of blocks first: independent loads, so their cache
            // misses overlap instead of stalling one merge after another.
            let mut counts = [0i64; BATCH];
            for (count, &w) in counts.iter_mut().zip(batch) {
                *count = self.words.count(w) as i64;
            }
            for (&w, &count) in batch.iter().zip(&counts) {
                self.words.merge_pair(w, pair, new_id, |block, p, d| {
                    // The merged pair itself leaves the table (in apply_deltas).
                    match p == pair {
                        true => Ok(()),
                        false => record(deltas, formed, p, d * count, block),
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Apply the step's deltas to the pair table, queue the pairs that gained (all new:
    /// they hold the new token) and drop `pair`.
    fn apply_deltas(&mut self, pair: Pair) -> Result<()> {
        self.queue.reserve(self.deltas.len())?;
        for (&p, delta) in &self.deltas {
            if delta.change == 0 && delta.head == NO_BLOCK {
                continue;
            }
            let info = match self.pairs.get_mut(&p) {
                Some(info) => info,
                None if delta.change >= self.floor as i64 => self.pairs.get_or_add(p)?,
                // Formed fewer than `floor` times, or untracked and losing occurrences.
                None => continue,
            };
            info.count += delta.change;
            if info.count <= 0 {
                // Gone from every word: drop its stale block list too.
                self.pairs.remove(&p)?;
                continue;
            }
            let mut link = delta.head;
            while link != NO_BLOCK {
                let (block, next) = self.formed[link as usize];
                info.blocks.push(block)?;
                link = next;
            }
            let count = info.count as u64;
            if delta.change > 0 && self.fits(p) {
                self.queue.push(count, p, &self.tokens)?;
            }
        }
        self.pairs.remove(&pair)?;
        // The first steps of a large corpus form pairs in millions of blocks; give that
        // memory back once the steps are smaller.
        if self.formed.capacity() > 4 * self.formed.len().max(1 << 14) {
            self.formed.shrink_to(2 * self.formed.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
