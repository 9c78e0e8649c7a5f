//! The worker's task bookkeeping as a state machine without IO, in the manner of Dask's
//! `worker_state_machine.py`: events go in (tasks assigned, released, finished, inputs
//! fetched), instructions and messages for the scheduler come out (fetch these inputs, keep
//! this result, forget those). The event loop in `mod.rs` is the shell: it owns the sockets,
//! the store and the executor, and carries the instructions out. Everything here is decided
//! from its arguments alone, so it is tested without sockets or threads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use bytes::Bytes;

use super::executor::Outcome;
use super::peer::Wanted;
use super::MemoryPolicy;
use crate::ids::TaskId;
use crate::ids::WorkerId;
use crate::protocol::messages::{FinishedTask, WireDep, WireTask, WorkerToScheduler};

/// What the shell must do.
#[derive(Debug, PartialEq)]
pub enum Instruction {
    /// Fetch these inputs from the peers holding them.
    Fetch(Vec<Wanted>),
    /// Keep these results in the store (a task's result, or copies fetched from peers).
    Keep(Vec<(TaskId, Bytes)>),
    /// Forget these results.
    Forget(Vec<TaskId>),
}

/// A task the shell should start now.
#[derive(Debug, PartialEq)]
pub struct Start {
    pub task: TaskId,
    pub kernel: String,
    pub args: Vec<u8>,
    pub deps: Vec<WireDep>,
}

/// Why the shell could not start a task [`WorkerState::next_to_start`] gave it.
#[derive(Debug)]
pub enum CannotStart {
    /// No such kernel on this worker (the message names it).
    UnknownKernel(String),
    /// These inputs are no longer in the store, with the holders the scheduler named.
    InputsLost(Vec<(TaskId, Vec<WorkerId>)>),
}

#[derive(Default)]
pub struct WorkerState {
    /// Tasks assigned and not finished: waiting for inputs, ready, or running.
    pending: HashMap<TaskId, WireTask>,
    ready: BinaryHeap<Reverse<((u64, u64), TaskId)>>,
    running: HashSet<TaskId>,
    /// Task -> inputs still being fetched.
    missing_inputs: HashMap<TaskId, usize>,
    /// Input being fetched -> tasks waiting for it.
    waiters: HashMap<TaskId, Vec<TaskId>>,
    finished: Vec<FinishedTask>,
    replicas: Vec<(TaskId, u64)>,
    outbox: Vec<WorkerToScheduler>,
    paused: bool,
    /// Mean run time of recent tasks (µs), to size the executor's queue; None before the
    /// first.
    mean_task_us: Option<f64>,
}

