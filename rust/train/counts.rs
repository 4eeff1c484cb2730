//! Counting pretokens in parallel.
//!
//! A file is read in blocks ([`BlockReader`], never whole), each block is cut into chunks
//! at safe cuts ([`Boundary`]: the same rule as the encoder's, for every script), and the
//! chunks are pretokenized and counted on a rayon pool. Each worker thread counts into its
//! own [`Table`] of distinct pretokens, so memory grows with the number of distinct
//! pretokens, not with the corpus; a chunk's pretokens are looked up in batches whose slots
//! are prefetched first. With a custom pattern and no special tokens there is no safe cut:
//! each file (or text) is then one chunk, held in memory at once.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::table::{Counts, Key, Table};
use crate::boundary::{pieces, Boundary};
use crate::error::Result;
use crate::io::blocks::BlockReader;
use crate::pool::{install_polled, pool};
use crate::pretokenize::{Pretokenizer, Segment, SpecialTokens};
use crate::progress::Progress;

/// Pretokens looked up together: their slots are prefetched, then they are counted.
const LOOKUP_BATCH: usize = 16;

/// Sizes that decide how input is cut; the defaults suit real corpora, tests use tiny ones
/// to exercise the boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// Aim for chunks of about this many bytes (one rayon task each).
    pub chunk_size: usize,
    /// Read files this many bytes at a time (grown when a block has no safe cut).
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

