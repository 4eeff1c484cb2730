//! Tests of the encoder: merge loops, caches, streaming, files and bad models.

use super::*;
use crate::pretokenize::GPT2_PATTERN;

/// Bytes, then `merges` (each creating the next id), then `specials`; GPT-2's pattern.
fn model(merges: &[(&str, &str)], specials: &[&str]) -> Encoder {
    model_with(merges, specials, GPT2_PATTERN)
}

fn model_with(merges: &[(&str, &str)], specials: &[&str], pattern: &str) -> Encoder {
    let mut vocab: Vec<(u32, Vec<u8>)> = (0..=255u8).map(|b| (b as u32, vec![b])).collect();
    let merges: Vec<(Vec<u8>, Vec<u8>)> = merges
        .iter()
        .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
        .collect();
    for (a, b) in &merges {
        vocab.push((vocab.len() as u32, [a.as_slice(), b.as_slice()].concat()));
    }
    let specials: Vec<(String, u32)> = specials
        .iter()
        .map(|s| {
            vocab.push((vocab.len() as u32, s.as_bytes().to_vec()));
            (s.to_string(), vocab.len() as u32 - 1)
        })
        .collect();
    Encoder::new(&vocab, &merges, &specials, pattern).unwrap()
}

const LETTER_MERGES: [(&str, &str); 6] = [
    ("a", "a"),
    ("b", "a"),
    ("aa", "a"),
    ("aa", "aa"),
    ("a", "b"),
    ("ba", "aa"),
];

fn letters_model() -> Encoder {
    model(
        &[
            ("a", "a"),
            ("b", "a"),
            ("aa", "a"),
            ("aa", "aa"),
            ("a", "b"),
            ("ba", "aa"),
        ],
        &["<s>", "<s><s>"],
    )
}

/// A deterministic pseudo-random sequence (xorshift64).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn heap_and_scan_merge_loops_agree() {
    let enc = letters_model();
    let mut rng = 0x9e3779b97f4a7c15;
    for _ in 0..500 {
        let len = 2 + (xorshift(&mut rng) % 300) as usize;
        let piece: Vec<u8> = (0..len)
            .map(|_| {
                if xorshift(&mut rng) % 3 == 0 {
                    b'b'
                } else {
                    b'a'
                }
            })
            .collect();
        let mut short = Scratch::default();
        enc.start_merging(&piece, &mut short).unwrap();
        enc.merge_short(&mut short);
        let mut long = Scratch::default();
        enc.start_merging(&piece, &mut long).unwrap();
        enc.merge_long(&mut long, &Progress::silent()).unwrap();
        assert_eq!(short.ids, long.ids, "{}", String::from_utf8_lossy(&piece));
        // The scratch is reused: a second, shorter piece merges as a fresh one.
        enc.start_merging(&piece[..len / 2], &mut long).unwrap();
        enc.merge_long(&mut long, &Progress::silent()).unwrap();
        enc.start_merging(&piece[..len / 2], &mut short).unwrap();
        enc.merge_short(&mut short);
        assert_eq!(short.ids, long.ids);
    }
}

#[test]
fn pooled_caches_persist_and_stay_per_caller() {
    let enc = letters_model();
    let texts: Vec<String> = (0..64)
        .map(|i| {
            format!(
                "aab ba{} aaab b<s>{} abab",
                "a".repeat(i % 7),
                "b".repeat(i % 5)
            )
        })
        .collect();
    let fresh: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            enc.encode_into(t, &mut Cache::default(), &mut out, &Progress::silent())
                .unwrap();
            out
        })
        .collect();
    // One caller: the cache it gave back is warm, and warm results equal cold ones.
    for (text, ids) in texts.iter().zip(&fresh) {
        assert_eq!(&enc.encode(text, &Progress::silent()).unwrap(), ids);
    }
    assert_eq!(enc.caches.lock().len(), 1);
    assert!(enc.caches.lock()[0].len() > 0);
    // Concurrent callers each take their own cache; the pool stays bounded.
    std::thread::scope(|scope| {
        for _ in 0..2 * enc.caches.max_len {
            scope.spawn(|| {
                for (text, ids) in texts.iter().zip(&fresh).rev() {
                    assert_eq!(&enc.encode(text, &Progress::silent()).unwrap(), ids);
                }
            });
        }
    });
    assert!((1..=enc.caches.max_len).contains(&enc.caches.lock().len()));
    let pool = crate::pool::pool(Some(3)).unwrap();
    assert_eq!(
        enc.encode_batch(&texts, &pool, &Progress::silent())
            .unwrap(),
        fresh
    );
}

