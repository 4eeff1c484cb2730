//! The hand-written scanner of [`GPT2_PATTERN`]: the same pretokens as fancy-regex, from a
//! table of the four character classes the pattern sees.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

#[cfg(doc)]
use super::GPT2_PATTERN;

/// The pretokens of `text` under [`GPT2_PATTERN`], by the hand-written scanner.
///
/// They are exactly fancy-regex's successive matches of the pattern; they cover the text,
/// so their concatenation is `text`.
pub fn gpt2_pretokens(text: &str) -> Gpt2Pretokens<'_> {
    Gpt2Pretokens {
        text,
        pos: 0,
        table: class_table(),
    }
}

/// Iterator returned by [`gpt2_pretokens`].
#[derive(Clone)]
pub struct Gpt2Pretokens<'t> {
    text: &'t str,
    pos: usize,
    table: &'static ClassTable,
}

impl fmt::Debug for Gpt2Pretokens<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpt2Pretokens")
            .field("rest", &&self.text[self.pos..])
            .finish_non_exhaustive()
    }
}

impl<'t> Iterator for Gpt2Pretokens<'t> {
    type Item = &'t str;

    #[inline]
    fn next(&mut self) -> Option<&'t str> {
        let start = self.pos;
        if start >= self.text.len() {
            return None;
        }
        let end = self.table.token_end(self.text.as_bytes(), start);
        self.pos = end;
        Some(&self.text[start..end])
    }
}

/// The four classes the GPT-2 pattern sees: `\p{L}`, `\p{N}`, `\s` (White_Space) and
/// everything else (`[^\s\p{L}\p{N}]`; marks `\p{M}` and controls are here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// The class of every code point, taken from regex-syntax (the tables fancy-regex uses),
/// so the scanner and the regex agree on every Unicode version the crate ships.
pub(crate) struct ClassTable {
    ascii: [Class; 128],
    /// The classes of U+0000..U+07FF (the two-byte characters: Latin, Greek, Cyrillic,
    /// Hebrew, Arabic...), looked up directly.
    two_byte: Box<[Class; 0x800]>,
    /// `blocks[index[cp >> 8]][cp & 0xFF]` is the class of code point `cp`: the
    /// 0x1100 blocks of 256 code points share the few distinct ones.
    index: Box<[u16; 0x1100]>,
    blocks: Vec<[Class; 256]>,
}

pub(crate) fn class_table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(ClassTable::build)
}

/// The code point ranges of a Unicode class expression such as `\p{L}`.
fn unicode_ranges(class: &str) -> Vec<(usize, usize)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    // The three expressions are fixed, valid Unicode classes: input cannot reach a panic.
    let hir = regex_syntax::parse(class).expect("a valid Unicode class");
    match hir.kind() {
        HirKind::Class(HirClass::Unicode(unicode)) => unicode
            .ranges()
            .iter()
            .map(|r| (r.start() as usize, r.end() as usize))
            .collect(),
        other => unreachable!("{class} parsed to {other:?}"),
    }
}