/// Counts pretokens of many texts or files on a rayon pool.
#[derive(Debug)]
pub struct PretokenCounter {
    pretokenizer: Pretokenizer,
    specials: SpecialTokens,
    boundary: Boundary,
    chunking: Chunking,
    pool: Arc<rayon::ThreadPool>,
    /// One table per pool thread (index = rayon thread index).
    maps: Vec<Mutex<Table>>,
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
        let pool = pool(num_threads)?;
        let maps = (0..pool.current_num_threads())
            .map(|_| Mutex::default())
            .collect();
        Ok(PretokenCounter {
            boundary: Boundary::new(&pretokenizer, &specials),
            pretokenizer,
            specials,
            chunking,
            pool,
            maps,
        })
    }

    /// Count the pretokens of `chunk` into the calling pool thread's table.
    fn count_chunk(&self, chunk: &str) -> Result<()> {
        let thread = rayon::current_thread_index().unwrap_or(0) % self.maps.len();
        let mut map = self.maps[thread]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let map = &mut *map;
        let bytes = chunk.as_bytes();
        let mut batch: Vec<Key<'_>> = Vec::with_capacity(LOOKUP_BATCH);
        self.specials.for_each(chunk, |segment| {
            let Segment::Text(text) = segment else {
                return Ok(());
            };
            self.pretokenizer.for_each(text, |p| {
                let start = p.as_ptr() as usize - bytes.as_ptr() as usize;
                let key = Key::in_text(bytes, start, p.as_bytes());
                map.prefetch(&key);
                batch.push(key);
                if batch.len() < LOOKUP_BATCH {
                    return Ok(());
                }
                batch.drain(..).try_for_each(|key| map.add(&key, 1))
            })
        })?;
        batch.iter().try_for_each(|key| map.add(key, 1))
    }

    /// Count `chunks` on the pool, checking `progress` on the calling thread meanwhile.
    fn count_chunks(&self, chunks: &[&str], progress: &Progress) -> Result<()> {
        install_polled(&self.pool, &mut || progress.check(), |cancel| {
            chunks.par_iter().try_for_each(|c| {
                cancel.check()?;
                self.count_chunk(c)
            })
        })
    }

    /// Count each text on its own: a pretoken never spans two texts. `progress` is
    /// checked on the calling thread while the pool counts.
    pub fn count_texts<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        progress: &Progress,
    ) -> Result<()> {
        let step = self.chunking.chunk_size;
        let chunks: Vec<&str> = texts
            .iter()
            .flat_map(|t| {
                let t = t.as_ref();
                pieces(t, &self.boundary.cuts(t, step, true, 0))
            })
            .collect();
        self.count_chunks(&chunks, progress)
    }

    /// Count the pretokens of the file at `path`, reading it block by block.
    pub fn count_file(&self, path: &Path, progress: &Progress) -> Result<()> {
        let mut reader = BlockReader::open(path)?;
        let block = self.chunking.block_size.max(1);
        let mut want = block;
        // Positions before this are known not to be cuts (searched in a smaller block).
        let mut no_cut_before = 0;
        loop {
            progress.check()?;
            reader.fill(want)?;
            let (text, at_end) = (reader.text(), reader.at_end());
            if text.is_empty() {
                return Ok(());
            }
            let cuts = self
                .boundary
                .cuts(text, self.chunking.chunk_size, at_end, no_cut_before);
            let Some(&consumed) = cuts.last() else {
                // No safe cut in the whole block: read a bigger one.
                no_cut_before = text.len().saturating_sub(self.boundary.lookahead());
                want = text.len().saturating_mul(2).max(block);
                continue;
            };
            self.count_chunks(&pieces(text, &cuts), progress)?;
            reader.consume(consumed);
            no_cut_before = 0;
            want = block;
            progress.report(|| {
                format!(
                    "counting {}: {} / {} MB",
                    path.display(),
                    reader.consumed() >> 20,
                    reader.file_len() >> 20
                )
            });
        }
    }

    /// All the counts.
    pub fn finish(self) -> Counts {
        Counts::new(
            self.maps
                .into_iter()
                .map(|m| {
                    m.into_inner()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::GPT2_PATTERN;

    fn count(
        texts: &[&str],
        specials: &[&str],
        pattern: &str,
        chunk_size: usize,
    ) -> Vec<(Vec<u8>, u64)> {
        let counter = PretokenCounter::new(
            Pretokenizer::new(pattern).unwrap(),
            SpecialTokens::new(specials).unwrap(),
            Some(3),
            Chunking {
                chunk_size,
                block_size: 64,
            },
        )
        .unwrap();
        counter.count_texts(texts, &Progress::silent()).unwrap();
        counter.finish().sorted()
    }

    #[test]
    fn chunking_does_not_change_the_counts() {
        let text = "Hello, world!  It's  a test.\n\n Ünïcödé 中文，中文。 words 123 <|eot|>and<|eot|> more  ";
        let one = count(&[text], &["<|eot|>"], GPT2_PATTERN, usize::MAX);
        for step in 1..12 {
            assert_eq!(count(&[text], &["<|eot|>"], GPT2_PATTERN, step), one);
        }
        let custom = count(&[text], &["<|eot|>"], r"\S+", usize::MAX);
        assert_eq!(count(&[text], &["<|eot|>"], r"\S+", 1), custom);
        let get = |key: &[u8]| custom.iter().find(|(k, _)| k == key).map(|e| e.1);
        assert_eq!(get(b"and"), Some(1));
        assert_eq!(get(b"<|eot|>"), None);
    }

    #[test]
    fn files_count_like_texts_for_any_block_size() {
        let text =
            "从前有一座山，山上有一座庙。\n\n庙里有一个老和尚！ Жили-были дед да баба. ab  cd\n"
                .repeat(7);
        let path = std::env::temp_dir().join(format!("cs336-counts-{}", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let expected = count(&[&text], &[], GPT2_PATTERN, usize::MAX);
        for (chunk_size, block_size) in [(1, 1), (5, 17), (64, 64), (1 << 20, 8 << 20)] {
            let counter = PretokenCounter::new(
                Pretokenizer::gpt2(),
                SpecialTokens::new::<&str>(&[]).unwrap(),
                Some(2),
                Chunking {
                    chunk_size,
                    block_size,
                },
            )
            .unwrap();
            counter.count_file(&path, &Progress::silent()).unwrap();
            assert_eq!(
                counter.finish().sorted(),
                expected,
                "{chunk_size} {block_size}"
            );
        }
        std::fs::remove_file(path).unwrap();
    }
}
