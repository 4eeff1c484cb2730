//! Bindings of the BPE encoder: `Encoder` and `EncodeStream`.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList};

use super::Signals;
use crate::encode;
use crate::error::Error;
use crate::pool::pool;
use crate::progress::Progress;

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

/// A new list of `len` items, item `i` being `item(i)` (an owned reference, moved in).
fn new_list<'py>(
    py: Python<'py>,
    len: usize,
    mut item: impl FnMut(usize) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: `PyList_New` returns a new reference, or NULL with a MemoryError set, which
    // `from_owned_ptr_or_err` returns as the error (PyO3's own list constructors panic
    // there instead). Each slot `i < len` is then set exactly once to an owned reference,
    // which `PyList_SetItem` steals (it cannot fail for an index in range). If `item`
    // fails, the list is dropped with its remaining slots NULL, which list deallocation
    // allows; nothing else sees the list before it is complete.
    unsafe {
        let list = Bound::from_owned_ptr_or_err(py, ffi::PyList_New(len as ffi::Py_ssize_t))?;
        for i in 0..len {
            let value = item(i)?;
            ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, value.into_ptr());
        }
        Ok(list.cast_into_unchecked())
    }
}

/// The list of `ids`, made of the shared `ints` where they reach (an id beyond them, in a
/// vocabulary with gaps, gets its own int).
fn ids_to_list<'py>(
    py: Python<'py>,
    ids: &[u32],
    ints: &[Py<PyAny>],
) -> PyResult<Bound<'py, PyList>> {
    new_list(py, ids.len(), |i| match ints.get(ids[i] as usize) {
        Some(int) => Ok(int.bind(py).clone()),
        None => Ok(ids[i].into_pyobject(py)?.into_any()),
    })
}

/// The compiled BPE model behind `cs336.Tokenizer` (immutable; safe to share).
#[pyclass(frozen, module = "cs336._core")]
struct Encoder {
    inner: Arc<encode::Encoder>,
    ints: Arc<[Py<PyAny>]>,
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
        // Shared ints for the ids up to twice the number of tokens: all of a dense
        // vocabulary, and memory that follows the number of tokens for a sparse one.
        let shared = (inner.max_token_id() as usize + 1).min(2 * inner.vocab_size());
        let ints = make_ints(py, shared)?;
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
    fn max_token_id(&self) -> u32 {
        self.inner.max_token_id()
    }

    #[getter]
    fn pattern(&self) -> &str {
        self.inner.pattern()
    }

    // ---- encode

    fn encode<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let signals = Signals::default();
        let ids = py.detach(|| {
            let check = || signals.check();
            self.inner.encode(text, &Progress::new(None, &check))
        });
        ids_to_list(py, &signals.finish(ids)?, &self.ints)
    }

    #[pyo3(signature = (texts, num_threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let pool = pool(num_threads)?;
        let signals = Signals::default();
        let batch = py.detach(|| {
            let check = || signals.check();
            self.inner
                .encode_batch(&texts, &pool, &Progress::new(None, &check))
        });
        let batch = signals.finish(batch)?;
        new_list(py, batch.len(), |i| {
            Ok(ids_to_list(py, &batch[i], &self.ints)?.into_any())
        })
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
        let pool = pool(num_threads)?;
        // Ctrl-C or an exception raised by `progress` stops the work and is re-raised.
        // `report` runs every few milliseconds; `progress` hears only of new progress.
        let signals = Signals::default();
        let mut reported = Some(0);
        let mut report = |done: u64| -> Result<(), Error> {
            signals.call(|py| {
                py.check_signals()?;
                match &progress {
                    Some(f) if reported != Some(done) => {
                        reported = Some(done);
                        f.call1(py, (done,)).map(drop)
                    }
                    _ => Ok(()),
                }
            })
        };
        let stats = py.detach(|| self.inner.encode_file(&input, &output, &pool, &mut report));
        let stats = signals.finish(stats)?;
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
        f: impl FnOnce(&mut encode::EncodeStream, &mut Vec<u32>, &Progress) -> Result<(), Error> + Send,
    ) -> PyResult<Bound<'py, PyList>> {
        let signals = Signals::default();
        let ids = py.detach(|| {
            let check = || signals.check();
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            f(&mut state, &mut out, &Progress::new(None, &check)).map(|()| out)
        });
        ids_to_list(py, &signals.finish(ids)?, &self.ints)
    }
}

#[pymethods]
impl EncodeStream {
    fn feed<'py>(&self, py: Python<'py>, chunk: &str) -> PyResult<Bound<'py, PyList>> {
        self.with_state(py, |state, out, progress| {
            state.feed(&self.encoder, chunk, out, progress)
        })
    }

    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.with_state(py, |state, out, progress| {
            state.finish(&self.encoder, out, progress)
        })
    }
}
