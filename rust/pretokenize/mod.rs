//! Pretokenization: split text on special tokens ([`special`]), then into pretokens with
//! the GPT-2 pattern (by the hand-written [`scanner`]) or a custom pattern (by fancy-regex).

use fancy_regex::Regex;

use crate::error::{Error, Result};

pub mod scanner;
pub mod special;

pub use scanner::gpt2_pretokens;
pub use special::{Segment, SpecialTokens};

/// GPT-2's pretokenization pattern, as in the CS336 handout and tiktoken's `gpt2`.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Splits text into pretokens.
#[derive(Debug, Clone)]
pub struct Pretokenizer {
    pattern: String,
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    /// The hand-written GPT-2 scanner ([`gpt2_pretokens`]).
    Gpt2Scanner,
    Regex(Box<Regex>),
}

impl Pretokenizer {
    /// Compile `pattern`; an invalid pattern is [`Error::BadPattern`]. [`GPT2_PATTERN`]
    /// gets the hand-written scanner, which gives the same pretokens several times faster.
    pub fn new(pattern: &str) -> Result<Self> {
        if pattern == GPT2_PATTERN {
            Ok(Self::gpt2())
        } else {
            Self::regex_only(pattern)
        }
    }

    /// Like [`Pretokenizer::new`], but always matching with fancy-regex (the reference the
    /// scanner is tested and benchmarked against).
    pub fn regex_only(pattern: &str) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|e| Error::BadPattern {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Pretokenizer {
            pattern: pattern.to_owned(),
            engine: Engine::Regex(Box::new(regex)),
        })
    }

    /// The GPT-2 pretokenizer (the hand-written scanner).
    pub fn gpt2() -> Self {
        // Build the Unicode class table (once per process, ~5 ms) here rather than in the
        // first call to `for_each`.
        scanner::class_table();
        Pretokenizer {
            pattern: GPT2_PATTERN.to_owned(),
            engine: Engine::Gpt2Scanner,
        }
    }

    /// The pattern this pretokenizer matches.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether this pretokenizer runs the hand-written GPT-2 scanner (not fancy-regex).
    pub fn uses_scanner(&self) -> bool {
        matches!(self.engine, Engine::Gpt2Scanner)
    }

    /// Call `f` on each pretoken of `text`, in order. The pretokens are the pattern's
    /// successive non-overlapping matches (text between matches is dropped, as in
    /// `re.findall`). The first error of `f` stops it.
    pub fn for_each<'t>(
        &self,
        text: &'t str,
        mut f: impl FnMut(&'t str) -> Result<()>,
    ) -> Result<()> {
        match &self.engine {
            Engine::Gpt2Scanner => gpt2_pretokens(text).try_for_each(f),
            Engine::Regex(regex) => {
                for m in regex.find_iter(text) {
                    let m = m.map_err(|e| Error::BadPattern {
                        pattern: self.pattern.clone(),
                        message: e.to_string(),
                    })?;
                    f(m.as_str())?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretokenizer_picks_the_scanner_for_the_gpt2_pattern_only() {
        assert!(Pretokenizer::new(GPT2_PATTERN).unwrap().uses_scanner());
        assert!(Pretokenizer::gpt2().uses_scanner());
        assert!(!Pretokenizer::regex_only(GPT2_PATTERN)
            .unwrap()
            .uses_scanner());
        let words = Pretokenizer::new(r"\w+").unwrap();
        assert!(!words.uses_scanner());
        let mut out = Vec::new();
        words
            .for_each("ab, cd", |p| {
                out.push(p);
                Ok(())
            })
            .unwrap();
        assert_eq!(out, ["ab", "cd"]);
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(matches!(
            Pretokenizer::new("(unclosed"),
            Err(Error::BadPattern { .. })
        ));
    }
}
