//! Bindings of the BPE trainer: `train_bpe_files` and `train_bpe_iter`.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::corpus::Chunking;
use crate::train::{train_counts, train_files, MergeBytes, Progress, TrainConfig};

/// Strings pulled from the iterator before they are counted (detached) as one batch.
const BATCH_BYTES: usize = 8 << 20;
const BATCH_ITEMS: usize = 8192;

fn to_python<'py>(
    py: Python<'py>,
    merges: Vec<MergeBytes>,
) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    merges
        .iter()
        .map(|(a, b)| (PyBytes::new(py, a), PyBytes::new(py, b)))
        .collect()
}

/// Poll for Ctrl-C from inside `py.detach` (attaching only for the check).
fn interrupted() -> bool {
    Python::attach(|py| py.check_signals().is_err())
}

#[allow(clippy::too_many_arguments)]
fn config(
    vocab_size: usize,
    special_tokens: Vec<String>,
    pattern: String,
    num_threads: Option<usize>,
    show_progress: bool,
    chunk_size: usize,
    block_size: usize,
) -> TrainConfig {
    TrainConfig {
        vocab_size,
        special_tokens,
        pattern,
        num_threads,
        chunking: Chunking {
            chunk_size,
            block_size,
        },
        show_progress,
    }
}

/// Train on text files; returns the merges as (bytes, bytes) in creation order.
#[pyfunction]
#[pyo3(signature = (paths, vocab_size, special_tokens, pattern, num_threads=None,
                    show_progress=false, chunk_size=1 << 20, block_size=8 << 20))]
#[allow(clippy::too_many_arguments)]
fn train_bpe_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    vocab_size: usize,
    special_tokens: Vec<String>,
    pattern: String,
    num_threads: Option<usize>,
    show_progress: bool,
    chunk_size: usize,
    block_size: usize,
) -> PyResult<Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>> {
    let config = config(
        vocab_size,
        special_tokens,
        pattern,
        num_threads,
        show_progress,
        chunk_size,
        block_size,
    );
    let merges = py.detach(|| train_files(&paths, &config, &interrupted))?;
    Ok(to_python(py, merges))
}

/// Train on the strings of an iterable, each its own document; strings are pulled in
/// batches while attached and counted while detached.
#[pyfunction]
#[pyo3(signature = (texts, vocab_size, special_tokens, pattern, num_threads=None,
                    show_progress=false, chunk_size=1 << 20))]
#[allow(clippy::too_many_arguments)]
fn train_bpe_iter<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    vocab_size: usize,
    special_tokens: Vec<String>,
    pattern: String,
    num_threads: Option<usize>,
    show_progress: bool,
    chunk_size: usize,
) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
    let config = config(
        vocab_size,
        special_tokens,
        pattern,
        num_threads,
        show_progress,
        chunk_size,
        Chunking::default().block_size,
    );
    let progress = Progress::new(show_progress);
    let (counter, num_merges) = config.counter()?;
    let mut iter = texts.try_iter()?;
    let mut seen = 0usize;
    loop {
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0;
        for item in iter.by_ref() {
            let item = item?;
            let text = item.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "train_from_iterator expects str items, got {}",
                    item.get_type()
                        .name()
                        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
                ))
            })?;
            let text = text.to_str()?.to_owned();
            bytes += text.len();
            batch.push(text);
            if bytes >= BATCH_BYTES || batch.len() >= BATCH_ITEMS {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        seen += batch.len();
        py.check_signals()?;
        py.detach(|| counter.count_texts(&batch))?;
        progress.report(|| format!("counted {seen} texts"));
    }
    let merges =
        py.detach(|| train_counts(counter.finish(), num_merges, progress, &interrupted))?;
    Ok(to_python(py, merges))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_bpe_files, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_iter, m)?)?;
    Ok(())
}
