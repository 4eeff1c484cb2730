//! Binding for pretokenization alone (for tests and exploration; the trainer and the
//! encoder pretokenize inside the core).

use pyo3::prelude::*;

use crate::pretokenize::{Pretokenizer, GPT2_PATTERN};

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
    let pattern = pattern.unwrap_or(GPT2_PATTERN);
    let pretokens = py.detach(|| -> crate::Result<Vec<&'t str>> {
        let pretokenizer = if scanner {
            Pretokenizer::new(pattern)?
        } else {
            Pretokenizer::regex_only(pattern)?
        };
        let mut out = Vec::new();
        pretokenizer.for_each(text, |p| out.push(p))?;
        Ok(out)
    })?;
    Ok(pretokens)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    Ok(())
}
