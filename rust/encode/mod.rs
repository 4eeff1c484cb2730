//! BPE encoding and decoding.
//!
//! [`Encoder::encode`] splits the text on special tokens, pretokenizes each piece of
//! ordinary text with the model's pattern (GPT-2's by default) and applies the merges
//! within each pretoken ([`merge`]): repeatedly the adjacent pair with the lowest merge
//! rank (the earliest-created merge), leftmost occurrence first. Distinct pretokens repeat
//! a lot, so encoding keeps a [`Cache`] of the ids of pretokens already encoded; the
//! caches outlive the calls ([`cache`]).
//!
//! Long inputs are cut into pieces that encode independently, at the safe cuts of
//! [`Boundary`] (the one rule, for every script): that is what makes [`EncodeStream`]
//! (constant memory over an iterator of chunks, [`stream`]) and the parallel
//! [`Encoder::encode_file`] ([`file`]) give exactly the ids of one `encode` call. With a
//! custom pattern the only cuts are right after special tokens, so memory is then
//! proportional to the longest stretch of text between special tokens.
//!
//! Long calls poll a [`Progress`] on the caller's thread (so Ctrl-C works); parallel work
//! runs in rounds between polls.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::boundary::Boundary;
use crate::error::{try_reserve, try_reserve_map, Error, Result};
use crate::pool::{install_polled, Cancel};
use crate::pretokenize::{Pretokenizer, Segment, SpecialTokens};
use crate::progress::Progress;

mod cache;
mod file;
mod merge;
mod stream;

pub use cache::Cache;
use cache::{CachePool, Key, ThreadCaches, CACHE_MAX_PIECE, MULTI};
pub use file::FileStats;
use merge::Scratch;
pub use stream::EncodeStream;

/// `(rank << 32) | new_id` of a merge; `NO_MERGE` for a pair that does not merge.
/// Comparing packed values compares ranks first.
type PackedMerge = u64;
const NO_MERGE: PackedMerge = u64::MAX;

/// Bytes of text encoded between two polls of the caller's check.
const POLL_BYTES: usize = 1 << 20;

/// Bytes of text per thread in each round of [`Encoder::encode_batch`].
const BATCH_ROUND_BYTES: usize = 4 << 20;

/// A byte-level BPE model, immutable after construction and shared across threads.
#[derive(Debug)]
pub struct Encoder {
    /// Token id of each single byte.
    byte_ids: [u32; 256],
    /// `(left_id << 32) | right_id` -> packed `(rank, new_id)`.
    merges: FxHashMap<u64, PackedMerge>,
    /// The merge of each pair of single bytes, at `left << 8 | right` (the first merges
    /// of every pretoken are of byte pairs).
    byte_pairs: Box<[PackedMerge]>,
    /// Bytes of every token, concatenated; token `id` is `bytes[start..end]` with
    /// `(start, end) = spans[id]`. A map, so memory follows the number of tokens, not the
    /// largest id.
    bytes: Vec<u8>,
    spans: FxHashMap<u32, (u64, u64)>,
    max_id: u32,
    specials: SpecialTokens,
    special_ids: Vec<u32>,
    pretokenizer: Pretokenizer,
    boundary: Boundary,
    caches: CachePool,
}

