//! Tests of the merge loop against a naive trainer and the handout's example.

use super::*;

fn names(trained: &Trained) -> Vec<String> {
    trained
        .merge_bytes()
        .iter()
        .map(|(a, b)| {
            format!(
                "{} {}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            )
        })
        .collect()
}

fn run(words: &[(&[u8], u64)], num_merges: usize) -> Vec<String> {
    names(&train_words(words.iter().copied(), num_merges, None).unwrap())
}

#[test]
fn ties_go_to_the_greater_byte_pair() {
    // (b, a) and (a, b) both occur once: the greater pair (b"b", b"a") wins.
    assert_eq!(run(&[(b"ab", 1), (b"ba", 1)], 1), ["b a"]);
    // After "a a" -> id 256, (b"aa", b"c") and (b"b", b"c") tie at 1: compared by bytes
    // "b c" wins, although a comparison by token id would pick (256, 99).
    assert_eq!(
        run(&[(b"aa", 10), (b"aac", 1), (b"bc", 1)], 2),
        ["a a", "b c"]
    );
}

#[test]
fn handout_example() {
    let words: &[(&[u8], u64)] = &[(b"low", 5), (b"lower", 2), (b"widest", 3), (b"newest", 6)];
    assert_eq!(
        run(words, 12),
        [
            "s t", "e st", "o w", "l ow", "w est", "n e", "ne west", "w i", "wi d", "wid est",
            "low e", "lowe r"
        ]
    );
}

#[test]
fn stops_when_no_pair_is_left() {
    assert_eq!(run(&[(b"abc", 1), (b"x", 7)], 100), ["b c", "a bc"]);
    assert!(run(&[], 10).is_empty());
}

#[test]
fn max_token_length_bounds_every_token() {
    let a = "a".repeat(1000);
    let all = train_words([(a.as_bytes(), 1)], 100, None).unwrap();
    assert!(all.tokens.iter().any(|t| t.len() > 100));
    let bounded = train_words([(a.as_bytes(), 1)], 100, Some(8)).unwrap();
    assert_eq!(names(&bounded), ["a a", "aa aa", "aaaa aaaa"]);
    assert!(train_words([(a.as_bytes(), 1)], 100, Some(1))
        .unwrap()
        .merges
        .is_empty());
}

/// The reference: recount every pair of every word after each merge.
fn naive(words: &[(Vec<u8>, u64)], num_merges: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut words: Vec<(Vec<Vec<u8>>, u64)> = words
        .iter()
        .map(|(w, c)| (w.iter().map(|&b| vec![b]).collect(), *c))
        .collect();
    let mut merges = Vec::new();
    for _ in 0..num_merges {
        let mut counts: FxHashMap<(Vec<u8>, Vec<u8>), u64> = FxHashMap::default();
        for (w, c) in &words {
            for p in w.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += c;
            }
        }
        let Some((best, _)) = counts
            .into_iter()
            .max_by(|x, y| (x.1, &x.0).cmp(&(y.1, &y.0)))
        else {
            break;
        };
        for (w, _) in &mut words {
            let mut out = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && (&w[i], &w[i + 1]) == (&best.0, &best.1) {
                    out.push([&w[i][..], &w[i + 1][..]].concat());
                    i += 2;
                } else {
                    out.push(w[i].clone());
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push(best);
    }
    merges
}

#[test]
fn long_words_across_blocks_train_like_the_reference() {
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut rand = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let alphabet = 2 + round % 3;
        let words: Vec<(Vec<u8>, u64)> = (0..1 + rand() % 3)
            .map(|_| {
                let len = 2 + (rand() % 300) as usize;
                let w = (0..len).map(|_| b'a' + (rand() % alphabet) as u8).collect();
                (w, 1 + rand() % 3)
            })
            .collect();
        let ours = train_words(words.iter().map(|(w, c)| (&w[..], *c)), 60, None).unwrap();
        assert_eq!(ours.merge_bytes(), naive(&words, 60), "round {round}");
    }
}

#[test]
fn u16_and_u32_words_train_alike() {
    // 100,000 merges do not fit u16 ids, so these words are stored as u32; the corpus
    // runs out of pairs long before.
    let text = "the cat sat on the mat, then the cat ate the rat; a bat at bay "
        .repeat(3)
        .into_bytes();
    let words: Vec<(&[u8], u64)> = text
        .chunks(7)
        .enumerate()
        .map(|(i, w)| (w, 1 + i as u64 % 4))
        .collect();
    let wide = train_words(words.iter().copied(), 100_000, None).unwrap();
    assert!(!symbols_fit_u16(100_000) && symbols_fit_u16(65_280));
    assert!(wide.merges.len() > 20, "{}", wide.merges.len());
    let narrow = train_words(words.iter().copied(), wide.merges.len(), None).unwrap();
    assert_eq!(narrow.merges, wide.merges);
}

#[test]
fn vocab_too_small_is_an_error() {
    assert_eq!(merges_for(300, 2).unwrap(), 42);
    assert!(matches!(
        merges_for(257, 2),
        Err(Error::VocabTooSmall { minimum: 258, .. })
    ));
}
