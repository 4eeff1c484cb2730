//! BPE encoding and decoding.
//!
//! [`Encoder::encode`] splits the text on special tokens, pretokenizes each piece of
//! ordinary text with the model's pattern (GPT-2's by default) and applies the merges
//! within each pretoken:
//! repeatedly the adjacent pair with the lowest merge rank (the earliest-created merge),
//! leftmost occurrence first. Distinct pretokens repeat a lot, so encoding keeps a
//! [`Cache`] of the ids of pretokens already encoded. The caches outlive the calls: the
//! encoder holds a small pool of them, and each call (each thread of a parallel call) takes
//! one for its own use and gives it back after, so many small calls stay warm without two
//! threads ever sharing a cache.
//!
//! Long inputs are cut into pieces that encode independently ([`Encoder::find_cut`]):
//! that is what makes [`EncodeStream`] (constant memory over an iterator of chunks) and
//! the parallel [`Encoder::encode_file`] give exactly the ids of one `encode` call. The
//! cut rules inside ordinary text are proven for the GPT-2 pattern only; with a custom
//! pattern the only cuts are right after special tokens, so memory is then proportional to
//! the longest stretch of text between special tokens (the whole text when there are none).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{try_reserve, Error, Result};
use crate::npy::{NpyDtype, NpyWriter};
use crate::pretokenize::{Pretokenizer, Segment, SpecialTokens};

/// `(rank << 32) | new_id` of a merge; `NO_MERGE` for a pair that does not merge.
/// Comparing packed values compares ranks first.
type PackedMerge = u64;
const NO_MERGE: PackedMerge = u64::MAX;

/// Pretokens at most this long are merged by a linear scan per merge (fast for the
/// short pieces of real text); longer ones by a heap, so a long run is not quadratic.
const SHORT_PIECE: usize = 64;

/// A cache is cleared when it holds this many pretokens, which bounds its memory.
const CACHE_MAX_ENTRIES: usize = 1 << 18;

/// The pool keeps at most this many caches more than the machine has cores (more are
/// dropped when given back), which bounds the memory held between calls.
const POOL_EXTRA: usize = 2;

/// Bytes of text per parallel job in [`Encoder::encode_file`] (small, for load balance)...
const FILE_BLOCK: usize = 1 << 18;
/// ...and jobs per thread per round of reading (large, so rounds are few).
const FILE_JOBS_PER_THREAD: usize = 16;

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
    /// Bytes of every token, concatenated; token `id` is `bytes[spans[id].0..spans[id].1]`.
    bytes: Vec<u8>,
    /// `(start, end)` into `bytes`, or `None` for an id missing from the vocabulary.
    spans: Vec<Option<(u64, u64)>>,
    specials: SpecialTokens,
    special_ids: Vec<u32>,
    /// Length in bytes of the longest special token (0 when there is none).
    max_special_len: usize,
    pretokenizer: Pretokenizer,
    caches: CachePool,
}

