//! Special tokens: splitting text on them, longest match first.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::{Error, Result};

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
    /// Leftmost-longest matches: the segmentation.
    matcher: Option<AhoCorasick>,
    /// All matches (for [`crate::boundary`]).
    occurrences: Option<AhoCorasick>,
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
        let automaton = |kind| -> Result<Option<AhoCorasick>> {
            if owned.is_empty() {
                return Ok(None);
            }
            let ac = AhoCorasick::builder()
                .match_kind(kind)
                .build(&owned)
                .map_err(|e| Error::BadModel(format!("special tokens: {e}")))?;
            Ok(Some(ac))
        };
        Ok(SpecialTokens {
            matcher: automaton(MatchKind::LeftmostLongest)?,
            occurrences: automaton(MatchKind::Standard)?,
            tokens: owned,
        })
    }

    /// An automaton that finds every occurrence of every special token, overlapping ones
    /// included (`None` when there are no special tokens).
    pub fn occurrences(&self) -> Option<&AhoCorasick> {
        self.occurrences.as_ref()
    }

    /// The special tokens, in the order given.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Call `f` on each segment of `text`, in order; the first error of `f` stops it.
    pub fn for_each<'t>(
        &self,
        text: &'t str,
        mut f: impl FnMut(Segment<'t>) -> Result<()>,
    ) -> Result<()> {
        let Some(matcher) = &self.matcher else {
            if !text.is_empty() {
                f(Segment::Text(text))?;
            }
            return Ok(());
        };
        let mut start = 0;
        for m in matcher.find_iter(text) {
            if m.start() > start {
                f(Segment::Text(&text[start..m.start()]))?;
            }
            f(Segment::Special(m.pattern().as_usize()))?;
            start = m.end();
        }
        if start < text.len() {
            f(Segment::Text(&text[start..]))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_special_token_wins() {
        let st = SpecialTokens::new(&["<|endoftext|>", "<|endoftext|><|endoftext|>"]).unwrap();
        let mut segs = Vec::new();
        st.for_each("a<|endoftext|><|endoftext|>b<|endoftext|>", |s| {
            segs.push(s);
            Ok(())
        })
        .unwrap();
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
}
