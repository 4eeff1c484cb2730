//! Pretokenization: split text on special tokens, then into pretokens with the GPT-2
//! pattern (or a custom one).

use aho_corasick::{AhoCorasick, MatchKind};
use fancy_regex::Regex;

use crate::error::{Error, Result};

/// GPT-2's pretokenization pattern, as in the CS336 handout and tiktoken's `gpt2`.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Splits text into pretokens.
#[derive(Debug, Clone)]
pub struct Pretokenizer {
    pattern: String,
    regex: Regex,
}

impl Pretokenizer {
    /// Compile `pattern`; an invalid pattern is [`Error::BadPattern`].
    pub fn new(pattern: &str) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|e| Error::BadPattern {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Pretokenizer {
            pattern: pattern.to_owned(),
            regex,
        })
    }

    /// The GPT-2 pretokenizer.
    pub fn gpt2() -> Self {
        Self::new(GPT2_PATTERN).expect("the GPT-2 pattern compiles")
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Call `f` on each pretoken of `text`, in order. The pretokens are the pattern's
    /// successive non-overlapping matches (text between matches is dropped, as in
    /// `re.findall`).
    pub fn for_each<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        for m in self.regex.find_iter(text) {
            let m = m.map_err(|e| Error::BadPattern {
                pattern: self.pattern.clone(),
                message: e.to_string(),
            })?;
            f(m.as_str());
        }
        Ok(())
    }
}

/// A piece of text after splitting on special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'t> {
    /// Ordinary text between special tokens (never empty).
    Text(&'t str),
    /// The special token with this index (in the order the tokens were given).
    Special(usize),
}

/// Finds special tokens in text; when two overlap, the longest one that starts first wins.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    tokens: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl SpecialTokens {
    /// Validate the tokens: none empty ([`Error::EmptySpecialToken`]), none twice
    /// ([`Error::DuplicateSpecialToken`]).
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut owned = Vec::with_capacity(tokens.len());
        for t in tokens {
            let t = t.as_ref();
            if t.is_empty() {
                return Err(Error::EmptySpecialToken);
            }
            if !seen.insert(t) {
                return Err(Error::DuplicateSpecialToken(t.to_owned()));
            }
            owned.push(t.to_owned());
        }
        let matcher = if owned.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&owned)
                    .map_err(|e| Error::BadModel(format!("special tokens: {e}")))?,
            )
        };
        Ok(SpecialTokens {
            tokens: owned,
            matcher,
        })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Call `f` on each segment of `text`, in order.
    pub fn for_each<'t>(&self, text: &'t str, mut f: impl FnMut(Segment<'t>)) {
        let Some(matcher) = &self.matcher else {
            if !text.is_empty() {
                f(Segment::Text(text));
            }
            return;
        };
        let mut start = 0;
        for m in matcher.find_iter(text) {
            if m.start() > start {
                f(Segment::Text(&text[start..m.start()]));
            }
            f(Segment::Special(m.pattern().as_usize()));
            start = m.end();
        }
        if start < text.len() {
            f(Segment::Text(&text[start..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Pretokenizer::gpt2()
            .for_each(text, |p| out.push(p))
            .unwrap();
        out
    }

    #[test]
    fn gpt2_pattern_splits_words_spaces_and_contractions() {
        assert_eq!(
            pretokens("Hello, world!  It's"),
            ["Hello", ",", " world", "!", " ", " It", "'s"]
        );
    }

    #[test]
    fn longest_special_token_wins() {
        let st = SpecialTokens::new(&["<|endoftext|>", "<|endoftext|><|endoftext|>"]).unwrap();
        let mut segs = Vec::new();
        st.for_each("a<|endoftext|><|endoftext|>b<|endoftext|>", |s| {
            segs.push(s)
        });
        assert_eq!(
            segs,
            [
                Segment::Text("a"),
                Segment::Special(1),
                Segment::Text("b"),
                Segment::Special(0)
            ]
        );
    }

    #[test]
    fn bad_special_tokens_are_errors() {
        assert!(matches!(
            SpecialTokens::new(&[""]),
            Err(Error::EmptySpecialToken)
        ));
        assert!(matches!(
            SpecialTokens::new(&["<a>", "<a>"]),
            Err(Error::DuplicateSpecialToken(_))
        ));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(matches!(
            Pretokenizer::new("(unclosed"),
            Err(Error::BadPattern { .. })
        ));
    }
}
