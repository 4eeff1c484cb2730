//! Counting pretokens in parallel.
//!
//! A file is read in blocks (never whole), each block is cut into chunks at *safe*
//! boundaries, and the chunks are pretokenized and counted on a rayon pool. Each worker
//! thread counts into its own map of distinct pretokens, so memory grows with the number
//! of distinct pretokens, not with the corpus.
//!
//! A safe boundary is a position where cutting the text changes neither the special-token
//! split nor the pretokens:
//! - the end of a special token (special tokens are document boundaries), or
//! - with the GPT-2 pattern only: a space preceded by a printable ASCII character. The
//!   pretoken that holds that character cannot extend over a space (no alternative of the
//!   pattern matches a non-space followed by whitespace) and none of its alternatives
//!   looks behind, so the text on either side pretokenizes the same alone.
//!
//! With a custom pattern and no special tokens there is no safe boundary: each file (or
//! text) is then one chunk, held in memory at once.
//!
//! Invalid UTF-8 is an error ([`Error::InvalidUtf8`]) that names the byte offset of the
//! first bad byte in the file.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{try_reserve, Error, Result};
use crate::pretokenize::{Pretokenizer, Segment, SpecialTokens, GPT2_PATTERN};
use crate::train::Progress;

/// Counts of distinct pretokens.
pub type Counts = FxHashMap<Box<str>, u64>;

/// Sizes that decide how input is cut; the defaults suit real corpora, tests use tiny ones
/// to exercise the boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// Aim for chunks of about this many bytes (one rayon task each).
    pub chunk_size: usize,
    /// Read files this many bytes at a time (grown when a block has no safe boundary).
    pub block_size: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            chunk_size: 1 << 20,
            block_size: 8 << 20,
        }
    }
}

/// Byte offsets at which `text` can be cut, in increasing order, about `step` bytes apart
/// (see the module docs). If `at_end` is false, `text` may continue (the next block of a
/// file), so only boundaries that the rest cannot change are returned; if it is true, the
/// last offset is `text.len()` (for non-empty text).
pub fn cut_points(
    text: &str,
    specials: &SpecialTokens,
    whitespace_cuts: bool,
    at_end: bool,
    step: usize,
) -> Vec<usize> {
    let bytes = text.as_bytes();
    let step = step.max(1);
    let longest_special = specials.tokens().iter().map(String::len).max().unwrap_or(0);
    // A special token starting at or before `limit` is wholly inside `text`, so the split
    // up to there is final: the tokens that `text` cuts off start after it.
    let limit = if at_end {
        text.len()
    } else {
        text.len().saturating_sub(longest_special)
    };
    let mut cuts = Vec::new();
    let mut next = step;
    let mut pos = 0;
    specials.for_each(text, |segment| match segment {
        Segment::Special(i) => {
            let start = pos;
            pos += specials.tokens()[i].len();
            if pos >= next && start <= limit {
                cuts.push(pos);
                next = pos + step;
            }
        }
        Segment::Text(t) => {
            let start = t.as_ptr() as usize - text.as_ptr() as usize;
            pos = start + t.len();
            if !whitespace_cuts {
                return;
            }
            let mut c = next.max(start + 1);
            let end = pos.min(limit.saturating_add(1));
            while c < end {
                if bytes[c] == b' ' && bytes[c - 1].is_ascii_graphic() {
                    cuts.push(c);
                    next = c + step;
                    c = next;
                } else {
                    c += 1;
                }
            }
        }
    });
    if at_end && !text.is_empty() && cuts.last() != Some(&text.len()) {
        cuts.push(text.len());
    }
    cuts
}

/// Counts pretokens of many texts or files on a rayon pool.
#[derive(Debug)]
pub struct PretokenCounter {
    pretokenizer: Pretokenizer,
    specials: SpecialTokens,
    whitespace_cuts: bool,
    chunking: Chunking,
    pool: rayon::ThreadPool,
    /// One map per pool thread (index = rayon thread index), merged by [`Self::finish`].
    maps: Vec<Mutex<Counts>>,
}