#[test]
fn merges_apply_by_rank_within_pretokens() {
    let enc = letters_model();
    // "aaaa": (a,a) twice, then (aa,aa) -> one token; " aaa" stays apart (space).
    assert_eq!(enc.encode("aaaa", &Progress::silent()).unwrap(), [259]);
    assert_eq!(
        enc.encode("aaa aa", &Progress::silent()).unwrap(),
        [258, 32, 256]
    );
    assert_eq!(
        enc.encode("a<s><s>b<s>", &Progress::silent()).unwrap(),
        [97, 263, 98, 262]
    );
    assert_eq!(enc.decode_bytes(&[258, 263]).unwrap(), b"aaa<s><s>");
    assert!(matches!(
        enc.decode_bytes(&[264]),
        Err(Error::UnknownTokenId {
            id: 264,
            vocab_size: 264
        })
    ));
}

#[test]
fn stream_equals_encode_for_any_chunking() {
    assert_stream_equals_encode(&letters_model(), STREAM_TEXT, "GPT-2 pattern");
}

const STREAM_TEXT: &str = "aab ab, <s><s> aaaa\n\n b<s>ab 日本 12 ab";

/// Feeding `text` in chunks of 1..8 chars gives the ids of one `encode` call.
fn assert_stream_equals_encode(enc: &Encoder, text: &str, what: &str) {
    let whole = enc.encode(text, &Progress::silent()).unwrap();
    let chars: Vec<char> = text.chars().collect();
    for size in 1..8 {
        let mut stream = EncodeStream::default();
        let mut out = Vec::new();
        for chunk in chars.chunks(size) {
            let chunk: String = chunk.iter().collect();
            stream
                .feed(enc, &chunk, &mut out, &Progress::silent())
                .unwrap();
        }
        stream.finish(enc, &mut out, &Progress::silent()).unwrap();
        assert_eq!(out, whole, "chunks of {size} chars, {what}");
    }
}

