//! The progress and cancellation hook of long calls.
//!
//! Every entry point that can run for long takes a [`Progress`]: it prints optional
//! progress lines on stderr and, now and then, calls the caller's check (in the Python
//! bindings: `PyErr_CheckSignals`, so Ctrl-C works). The check is only ever called on the
//! thread that made the call, never on a pool thread, because Python runs signal handlers
//! on the main thread only; parallel work runs in short rounds between checks.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::Result;

/// At most this long passes between two calls of the check while work goes on.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Calls a stop check at most every [`CHECK_INTERVAL`], and prints progress lines.
pub struct Progress<'a> {
    start: Instant,
    /// The prefix of progress lines, or `None` for no lines.
    lines: Option<&'static str>,
    check: &'a dyn Fn() -> Result<()>,
    next_check: Cell<Instant>,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

fn never_stop() -> Result<()> {
    Ok(())
}

impl<'a> Progress<'a> {
    /// Call `check` now and then; an error it returns stops the work and is returned.
    /// Progress lines go to stderr, prefixed with `lines`, when it is `Some`.
    pub fn new(lines: Option<&'static str>, check: &'a dyn Fn() -> Result<()>) -> Self {
        let now = Instant::now();
        Progress {
            start: now,
            lines,
            check,
            next_check: Cell::new(now + CHECK_INTERVAL),
        }
    }

    /// No lines and no check: for work that cannot be interrupted (and tests).
    pub fn silent() -> Progress<'static> {
        Progress::new(None, &never_stop)
    }

    /// Call the check if [`CHECK_INTERVAL`] has passed since the last call. Cheap enough
    /// to call every few microseconds of work (one clock read).
    #[inline]
    pub fn poll(&self) -> Result<()> {
        let now = Instant::now();
        if now < self.next_check.get() {
            return Ok(());
        }
        self.next_check.set(now + CHECK_INTERVAL);
        (self.check)()
    }

    /// Call the check now.
    pub fn check(&self) -> Result<()> {
        self.next_check.set(Instant::now() + CHECK_INTERVAL);
        (self.check)()
    }

    /// Print `message` with the elapsed time, if lines are enabled.
    pub fn report(&self, message: impl FnOnce() -> String) {
        if let Some(prefix) = self.lines {
            eprintln!(
                "[{prefix} {:7.2}s] {}",
                self.start.elapsed().as_secs_f64(),
                message()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn check_runs_at_most_every_interval_and_its_error_stops() {
        let calls = Cell::new(0);
        let check = || {
            calls.set(calls.get() + 1);
            Err(Error::Interrupted)
        };
        let progress = Progress::new(None, &check);
        assert!(progress.poll().is_ok(), "too early for the first check");
        std::thread::sleep(CHECK_INTERVAL);
        assert!(matches!(progress.poll(), Err(Error::Interrupted)));
        assert!(progress.poll().is_ok());
        assert!(progress.check().is_err());
        assert_eq!(calls.get(), 2);
    }
}
