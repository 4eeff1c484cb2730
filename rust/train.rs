//! The incremental BPE trainer.
//!
//! Input: each distinct pretoken with its count (from [`crate::corpus`]). Each pretoken
//! becomes a [`Word`] of token ids (initially its bytes). The trainer keeps
//! - the count of every adjacent pair, weighted by word counts,
//! - an index pair -> the words that contain (or once contained) it,
//! - a max-heap of [`Candidate`]s ordered by (count, (left bytes, right bytes)).
//!
//! Each step pops the best pair; a stale heap entry (its count has dropped since it was
//! pushed) is pushed back with the current count. Merging a pair only visits the words in
//! its index entry, and [`Word::merge_pair`] reports how the counts of the neighbouring
//! pairs change, so no step rescans the corpus.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::corpus::{Chunking, Counts, PretokenCounter};
use crate::error::{Error, Result};
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

/// One distinct pretoken as a sequence of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    ids: Vec<u32>,
}

impl Word {
    /// The word made of the single-byte tokens of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Word {
            ids: bytes.iter().map(|&b| u32::from(b)).collect(),
        }
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adjacent pairs, left to right (a pair occurring twice is yielded twice).
    pub fn pairs(&self) -> impl Iterator<Item = Pair> + '_ {
        self.ids.windows(2).map(|w| (w[0], w[1]))
    }

    /// Replace every occurrence of `pair`, left to right and without overlap, by `new_id`,
    /// calling `delta(pair, change)` for each change in this word's pair counts: the merged
    /// pair goes away, and so do the pairs it formed with its neighbours, which are
    /// replaced by pairs with `new_id`. A change may be reported more than once (the
    /// caller sums them). Returns whether the word contained `pair`.
    ///
    /// `[a, b, a, b]` merging `(a, b)` into `N` gives `[N, N]` and the changes
    /// `(a,b) -1, (b,a) -1, (N,a) +1, (N,a) -1, (N,N) +1, (a,b) -1`.
    pub fn merge_pair(
        &mut self,
        pair: Pair,
        new_id: u32,
        mut delta: impl FnMut(Pair, i64),
    ) -> bool {
        let (a, b) = pair;
        let ids = &mut self.ids;
        let n = ids.len();
        let (mut read, mut write) = (0, 0);
        let mut merged = false;
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
                merged = true;
            } else {
                ids[write] = ids[read];
                read += 1;
            }
            write += 1;
        }
        ids.truncate(write);
        merged
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
    let (mut words, counts): (Vec<Word>, Vec<u64>) = words
        .into_iter()
        .filter(|(bytes, _)| bytes.len() >= 2)
        .map(|(bytes, count)| (Word::from_bytes(bytes), count))
        .unzip();
    let mut vocab: Vec<Rc<[u8]>> = (0..=255u8).map(|b| Rc::from(&[b][..])).collect();

    // Initial pair counts and the pair -> words index (each word listed once per pair).
    let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut index: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
    for (i, word) in words.iter().enumerate() {
        for pair in word.pairs() {
            *pair_counts.entry(pair).or_default() += counts[i] as i64;
            let list = index.entry(pair).or_default();
            if list.last() != Some(&(i as u32)) {
                list.push(i as u32);
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
            words.len(),
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
        for &w in &word_ids {
            let count = counts[w as usize] as i64;
            let word = &mut words[w as usize];
            word.merge_pair(pair, new_id, |p, d| {
                *deltas.entry(p).or_default() += d * count;
                if d > 0 {
                    let list = index.entry(p).or_default();
                    if list.last() != Some(&w) {
                        list.push(w);
                    }
                }
            });
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
        let mut word = Word { ids: ids.to_vec() };
        let mut deltas: FxHashMap<Pair, i64> = FxHashMap::default();
        word.merge_pair(pair, new_id, |p, d| *deltas.entry(p).or_default() += d);
        let mut deltas: Vec<_> = deltas.into_iter().filter(|&(_, d)| d != 0).collect();
        deltas.sort();
        (word.ids, deltas)
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
