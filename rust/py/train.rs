//! Bindings of the BPE trainer: `train_bpe_files` and `train_bpe_iter`.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::Signals;
use crate::progress::Progress;
use crate::train::{train_counts, train_files, Chunking, TrainConfig, Trained};

/// Strings pulled from the iterator before they are counted (detached) as one batch.
const BATCH_BYTES: usize = 8 << 20;
const BATCH_ITEMS: usize = 8192;

/// The prefix of progress lines.
const LINES: &str = "train-bpe";

/// The merges as `(bytes, bytes)` tuples; each token is one `bytes` object, shared by
/// every merge it is part of.
fn to_python(py: Python<'_>, trained: Trained) -> PyResult<Vec<Bound<'_, PyTuple>>> {
    let mut objects: Vec<Option<Bound<'_, PyBytes>>> = vec![None; trained.tokens.len()];
    let mut token = |id: u32| -> Bound<'_, PyBytes> {
        objects[id as usize]
            .get_or_insert_with(|| PyBytes::new(py, &trained.tokens[id as usize]))
            .clone()
    };
    trained
        .merges
        .iter()
        .map(|&(a, b)| PyTuple::new(py, [token(a), token(b)]))
        .collect()
}

/// The options of a training run, from the dict `cs336.BPETrainer` builds (one key per
/// field; every key given).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Options {
    vocab_size: usize,
    special_tokens: Vec<String>,
    pattern: String,
    num_threads: Option<usize>,
    show_progress: bool,
    chunk_size: usize,
    block_size: usize,
    max_token_length: Option<usize>,
}

impl Options {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            vocab_size: self.vocab_size,
            special_tokens: self.special_tokens.clone(),
            pattern: self.pattern.clone(),
            num_threads: self.num_threads,
            chunking: Chunking {
                chunk_size: self.chunk_size,
                block_size: self.block_size,
            },
            max_token_length: self.max_token_length,
        }
    }
}

/// Train on text files; returns the merges as (bytes, bytes) in creation order.
#[pyfunction]
fn train_bpe_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    options: Options,
) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let config = options.config();
    let signals = Signals::default();
    let trained = py.detach(|| {
        let check = || signals.check();
        let progress = Progress::new(options.show_progress.then_some(LINES), &check);
        train_files(&paths, &config, &progress)
    });
    to_python(py, signals.finish(trained)?)
}

/// Train on the strings of an iterable, each its own document; strings are pulled in
/// batches while attached and counted while detached.
#[pyfunction]
fn train_bpe_iter<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    options: Options,
) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let config = options.config();
    let (counter, num_merges) = config.counter()?;
    let mut iter = texts.try_iter()?;
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
        py.check_signals()?;
        let signals = Signals::default();
        let counted = py.detach(|| {
            let check = || signals.check();
            counter.count_texts(&batch, &Progress::new(None, &check))
        });
        signals.finish(counted)?;
    }
    let signals = Signals::default();
    let trained = py.detach(|| {
        let check = || signals.check();
        let progress = Progress::new(options.show_progress.then_some(LINES), &check);
        train_counts(
            counter.finish(),
            num_merges,
            config.max_token_length,
            config.num_threads,
            &progress,
        )
    });
    to_python(py, signals.finish(trained)?)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_bpe_files, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_iter, m)?)?;
    Ok(())
}