impl PretokenCounter {
    /// A counter that splits on `specials`, pretokenizes with `pretokenizer` and runs on
    /// `num_threads` threads (all cores when `None`).
    pub fn new(
        pretokenizer: Pretokenizer,
        specials: SpecialTokens,
        num_threads: Option<usize>,
        chunking: Chunking,
    ) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads.unwrap_or(0))
            .thread_name(|i| format!("cs336-count-{i}"))
            .build()
            .map_err(|e| Error::io("<thread pool>", std::io::Error::other(e)))?;
        let maps = (0..pool.current_num_threads())
            .map(|_| Mutex::default())
            .collect();
        Ok(PretokenCounter {
            whitespace_cuts: pretokenizer.pattern() == GPT2_PATTERN,
            pretokenizer,
            specials,
            chunking,
            pool,
            maps,
        })
    }

    /// Count the pretokens of `chunk` into the calling pool thread's map.
    fn count_chunk(&self, chunk: &str) -> Result<()> {
        let thread = rayon::current_thread_index().unwrap_or(0) % self.maps.len();
        let mut map = self.maps[thread]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut result = Ok(());
        self.specials.for_each(chunk, |segment| {
            if let (Segment::Text(text), Ok(())) = (segment, &result) {
                result = self.pretokenizer.for_each(text, |p| match map.get_mut(p) {
                    Some(count) => *count += 1,
                    None => {
                        map.insert(p.into(), 1);
                    }
                });
            }
        });
        result
    }

    /// Count the chunks between successive `cuts` of `text` in parallel.
    fn count_cuts(&self, text: &str, cuts: &[usize]) -> Result<()> {
        let starts = std::iter::once(0).chain(cuts.iter().copied());
        let chunks: Vec<&str> = starts.zip(cuts).map(|(a, &b)| &text[a..b]).collect();
        self.pool
            .install(|| chunks.par_iter().try_for_each(|c| self.count_chunk(c)))
    }

    /// Count each text on its own: a pretoken never spans two texts.
    pub fn count_texts<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<()> {
        let step = self.chunking.chunk_size;
        let pieces: Vec<(&str, Vec<usize>)> = texts
            .iter()
            .map(|t| {
                let t = t.as_ref();
                (
                    t,
                    cut_points(t, &self.specials, self.whitespace_cuts, true, step),
                )
            })
            .collect();
        self.pool.install(|| {
            pieces.par_iter().try_for_each(|(text, cuts)| {
                let starts = std::iter::once(0).chain(cuts.iter().copied());
                starts
                    .zip(cuts)
                    .try_for_each(|(a, &b)| self.count_chunk(&text[a..b]))
            })
        })
    }

    /// Count the pretokens of the file at `path`, reading it block by block.
    pub fn count_file(
        &self,
        path: &Path,
        progress: Progress,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let io_err = |e| Error::io(path, e);
        let mut file = File::open(path).map_err(io_err)?;
        let total = file.metadata().map_err(io_err)?.len();
        let mut buf: Vec<u8> = Vec::new();
        try_reserve(&mut buf, self.chunking.block_size.max(1))?;
        buf.resize(buf.capacity(), 0);
        let mut filled = 0; // buf[..filled] holds the file from offset `base`
        let mut base: u64 = 0;
        loop {
            let mut eof = false;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            let text = match std::str::from_utf8(&buf[..filled]) {
                Ok(text) => text,
                // The block ends inside a character: keep its first bytes for the next one.
                Err(e) if e.error_len().is_none() && !eof => {
                    std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default()
                }
                Err(e) => {
                    return Err(Error::InvalidUtf8 {
                        path: Some(path.to_owned()),
                        offset: base + e.valid_up_to() as u64,
                    })
                }
            };
            let cuts = cut_points(
                text,
                &self.specials,
                self.whitespace_cuts,
                eof,
                self.chunking.chunk_size,
            );
            let Some(&consumed) = cuts.last() else {
                if eof {
                    return Ok(());
                }
                // No safe boundary in the whole block: read a bigger one.
                let more = buf.len();
                try_reserve(&mut buf, more)?;
                buf.resize(buf.capacity(), 0);
                continue;
            };
            self.count_cuts(text, &cuts)?;
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
            base += consumed as u64;
            progress.report(|| {
                format!(
                    "counting {}: {} / {} MB",
                    path.display(),
                    base >> 20,
                    total >> 20
                )
            });
            if interrupted() {
                return Err(Error::Interrupted);
            }
            if eof && filled == 0 {
                return Ok(());
            }
        }
    }

    /// All the counts, merged.
    pub fn finish(self) -> Counts {
        let mut maps = self.maps.into_iter().map(|m| {
            m.into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        let mut total = maps.next().unwrap_or_default();
        for map in maps {
            for (pretoken, count) in map {
                *total.entry(pretoken).or_default() += count;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials(tokens: &[&str]) -> SpecialTokens {
        SpecialTokens::new(tokens).unwrap()
    }

    fn count(texts: &[&str], specials_: &[&str], pattern: &str, chunk_size: usize) -> Counts {
        let counter = PretokenCounter::new(
            Pretokenizer::new(pattern).unwrap(),
            specials(specials_),
            Some(3),
            Chunking {
                chunk_size,
                block_size: 64,
            },
        )
        .unwrap();
        counter.count_texts(texts).unwrap();
        counter.finish()
    }

    #[test]
    fn cuts_follow_special_tokens() {
        let st = specials(&["<s>", "<s><s>"]);
        let text = "ab<s>cd<s><s>ef";
        assert_eq!(cut_points(text, &st, false, true, 1), [5, 13, 15]);
        // Not at the end: the "<s>" at 7 could be the start of a "<s><s>" beyond the text.
        assert_eq!(cut_points(&text[..10], &st, false, false, 1), [5]);
        assert_eq!(cut_points(&text[..13], &st, false, false, 1), [5, 13]);
        assert_eq!(cut_points("", &st, false, true, 1), Vec::<usize>::new());
    }

    #[test]
    fn whitespace_cuts_only_after_a_printable_character() {
        let st = specials(&[]);
        // Offsets 1 ("a| b") and 8 ("c!| d") are safe; 4 and 5 follow a newline or space.
        assert_eq!(cut_points("a b\n  c! d", &st, true, true, 1), [1, 8, 10]);
        assert_eq!(cut_points("a b\n  c! d", &st, false, true, 1), [10]);
    }

    #[test]
    fn chunking_does_not_change_the_counts() {
        let text = "Hello, world!  It's  a test.\n\n Ünïcödé   words 123 <|eot|>and<|eot|> more  ";
        let one = count(&[text], &["<|eot|>"], GPT2_PATTERN, usize::MAX);
        for step in 1..12 {
            assert_eq!(count(&[text], &["<|eot|>"], GPT2_PATTERN, step), one);
        }
        let custom = count(&[text], &["<|eot|>"], r"\S+", usize::MAX);
        assert_eq!(count(&[text], &["<|eot|>"], r"\S+", 1), custom);
        assert_eq!(custom.get("and"), Some(&1));
        assert!(!custom.contains_key("<|eot|>"));
    }
}
