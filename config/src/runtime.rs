//! The thread count in `TOKIO_WORKER_THREADS`: the worker's tokio worker threads, and the
//! ingest's lanes while `ingest.threads` is 0 (without it: one per CPU the process may use).
//!
//! The binaries read and check that variable here, before anything starts, and hand the number
//! to their runtime builder, so tokio never parses it itself: it would panic (exit status 101,
//! which systemd's `Restart=on-failure` repeats every 2 s) on 0 or a non-number, and start any
//! number of threads it is given.

use std::ffi::OsStr;

use crate::ConfigError;

/// The environment variable, tokio's own name for it.
pub const WORKER_THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// Most worker threads accepted: far more than any host's cores, small enough that a typo
/// does not start tens of thousands of threads.
pub const MAX_WORKER_THREADS: usize = 1024;

/// `Ok(None)` when the variable is unset (tokio's default), `Ok(Some(n))` for a whole number
/// from 1 to [`MAX_WORKER_THREADS`] (blanks around it allowed), otherwise why it is refused.
pub fn worker_threads(value: Option<&OsStr>) -> Result<Option<usize>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let refused = || ConfigError::Syntax {
        what: format!("{WORKER_THREADS_ENV} = {:?}", value.to_string_lossy()),
        problem: format!(
            "the number of worker threads must be a whole number from 1 to {MAX_WORKER_THREADS}"
        ),
    };
    match value.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if (1..=MAX_WORKER_THREADS).contains(&n) => Ok(Some(n)),
        _ => Err(refused()),
    }
}

/// [`worker_threads`] of this process' `TOKIO_WORKER_THREADS`.
pub fn worker_threads_from_env() -> Result<Option<usize>, ConfigError> {
    worker_threads(std::env::var_os(WORKER_THREADS_ENV).as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(value: &str) -> Result<Option<usize>, String> {
        worker_threads(Some(OsStr::new(value))).map_err(|e| e.to_string())
    }

    #[test]
    fn unset_is_the_default_and_whole_numbers_are_taken() {
        assert_eq!(worker_threads(None).ok(), Some(None));
        assert_eq!(threads("1"), Ok(Some(1)));
        assert_eq!(threads(" 4\n"), Ok(Some(4)));
        assert_eq!(threads("1024"), Ok(Some(1024)));
    }

    #[test]
    fn unusable_or_out_of_range_values_are_refused_with_the_reason() {
        for bad in [
            "0",
            "",
            "two",
            "-1",
            "1.5",
            "1025",
            "99999999999999999999999",
        ] {
            let error = threads(bad).expect_err(bad);
            assert_eq!(
                error,
                format!(
                    "config error: TOKIO_WORKER_THREADS = {bad:?}: the number of worker threads \
                     must be a whole number from 1 to 1024"
                )
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let error = worker_threads(Some(OsStr::from_bytes(b"\xff2"))).unwrap_err();
        assert!(error.to_string().contains("whole number"), "{error}");
    }
}
