//! Encoding a file into a `.npy` array of token ids, in parallel rounds.

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;

use super::{Encoder, ThreadCaches};
use crate::boundary::pieces;
use crate::error::{Error, Result};
use crate::io::atomic::TempFile;
use crate::io::blocks::BlockReader;
use crate::io::npy::{NpyDtype, NpyWriter};
use crate::pool::install_polled;

/// Bytes of text per parallel job (small, for load balance)...
const PIECE: usize = 1 << 18;
/// ...and jobs per thread per round of reading (large, so rounds are few).
const JOBS_PER_THREAD: usize = 16;

/// What [`Encoder::encode_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub bytes: u64,
    pub tokens: u64,
    pub dtype: NpyDtype,
    /// Rounds of reading and encoding in parallel.
    pub rounds: u64,
}

impl Encoder {
    /// Encode the UTF-8 file `input` into a `.npy` array of token ids at `output`
    /// (`uint16` when every id fits, else `uint32`). The file is read in rounds; each is
    /// cut into pieces at safe cuts ([`crate::boundary`]) that are encoded in parallel on
    /// `pool`. On the calling thread, `report` gets the number of input bytes done after
    /// each round and every few milliseconds while one runs; an error it returns stops the
    /// work.
    /// The array is written to a temporary file next to `output` and renamed at the end,
    /// so `output` never holds a partial result.
    pub fn encode_file(
        &self,
        input: &Path,
        output: &Path,
        pool: &rayon::ThreadPool,
        report: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<FileStats> {
        self.encode_file_in_pieces(input, output, pool, PIECE, report)
    }

    /// [`Self::encode_file`] with pieces of about `piece` bytes (tests use small ones).
    pub(super) fn encode_file_in_pieces(
        &self,
        input: &Path,
        output: &Path,
        pool: &rayon::ThreadPool,
        piece: usize,
        report: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<FileStats> {
        let dtype = if self.max_token_id() <= u16::MAX as u32 {
            NpyDtype::U16
        } else {
            NpyDtype::U32
        };
        let mut reader = BlockReader::open(input)?;
        let tmp = TempFile::new(output)?;
        let file = File::create(tmp.path()).map_err(|e| Error::io(output, e))?;
        let mut npy = NpyWriter::new(file, dtype).map_err(|e| Error::io(output, e))?;
        let threads = pool.current_num_threads().max(1);
        let caches = ThreadCaches::new(&self.caches, threads);
        let round = threads * JOBS_PER_THREAD * piece;
        let (mut want, mut no_cut_before, mut rounds) = (round, 0, 0);
        // The ids of the last round, written while the next one is encoded.
        let mut written: Vec<Vec<u32>> = Vec::new();
        loop {
            reader.fill(want)?;
            let (text, at_end) = (reader.text(), reader.at_end());
            if text.is_empty() {
                break;
            }
            let cuts = self.boundary.cuts(text, piece, at_end, no_cut_before);
            let Some(&consumed) = cuts.last() else {
                // No safe cut in the whole buffer (e.g. one giant word): read more.
                no_cut_before = text.len().saturating_sub(self.boundary.lookahead());
                want = text.len().saturating_mul(2);
                continue;
            };
            let pieces = pieces(text, &cuts);
            // While the pool works, the calling thread keeps reporting (and so checking
            // for Ctrl-C): a round takes seconds on a loaded machine. The ids of the round
            // before are written meanwhile, on the pool too.
            let done = reader.consumed();
            let pending = std::mem::take(&mut written);
            let npy = &mut npy;
            written = install_polled(pool, &mut || report(done), |cancel| {
                let (wrote, ids) = rayon::join(
                    || pending.iter().try_for_each(|chunk| npy.write(chunk)),
                    || {
                        pieces
                            .par_iter()
                            .map(|piece| self.encode_on_thread(&caches, piece, cancel))
                            .collect::<Result<Vec<_>>>()
                    },
                );
                wrote.map_err(|e| Error::io(output, e))?;
                ids
            })?;
            reader.consume(consumed);
            rounds += 1;
            report(reader.consumed())?;
            want = round;
            no_cut_before = 0;
        }
        for chunk in &written {
            npy.write(chunk).map_err(|e| Error::io(output, e))?;
        }
        let tokens = npy.ids_written();
        npy.finish().map_err(|e| Error::io(output, e))?;
        tmp.persist(output)?;
        Ok(FileStats {
            bytes: reader.consumed(),
            tokens,
            dtype,
            rounds,
        })
    }
}
