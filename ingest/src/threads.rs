//! The node's worker-thread count. The runtime reads it from tokio's own variable,
//! `TOKIO_WORKER_THREADS`, which `docs/operations.md` offers operators; it is checked here
//! before the runtime is built, because tokio panics on a value it cannot use.

use std::ffi::OsStr;

/// The environment variable, tokio's name for it.
pub const ENV: &str = "TOKIO_WORKER_THREADS";

/// Most worker threads accepted: far more than any host's cores, small enough that a typo
/// does not start tens of thousands of threads.
pub const MAX: usize = 1024;

/// `Ok(None)` when the variable is unset (one worker per CPU the process may use, tokio's
/// default), `Ok(Some(n))` for a whole number from 1 to [`MAX`] (blanks around it allowed),
/// and otherwise why the value is refused.
pub fn worker_threads(value: Option<&OsStr>) -> Result<Option<usize>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let refused = || {
        format!(
            "{ENV} = {:?}: the number of worker threads must be a whole number from 1 to {MAX}",
            value.to_string_lossy()
        )
    };
    let n: usize = value
        .to_str()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(refused)?;
    if (1..=MAX).contains(&n) {
        Ok(Some(n))
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(value: &str) -> Result<Option<usize>, String> {
        worker_threads(Some(OsStr::new(value)))
    }

    #[test]
    fn unset_is_the_default_and_whole_numbers_are_taken() {
        assert_eq!(worker_threads(None), Ok(None));
        assert_eq!(threads("1"), Ok(Some(1)));
        assert_eq!(threads(" 4\n"), Ok(Some(4)));
        assert_eq!(threads("1024"), Ok(Some(1024)));
    }

    #[test]
    fn values_tokio_would_panic_on_are_refused_with_the_reason() {
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
            assert!(
                error.starts_with("TOKIO_WORKER_THREADS = ") && error.contains("from 1 to 1024"),
                "{bad}: {error}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let error = worker_threads(Some(OsStr::from_bytes(b"\xff2"))).unwrap_err();
        assert!(error.contains("whole number"), "{error}");
    }
}
