//! What the scheduler tells an observer (the dashboard): observations, never decisions.
//!
//! The core stays the core: it only *emits* these on an unbounded channel, without waiting
//! for anyone, and emits nothing at all while no observer is attached. Aggregating them into
//! what a page shows (lanes, rates, deltas) is the observer's work, on its own task.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::ids::{TaskId, WorkerId};
use crate::protocol::messages::StatusReport;

/// One finished task as the scheduler saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDone {
    pub task: TaskId,
    /// The task's kernel ("array.block", "noop"): its kind in the task stream.
    pub kind: Arc<str>,
    pub duration_us: u64,
    pub nbytes: u64,
}

#[derive(Clone, Debug)]
pub enum Observation {
    /// Once a second: the same report `status` gets, and the worst delay of the core's 100 ms
    /// tick since the previous one (how long a message may have waited for the event loop).
    Snapshot {
        status: Box<StatusReport>,
        loop_lag_us: u64,
    },
    /// A worker's report of finished tasks, when it arrived.
    TasksDone {
        worker: WorkerId,
        at: Instant,
        tasks: Vec<TaskDone>,
    },
    TaskFailed {
        worker: WorkerId,
        task: TaskId,
        kind: Arc<str>,
        at: Instant,
    },
    /// `worker` now holds a copy of a result it fetched from a peer.
    Transfer {
        worker: WorkerId,
        nbytes: u64,
        at: Instant,
    },
    /// A client submitted a graph of this many tasks (its keys carry the client's id).
    GraphSubmitted { client: u64, tasks: usize },
}

pub type Observer = mpsc::UnboundedSender<Observation>;

/// Kernel names, interned: one `Arc<str>` per distinct kernel, so an observed task costs a
/// reference count, not a string copy.
#[derive(Default)]
pub(super) struct Kinds(std::collections::HashMap<String, Arc<str>>);

impl Kinds {
    pub fn get(&mut self, kernel: &str) -> Arc<str> {
        if let Some(k) = self.0.get(kernel) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(kernel);
        self.0.insert(kernel.to_string(), k.clone());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_name_is_interned_once() {
        let mut kinds = Kinds::default();
        let a = kinds.get("noop");
        let b = kinds.get("noop");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*kinds.get("array.block"), "array.block");
        assert_eq!(kinds.0.len(), 2);
    }
}
