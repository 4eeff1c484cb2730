//! Bindings of the BPE encoder: `Encoder` and `EncodeStream`.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::PyBytes;

use crate::encode;
use crate::error::Error;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Encoder>()?;
    m.add_class::<EncodeStream>()?;
    Ok(())
}

/// The compiled BPE model behind `cs336.Tokenizer` (immutable; safe to share).
#[pyclass(frozen, module = "cs336._core")]
struct Encoder {
    inner: Arc<encode::Encoder>,
}

/// Run `f` on a rayon pool of `num_threads` threads (the global pool when `None`).
fn with_threads<T: Send>(num_threads: Option<usize>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    match num_threads {
        None => Ok(f()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}

#[pymethods]
impl Encoder {
    // ---- construction

    #[new]
    fn new(
        py: Python<'_>,
        vocab: Vec<(u32, PyBackedBytes)>,
        merges: Vec<(PyBackedBytes, PyBackedBytes)>,
        special_tokens: Vec<(String, u32)>,
    ) -> PyResult<Self> {
        let vocab: Vec<(u32, Vec<u8>)> = vocab.into_iter().map(|(i, b)| (i, b.to_vec())).collect();
        let merges: Vec<(Vec<u8>, Vec<u8>)> = merges
            .into_iter()
            .map(|(a, b)| (a.to_vec(), b.to_vec()))
            .collect();
        let inner = py.detach(|| encode::Encoder::new(&vocab, &merges, &special_tokens))?;
        Ok(Encoder {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    // ---- encode

    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        Ok(py.detach(|| self.inner.encode(text))?)
    }

    #[pyo3(signature = (texts, num_threads=None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        num_threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u32>>> {
        Ok(py.detach(|| with_threads(num_threads, || self.inner.encode_batch(&texts)))??)
    }

    fn stream(&self) -> EncodeStream {
        EncodeStream {
            encoder: Arc::clone(&self.inner),
            state: Mutex::new(encode::EncodeStream::default()),
        }
    }

    /// Returns `(bytes read, tokens written, dtype name)`.
    #[pyo3(signature = (input, output, num_threads=None, progress=None))]
    fn encode_file(
        &self,
        py: Python<'_>,
        input: PathBuf,
        output: PathBuf,
        num_threads: Option<usize>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(u64, u64, &'static str)> {
        // An exception raised by `progress` (or Ctrl-C) stops the work and is re-raised.
        let mut raised: Option<PyErr> = None;
        let mut report = |done: u64| -> Result<(), Error> {
            Python::attach(|py| {
                let result = py
                    .check_signals()
                    .and_then(|()| match &progress {
                        Some(f) => f.call1(py, (done,)).map(drop),
                        None => Ok(()),
                    });
                result.map_err(|e| {
                    raised = Some(e);
                    Error::Interrupted
                })
            })
        };
        let result = py.detach(|| {
            with_threads(num_threads, || {
                self.inner.encode_file(&input, &output, &mut report)
            })
        })?;
        if let Some(e) = raised {
            return Err(e);
        }
        let stats = result?;
        Ok((stats.bytes, stats.tokens, stats.dtype.name()))
    }

    // ---- decode

    fn decode_bytes<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        Ok(PyBytes::new(py, &bytes))
    }
}

/// Incremental encoding of text that arrives in chunks (see `Tokenizer.encode_iterable`).
#[pyclass(frozen, module = "cs336._core")]
struct EncodeStream {
    encoder: Arc<encode::Encoder>,
    state: Mutex<encode::EncodeStream>,
}

impl EncodeStream {
    fn with_state(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut encode::EncodeStream, &mut Vec<u32>) -> Result<(), Error> + Send,
    ) -> PyResult<Vec<u32>> {
        py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            f(&mut state, &mut out)?;
            Ok(out)
        })
    }
}

#[pymethods]
impl EncodeStream {
    fn feed(&self, py: Python<'_>, chunk: &str) -> PyResult<Vec<u32>> {
        self.with_state(py, |state, out| state.feed(&self.encoder, chunk, out))
    }

    fn finish(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.with_state(py, |state, out| state.finish(&self.encoder, out))
    }
}
