//! The PyO3 bindings: argument conversion, `py.detach` around the work, the one place
//! where core errors become Python exceptions, and the signal check of long calls. No
//! algorithm lives here.

use std::sync::Mutex;

use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyKeyboardInterrupt, PyMemoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyUnicodeError, PyValueError,
};
use pyo3::prelude::*;

use crate::error::Error;
use crate::memory::WithReserve;

mod encode;
mod pretokenize;
mod train;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
                std::io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
                std::io::ErrorKind::OutOfMemory => PyMemoryError::new_err(message),
                _ => PyOSError::new_err(message),
            },
            Error::InvalidUtf8 { .. } => PyUnicodeError::new_err(message),
            Error::OutOfMemory { .. } => PyMemoryError::new_err(message),
            Error::Interrupted => PyKeyboardInterrupt::new_err(message),
            Error::ThreadPool { .. } => PyRuntimeError::new_err(message),
            Error::VocabTooSmall { .. }
            | Error::DuplicateSpecialToken(_)
            | Error::EmptySpecialToken
            | Error::UnknownTokenId { .. }
            | Error::BadPattern { .. }
            | Error::BadModel(_)
            | Error::TooLarge { .. } => PyValueError::new_err(message),
        }
    }
}

/// The extension's allocator: an allocation the system refuses under a memory limit is
/// served once from a reserve and stops the call at its next check (see [`crate::memory`]).
#[global_allocator]
static ALLOCATOR: WithReserve<std::alloc::System> = WithReserve::new(std::alloc::System);

/// The caller's check of a long call, run (attached) on the calling thread from inside
/// `py.detach`: `PyErr_CheckSignals`, so Ctrl-C works. The exception that a signal handler
/// (or a progress callback) raises is kept and comes out unchanged: a handler that raises
/// `SystemExit` gives `SystemExit`, not `KeyboardInterrupt`. It also stops the call with
/// `MemoryError` once the allocator has used its reserve.
struct Signals {
    raised: Mutex<Option<PyErr>>,
}

impl Default for Signals {
    /// The check of a call that begins now: the allocator's reserve is taken (again).
    fn default() -> Self {
        ALLOCATOR.arm();
        Signals {
            raised: Mutex::default(),
        }
    }
}

impl Signals {
    /// Stop when memory ran out; else run pending signal handlers, an exception they raise
    /// stops the work.
    fn check(&self) -> Result<(), Error> {
        if let Some(bytes) = ALLOCATOR.exhausted() {
            return Err(Error::OutOfMemory { bytes });
        }
        self.call(|py| py.check_signals())
    }

    /// Run `f` attached; an exception it raises is kept and stops the work.
    fn call(&self, f: impl FnOnce(Python<'_>) -> PyResult<()>) -> Result<(), Error> {
        Python::attach(f).map_err(|e| {
            *self.raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            Error::Interrupted
        })
    }

    /// The Python result of the work: the kept exception if it stopped the work.
    fn finish<T>(self, result: Result<T, Error>) -> PyResult<T> {
        let raised = self.raised.into_inner().unwrap_or_else(|p| p.into_inner());
        match (result, raised) {
            (Err(Error::Interrupted), Some(e)) => Err(e),
            (result, _) => result.map_err(PyErr::from),
        }
    }
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    pretokenize::register(m)?;
    train::register(m)?;
    encode::register(m)?;
    Ok(())
}
