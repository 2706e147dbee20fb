//! Process memory: giving freed heap back to the system, the overload flag every nukleus can
//! see, and how buffers give their memory back once drained.
//!
//! glibc's allocator keeps freed memory in its arenas (a core thread's arena grows with the
//! buffers of its connections and does not shrink by itself when they close); [`trim`] hands
//! the free pages of every arena back to the kernel. The reaktor calls it when the nuklei's
//! buffers shrank (connections closed, buffers shed), not on a hot path.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set while the process is above its memory limit: new connections are refused.
static OVERLOADED: AtomicBool = AtomicBool::new(false);

/// Whether the process is above its memory limit (see [`set_overloaded`]).
pub fn overloaded() -> bool {
    OVERLOADED.load(Ordering::Relaxed)
}

/// Raised and lowered by the reaktor's memory guard.
pub fn set_overloaded(overloaded: bool) {
    OVERLOADED.store(overloaded, Ordering::Relaxed);
}

/// Returns the free memory of every allocator arena to the kernel; true if any was. Takes
/// each arena's lock in turn: call it from a housekeeping thread, now and then.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it only walks glibc's own arenas under their
        // locks, which is safe to do from any thread at any time.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// A drained buffer whose capacity grew beyond `keep` bytes gives it back (a connection that
/// once buffered a burst does not hold the burst's memory while idle).
pub fn release_drained(buffer: &mut Vec<u8>, keep: usize) {
    if buffer.is_empty() && buffer.capacity() > keep {
        *buffer = Vec::new();
    }
}

/// Shedding under memory pressure: of `held` (bytes held, what holds them), the holders to
/// drop, largest first, until they free at least `bytes` (empty holders never).
pub fn largest_first<K>(mut held: Vec<(usize, K)>, bytes: usize) -> Vec<(usize, K)> {
    held.retain(|&(size, _)| size > 0);
    held.sort_unstable_by_key(|&(size, _)| std::cmp::Reverse(size));
    let mut freed = 0;
    let count = held
        .iter()
        .take_while(|&&(size, _)| {
            let more = freed < bytes;
            freed += size;
            more
        })
        .count();
    held.truncate(count);
    held
}

/// Private resident memory of this process (`RssAnon`: heap, stacks; not the shared stream
/// files), in bytes; `None` where /proc cannot tell.
pub fn private_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory this process may use: the smaller of physical memory (`MemTotal`) and the
/// cgroup's limit (`memory.max`, cgroup v2), in bytes; `None` where neither can be read.
pub fn available_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_buffer_gives_back_what_it_grew_beyond_the_keep_size() {
        let mut buffer = vec![0u8; 1 << 20];
        release_drained(&mut buffer, 4096);
        assert_eq!(buffer.capacity(), 1 << 20, "not drained: kept");
        buffer.clear();
        release_drained(&mut buffer, 4096);
        assert_eq!(buffer.capacity(), 0);
        let mut small = Vec::with_capacity(1024);
        small.push(1u8);
        small.clear();
        release_drained(&mut small, 4096);
        assert_eq!(small.capacity(), 1024, "small buffers stay for reuse");
    }

    #[test]
    fn shedding_picks_the_largest_until_enough_is_freed() {
        let held = vec![(10, 'a'), (0, 'z'), (50, 'b'), (30, 'c'), (20, 'd')];
        assert_eq!(largest_first(held.clone(), 60), vec![(50, 'b'), (30, 'c')]);
        assert_eq!(largest_first(held.clone(), 50), vec![(50, 'b')]);
        assert_eq!(largest_first(held.clone(), 1), vec![(50, 'b')]);
        assert_eq!(largest_first(held.clone(), 0), vec![]);
        assert_eq!(largest_first(held, 1000).len(), 4, "never the empty one");
    }

    #[test]
    fn memory_figures_come_from_proc() {
        let rss = private_resident_bytes().expect("linux /proc");
        assert!(rss > 0);
        let available = available_bytes().expect("linux /proc");
        assert!(available > rss);
    }

    #[test]
    fn trimming_after_freeing_a_large_heap_gives_memory_back() {
        // Many mid-sized blocks (below the mmap threshold), most freed: only trim returns them.
        let mut blocks: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 64 * 1024]).collect();
        let keep = blocks.split_off(1990);
        drop(blocks);
        let before = private_resident_bytes().unwrap();
        trim();
        let after = private_resident_bytes().unwrap();
        assert!(
            after + (32 << 20) < before,
            "trim returned less than 32 MiB: {before} -> {after}"
        );
        drop(keep);
    }
}
