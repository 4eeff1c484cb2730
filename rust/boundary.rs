//! THE safe-cut rule, shared by the trainer (parallel counting), `encode_iterable` and
//! `encode_file`: where text can be cut so that the two sides, pretokenized (and so
//! counted or encoded) on their own, give exactly the pretokens of the whole.
//!
//! A position `p` between two characters is a safe cut when no special-token occurrence
//! straddles it and either
//! - it is right after a special token that the segmentation takes whole (any pattern), or
//! - with the GPT-2 pattern, no GPT-2 pretoken can span it. With `c1` the character before
//!   `p`, `c2` the one at `p`, `c0` the one before `c1` and `c3` the one after `c2`, and
//!   the classes letter / number / whitespace / other of the scanner's table:
//!   - `c1` is not whitespace, and `c2` is whitespace, or `c1` is not `'` and the classes
//!     of `c1` and `c2` differ (every alternative that can hold `c1` is a run of its
//!     class, or a contraction that ends at `c1`; none continues over a class change,
//!     and none looks back);
//!   - `c1` and `c2` are whitespace and `c3` is not (`\s+(?!\S)` leaves exactly the last
//!     whitespace character of a run before a non-space to the next pretoken);
//!   - `c1` is whitespace other than U+0020, `c2` is not whitespace, and `c0` is not
//!     whitespace or `c1` starts the text (`c1` is then a pretoken of its own).
//!
//!   Near special tokens the character rule is used only when no occurrence of one
//!   covers a byte within [`CONTEXT`] bytes of `p`, so all four characters lie in one
//!   piece of ordinary text.
//!
//! Any other pattern may look arbitrarily far ahead or behind, so it is cut only right
//! after special tokens (never when it has none). A position is judged only when the text
//! extends [`Boundary::lookahead`] bytes past it, or when the text is known to end there.
//! The rule is proven by tests: every cut it finds in random text of many scripts gives
//! the pretokens of the whole (here and in tests/test_boundary.py), and cuts exist every
//! few characters in CJK and Cyrillic text.

use aho_corasick::AhoCorasick;

use crate::pretokenize::scanner::{class_table, Class};
use crate::pretokenize::{Pretokenizer, SpecialTokens};

/// Bytes around a position that the character rule reads: two characters on each side.
pub const CONTEXT: usize = 8;

/// Positions judged at once when special tokens are looked up (one automaton pass per
/// window): the first window of a search is small, later ones grow up to the largest.
const FIRST_WINDOW: usize = 256;
const WINDOW: usize = 1 << 16;

/// Finds safe cuts; see the module docs.
#[derive(Debug, Clone)]
pub struct Boundary {
    /// Whether the GPT-2 character rule applies (the pattern runs the scanner).
    gpt2: bool,
    /// Every occurrence of every special token, overlapping ones included.
    occurrences: Option<AhoCorasick>,
    max_special_len: usize,
}

impl Boundary {
    /// The rule for text pretokenized by `pretokenizer` after splitting on `specials`.
    pub fn new(pretokenizer: &Pretokenizer, specials: &SpecialTokens) -> Self {
        let tokens = specials.tokens();
        Boundary {
            gpt2: pretokenizer.uses_scanner(),
            occurrences: specials.occurrences().cloned(),
            max_special_len: tokens.iter().map(String::len).max().unwrap_or(0),
        }
    }

    /// Whether any position can ever be a cut (false for a custom pattern without special
    /// tokens: such text is one piece).
    pub fn can_cut(&self) -> bool {
        self.gpt2 || self.occurrences.is_some()
    }

    /// Bytes of text needed after a position to judge it (unless the text ends there).
    pub fn lookahead(&self) -> usize {
        CONTEXT + self.max_special_len
    }

    /// The first safe cut in `lo..=hi` (the last with `backward`), among the positions that
    /// can be judged (see [`Self::first_cut`]).
    fn scan(
        &self,
        text: &str,
        lo: usize,
        hi: usize,
        at_end: bool,
        backward: bool,
    ) -> Option<usize> {
        let limit = if at_end {
            text.len().saturating_sub(1)
        } else {
            text.len().saturating_sub(self.lookahead())
        };
        let (lo, hi) = (lo.max(1), hi.min(limit));
        if lo > hi || !self.can_cut() {
            return None;
        }
        // Windows grow from small (a cut is usually a few bytes away) to `WINDOW`.
        let mut size = FIRST_WINDOW;
        let (mut window_start, mut window_end) = if backward {
            (hi.saturating_sub(size - 1).max(lo), hi)
        } else {
            (lo, (lo + size - 1).min(hi))
        };
        loop {
            let specials = self
                .occurrences
                .as_ref()
                .and_then(|ac| SpecialWindow::new(ac, text, window_start, window_end));
            let is_cut = |p: usize| {
                if !text.is_char_boundary(p) {
                    return false;
                }
                match &specials {
                    Some(w) => {
                        !w.straddled(p)
                            && (w.after_special(p)
                                || (self.gpt2 && !w.near(p) && gpt2_char_rule(text.as_bytes(), p)))
                    }
                    None => self.gpt2 && gpt2_char_rule(text.as_bytes(), p),
                }
            };
            let found = if backward {
                (window_start..=window_end).rev().find(|&p| is_cut(p))
            } else {
                (window_start..=window_end).find(|&p| is_cut(p))
            };
            if found.is_some() {
                return found;
            }
            size = (2 * size).min(WINDOW);
            if backward {
                if window_start == lo {
                    return None;
                }
                window_end = window_start - 1;
                window_start = window_end.saturating_sub(size - 1).max(lo);
            } else {
                if window_end == hi {
                    return None;
                }
                window_start = window_end + 1;
                window_end = (window_start + size - 1).min(hi);
            }
        }
    }

