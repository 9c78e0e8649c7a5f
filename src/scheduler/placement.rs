//! Which worker runs a task, and how many tasks a worker may hold at once.
//!
//! Tasks wait on the scheduler until a worker has a free slot, then go to the free worker
//! holding most of their input bytes (fewest bytes to move), then the least occupied. An idle
//! worker therefore always receives the next ready task — load balancing without a stealing
//! protocol — and root tasks never flood a worker, which keeps out-of-core graphs in memory.

use std::collections::BTreeMap;

use super::state::{Config, Observed, Worker};
use crate::ids::WorkerId;

/// How many tasks a worker may have assigned (running plus queued on it).
///
/// Enough queued work per thread to cover a network round trip (`queued_work_us` of expected
/// run time), but never more queued outputs than `queued_memory_fraction` of its memory limit,
/// and at least one task per thread.
pub(super) fn capacity(w: &Worker, observed: &Observed, config: &Config) -> usize {
    let threads = w.info.nthreads.max(1) as usize;
    if observed.count == 0 {
        return threads * 2; // nothing measured yet: stay close to the threads
    }
    let by_time = (config.queued_work_us / observed.duration_us.max(0.05)).ceil() as usize;
    let by_time = threads + threads * by_time.min(config.max_queued_per_thread);
    let by_memory = if observed.nbytes >= 1.0 && w.info.memory_limit > 0 {
        ((w.info.memory_limit as f64 * config.queued_memory_fraction) / observed.nbytes) as usize
    } else {
        usize::MAX
    };
    by_time.min(by_memory).max(threads)
}

/// A worker's slots for graph tasks while program tasks hold `held` of its `threads`: the
/// same share of its slots as of its threads (none when they hold them all, at least one
/// per free thread).
pub(super) fn share_left(cap: usize, threads: u32, held: u32) -> usize {
    let threads = threads.max(1);
    if held == 0 {
        return cap;
    }
    let free = threads.saturating_sub(held) as usize;
    if free == 0 {
        return 0;
    }
    (cap * free / threads as usize).max(free)
}

/// Picks among `free` workers (id, free slots) for a task whose inputs are
/// `deps` = (bytes, holders). Returns an index into `free`.
pub(super) fn choose<'a>(
    free: &[(WorkerId, usize)],
    workers: &BTreeMap<WorkerId, Worker>,
    deps: impl Iterator<Item = (u64, &'a [WorkerId])>,
) -> usize {
    let deps: Vec<(u64, &[WorkerId])> = deps.collect();
    let mut best = 0;
    let mut best_key = (0u64, f64::MAX);
    for (i, (id, _)) in free.iter().enumerate() {
        let local: u64 = deps
            .iter()
            .filter(|(_, h)| h.contains(id))
            .fold(0u64, |sum, (b, _)| sum.saturating_add(*b));
        let w = &workers[id];
        let occupancy = w.processing.len() as f64 / w.info.nthreads.max(1) as f64;
        let better = local > best_key.0 || (local == best_key.0 && occupancy < best_key.1);
        if i == 0 || better {
            best = i;
            best_key = (local, occupancy);
        }
    }
    best
}
