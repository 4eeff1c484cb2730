//! The fast core of `cs336`: pretokenization, BPE training and BPE encoding.
//!
//! Everything here is plain Rust that knows nothing about Python; the PyO3 bindings live
//! in [`py`] behind the `python` cargo feature, so `cargo test` needs no interpreter.
//! [`boundary`] holds the one rule for cutting text into independent pieces, [`pool`] the
//! one thread-pool policy, [`progress`] the progress and cancellation hook that every
//! long call takes, and [`memory`] the allocator that turns running out of memory into an
//! error.

pub mod boundary;
pub mod encode;
pub mod error;
pub mod io;
pub mod memory;
pub mod pool;
pub mod pretokenize;
pub mod progress;
pub mod train;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
