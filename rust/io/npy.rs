//! A streaming writer of one-dimensional `.npy` arrays of token ids.
//!
//! The length is unknown until the end, so the header is written first with room for any
//! length and rewritten in place by [`NpyWriter::finish`]. Format: the magic `\x93NUMPY`,
//! version 1.0, a little-endian `u16` header length, then a Python dict literal padded
//! with spaces and a newline so the data starts at a multiple of 64 bytes
//! (<https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// Element type of the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    U16,
    U32,
}

impl NpyDtype {
    /// NumPy's name of the type (`"uint16"` / `"uint32"`).
    pub fn name(self) -> &'static str {
        match self {
            NpyDtype::U16 => "uint16",
            NpyDtype::U32 => "uint32",
        }
    }

    fn descr(self) -> &'static str {
        match self {
            NpyDtype::U16 => "<u2",
            NpyDtype::U32 => "<u4",
        }
    }
}

/// Total header size: magic, version, length and the padded dict. 128 bytes hold any
/// `u64` length.
const HEADER_LEN: usize = 128;

/// The `.npy` header of a one-dimensional array of `len` elements.
pub fn header(dtype: NpyDtype, len: u64) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({},), }}",
        dtype.descr(),
        len
    );
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_LEN - 1, b' ');
    out.push(b'\n');
    debug_assert_eq!(out.len(), HEADER_LEN);
    out
}

/// Writes token ids to a `.npy` file as they come.
#[derive(Debug)]
pub struct NpyWriter {
    out: BufWriter<File>,
    dtype: NpyDtype,
    len: u64,
    scratch: Vec<u8>,
}

impl NpyWriter {
    /// Start the array in `file` (written from its current start).
    pub fn new(file: File, dtype: NpyDtype) -> std::io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header(dtype, 0))?;
        Ok(NpyWriter {
            out,
            dtype,
            len: 0,
            scratch: Vec::new(),
        })
    }

    /// Number of ids written so far.
    pub fn ids_written(&self) -> u64 {
        self.len
    }

    /// Append `ids`. With `uint16`, every id must be below 65536 (the caller picks the
    /// type from the vocabulary size).
    pub fn write(&mut self, ids: &[u32]) -> std::io::Result<()> {
        self.scratch.clear();
        match self.dtype {
            NpyDtype::U16 => {
                debug_assert!(ids.iter().all(|&id| id <= u16::MAX as u32));
                self.scratch
                    .extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes()));
            }
            NpyDtype::U32 => self
                .scratch
                .extend(ids.iter().flat_map(|&id| id.to_le_bytes())),
        }
        self.out.write_all(&self.scratch)?;
        self.len += ids.len() as u64;
        Ok(())
    }

    /// Write the final length into the header and flush everything to disk.
    pub fn finish(self) -> std::io::Result<()> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(self.dtype, self.len))?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parsable() {
        for len in [0, 7, u64::MAX] {
            let h = header(NpyDtype::U16, len);
            assert_eq!(h.len(), HEADER_LEN);
            assert_eq!(h.len() % 64, 0);
            let dict = std::str::from_utf8(&h[10..]).unwrap();
            assert!(dict.contains(&format!("'shape': ({len},)")));
            assert!(dict.ends_with('\n'));
        }
    }
}
