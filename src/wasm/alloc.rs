//! The engine's allocator: the system one, remembering the size of an allocation it could not
//! make. Rust aborts on a failed allocation (a wasm trap, like a panic, but with no message); the
//! client reads `lastFailedAllocation` after the trap to tell "out of memory" from a bug.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use wasm_bindgen::prelude::*;

static FAILED: AtomicUsize = AtomicUsize::new(0);

struct Remembering;

fn noted(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        FAILED.store(size.max(1), Ordering::Relaxed);
    }
    p
}

unsafe impl GlobalAlloc for Remembering {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        noted(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Remembering = Remembering;

/// Bytes of the last allocation that failed (0: none has). After the engine traps, the client
/// reads it (the instance's memory is intact) to report "out_of_memory".
#[wasm_bindgen(js_name = lastFailedAllocation)]
pub fn last_failed_allocation() -> f64 {
    FAILED.load(Ordering::Relaxed) as f64
}
