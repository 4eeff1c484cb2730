//! Output files that appear only when complete: written to a temporary file next to the
//! final path, renamed over it at the end, removed on any error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A temporary file next to the final path, removed unless [`TempFile::persist`] renames
/// it (errors name the final path, never the temporary one).
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    /// A fresh temporary path in the directory of `output` (the file is not created).
    pub fn new(output: &Path) -> Result<Self> {
        let name = output
            .file_name()
            .ok_or_else(|| Error::io(output, std::io::Error::other("not a file path")))?;
        let dir = output.parent().unwrap_or(Path::new(""));
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        Ok(TempFile {
            path: dir.join(tmp_name),
            done: false,
        })
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename the temporary file to `output`.
    pub fn persist(mut self, output: &Path) -> Result<()> {
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

    #[test]
    fn dropped_temp_files_are_removed_and_persisted_ones_renamed() {
        let dir = std::env::temp_dir().join(format!("cs336-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.bin");
        let tmp = TempFile::new(&out).unwrap();
        std::fs::write(tmp.path(), b"x").unwrap();
        let tmp_path = tmp.path().to_owned();
        drop(tmp);
        assert!(!tmp_path.exists() && !out.exists());
        let tmp = TempFile::new(&out).unwrap();
        std::fs::write(tmp.path(), b"y").unwrap();
        tmp.persist(&out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"y");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
