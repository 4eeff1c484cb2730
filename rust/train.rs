//! The incremental BPE trainer.
//!
//! Input: each distinct pretoken with its count (from [`crate::corpus`]). Each pretoken
//! becomes a *word* of token ids (initially its bytes). The trainer keeps
//! - the count of every adjacent pair, weighted by word counts,
//! - an index pair -> the words that contain (or once contained) it,
//! - a max-heap of [`Candidate`]s ordered by (count, (left bytes, right bytes)).
//!
//! Each step pops the best pair; a stale heap entry (its count has dropped since it was
//! pushed) is pushed back with the current count. Merging a pair only visits the words in
//! its index entry, and [`merge_pair`] reports how the counts of the neighbouring
//! pairs change, so no step rescans the corpus.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::corpus::{Chunking, Counts, PretokenCounter};
use crate::error::{try_reserve, Error, Result};
use crate::pretokenize::{Pretokenizer, SpecialTokens};

/// A learned merge as the bytes of its two tokens.
pub type MergeBytes = (Vec<u8>, Vec<u8>);

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
    /// Progress lines on stderr.
    pub show_progress: bool,
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

/// Train on the concatenation of the files at `paths` (each file is its own document:
/// no pretoken spans two files) and return the merges in creation order.
pub fn train_files(
    paths: &[PathBuf],
    config: &TrainConfig,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<MergeBytes>> {
    let progress = Progress::new(config.show_progress);
    let (counter, num_merges) = config.counter()?;
    for path in paths {
        counter.count_file(path, progress, interrupted)?;
    }
    train_counts(counter.finish(), num_merges, progress, interrupted)
}

/// Learn up to `num_merges` merges from pretoken counts, as byte pairs.
pub fn train_counts(
    counts: Counts,
    num_merges: usize,
    progress: Progress,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<MergeBytes>> {
    progress.report(|| format!("counted {} distinct pretokens", counts.len()));
    let merges = train(
        counts.iter().map(|(p, &c)| (p.as_bytes(), c)),
        num_merges,
        progress,
        interrupted,
    )?;
    Ok(merge_bytes(&merges))
}

/// The bytes of each merge's two tokens, given merges as id pairs (ids from 256 on are
/// the merges themselves, in order).
pub fn merge_bytes(merges: &[Pair]) -> Vec<MergeBytes> {
    let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    merges
        .iter()
        .map(|&(a, b)| {
            let (a, b) = (vocab[a as usize].clone(), vocab[b as usize].clone());
            vocab.push([&a[..], &b[..]].concat());
            (a, b)
        })
        .collect()
}

/// Token ids of an adjacent pair.
pub type Pair = (u32, u32);

/// Replace every occurrence of `pair` in `ids`, left to right and without overlap, by
/// `new_id`, and return the new length (the merged word is `ids[..new_len]`). Calls
/// `delta(pair, change)` for each change in the word's pair counts: the merged pair goes
/// away, and so do the pairs it formed with its neighbours, which are replaced by pairs
/// with `new_id`. A change may be reported more than once (the caller sums them).
///
/// `[a, b, a, b]` merging `(a, b)` into `N` gives `[N, N]` and the changes
/// `(a,b) -1, (b,a) -1, (N,a) +1, (N,a) -1, (N,N) +1, (a,b) -1`.
pub fn merge_pair(
    ids: &mut [u32],
    pair: Pair,
    new_id: u32,
    mut delta: impl FnMut(Pair, i64),
) -> usize {
    let (a, b) = pair;
    let n = ids.len();
    let (mut read, mut write) = (0, 0);
    while read < n {
        if read + 1 < n && ids[read] == a && ids[read + 1] == b {
            // `write` <= `read`, so ids[..write] is the already-merged prefix.
            if write > 0 {
                let left = ids[write - 1];
                delta((left, a), -1);
                delta((left, new_id), 1);
            }
            delta(pair, -1);
            if read + 2 < n {
                let right = ids[read + 2];
                delta((b, right), -1);
                delta((new_id, right), 1);
            }
            ids[write] = new_id;
            read += 2;
        } else {
            ids[write] = ids[read];
            read += 1;
        }
        write += 1;
    }
    write
}

/// Every distinct pretoken (a *word*) in one buffer, each as `[len, count (2 words),
/// ids...]`, addressed by its offset. A word is read with one memory access, which
/// matters: merging visits words scattered over the corpus, and with one allocation per
/// word two cache misses per visit dominated the merge loop. Words only shrink, in place.
#[derive(Debug, Default)]
struct Words {
    data: Vec<u32>,
}

const HEADER: usize = 3;

/// Words whose headers are loaded together before they are merged (see [`train`]).
const BATCH: usize = 32;

impl Words {
    /// Add a word of single-byte tokens; returns its offset.
    fn push(&mut self, bytes: &[u8], count: u64) -> Result<u32> {
        let offset = self.data.len();
        let too_big = || Error::OutOfMemory {
            bytes: (offset + HEADER + bytes.len()) * 4,
        };
        let offset = u32::try_from(offset).map_err(|_| too_big())?;
        let len = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        try_reserve(&mut self.data, HEADER + bytes.len())?;
        self.data.extend([len, count as u32, (count >> 32) as u32]);
        self.data.extend(bytes.iter().map(|&b| u32::from(b)));
        Ok(offset)
    }

    fn count(&self, offset: u32) -> u64 {
        let o = offset as usize;
        u64::from(self.data[o + 1]) | (u64::from(self.data[o + 2]) << 32)
    }

    fn ids(&self, offset: u32) -> &[u32] {
        let o = offset as usize;
        &self.data[o + HEADER..o + HEADER + self.data[o] as usize]
    }

    /// [`merge_pair`] on the word at `offset`.
    fn merge_pair(&mut self, offset: u32, pair: Pair, new_id: u32, delta: impl FnMut(Pair, i64)) {
        let o = offset as usize;
        let len = self.data[o] as usize;
        let new_len = merge_pair(
            &mut self.data[o + HEADER..o + HEADER + len],
            pair,
            new_id,
            delta,
        );
        self.data[o] = new_len as u32;
    }
}

/// A heap entry: a pair with its count when it was pushed, and the bytes of its two
/// tokens so that ties compare without a vocabulary lookup.
#[derive(Debug)]
struct Candidate {
    count: u64,
    left: Rc<[u8]>,
    right: Rc<[u8]>,
    pair: Pair,
}

impl Ord for Candidate {
    /// The rule: "the most frequent pair wins; ties go to the lexicographically greater
    /// pair, compared as (bytes, bytes)". BinaryHeap pops the greatest entry.
    fn cmp(&self, other: &Self) -> Ordering {
        self.count
            .cmp(&other.count)
            .then_with(|| (&*self.left, &*self.right).cmp(&(&*other.left, &*other.right)))
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

/// Optional progress lines on stderr: phase, elapsed time, merges done.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    start: Instant,
    enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            start: Instant::now(),
            enabled,
        }
    }

    /// Print `message` with the elapsed time, if enabled.
    pub fn report(&self, message: impl FnOnce() -> String) {
        if self.enabled {
            eprintln!(
                "[train-bpe {:7.2}s] {}",
                self.start.elapsed().as_secs_f64(),
                message()
            );
        }
    }
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

/// Learn up to `num_merges` merges from `(pretoken bytes, count)` pairs. Returns the
/// merges as pairs of token ids: ids 0..=255 are the bytes and merge `i` creates id
/// `256 + i`. Stops early when no pair is left. `interrupted` is polled now and then;
/// when it returns true the run stops with [`Error::Interrupted`].
pub fn train<'a>(
    words: impl IntoIterator<Item = (&'a [u8], u64)>,
    num_merges: usize,
    progress: Progress,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Pair>> {
    let mut arena = Words::default();
    let mut offsets = Vec::new();
    for (bytes, count) in words {
        if bytes.len() >= 2 {
            offsets.push(arena.push(bytes, count)?);
        }
    }
    let mut vocab: Vec<Rc<[u8]>> = (0..=255u8).map(|b| Rc::from(&[b][..])).collect();
    // Ids are u32 (the corpus runs out of pairs long before this bound).
    let num_merges = num_merges.min(u32::MAX as usize - 256);

    // Initial pair counts and the pair -> words index (each word listed once per pair,
    // in increasing offset order, so merges walk the buffer forwards).
    let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut index: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
    for &w in &offsets {
        let count = arena.count(w) as i64;
        for pair in arena.ids(w).windows(2).map(|p| (p[0], p[1])) {
            *pair_counts.entry(pair).or_default() += count;
            let list = index.entry(pair).or_default();
            if list.last() != Some(&w) {
                list.push(w);
            }
        }
    }
    let candidate = |pair: Pair, count: i64, vocab: &[Rc<[u8]>]| Candidate {
        count: count as u64,
        left: Rc::clone(&vocab[pair.0 as usize]),
        right: Rc::clone(&vocab[pair.1 as usize]),
        pair,
    };
    let mut heap: BinaryHeap<Candidate> = pair_counts
        .iter()
        .map(|(&pair, &count)| candidate(pair, count, &vocab))
        .collect();
    progress.report(|| {
        format!(
            "merging: {} distinct pretokens, {} distinct pairs, {num_merges} merges to learn",
            offsets.len(),
            pair_counts.len()
        )
    });

    let mut merges = Vec::with_capacity(num_merges);
    let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
    while merges.len() < num_merges {
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
        let new_id = vocab.len() as u32;
        vocab.push([&*top.left, &*top.right].concat().into());
        merges.push(pair);

        deltas.clear();
        let word_ids = index.remove(&pair).unwrap_or_default();
        for batch in word_ids.chunks(BATCH) {
            // Read the counts of a batch of words first: independent loads, so their cache
            // misses overlap instead of stalling one merge after another.
            let mut counts = [0i64; BATCH];
            for (count, &w) in counts.iter_mut().zip(batch) {
                *count = arena.count(w) as i64;
            }
            for (&w, &count) in batch.iter().zip(&counts) {
                arena.merge_pair(w, pair, new_id, |p, d| {
                    *deltas.entry(p).or_default() += d * count;
                    if d > 0 {
                        let list = index.entry(p).or_default();
                        if list.last() != Some(&w) {
                            list.push(w);
                        }
                    }
                });
            }
        }
        for (&p, &d) in &deltas {
            if d == 0 {
                continue;
            }
            let count = pair_counts.entry(p).or_default();
            *count += d;
            // Only pairs with the new token can gain: they are new, so queue them.
            if d > 0 {
                heap.push(candidate(p, *count, &vocab));
            }
        }
        pair_counts.remove(&pair);

        if merges.len() % 1000 == 0 {
            if interrupted() {
                return Err(Error::Interrupted);
            }
            progress.report(|| format!("merges: {}/{num_merges}", merges.len()));
        }
    }
    progress.report(|| format!("done: {} merges", merges.len()));
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(ids: &[u32], pair: Pair, new_id: u32) -> (Vec<u32>, Vec<(Pair, i64)>) {
        let mut ids = ids.to_vec();
        let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
        let len = merge_pair(&mut ids, pair, new_id, |p, d| {
            *deltas.entry(p).or_default() += d
        });
        ids.truncate(len);
        let mut deltas: Vec<_> = deltas.into_iter().filter(|&(_, d)| d != 0).collect();
        deltas.sort();
        (ids, deltas)
    }

    /// The deltas must equal (pairs after) - (pairs before), as multisets.
    fn check_deltas(ids: &[u32], pair: Pair) {
        let (after, deltas) = merge(ids, pair, 99);
        let mut expected: FxHashMap<Pair, i64> = FxHashMap::default();
        for w in ids.windows(2) {
            *expected.entry((w[0], w[1])).or_default() -= 1;
        }
        for w in after.windows(2) {
            *expected.entry((w[0], w[1])).or_default() += 1;
        }
        let mut expected: Vec<_> = expected.into_iter().filter(|&(_, d)| d != 0).collect();
        expected.sort();
        assert_eq!(deltas, expected, "{ids:?} merging {pair:?}");
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
    fn merge_pair_deltas_match_a_recount() {
        // Every word of length <= 6 over a 3-letter alphabet, merging every pair.
        for len in 0..=6u32 {
            for code in 0..3u32.pow(len) {
                let ids: Vec<u32> = (0..len).map(|k| code / 3u32.pow(k) % 3).collect();
                for a in 0..3 {
                    for b in 0..3 {
                        check_deltas(&ids, (a, b));
                    }
                }
            }
        }
    }

    fn names(merges: &[Pair]) -> Vec<String> {
        merge_bytes(merges)
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
        let merges = train(
            words.iter().copied(),
            num_merges,
            Progress::new(false),
            &|| false,
        )
        .unwrap();
        names(&merges)
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
    fn vocab_too_small_is_an_error() {
        assert_eq!(merges_for(300, 2).unwrap(), 42);
        assert!(matches!(
            merges_for(257, 2),
            Err(Error::VocabTooSmall { minimum: 258, .. })
        ));
    }
}
