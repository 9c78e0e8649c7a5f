//! The scheduler as a sans-IO state machine: events in, commands out, no sockets, no clocks.
//!
//! [`State::handle`] applies one [`Event`]; [`State::take_commands`] hands ready tasks to
//! workers with free slots and returns everything to send, grouped per destination so the IO
//! layer writes one batch per connection. Because nothing here does IO, every transition —
//! including worker loss and recomputation — is tested directly, and property tests drive
//! random event sequences while checking the invariants in [`State::check_invariants`].
//!
//! Task states follow Dask's: released (spec known, no data, not needed now), waiting (needed,
//! some input not in memory), queued (ready, held on the scheduler until a worker has a free
//! slot), processing (assigned to one worker), memory (result held by at least one worker),
//! erred; forgotten tasks are removed. A task's result is *needed* while a client wants it or a
//! dependent that is waiting, queued or processing will read it; results no one needs are
//! released everywhere, and task specs stay until nothing could need them again, so a lost
//! result can always be recomputed from its lineage.
//!
//! # Files
//! This file holds the vocabulary (events, commands, task and worker records, the config),
//! the dispatch of events, placement of queued tasks, memory compaction and the queries.
//! The transitions live beside it in `state/`: `graphs.rs` (submission and its checks,
//! activation, what clients release and forget), `results.rs` (tasks finishing, failing,
//! results lost and recomputed), `workers.rs` (losing a worker), `retirement.rs` (graceful
//! retirement), `invariants.rs` (what a consistent state is).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::graph::{self, IdMap, IdSet, TaskSpec};
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::protocol::messages::{ProgramEnded, TaskCountsReport};
use crate::task_array::{SubmissionId, TaskArraySpec, TaskOutcome, TaskStarted};

use super::placement;

mod graphs;
mod invariants;
mod results;
mod retirement;
pub mod task_arrays;
mod workers;

/// What a worker tells about itself when it registers.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WorkerInfo {
    pub name: String,
    /// Where peers and clients fetch its results ("host:port").
    pub address: String,
    pub nthreads: u32,
    pub memory_limit: u64,
    pub host: String,
    /// The batch job the worker runs in, if any.
    pub job_id: Option<String>,
    /// Resources it offers program tasks (name, amount).
    pub resources: Vec<(String, f64)>,
}

/// A finished task, as a worker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub task: TaskId,
    pub nbytes: u64,
    pub duration_us: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    WorkerJoined {
        worker: WorkerId,
        info: WorkerInfo,
    },
    /// The connection closed or heartbeats stopped: the worker and its data are gone.
    WorkerLost {
        worker: WorkerId,
    },
    /// Periodic: memory in use, whether the worker paused itself (memory above the pause
    /// threshold), and the tasks executing right now (to blame the right ones if it dies).
    Heartbeat {
        worker: WorkerId,
        memory: u64,
        paused: bool,
        executing: Vec<TaskId>,
        /// Reported only (no decision uses them): bytes spilled to disk, CPU use in
        /// thousandths of one core.
        spilled: u64,
        cpu_permille: u32,
    },
    GraphSubmitted {
        client: ClientId,
        tasks: Vec<TaskSpec>,
        wanted: Vec<TaskId>,
    },
    TasksFinished {
        worker: WorkerId,
        finished: Vec<Finished>,
    },
    TaskFailed {
        worker: WorkerId,
        task: TaskId,
        error: String,
    },
    /// The worker could not fetch these inputs of `task` from the holders it was given.
    MissingData {
        worker: WorkerId,
        task: TaskId,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    },
    /// The worker now holds a copy of `task`'s result (fetched for a task or replicated).
    ReplicaAdded {
        worker: WorkerId,
        task: TaskId,
        nbytes: u64,
    },
    /// The client no longer wants these results (and cancels them if still running).
    Release {
        client: ClientId,
        keys: Vec<TaskId>,
    },
    ClientGone {
        client: ClientId,
    },
    /// Copy these results (those in memory) to worker `to` as well.
    Replicate {
        keys: Vec<TaskId>,
        to: WorkerId,
    },
    /// Retire gracefully: stop giving them work, copy their unique needed results elsewhere,
    /// then close them.
    Retire {
        workers: Vec<WorkerId>,
        requester: Option<ClientId>,
    },
    /// A task array: expanded as its tasks are placed.
    TaskArraySubmitted {
        client: ClientId,
        spec: Box<TaskArraySpec>,
    },
    /// Cancel a submission's tasks (ids `first..=last`, or all).
    CancelTasks {
        submission: SubmissionId,
        tasks: Option<(u64, u64)>,
    },
    /// Program tasks ended on a worker.
    ProgramsEnded {
        worker: WorkerId,
        ended: Vec<ProgramEnded>,
    },
}