impl WorkerState {
    pub fn new() -> Self {
        WorkerState::default()
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Tasks assigned by the scheduler. `held` says which results the store has.
    pub fn compute(
        &mut self,
        tasks: Vec<WireTask>,
        held: impl Fn(TaskId) -> bool,
    ) -> Option<Instruction> {
        let mut to_fetch: Vec<Wanted> = Vec::new();
        for t in tasks {
            let mut missing = 0;
            for d in &t.deps {
                if held(d.task) {
                    continue;
                }
                missing += 1;
                let waiters = self.waiters.entry(d.task).or_default();
                if waiters.is_empty() {
                    to_fetch.push(Wanted {
                        task: d.task,
                        holders: d.holders.clone(),
                    });
                }
                // A task cancelled and re-sent while this input is in flight must not be
                // counted twice.
                if !waiters.contains(&t.task) {
                    waiters.push(t.task);
                }
            }
            if missing == 0 {
                self.ready.push(Reverse((t.priority, t.task)));
            } else {
                self.missing_inputs.insert(t.task, missing);
            }
            self.pending.insert(t.task, t);
        }
        (!to_fetch.is_empty()).then_some(Instruction::Fetch(to_fetch))
    }

    /// The scheduler released these keys: their results go, and tasks not yet started are
    /// cancelled (a running one's result is dropped when it arrives).
    pub fn release(&mut self, keys: Vec<TaskId>) -> Instruction {
        for k in &keys {
            self.pending.remove(k);
            self.missing_inputs.remove(k);
        }
        Instruction::Forget(keys)
    }

    /// The scheduler asks for copies of these results (a retiring peer's, say).
    pub fn replicate(&mut self, deps: Vec<WireDep>) -> Option<Instruction> {
        let wanted: Vec<Wanted> = deps
            .into_iter()
            .map(|d| Wanted {
                task: d.task,
                holders: d.holders,
            })
            .collect();
        (!wanted.is_empty()).then_some(Instruction::Fetch(wanted))
    }

    /// A task the executor finished.
    pub fn done(
        &mut self,
        task: TaskId,
        outcome: Outcome,
        duration_us: u64,
    ) -> Option<Instruction> {
        self.running.remove(&task);
        self.mean_task_us = Some(match self.mean_task_us {
            None => duration_us as f64,
            Some(mean) => 0.9 * mean + 0.1 * duration_us as f64,
        });
        // Released while it ran: nobody wants the result.
        let assigned = self.pending.remove(&task)?;
        match outcome {
            Outcome::Computed(data) => {
                self.finished.push(FinishedTask {
                    task,
                    nbytes: data.len() as u64,
                    duration_us,
                });
                Some(Instruction::Keep(vec![(task, data)]))
            }
            Outcome::Failed(error) => {
                self.outbox.push(WorkerToScheduler::Failed { task, error });
                None
            }
            Outcome::InputUnreadable { input, .. } => {
                let holders = assigned
                    .deps
                    .iter()
                    .find(|d| d.task == input)
                    .map(|d| d.holders.clone())
                    .unwrap_or_default();
                self.outbox.push(WorkerToScheduler::Missing {
                    task,
                    missing: vec![(input, holders)],
                });
                None
            }
        }
    }

    /// Inputs fetched from peers, and those no holder had.
    pub fn fetched(
        &mut self,
        got: Vec<(TaskId, Bytes)>,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    ) -> Option<Instruction> {
        for (dep, data) in &got {
            self.replicas.push((*dep, data.len() as u64));
            for task in self.waiters.remove(dep).unwrap_or_default() {
                let Some(left) = self.missing_inputs.get_mut(&task) else {
                    continue;
                };
                *left -= 1;
                if *left == 0 {
                    self.missing_inputs.remove(&task);
                    if let Some(t) = self.pending.get(&task) {
                        self.ready.push(Reverse((t.priority, task)));
                    }
                }
            }
        }
        for (dep, holders) in missing {
            let waiting = self.waiters.remove(&dep).unwrap_or_default();
            if waiting.is_empty() {
                // A replication (retirement copy) failed: the scheduler must know, or it
                // waits for the copy forever.
                let missing = vec![(dep, holders.clone())];
                self.outbox
                    .push(WorkerToScheduler::Missing { task: dep, missing });
            }
            for task in waiting {
                if self.missing_inputs.remove(&task).is_some()
                    && self.pending.remove(&task).is_some()
                {
                    let missing = vec![(dep, holders.clone())];
                    self.outbox
                        .push(WorkerToScheduler::Missing { task, missing });
                }
            }
        }
        (!got.is_empty()).then_some(Instruction::Keep(got))
    }

    /// The next ready task to start, best priority first, while threads are free, the worker
    /// is not paused and no spill past the target is still being written (`spill_backlog`).
    /// Tasks shorter than a thread wake-up are queued a few deep on the pool, so a thread goes
    /// straight from one to the next instead of sleeping until the loop hands it work. The
    /// task counts as running from here; if the shell cannot start it, it says so with
    /// [`WorkerState::cannot_start`].
    pub fn next_to_start(&mut self, nthreads: u32, spill_backlog: bool) -> Option<Start> {
        let threads = nthreads.max(1) as usize;
        let depth = match self.mean_task_us {
            Some(mean) if mean < 1000.0 => threads * 16,
            _ => threads,
        };
        if self.paused || spill_backlog {
            return None;
        }
        while self.running.len() < depth {
            let Reverse((_, id)) = self.ready.pop()?;
            let Some(t) = self.pending.get(&id) else {
                continue; // cancelled
            };
            self.running.insert(id);
            return Some(Start {
                task: id,
                kernel: t.kernel.clone(),
                args: t.args.clone(),
                deps: t.deps.clone(),
            });
        }
        None
    }

    pub fn cannot_start(&mut self, task: TaskId, why: CannotStart) {
        self.running.remove(&task);
        self.pending.remove(&task);
        self.outbox.push(match why {
            CannotStart::UnknownKernel(error) => WorkerToScheduler::Failed { task, error },
            CannotStart::InputsLost(missing) => WorkerToScheduler::Missing { task, missing },
        });
    }

    /// Records the pause decision; true when it changed (the scheduler must hear at once).
    pub fn set_paused(&mut self, paused: bool) -> bool {
        let changed = paused != self.paused;
        self.paused = paused;
        changed
    }

    pub fn heartbeat(&mut self, rss: u64, spilled: u64, cpu_permille: u32) {
        self.outbox.push(WorkerToScheduler::Heartbeat {
            memory: rss,
            paused: self.paused,
            executing: self.running.iter().copied().collect(),
            spilled,
            cpu_permille,
        });
    }

    pub fn send(&mut self, msg: WorkerToScheduler) {
        self.outbox.push(msg);
    }

    /// Everything for the scheduler since the last call, in the order it must go: new
    /// replicas, finished tasks (in one message each), then the rest.
    pub fn take_messages(&mut self) -> Vec<WorkerToScheduler> {
        let mut out = Vec::with_capacity(self.outbox.len() + 2);
        if !self.replicas.is_empty() {
            out.push(WorkerToScheduler::Replicas(std::mem::take(
                &mut self.replicas,
            )));
        }
        if !self.finished.is_empty() {
            out.push(WorkerToScheduler::Finished(std::mem::take(
                &mut self.finished,
            )));
        }
        out.append(&mut self.outbox);
        out
    }
}

/// What the memory thresholds call for at a given RSS (Dask's, as fractions of the limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    Normal,
    /// Start no tasks (the scheduler sends none).
    Paused,
    /// Exit for a restart.
    Terminate,
}

