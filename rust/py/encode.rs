//! Bindings of the BPE encoder: `Encoder` and `EncodeStream`.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList};

use crate::encode;
use crate::error::Error;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Encoder>()?;
    m.add_class::<EncodeStream>()?;
    Ok(())
}

/// Python ints `0..n`, made once per model: lists of token ids share them instead of
/// allocating an int object per token (which costs as much as encoding).
fn make_ints(py: Python<'_>, n: usize) -> PyResult<Arc<[Py<PyAny>]>> {
    (0..n as u64)
        .map(|i| Ok(i.into_pyobject(py)?.into_any().unbind()))
        .collect()
}

/// A new list holding `items` (owned references, moved in).
fn new_list<'py>(
    py: Python<'py>,
    items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let len = items.len();
    // SAFETY: `PyList_New` returns a new reference, or NULL with a MemoryError set, which
    // `from_owned_ptr_or_err` returns as the error (PyO3's own list constructors panic
    // there instead). Each slot `i < len` is then set exactly once to an owned reference,
    // which `PyList_SetItem` steals (it cannot fail for an index in range); nothing else
    // sees the list before it is complete.
    unsafe {
        let list = Bound::from_owned_ptr_or_err(py, ffi::PyList_New(len as ffi::Py_ssize_t))?;
        for (i, item) in items.take(len).enumerate() {
            ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(list.cast_into_unchecked())
    }
}

/// The list of `ids`, made of the shared `ints` (every id is below their number: the
/// encoder only produces ids of its vocabulary).
fn ids_to_list<'py>(
    py: Python<'py>,
    ids: &[u32],
    ints: &[Py<PyAny>],
) -> PyResult<Bound<'py, PyList>> {
    new_list(py, ids.iter().map(|&id| ints[id as usize].bind(py).clone()))
}

/// The compiled BPE model behind `cs336.Tokenizer` (immutable; safe to share).
#[pyclass(frozen, module = "cs336._core")]
struct Encoder {
    inner: Arc<encode::Encoder>,
    ints: Arc<[Py<PyAny>]>,
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
        pattern: &str,
    ) -> PyResult<Self> {
        let vocab: Vec<(u32, Vec<u8>)> = vocab.into_iter().map(|(i, b)| (i, b.to_vec())).collect();
        let merges: Vec<(Vec<u8>, Vec<u8>)> = merges
            .into_iter()
            .map(|(a, b)| (a.to_vec(), b.to_vec()))
            .collect();
        let inner =
            py.detach(|| encode::Encoder::new(&vocab, &merges, &special_tokens, pattern))?;
        let ints = make_ints(py, inner.vocab_size())?;
        Ok(Encoder {
            inner: Arc::new(inner),
            ints,
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn pattern(&self) -> &str {
        self.inner.pattern()
    }

    // ---- encode

    fn encode<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| self.inner.encode(text))?;
        ids_to_list(py, &ids, &self.ints)
    }

    #[pyo3(signature = (texts, num_threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let batch =
            py.detach(|| with_threads(num_threads, || self.inner.encode_batch(&texts)))??;
        let lists = batch
            .iter()
            .map(|ids| Ok(ids_to_list(py, ids, &self.ints)?.into_any()))
            .collect::<PyResult<Vec<_>>>()?;
        new_list(py, lists.into_iter())
    }

    fn stream(&self) -> EncodeStream {
        EncodeStream {
            encoder: Arc::clone(&self.inner),
            ints: Arc::clone(&self.ints),
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
                let result = py.check_signals().and_then(|()| match &progress {
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
        PyBytes::new_with(py, bytes.len(), |buf| {
            buf.copy_from_slice(&bytes);
            Ok(())
        })
    }
}

/// Incremental encoding of text that arrives in chunks (see `Tokenizer.encode_iterable`).
#[pyclass(frozen, module = "cs336._core")]
struct EncodeStream {
    encoder: Arc<encode::Encoder>,
    ints: Arc<[Py<PyAny>]>,
    state: Mutex<encode::EncodeStream>,
}

impl EncodeStream {
    fn with_state<'py>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut encode::EncodeStream, &mut Vec<u32>) -> Result<(), Error> + Send,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            f(&mut state, &mut out).map(|()| out)
        })?;
        ids_to_list(py, &ids, &self.ints)
    }
}

#[pymethods]
impl EncodeStream {
    fn feed<'py>(&self, py: Python<'py>, chunk: &str) -> PyResult<Bound<'py, PyList>> {
        self.with_state(py, |state, out| state.feed(&self.encoder, chunk, out))
    }

    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.with_state(py, |state, out| state.finish(&self.encoder, out))
    }
}