impl Encoder {
    /// Build the model. `vocab` lists `(id, bytes)`; every single byte must be a token.
    /// `merges` are `(left, right)` in creation order; both parts and their concatenation
    /// must be tokens. `special_tokens` are `(text, id)` with `id` in `vocab`; they are never
    /// produced by merges, only by their literal occurrence in the text. `pattern` is the
    /// pretokenization regex ([`crate::pretokenize::GPT2_PATTERN`] gets the fast scanner);
    /// one that does not compile is [`Error::BadPattern`].
    pub fn new(
        vocab: &[(u32, Vec<u8>)],
        merges: &[(Vec<u8>, Vec<u8>)],
        special_tokens: &[(String, u32)],
        pattern: &str,
    ) -> Result<Self> {
        let pretokenizer = Pretokenizer::new(pattern)?;
        let max_id = vocab.iter().map(|&(id, _)| id).max().unwrap_or(0);
        if max_id >= MULTI {
            return Err(Error::BadModel(format!(
                "token id {max_id} is not below 2^31"
            )));
        }
        let is_special = |id: u32| special_tokens.iter().any(|&(_, s)| s == id);
        let (bytes, spans) = token_bytes(vocab)?;
        let ids = token_ids(vocab, is_special)?;
        let byte_ids = byte_ids(&ids)?;
        let merge_map = merge_table(merges, &ids)?;
        let byte_pairs = (0..1usize << 16)
            .map(|i| {
                let pair = pair_key(byte_ids[i >> 8], byte_ids[i & 0xff]);
                merge_map.get(&pair).copied().unwrap_or(NO_MERGE)
            })
            .collect();
        let texts: Vec<&str> = special_tokens.iter().map(|(t, _)| t.as_str()).collect();
        let specials = SpecialTokens::new(&texts)?;
        for (text, id) in special_tokens {
            if !spans.contains_key(id) {
                return Err(Error::BadModel(format!(
                    "special token {text:?} has id {id}, which is not in the vocabulary"
                )));
            }
        }
        Ok(Encoder {
            boundary: Boundary::new(&pretokenizer, &specials),
            max_id,
            byte_ids,
            merges: merge_map,
            byte_pairs,
            bytes,
            spans,
            special_ids: special_tokens.iter().map(|&(_, id)| id).collect(),
            specials,
            pretokenizer,
            caches: CachePool::new(),
        })
    }

    /// The number of tokens (distinct ids).
    pub fn vocab_size(&self) -> usize {
        self.spans.len()
    }

    /// The largest token id.
    pub fn max_token_id(&self) -> u32 {
        self.max_id
    }

    /// The pretokenization pattern.
    pub fn pattern(&self) -> &str {
        self.pretokenizer.pattern()
    }

    // ---- encode

