//! Bindings for pretokenization and the safe-cut rule alone (for tests and benchmarks; the
//! trainer and the encoder use them inside the core).

use pyo3::prelude::*;

use crate::boundary::Boundary;
use crate::pretokenize::{Pretokenizer, SpecialTokens, GPT2_PATTERN};
use crate::Result;

fn pretokenizer(pattern: Option<&str>, scanner: bool) -> Result<Pretokenizer> {
    let pattern = pattern.unwrap_or(GPT2_PATTERN);
    if scanner {
        Pretokenizer::new(pattern)
    } else {
        Pretokenizer::regex_only(pattern)
    }
}

/// The pretokens of `text` under `pattern` (GPT-2's when `None`); `scanner=False` forces
/// fancy-regex even for the GPT-2 pattern. A bad pattern is a `ValueError`.
#[pyfunction]
#[pyo3(signature = (text, pattern=None, *, scanner=true))]
fn pretokenize<'t>(
    py: Python<'_>,
    text: &'t str,
    pattern: Option<&str>,
    scanner: bool,
) -> PyResult<Vec<&'t str>> {
    let pretokens = py.detach(|| -> Result<Vec<&'t str>> {
        let mut out = Vec::new();
        pretokenizer(pattern, scanner)?.for_each(text, |p| {
            out.push(p);
            Ok(())
        })?;
        Ok(out)
    })?;
    Ok(pretokens)
}

/// `len(pretokenize(text, pattern, scanner=scanner))` without building the list, so a
/// benchmark times the pretokenizer alone.
#[pyfunction]
#[pyo3(signature = (text, pattern=None, *, scanner=true))]
fn count_pretokens(
    py: Python<'_>,
    text: &str,
    pattern: Option<&str>,
    scanner: bool,
) -> PyResult<usize> {
    let count = py.detach(|| -> Result<usize> {
        let mut count = 0;
        pretokenizer(pattern, scanner)?.for_each(text, |_| {
            count += 1;
            Ok(())
        })?;
        Ok(count)
    })?;
    Ok(count)
}

/// The character offsets where the trainer and the encoder may cut the complete text
/// `text` (special tokens `special_tokens`, pattern `pattern` or GPT-2's), in increasing
/// order, without 0 and `len(text)`.
#[pyfunction]
#[pyo3(signature = (text, special_tokens=Vec::new(), pattern=None))]
fn safe_cuts(
    py: Python<'_>,
    text: &str,
    special_tokens: Vec<String>,
    pattern: Option<&str>,
) -> PyResult<Vec<usize>> {
    let cuts = py.detach(|| -> Result<Vec<usize>> {
        let specials = SpecialTokens::new(&special_tokens)?;
        let boundary = Boundary::new(&pretokenizer(pattern, true)?, &specials);
        let mut cuts = Vec::new();
        let (mut from, mut chars, mut counted) = (0, 0, 0);
        while let Some(p) = boundary.first_cut(text, from, true) {
            chars += text[counted..p].chars().count();
            counted = p;
            cuts.push(chars);
            from = p + 1;
        }
        Ok(cuts)
    })?;
    Ok(cuts)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(safe_cuts, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    m.add_function(wrap_pyfunction!(count_pretokens, m)?)?;
    Ok(())
}
