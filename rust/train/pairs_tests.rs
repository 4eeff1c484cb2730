//! Tests of the pair table and the initial pairs (`train/pairs.rs`).

use super::*;
use crate::pool::pool;

fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn block_lists_keep_order_and_drop_repeats() {
    let mut list = BlockList::default();
    for b in [1, 1, 2, 3, 3, 4, 5, 6, 7, 2] {
        list.push(b).unwrap();
    }
    assert_eq!(list.into_sorted().unwrap(), [1, 2, 3, 4, 5, 6, 7]);
    let mut small = BlockList::default();
    small.push(9).unwrap();
    small.push(4).unwrap();
    assert_eq!(small.into_sorted().unwrap(), [4, 9]);
    let mut zero = BlockList::default();
    zero.push(0).unwrap();
    zero.push(0).unwrap();
    assert_eq!(zero.into_sorted().unwrap(), [0]);
}

#[test]
fn block_lists_hold_any_blocks_in_runs() {
    let mut rand = xorshift(0x1234_5678_9abc_def1);
    for round in 0..200 {
        let mut list = BlockList::default();
        let mut pushed = Vec::new();
        // Sorted runs of small and huge steps, as merge steps add them.
        for _ in 0..rand() % 6 {
            let mut block = (rand() % u64::from(u32::MAX)) as u32 >> (rand() % 32);
            for _ in 0..rand() % 40 {
                list.push(block).unwrap();
                pushed.push(block);
                let step = (rand() % 300) as u32 >> (rand() % 9);
                block = block.saturating_add(step);
            }
        }
        pushed.sort_unstable();
        pushed.dedup();
        assert_eq!(list.into_sorted().unwrap(), pushed, "round {round}");
    }
    for delta in [
        0,
        1,
        -1,
        63,
        64,
        -64,
        -65,
        8191,
        8192,
        i64::from(u32::MAX),
        -(1 << 40),
    ] {
        let mut code = [0u8; 10];
        assert_eq!(encode(delta, &mut code), encoded_len(delta), "{delta}");
    }
}

#[test]
fn initial_pairs_count_and_list_every_pair_for_any_thread_count() {
    let mut rand = xorshift(0x0dd0_feed_5eed_1234);
    let mut words = Words::<u16>::default();
    let mut texts = Vec::new();
    for _ in 0..300 {
        let len = 2 + (rand() % 100) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| b"abc\xff"[(rand() % 4) as usize])
            .collect();
        let count = 1 + rand() % 5;
        words.push(&bytes, count).unwrap();
        texts.push((bytes, count));
    }
    // The reference: every pair of every word, with the block of its left byte.
    let mut expected: FxHashMap<Pair, (i64, Vec<u32>)> = FxHashMap::default();
    let mut block = 0u32;
    for (bytes, count) in &texts {
        let first = block;
        for (i, w) in bytes.windows(2).enumerate() {
            let e = expected
                .entry((u32::from(w[0]), u32::from(w[1])))
                .or_default();
            e.0 += *count as i64;
            e.1.push(first + (i / super::super::words::BLOCK) as u32);
        }
        block += bytes.len().div_ceil(super::super::words::BLOCK) as u32;
    }
    for threads in 1..=3 {
        let table = initial_pairs(&words, &pool(Some(threads)).unwrap()).unwrap();
        assert_eq!(table.num_pairs(), expected.len());
        for (pair, (count, blocks)) in &expected {
            let info = table.get(pair).unwrap();
            assert_eq!(info.count, *count);
            let mut blocks = blocks.clone();
            blocks.dedup();
            assert_eq!(
                info.blocks.clone().into_sorted().unwrap(),
                blocks,
                "{pair:?}"
            );
        }
    }
}
