//! The incremental BPE trainer.
//!
//! Input: each distinct pretoken with its count ([`counts`]). Each pretoken becomes a
//! *word* of token ids, initially its bytes, stored in blocks ([`words`]). The trainer keeps
//! - the count of every adjacent pair, weighted by word counts,
//! - an index pair -> the blocks that contain (or once contained) it,
//! - a max-heap of [`Candidate`]s ordered by (count, (left bytes, right bytes)).
//!
//! Each step pops the best pair; a stale heap entry (its count has dropped since it was
//! pushed) is pushed back with the current count. Merging a pair only visits the blocks
//! in its index entry, and [`Words::merge_pair`] reports how the counts of the
//! neighbouring pairs change, so no step rescans the corpus, and a long word costs at most
//! a block's length per occurrence of the pair.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{try_reserve, try_reserve_map, Error, Result};
use crate::pool::pool;
use crate::pretokenize::{Pretokenizer, SpecialTokens};
use crate::progress::Progress;

pub mod counts;
pub mod words;

pub use counts::{Chunking, Counts, PretokenCounter};
use words::{Pair, Words};

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
    pub tokens: Vec<Arc<Vec<u8>>>,
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
    let counts = counter.finish()?;
    train_counts(
        counts,
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
    progress.report(|| format!("counted {} distinct pretokens", counts.len()));
    let mut words = Words::default();
    for (i, (pretoken, count)) in counts.into_iter().enumerate() {
        if pretoken.len() >= 2 {
            words.push(pretoken.as_bytes(), count)?;
        }
        if i % 4096 == 0 {
            progress.poll()?;
        }
    }
    train(words, num_merges, max_token_length, num_threads, progress)
}

/// Learn up to `num_merges` merges from `(pretoken bytes, count)` pairs (for tests).
pub fn train_words<'a>(
    pretokens: impl IntoIterator<Item = (&'a [u8], u64)>,
    num_merges: usize,
    max_token_length: Option<usize>,
) -> Result<Trained> {
    let mut words = Words::default();
    for (bytes, count) in pretokens {
        if bytes.len() >= 2 {
            words.push(bytes, count)?;
        }
    }
    train(
        words,
        num_merges,
        max_token_length,
        Some(2),
        &Progress::silent(),
    )
}

/// Words whose headers are loaded together before they are merged (see [`train`]).
const BATCH: usize = 32;

/// A heap entry: a pair with its count when it was pushed, and the bytes of its two
/// tokens so that ties compare without a vocabulary lookup.
#[derive(Debug)]
struct Candidate {
    count: u64,
    left: Arc<Vec<u8>>,
    right: Arc<Vec<u8>>,
    pair: Pair,
}

impl Ord for Candidate {
    /// The rule: "the most frequent pair wins; ties go to the lexicographically greater
    /// pair, compared as (bytes, bytes)". BinaryHeap pops the greatest entry.
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| {
            (self.left.as_slice(), self.right.as_slice())
                .cmp(&(other.left.as_slice(), other.right.as_slice()))
        })
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The number of merges that `vocab_size` leaves room for, after the 256 byte tokens and
/// `num_special` special tokens; [`Error::VocabTooSmall`] if it cannot hold those.
pub fn merges_for(vocab_size: usize, num_special: usize) -> Result<usize> {
    let minimum = 256 + num_special;
    vocab_size.checked_sub(minimum).ok_or(Error::VocabTooSmall {
        vocab_size,
        minimum,
    })
}

/// Append `x`, growing `v` fallibly.
fn push<T>(v: &mut Vec<T>, x: T) -> Result<()> {
    if v.len() == v.capacity() {
        try_reserve(v, v.len().max(4))?;
    }
    v.push(x);
    Ok(())
}

/// Pair counts and the pair -> blocks index of all words (of single bytes), counted in
/// parallel over contiguous runs of blocks, so each list comes out in increasing order.
type PairTables = (FxHashMap<Pair, i64>, FxHashMap<Pair, Vec<u32>>);

