//! Giving the memory the allocator keeps after it was freed back to the system.
//!
//! glibc's malloc returns freed memory to the system only from the top of a heap; what a burst
//! of connections freed below a live allocation stays resident (and in RSS) until reused. After
//! a keep-alive burst that is several megabytes, more than the gateway needs idle.

/// Asks glibc to give the free pages of every arena back (`malloc_trim(0)`: `madvise` on free
/// pages inside the heaps, shrinking their tops). It briefly takes each arena's lock, so it is
/// called rarely, from a maintenance task. True when anything was given back. Elsewhere (musl,
/// other systems) it does nothing: those allocators return memory on their own or have no such
/// call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointers and has no preconditions; glibc serialises it
    // with every other allocator call (MT-Safe).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::release_free_memory;

    #[test]
    fn memory_freed_below_a_live_allocation_is_given_back() {
        // 200 blocks of 32 KiB (below glibc's mmap threshold, so inside a heap); the last one
        // stays, so the heap's top cannot shrink: only the trim returns the pages below it.
        let mut blocks: Vec<Vec<u8>> = (0..200).map(|i| vec![i as u8; 32 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(
            release_free_memory(),
            "6 MiB freed inside the heap was given back"
        );
        assert_eq!(last.map(|b| b[0]), Some(199), "the live block is untouched");
    }
}
