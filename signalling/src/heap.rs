//! What the heap holds, from jemalloc (the `switchboard` binary's global
//! allocator): bytes the program has allocated, and bytes the allocator
//! keeps resident for it. Their difference is the allocator's own cache, so
//! a growth of `allocated` is ours and a growth of `resident` alone is not.
//! Only a binary that made jemalloc its allocator calls [`enable`]; anyone
//! else (tests, fuzzing under AddressSanitizer) reports nothing.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "jemalloc")]
use tikv_jemalloc_ctl::{epoch, stats};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says that jemalloc is this process's global allocator.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub struct HeapStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in pages the allocator holds resident (live, cached, metadata).
    pub resident: u64,
}

/// The current figures, or `None` if jemalloc is not the allocator here.
#[cfg(feature = "jemalloc")]
pub fn stats() -> Option<HeapStats> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    // jemalloc's statistics are a snapshot refreshed by advancing the epoch.
    epoch::advance().ok()?;
    Some(HeapStats { allocated: stats::allocated::read().ok()? as u64, resident: stats::resident::read().ok()? as u64 })
}

#[cfg(not(feature = "jemalloc"))]
pub fn stats() -> Option<HeapStats> {
    None
}
