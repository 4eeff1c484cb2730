//! The pretoken cache: ids of pretokens already encoded, and the pool of caches an
//! encoder keeps between calls (one per concurrent caller, never shared by two threads).

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use super::{push, push_one};
use crate::error::{try_reserve, try_reserve_map, Result};

/// A cache is cleared when it holds about this many bytes, which bounds its memory.
const CACHE_MAX_BYTES: usize = 24 << 20;

/// Pretokens longer than this are not cached: they rarely repeat, and a few long ones
/// would fill the cache.
pub(super) const CACHE_MAX_PIECE: usize = 128;

/// The pool keeps at most this many caches more than the machine has cores (more are
/// dropped when given back), which bounds the memory held between calls.
const POOL_EXTRA: usize = 2;

/// Ids of pretokens already encoded (those of 3 to [`CACHE_MAX_PIECE`] bytes). Pretokens
/// of at most 15 bytes, nearly all of them in real text, are keyed inline by their bytes
/// and length (no pointer to follow, no `memcmp`; up to 7 bytes in a `u64`, so that table
/// stays small and in cache); longer ones by their boxed bytes.
#[derive(Debug, Default)]
pub struct Cache {
    tiny: FxHashMap<u64, CachedIds>,
    short: FxHashMap<u128, CachedIds>,
    long: FxHashMap<Box<[u8]>, CachedIds>,
    /// `(start, len)` in `ids` of the entries that encode to more than one token.
    multi: Vec<(u32, u32)>,
    ids: Vec<u32>,
    /// An estimate of the bytes held (entries, keys and ids).
    bytes: usize,
}

/// One token id; two ids `a | b << 31 | TWO` (most pretokens that are not one token are
/// two: kept in the entry, no second lookup); or `MORE | i` for `Cache::multi[i]`.
type CachedIds = u64;
/// Token ids are below this.
pub(super) const MULTI: u32 = 1 << 31;
const TWO: u64 = 1 << 62;
const MORE: u64 = 1 << 63;
const ID: u64 = (1 << 31) - 1;

/// A cache key: a pretoken's bytes and length packed into an integer when they fit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'p> {
    Tiny(u64),
    Short(u128),
    Long(&'p [u8]),
}

impl<'p> Key<'p> {
    /// The key of `piece`, which starts at byte `start` of `text`. The bytes are loaded as
    /// one word from `text` when it extends far enough, and masked to the piece.
    pub(super) fn new(text: &[u8], start: usize, piece: &'p [u8]) -> Self {
        let len = piece.len();
        if len <= 7 {
            let mut buf = [0u8; 8];
            match text.get(start..start + 8) {
                Some(word) => buf.copy_from_slice(word),
                None => buf[..len].copy_from_slice(piece),
            }
            let bytes = u64::from_le_bytes(buf) & ((1u64 << (8 * len)) - 1);
            Key::Tiny(bytes | (len as u64) << 56)
        } else if len <= 15 {
            let mut buf = [0u8; 16];
            match text.get(start..start + 16) {
                Some(word) => buf.copy_from_slice(word),
                None => buf[..len].copy_from_slice(piece),
            }
            let bytes = u128::from_le_bytes(buf) & ((1u128 << (8 * len)) - 1);
            Key::Short(bytes | (len as u128) << 120)
        } else {
            Key::Long(piece)
        }
    }
}

