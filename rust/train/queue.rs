//! The trainer's priority queue of candidate pairs: a binary max-heap of `(count, pair)`
//! that compares ties through the tokens' bytes (16 bytes an entry, no copies of the
//! bytes).

use super::words::Pair;
use crate::error::{Error, Result};

/// A max-heap of `(count, pair)`; see [`greater`] for the order.
#[derive(Debug, Default)]
pub struct Queue {
    entries: Vec<(u64, Pair)>,
}

/// The order: "the most frequent pair wins; ties go to the lexicographically greater
/// pair, compared as (bytes, bytes)", then (for two pairs of equal bytes, possible when
/// two merges made the same token) the greater ids.
fn greater(a: &(u64, Pair), b: &(u64, Pair), tokens: &[Vec<u8>]) -> bool {
    let bytes = |p: Pair| (&tokens[p.0 as usize][..], &tokens[p.1 as usize][..]);
    (a.0, bytes(a.1), a.1) > (b.0, bytes(b.1), b.1)
}

impl Queue {
    /// Make room for `additional` more entries, fallibly.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        self.entries
            .try_reserve(additional)
            .map_err(|_| Error::OutOfMemory {
                bytes: additional * std::mem::size_of::<(u64, Pair)>(),
            })
    }

    /// Add `pair` with `count`.
    pub fn push(&mut self, count: u64, pair: Pair, tokens: &[Vec<u8>]) -> Result<()> {
        if self.entries.len() == self.entries.capacity() {
            self.reserve(self.entries.len().max(64))?;
        }
        self.entries.push((count, pair));
        let mut i = self.entries.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !greater(&self.entries[i], &self.entries[parent], tokens) {
                break;
            }
            self.entries.swap(i, parent);
            i = parent;
        }
        Ok(())
    }

    /// The greatest entry.
    pub fn peek(&self) -> Option<(u64, Pair)> {
        self.entries.first().copied()
    }

    /// Remove and return the greatest entry.
    pub fn pop(&mut self, tokens: &[Vec<u8>]) -> Option<(u64, Pair)> {
        let last = self.entries.pop()?;
        if self.entries.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.entries[0], last);
        let n = self.entries.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < n && greater(&self.entries[l], &self.entries[best], tokens) {
                best = l;
            }
            if r < n && greater(&self.entries[r], &self.entries[best], tokens) {
                best = r;
            }
            if best == i {
                return Some(top);
            }
            self.entries.swap(i, best);
            i = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_count_then_greater_bytes() {
        let tokens: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec(), b"ab".to_vec()];
        let mut queue = Queue::default();
        let entries = [
            (3, (0, 1)),
            (5, (0, 0)),
            (3, (1, 0)),
            (3, (2, 0)),
            (1, (1, 1)),
        ];
        for &(count, pair) in &entries {
            queue.push(count, pair, &tokens).unwrap();
        }
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(&tokens)).collect();
        // Among the 3s: ("b", "a") > ("ab", "a") > ("a", "b").
        assert_eq!(
            order,
            [
                (5, (0, 0)),
                (3, (1, 0)),
                (3, (2, 0)),
                (3, (0, 1)),
                (1, (1, 1))
            ]
        );
    }
}