impl ClassTable {
    fn build() -> Self {
        let mut all = vec![Class::Other; 0x11_0000];
        for (class, expr) in [
            (Class::Letter, r"\p{L}"),
            (Class::Number, r"\p{N}"),
            (Class::Space, r"\s"),
        ] {
            for (lo, hi) in unicode_ranges(expr) {
                for slot in &mut all[lo..=hi] {
                    debug_assert_eq!(*slot, Class::Other, "the classes are disjoint");
                    *slot = class;
                }
            }
        }
        let mut blocks: Vec<[Class; 256]> = Vec::new();
        let mut seen: HashMap<[Class; 256], u16> = HashMap::new();
        let mut index = Box::new([0u16; 0x1100]);
        for (slot, chunk) in index.iter_mut().zip(all.chunks_exact(256)) {
            let block: [Class; 256] = chunk.try_into().expect("chunks of 256");
            *slot = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                (blocks.len() - 1) as u16
            });
        }
        ClassTable {
            ascii: all[..128].try_into().expect("128 ASCII classes"),
            two_byte: Box::new(all[..0x800].try_into().expect("0x800 classes")),
            index,
            blocks,
        }
    }

    /// The class and UTF-8 length of the character starting at byte `i` of `s` (valid
    /// UTF-8, `i` on a character boundary).
    #[inline(always)]
    pub(crate) fn class_at(&self, s: &[u8], i: usize) -> (Class, usize) {
        let b0 = s[i];
        if b0 < 0x80 {
            return (self.ascii[b0 as usize], 1);
        }
        let b0 = b0 as usize;
        let cont = |k: usize| (s[i + k] & 0x3F) as usize;
        if b0 < 0xE0 {
            return (self.two_byte[((b0 & 0x1F) << 6) | cont(1)], 2);
        }
        let (cp, len) = if b0 < 0xF0 {
            (((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2), 3)
        } else {
            (
                ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
                4,
            )
        };
        // Valid UTF-8 encodes at most U+10FFFF, so `cp >> 8 < 0x1100`.
        (self.blocks[self.index[cp >> 8] as usize][cp & 0xFF], len)
    }

    /// End of the longest run of `class` characters starting at byte `j`.
    #[inline(always)]
    fn run_end(&self, s: &[u8], mut j: usize, class: Class) -> usize {
        loop {
            let Some(&b) = s.get(j) else {
                return j;
            };
            if b < 0x80 {
                if self.ascii[b as usize] != class {
                    return j;
                }
                j = self.ascii_run_end(s, j + 1, class);
            } else {
                let (c, len) = self.class_at(s, j);
                if c != class {
                    return j;
                }
                j += len;
            }
        }
    }

    /// End of the longest run of ASCII `class` bytes starting at byte `j`: eight bytes at
    /// a time for letters and digits, which make up most of the bytes of most text.
    #[inline(always)]
    fn ascii_run_end(&self, s: &[u8], j: usize, class: Class) -> usize {
        let (j, ended) = match class {
            Class::Letter => swar_run_end(s, j, ascii_letter_bytes),
            Class::Number => swar_run_end(s, j, ascii_digit_bytes),
            _ => (j, false),
        };
        if ended {
            return j;
        }
        let mut j = j;
        while j < s.len() && s[j] < 0x80 && self.ascii[s[j] as usize] == class {
            j += 1;
        }
        j
    }

    /// End of the pretoken starting at byte `i` (`i < s.len()`), trying the pattern's
    /// alternatives in order as the regex does.
    #[inline]
    fn token_end(&self, s: &[u8], i: usize) -> usize {
        let b = s[i];
        // A plain space first: it starts most pretokens of most text. ` ?\p{L}+`,
        // ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` join it to the run of any non-space that
        // follows (every non-space is in one of the three classes).
        if b == b' ' {
            if let Some(&next) = s.get(i + 1) {
                // ` word` (ASCII letter next): the commonest pretoken of English text.
                if next < 0x80 && self.ascii[next as usize] == Class::Letter {
                    return self.run_end(s, i + 2, Class::Letter);
                }
                let (next, next_len) = self.class_at(s, i + 1);
                if next != Class::Space {
                    return self.run_end_of(s, i + 1 + next_len, next);
                }
            }
            return self.space_end(s, i);
        }
        let (class, len) = self.class_at(s, i);
        match class {
            Class::Space => self.space_end(s, i),
            // `'(?:[sdmt]|ll|ve|re)` (case-sensitive), else `[^\s\p{L}\p{N}]+`.
            Class::Other if b == b'\'' => match &s[i + 1..] {
                [b's' | b'd' | b'm' | b't', ..] => i + 2,
                [b'l', b'l', ..] | [b'v', b'e', ..] | [b'r', b'e', ..] => i + 3,
                _ => self.run_end(s, i + 1, Class::Other),
            },
            _ => self.run_end_of(s, i + len, class),
        }
    }

    /// [`ClassTable::run_end`] with `class` a constant in each arm, so each gets its own
    /// inlined copy without a test of `class` per step.
    #[inline(always)]
    fn run_end_of(&self, s: &[u8], j: usize, class: Class) -> usize {
        match class {
            Class::Letter => self.run_end(s, j, Class::Letter),
            Class::Number => self.run_end(s, j, Class::Number),
            Class::Other => self.run_end(s, j, Class::Other),
            Class::Space => self.run_end(s, j, Class::Space),
        }
    }

    /// End of the whitespace pretoken starting at byte `i`. `\s+(?!\S)` takes the whole
    /// run at the end of the text; before a non-space it backtracks one character,
    /// leaving the run's last character to the next pretoken, unless the run is that
    /// one character, which `\s+` then takes alone.
    fn space_end(&self, s: &[u8], i: usize) -> usize {
        let mut last = i;
        let mut j = i;
        loop {
            let (class, len) = self.class_at(s, j);
            if class != Class::Space {
                return if last > i { last } else { j };
            }
            last = j;
            j += len;
            if j == s.len() {
                return j;
            }
        }
    }
}

