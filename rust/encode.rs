//! BPE encoding and decoding.
//!
//! [`Encoder::encode`] splits the text on special tokens, pretokenizes each piece of
//! ordinary text with the GPT-2 pattern and applies the merges within each pretoken:
//! repeatedly the adjacent pair with the lowest merge rank (the earliest-created merge),
//! leftmost occurrence first. Distinct pretokens repeat a lot, so each call keeps a
//! [`Cache`] of the ids of pretokens it has already encoded.
//!
//! Long inputs are cut into pieces that encode independently ([`Encoder::find_cut`]):
//! that is what makes [`EncodeStream`] (constant memory over an iterator of chunks) and
//! the parallel [`Encoder::encode_file`] give exactly the ids of one `encode` call.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

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

/// The cache is cleared when it holds this many pretokens, which bounds its memory.
const CACHE_MAX_ENTRIES: usize = 1 << 18;

/// Bytes of text per parallel job in [`Encoder::encode_file`].
const FILE_BLOCK: usize = 1 << 20;

/// A byte-level BPE model, immutable after construction and shared across threads.
#[derive(Debug)]
pub struct Encoder {
    /// Token id of each single byte.
    byte_ids: [u32; 256],
    /// `(left_id << 32) | right_id` -> packed `(rank, new_id)`.
    merges: FxHashMap<u64, PackedMerge>,
    /// Bytes of every token, concatenated; token `id` is `bytes[spans[id].0..spans[id].1]`.
    bytes: Vec<u8>,
    /// `(start, end)` into `bytes`, or `None` for an id missing from the vocabulary.
    spans: Vec<Option<(usize, usize)>>,
    specials: SpecialTokens,
    special_ids: Vec<u32>,
    /// Length in bytes of the longest special token (0 when there is none).
    max_special_len: usize,
    pretokenizer: Pretokenizer,
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
    /// produced by merges, only by their literal occurrence in the text.
    pub fn new(
        vocab: &[(u32, Vec<u8>)],
        merges: &[(Vec<u8>, Vec<u8>)],
        special_tokens: &[(String, u32)],
    ) -> Result<Self> {
        let size = vocab
            .iter()
            .map(|&(id, _)| id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut spans = vec![None; size];
        let mut bytes = Vec::new();
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        let is_special = |id: u32| special_tokens.iter().any(|&(_, s)| s == id);
        for (id, token) in vocab {
            if spans[*id as usize].is_some() {
                return Err(Error::BadModel(format!("token id {id} is given twice")));
            }
            spans[*id as usize] = Some((bytes.len(), bytes.len() + token.len()));
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
            bytes,
            spans,
            special_ids: special_tokens.iter().map(|&(_, id)| id).collect(),
            max_special_len: texts.iter().map(|t| t.len()).max().unwrap_or(0),
            specials,
            pretokenizer: Pretokenizer::gpt2(),
        })
    }

    /// One more than the largest token id.
    pub fn vocab_size(&self) -> usize {
        self.spans.len()
    }

