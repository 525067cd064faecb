//! The tier's global allocator: mimalloc, called the way a C program calls it.
//!
//! Rust hands every allocation a [`Layout`], alignment included, and the `mimalloc` crate's
//! `GlobalAlloc` passes it on to `mi_malloc_aligned` for all of them. mimalloc v3 (what the
//! crate builds by default) serves an aligned request inline only when it is at most 1 KiB and
//! the next free block of its size class happens to be aligned; everything else — every block
//! over 1 KiB, even with an alignment of 1 — takes the out-of-line generic path. When the size
//! class is not naturally aligned that path over-allocates by `align − 1`, which lands the
//! request in the next class for good: a 48-byte `Layout` aligned to 8 gets a 64-byte block.
//! Under callgrind that path was 9 of the ingest's ~36 allocations per hit, and allocation cost
//! ~86 instructions on average against ~20 for `mi_malloc` (`docs/ingest.md`, "Session 11").
//!
//! [`MiMalloc`] calls the plain `mi_malloc` / `mi_zalloc` / `mi_realloc` when the block
//! mimalloc picks is aligned enough anyway, and the aligned entry points otherwise. On 64-bit
//! targets (the only ones this crate builds for):
//! - every size class is a multiple of 8 bytes (of 16 above 8 bytes), and every page's first
//!   block is at least 16-aligned (`MI_PAGE_MIN_START_BLOCK_ALIGN`), so an alignment of 8 or
//!   less always holds;
//! - a size that is a multiple of 16 lands in a class that is a multiple of 16, so an alignment
//!   of 16 holds for it.
//!
//! (mimalloc's opt-in guarded-page debugging, `MIMALLOC_GUARDED_*` in a `debug` build, places
//! sampled blocks against a guard page without that rounding; do not combine it with this
//! allocator.) The tests allocate over a grid of layouts, check every pointer, and check that
//! the plain path is the one taken.

#![allow(unsafe_code)] // a GlobalAlloc is FFI into mimalloc by definition; each call is commented

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as ffi;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("tier-alloc relies on mimalloc's 64-bit size classes (see the module doc)");

/// mimalloc as the global allocator, with the plain entry points wherever they suffice.
#[derive(Debug, Clone, Copy, Default)]
pub struct MiMalloc;

/// Whether a block from plain `mi_malloc(size)` is aligned for `align` (see the module doc).
#[inline(always)]
fn plain_suffices(size: usize, align: usize) -> bool {
    align <= 8 || (align == 16 && size.is_multiple_of(16))
}

// SAFETY: every method forwards to mimalloc, which returns null on failure and memory valid for
// `size` bytes otherwise; the plain entry points are used only where `plain_suffices` holds,
// and `mi_free` / `mi_realloc*` accept every pointer either family returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain_suffices(layout.size(), layout.align()) {
            // SAFETY: plain allocation; alignment guaranteed by `plain_suffices`.
            unsafe { ffi::mi_malloc(layout.size()) }.cast()
        } else {
            // SAFETY: `Layout` guarantees a power-of-two alignment.
            unsafe { ffi::mi_malloc_aligned(layout.size(), layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain_suffices(layout.size(), layout.align()) {
            // SAFETY: as in `alloc`.
            unsafe { ffi::mi_zalloc(layout.size()) }.cast()
        } else {
            // SAFETY: as in `alloc`.
            unsafe { ffi::mi_zalloc_aligned(layout.size(), layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract); mi_free takes blocks
        // of the plain and the aligned entry points alike.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_suffices(new_size, layout.align()) {
            // SAFETY: `ptr` came from this allocator; the new block's alignment is guaranteed by
            // `plain_suffices` for `new_size`.
            unsafe { ffi::mi_realloc(ptr.cast::<c_void>(), new_size) }.cast()
        } else {
            // SAFETY: as above, with the alignment passed on.
            unsafe { ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()) }
                .cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALIGNS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

    /// Allocates, writes, reallocates and frees one layout, checking alignment at each step.
    fn exercise(size: usize, align: usize, grow_to: usize) {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        // SAFETY: non-zero size; the block is written within its size, read back, and freed
        // with the layout it was allocated with (or reallocated to).
        unsafe {
            let p = MiMalloc.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "alloc size {size} align {align}");
            p.write_bytes(0xa5, size);
            let q = MiMalloc.realloc(p, layout, grow_to);
            assert!(!q.is_null());
            assert_eq!(
                q as usize % align,
                0,
                "realloc {size}->{grow_to} align {align}"
            );
            assert_eq!(
                *q.add(size.min(grow_to) - 1),
                0xa5,
                "contents kept by realloc"
            );
            MiMalloc.dealloc(q, Layout::from_size_align(grow_to, align).expect("valid"));

            let z = MiMalloc.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert_eq!(
                z as usize % align,
                0,
                "alloc_zeroed size {size} align {align}"
            );
            assert!((0..size).all(|i| *z.add(i) == 0), "zeroed");
            MiMalloc.dealloc(z, layout);
        }
    }

    #[test]
    fn every_small_size_and_alignment_is_honoured() {
        // Many live blocks per class, so the check sees blocks at every position of a page.
        for align in ALIGNS {
            for size in 1..=1100 {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                let blocks: Vec<*mut u8> = (0..8)
                    .map(|_| {
                        // SAFETY: non-zero size; freed below with the same layout.
                        let p = unsafe { MiMalloc.alloc(layout) };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        p
                    })
                    .collect();
                for p in blocks {
                    // SAFETY: allocated above with `layout`.
                    unsafe { MiMalloc.dealloc(p, layout) };
                }
                exercise(size, align, size * 3 + 5);
            }
        }
    }

    /// The plain entry point is the one taken: the block is the size class of the size alone.
    /// Through `mi_malloc_aligned` a 48-byte block aligned to 8 comes from the 64-byte class.
    #[test]
    fn the_plain_path_is_taken_where_the_rule_allows() {
        for (size, align) in [(48, 8), (80, 8), (1100, 1), (1100, 8), (4000, 4), (96, 16)] {
            assert!(plain_suffices(size, align));
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            // SAFETY: non-zero size; freed right after with the same layout.
            unsafe {
                let p = MiMalloc.alloc(layout);
                assert!(!p.is_null());
                let usable = ffi::mi_usable_size(p.cast::<c_void>().cast_const());
                assert_eq!(usable, ffi::mi_good_size(size), "size {size} align {align}");
                MiMalloc.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn large_blocks_keep_their_alignment() {
        for align in ALIGNS {
            for size in [4096, 4097, 65_536, 100_000, 1 << 20, (4 << 20) + 3] {
                exercise(size, align, size / 3 + 1);
            }
        }
    }

    proptest! {
        #[test]
        fn any_layout_is_aligned(size in 1usize..300_000, shift in 0u32..13, grow in 1usize..300_000) {
            exercise(size, 1 << shift, grow);
        }
    }
}