/// A task handed to a worker: everything it needs to run it, including who holds its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub task: TaskId,
    pub kernel: String,
    pub args: Vec<u8>,
    pub deps: Vec<DepLocation>,
    /// Lower runs first.
    pub priority: (u64, u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepLocation {
    pub task: TaskId,
    pub nbytes: u64,
    pub holders: Vec<WorkerId>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Compute {
        worker: WorkerId,
        tasks: Vec<Assignment>,
    },
    /// Drop these results and forget these tasks (cancelling them if still queued there).
    Release {
        worker: WorkerId,
        keys: Vec<TaskId>,
    },
    /// Fetch these results from the listed holders and keep them.
    Replicate {
        worker: WorkerId,
        keys: Vec<DepLocation>,
    },
    /// Retirement finished: the worker may exit.
    Close {
        worker: WorkerId,
    },
    KeyReady {
        client: ClientId,
        key: TaskId,
        nbytes: u64,
        holders: Vec<WorkerId>,
    },
    KeyErred {
        client: ClientId,
        key: TaskId,
        error: String,
    },
    GraphRejected {
        client: ClientId,
        reason: String,
    },
    WorkerRetired {
        requester: ClientId,
        worker: WorkerId,
    },
    TasksStarted {
        client: ClientId,
        started: Vec<TaskStarted>,
    },
    TaskOutcomes {
        client: ClientId,
        outcomes: Vec<TaskOutcome>,
    },
    TaskArrayRejected {
        client: ClientId,
        submission: SubmissionId,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Released,
    Waiting,
    Queued,
    Processing(WorkerId),
    Memory,
    Erred(Arc<str>),
}

impl TaskState {
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::Queued => "queued",
            TaskState::Processing(_) => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred(_) => "erred",
        }
    }

    fn is_active(&self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Queued | TaskState::Processing(_)
        )
    }
}

#[derive(Debug)]
struct Task {
    kernel: String,
    args: Vec<u8>,
    deps: Vec<TaskId>,
    dependents: Vec<TaskId>,
    state: TaskState,
    priority: (u64, u64),
    /// Inputs not yet in memory (meaningful while waiting).
    waiting_on: u32,
    /// Dependents that are waiting, queued or processing: they will read this result.
    pending_dependents: u32,
    wanted_by: Vec<ClientId>,
    holders: Vec<WorkerId>,
    nbytes: u64,
    /// How many workers died while running it.
    suspicious: u32,
}

impl Task {
    fn needed(&self) -> bool {
        !self.wanted_by.is_empty() || self.pending_dependents > 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    Running,
    Paused,
    Retiring,
}

#[derive(Debug)]
pub(super) struct Worker {
    pub info: WorkerInfo,
    pub status: WorkerStatus,
    pub processing: IdSet<TaskId>,
    pub has: IdSet<TaskId>,
    pub held_bytes: u64,
    pub memory: u64,
    pub spilled: u64,
    pub cpu_permille: u32,
    executing: Vec<TaskId>,
    /// While retiring: its results still being copied elsewhere, with the copy's target.
    replicating: HashMap<TaskId, WorkerId>,
    retire_requester: Option<ClientId>,
}

/// Tunables; the defaults are Dask's where Dask has one.
#[derive(Clone, Debug)]
pub struct Config {
    /// A task is marked failed after this many workers died while running it.
    pub allowed_failures: u32,
    /// Work kept queued on each worker, in expected run time per thread, so a thread never
    /// waits a network round trip for its next task.
    pub queued_work_us: f64,
    /// Share of a worker's memory limit that the outputs of its queued tasks may take, so
    /// out-of-core graphs stay within memory.
    pub queued_memory_fraction: f64,
    /// Upper bound of tasks queued on one worker thread.
    pub max_queued_per_thread: usize,
    /// Most tasks one submission may carry. Each known task costs the scheduler about
    /// [`BYTES_PER_TASK`]; a graph past what the machine can hold must be refused with a
    /// reason, not grow the scheduler until the kernel kills it (and every job with it).
    /// The server sizes it to the machine ([`default_max_graph_tasks`]); unbounded here.
    pub max_graph_tasks: usize,
}

/// What one known task costs the scheduler, resident, with its share of the submission's
/// transient copies (frame, decoded specs): ~650 bytes measured for 3 M one-chunk tasks.
pub const BYTES_PER_TASK: u64 = 1024;

/// The per-submission task limit for a machine with `total_memory` bytes: one submission may
/// take a tenth of it, and never fewer than 100,000 tasks (a small VM still runs real graphs).
pub fn default_max_graph_tasks(total_memory: u64) -> usize {
    (total_memory / 10 / BYTES_PER_TASK).max(100_000) as usize
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed_failures: 3,
            queued_work_us: 2_000.0,
            queued_memory_fraction: 0.25,
            max_queued_per_thread: 4096,
            max_graph_tasks: usize::MAX,
        }
    }
}

