//! Tuning of mimalloc, the worker binary's allocator (see `bin/matomo-worker.rs`).
//!
//! A batch allocates and frees a few MB (requests, rows, statements) every ~100 ms. mimalloc
//! returns freed memory to the OS 10 ms after it is unused by default, so every batch faulted
//! its memory in again, and the kernel zeroed it: ~8 % of the tracker's CPU in
//! `tracker_throughput`, 45k page faults per 20k hits (7k with the delay below).

use libmimalloc_sys as ffi;

/// `mi_option_purge_delay` (milliseconds before freed memory goes back to the OS). The
/// binding names the options around it (`mi_option_eager_commit_delay` = 14,
/// `mi_option_use_numa_nodes` = 16) but not this one; mimalloc's `mimalloc.h` enum has it at
/// 15 in both its v2 and v3 series.
const MI_OPTION_PURGE_DELAY: ffi::mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc returns it to the OS.
pub const PURGE_DELAY_MS: i64 = 1_000;

/// Keeps freed memory for [`PURGE_DELAY_MS`] instead of 10 ms, unless the operator set
/// `MIMALLOC_PURGE_DELAY` (mimalloc's own environment variable, which then wins). Only
/// meaningful when mimalloc is the global allocator; harmless otherwise.
#[allow(unsafe_code)]
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores an integer option; any option id is range-checked by
    // mimalloc, and 15 is purge_delay (see the constant's documentation and the test below).
    unsafe { ffi::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn option_fifteen_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // Before tuning: mimalloc's documented default purge delay (10 ms); after: ours.
        // SAFETY: reading an option.
        let before = unsafe { ffi::mi_option_get(MI_OPTION_PURGE_DELAY) };
        let ours = PURGE_DELAY_MS as std::ffi::c_long;
        assert!(before == 10 || before == ours, "got {before}");
        tune();
        let after = unsafe { ffi::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, ours);
    }
}
