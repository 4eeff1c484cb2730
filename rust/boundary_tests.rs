//! Tests of the safe-cut rule: every cut found is safe, and cuts exist in every script.

use super::*;
use crate::pretokenize::{Segment, GPT2_PATTERN};

/// What the trainer and the encoder see of `text`: special tokens, then the pretokens of
/// the text between them.
fn split(text: &str, pretokenizer: &Pretokenizer, specials: &SpecialTokens) -> Vec<String> {
    let mut out = Vec::new();
    specials
        .for_each(text, |segment| match segment {
            Segment::Special(i) => {
                out.push(format!("<special {i}>"));
                Ok(())
            }
            Segment::Text(t) => pretokenizer.for_each(t, |p| {
                out.push(p.to_owned());
                Ok(())
            }),
        })
        .unwrap();
    out
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Pieces of every script and of every rule: CJK, kana, Thai (with its combining vowel
/// marks), Cyrillic, combining marks, NBSP and other Unicode whitespace, apostrophes and
/// contractions, digits, whitespace runs, `\r\n`, and special tokens (`<s>` and `s>x`
/// overlap).
const PIECES: &[&str] = &[
    "中文",
    "，",
    "。",
    "漢字",
    "ひらがな",
    "カタカナ",
    "、",
    "ภาษาไทย",
    "ที่",
    "Привет",
    "мир",
    ",",
    "e\u{301}",
    "\u{301}",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{85}",
    "'",
    "'s",
    "'ll",
    "'t",
    "don't",
    "123",
    "٣½",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n ",
    "word",
    "Word",
    "!!",
    "😀",
    "-",
    "<s>",
    "s>x",
    "<s><s>",
    "x",
];

fn random_text(rng: &mut u64, max_pieces: u64) -> String {
    let n = xorshift(rng) % max_pieces;
    (0..n)
        .map(|_| PIECES[(xorshift(rng) % PIECES.len() as u64) as usize])
        .collect()
}

/// Every position that `boundary` allows in `text` splits it into two texts whose
/// pretokens together are those of `text`. Returns the number of cuts checked.
fn check_cuts_are_safe(text: &str, pretokenizer: &Pretokenizer, specials: &SpecialTokens) -> usize {
    let boundary = Boundary::new(pretokenizer, specials);
    let whole = split(text, pretokenizer, specials);
    let mut cuts = 0;
    let mut from = 0;
    let mut all = Vec::new();
    while let Some(p) = boundary.first_cut(text, from, true) {
        all.push(p);
        let mut parts = split(&text[..p], pretokenizer, specials);
        parts.extend(split(&text[p..], pretokenizer, specials));
        assert_eq!(parts, whole, "cut at {p} of {text:?}");
        cuts += 1;
        from = p + 1;
    }
    // Judged while the text is still open (a prefix of it), a position is a cut only if
    // it is one of the whole text.
    for open in (0..=text.len()).filter(|&n| text.is_char_boundary(n)) {
        let mut from = 0;
        while let Some(p) = boundary.first_cut(&text[..open], from, false) {
            assert!(all.contains(&p), "{p} in {:?} of {text:?}", &text[..open]);
            from = p + 1;
        }
    }
    cuts
}

#[test]
fn cuts_are_safe_in_random_text_of_every_script() {
    let gpt2 = Pretokenizer::gpt2();
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    let mut cuts = 0;
    for specials in [&[][..], &["<s>", "<s><s>", "s>x"]] {
        let specials = SpecialTokens::new(specials).unwrap();
        for _ in 0..3000 {
            cuts += check_cuts_are_safe(&random_text(&mut rng, 12), &gpt2, &specials);
        }
    }
    assert!(cuts > 20_000, "only {cuts} cuts");
}

#[test]
fn custom_patterns_are_cut_only_after_special_tokens() {
    let lookaround = Pretokenizer::new(r"(?<=a)a+|[ab]+(?=b)|\S+|\s+").unwrap();
    let specials = SpecialTokens::new(&["<s>", "<s><s>", "s>x"]).unwrap();
    let boundary = Boundary::new(&lookaround, &specials);
    let text = "aab <s>ab<s><s>aaa<s>s>x b<s>x<s>aa ab";
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(p) = boundary.first_cut(text, from, true) {
        cuts.push(p);
        from = p + 1;
    }
    // After each special token, but not inside "<s><s>" (taken whole) nor around the
    // overlapping "<s>x" (where "s>x" straddles the end of "<s>").
    assert_eq!(cuts, [7, 15, 21, 24, 33]);
    let mut rng = 7;
    for _ in 0..2000 {
        check_cuts_are_safe(&random_text(&mut rng, 12), &lookaround, &specials);
    }
    let none = SpecialTokens::new::<&str>(&[]).unwrap();
    let plain = Boundary::new(&lookaround, &none);
    assert!(!plain.can_cut());
    assert_eq!(plain.first_cut("ab ab", 0, true), None);
}

/// The gaps between successive cuts of `text` (from `Boundary::cuts` with step 1).
fn gaps(text: &str) -> Vec<usize> {
    let boundary = Boundary::new(
        &Pretokenizer::gpt2(),
        &SpecialTokens::new(&["<|endoftext|>"]).unwrap(),
    );
    let cuts = boundary.cuts(text, 1, true, 0);
    let mut last = 0;
    cuts.iter()
        .map(|&c| {
            let gap = c - last;
            last = c;
            gap
        })
        .collect()
}

#[test]
fn cuts_exist_every_few_characters_in_cjk_and_cyrillic() {
    let chinese =
        "从前有一座山，山上有一座庙。庙里有一个老和尚和一个小和尚！老和尚在给小和尚讲故事：\
                   “从前有一座山……”\n\n第二天，小和尚问老和尚：为什么？";
    let japanese =
        "むかしむかし、あるところにおじいさんとおばあさんがいました。おじいさんは山へしばかりに、\
                    おばあさんは川へせんたくに行きました。";
    let russian = "Жили-были дед да баба. Была у них курочка Ряба.\nСнесла курочка яичко, не простое — золотое!";
    let thai = "กาลครั้งหนึ่งนานมาแล้ว มีเด็กหญิงคนหนึ่ง";
    for (text, max_gap) in [(chinese, 60), (japanese, 75), (russian, 20), (thai, 40)] {
        let gaps = gaps(text);
        let chars = text.chars().count();
        assert!(gaps.iter().all(|&g| g <= max_gap), "{text}: gaps {gaps:?}");
        assert!(
            gaps.len() * 12 >= chars,
            "{text}: {} cuts in {chars} chars",
            gaps.len()
        );
    }
}

#[test]
fn no_cut_inside_a_special_token_a_whitespace_run_or_a_word() {
    let boundary = Boundary::new(
        &Pretokenizer::gpt2(),
        &SpecialTokens::new(&["<s>"]).unwrap(),
    );
    let cuts = |text: &str| boundary.cuts(text, 1, true, 0);
    // Not next to a special token either, except right after it.
    assert_eq!(cuts("ab<s>ab"), [5, 7]);
    assert_eq!(cuts("a \n b"), [1, 3, 5]);
    assert_eq!(cuts("a'b"), [1, 3]);
    assert_eq!(cuts("word   "), [4, 7]);
    assert_eq!(cuts("中文中文"), [12]);
    // Before the last space of a run, not inside it; a lone newline between words.
    assert_eq!(cuts("a   b\nc"), [1, 3, 5, 6, 7]);
}

#[test]
fn open_text_is_not_judged_near_its_end() {
    let boundary = Boundary::new(
        &Pretokenizer::gpt2(),
        &SpecialTokens::new(&["<|endoftext|>"]).unwrap(),
    );
    let text = "one, two, three, four, five, six, seven";
    let last = boundary.last_cut(text, 0, false).unwrap();
    assert!(last + boundary.lookahead() <= text.len());
    assert_eq!(boundary.last_cut(text, 0, true), Some(33));
    assert!(boundary.first_cut(text, last + 1, false).is_none());
    assert_eq!(boundary.cuts(text, 100, false, 0), Vec::<usize>::new());
    assert_eq!(boundary.cuts(text, 100, true, 0), [text.len()]);
}

#[test]
fn windows_of_special_occurrences_join_up() {
    // Special tokens straddle the window edges; the scans in both directions agree with a
    // position-by-position check there.
    let specials = SpecialTokens::new(&["<sep>", "<sep><sep>"]).unwrap();
    let boundary = Boundary::new(&Pretokenizer::gpt2(), &specials);
    let unit = "abc<sep>";
    let text = unit.repeat(WINDOW / unit.len() + 300);
    let mut forward = Vec::new();
    let mut from = 0;
    while let Some(p) = boundary.first_cut(&text, from, true) {
        forward.push(p);
        from = p + 1;
    }
    // One cut after each <sep> (none next to one, none at the end).
    let expected: Vec<usize> = (1..text.len() / unit.len())
        .map(|k| k * unit.len())
        .collect();
    assert_eq!(forward, expected);
    for edge in [FIRST_WINDOW, WINDOW - 3, WINDOW, WINDOW + 5] {
        let before = expected.iter().rev().find(|&&p| p <= edge).copied();
        assert_eq!(
            boundary.last_cut(&text[..edge + 1], 0, true),
            before,
            "{edge}"
        );
        let after = expected.iter().find(|&&p| p >= edge).copied();
        assert_eq!(boundary.first_cut(&text, edge, true), after, "{edge}");
    }
}

#[test]
fn the_gpt2_rule_is_for_the_scanner_only() {
    let regex = Pretokenizer::regex_only(GPT2_PATTERN).unwrap();
    let boundary = Boundary::new(&regex, &SpecialTokens::new::<&str>(&[]).unwrap());
    assert_eq!(boundary.first_cut("a b", 0, true), None);
}