    // ---- encode

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.encode_into(text, &mut Cache::default(), &mut out)?;
        Ok(out)
    }

    /// Token ids of each text, encoded in parallel on the current rayon pool.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map_init(Cache::default, |cache, text| {
                let mut out = Vec::new();
                self.encode_into(text.as_ref(), cache, &mut out)?;
                Ok(out)
            })
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
                Segment::Special(i) => push(out, &[self.special_ids[i]]),
                Segment::Text(piece) => self.encode_ordinary(piece, cache, out),
            };
        });
        result
    }

    /// Ids of text that holds no special token.
    fn encode_ordinary(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) -> Result<()> {
        let mut result = Ok(());
        let mut scratch = Scratch::default();
        self.pretokenizer.for_each(text, |pretoken| {
            if result.is_ok() {
                result = self.encode_pretoken(pretoken.as_bytes(), cache, &mut scratch, out);
            }
        })?;
        result
    }

    fn encode_pretoken(
        &self,
        piece: &[u8],
        cache: &mut Cache,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        match piece {
            [b] => push(out, &[self.byte_ids[*b as usize]]),
            [a, b] => {
                let (a, b) = (self.byte_ids[*a as usize], self.byte_ids[*b as usize]);
                match self.merge_of(a, b) {
                    NO_MERGE => push(out, &[a, b]),
                    m => push(out, &[m as u32]),
                }
            }
            _ => {
                if let Some(ids) = cache.get(piece) {
                    return push(out, ids);
                }
                self.merge_piece(piece, scratch);
                push(out, &scratch.ids)?;
                cache.insert(piece, &scratch.ids)
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
        scratch.ids.clear();
        scratch
            .ids
            .extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        if piece.len() <= SHORT_PIECE {
            self.merge_short(scratch);
        } else {
            self.merge_long(scratch);
        }
    }

    /// Merge by scanning the pair ranks for the minimum, once per merge.
    fn merge_short(&self, scratch: &mut Scratch) {
        let Scratch { ids, ranks, .. } = scratch;
        ranks.clear();
        ranks.extend(ids.windows(2).map(|w| self.merge_of(w[0], w[1])));
        loop {
            // The leftmost pair with the lowest rank.
            let Some((i, &best)) = ranks.iter().enumerate().min_by_key(|&(_, r)| *r) else {
                break;
            };
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
            ids, next, heap, ..
        } = scratch;
        let n = ids.len();
        const END: u32 = u32::MAX;
        // `next[i]` is the next live position after i; merged-away positions get `DEAD`.
        const DEAD: u32 = u32::MAX - 1;
        next.clear();
        next.extend((1..=n as u32).map(|j| if j as usize == n { END } else { j }));
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        heap.clear();
        for i in 0..n.saturating_sub(1) {
            let m = self.merge_of(ids[i], ids[i + 1]);
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
    /// A cut is safe when the pretoken that ends at `p` is decided by the text before `p`
    /// alone, the next one starts at `p` (the GPT-2 pattern has no look-behind), and no
    /// special token occurrence straddles `p`. With `c1` the char before `p` and `c2` the
    /// char at `p`, the pretoken ends at `p` when
    /// - both are ASCII, `c1` is neither whitespace nor `'` (which starts contractions),
    ///   and they are of different classes (letter, digit, other, whitespace): letter,
    ///   digit and other runs are greedy and stop exactly there; or
    /// - `c1` is whitespace other than `' '`, and the chars on both sides of it are not
    ///   whitespace: then `c1` is a pretoken of its own, as `\s+(?!\S)` or as `\s+`.
    pub fn find_cut(&self, text: &str, lo: usize, hi: usize) -> Option<usize> {
        let bytes = text.as_bytes();
        let hi = hi.min(
            bytes
                .len()
                .saturating_sub(self.max_special_len.saturating_sub(1)),
        );
        let mut p = hi;
        while p > lo {
            if p < bytes.len() && text.is_char_boundary(p) && self.is_cut(text, p) {
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
                && back.next().is_none_or(|c0| !c0.is_whitespace())
        };
        pretoken_ends && !self.special_straddles(text.as_bytes(), p)
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
        let file = File::create(&tmp.path).map_err(|e| Error::io(&tmp.path, e))?;
        let mut npy = NpyWriter::new(file, dtype).map_err(|e| Error::io(&tmp.path, e))?;
        let block = FILE_BLOCK;
        let base = rayon::current_num_threads().max(1) * 4 * block;
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
                .map_init(Cache::default, |cache, piece| {
                    let mut out = Vec::new();
                    self.encode_into(piece, cache, &mut out)?;
                    Ok(out)
                })
                .collect::<Result<_>>()?;
            for chunk in &ids {
                npy.write(chunk).map_err(|e| Error::io(&tmp.path, e))?;
            }
            done += consumed as u64;
            progress(done)?;
            buf.drain(..consumed);
            want = base;
        }
        let tokens = npy.len();
        npy.finish().map_err(|e| Error::io(&tmp.path, e))?;
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
            let token = &self.bytes[start..end];
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
            self.searched = self
                .buf
                .len()
                .saturating_sub(enc.max_special_len.saturating_sub(1))
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

/// Ids of pretokens already encoded (those of 3 bytes or more).
#[derive(Debug, Default)]
pub struct Cache {
    map: FxHashMap<Box<[u8]>, (u32, u32)>,
    ids: Vec<u32>,
}

impl Cache {
    fn get(&self, piece: &[u8]) -> Option<&[u32]> {
        let &(start, len) = self.map.get(piece)?;
        Some(&self.ids[start as usize..(start + len) as usize])
    }

    fn insert(&mut self, piece: &[u8], ids: &[u32]) -> Result<()> {
        if self.map.len() >= CACHE_MAX_ENTRIES || self.ids.len() + ids.len() > u32::MAX as usize {
            self.map.clear();
            self.ids.clear();
        }
        self.map.try_reserve(1).map_err(|_| Error::OutOfMemory {
            bytes: piece.len() + 8,
        })?;
        let start = self.ids.len() as u32;
        push(&mut self.ids, ids)?;
        self.map.insert(piece.into(), (start, ids.len() as u32));
        Ok(())
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
