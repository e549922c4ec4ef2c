//! The memory allocator of the `reverse-proxy` and `api-gateway` binaries: mimalloc.
//!
//! A proxied request allocates its header maps and their values, the upstream exchange's state
//! and its response wrapper, and frees them all once the response is written: many short-lived
//! blocks, allocated and freed on one thread. glibc's malloc spent 13% of the proxy's
//! instructions per request on them (callgrind, `BENCHMARKS.md`), most in the path for blocks
//! over 1 KB, which consolidates its fast bins first. mimalloc serves every size class from a
//! per-thread free list.
//!
//! The `mimalloc` crate asks for every block through mimalloc's aligned entry points, which
//! take a slower, generic path for blocks over 1 KB even when the alignment asked for is one
//! every block has anyway. Here blocks whose alignment is at most a machine word (nearly all of
//! them) use the plain entry points; the rest keep the aligned ones.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has: its size classes are whole machine words.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator: `#[global_allocator] static A: Allocator = Allocator;`.
pub struct Allocator;

// SAFETY: every block comes from mimalloc with at least `layout.align()` alignment (a plain
// allocation only when that alignment is at most a word, which every mimalloc block has), is
// freed by `mi_free` (which takes blocks from either entry point), and is resized by the
// `realloc` of the entry point that keeps its alignment. A null return reports exhaustion.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = match layout.align() <= WORD {
            // SAFETY: mimalloc accepts any size; see the impl's comment for the alignment.
            true => unsafe { mi::mi_malloc(layout.size()) },
            false => unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) },
        };
        block.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = match layout.align() <= WORD {
            // SAFETY: as in `alloc`.
            true => unsafe { mi::mi_zalloc(layout.size()) },
            false => unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) },
        };
        block.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let block = match layout.align() <= WORD {
            // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps the
            // alignment as in `alloc`.
            true => unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size) },
            false => unsafe {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align())
            },
        };
        block.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for_and_keep_their_bytes() {
        let allocator = Allocator;
        for align in [1, 2, 8, 16, 64, 4096] {
            for size in [1, 8, 24, 1000, 1500, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; each block is written within its size, resized with
                // its layout, and freed once with the layout it then has.
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size} align {align}");
                    block.write_bytes(0xab, size);
                    let grown = allocator.realloc(block, layout, size * 2);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown: size {size} align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xab);
                    allocator.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert_eq!(*zeroed.add(size - 1), 0);
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