/// The duration assumed for tasks before any has finished (Dask's default-task-durations).
const UNKNOWN_TASK_DURATION_US: f64 = 500_000.0;

/// Observed cost of tasks, as exponentially weighted means.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Observed {
    pub duration_us: f64,
    pub nbytes: f64,
    pub count: u64,
}

/// Counts of tasks by state, for status displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub released: usize,
    pub waiting: usize,
    pub queued: usize,
    pub processing: usize,
    pub memory: usize,
    pub erred: usize,
}

/// The wire form of the counts (the protocol knows nothing of the scheduler's types).
impl From<TaskCounts> for TaskCountsReport {
    fn from(c: TaskCounts) -> Self {
        TaskCountsReport {
            released: c.released as u64,
            waiting: c.waiting as u64,
            queued: c.queued as u64,
            processing: c.processing as u64,
            memory: c.memory as u64,
            erred: c.erred as u64,
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    tasks: IdMap<TaskId, Task>,
    pub(super) workers: BTreeMap<WorkerId, Worker>,
    wanted: HashMap<ClientId, IdSet<TaskId>>,
    queue: BinaryHeap<Reverse<((u64, u64), TaskId)>>,
    generation: u64,
    pub(super) observed: Observed,
    config: Config,
    compute: BTreeMap<WorkerId, Vec<Assignment>>,
    release: BTreeMap<WorkerId, Vec<TaskId>>,
    replicate: BTreeMap<WorkerId, Vec<DepLocation>>,
    out: Vec<Command>,
    arrays: task_arrays::Arrays,
}

impl State {
    pub fn new(config: Config) -> Self {
        State {
            config,
            ..State::default()
        }
    }

    /// Applies one event. Commands accumulate until [`State::take_commands`].
    pub fn handle(&mut self, event: Event) {
        self.apply(event);
        self.sweep_retirements();
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::WorkerJoined { worker, info } => {
                self.workers.insert(
                    worker,
                    Worker {
                        info,
                        status: WorkerStatus::Running,
                        processing: IdSet::default(),
                        has: IdSet::default(),
                        held_bytes: 0,
                        memory: 0,
                        spilled: 0,
                        cpu_permille: 0,
                        executing: Vec::new(),
                        replicating: HashMap::new(),
                        retire_requester: None,
                    },
                );
            }
            Event::WorkerLost { worker } => self.remove_worker(worker),
            Event::Heartbeat {
                worker,
                memory,
                paused,
                executing,
                spilled,
                cpu_permille,
            } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.memory = memory;
                    w.spilled = spilled;
                    w.cpu_permille = cpu_permille;
                    w.executing = executing;
                    if w.status != WorkerStatus::Retiring {
                        w.status = if paused {
                            WorkerStatus::Paused
                        } else {
                            WorkerStatus::Running
                        };
                    }
                }
            }
            Event::GraphSubmitted {
                client,
                tasks,
                wanted,
            } => self.submit(client, tasks, wanted),
            Event::TasksFinished { worker, finished } => {
                for f in finished {
                    self.task_finished(worker, f);
                }
            }
            Event::TaskFailed {
                worker,
                task,
                error,
            } => self.task_failed(worker, task, error),
            Event::MissingData {
                worker,
                task,
                missing,
            } => self.missing_data(worker, task, missing),
            // The size is the task's, recorded when it finished (see `add_holder`).
            Event::ReplicaAdded {
                worker,
                task,
                nbytes: _,
            } => self.replica_added(worker, task),
            Event::Release { client, keys } => self.release_keys(client, keys),
            Event::ClientGone { client } => {
                let mut keys: Vec<TaskId> =
                    self.wanted.remove(&client).into_iter().flatten().collect();
                // In key order: the cancellations sent to workers do not depend on hashing.
                keys.sort_unstable();
                self.unwant(client, keys);
                self.arrays_client_gone(client);
            }
            Event::Replicate { keys, to } => {
                if self
                    .workers
                    .get(&to)
                    .is_some_and(|w| w.status != WorkerStatus::Retiring)
                {
                    for key in keys {
                        let Some(t) = self.tasks.get(&key) else {
                            continue;
                        };
                        if t.state == TaskState::Memory && !t.holders.contains(&to) {
                            let loc = DepLocation {
                                task: key,
                                nbytes: t.nbytes,
                                holders: t.holders.clone(),
                            };
                            self.replicate.entry(to).or_default().push(loc);
                        }
                    }
                }
            }
            Event::Retire { workers, requester } => {
                for w in workers {
                    self.start_retirement(w, requester);
                }
            }
            Event::TaskArraySubmitted { client, spec } => self.submit_task_array(client, *spec),
            Event::CancelTasks { submission, tasks } => self.cancel_tasks(submission, tasks),
            Event::ProgramsEnded { worker, ended } => self.programs_ended(worker, ended),
        }
    }

    /// Gives queued tasks to workers with free slots, then returns every pending command.
    pub fn take_commands(&mut self) -> Vec<Command> {
        self.fill_slots();
        self.place_programs();
        let mut out = std::mem::take(&mut self.out);
        self.take_array_commands(&mut out);
        for (worker, keys) in std::mem::take(&mut self.release) {
            if self.workers.contains_key(&worker) {
                out.push(Command::Release { worker, keys });
            }
        }
        for (worker, tasks) in std::mem::take(&mut self.compute) {
            out.push(Command::Compute { worker, tasks });
        }
        for (worker, keys) in std::mem::take(&mut self.replicate) {
            out.push(Command::Replicate { worker, keys });
        }
        out
    }

    // ----- placement ----------------------------------------------------------------------

    /// Hands queued tasks, best priority first, to workers with free slots.
    fn fill_slots(&mut self) {
        let mut free: Vec<(WorkerId, usize)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.status == WorkerStatus::Running)
            .filter_map(|(id, w)| {
                let cap = placement::capacity(w, &self.observed, &self.config);
                // Threads held by program tasks are not there for graph tasks.
                let cap = placement::share_left(cap, w.info.nthreads, self.program_cpus(*id));
                (w.processing.len() < cap).then(|| (*id, cap - w.processing.len()))
            })
            .collect();
        while !free.is_empty() {
            let Some(Reverse((_, id))) = self.queue.pop() else {
                break;
            };
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if task.state != TaskState::Queued {
                continue; // a stale entry: the task moved on since it was queued
            }
            let slot = placement::choose(
                &free,
                &self.workers,
                task.deps.iter().map(|d| {
                    let t = &self.tasks[d];
                    (t.nbytes, t.holders.as_slice())
                }),
            );
            let (worker, left) = &mut free[slot];
            let worker = *worker;
            *left -= 1;
            if *left == 0 {
                free.swap_remove(slot);
            }
            self.assign(id, worker);
        }
    }

    fn assign(&mut self, id: TaskId, worker: WorkerId) {
        let task = self.tasks.get_mut(&id).expect("present");
        task.state = TaskState::Processing(worker);
        let task = &self.tasks[&id];
        let deps = task
            .deps
            .iter()
            .map(|d| {
                let t = &self.tasks[d];
                DepLocation {
                    task: *d,
                    nbytes: t.nbytes,
                    holders: t.holders.clone(),
                }
            })
            .collect();
        let assignment = Assignment {
            task: id,
            kernel: task.kernel.clone(),
            args: task.args.clone(),
            deps,
            priority: task.priority,
        };
        self.workers
            .get_mut(&worker)
            .expect("present")
            .processing
            .insert(id);
        self.compute.entry(worker).or_default().push(assignment);
    }

    // ----- memory -------------------------------------------------------------------------

    /// Gives back the room of tasks and workers that are gone: hash maps and sets keep their
    /// peak capacity forever, so after a 3 M-task graph is released the scheduler would
    /// otherwise hold its memory until it exits. A collection shrinks once it is under a
    /// quarter full (so a steady workload never reallocates); stale queue entries of tasks
    /// that were forgotten go too. Returns whether anything was freed (the caller may then
    /// hand the free heap back to the system).
    pub fn compact(&mut self) -> bool {
        fn shrink(len: usize, capacity: usize, shrink: impl FnOnce()) -> bool {
            let worth = capacity > 1024 && len < capacity / 4;
            if worth {
                shrink();
            }
            worth
        }
        let mut freed = false;
        // More entries than tasks: most are of forgotten tasks (a cheap test, run each tick).
        if self.queue.len() > 1024 && self.queue.len() > 2 * self.tasks.len() {
            let tasks = &self.tasks;
            self.queue.retain(|Reverse((_, id))| {
                tasks.get(id).is_some_and(|t| t.state == TaskState::Queued)
            });
        }
        let queue = &mut self.queue;
        freed |= shrink(queue.len(), queue.capacity(), || queue.shrink_to_fit());
        let tasks = &mut self.tasks;
        freed |= shrink(tasks.len(), tasks.capacity(), || tasks.shrink_to_fit());
        for set in self.wanted.values_mut() {
            freed |= shrink(set.len(), set.capacity(), || set.shrink_to_fit());
        }
        for w in self.workers.values_mut() {
            let has = &mut w.has;
            freed |= shrink(has.len(), has.capacity(), || has.shrink_to_fit());
            let processing = &mut w.processing;
            freed |= shrink(processing.len(), processing.capacity(), || {
                processing.shrink_to_fit()
            });
        }
        let out = &mut self.out;
        freed |= shrink(out.len(), out.capacity(), || out.shrink_to_fit());
        freed
    }

    /// Capacity of the task table, for tests of [`State::compact`].
    pub fn task_capacity(&self) -> usize {
        self.tasks.capacity()
    }

    // ----- queries ------------------------------------------------------------------------

    pub fn task_state(&self, id: TaskId) -> Option<&TaskState> {
        self.tasks.get(&id).map(|t| &t.state)
    }

    /// The kernel a known task runs (its kind, for observers).
    pub fn kernel_of(&self, id: TaskId) -> Option<&str> {
        self.tasks.get(&id).map(|t| t.kernel.as_str())
    }

    pub fn holders(&self, id: TaskId) -> &[WorkerId] {
        self.tasks
            .get(&id)
            .map(|t| t.holders.as_slice())
            .unwrap_or(&[])
    }

    pub fn worker_ids(&self) -> Vec<WorkerId> {
        self.workers.keys().copied().collect()
    }

    pub fn worker_info(&self, id: WorkerId) -> Option<&WorkerInfo> {
        self.workers.get(&id).map(|w| &w.info)
    }

    /// (status, tasks processing, results held, bytes held, memory in use).
    pub fn worker_load(&self, id: WorkerId) -> Option<(WorkerStatus, usize, usize, u64, u64)> {
        self.workers.get(&id).map(|w| {
            (
                w.status,
                w.processing.len(),
                w.has.len(),
                w.held_bytes,
                w.memory,
            )
        })
    }

    /// What the worker last reported of itself: spilled bytes and CPU use (permille).
    pub fn worker_usage(&self, id: WorkerId) -> Option<(u64, u32)> {
        self.workers.get(&id).map(|w| (w.spilled, w.cpu_permille))
    }

    pub fn counts(&self) -> TaskCounts {
        let mut c = TaskCounts::default();
        for t in self.tasks.values() {
            match t.state {
                TaskState::Released => c.released += 1,
                TaskState::Waiting => c.waiting += 1,
                TaskState::Queued => c.queued += 1,
                TaskState::Processing(_) => c.processing += 1,
                TaskState::Memory => c.memory += 1,
                TaskState::Erred(_) => c.erred += 1,
            }
        }
        c
    }

    /// Work not yet done, in expected microseconds (for adaptive scaling): tasks waiting,
    /// queued or processing, times their observed mean duration. Before any task has
    /// finished, a task counts as half a second (Dask's default task duration): a cluster
    /// at zero workers must not ask for just one because it has seen nothing run yet.
    pub fn pending_work_us(&self) -> f64 {
        let c = self.counts();
        let per_task = if self.observed.count == 0 {
            UNKNOWN_TASK_DURATION_US
        } else {
            self.observed.duration_us.max(1.0)
        };
        (c.waiting + c.queued + c.processing) as f64 * per_task
    }
}