    /// Token ids of `text`; `progress` is polled as the work goes.
    pub fn encode(&self, text: &str, progress: &Progress) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        // About 4 bytes per token in English: usually one allocation.
        try_reserve(&mut out, text.len() / 4)?;
        let mut cache = self.caches.take();
        self.encode_into(text, &mut cache, &mut out, progress)?;
        Ok(out)
    }

    /// Token ids of each text, encoded in parallel on `pool`, in rounds of a few MB per
    /// thread; the calling thread checks `progress` while each round runs.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        pool: &rayon::ThreadPool,
        progress: &Progress,
    ) -> Result<Vec<Vec<u32>>> {
        let threads = pool.current_num_threads();
        let caches = ThreadCaches::new(&self.caches, threads);
        let mut out = Vec::new();
        try_reserve(&mut out, texts.len())?;
        let mut start = 0;
        while start < texts.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < texts.len() && (end == start || bytes < threads * BATCH_ROUND_BYTES) {
                bytes += texts[end].as_ref().len();
                end += 1;
            }
            let round: Vec<Vec<u32>> = install_polled(pool, &mut || progress.check(), |cancel| {
                texts[start..end]
                    .par_iter()
                    .map(|text| self.encode_on_thread(&caches, text.as_ref(), cancel))
                    .collect::<Result<_>>()
            })?;
            out.extend(round);
            progress.check()?;
            start = end;
        }
        Ok(out)
    }

    /// Token ids of `text`, on a pool thread with its cache from `caches`.
    /// A long text polls `cancel` as it goes.
    fn encode_on_thread(
        &self,
        caches: &ThreadCaches<'_>,
        text: &str,
        cancel: &Cancel,
    ) -> Result<Vec<u32>> {
        cancel.check()?;
        let mut cache = caches.get();
        let mut out = Vec::new();
        try_reserve(&mut out, text.len() / 4)?;
        let check = || cancel.check();
        self.encode_into(text, &mut cache, &mut out, &Progress::new(None, &check))?;
        Ok(out)
    }

    /// Append the ids of `text` to `out`, reusing and filling `cache`.
    pub fn encode_into(
        &self,
        text: &str,
        cache: &mut Cache,
        out: &mut Vec<u32>,
        progress: &Progress,
    ) -> Result<()> {
        self.specials.for_each(text, |segment| match segment {
            Segment::Special(i) => push_one(out, self.special_ids[i]),
            Segment::Text(piece) => self.encode_ordinary(piece, cache, out, progress),
        })
    }

    /// Ids of text that holds no special token.
    fn encode_ordinary(
        &self,
        text: &str,
        cache: &mut Cache,
        out: &mut Vec<u32>,
        progress: &Progress,
    ) -> Result<()> {
        let mut scratch = Scratch::default();
        let bytes = text.as_bytes();
        let mut next_poll = POLL_BYTES;
        self.pretokenizer.for_each(text, |pretoken| {
            let start = pretoken.as_ptr() as usize - bytes.as_ptr() as usize;
            if start >= next_poll {
                next_poll = start + POLL_BYTES;
                progress.poll()?;
            }
            let piece = pretoken.as_bytes();
            self.encode_pretoken(bytes, start, piece, cache, &mut scratch, out, progress)
        })
    }

    /// Append the ids of `piece`, the pretoken at byte `start` of `text`.
    #[allow(clippy::too_many_arguments)]
    fn encode_pretoken(
        &self,
        text: &[u8],
        start: usize,
        piece: &[u8],
        cache: &mut Cache,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
        progress: &Progress,
    ) -> Result<()> {
        match piece {
            [b] => push_one(out, self.byte_ids[*b as usize]),
            [a, b] => {
                let m = self.merge_of_bytes(*a, *b);
                let (a, b) = (self.byte_ids[*a as usize], self.byte_ids[*b as usize]);
                match m {
                    NO_MERGE => push(out, &[a, b]),
                    m => push_one(out, m as u32),
                }
            }
            _ if piece.len() > CACHE_MAX_PIECE => {
                self.merge_piece(piece, scratch, progress)?;
                push(out, &scratch.ids)
            }
            _ => {
                let key = Key::new(text, start, piece);
                if cache.extend(key, out)? {
                    return Ok(());
                }
                self.merge_piece(piece, scratch, progress)?;
                push(out, &scratch.ids)?;
                cache.insert(key, &scratch.ids)
            }
        }
    }

    fn merge_of(&self, left: u32, right: u32) -> PackedMerge {
        self.merges
            .get(&pair_key(left, right))
            .copied()
            .unwrap_or(NO_MERGE)
    }

    fn merge_of_bytes(&self, left: u8, right: u8) -> PackedMerge {
        self.byte_pairs[(left as usize) << 8 | right as usize]
    }

    // ---- decode

    /// The bytes of the tokens `ids`, concatenated.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        try_reserve(&mut out, ids.len().saturating_mul(4))?;
        for &id in ids {
            let &(start, end) = self.spans.get(&id).ok_or(Error::UnknownTokenId {
                id,
                vocab_size: self.vocab_size(),
            })?;
            let token = &self.bytes[start as usize..end as usize];
            if out.capacity() - out.len() < token.len() {
                let extra = out.len().max(token.len());
                try_reserve(&mut out, extra)?;
            }
            out.extend_from_slice(token);
        }
        Ok(out)
    }
}

/// Append `id`, growing `out` fallibly.
#[inline]
fn push_one(out: &mut Vec<u32>, id: u32) -> Result<()> {
    if out.len() == out.capacity() {
        try_reserve(out, out.len().max(64))?;
    }
    out.push(id);
    Ok(())
}