/// What [`Encoder::encode_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub bytes: u64,
    pub tokens: u64,
    pub dtype: NpyDtype,
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
        let size = vocab
            .iter()
            .map(|&(id, _)| id)
            .max()
            .map_or(0, |id| id as usize + 1);
        if size > MULTI as usize {
            return Err(Error::BadModel(format!(
                "token id {} is not below 2^31",
                size - 1
            )));
        }
        let mut spans = Vec::new();
        try_reserve(&mut spans, size)?;
        spans.resize(size, None);
        let mut bytes = Vec::new();
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        let is_special = |id: u32| special_tokens.iter().any(|&(_, s)| s == id);
        for (id, token) in vocab {
            if spans[*id as usize].is_some() {
                return Err(Error::BadModel(format!("token id {id} is given twice")));
            }
            let start = bytes.len() as u64;
            spans[*id as usize] = Some((start, start + token.len() as u64));
            bytes.extend_from_slice(token);
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
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *ids.get(&[b as u8][..]).ok_or_else(|| {
                Error::BadModel(format!("byte 0x{b:02x} has no token in the vocabulary"))
            })?;
        }
        let lookup = |token: &[u8], rank: usize| {
            ids.get(token).copied().ok_or_else(|| {
                Error::BadModel(format!(
                    "merge {rank}: {} is not in the vocabulary",
                    show_bytes(token)
                ))
            })
        };
        let mut merge_map = FxHashMap::default();
        merge_map.reserve(merges.len());
        for (rank, (left, right)) in merges.iter().enumerate() {
            let pair = pair_key(lookup(left, rank)?, lookup(right, rank)?);
            let new_id = lookup(&[left.as_slice(), right.as_slice()].concat(), rank)?;
            // A repeated pair keeps its first (lowest) rank: the later copy never applies.
            merge_map
                .entry(pair)
                .or_insert(((rank as u64) << 32) | new_id as u64);
        }
        let byte_pairs = (0..1usize << 16)
            .map(|i| {
                let pair = pair_key(byte_ids[i >> 8], byte_ids[i & 0xff]);
                merge_map.get(&pair).copied().unwrap_or(NO_MERGE)
            })
            .collect();
        let texts: Vec<&str> = special_tokens.iter().map(|(t, _)| t.as_str()).collect();
        let specials = SpecialTokens::new(&texts)?;
        for (text, id) in special_tokens {
            if spans.get(*id as usize).copied().flatten().is_none() {
                return Err(Error::BadModel(format!(
                    "special token {text:?} has id {id}, which is not in the vocabulary"
                )));
            }
        }
        Ok(Encoder {
            byte_ids,
            merges: merge_map,
            byte_pairs,
            bytes,
            spans,
            special_ids: special_tokens.iter().map(|&(_, id)| id).collect(),
            max_special_len: texts.iter().map(|t| t.len()).max().unwrap_or(0),
            specials,
            pretokenizer,
            caches: CachePool::new(),
        })
    }

    /// One more than the largest token id.
    pub fn vocab_size(&self) -> usize {
        self.spans.len()
    }

    /// The pretokenization pattern.
    pub fn pattern(&self) -> &str {
        self.pretokenizer.pattern()
    }

    // ---- encode

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        // About 4 bytes per token in English: usually one allocation.
        try_reserve(&mut out, text.len() / 4)?;
        let mut cache = self.caches.take();
        self.encode_into(text, &mut cache, &mut out)?;
        Ok(out)
    }

    /// Token ids of each text, encoded in parallel on the current rayon pool.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let caches = ThreadCaches::new(&self.caches);
        texts
            .par_iter()
            .map(|text| caches.encode(self, text.as_ref()))
            .collect()
    }

    /// Append the ids of `text` to `out`, reusing and filling `cache`.
    pub fn encode_into(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) -> Result<()> {
        let mut result = Ok(());
        self.specials.for_each(text, |segment| {
            if result.is_err() {
                return;
            }
            result = match segment {
                Segment::Special(i) => push_one(out, self.special_ids[i]),
                Segment::Text(piece) => self.encode_ordinary(piece, cache, out),
            };
        });
        result
    }

    /// Ids of text that holds no special token.
    fn encode_ordinary(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) -> Result<()> {
        let mut result = Ok(());
        let mut scratch = Scratch::default();
        let bytes = text.as_bytes();
        self.pretokenizer.for_each(text, |pretoken| {
            if result.is_ok() {
                let start = pretoken.as_ptr() as usize - bytes.as_ptr() as usize;
                result = self.encode_pretoken(
                    bytes,
                    start,
                    pretoken.as_bytes(),
                    cache,
                    &mut scratch,
                    out,
                );
            }
        })?;
        result
    }

    /// Append the ids of `piece`, the pretoken at byte `start` of `text`.
    fn encode_pretoken(
        &self,
        text: &[u8],
        start: usize,
        piece: &[u8],
        cache: &mut Cache,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
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
            _ => {
                let key = Key::new(text, start, piece);
                if cache.extend(key, out)? {
                    return Ok(());
                }
                self.merge_piece(piece, scratch);
                push(out, &scratch.ids)?;
                if cache.len() >= CACHE_MAX_ENTRIES {
                    cache.clear();
                }
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

    /// Merge the bytes of one pretoken into `scratch.ids`.
    fn merge_piece(&self, piece: &[u8], scratch: &mut Scratch) {
        self.start_merging(piece, scratch);
        if piece.len() <= SHORT_PIECE {
            self.merge_short(scratch);
        } else {
            self.merge_long(scratch);
        }
    }

    /// The byte tokens of `piece` in `scratch.ids`, and the merge of each adjacent pair in
    /// `scratch.ranks` (from the dense byte-pair table: no hashing).
    fn start_merging(&self, piece: &[u8], scratch: &mut Scratch) {
        scratch.ids.clear();
        scratch
            .ids
            .extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        scratch.ranks.clear();
        scratch
            .ranks
            .extend(piece.windows(2).map(|w| self.merge_of_bytes(w[0], w[1])));
    }

    fn merge_of_bytes(&self, left: u8, right: u8) -> PackedMerge {
        self.byte_pairs[(left as usize) << 8 | right as usize]
    }

    /// Merge by scanning the pair ranks for the minimum, once per merge.
    fn merge_short(&self, scratch: &mut Scratch) {
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

    /// Merge with a linked list and a heap of candidate pairs: O(n log n) for any length.
    /// Same order as [`Self::merge_short`]: lowest rank first, then leftmost.
    fn merge_long(&self, scratch: &mut Scratch) {
        let Scratch {
            ids,
            ranks,
            next,
            heap,
        } = scratch;
        let n = ids.len();
        const END: u32 = u32::MAX;
        // `next[i]` is the next live position after i; merged-away positions get `DEAD`.
        const DEAD: u32 = u32::MAX - 1;
        next.clear();
        next.extend((1..=n as u32).map(|j| if j as usize == n { END } else { j }));
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        heap.clear();
        for (i, &m) in ranks.iter().enumerate() {
            if m != NO_MERGE {
                heap.push(Reverse((m, i as u32, ids[i + 1])));
            }
        }
        while let Some(Reverse((m, i, right))) = heap.pop() {
            let i = i as usize;
            let j = next[i];
            // Stale when position i was merged away or its pair has changed since.
            if j == DEAD
                || j == END
                || ids[j as usize] != right
                || self.merge_of(ids[i], right) != m
            {
                continue;
            }
            let j = j as usize;
            ids[i] = m as u32;
            next[i] = next[j];
            next[j] = DEAD;
            if next[i] != END {
                let k = next[i] as usize;
                prev[k] = i as u32;
                let mk = self.merge_of(ids[i], ids[k]);
                if mk != NO_MERGE {
                    heap.push(Reverse((mk, i as u32, ids[k])));
                }
            }
            if prev[i] != u32::MAX {
                let h = prev[i] as usize;
                let mh = self.merge_of(ids[h], ids[i]);
                if mh != NO_MERGE {
                    heap.push(Reverse((mh, h as u32, ids[i])));
                }
            }
        }
        let mut w = 0;
        let mut i = 0;
        while i != END as usize {
            ids[w] = ids[i];
            w += 1;
            i = next[i] as usize;
        }
        ids.truncate(w);
    }

    // ---- cutting long text

    /// The last position `p` in `(lo, hi]` where `text` can be cut so that encoding
    /// `text[..p]` and `text[p..]` separately gives the ids of encoding `text`. Positions
    /// need `max_special_len - 1` bytes of text after them to be checked, so `hi` is
    /// clamped to that.
    ///
    /// With the GPT-2 pattern, a cut is safe when the pretoken that ends at `p` is decided
    /// by the text before `p` alone, the next one starts at `p` (the GPT-2 pattern has no
    /// look-behind), and no special token occurrence straddles `p`. With `c1` the char
    /// before `p` and `c2` the char at `p`, the pretoken ends at `p` when
    /// - both are ASCII, `c1` is neither whitespace nor `'` (which starts contractions),
    ///   and they are of different classes (letter, digit, other, whitespace): letter,
    ///   digit and other runs are greedy and stop exactly there; or
    /// - `c1` is whitespace other than `' '`, and the chars on both sides of it are not
    ///   whitespace: then `c1` is a pretoken of its own, as `\s+(?!\S)` or as `\s+`.
    ///
    /// Any other pattern may look arbitrarily far ahead or behind, so the only safe cuts
    /// are right after a special token (see [`Self::is_cut_after_special`]); with no
    /// special tokens there is none.
    pub fn find_cut(&self, text: &str, lo: usize, hi: usize) -> Option<usize> {
        if self.pretokenizer.uses_scanner() {
            self.find_cut_by(text, lo, hi, Self::is_cut)
        } else if self.special_ids.is_empty() {
            None
        } else {
            self.find_cut_by(text, lo, hi, Self::is_cut_after_special)
        }
    }

    /// The last position in `(lo, hi]` (clamped as in [`Self::find_cut`]) where `is_cut`.
    fn find_cut_by(
        &self,
        text: &str,
        lo: usize,
        hi: usize,
        is_cut: impl Fn(&Self, &str, usize) -> bool,
    ) -> Option<usize> {
        let bytes = text.as_bytes();
        let hi = hi.min(
            bytes
                .len()
                .saturating_sub(self.max_special_len.saturating_sub(1)),
        );
        let mut p = hi;
        while p > lo {
            if p < bytes.len() && text.is_char_boundary(p) && is_cut(self, text, p) {
                return Some(p);
            }
            p -= 1;
        }
        None
    }

    fn is_cut(&self, text: &str, p: usize) -> bool {
        let (before, after) = text.split_at(p);
        let mut back = before.chars().rev();
        let (Some(c1), Some(c2)) = (back.next(), after.chars().next()) else {
            return false;
        };
        let pretoken_ends = if c1.is_ascii() && c2.is_ascii() && !c1.is_whitespace() {
            c1 != '\'' && ascii_class(c1) != ascii_class(c2)
        } else {
            c1.is_whitespace()
                && c1 != ' '
                && !c2.is_whitespace()
                && !back.next().is_some_and(char::is_whitespace)
        };
        pretoken_ends && !self.special_straddles(text.as_bytes(), p)
    }

    /// Whether `p` is right after a special token that the segmentation of `text` takes
    /// whole (judged from the bytes up to `max_special_len - 1` past `p`, so text added
    /// later cannot change it), whatever the pattern: an occurrence of a special
    /// token `t` ends at `p`, and no occurrence of any special token straddles `p` or
    /// the start `s` of `t`. Then every occurrence starting before `s` ends by `s`, so the
    /// leftmost-longest search reaches `s` and takes there the longest token that does not
    /// pass `p`, which is `t`; pretokenization starts afresh after a special token, so the
    /// two sides encode independently.
    fn is_cut_after_special(&self, text: &str, p: usize) -> bool {
        let bytes = text.as_bytes();
        self.specials.tokens().iter().any(|t| {
            bytes[..p].ends_with(t.as_bytes())
                && !self.special_straddles(bytes, p - t.len())
                && !self.special_straddles(bytes, p)
        })
    }

    /// Whether an occurrence of a special token starts before `p` and ends after it.
    fn special_straddles(&self, bytes: &[u8], p: usize) -> bool {
        self.specials.tokens().iter().any(|t| {
            let t = t.as_bytes();
            (1..t.len()).any(|k| p >= k && bytes.get(p - k..p - k + t.len()) == Some(t))
        })
    }

    // ---- files

    /// Encode the UTF-8 file `input` into a `.npy` array of token ids at `output`
    /// (`uint16` when every id fits, else `uint32`), reading it in blocks and encoding the
    /// blocks in parallel on the current rayon pool. The array is written to a temporary
    /// file next to `output` and renamed at the end, so `output` never holds a partial
    /// result. `progress` is called with the number of input bytes done so far; an error it
    /// returns stops the work.
    pub fn encode_file(
        &self,
        input: &Path,
        output: &Path,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<FileStats> {
        let dtype = if self.vocab_size() <= 1 << 16 {
            NpyDtype::U16
        } else {
            NpyDtype::U32
        };
        let mut reader = File::open(input).map_err(|e| Error::io(input, e))?;
        let tmp = TempFile::new(output)?;
        let file = File::create(&tmp.path).map_err(|e| Error::io(output, e))?;
        let mut npy = NpyWriter::new(file, dtype).map_err(|e| Error::io(output, e))?;
        let block = FILE_BLOCK;
        let caches = ThreadCaches::new(&self.caches);
        let base = rayon::current_num_threads().max(1) * FILE_JOBS_PER_THREAD * block;
        let mut want = base;
        let mut buf: Vec<u8> = Vec::new();
        let mut done: u64 = 0;
        let mut eof = false;
        loop {
            if !eof && buf.len() < want {
                let have = buf.len();
                try_reserve(&mut buf, want - have)?;
                buf.resize(want, 0);
                let n =
                    read_full(&mut reader, &mut buf[have..]).map_err(|e| Error::io(input, e))?;
                buf.truncate(have + n);
                eof = buf.len() < want;
            }
            if buf.is_empty() {
                break;
            }
            // The valid UTF-8 prefix; an incomplete char at the end waits for more bytes.
            let valid = match std::str::from_utf8(&buf) {
                Ok(_) => buf.len(),
                Err(e) if e.error_len().is_none() && !eof => e.valid_up_to(),
                Err(e) => {
                    return Err(Error::InvalidUtf8 {
                        path: Some(input.to_path_buf()),
                        offset: done + e.valid_up_to() as u64,
                    })
                }
            };
            let text = std::str::from_utf8(&buf[..valid]).expect("validated just above");
            let pieces = self.split_blocks(text, block, eof);
            let consumed: usize = pieces.iter().map(|s| s.len()).sum();
            if consumed == 0 {
                // No safe cut in the whole buffer (e.g. one giant whitespace run): read more.
                want = buf.len() * 2;
                continue;
            }
            let ids: Vec<Vec<u32>> = pieces
                .par_iter()
                .map(|piece| caches.encode(self, piece))
                .collect::<Result<_>>()?;
            for chunk in &ids {
                npy.write(chunk).map_err(|e| Error::io(output, e))?;
            }
            done += consumed as u64;
            progress(done)?;
            buf.drain(..consumed);
            want = base;
        }
        let tokens = npy.len();
        npy.finish().map_err(|e| Error::io(output, e))?;
        tmp.persist(output)?;
        Ok(FileStats {
            bytes: done,
            tokens,
            dtype,
        })
    }

    /// Cut `text` into pieces of about `block` bytes at safe cuts. Unless `last`, the text
    /// after the last safe cut is left out (it waits for more input).
    fn split_blocks<'t>(&self, text: &'t str, block: usize, last: bool) -> Vec<&'t str> {
        let mut pieces = Vec::new();
        let mut start = 0;
        while text.len() - start > block {
            match self.find_cut(text, start, start + block) {
                Some(p) => {
                    pieces.push(&text[start..p]);
                    start = p;
                }
                // No cut in this block: try the next stretch of text.
                None => match self.find_cut(text, start + block, text.len()) {
                    Some(p) => {
                        pieces.push(&text[start..p]);
                        start = p;
                    }
                    None => break,
                },
            }
        }
        if last {
            if start < text.len() {
                pieces.push(&text[start..]);
            }
        } else if let Some(p) = self.find_cut(text, start, text.len()) {
            pieces.push(&text[start..p]);
        }
        pieces
    }

    // ---- decode

    /// The bytes of the tokens `ids`, concatenated.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        try_reserve(&mut out, ids.len() * 4)?;
        for &id in ids {
            let (start, end) =
                self.spans
                    .get(id as usize)
                    .copied()
                    .flatten()
                    .ok_or(Error::UnknownTokenId {
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

/// Encodes text that arrives in chunks, with the ids of one [`Encoder::encode`] call on the
/// concatenation; only the text after the last safe cut is held back.
#[derive(Debug, Default)]
pub struct EncodeStream {
    buf: String,
    /// Positions up to here are known not to be safe cuts.
    searched: usize,
    cache: Cache,
}

impl EncodeStream {
    /// Add `chunk`; append the ids of all text now known to encode independently.
    pub fn feed(&mut self, enc: &Encoder, chunk: &str, out: &mut Vec<u32>) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < chunk.len() {
            self.buf
                .try_reserve(chunk.len())
                .map_err(|_| Error::OutOfMemory { bytes: chunk.len() })?;
        }
        self.buf.push_str(chunk);
        let Some(p) = enc.find_cut(&self.buf, self.searched, self.buf.len()) else {
            // Positions up to here had all the text they need to be judged (a char after
            // them and room for a special token); later ones are judged again next time.
            self.searched = self
                .buf
                .len()
                .saturating_sub(enc.max_special_len.max(1))
                .max(self.searched);
            return Ok(());
        };
        enc.encode_into(&self.buf[..p], &mut self.cache, out)?;
        self.buf.drain(..p);
        self.searched = 0;
        Ok(())
    }

    /// The input has ended: append the ids of the rest.
    pub fn finish(&mut self, enc: &Encoder, out: &mut Vec<u32>) -> Result<()> {
        let rest = std::mem::take(&mut self.buf);
        self.searched = 0;
        enc.encode_into(&rest, &mut self.cache, out)
    }
}

/// Ids of pretokens already encoded (those of 3 bytes or more). Pretokens of at most 15
/// bytes, nearly all of them in real text, are keyed inline by their bytes and length
/// (no pointer to follow, no `memcmp`; up to 7 bytes in a `u64`, so that table stays
/// small and in cache); longer ones by their boxed bytes.
#[derive(Debug, Default)]
pub struct Cache {
    tiny: FxHashMap<u64, CachedIds>,
    short: FxHashMap<u128, CachedIds>,
    long: FxHashMap<Box<[u8]>, CachedIds>,
    /// `(start, len)` in `ids` of the entries that encode to more than one token.
    multi: Vec<(u32, u32)>,
    ids: Vec<u32>,
}

/// A single token id, or `MULTI | i` for `Cache::multi[i]` (ids are below 2^31).
type CachedIds = u32;
const MULTI: u32 = 1 << 31;

/// A cache key: a pretoken's bytes and length packed into an integer when they fit.
#[derive(Debug, Clone, Copy)]
enum Key<'p> {
    Tiny(u64),
    Short(u128),
    Long(&'p [u8]),
}

impl<'p> Key<'p> {
    /// The key of `piece`, which starts at byte `start` of `text`. The bytes are loaded as
    /// one word from `text` when it extends far enough, and masked to the piece.
    fn new(text: &[u8], start: usize, piece: &'p [u8]) -> Self {
        let len = piece.len();
        if len <= 7 {
            let mut buf = [0u8; 8];
            match text.get(start..start + 8) {
                Some(word) => buf.copy_from_slice(word),
                None => buf[..len].copy_from_slice(piece),
            }
            let bytes = u64::from_le_bytes(buf) & ((1u64 << (8 * len)) - 1);
            Key::Tiny(bytes | (len as u64) << 56)
        } else if len <= 15 {
            let mut buf = [0u8; 16];
            match text.get(start..start + 16) {
                Some(word) => buf.copy_from_slice(word),
                None => buf[..len].copy_from_slice(piece),
            }
            let bytes = u128::from_le_bytes(buf) & ((1u128 << (8 * len)) - 1);
            Key::Short(bytes | (len as u128) << 120)
        } else {
            Key::Long(piece)
        }
    }
}

impl Cache {
    fn len(&self) -> usize {
        self.tiny.len() + self.short.len() + self.long.len()
    }

    fn clear(&mut self) {
        self.tiny.clear();
        self.short.clear();
        self.long.clear();
        self.multi.clear();
        self.ids.clear();
    }

    /// Append the cached ids of `key` to `out`; false when it is not cached.
    fn extend(&self, key: Key<'_>, out: &mut Vec<u32>) -> Result<bool> {
        let found = match key {
            Key::Tiny(k) => self.tiny.get(&k),
            Key::Short(k) => self.short.get(&k),
            Key::Long(piece) => self.long.get(piece),
        };
        match found {
            None => Ok(false),
            Some(&v) if v & MULTI == 0 => push_one(out, v).map(|()| true),
            Some(&v) => {
                let (start, len) = self.multi[(v & !MULTI) as usize];
                let ids = &self.ids[start as usize..(start + len) as usize];
                push(out, ids).map(|()| true)
            }
        }
    }

    fn insert(&mut self, key: Key<'_>, ids: &[u32]) -> Result<()> {
        if self.ids.len() + ids.len() > u32::MAX as usize || self.multi.len() >= MULTI as usize {
            self.clear();
        }
        let value = if let [id] = ids {
            *id
        } else {
            let start = self.ids.len() as u32;
            push(&mut self.ids, ids)?;
            try_reserve(&mut self.multi, 1)?;
            self.multi.push((start, ids.len() as u32));
            MULTI | (self.multi.len() - 1) as u32
        };
        let oom = |_| Error::OutOfMemory { bytes: 64 };
        match key {
            Key::Tiny(k) => {
                self.tiny.try_reserve(1).map_err(oom)?;
                self.tiny.insert(k, value);
            }
            Key::Short(k) => {
                self.short.try_reserve(1).map_err(oom)?;
                self.short.insert(k, value);
            }
            Key::Long(piece) => {
                self.long.try_reserve(1).map_err(oom)?;
                self.long.insert(piece.into(), value);
            }
        }
        Ok(())
    }
}

/// The caches an [`Encoder`] keeps between calls, at most the number of cores plus
/// [`POOL_EXTRA`]. Taking and giving back lock the pool briefly, once per call (or per
/// thread of a parallel call), never during encoding.
#[derive(Debug)]
struct CachePool {
    caches: Mutex<Vec<Cache>>,
    max_len: usize,
}

impl CachePool {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CachePool {
            caches: Mutex::new(Vec::new()),
            max_len: cores + POOL_EXTRA,
        }
    }

    /// A cache for the caller's own use, given back when the guard drops: the most
    /// recently given back (the warmest), or a new empty one.
    fn take(&self) -> PooledCache<'_> {
        let cache = self.lock().pop().unwrap_or_default();
        PooledCache { pool: self, cache }
    }

    fn give_back(&self, cache: Cache) {
        let mut caches = self.lock();
        if caches.len() < self.max_len {
            caches.push(cache);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Cache>> {
        // A panic while the lock is held cannot leave the list half-changed.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`Cache`] taken from a [`CachePool`]; goes back to it on drop.
struct PooledCache<'p> {
    pool: &'p CachePool,
    cache: Cache,
}

impl Deref for PooledCache<'_> {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        &self.cache
    }
}

impl DerefMut for PooledCache<'_> {
    fn deref_mut(&mut self) -> &mut Cache {
        &mut self.cache
    }
}

impl Drop for PooledCache<'_> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.cache));
    }
}

