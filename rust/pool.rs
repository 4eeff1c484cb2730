//! The one thread-pool policy: a rayon pool per thread count, built on first use and kept
//! for the life of the process, so that repeated calls with `num_threads=n` do not start
//! new threads each time; and [`install_polled`], the one way parallel work keeps the
//! calling thread checking for Ctrl-C while it waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

use crate::error::{Error, Result};
use crate::progress::CHECK_INTERVAL;

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

/// Set by the calling thread when its check fails; parallel work tests it between items
/// (and long items poll it through [`Cancel::check`]) to stop early.
#[derive(Debug, Default)]
pub struct Cancel(AtomicBool);

impl Cancel {
    /// `Err(Interrupted)` once the work has been told to stop.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Run `work` on `pool` while the calling thread calls `check` every
/// [`CHECK_INTERVAL`] (in the bindings: Python's signal handlers, which run only on the
/// thread that made the call). When `check` fails, `work`'s [`Cancel`] is set, the work is
/// awaited (it stops at its next test of the token) and `check`'s error is returned. A
/// panic in `work` comes out on the calling thread, as with `pool.install`.
pub fn install_polled<T, W>(
    pool: &ThreadPool,
    check: &mut dyn FnMut() -> Result<()>,
    work: W,
) -> Result<T>
where
    T: Send,
    W: FnOnce(&Cancel) -> Result<T> + Send,
{
    let cancel = Cancel::default();
    let (done, result) = sync_channel(1);
    let mut stopped = None;
    let finished = pool.in_place_scope(|scope| {
        let cancel = &cancel;
        scope.spawn(move |_| {
            // The receiver outlives the scope, so this cannot fail.
            let _ = done.send(work(cancel));
        });
        loop {
            match result.recv_timeout(CHECK_INTERVAL) {
                Ok(finished) => return Some(finished),
                Err(RecvTimeoutError::Timeout) if stopped.is_none() => {
                    if let Err(e) = check() {
                        cancel.stop();
                        stopped = Some(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // `work` panicked: leaving the scope re-raises the panic here.
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    });
    match (stopped, finished) {
        (Some(e), _) => Err(e),
        (None, Some(finished)) => finished,
        (None, None) => unreachable!("the scope re-raises the work's panic"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn polled_work_returns_its_result_and_checks_while_it_runs() {
        let pool = pool(Some(2)).unwrap();
        let mut checks = 0;
        let out = install_polled(
            &pool,
            &mut || {
                checks += 1;
                Ok(())
            },
            |_| {
                std::thread::sleep(CHECK_INTERVAL * 5);
                Ok(7)
            },
        );
        assert_eq!(out.unwrap(), 7);
        assert!(checks >= 2, "{checks} checks in 5 intervals");
    }

    #[test]
    fn a_failed_check_stops_the_work_and_its_error_comes_out() {
        let pool = pool(Some(2)).unwrap();
        let start = Instant::now();
        let mut calls = 0;
        let out: Result<()> = install_polled(
            &pool,
            &mut || {
                calls += 1;
                if calls == 2 {
                    Err(Error::OutOfMemory { bytes: 1 })
                } else {
                    Ok(())
                }
            },
            |cancel| loop {
                if cancel.check().is_err() {
                    // Slow to wind down: the caller must not check again meanwhile.
                    std::thread::sleep(CHECK_INTERVAL * 4);
                    return Err(Error::Interrupted);
                }
                assert!(start.elapsed() < Duration::from_secs(20), "never cancelled");
                std::thread::sleep(Duration::from_millis(1));
            },
        );
        assert!(
            matches!(out, Err(Error::OutOfMemory { bytes: 1 })),
            "{out:?}"
        );
        assert_eq!(calls, 2, "no check after the failed one");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn the_works_own_error_comes_out_when_no_check_failed() {
        let pool = pool(Some(1)).unwrap();
        let out: Result<()> = install_polled(&pool, &mut || Ok(()), |_| Err(Error::Interrupted));
        assert!(matches!(out, Err(Error::Interrupted)));
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_in_the_work_comes_out_on_the_caller() {
        let pool = pool(Some(1)).unwrap();
        let _: Result<()> = install_polled(&pool, &mut || Ok(()), |_| panic!("boom"));
    }

    #[test]
    fn pools_are_cached_by_thread_count() {
        let a = pool(Some(3)).unwrap();
        assert_eq!(a.current_num_threads(), 3);
        assert!(Arc::ptr_eq(&a, &pool(Some(3)).unwrap()));
        assert!(!Arc::ptr_eq(&a, &pool(Some(2)).unwrap()));
        assert!(pool(None).unwrap().current_num_threads() >= 1);
    }
}
