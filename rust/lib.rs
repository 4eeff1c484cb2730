//! The fast core of `cs336`: pretokenization, BPE training and BPE encoding.
//!
//! Everything here is plain Rust that knows nothing about Python; the PyO3 bindings live
//! in [`py`] behind the `python` cargo feature, so `cargo test` needs no interpreter.

pub mod corpus;
pub mod encode;
pub mod error;
pub mod npy;
pub mod pretokenize;
pub mod train;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
