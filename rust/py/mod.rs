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

/// The caller's check of a long call, run (attached) on the calling thread from inside
/// `py.detach`: `PyErr_CheckSignals`, so Ctrl-C works. The exception that a signal handler
/// (or a progress callback) raises is kept and comes out unchanged: a handler that raises
/// `SystemExit` gives `SystemExit`, not `KeyboardInterrupt`.
#[derive(Default)]
struct Signals {
    raised: Mutex<Option<PyErr>>,
}

impl Signals {
    /// Run pending signal handlers; an exception they raise stops the work.
    fn check(&self) -> Result<(), Error> {
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