/// One pooled [`Cache`] per thread of the current rayon pool, held for a whole parallel
/// call so that each thread keeps its cache across work items.
struct ThreadCaches<'p>(Vec<Mutex<PooledCache<'p>>>);

impl<'p> ThreadCaches<'p> {
    fn new(pool: &'p CachePool) -> Self {
        ThreadCaches(
            (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::new(pool.take()))
                .collect(),
        )
    }

    /// Encode `text` with the calling thread's cache (uncontended: one lock per thread).
    fn encode(&self, encoder: &Encoder, text: &str) -> Result<Vec<u32>> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        let mut cache = self.0[i].lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        try_reserve(&mut out, text.len() / 4)?;
        encoder.encode_into(text, &mut cache, &mut out)?;
        Ok(out)
    }
}

/// Reused buffers of the merge loops.
#[derive(Debug, Default)]
struct Scratch {
    ids: Vec<u32>,
    ranks: Vec<PackedMerge>,
    next: Vec<u32>,
    heap: BinaryHeap<Reverse<(PackedMerge, u32, u32)>>,
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

fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

fn ascii_class(c: char) -> u8 {
    match c {
        _ if c.is_ascii_alphabetic() => 0,
        _ if c.is_ascii_digit() => 1,
        _ if c.is_ascii_whitespace() || c == '\x0b' => 2,
        _ => 3,
    }
}

fn show_bytes(token: &[u8]) -> String {
    format!("b{:?}", String::from_utf8_lossy(token))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A temporary file next to the final path, removed unless [`TempFile::persist`] renames it.
struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    fn new(output: &Path) -> Result<Self> {
        let name = output
            .file_name()
            .ok_or_else(|| Error::io(output, std::io::Error::other("not a file path")))?;
        let dir = output.parent().unwrap_or(Path::new(""));
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        Ok(TempFile {
            path: dir.join(tmp_name),
            done: false,
        })
    }

    fn persist(mut self, output: &Path) -> Result<()> {
        std::fs::rename(&self.path, output).map_err(|e| Error::io(output, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::GPT2_PATTERN;

    /// Bytes, then `merges` (each creating the next id), then `specials`; GPT-2's pattern.
    fn model(merges: &[(&str, &str)], specials: &[&str]) -> Encoder {
        model_with(merges, specials, GPT2_PATTERN)
    }

    fn model_with(merges: &[(&str, &str)], specials: &[&str], pattern: &str) -> Encoder {
        let mut vocab: Vec<(u32, Vec<u8>)> = (0..=255u8).map(|b| (b as u32, vec![b])).collect();
        let merges: Vec<(Vec<u8>, Vec<u8>)> = merges
            .iter()
            .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
            .collect();
        for (a, b) in &merges {
            vocab.push((vocab.len() as u32, [a.as_slice(), b.as_slice()].concat()));
        }
        let specials: Vec<(String, u32)> = specials
            .iter()
            .map(|s| {
                vocab.push((vocab.len() as u32, s.as_bytes().to_vec()));
                (s.to_string(), vocab.len() as u32 - 1)
            })
            .collect();
        Encoder::new(&vocab, &merges, &specials, pattern).unwrap()
    }

    const LETTER_MERGES: [(&str, &str); 6] = [
        ("a", "a"),
        ("b", "a"),
        ("aa", "a"),
        ("aa", "aa"),
        ("a", "b"),
        ("ba", "aa"),
    ];

    fn letters_model() -> Encoder {
        model(
            &[
                ("a", "a"),
                ("b", "a"),
                ("aa", "a"),
                ("aa", "aa"),
                ("a", "b"),
                ("ba", "aa"),
            ],
            &["<s>", "<s><s>"],
        )
    }

    /// A deterministic pseudo-random sequence (xorshift64).
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn heap_and_scan_merge_loops_agree() {
        let enc = letters_model();
        let mut rng = 0x9e3779b97f4a7c15;
        for _ in 0..500 {
            let len = 2 + (xorshift(&mut rng) % 300) as usize;
            let piece: Vec<u8> = (0..len)
                .map(|_| {
                    if xorshift(&mut rng) % 3 == 0 {
                        b'b'
                    } else {
                        b'a'
                    }
                })
                .collect();
            let mut short = Scratch::default();
            enc.start_merging(&piece, &mut short);
            enc.merge_short(&mut short);
            let mut long = Scratch::default();
            enc.start_merging(&piece, &mut long);
            enc.merge_long(&mut long);
            assert_eq!(short.ids, long.ids, "{}", String::from_utf8_lossy(&piece));
        }
    }

    #[test]
    fn pooled_caches_persist_and_stay_per_caller() {
        let enc = letters_model();
        let texts: Vec<String> = (0..64)
            .map(|i| {
                format!(
                    "aab ba{} aaab b<s>{} abab",
                    "a".repeat(i % 7),
                    "b".repeat(i % 5)
                )
            })
            .collect();
        let fresh: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| {
                let mut out = Vec::new();
                enc.encode_into(t, &mut Cache::default(), &mut out).unwrap();
                out
            })
            .collect();
        // One caller: the cache it gave back is warm, and warm results equal cold ones.
        for (text, ids) in texts.iter().zip(&fresh) {
            assert_eq!(&enc.encode(text).unwrap(), ids);
        }
        assert_eq!(enc.caches.lock().len(), 1);
        assert!(enc.caches.lock()[0].len() > 0);
        // Concurrent callers each take their own cache; the pool stays bounded.
        std::thread::scope(|scope| {
            for _ in 0..2 * enc.caches.max_len {
                scope.spawn(|| {
                    for (text, ids) in texts.iter().zip(&fresh).rev() {
                        assert_eq!(&enc.encode(text).unwrap(), ids);
                    }
                });
            }
        });
        assert!((1..=enc.caches.max_len).contains(&enc.caches.lock().len()));
        assert_eq!(enc.encode_batch(&texts).unwrap(), fresh);
    }

    #[test]
    fn merges_apply_by_rank_within_pretokens() {
        let enc = letters_model();
        // "aaaa": (a,a) twice, then (aa,aa) -> one token; " aaa" stays apart (space).
        assert_eq!(enc.encode("aaaa").unwrap(), [259]);
        assert_eq!(enc.encode("aaa aa").unwrap(), [258, 32, 256]);
        assert_eq!(enc.encode("a<s><s>b<s>").unwrap(), [97, 263, 98, 262]);
        assert_eq!(enc.decode_bytes(&[258, 263]).unwrap(), b"aaa<s><s>");
        assert!(matches!(
            enc.decode_bytes(&[264]),
            Err(Error::UnknownTokenId {
                id: 264,
                vocab_size: 264
            })
        ));
    }

    #[test]
    fn every_cut_found_encodes_like_the_whole() {
        let enc = letters_model();
        let texts = [
            "ab aab, 12 ab'll\n\nx\t y  \u{85}z \u{2028} é日本 a<s>b <s><s>\r\n",
            "a1b2!!a  \n a\x0b\x0cb 'ab' ''s",
        ];
        for text in texts {
            let whole = enc.encode(text).unwrap();
            let mut cuts = 0;
            for p in 1..text.len() {
                if text.is_char_boundary(p) && enc.find_cut(text, p - 1, p) == Some(p) {
                    cuts += 1;
                    let mut parts = enc.encode(&text[..p]).unwrap();
                    parts.extend(enc.encode(&text[p..]).unwrap());
                    assert_eq!(parts, whole, "cut at {p} in {text:?}");
                }
            }
            assert!(cuts > 5, "too few cuts in {text:?}");
        }
    }

    #[test]
    fn no_cut_inside_a_special_token_or_a_whitespace_run() {
        let enc = letters_model();
        let text = "ab<s>ab";
        for p in 3..5 {
            assert!(!enc.is_cut(text, p), "cut at {p}");
        }
        assert!(!enc.is_cut("a \n b", 3));
        assert!(!enc.is_cut("a'b", 2));
    }

    #[test]
    fn stream_equals_encode_for_any_chunking() {
        assert_stream_equals_encode(&letters_model(), STREAM_TEXT, "GPT-2 pattern");
    }

    const STREAM_TEXT: &str = "aab ab, <s><s> aaaa\n\n b<s>ab 日本 12 ab";

    /// Feeding `text` in chunks of 1..8 chars gives the ids of one `encode` call.
    fn assert_stream_equals_encode(enc: &Encoder, text: &str, what: &str) {
        let whole = enc.encode(text).unwrap();
        let chars: Vec<char> = text.chars().collect();
        for size in 1..8 {
            let mut stream = EncodeStream::default();
            let mut out = Vec::new();
            for chunk in chars.chunks(size) {
                let chunk: String = chunk.iter().collect();
                stream.feed(enc, &chunk, &mut out).unwrap();
            }
            stream.finish(enc, &mut out).unwrap();
            assert_eq!(out, whole, "chunks of {size} chars, {what}");
        }
    }

    #[test]
    fn bad_models_are_errors() {
        let bytes: Vec<(u32, Vec<u8>)> = (0..=255u8).map(|b| (b as u32, vec![b])).collect();
        let missing_byte = &bytes[1..];
        assert!(
            matches!(Encoder::new(missing_byte, &[], &[], GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("0x00"))
        );
        let merge = [(b"a".to_vec(), b"b".to_vec())];
        assert!(
            matches!(Encoder::new(&bytes, &merge, &[], GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("merge 0"))
        );
        let special = [("<s>".to_string(), 300)];
        assert!(
            matches!(Encoder::new(&bytes, &[], &special, GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("300"))
        );
        let huge = [(1u32 << 31, b"x".to_vec())];
        assert!(matches!(
            Encoder::new(&huge, &[], &[], GPT2_PATTERN),
            Err(Error::BadModel(_))
        ));
        assert!(matches!(
            Encoder::new(&bytes, &[], &[], "(a"),
            Err(Error::BadPattern { .. })
        ));
    }

    /// A pattern with look-around: pretokens can depend on text far away on both sides.
    const LOOKAROUND: &str = r"(?<=a)a+|[ab]+(?=b)|\S+|\s+";

    #[test]
    fn custom_pattern_cuts_only_right_after_special_tokens() {
        let enc = model_with(&LETTER_MERGES, &["<s>", "<s><s>", "s>x"], LOOKAROUND);
        let text = "aab <s>ab<s><s>aaa<s>s>x b<s>x<s>aa ab";
        let whole = enc.encode(text).unwrap();
        let mut cuts = Vec::new();
        for p in 1..text.len() {
            if enc.find_cut(text, p - 1, p) == Some(p) {
                let mut parts = enc.encode(&text[..p]).unwrap();
                parts.extend(enc.encode(&text[p..]).unwrap());
                assert_eq!(parts, whole, "cut at {p} in {text:?}");
                cuts.push(p);
            }
        }
        // After each special token the search takes, but not inside "<s><s>" (taken whole)
        // nor around the overlapping "<s>x" (where "s>x" straddles the end of "<s>").
        assert_eq!(cuts, [7, 15, 21, 24, 33]);
        let plain = model_with(&LETTER_MERGES, &[], LOOKAROUND);
        assert_eq!(plain.find_cut("ab ab", 0, 5), None);
    }

    #[test]
    fn custom_pattern_stream_equals_encode_for_any_chunking() {
        for specials in [&["<s>", "<s><s>"][..], &[]] {
            let enc = model_with(&LETTER_MERGES, specials, LOOKAROUND);
            assert_stream_equals_encode(&enc, STREAM_TEXT, &format!("specials {specials:?}"));
        }
    }

    #[test]
    fn backtrack_limit_is_an_error() {
        let enc = model_with(&[], &[], r"(?:(?=a)a|a)+c");
        let text = "a".repeat(40) + "b";
        assert!(matches!(enc.encode(&text), Err(Error::BadPattern { .. })));
    }
}
