//! The one block reader of UTF-8 text files, used by the trainer and by `encode_file`.
//!
//! A [`BlockReader`] holds a window of the file: the text not yet consumed, validated as
//! UTF-8 exactly once (new bytes only), and the first bytes of a character cut by the end
//! of a read, carried over to the next one. Invalid UTF-8 is [`Error::InvalidUtf8`] with
//! the byte offset of the first bad byte from the start of the file.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{try_reserve, Error, Result};

/// Reads a file block by block; see the module docs.
#[derive(Debug)]
pub struct BlockReader {
    file: File,
    path: PathBuf,
    /// `buf[start..valid]` is the unconsumed valid text, `buf[valid..filled]` the first
    /// bytes of a character that the last read cut.
    buf: Vec<u8>,
    start: usize,
    valid: usize,
    filled: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    len: u64,
}

impl BlockReader {
    /// Open `path` (errors name it).
    pub fn open(path: &Path) -> Result<Self> {
        let io_err = |e| Error::io(path, e);
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        Ok(BlockReader {
            file,
            path: path.to_owned(),
            buf: Vec::new(),
            start: 0,
            valid: 0,
            filled: 0,
            base: 0,
            eof: false,
            len,
        })
    }

    /// Size of the file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Bytes consumed so far, from the start of the file.
    pub fn consumed(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Whether the whole file has been read: [`Self::text`] is then all that is left.
    pub fn at_end(&self) -> bool {
        self.eof
    }

    /// The valid text read and not yet consumed.
    pub fn text(&self) -> &str {
        // SAFETY: `buf[..valid]` was checked by `str::from_utf8` when it was read (see
        // `validate`), and `start` is a character boundary: it only moves by the length of
        // a prefix of `text()` that `consume` checks is on a boundary.
        unsafe { std::str::from_utf8_unchecked(&self.buf[self.start..self.valid]) }
    }

    /// Drop the first `n` bytes of [`Self::text`] (a character boundary).
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.text().is_char_boundary(n));
        self.start += n.min(self.valid - self.start);
    }

    /// Read until [`Self::text`] holds at least `want` bytes or the file has ended.
    pub fn fill(&mut self, want: usize) -> Result<()> {
        if self.start > 0 {
            // Move the unconsumed bytes to the front (they are few after a consume).
            self.buf.copy_within(self.start..self.filled, 0);
            self.base += self.start as u64;
            self.valid -= self.start;
            self.filled -= self.start;
            self.start = 0;
        }
        // A small file needs no full block: one byte more than the file sees its end.
        let left_in_file = self.len.saturating_sub(self.base + self.filled as u64);
        let target = want.min(self.filled + usize::try_from(left_in_file).unwrap_or(want) + 1);
        let target = target.max(self.filled + 1);
        while !self.eof && self.valid < want {
            if self.buf.len() < target {
                let more = target - self.buf.len();
                try_reserve(&mut self.buf, more)?;
                self.buf.resize(target.max(self.buf.len()), 0);
            }
            if self.filled == self.buf.len() {
                // Only an incomplete character is missing: room for it.
                try_reserve(&mut self.buf, 4)?;
                self.buf.resize(self.buf.len() + 4, 0);
            }
            match self.file.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
            self.validate()?;
        }
        Ok(())
    }

    /// Extend the valid prefix over the bytes read since the last call.
    fn validate(&mut self) -> Result<()> {
        match std::str::from_utf8(&self.buf[self.valid..self.filled]) {
            Ok(_) => self.valid = self.filled,
            // The read ended inside a character: keep its first bytes for the next one.
            Err(e) if e.error_len().is_none() && !self.eof => self.valid += e.valid_up_to(),
            Err(e) => {
                return Err(Error::InvalidUtf8 {
                    path: Some(self.path.clone()),
                    offset: self.base + (self.valid + e.valid_up_to()) as u64,
                })
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("cs336-blocks-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// All the text of `path`, read `step` bytes at a time and consumed `take` at a time.
    fn read_all(path: &Path, step: usize, take: usize) -> Result<String> {
        let mut reader = BlockReader::open(path)?;
        let mut out = String::new();
        loop {
            reader.fill(step)?;
            let text = reader.text();
            let mut n = take.min(text.len());
            while !text.is_char_boundary(n) {
                n += 1;
            }
            if n == 0 && reader.at_end() {
                return Ok(out);
            }
            out.push_str(&text[..n]);
            reader.consume(n);
            assert_eq!(reader.consumed() as usize, out.len());
        }
    }

    #[test]
    fn any_block_size_reads_the_text_whole() {
        let text = "añb€c😀d".repeat(20);
        let path = temp_file("whole", text.as_bytes());
        for step in 1..12 {
            for take in 1..9 {
                assert_eq!(read_all(&path, step, take).unwrap(), text, "{step} {take}");
            }
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn invalid_utf8_names_its_file_offset() {
        for (bytes, offset) in [
            (&b"abc\xffdef"[..], 3),
            (b"ab\xe2\x82", 2), // truncated at the end of the file
            (b"\xe2\x82\xac\xe2(", 3),
        ] {
            let path = temp_file("bad", bytes);
            for step in 1..6 {
                match read_all(&path, step, 2) {
                    Err(Error::InvalidUtf8 { offset: o, .. }) => assert_eq!(o, offset),
                    other => panic!("{other:?}"),
                }
            }
            std::fs::remove_file(path).unwrap();
        }
    }
}