#[test]
fn bad_models_are_errors() {
    let bytes: Vec<(u32, Vec<u8>)> = (0..=255u8).map(|b| (b as u32, vec![b])).collect();
    let missing_byte = &bytes[1..];
    assert!(
        matches!(Encoder::new(missing_byte, &[], &[], GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("0x00"))
    );
    let merge = [(b"a".to_vec(), b"b".to_vec())];
    assert!(
        matches!(Encoder::new(&bytes, &merge, &[], GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("merge 0"))
    );
    let special = [("<s>".to_string(), 300)];
    assert!(
        matches!(Encoder::new(&bytes, &[], &special, GPT2_PATTERN), Err(Error::BadModel(m)) if m.contains("300"))
    );
    let huge = [(1u32 << 31, b"x".to_vec())];
    assert!(matches!(
        Encoder::new(&huge, &[], &[], GPT2_PATTERN),
        Err(Error::BadModel(_))
    ));
    assert!(matches!(
        Encoder::new(&bytes, &[], &[], "(a"),
        Err(Error::BadPattern { .. })
    ));
}

/// A pattern with look-around: pretokens can depend on text far away on both sides.
const LOOKAROUND: &str = r"(?<=a)a+|[ab]+(?=b)|\S+|\s+";

#[test]
fn custom_pattern_stream_equals_encode_for_any_chunking() {
    for specials in [&["<s>", "<s><s>"][..], &[]] {
        let enc = model_with(&LETTER_MERGES, specials, LOOKAROUND);
        assert_stream_equals_encode(&enc, STREAM_TEXT, &format!("specials {specials:?}"));
    }
}

#[test]
fn backtrack_limit_is_an_error() {
    let enc = model_with(&[], &[], r"(?:(?=a)a|a)+c");
    let text = "a".repeat(40) + "b";
    assert!(matches!(
        enc.encode(&text, &Progress::silent()),
        Err(Error::BadPattern { .. })
    ));
}

#[test]
fn stream_cuts_cjk_and_cyrillic_text_as_it_comes() {
    let enc = letters_model();
    let text =
        "从前有一座山，山上有一座庙。\n\n庙里有一个老和尚！Жили-были дед да баба. ".repeat(50);
    let mut stream = EncodeStream::default();
    let mut out = Vec::new();
    let mut first_id_after = None;
    let mut fed = 0;
    for line in text.split_inclusive('\n') {
        fed += line.len();
        stream
            .feed(&enc, line, &mut out, &Progress::silent())
            .unwrap();
        if !out.is_empty() && first_id_after.is_none() {
            first_id_after = Some(fed);
        }
        assert!(
            stream.buf.len() < 200,
            "{} bytes held back",
            stream.buf.len()
        );
    }
    stream.finish(&enc, &mut out, &Progress::silent()).unwrap();
    assert!(first_id_after.unwrap() < 100);
    assert_eq!(out, enc.encode(&text, &Progress::silent()).unwrap());
}

#[test]
fn files_encode_in_parallel_rounds_like_one_call() {
    let enc = model(&LETTER_MERGES, &["<s>"]);
    let dir = std::env::temp_dir().join(format!("cs336-encode-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.txt"), dir.join("out.npy"));
    let pool = crate::pool::pool(Some(2)).unwrap();
    for text in [
        "从前有一座山，山上有一座庙。\n\n庙里有一个老和尚！".repeat(200),
        "aab ab<s>ba  \n".repeat(300),
        "a".repeat(5000),
    ] {
        std::fs::write(&input, &text).unwrap();
        let mut reports = Vec::new();
        let stats = enc
            .encode_file_in_pieces(&input, &output, &pool, 100, &mut |done| {
                reports.push(done);
                Ok(())
            })
            .unwrap();
        let ids = enc.encode(&text, &Progress::silent()).unwrap();
        let bytes = std::fs::read(&output).unwrap();
        let written: Vec<u32> = bytes[128..]
            .chunks(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        assert_eq!(written, ids);
        assert_eq!(stats.bytes as usize, text.len());
        // One report after each round, and more while a slow round runs (the calling
        // thread reports every CHECK_INTERVAL, so a loaded machine adds some).
        assert!(stats.rounds as usize <= reports.len());
        assert!(reports.windows(2).all(|w| w[0] <= w[1]), "{reports:?}");
        assert_eq!(reports.last().copied(), Some(stats.bytes));
        if !text.starts_with('a') {
            assert!(stats.rounds > 1, "one round for {} bytes", text.len());
        }
    }
    // An error from `report` stops the work and leaves no output.
    std::fs::remove_file(&output).unwrap();
    let stopped = enc.encode_file_in_pieces(&input, &output, &pool, 100, &mut |_| {
        Err(Error::Interrupted)
    });
    assert!(matches!(stopped, Err(Error::Interrupted)));
    assert!(!output.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sparse_ids_are_looked_up_without_a_table_of_the_largest_id() {
    let mut vocab: Vec<(u32, Vec<u8>)> = (0..=255u8).map(|b| (b as u32, vec![b])).collect();
    vocab.push((1 << 30, b"<big>".to_vec()));
    let enc = Encoder::new(&vocab, &[], &[("<big>".to_string(), 1 << 30)], GPT2_PATTERN).unwrap();
    assert_eq!(enc.vocab_size(), 257);
    assert_eq!(enc.max_token_id(), 1 << 30);
    assert_eq!(
        enc.encode("a<big>", &Progress::silent()).unwrap(),
        [97, 1 << 30]
    );
    assert_eq!(enc.decode_bytes(&[1 << 30, 98]).unwrap(), b"<big>b");
    assert!(matches!(
        enc.decode_bytes(&[300]),
        Err(Error::UnknownTokenId {
            id: 300,
            vocab_size: 257
        })
    ));
}

#[test]
fn long_pretokens_bypass_the_cache() {
    let enc = letters_model();
    let long = "ab".repeat(CACHE_MAX_PIECE);
    let mut cache = Cache::default();
    let mut out = Vec::new();
    enc.encode_into(&long, &mut cache, &mut out, &Progress::silent())
        .unwrap();
    assert_eq!(cache.len(), 0);
    enc.encode_into("aab", &mut cache, &mut out, &Progress::silent())
        .unwrap();
    assert_eq!(cache.len(), 1);
}
