//! The one thread-pool policy: a rayon pool per thread count, built on first use and kept
//! for the life of the process, so that repeated calls with `num_threads=n` do not start
//! new threads each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// The pool of `num_threads` threads (one per core when `None`).
pub fn pool(num_threads: Option<usize>) -> Result<Arc<ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let threads = num_threads.unwrap_or_else(|| rayon::current_num_threads().max(1));
    let mut pools = POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cs336-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool {
            threads,
            message: e.to_string(),
        })?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_cached_by_thread_count() {
        let a = pool(Some(3)).unwrap();
        assert_eq!(a.current_num_threads(), 3);
        assert!(Arc::ptr_eq(&a, &pool(Some(3)).unwrap()));
        assert!(!Arc::ptr_eq(&a, &pool(Some(2)).unwrap()));
        assert!(pool(None).unwrap().current_num_threads() >= 1);
    }
}
