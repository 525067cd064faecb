//! Tuning of mimalloc, the ingest binary's allocator (see `bin/matomo-ingest.rs`).
//!
//! By default mimalloc commits its arenas eagerly on systems that overcommit (Linux), and then
//! gives freed memory back to the OS by *resetting* it (`MADV_FREE`): the kernel takes those
//! pages only under memory pressure and counts them in the process' resident size until then.
//! With 10,000 keep-alive connections that made the node look 60 % larger than its live memory
//! (31 KB resident per connection against 19 KB with lazy commit, the bare axum server's
//! figure); see `docs/ingest.md`, "Performance". Lazily committed arenas are *decommitted* on
//! purge, so the resident size is what the node really holds.
//!
//! mimalloc decides how to commit an arena when it reserves it, at the first allocation, and
//! Rust's runtime allocates before `main`: so the binary runs [`tune_before_main`] as an ELF
//! initialiser (`.init_array`), which must not allocate.

use std::ffi::{c_char, CStr};

use libmimalloc_sys as ffi;

/// `mi_option_arena_eager_commit`: 4 in the option enum of mimalloc's `mimalloc.h`, v2 and v3
/// alike (the binding does not name it).
const MI_OPTION_ARENA_EAGER_COMMIT: ffi::mi_option_t = 4;

/// mimalloc's own environment variable for the option: when the operator sets it, it wins.
const ENV_OVERRIDE: &CStr = c"MIMALLOC_ARENA_EAGER_COMMIT";

extern "C" {
    /// The C library's `getenv`: reading the environment without allocating.
    fn getenv(name: *const c_char) -> *mut c_char;
}

/// Commits arenas lazily, unless `MIMALLOC_ARENA_EAGER_COMMIT` is set. Allocates nothing, so it
/// can run before the first allocation; only meaningful when mimalloc is the global allocator,
/// harmless otherwise.
#[allow(unsafe_code)]
pub extern "C" fn tune_before_main() {
    // SAFETY: getenv reads a NUL-terminated name; nothing else touches the environment while
    // the process initialises.
    if !unsafe { getenv(ENV_OVERRIDE.as_ptr()) }.is_null() {
        return;
    }
    // SAFETY: mi_option_set only stores an integer option; mimalloc range-checks the id, and 4
    // is arena_eager_commit (see the constant and the test below).
    unsafe { ffi::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn option_four_is_arena_eager_commit() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some() {
            return;
        }
        // Before tuning: mimalloc's documented default (2: eager where the OS overcommits).
        // SAFETY: reading an option.
        let before = unsafe { ffi::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) };
        assert!(before == 2 || before == 0, "got {before}");
        tune_before_main();
        let after = unsafe { ffi::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) };
        assert_eq!(after, 0);
    }
}