impl MemoryPolicy {
    /// Bytes of results the store may keep in memory.
    pub fn target_bytes(&self, limit: u64) -> u64 {
        (self.target * limit as f64) as u64
    }

    /// When RSS is past the spill threshold: how many bytes of results may stay in memory so
    /// that spilling the rest brings RSS back under it (None: no spill needed). `in_memory`
    /// includes results already being written; the store counts those as gone, so the
    /// excess is measured against the same total.
    pub fn rss_keep(&self, limit: u64, rss: u64, in_memory: u64) -> Option<u64> {
        let excess = rss as f64 - self.spill * limit as f64;
        self.over_spill(limit, rss)
            .then(|| (in_memory as f64 - excess).max(0.0) as u64)
    }

    /// RSS past the spill threshold.
    pub fn over_spill(&self, limit: u64, rss: u64) -> bool {
        rss as f64 > self.spill * limit as f64
    }

    pub fn pressure(&self, limit: u64, rss: u64) -> Pressure {
        let (rss, limit) = (rss as f64, limit as f64);
        if rss > self.terminate * limit {
            Pressure::Terminate
        } else if rss > self.pause * limit {
            Pressure::Paused
        } else {
            Pressure::Normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(task: u64, holders: &[WorkerId]) -> WireDep {
        WireDep {
            task: TaskId(task),
            nbytes: 8,
            holders: holders.to_vec(),
        }
    }

    fn task(id: u64, priority: u64, deps: Vec<WireDep>) -> WireTask {
        WireTask {
            task: TaskId(id),
            kernel: "k".into(),
            args: vec![id as u8],
            deps,
            priority: (priority, 0),
        }
    }

    fn started(s: &mut WorkerState) -> Vec<u64> {
        std::iter::from_fn(|| s.next_to_start(1, false))
            .map(|t| t.task.0)
            .collect()
    }

    #[test]
    fn tasks_with_their_inputs_start_best_priority_first_one_per_thread() {
        let mut s = WorkerState::new();
        assert_eq!(
            s.compute(vec![task(1, 5, vec![]), task(2, 1, vec![])], |_| false),
            None
        );
        // Before any task finished, one per thread.
        assert_eq!(started(&mut s), [2]);
        assert_eq!(
            s.done(TaskId(2), Outcome::Computed(Bytes::from_static(b"x")), 5000),
            Some(Instruction::Keep(vec![(
                TaskId(2),
                Bytes::from_static(b"x")
            )]))
        );
        assert_eq!(started(&mut s), [1]);
        assert_eq!(
            s.take_messages(),
            [WorkerToScheduler::Finished(vec![FinishedTask {
                task: TaskId(2),
                nbytes: 1,
                duration_us: 5000
            }])]
        );
    }

    #[test]
    fn short_tasks_are_queued_sixteen_deep_per_thread() {
        let mut s = WorkerState::new();
        let tasks = (0..40).map(|i| task(i, i, vec![])).collect();
        s.compute(tasks, |_| false);
        assert_eq!(started(&mut s).len(), 1);
        s.done(TaskId(0), Outcome::Computed(Bytes::new()), 10);
        assert_eq!(started(&mut s).len(), 16);
    }

    #[test]
    fn missing_inputs_are_fetched_once_and_the_task_waits_for_all() {
        let mut s = WorkerState::new();
        let fetch = s.compute(
            vec![
                task(10, 0, vec![dep(1, &[7]), dep(2, &[8]), dep(3, &[])]),
                task(11, 0, vec![dep(1, &[7])]),
            ],
            |id| id == TaskId(3),
        );
        assert_eq!(
            fetch,
            Some(Instruction::Fetch(vec![
                Wanted {
                    task: TaskId(1),
                    holders: vec![7]
                },
                Wanted {
                    task: TaskId(2),
                    holders: vec![8]
                },
            ]))
        );
        assert!(started(&mut s).is_empty());
        let keep = s.fetched(vec![(TaskId(1), Bytes::from_static(b"a"))], vec![]);
        assert_eq!(
            keep,
            Some(Instruction::Keep(vec![(
                TaskId(1),
                Bytes::from_static(b"a")
            )]))
        );
        assert_eq!(started(&mut s), [11]);
        s.fetched(vec![(TaskId(2), Bytes::from_static(b"bb"))], vec![]);
        s.done(TaskId(11), Outcome::Computed(Bytes::new()), 5000);
        assert_eq!(started(&mut s), [10]);
        assert_eq!(
            s.take_messages()[0],
            WorkerToScheduler::Replicas(vec![(TaskId(1), 1), (TaskId(2), 2)])
        );
    }

    #[test]
    fn a_task_sent_again_while_its_input_is_fetched_waits_once() {
        let mut s = WorkerState::new();
        s.compute(vec![task(10, 0, vec![dep(1, &[7])])], |_| false);
        s.release(vec![TaskId(10)]);
        // Sent again: the fetch is under way, so no second one.
        assert_eq!(
            s.compute(vec![task(10, 0, vec![dep(1, &[7])])], |_| false),
            None
        );
        s.fetched(vec![(TaskId(1), Bytes::new())], vec![]);
        assert_eq!(started(&mut s), [10]);
    }

    #[test]
    fn an_input_no_holder_has_is_reported_and_its_task_dropped() {
        let mut s = WorkerState::new();
        s.compute(vec![task(10, 0, vec![dep(1, &[7])])], |_| false);
        assert_eq!(s.fetched(vec![], vec![(TaskId(1), vec![7])]), None);
        assert!(started(&mut s).is_empty());
        assert_eq!(
            s.take_messages(),
            [WorkerToScheduler::Missing {
                task: TaskId(10),
                missing: vec![(TaskId(1), vec![7])]
            }]
        );
    }

    #[test]
    fn a_failed_replication_is_reported_under_the_key_itself() {
        let mut s = WorkerState::new();
        let fetch = s.replicate(vec![dep(4, &[9])]);
        assert!(matches!(fetch, Some(Instruction::Fetch(w)) if w[0].task == TaskId(4)));
        s.fetched(vec![], vec![(TaskId(4), vec![9])]);
        assert_eq!(
            s.take_messages(),
            [WorkerToScheduler::Missing {
                task: TaskId(4),
                missing: vec![(TaskId(4), vec![9])]
            }]
        );
    }

    #[test]
    fn a_result_released_while_running_is_not_kept() {
        let mut s = WorkerState::new();
        s.compute(vec![task(1, 0, vec![])], |_| false);
        assert_eq!(started(&mut s), [1]);
        assert_eq!(
            s.release(vec![TaskId(1)]),
            Instruction::Forget(vec![TaskId(1)])
        );
        assert_eq!(s.done(TaskId(1), Outcome::Computed(Bytes::new()), 1), None);
        assert!(s.take_messages().is_empty());
    }

    #[test]
    fn a_released_task_not_yet_started_never_starts() {
        let mut s = WorkerState::new();
        s.compute(vec![task(1, 0, vec![]), task(2, 1, vec![])], |_| false);
        s.release(vec![TaskId(1)]);
        assert_eq!(started(&mut s), [2]);
    }

    #[test]
    fn failures_and_unreadable_inputs_are_told_apart() {
        let mut s = WorkerState::new();
        s.compute(
            vec![task(1, 0, vec![]), task(2, 0, vec![dep(5, &[3])])],
            |_| true,
        );
        s.done(TaskId(1), Outcome::Failed("boom".into()), 1);
        s.done(
            TaskId(2),
            Outcome::InputUnreadable {
                input: TaskId(5),
                error: "short".into(),
            },
            1,
        );
        assert_eq!(
            s.take_messages(),
            [
                WorkerToScheduler::Failed {
                    task: TaskId(1),
                    error: "boom".into()
                },
                WorkerToScheduler::Missing {
                    task: TaskId(2),
                    missing: vec![(TaskId(5), vec![3])]
                },
            ]
        );
    }

    #[test]
    fn a_task_the_shell_cannot_start_is_reported_and_frees_its_slot() {
        let mut s = WorkerState::new();
        s.compute(vec![task(1, 0, vec![]), task(2, 1, vec![])], |_| false);
        let first = s.next_to_start(1, false).unwrap();
        assert!(s.next_to_start(1, false).is_none());
        s.cannot_start(first.task, CannotStart::UnknownKernel("no kernel k".into()));
        assert_eq!(started(&mut s), [2]);
        assert_eq!(
            s.take_messages(),
            [WorkerToScheduler::Failed {
                task: TaskId(1),
                error: "no kernel k".into()
            }]
        );
    }

    #[test]
    fn nothing_starts_while_paused_or_while_a_spill_past_the_target_is_written() {
        let mut s = WorkerState::new();
        s.compute(vec![task(1, 0, vec![])], |_| false);
        assert!(s.set_paused(true));
        assert!(!s.set_paused(true));
        assert!(s.next_to_start(1, false).is_none());
        assert!(s.set_paused(false));
        assert!(s.next_to_start(1, true).is_none());
        assert_eq!(s.next_to_start(1, false).map(|t| t.task), Some(TaskId(1)));
    }

    #[test]
    fn memory_thresholds() {
        let p = MemoryPolicy::default();
        let limit = 1000;
        assert_eq!(p.target_bytes(limit), 600);
        assert_eq!(p.rss_keep(limit, 700, 500), None);
        assert!(!p.over_spill(limit, 700) && p.over_spill(limit, 701));
        // 50 bytes over the spill threshold: 50 bytes of results go.
        assert_eq!(p.rss_keep(limit, 750, 500), Some(450));
        assert_eq!(p.rss_keep(limit, 1750, 500), Some(0));
        assert_eq!(p.pressure(limit, 800), Pressure::Normal);
        assert_eq!(p.pressure(limit, 801), Pressure::Paused);
        assert_eq!(p.pressure(limit, 951), Pressure::Terminate);
    }
}