impl Cache {
    /// The number of pretokens cached (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tiny.len() + self.short.len() + self.long.len()
    }

    fn clear(&mut self) {
        self.tiny.clear();
        self.short.clear();
        self.long.clear();
        self.multi.clear();
        self.ids.clear();
        self.bytes = 0;
    }

    /// Append the cached ids of `key` to `out`; false when it is not cached.
    pub(super) fn extend(&self, key: Key<'_>, out: &mut Vec<u32>) -> Result<bool> {
        let found = match key {
            Key::Tiny(k) => self.tiny.get(&k),
            Key::Short(k) => self.short.get(&k),
            Key::Long(piece) => self.long.get(piece),
        };
        match found {
            None => Ok(false),
            Some(&v) if v & (TWO | MORE) == 0 => push_one(out, v as u32).map(|()| true),
            Some(&v) if v & TWO != 0 => {
                push(out, &[(v & ID) as u32, (v >> 31 & ID) as u32]).map(|()| true)
            }
            Some(&v) => {
                let (start, len) = self.multi[(v & !MORE) as usize];
                let ids = &self.ids[start as usize..(start + len) as usize];
                push(out, ids).map(|()| true)
            }
        }
    }

    /// Remember that `key` encodes to `ids` (clearing the cache first when it is full).
    pub(super) fn insert(&mut self, key: Key<'_>, ids: &[u32]) -> Result<()> {
        let entry_bytes = match key {
            Key::Tiny(_) => 24,
            Key::Short(_) => 40,
            Key::Long(piece) => 48 + piece.len(),
        } + if ids.len() > 2 { 8 + 4 * ids.len() } else { 0 };
        if self.bytes + entry_bytes > CACHE_MAX_BYTES
            || self.ids.len() + ids.len() > u32::MAX as usize
            || self.multi.len() >= u32::MAX as usize
        {
            self.clear();
        }
        self.bytes += entry_bytes;
        let value = match *ids {
            [id] => u64::from(id),
            [a, b] => u64::from(a) | u64::from(b) << 31 | TWO,
            _ => {
                let start = self.ids.len() as u32;
                push(&mut self.ids, ids)?;
                try_reserve(&mut self.multi, 1)?;
                self.multi.push((start, ids.len() as u32));
                MORE | (self.multi.len() - 1) as u64
            }
        };
        match key {
            Key::Tiny(k) => {
                try_reserve_map(&mut self.tiny, 1)?;
                self.tiny.insert(k, value);
            }
            Key::Short(k) => {
                try_reserve_map(&mut self.short, 1)?;
                self.short.insert(k, value);
            }
            Key::Long(piece) => {
                try_reserve_map(&mut self.long, 1)?;
                let mut boxed = Vec::new();
                try_reserve(&mut boxed, piece.len())?;
                boxed.extend_from_slice(piece);
                self.long.insert(boxed.into_boxed_slice(), value);
            }
        }
        Ok(())
    }
}

/// The caches an [`Encoder`](super::Encoder) keeps between calls, at most the number of
/// cores plus [`POOL_EXTRA`]. Taking and giving back lock the pool briefly, once per call
/// (or per thread of a parallel call), never during encoding.
#[derive(Debug)]
pub(super) struct CachePool {
    caches: Mutex<Vec<Cache>>,
    pub(super) max_len: usize,
}

impl CachePool {
    pub(super) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CachePool {
            caches: Mutex::new(Vec::new()),
            max_len: cores + POOL_EXTRA,
        }
    }

    /// A cache for the caller's own use, given back when the guard drops: the most
    /// recently given back (the warmest), or a new empty one.
    pub(super) fn take(&self) -> PooledCache<'_> {
        let cache = self.lock().pop().unwrap_or_default();
        PooledCache { pool: self, cache }
    }

    fn give_back(&self, cache: Cache) {
        let mut caches = self.lock();
        if caches.len() < self.max_len {
            caches.push(cache);
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Cache>> {
        // A panic while the lock is held cannot leave the list half-changed.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`Cache`] taken from a [`CachePool`]; goes back to it on drop.
pub(super) struct PooledCache<'p> {
    pool: &'p CachePool,
    cache: Cache,
}

impl Deref for PooledCache<'_> {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        &self.cache
    }
}

impl DerefMut for PooledCache<'_> {
    fn deref_mut(&mut self) -> &mut Cache {
        &mut self.cache
    }
}

impl Drop for PooledCache<'_> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.cache));
    }
}

/// One pooled [`Cache`] per thread of a rayon pool, held for a whole parallel call so that
/// each thread keeps its cache across work items.
pub(super) struct ThreadCaches<'p>(Vec<Mutex<PooledCache<'p>>>);

impl<'p> ThreadCaches<'p> {
    pub(super) fn new(pool: &'p CachePool, threads: usize) -> Self {
        ThreadCaches(
            (0..threads.max(1))
                .map(|_| Mutex::new(pool.take()))
                .collect(),
        )
    }

    /// The calling thread's cache (uncontended: one lock per thread).
    pub(super) fn get(&self) -> MutexGuard<'_, PooledCache<'p>> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}
