//! The counting table: how often each distinct pretoken occurs, keyed by its bytes; made
//! for counting billions of pretokens into millions of entries.
//!
//! Every entry is one 32-byte slot (two per cache line) holding the length, the hash, the
//! count and, for a key of at most [`INLINE`] bytes (nearly every pretoken of text with
//! spaces), the key itself; a longer key keeps its first 8 bytes in the slot and the rest
//! in one shared buffer. So a lookup reads one cache line in the common case and never
//! follows a pointer for a short key, and a caller that knows its next keys prefetches
//! their slots ([`Table::prefetch`]) so that the cache misses of a batch overlap. Open
//! addressing with linear probing, at most 11/16 full.

use crate::error::{try_reserve, Error, Result};

/// Keys of at most this many bytes are stored in their slot.
pub const INLINE: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    /// The key's length; 0 marks an empty slot (pretokens are never empty).
    len: u32,
    /// The low 32 bits of the key's hash (the table never has more than 2^32 slots).
    hash: u32,
    count: u64,
    /// The key's first 8 bytes (little-endian, zero-padded).
    a: u64,
    /// Bytes 8..16 of an inline key, else the offset of the key in [`Table::long`].
    b: u64,
}

/// A key ready for lookups: its bytes, hash and first 16 bytes as two words.
#[derive(Debug, Clone, Copy)]
pub struct Key<'k> {
    bytes: &'k [u8],
    hash: u64,
    a: u64,
    b: u64,
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The 128-bit product of `x` and `y`, folded to 64 bits (wyhash's mixing step).
#[inline(always)]
fn fold(x: u64, y: u64) -> u64 {
    let p = u128::from(x) * u128::from(y);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The first 16 bytes of `bytes` (zero-padded) as two little-endian words.
#[inline(always)]
fn words(bytes: &[u8]) -> (u64, u64) {
    let mut buf = [0u8; 16];
    let n = bytes.len().min(16);
    buf[..n].copy_from_slice(&bytes[..n]);
    let w = u128::from_le_bytes(buf);
    (w as u64, (w >> 64) as u64)
}

impl<'k> Key<'k> {
    /// The key of `bytes`.
    pub fn new(bytes: &'k [u8]) -> Self {
        let (a, b) = words(bytes);
        Key::with_words(bytes, a, b)
    }

    /// The key of `bytes`, which start at byte `start` of `text`: when `text` extends 16
    /// bytes past `start`, the first words are loaded from it at once and masked.
    #[inline(always)]
    pub fn in_text(text: &[u8], start: usize, bytes: &'k [u8]) -> Self {
        let len = bytes.len();
        match text.get(start..start + 16) {
            Some(window) => {
                let mut buf = [0u8; 16];
                buf.copy_from_slice(window);
                let mut w = u128::from_le_bytes(buf);
                if len < 16 {
                    w &= (1u128 << (8 * len)) - 1;
                }
                Key::with_words(bytes, w as u64, (w >> 64) as u64)
            }
            None => Key::new(bytes),
        }
    }

    #[inline(always)]
    fn with_words(bytes: &'k [u8], a: u64, b: u64) -> Self {
        let len = bytes.len() as u64;
        let hash = if bytes.len() <= INLINE {
            fold(fold(a ^ P0, b ^ P1) ^ len, P2)
        } else {
            let mut h = fold(a ^ P0, b ^ P1);
            let mut rest = &bytes[16..];
            while rest.len() > 16 {
                let (x, y) = words(rest);
                h = fold(x ^ P0, y ^ P1 ^ h);
                rest = &rest[16..];
            }
            // The last 16 bytes (overlapping what came before).
            let (x, y) = words(&bytes[bytes.len() - 16..]);
            fold(fold(x ^ P0, y ^ P1 ^ h) ^ len, P2)
        };
        let b = if bytes.len() <= INLINE { b } else { 0 };
        Key { bytes, hash, a, b }
    }
}

/// Pretoken counts; see the module docs.
#[derive(Debug, Default)]
pub struct Table {
    /// A power of two of slots, or none.
    slots: Vec<Slot>,
    len: usize,
    /// The bytes of the keys longer than [`INLINE`].
    long: Vec<u8>,
}

/// Hint the CPU to load the cache line of `slot`.
#[inline(always)]
fn prefetch(slot: &Slot) {
    // SAFETY: SSE is part of every x86-64 CPU, and a prefetch never faults or changes
    // memory (it is a hint; the address is that of a live slot anyway).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (slot as *const Slot).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Ask the kernel to back the (not yet touched) capacity of `v` with 2 MB pages when it
/// spans some: lookups at random places of a table of 100 MB miss the TLB with 4 KB pages.
fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if from < to {
            // SAFETY: the range lies inside the allocation of `v`, which this process owns;
            // the advice changes how pages are backed, never their contents. Failure (THP
            // disabled) is harmless and ignored.
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

impl Table {
    /// The number of distinct keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start loading the slot where a lookup of `key` begins.
    #[inline(always)]
    pub fn prefetch(&self, key: &Key<'_>) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[key.hash as usize & (self.slots.len() - 1)]);
        }
    }

    /// The index of `key`'s slot, or of the empty slot where it would go.
    #[inline(always)]
    fn probe(&self, key: &Key<'_>) -> usize {
        let mask = self.slots.len() - 1;
        let (len, hash) = (key.bytes.len() as u32, key.hash as u32);
        let mut i = hash as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.len == 0
                || (s.len == len
                    && s.hash == hash
                    && s.a == key.a
                    && if key.bytes.len() <= INLINE {
                        s.b == key.b
                    } else {
                        let at = s.b as usize;
                        self.long[at..at + key.bytes.len()] == *key.bytes
                    })
            {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Add `count` to `key`'s count, adding the key when it is missing.
    #[inline]
    pub fn add(&mut self, key: &Key<'_>, count: u64) -> Result<()> {
        if (self.len + 1) * 16 > self.slots.len() * 11 {
            self.grow()?;
        }
        let i = self.probe(key);
        if self.slots[i].len != 0 {
            self.slots[i].count += count;
            return Ok(());
        }
        let len = u32::try_from(key.bytes.len()).map_err(|_| Error::TooLarge {
            what: "a pretoken is longer than 4 GiB",
            limit: u64::from(u32::MAX),
        })?;
        let b = if key.bytes.len() <= INLINE {
            key.b
        } else {
            try_reserve(&mut self.long, key.bytes.len())?;
            let at = self.long.len() as u64;
            self.long.extend_from_slice(key.bytes);
            at
        };
        self.slots[i] = Slot {
            len,
            hash: key.hash as u32,
            count,
            a: key.a,
            b,
        };
        self.len += 1;
        Ok(())
    }

    /// Add `count` to `key`'s count if the key is in the table; false if it is not.
    pub fn add_existing(&mut self, key: &Key<'_>, count: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let i = self.probe(key);
        let found = self.slots[i].len != 0;
        if found {
            self.slots[i].count += count;
        }
        found
    }

    /// Double the slots (1024 at first) and place every key again.
    fn grow(&mut self) -> Result<()> {
        let slots = (self.slots.len() * 2).max(1024);
        if slots > 1 << 32 {
            return Err(Error::TooLarge {
                what: "the trainer counts at most 2^31 distinct pretokens",
                limit: 1 << 31,
            });
        }
        let mut new = Vec::new();
        new.try_reserve_exact(slots)
            .map_err(|_| Error::OutOfMemory {
                bytes: slots * std::mem::size_of::<Slot>(),
            })?;
        advise_huge_pages(&new);
        new.resize(slots, Slot::default());
        let mask = slots - 1;
        for s in self.slots.iter().filter(|s| s.len != 0) {
            let mut i = s.hash as usize & mask;
            while new[i].len != 0 {
                i = (i + 1) & mask;
            }
            new[i] = *s;
        }
        self.slots = new;
        Ok(())
    }

    /// Call `f(key, count)` for every key.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u64) -> Result<()>) -> Result<()> {
        for s in self.slots.iter().filter(|s| s.len != 0) {
            let len = s.len as usize;
            if len <= INLINE {
                let bytes = (u128::from(s.a) | (u128::from(s.b) << 64)).to_le_bytes();
                f(&bytes[..len], s.count)?;
            } else {
                let at = s.b as usize;
                f(&self.long[at..at + len], s.count)?;
            }
        }
        Ok(())
    }
}

/// The counts of one run, as several tables (one per counting thread) that may share
/// keys.
#[derive(Debug, Default)]
pub struct Counts {
    tables: Vec<Table>,
}

impl Counts {
    pub fn new(tables: Vec<Table>) -> Self {
        Counts { tables }
    }

    /// Call `f(pretoken, count)` once for every distinct pretoken with its total count, in
    /// no particular order, freeing each table as soon as it is done; returns the number of
    /// distinct pretokens. Tables are taken last to first; a key also in an earlier table
    /// adds its count there, so it is reported once, from the first table that holds it.
    pub fn drain(mut self, mut f: impl FnMut(&[u8], u64) -> Result<()>) -> Result<usize> {
        let mut distinct = 0;
        while let Some(table) = self.tables.pop() {
            table.for_each(|bytes, count| {
                let key = Key::new(bytes);
                if self.tables.iter_mut().any(|t| t.add_existing(&key, count)) {
                    return Ok(());
                }
                distinct += 1;
                f(bytes, count)
            })?;
        }
        Ok(distinct)
    }

    /// The counts as a sorted list (for tests).
    #[cfg(test)]
    pub fn sorted(self) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        self.drain(|bytes, count| {
            out.push((bytes.to_vec(), count));
            Ok(())
        })
        .unwrap();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn counts_like_a_map_across_growth_and_key_lengths() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut table = Table::default();
        let mut expected: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        // Keys of every length around the inline limit, many sharing their first bytes.
        let text: Vec<u8> = (0..4000).map(|_| b"ab\0"[(rand() % 3) as usize]).collect();
        for _ in 0..20_000 {
            let start = (rand() % 3000) as usize;
            let len = 1 + (rand() % 40) as usize;
            let bytes = &text[start..start + len];
            let key = if rand() % 2 == 0 {
                Key::new(bytes)
            } else {
                Key::in_text(&text, start, bytes)
            };
            table.prefetch(&key);
            table.add(&key, 2).unwrap();
            *expected.entry(bytes.to_vec()).or_default() += 2;
        }
        assert_eq!(table.len(), expected.len());
        let mut got = BTreeMap::new();
        table
            .for_each(|bytes, count| {
                assert!(got.insert(bytes.to_vec(), count).is_none());
                Ok(())
            })
            .unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn keys_equal_in_their_first_16_bytes_stay_apart() {
        let mut table = Table::default();
        for key in [
            &b"0123456789abcdefX"[..],
            b"0123456789abcdefY",
            b"0123456789abcdef",
        ] {
            table.add(&Key::new(key), 1).unwrap();
        }
        table.add(&Key::new(b"0123456789abcdefY"), 5).unwrap();
        assert_eq!(
            Counts::new(vec![table]).sorted(),
            [
                (b"0123456789abcdef".to_vec(), 1),
                (b"0123456789abcdefX".to_vec(), 1),
                (b"0123456789abcdefY".to_vec(), 6),
            ]
        );
    }

    #[test]
    fn drain_reports_each_key_once_with_its_total() {
        let words: [&[u8]; 4] = [b"a", b"bb", b"a very long pretoken indeed", b"c"];
        let mut tables = vec![Table::default(), Table::default(), Table::default()];
        // a: tables 0, 1, 2; bb: 1, 2; long: 0, 2; c: 2 only.
        for (t, w, n) in [(0, 0, 1), (1, 0, 2), (2, 0, 4), (1, 1, 8), (2, 1, 16)] {
            tables[t].add(&Key::new(words[w]), n).unwrap();
        }
        for (t, w, n) in [(0, 2, 32), (2, 2, 64), (2, 3, 128)] {
            tables[t].add(&Key::new(words[w]), n).unwrap();
        }
        let counts = Counts::new(tables);
        assert_eq!(
            counts.sorted(),
            [
                (b"a".to_vec(), 7),
                (b"a very long pretoken indeed".to_vec(), 96),
                (b"bb".to_vec(), 24),
                (b"c".to_vec(), 128),
            ]
        );
    }
}