    /// The first safe cut at or after byte `from` (and before the end of `text`). Unless
    /// `at_end`, `text` may continue, and the last [`Self::lookahead`] bytes are not judged.
    pub fn first_cut(&self, text: &str, from: usize, at_end: bool) -> Option<usize> {
        self.scan(text, from, usize::MAX, at_end, false)
    }

    /// The last safe cut after byte `after` (see [`Self::first_cut`]).
    pub fn last_cut(&self, text: &str, after: usize, at_end: bool) -> Option<usize> {
        self.scan(text, after + 1, usize::MAX, at_end, true)
    }

    /// Cut `text` into pieces of about `step` bytes (or more, up to the next safe cut):
    /// returns the end of each piece. With `at_end` the last one is `text.len()`;
    /// otherwise the text after the last cut is left for when more of it is known. No
    /// position below `no_cut_before` is a cut (the caller found none there before).
    pub fn cuts(&self, text: &str, step: usize, at_end: bool, no_cut_before: usize) -> Vec<usize> {
        let step = step.max(1);
        let mut cuts = Vec::new();
        let mut last = 0;
        loop {
            let target = (last + step).max(no_cut_before);
            if target >= text.len() {
                break;
            }
            match self.first_cut(text, target, at_end) {
                Some(p) => {
                    cuts.push(p);
                    last = p;
                }
                None => break,
            }
        }
        if at_end && last < text.len() {
            cuts.push(text.len());
        }
        cuts
    }
}

/// The pieces of `text` that end at `cuts` (ascending, as [`Boundary::cuts`] returns
/// them): the first starts at 0, each next one at the previous cut.
pub fn pieces<'t>(text: &'t str, cuts: &[usize]) -> Vec<&'t str> {
    let starts = std::iter::once(0).chain(cuts.iter().copied());
    starts.zip(cuts).map(|(a, &b)| &text[a..b]).collect()
}

/// The GPT-2 character rule at byte `p` of `s` (`0 < p < s.len()`, a character boundary).
fn gpt2_char_rule(s: &[u8], p: usize) -> bool {
    let table = class_table();
    let c1_start = char_start_before(s, p);
    let (c1, _) = table.class_at(s, c1_start);
    let (c2, c2_len) = table.class_at(s, p);
    if c1 != Class::Space {
        return c2 == Class::Space || (s[p - 1] != b'\'' && c1 != c2);
    }
    if c2 == Class::Space {
        let c3 = p + c2_len;
        return c3 < s.len() && table.class_at(s, c3).0 != Class::Space;
    }
    s[p - 1] != b' '
        && (c1_start == 0 || table.class_at(s, char_start_before(s, c1_start)).0 != Class::Space)
}

/// Start of the character that ends at byte `p` of valid UTF-8 `s` (`p > 0`).
fn char_start_before(s: &[u8], p: usize) -> usize {
    let mut i = p - 1;
    while i > 0 && s[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    i
}

/// Where special-token occurrences block cuts, for the positions `lo..=hi` of a text.
struct SpecialWindow {
    /// Offset of the first entry of the tables below in the text.
    base: usize,
    /// Per position: how many occurrences start before it and end after it.
    straddled: Vec<u32>,
    /// Per position: how many occurrences cover a byte within [`CONTEXT`] of it.
    near: Vec<u32>,
    /// Per position: whether an occurrence ends there whose start no occurrence straddles.
    after_special: Vec<bool>,
}

impl SpecialWindow {
    /// `None` when no occurrence is near the positions (the common case: then nothing is
    /// allocated).
    fn new(ac: &AhoCorasick, text: &str, lo: usize, hi: usize) -> Option<Self> {
        let reach = CONTEXT + ac.max_pattern_len();
        let base = lo.saturating_sub(2 * reach);
        let end = hi.saturating_add(reach).min(text.len());
        ac.find(&text.as_bytes()[base..end])?;
        let n = end - base + 2;
        let mut straddled = vec![0i64; n + 1];
        let mut near = vec![0i64; n + 1];
        let mut ends = Vec::new();
        for m in ac.find_overlapping_iter(&text.as_bytes()[base..end]) {
            let (s, e) = (m.start(), m.end());
            straddled[s + 1] += 1;
            straddled[e] -= 1;
            near[(s + 1).saturating_sub(CONTEXT)] += 1;
            near[(e + CONTEXT).min(n)] -= 1;
            ends.push((s, e));
        }
        let prefix = |diff: Vec<i64>| -> Vec<u32> {
            let mut sum = 0;
            diff.into_iter()
                .map(|d| {
                    sum += d;
                    sum as u32
                })
                .collect()
        };
        let straddled = prefix(straddled);
        let near = prefix(near);
        let mut after_special = vec![false; n + 1];
        for (s, e) in ends {
            if straddled[s] == 0 && straddled[e] == 0 {
                after_special[e] = true;
            }
        }
        Some(SpecialWindow {
            base,
            straddled,
            near,
            after_special,
        })
    }

    fn straddled(&self, p: usize) -> bool {
        self.straddled[p - self.base] > 0
    }

    fn near(&self, p: usize) -> bool {
        self.near[p - self.base] > 0
    }

    fn after_special(&self, p: usize) -> bool {
        self.after_special[p - self.base]
    }
}

#[cfg(test)]
#[path = "boundary_tests.rs"]
mod tests;
