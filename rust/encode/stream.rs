//! Encoding text that arrives in chunks (`Tokenizer.encode_iterable`).

use super::{Cache, Encoder};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Encodes text that arrives in chunks, with the ids of one [`Encoder::encode`] call on the
/// concatenation; only the text after the last safe cut is held back.
#[derive(Debug, Default)]
pub struct EncodeStream {
    pub(super) buf: String,
    /// Positions up to here are known not to be safe cuts.
    searched: usize,
    cache: Cache,
}

impl EncodeStream {
    /// Add `chunk`; append the ids of all text now known to encode independently.
    pub fn feed(
        &mut self,
        enc: &Encoder,
        chunk: &str,
        out: &mut Vec<u32>,
        progress: &Progress,
    ) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < chunk.len() {
            self.buf
                .try_reserve(chunk.len())
                .map_err(|_| Error::OutOfMemory { bytes: chunk.len() })?;
        }
        self.buf.push_str(chunk);
        let Some(p) = enc.boundary.last_cut(&self.buf, self.searched, false) else {
            // Positions up to here had all the text they need to be judged; later ones
            // are judged again next time.
            self.searched = self
                .buf
                .len()
                .saturating_sub(enc.boundary.lookahead())
                .max(self.searched);
            return Ok(());
        };
        enc.encode_into(&self.buf[..p], &mut self.cache, out, progress)?;
        self.buf.drain(..p);
        self.searched = 0;
        Ok(())
    }

    /// The input has ended: append the ids of the rest.
    pub fn finish(&mut self, enc: &Encoder, out: &mut Vec<u32>, progress: &Progress) -> Result<()> {
        let rest = std::mem::take(&mut self.buf);
        self.searched = 0;
        enc.encode_into(&rest, &mut self.cache, out, progress)
    }
}