fn initial_pairs(words: &Words, num_threads: Option<usize>) -> Result<PairTables> {
    let pool = pool(num_threads)?;
    let blocks = words.blocks();
    let parts = pool.current_num_threads().max(1);
    let per_part = blocks.len().div_ceil(parts).max(1);
    // Initial ids are bytes: a dense table per part, indexed by `left << 8 | right`.
    let tables: Vec<Vec<(i64, Vec<u32>)>> = pool.install(|| {
        blocks
            .par_chunks(per_part)
            .map(|part| -> Result<Vec<(i64, Vec<u32>)>> {
                let mut table: Vec<(i64, Vec<u32>)> = Vec::new();
                try_reserve(&mut table, 1 << 16)?;
                table.resize_with(1 << 16, Default::default);
                for &block in part {
                    let count = words.count(block) as i64;
                    let ids = words.ids(block);
                    let cross = ids.last().copied().zip(words.first_after(block));
                    let pairs = ids.windows(2).map(|w| (w[0], w[1])).chain(cross);
                    for (a, b) in pairs {
                        let (n, list) = &mut table[(a as usize) << 8 | b as usize];
                        *n += count;
                        if list.last() != Some(&block) {
                            push(list, block)?;
                        }
                    }
                }
                Ok(table)
            })
            .collect::<Result<_>>()
    })?;
    let mut counts = FxHashMap::default();
    let mut index = FxHashMap::default();
    let mut tables: Vec<_> = tables.into_iter().map(Vec::into_iter).collect();
    for key in 0..1u32 << 16 {
        let mut total = 0;
        let mut list: Vec<u32> = Vec::new();
        for table in &mut tables {
            let (n, part) = table.next().unwrap_or_default();
            total += n;
            if list.is_empty() {
                list = part;
            } else {
                try_reserve(&mut list, part.len())?;
                list.extend(part);
            }
        }
        if total > 0 {
            try_reserve_map(&mut counts, 1)?;
            try_reserve_map(&mut index, 1)?;
            counts.insert((key >> 8, key & 0xff), total);
            index.insert((key >> 8, key & 0xff), list);
        }
    }
    Ok((counts, index))
}

