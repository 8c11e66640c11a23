//! The global allocator: mimalloc, asked for a plain block whenever the alignment allows.
//!
//! The `mimalloc` crate hands every request to `mi_malloc_aligned`, whose fast path covers
//! blocks of up to 1 KiB only; above that, a block whose size class is not a power of two (the
//! 12-entry header map of a request with a few fields is 1,248 bytes) is over-allocated and
//! aligned by hand, about twice the work of a plain `mi_malloc`. mimalloc's size classes are
//! whole machine words and its pages start aligned, so every block it returns is at least
//! word-aligned: a layout asking for no more than that takes the plain calls, and only larger
//! alignments (rare: cache-padded types) take the aligned ones. Blocks from both are freed by
//! `mi_free`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// The alignment every mimalloc block has.
const WORD: usize = std::mem::size_of::<usize>();

pub struct Mimalloc;

/// A new block for `layout` from `plain` (word alignment) or `aligned`.
#[inline]
#[expect(unsafe_code, reason = "calls mimalloc's C interface")]
unsafe fn new_block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation calls accept any size and (aligned) any power-of-two
    // alignment, which a `Layout` is.
    unsafe {
        if layout.align() <= WORD { plain(layout.size()).cast() } else { aligned(layout.size(), layout.align()).cast() }
    }
}

#[expect(unsafe_code, reason = "a global allocator is an unsafe trait over mimalloc's C interface")]
// SAFETY: every method forwards to mimalloc, which returns blocks of at least `size` bytes
// aligned to a word (plain calls, used only when `align <= WORD`) or to `align` (the aligned
// calls), or null when out of memory; `mi_free` accepts any block from either.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { new_block(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe { new_block(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract), i.e. from mimalloc.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc with `layout`'s alignment, kept by either call.
        unsafe {
            if layout.align() <= WORD {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size around the small/medium boundaries and every alignment up to a page: the
    /// block is aligned as asked, writable to its end, and survives growth and shrinking.
    #[test]
    #[expect(unsafe_code, reason = "exercises the allocator directly")]
    fn blocks_are_aligned_and_usable_at_every_size_and_alignment() {
        let sizes = (1..=64).chain([127, 128, 129, 1000, 1024, 1025, 1248, 1904, 4096, 5000, 70_000, 1 << 22]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let Ok(layout) = Layout::from_size_align(size, align) else { continue };
                for zeroed in [false, true] {
                    // SAFETY: a non-zero size; the block is used within its size and freed once.
                    unsafe {
                        let p = if zeroed { Mimalloc.alloc_zeroed(layout) } else { Mimalloc.alloc(layout) };
                        assert!(!p.is_null(), "{size} bytes aligned to {align}");
                        assert_eq!(p as usize % align, 0, "{size} bytes aligned to {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|b| *b == 0));
                        }
                        p.write_bytes(0xa5, size);
                        let grown = Mimalloc.realloc(p, layout, size * 3);
                        assert!(!grown.is_null());
                        assert_eq!(grown as usize % align, 0, "grown {size} bytes aligned to {align}");
                        assert!(std::slice::from_raw_parts(grown, size).iter().all(|b| *b == 0xa5));
                        let big = Layout::from_size_align(size * 3, align).unwrap_or(layout);
                        let shrunk = Mimalloc.realloc(grown, big, size.div_ceil(2));
                        assert_eq!(shrunk as usize % align, 0, "shrunk {size} bytes aligned to {align}");
                        assert!(std::slice::from_raw_parts(shrunk, size.div_ceil(2)).iter().all(|b| *b == 0xa5));
                        Mimalloc.dealloc(shrunk, Layout::from_size_align(size.div_ceil(2), align).unwrap_or(layout));
                    }
                }
            }
        }
    }
}
