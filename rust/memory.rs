//! The extension's allocator: the system's, with an emergency reserve, so that running out
//! of memory in an allocation the code cannot make fallible (a `Vec` grown inside a rayon
//! collect, say) becomes a `MemoryError` instead of an abort.
//!
//! Most allocations sized by the input are fallible (`try_reserve`, see [`crate::error`]).
//! The rest abort the process when the system refuses them (Rust's default), which a memory
//! limit (`ulimit -v`, a container's) makes possible anywhere. [`WithReserve`] holds a block
//! of address space ([`RESERVE_BYTES`], never touched, so no resident memory) taken when a
//! call begins ([`WithReserve::arm`]); when the system refuses an allocation, the block is
//! given back and the allocation tried again, which then succeeds, and the failure is
//! recorded. The bindings' periodic check ([`WithReserve::exhausted`]) then stops the work
//! with [`crate::Error::OutOfMemory`] before a second failure could abort.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Address space kept for the allocations between a refused one and the next check.
pub const RESERVE_BYTES: usize = 32 << 20;

/// `inner` with an emergency reserve (see the module docs).
pub struct WithReserve<A> {
    inner: A,
    reserve: AtomicPtr<u8>,
    /// The size of the first allocation the system refused since [`Self::arm`], plus one
    /// (0: none).
    refused: AtomicUsize,
}

fn reserve_layout() -> Layout {
    Layout::from_size_align(RESERVE_BYTES, 4096).expect("a valid constant layout")
}

impl<A: GlobalAlloc> WithReserve<A> {
    pub const fn new(inner: A) -> Self {
        WithReserve {
            inner,
            reserve: AtomicPtr::new(ptr::null_mut()),
            refused: AtomicUsize::new(0),
        }
    }

    /// Forget earlier failures and take the reserve if it is not held (when it cannot be
    /// taken, allocations behave as the system's).
    pub fn arm(&self) {
        self.refused.store(0, Ordering::SeqCst);
        if !self.reserve.load(Ordering::SeqCst).is_null() {
            return;
        }
        // SAFETY: a valid, non-zero-sized layout.
        let block = unsafe { self.inner.alloc(reserve_layout()) };
        if block.is_null() {
            return;
        }
        let taken = self.reserve.compare_exchange(
            ptr::null_mut(),
            block,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if taken.is_err() {
            // SAFETY: `block` came from `inner.alloc` with this layout and is not shared.
            unsafe { self.inner.dealloc(block, reserve_layout()) };
        }
    }

    /// The size of an allocation the system refused since [`Self::arm`] (served after
    /// the reserve was given back), if any.
    pub fn exhausted(&self) -> Option<usize> {
        self.refused.load(Ordering::SeqCst).checked_sub(1)
    }

    /// Give the reserve back after the system refused `bytes`; false when none was held.
    fn release(&self, bytes: usize) -> bool {
        let _ = self.refused.compare_exchange(
            0,
            bytes.saturating_add(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        let block = self.reserve.swap(ptr::null_mut(), Ordering::SeqCst);
        if block.is_null() {
            return false;
        }
        // SAFETY: `block` came from `inner.alloc` with this layout; the swap made it ours.
        unsafe { self.inner.dealloc(block, reserve_layout()) };
        true
    }

    /// `attempt()`, tried again after the reserve is given back if the system refuses it.
    fn retried(&self, bytes: usize, attempt: impl Fn() -> *mut u8) -> *mut u8 {
        let p = attempt();
        if p.is_null() && self.release(bytes) {
            return attempt();
        }
        p
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments (an allocation is
// only tried a second time after a refusal), so `inner`'s guarantees hold.
unsafe impl<A: GlobalAlloc> GlobalAlloc for WithReserve<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        self.retried(layout.size(), || unsafe { self.inner.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        self.retried(layout.size(), || unsafe { self.inner.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's pointer and layout, from this allocator (that is, `inner`).
        unsafe { self.inner.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's arguments; a refused realloc leaves `p` valid, so it may be
        // tried again.
        self.retried(new_size, || unsafe {
            self.inner.realloc(p, layout, new_size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// The system's allocator, refusing the next `refuse` allocations of at least 1 KiB.
    struct Refusing {
        refuse: AtomicUsize,
    }

    unsafe impl GlobalAlloc for Refusing {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let big = layout.size() >= 1024 && layout.size() != RESERVE_BYTES;
            if big && self.refuse.load(Ordering::SeqCst) > 0 {
                self.refuse.fetch_sub(1, Ordering::SeqCst);
                return ptr::null_mut();
            }
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            unsafe { System.dealloc(p, layout) }
        }
    }

    fn allocator(refuse: usize) -> WithReserve<Refusing> {
        WithReserve::new(Refusing {
            refuse: AtomicUsize::new(refuse),
        })
    }

    #[test]
    fn a_refused_allocation_is_served_once_from_the_reserve_and_reported() {
        let a = allocator(1);
        a.arm();
        let layout = Layout::from_size_align(4096, 8).unwrap();
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(a.exhausted(), Some(4096));
        unsafe { a.dealloc(p, layout) };
        // no reserve left: the next refusal is the system's answer
        a.inner.refuse.store(1, Ordering::SeqCst);
        assert!(unsafe { a.alloc(layout) }.is_null());
        assert_eq!(
            a.exhausted(),
            Some(4096),
            "the first refusal is the one reported"
        );
        // arming again forgets the failure and holds a reserve again
        a.arm();
        assert_eq!(a.exhausted(), None);
        a.inner.refuse.store(1, Ordering::SeqCst);
        let q = unsafe { a.alloc_zeroed(layout) };
        assert!(!q.is_null() && unsafe { *q } == 0);
        unsafe { a.dealloc(q, layout) };
    }

    #[test]
    fn without_a_refusal_nothing_is_reported_and_realloc_keeps_the_bytes() {
        let a = allocator(0);
        a.arm();
        let layout = Layout::from_size_align(2048, 8).unwrap();
        let p = unsafe { a.alloc(layout) };
        unsafe { p.write_bytes(7, 2048) };
        a.inner.refuse.store(1, Ordering::SeqCst); // the realloc's fresh block is refused once
        let q = unsafe { a.realloc(p, layout, 8192) };
        assert!(!q.is_null());
        assert!((0..2048).all(|i| unsafe { *q.add(i) } == 7));
        assert_eq!(a.exhausted(), Some(8192));
        unsafe { a.dealloc(q, Layout::from_size_align(8192, 8).unwrap()) };
        let b = allocator(0);
        b.arm();
        let r = unsafe { b.alloc(layout) };
        assert_eq!(b.exhausted(), None);
        unsafe { b.dealloc(r, layout) };
    }

    #[test]
    fn an_unarmed_allocator_is_the_systems() {
        let a = allocator(1);
        let layout = Layout::from_size_align(4096, 8).unwrap();
        assert!(unsafe { a.alloc(layout) }.is_null());
        assert_eq!(a.exhausted(), Some(4096));
    }
}