/// Learn up to `num_merges` merges from `words`. Stops early when no pair is left (or
/// none makes a token of at most `max_token_length` bytes). `progress` is polled between
/// merges and within long ones.
fn train(
    mut words: Words,
    num_merges: usize,
    max_token_length: Option<usize>,
    num_threads: Option<usize>,
    progress: &Progress,
) -> Result<Trained> {
    progress.check()?;
    let mut tokens: Vec<Arc<Vec<u8>>> = (0..=255u8).map(|b| Arc::new(vec![b])).collect();
    // Ids are u32 (the corpus runs out of pairs long before this bound).
    let num_merges = num_merges.min(u32::MAX as usize - 256);
    let (mut pair_counts, mut index) = initial_pairs(&words, num_threads)?;
    progress.check()?;
    let fits = |pair: Pair, tokens: &[Arc<Vec<u8>>]| {
        max_token_length.map_or(true, |max| {
            tokens[pair.0 as usize].len() + tokens[pair.1 as usize].len() <= max
        })
    };
    let candidate = |pair: Pair, count: i64, tokens: &[Arc<Vec<u8>>]| Candidate {
        count: count as u64,
        left: Arc::clone(&tokens[pair.0 as usize]),
        right: Arc::clone(&tokens[pair.1 as usize]),
        pair,
    };
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::new();
    heap.try_reserve(pair_counts.len())
        .map_err(|_| Error::OutOfMemory {
            bytes: pair_counts.len() * std::mem::size_of::<Candidate>(),
        })?;
    for (&pair, &count) in &pair_counts {
        if fits(pair, &tokens) {
            heap.push(candidate(pair, count, &tokens));
        }
    }
    progress.report(|| {
        format!(
            "merging: {} blocks, {} distinct pairs, {num_merges} merges to learn",
            words.blocks().len(),
            pair_counts.len()
        )
    });

    let mut merges = Vec::new();
    try_reserve(&mut merges, num_merges.min(1 << 20))?;
    let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
    while merges.len() < num_merges {
        progress.poll()?;
        let Some(top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current <= 0 {
            continue;
        }
        if current as u64 != top.count {
            // Stale: counts only fall, so re-queue with the current count.
            heap.push(Candidate {
                count: current as u64,
                ..top
            });
            continue;
        }

        let pair = top.pair;
        let new_id = tokens.len() as u32;
        let mut token = Vec::new();
        try_reserve(&mut token, top.left.len() + top.right.len())?;
        token.extend_from_slice(&top.left);
        token.extend_from_slice(&top.right);
        push(&mut tokens, Arc::new(token))?;
        push(&mut merges, pair)?;

        deltas.clear();
        let mut blocks = index.remove(&pair).unwrap_or_default();
        // Merges within a word go left to right: blocks in increasing order (a list gets
        // entries from two merge steps, each in order, so it may hold two sorted runs).
        if !blocks.windows(2).all(|w| w[0] <= w[1]) {
            blocks.sort_unstable();
        }
        blocks.dedup();
        let mut failed = None;
        for batch in blocks.chunks(BATCH) {
            progress.poll()?;
            // Read the counts of a batch of blocks first: independent loads, so their cache
            // misses overlap instead of stalling one merge after another.
            let mut counts = [0i64; BATCH];
            for (count, &w) in counts.iter_mut().zip(batch) {
                *count = words.count(w) as i64;
            }
            for (&w, &count) in batch.iter().zip(&counts) {
                words.merge_pair(w, pair, new_id, |block, p, d| {
                    if deltas.len() == deltas.capacity() {
                        let more = deltas.len().max(16);
                        if let Err(e) = try_reserve_map(&mut deltas, more) {
                            failed = Some(e);
                            return;
                        }
                    }
                    *deltas.entry(p).or_default() += d * count;
                    if d > 0 {
                        if index.len() == index.capacity() {
                            let more = index.len().max(16);
                            if let Err(e) = try_reserve_map(&mut index, more) {
                                failed = Some(e);
                                return;
                            }
                        }
                        let list = index.entry(p).or_default();
                        if list.last() != Some(&block) {
                            if let Err(e) = push(list, block) {
                                failed = Some(e);
                            }
                        }
                    }
                });
            }
            if let Some(e) = failed.take() {
                return Err(e);
            }
        }
        try_reserve_map(&mut pair_counts, deltas.len())?;
        heap.try_reserve(deltas.len())
            .map_err(|_| Error::OutOfMemory {
                bytes: deltas.len() * std::mem::size_of::<Candidate>(),
            })?;
        for (&p, &d) in &deltas {
            if d == 0 {
                continue;
            }
            let count = pair_counts.entry(p).or_default();
            *count += d;
            // Only pairs with the new token can gain: they are new, so queue them.
            if d > 0 && fits(p, &tokens) {
                heap.push(candidate(p, *count, &tokens));
            }
        }
        pair_counts.remove(&pair);
        if merges.len() % 1000 == 0 {
            progress.report(|| format!("merges: {}/{num_merges}", merges.len()));
        }
    }
    progress.report(|| format!("done: {} merges", merges.len()));
    Ok(Trained { tokens, merges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(trained: &Trained) -> Vec<String> {
        trained
            .merge_bytes()
            .iter()
            .map(|(a, b)| {
                format!(
                    "{} {}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                )
            })
            .collect()
    }

    fn run(words: &[(&[u8], u64)], num_merges: usize) -> Vec<String> {
        names(&train_words(words.iter().copied(), num_merges, None).unwrap())
    }

    #[test]
    fn ties_go_to_the_greater_byte_pair() {
        // (b, a) and (a, b) both occur once: the greater pair (b"b", b"a") wins.
        assert_eq!(run(&[(b"ab", 1), (b"ba", 1)], 1), ["b a"]);
        // After "a a" -> id 256, (b"aa", b"c") and (b"b", b"c") tie at 1: compared by bytes
        // "b c" wins, although a comparison by token id would pick (256, 99).
        assert_eq!(
            run(&[(b"aa", 10), (b"aac", 1), (b"bc", 1)], 2),
            ["a a", "b c"]
        );
    }

    #[test]
    fn handout_example() {
        let words: &[(&[u8], u64)] = &[(b"low", 5), (b"lower", 2), (b"widest", 3), (b"newest", 6)];
        assert_eq!(
            run(words, 12),
            [
                "s t", "e st", "o w", "l ow", "w est", "n e", "ne west", "w i", "wi d", "wid est",
                "low e", "lowe r"
            ]
        );
    }

    #[test]
    fn stops_when_no_pair_is_left() {
        assert_eq!(run(&[(b"abc", 1), (b"x", 7)], 100), ["b c", "a bc"]);
        assert!(run(&[], 10).is_empty());
    }

    #[test]
    fn max_token_length_bounds_every_token() {
        let a = "a".repeat(1000);
        let all = train_words([(a.as_bytes(), 1)], 100, None).unwrap();
        assert!(all.tokens.iter().any(|t| t.len() > 100));
        let bounded = train_words([(a.as_bytes(), 1)], 100, Some(8)).unwrap();
        assert_eq!(names(&bounded), ["a a", "aa aa", "aaaa aaaa"]);
        assert!(train_words([(a.as_bytes(), 1)], 100, Some(1))
            .unwrap()
            .merges
            .is_empty());
    }

    /// The reference: recount every pair of every word after each merge.
    fn naive(words: &[(Vec<u8>, u64)], num_merges: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut words: Vec<(Vec<Vec<u8>>, u64)> = words
            .iter()
            .map(|(w, c)| (w.iter().map(|&b| vec![b]).collect(), *c))
            .collect();
        let mut merges = Vec::new();
        for _ in 0..num_merges {
            let mut counts: FxHashMap<(Vec<u8>, Vec<u8>), u64> = FxHashMap::default();
            for (w, c) in &words {
                for p in w.windows(2) {
                    *counts.entry((p[0].clone(), p[1].clone())).or_default() += c;
                }
            }
            let Some((best, _)) = counts
                .into_iter()
                .max_by(|x, y| (x.1, &x.0).cmp(&(y.1, &y.0)))
            else {
                break;
            };
            for (w, _) in &mut words {
                let mut out = Vec::new();
                let mut i = 0;
                while i < w.len() {
                    if i + 1 < w.len() && (&w[i], &w[i + 1]) == (&best.0, &best.1) {
                        out.push([&w[i][..], &w[i + 1][..]].concat());
                        i += 2;
                    } else {
                        out.push(w[i].clone());
                        i += 1;
                    }
                }
                *w = out;
            }
            merges.push(best);
        }
        merges
    }

    #[test]
    fn long_words_across_blocks_train_like_the_reference() {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut rand = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..40 {
            let alphabet = 2 + round % 3;
            let words: Vec<(Vec<u8>, u64)> = (0..1 + rand() % 3)
                .map(|_| {
                    let len = 2 + (rand() % 300) as usize;
                    let w = (0..len).map(|_| b'a' + (rand() % alphabet) as u8).collect();
                    (w, 1 + rand() % 3)
                })
                .collect();
            let ours = train_words(words.iter().map(|(w, c)| (&w[..], *c)), 60, None).unwrap();
            assert_eq!(ours.merge_bytes(), naive(&words, 60), "round {round}");
        }
    }

    #[test]
    fn vocab_too_small_is_an_error() {
        assert_eq!(merges_for(300, 2).unwrap(), 42);
        assert!(matches!(
            merges_for(257, 2),
            Err(Error::VocabTooSmall { minimum: 258, .. })
        ));
    }
}