/// Skip the bytes from `j` on that `of_class` marks, eight at a time. Returns where it
/// stopped and whether the run ended there (`false`: fewer than eight bytes were left).
#[inline(always)]
fn swar_run_end(s: &[u8], mut j: usize, of_class: impl Fn(u64) -> u64) -> (usize, bool) {
    while let Some(chunk) = s.get(j..j + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let run = (!of_class(x) & HIGH_BITS).trailing_zeros() as usize / 8;
        j += run;
        if run < 8 {
            return (j, true);
        }
    }
    (j, false)
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x80 * LOW_BITS;

/// Bit 7 of each byte of `x` (eight bytes of text, little-endian) set where that byte is
/// an ASCII letter. Bytes of 0x80 and above are cleared to 0x00..0x7F first, so adding at
/// most 0x1F never carries into the next byte; bit 7 of `v + 0x80 - lo` is then `v >= lo`.
#[inline(always)]
fn ascii_letter_bytes(x: u64) -> u64 {
    // ASCII letters, and nothing else, fold onto `a..=z` when bit 5 is set.
    let v = (x | (0x20 * LOW_BITS)) & (0x7F * LOW_BITS);
    let at_least_a = v + (0x80 - b'a' as u64) * LOW_BITS;
    let above_z = v + (0x80 - b'z' as u64 - 1) * LOW_BITS;
    at_least_a & !above_z & !x & HIGH_BITS
}

/// Like [`ascii_letter_bytes`], for ASCII digits.
#[inline(always)]
fn ascii_digit_bytes(x: u64) -> u64 {
    let v = x & (0x7F * LOW_BITS);
    let at_least_0 = v + (0x80 - b'0' as u64) * LOW_BITS;
    let above_9 = v + (0x80 - b'9' as u64 - 1) * LOW_BITS;
    at_least_0 & !above_9 & !x & HIGH_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::{Pretokenizer, GPT2_PATTERN};
    use fancy_regex::Regex;

    fn scanned(text: &str) -> Vec<&str> {
        gpt2_pretokens(text).collect()
    }

    fn regex_matches(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Pretokenizer::regex_only(GPT2_PATTERN)
            .unwrap()
            .for_each(text, |p| {
                out.push(p);
                Ok(())
            })
            .unwrap();
        out
    }

    /// The scanner gives `expected`, and so does fancy-regex.
    fn check(text: &str, expected: &[&str]) {
        assert_eq!(regex_matches(text), expected, "fancy-regex on {text:?}");
        assert_eq!(scanned(text), expected, "scanner on {text:?}");
    }

    #[test]
    fn words_spaces_and_contractions() {
        check(
            "Hello, world!  It's",
            &["Hello", ",", " world", "!", " ", " It", "'s"],
        );
    }

    #[test]
    fn contractions_are_lowercase_and_only_at_a_token_start() {
        check("it's", &["it", "'s"]);
        check("IT'S", &["IT", "'", "S"]);
        check(
            "we'll've'd're'm't",
            &["we", "'ll", "'ve", "'d", "'re", "'m", "'t"],
        );
        check("'l 'v 'r", &["'", "l", " '", "v", " '", "r"]);
        check("'LL'Ve", &["'", "LL", "'", "Ve"]);
        check(" 's", &[" '", "s"]);
        check("!'s", &["!'", "s"]);
        check("''s", &["''", "s"]);
        check("'", &["'"]);
        check("'sss", &["'s", "ss"]);
        check("'lle", &["'ll", "e"]);
        check("x'", &["x", "'"]);
    }

    #[test]
    fn whitespace_runs_leave_their_last_character_before_a_non_space() {
        check("a  b", &["a", " ", " b"]);
        check("a   ", &["a", "   "]);
        check("   ", &["   "]);
        check(" ", &[" "]);
        check("\n", &["\n"]);
        check(" a", &[" a"]);
        check("\na", &["\n", "a"]);
        check("\n\na", &["\n", "\n", "a"]);
        check(" \na", &[" ", "\n", "a"]);
        check("\n a", &["\n", " a"]);
        check("a\r\nb", &["a", "\r", "\n", "b"]);
        check("a\r\n\r\nb", &["a", "\r\n\r", "\n", "b"]);
        check("a \r\n", &["a", " \r\n"]);
        check("\t\tx", &["\t", "\t", "x"]);
        check("  1  !", &[" ", " 1", " ", " !"]);
    }

    #[test]
    fn long_runs_are_linear() {
        // fancy-regex gives up on `\s+(?!\S)` past about a million whitespace characters
        // ("Max stack size exceeded for backtracking"); the scanner does not backtrack.
        let n = 1_200_000;
        let text = format!("{}a{}", " ".repeat(n), "\n".repeat(n));
        let spaces = " ".repeat(n - 1);
        let newlines = "\n".repeat(n);
        assert_eq!(scanned(&text), [spaces.as_str(), " a", newlines.as_str()]);
    }

    #[test]
    fn unicode_whitespace() {
        // U+00A0, U+3000, U+0085, U+2028, VT and FF are White_Space; only U+0020 joins
        // the next run.
        check("a\u{a0}b", &["a", "\u{a0}", "b"]);
        check("a\u{a0} b", &["a", "\u{a0}", " b"]);
        check("a \u{a0}b", &["a", " ", "\u{a0}", "b"]);
        check("\u{3000}\u{3000}漢", &["\u{3000}", "\u{3000}", "漢"]);
        check("x\u{85}y", &["x", "\u{85}", "y"]);
        check("x\u{2028}\u{2028}", &["x", "\u{2028}\u{2028}"]);
        check("\u{b}\u{c}x", &["\u{b}", "\u{c}", "x"]);
        // U+001C..U+001F are not White_Space (Python's str.isspace says they are).
        check("a\u{1c}\u{1f} b", &["a", "\u{1c}\u{1f}", " b"]);
        // U+200B and U+180E are not White_Space either.
        check("a\u{200b}b\u{180e}", &["a", "\u{200b}", "b", "\u{180e}"]);
    }

    #[test]
    fn digits_letters_marks_and_symbols() {
        check("abc123 456x", &["abc", "123", " 456", "x"]);
        check("½²٣", &["½²٣"]);
        check("e\u{301}", &["e", "\u{301}"]);
        check(" \u{301}\u{302}a", &[" \u{301}\u{302}", "a"]);
        check("ñandú 東京 😀😀 ok", &["ñandú", " 東京", " 😀😀", " ok"]);
        check("Привет, мир", &["Привет", ",", " мир"]);
        check("a_b-c", &["a", "_", "b", "-", "c"]);
        check("$$ 1.5%", &["$$", " 1", ".", "5", "%"]);
        check("\0\u{7f}", &["\0\u{7f}"]);
        check("", &[]);
    }

    #[test]
    fn class_table_matches_the_regex_on_every_code_point() {
        let all: String = (0..0x11_0000).filter_map(char::from_u32).collect();
        let mut expected: HashMap<usize, Class> = HashMap::new();
        for (class, expr) in [
            (Class::Letter, r"\p{L}"),
            (Class::Number, r"\p{N}"),
            (Class::Space, r"\s"),
        ] {
            for m in Regex::new(expr).unwrap().find_iter(&all) {
                assert!(expected.insert(m.unwrap().start(), class).is_none());
            }
        }
        let table = class_table();
        for (i, c) in all.char_indices() {
            let class = expected.get(&i).copied().unwrap_or(Class::Other);
            assert_eq!(
                table.class_at(all.as_bytes(), i),
                (class, c.len_utf8()),
                "{c:?}"
            );
        }
    }

    #[test]
    fn ascii_byte_masks_match_the_ascii_table() {
        let table = class_table();
        for b in 0..=255u8 {
            // Each byte in each of the eight lanes, among neighbours that could carry.
            for lane in 0..8 {
                for fill in [0x00u8, 0x7F, 0x80, 0xFF, b'z', b'0'] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = b;
                    let x = u64::from_le_bytes(bytes);
                    let class = (b < 0x80).then(|| table.ascii[b as usize]);
                    let bit = 0x80u64 << (8 * lane);
                    assert_eq!(
                        ascii_letter_bytes(x) & bit != 0,
                        class == Some(Class::Letter),
                        "{b:#x}"
                    );
                    assert_eq!(
                        ascii_digit_bytes(x) & bit != 0,
                        class == Some(Class::Number),
                        "{b:#x}"
                    );
                }
            }
        }
    }
}