/// Append `ids`, growing `out` fallibly.
fn push(out: &mut Vec<u32>, ids: &[u32]) -> Result<()> {
    if out.capacity() - out.len() < ids.len() {
        try_reserve(out, out.len().max(ids.len()).max(64))?;
    }
    out.extend_from_slice(ids);
    Ok(())
}

/// The bytes of every token laid end to end, and each id's span in them.
#[allow(clippy::type_complexity)]
fn token_bytes(vocab: &[(u32, Vec<u8>)]) -> Result<(Vec<u8>, FxHashMap<u32, (u64, u64)>)> {
    let mut spans = FxHashMap::default();
    try_reserve_map(&mut spans, vocab.len())?;
    let mut bytes = Vec::new();
    for (id, token) in vocab {
        let start = bytes.len() as u64;
        if spans
            .insert(*id, (start, start + token.len() as u64))
            .is_some()
        {
            return Err(Error::BadModel(format!("token id {id} is given twice")));
        }
        try_reserve(&mut bytes, token.len())?;
        bytes.extend_from_slice(token);
    }
    Ok((bytes, spans))
}

/// The id that encoding produces for each token's bytes.
fn token_ids(
    vocab: &[(u32, Vec<u8>)],
    is_special: impl Fn(u32) -> bool,
) -> Result<FxHashMap<&[u8], u32>> {
    let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
    try_reserve_map(&mut ids, vocab.len())?;
    for (id, token) in vocab {
        if is_special(*id) {
            continue;
        }
        if token.is_empty() {
            return Err(Error::BadModel(format!("token {id} is empty")));
        }
        // Two ids with the same bytes (a trainer can create a token twice through two
        // different merges): encoding produces the larger id, as the reference does.
        let slot = ids.entry(token).or_insert(*id);
        *slot = (*slot).max(*id);
    }
    // A special token that is also an ordinary token (the same id, e.g. a word made
    // special) can still be produced by merges; otherwise the ordinary token wins.
    for (id, token) in vocab {
        if is_special(*id) && !token.is_empty() {
            ids.entry(token).or_insert(*id);
        }
    }
    Ok(ids)
}

/// The id of each single byte ([`Error::BadModel`] for a byte without one).
fn byte_ids(ids: &FxHashMap<&[u8], u32>) -> Result<[u32; 256]> {
    let mut byte_ids = [0u32; 256];
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        *slot = *ids.get(&[b as u8][..]).ok_or_else(|| {
            Error::BadModel(format!("byte 0x{b:02x} has no token in the vocabulary"))
        })?;
    }
    Ok(byte_ids)
}

/// `(left_id << 32) | right_id` -> packed `(rank, new_id)` for every merge.
fn merge_table(
    merges: &[(Vec<u8>, Vec<u8>)],
    ids: &FxHashMap<&[u8], u32>,
) -> Result<FxHashMap<u64, PackedMerge>> {
    let lookup = |token: &[u8], rank: usize| {
        ids.get(token).copied().ok_or_else(|| {
            Error::BadModel(format!(
                "merge {rank}: {} is not in the vocabulary",
                show_bytes(token)
            ))
        })
    };
    let mut merge_map = FxHashMap::default();
    try_reserve_map(&mut merge_map, merges.len())?;
    for (rank, (left, right)) in merges.iter().enumerate() {
        let pair = pair_key(lookup(left, rank)?, lookup(right, rank)?);
        let new_id = lookup(&[left.as_slice(), right.as_slice()].concat(), rank)?;
        // A repeated pair keeps its first (lowest) rank: the later copy never applies.
        merge_map
            .entry(pair)
            .or_insert(((rank as u64) << 32) | new_id as u64);
    }
    Ok(merge_map)
}

fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

fn show_bytes(token: &[u8]) -> String {
    format!("b{:?}", String::from_utf8_lossy(token))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
