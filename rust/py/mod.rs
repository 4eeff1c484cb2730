//! The PyO3 bindings: argument conversion, `py.detach` around the work, and the one
//! place where core errors become Python exceptions. No algorithm lives here.

use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyKeyboardInterrupt, PyMemoryError, PyOSError,
    PyPermissionError, PyUnicodeError, PyValueError,
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
            Error::VocabTooSmall { .. }
            | Error::DuplicateSpecialToken(_)
            | Error::EmptySpecialToken
            | Error::UnknownTokenId { .. }
            | Error::BadPattern { .. }
            | Error::BadModel(_) => PyValueError::new_err(message),
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
