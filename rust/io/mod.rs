//! Files: reading text in blocks ([`blocks`]), writing `.npy` arrays ([`npy`]) and
//! replacing a file only once it is complete ([`atomic`]).

pub mod atomic;
pub mod blocks;
pub mod npy;
