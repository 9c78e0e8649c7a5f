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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::graph::{self, IdMap, IdSet, TaskSpec};
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::protocol::messages::TaskCountsReport;

use super::placement;

/// What a worker tells about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WorkerInfo {
    pub name: String,
    /// Where peers and clients fetch its results ("host:port").
    pub address: String,
    pub nthreads: u32,
    pub memory_limit: u64,
    pub host: String,
    /// The batch job the worker runs in, if any.
    pub job_id: Option<String>,
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

#[derive(Clone, Debug, PartialEq, Eq)]
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
            } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.memory = memory;
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
        }
    }

    /// Gives queued tasks to workers with free slots, then returns every pending command.
    pub fn take_commands(&mut self) -> Vec<Command> {
        self.fill_slots();
        let mut out = std::mem::take(&mut self.out);
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

    // ----- graphs -------------------------------------------------------------------------

    fn submit(&mut self, client: ClientId, tasks: Vec<TaskSpec>, wanted: Vec<TaskId>) {
        if tasks.len() > self.config.max_graph_tasks {
            let reason = graph::too_many_tasks(tasks.len(), self.config.max_graph_tasks);
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        let new: Vec<TaskSpec> = tasks
            .into_iter()
            .filter(|t| !self.tasks.contains_key(&t.id))
            .collect();
        if let Err(reason) = graph::validate(&new, |id| self.tasks.contains_key(&id)) {
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        let new_ids: IdSet<TaskId> = new.iter().map(|t| t.id).collect();
        if let Some(k) = wanted
            .iter()
            .find(|k| !self.tasks.contains_key(k) && !new_ids.contains(k))
        {
            let reason = format!("wanted key {k} is not in the graph");
            self.out.push(Command::GraphRejected { client, reason });
            return;
        }
        self.generation += 1;
        let ranks = graph::order(&new);
        // Wired only once every task is in: a client may list a dependent before its input
        // (nothing asks for topological order), and validation guarantees each input is here
        // by then, either known before or part of this graph.
        let mut edges: Vec<(TaskId, TaskId)> = Vec::new();
        for spec in new {
            edges.extend(spec.deps.iter().map(|d| (*d, spec.id)));
            let priority = (self.generation, ranks[&spec.id]);
            self.tasks.insert(
                spec.id,
                Task {
                    kernel: spec.kernel,
                    args: spec.args,
                    deps: spec.deps,
                    dependents: Vec::new(),
                    state: TaskState::Released,
                    priority,
                    waiting_on: 0,
                    pending_dependents: 0,
                    wanted_by: Vec::new(),
                    holders: Vec::new(),
                    nbytes: 0,
                    suspicious: 0,
                },
            );
        }
        for (input, dependent) in edges {
            self.tasks
                .get_mut(&input)
                .expect("validated: every input is known or in the graph")
                .dependents
                .push(dependent);
        }
        for key in wanted {
            if !self.wanted.entry(client).or_default().insert(key) {
                continue;
            }
            let task = self.tasks.get_mut(&key).expect("checked");
            task.wanted_by.push(client);
            match &task.state {
                TaskState::Memory => {
                    let (nbytes, holders) = (task.nbytes, task.holders.clone());
                    self.out.push(Command::KeyReady {
                        client,
                        key,
                        nbytes,
                        holders,
                    });
                }
                TaskState::Erred(e) => {
                    let error = e.to_string();
                    self.out.push(Command::KeyErred { client, key, error });
                }
                TaskState::Released => self.activate(key),
                _ => {}
            }
        }
        // Tasks of this graph that nothing wanted or needs would otherwise stay forever.
        let unwanted: Vec<TaskId> = new_ids
            .into_iter()
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| t.dependents.is_empty() && !t.needed())
            })
            .collect();
        self.forget_unreachable(unwanted);
    }

    /// Makes a released task compute: counts it as a pending reader of its inputs, activates
    /// inputs that are not in memory either, and queues it if all its inputs are there.
    /// Iterative, because chains can be far deeper than the stack.
    fn activate(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let task = &self.tasks[&id];
            if task.state != TaskState::Released {
                continue;
            }
            let deps = task.deps.clone();
            let mut waiting_on = 0;
            let mut failed: Option<Arc<str>> = None;
            for d in &deps {
                let dep = self.tasks.get_mut(d).expect("deps outlive dependents");
                dep.pending_dependents += 1;
                match &dep.state {
                    TaskState::Memory => {}
                    TaskState::Erred(e) => failed = Some(e.clone()),
                    TaskState::Released => {
                        waiting_on += 1;
                        stack.push(*d);
                    }
                    _ => waiting_on += 1,
                }
            }
            let task = self.tasks.get_mut(&id).expect("present");
            task.waiting_on = waiting_on;
            if let Some(e) = failed {
                task.state = TaskState::Waiting;
                self.fail(id, e);
            } else if waiting_on == 0 {
                self.enqueue(id);
            } else {
                task.state = TaskState::Waiting;
            }
        }
    }

    fn enqueue(&mut self, id: TaskId) {
        let task = self.tasks.get_mut(&id).expect("present");
        task.state = TaskState::Queued;
        self.queue.push(Reverse((task.priority, id)));
    }

    // ----- results ------------------------------------------------------------------------

    fn task_finished(&mut self, worker: WorkerId, f: Finished) {
        let Some(task) = self.tasks.get_mut(&f.task) else {
            // Forgotten while it ran: the worker can drop it.
            self.release.entry(worker).or_default().push(f.task);
            return;
        };
        if !self.workers.contains_key(&worker) {
            return;
        }
        let o = &mut self.observed;
        let weight = if o.count < 10 {
            1.0 / (o.count + 1) as f64
        } else {
            0.1
        };
        o.duration_us += (f.duration_us as f64 - o.duration_us) * weight;
        o.nbytes += (f.nbytes as f64 - o.nbytes) * weight;
        o.count += 1;
        match task.state.clone() {
            TaskState::Memory => {
                self.add_holder(f.task, worker);
                return;
            }
            TaskState::Released | TaskState::Erred(_) => {
                self.release.entry(worker).or_default().push(f.task);
                return;
            }
            TaskState::Processing(w) => {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&f.task);
                }
            }
            // Re-queued after a loss, but this copy finished anyway: take it (tasks are pure).
            TaskState::Queued | TaskState::Waiting => {}
        }
        let task = self.tasks.get_mut(&f.task).expect("present");
        task.state = TaskState::Memory;
        task.nbytes = f.nbytes;
        task.holders.clear();
        self.add_holder(f.task, worker);
        let task = &self.tasks[&f.task];
        for client in task.wanted_by.clone() {
            let holders = vec![worker];
            self.out.push(Command::KeyReady {
                client,
                key: f.task,
                nbytes: f.nbytes,
                holders,
            });
        }
        for dependent in self.tasks[&f.task].dependents.clone() {
            let t = self.tasks.get_mut(&dependent).expect("present");
            if t.state == TaskState::Waiting {
                t.waiting_on -= 1;
                if t.waiting_on == 0 {
                    self.enqueue(dependent);
                }
            }
        }
        self.inputs_done(f.task);
        self.settle(f.task);
    }

    /// Counts `worker` as a holder. A worker's bytes are counted at the task's recorded size
    /// (set when it first finished), never at what a later report claims: what is added here
    /// is exactly what `drop_data` and `remove_holder` subtract.
    fn add_holder(&mut self, task: TaskId, worker: WorkerId) {
        let t = self.tasks.get_mut(&task).expect("present");
        if !t.holders.contains(&worker) {
            t.holders.push(worker);
            let nbytes = t.nbytes;
            let w = self.workers.get_mut(&worker).expect("present");
            w.has.insert(task);
            w.held_bytes = w.held_bytes.saturating_add(nbytes);
        }
    }

    /// `task` no longer reads its inputs: they may be released.
    fn inputs_done(&mut self, task: TaskId) {
        for d in self.tasks[&task].deps.clone() {
            let dep = self.tasks.get_mut(&d).expect("present");
            dep.pending_dependents -= 1;
            self.settle(d);
        }
    }

    /// Releases a result no one needs and cancels work no one needs, cascading to inputs.
    fn settle(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if task.needed() {
                continue;
            }
            match task.state.clone() {
                TaskState::Memory => self.drop_data(id),
                TaskState::Waiting | TaskState::Queued | TaskState::Processing(_) => {
                    if let TaskState::Processing(w) = task.state {
                        if let Some(w) = self.workers.get_mut(&w) {
                            w.processing.remove(&id);
                        }
                        self.release.entry(w).or_default().push(id);
                    }
                    self.tasks.get_mut(&id).expect("present").state = TaskState::Released;
                    for d in self.tasks[&id].deps.clone() {
                        self.tasks.get_mut(&d).expect("present").pending_dependents -= 1;
                        stack.push(d);
                    }
                }
                TaskState::Released | TaskState::Erred(_) => {}
            }
        }
    }

    /// Drops a result from every holder; the task stays known (released) for lineage.
    fn drop_data(&mut self, id: TaskId) {
        let task = self.tasks.get_mut(&id).expect("present");
        task.state = TaskState::Released;
        let nbytes = task.nbytes;
        for h in std::mem::take(&mut task.holders) {
            if let Some(w) = self.workers.get_mut(&h) {
                w.has.remove(&id);
                w.held_bytes = w.held_bytes.saturating_sub(nbytes);
            }
            self.release.entry(h).or_default().push(id);
        }
    }

    fn task_failed(&mut self, worker: WorkerId, id: TaskId, error: String) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if task.state != TaskState::Processing(worker) {
            return;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
        }
        self.fail(id, Arc::from(error.as_str()));
    }

    /// Marks an active task erred, and with it every active task downstream; tells the
    /// clients that wanted any of them.
    fn fail(&mut self, root: TaskId, error: Arc<str>) {
        let mut stack = vec![(root, error)];
        while let Some((id, error)) = stack.pop() {
            let task = self.tasks.get_mut(&id).expect("present");
            if !task.state.is_active() {
                continue;
            }
            if let TaskState::Processing(w) = task.state {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&id);
                }
                self.release.entry(w).or_default().push(id);
            }
            let task = self.tasks.get_mut(&id).expect("present");
            task.state = TaskState::Erred(error.clone());
            for &client in &task.wanted_by {
                self.out.push(Command::KeyErred {
                    client,
                    key: id,
                    error: error.to_string(),
                });
            }
            let downstream: Arc<str> = if id == root {
                Arc::from(format!("task {id} failed: {error}").as_str())
            } else {
                error.clone()
            };
            for dependent in task.dependents.clone() {
                stack.push((dependent, downstream.clone()));
            }
            self.inputs_done(id);
        }
    }

    fn missing_data(
        &mut self,
        worker: WorkerId,
        id: TaskId,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    ) {
        // Holders the worker could not reach no longer count as holders of those results.
        for (dep, unreachable) in missing {
            let Some(t) = self.tasks.get(&dep) else {
                continue;
            };
            if t.state != TaskState::Memory {
                continue;
            }
            for h in unreachable {
                self.remove_holder(dep, h);
            }
        }
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if task.state == TaskState::Processing(worker) {
            self.workers
                .get_mut(&worker)
                .expect("present")
                .processing
                .remove(&id);
            self.requeue(id);
        }
    }

    fn remove_holder(&mut self, id: TaskId, worker: WorkerId) {
        let task = self.tasks.get_mut(&id).expect("present");
        let Some(pos) = task.holders.iter().position(|h| *h == worker) else {
            return;
        };
        task.holders.swap_remove(pos);
        let nbytes = task.nbytes;
        let lost = task.holders.is_empty();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has.remove(&id);
            w.held_bytes = w.held_bytes.saturating_sub(nbytes);
            // It may still hold the data (a peer merely failed to reach it): let it go.
            self.release.entry(worker).or_default().push(id);
        }
        if lost {
            self.result_lost(id);
        }
    }

    /// The last copy of a result is gone. Dependents that counted on it wait again; if the
    /// result is still needed, it is recomputed from its inputs (which may need recomputing).
    fn result_lost(&mut self, id: TaskId) {
        self.tasks.get_mut(&id).expect("present").state = TaskState::Released;
        for dependent in self.tasks[&id].dependents.clone() {
            let t = self.tasks.get_mut(&dependent).expect("present");
            match t.state {
                TaskState::Waiting => t.waiting_on += 1,
                TaskState::Queued => {
                    t.state = TaskState::Waiting;
                    t.waiting_on = 1;
                }
                _ => {}
            }
        }
        if self.tasks[&id].needed() {
            // Activation counts it as a reader of its inputs again: undo the count its
            // completion removed.
            self.activate(id);
        }
    }

    /// Puts an assigned task back to waiting or queued, re-activating inputs it lost.
    fn requeue(&mut self, id: TaskId) {
        let deps = self.tasks[&id].deps.clone();
        let mut waiting_on = 0;
        for d in deps {
            match self.tasks[&d].state {
                TaskState::Memory => {}
                TaskState::Released => {
                    waiting_on += 1;
                    self.activate(d);
                }
                _ => waiting_on += 1,
            }
        }
        let task = self.tasks.get_mut(&id).expect("present");
        task.waiting_on = waiting_on;
        if waiting_on == 0 {
            self.enqueue(id);
        } else {
            task.state = TaskState::Waiting;
        }
    }

    fn replica_added(&mut self, worker: WorkerId, id: TaskId) {
        let in_memory = self
            .tasks
            .get(&id)
            .is_some_and(|t| t.state == TaskState::Memory);
        if !in_memory || !self.workers.contains_key(&worker) {
            self.release.entry(worker).or_default().push(id);
            return;
        }
        // The retirement that asked for this copy is finished by the sweep.
        self.add_holder(id, worker);
    }

    // ----- clients ------------------------------------------------------------------------

    fn release_keys(&mut self, client: ClientId, keys: Vec<TaskId>) {
        let keys: Vec<TaskId> = keys
            .into_iter()
            .filter(|key| self.wanted.get_mut(&client).is_some_and(|w| w.remove(key)))
            .collect();
        self.unwant(client, keys);
    }

    /// `client` no longer wants `keys`: work nobody needs stops, and tasks nothing can need
    /// again are forgotten (all in one pass, see `forget_unreachable`).
    fn unwant(&mut self, client: ClientId, keys: Vec<TaskId>) {
        for key in &keys {
            if let Some(task) = self.tasks.get_mut(key) {
                task.wanted_by.retain(|c| *c != client);
                self.settle(*key);
            }
        }
        self.forget_unreachable(keys);
    }

    /// Forgets tasks that no client wants and no known task depends on, cascading to inputs.
    ///
    /// In waves: a wave removes every task of it that can go, and only then prunes the
    /// dependents lists of their inputs, once per input; the inputs make the next wave. An
    /// input read by 100,000 tasks (`x - x.mean()`) is pruned in one pass, where pruning it
    /// per removed dependent was quadratic and held the core for minutes. A task kept in a
    /// wave because its list still named a dependent removed in that same wave is one of
    /// the pruned inputs, so the next wave looks at it again.
    fn forget_unreachable(&mut self, roots: impl IntoIterator<Item = TaskId>) {
        let mut wave: Vec<TaskId> = roots.into_iter().collect();
        while !wave.is_empty() {
            let mut gone: IdSet<TaskId> = IdSet::default();
            let mut inputs: IdSet<TaskId> = IdSet::default();
            for id in wave.drain(..) {
                let Some(task) = self.tasks.get(&id) else {
                    continue;
                };
                if task.needed() || task.state.is_active() || !task.dependents.is_empty() {
                    continue;
                }
                if task.state == TaskState::Memory {
                    self.drop_data(id);
                }
                let task = self.tasks.remove(&id).expect("present");
                gone.insert(id);
                inputs.extend(task.deps);
            }
            for d in &inputs {
                if let Some(dep) = self.tasks.get_mut(d) {
                    dep.dependents.retain(|x| !gone.contains(x));
                }
            }
            wave.extend(inputs);
        }
    }

    // ----- workers ------------------------------------------------------------------------

    fn remove_worker(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.remove(&worker) else {
            return;
        };
        // A retirement that ends by loss still ends: its requester must not wait forever.
        if let (WorkerStatus::Retiring, Some(requester)) = (w.status, w.retire_requester) {
            let answer = Command::WorkerRetired { requester, worker };
            if !self.out.contains(&answer) {
                self.out.push(answer);
            }
        }
        self.release.remove(&worker);
        self.compute.remove(&worker);
        self.replicate.remove(&worker);
        // Lost data first, so tasks put back below see their inputs' true states.
        for id in w.has {
            let task = self.tasks.get_mut(&id).expect("present");
            task.holders.retain(|h| *h != worker);
            if task.holders.is_empty() && task.state == TaskState::Memory {
                self.result_lost(id);
            }
        }
        let blamed: IdSet<TaskId> = if w.executing.is_empty() {
            w.processing.clone()
        } else {
            w.executing.iter().copied().collect()
        };
        let mut processing: Vec<TaskId> = w.processing.into_iter().collect();
        processing.sort();
        for id in processing {
            let allowed = self.config.allowed_failures;
            let task = self.tasks.get_mut(&id).expect("present");
            if task.state != TaskState::Processing(worker) {
                continue;
            }
            if blamed.contains(&id) {
                task.suspicious += 1;
            }
            if task.suspicious >= allowed {
                let error = format!(
                    "{} workers died while running this task (the limit is {allowed})",
                    task.suspicious
                );
                self.fail(id, Arc::from(error.as_str()));
            } else {
                self.requeue(id);
            }
        }
        // Retirements that were copying onto this worker are redirected by the sweep.
    }

    fn start_retirement(&mut self, worker: WorkerId, requester: Option<ClientId>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            // Unknown or already gone: nothing to hand over, and the requester must not wait.
            if let Some(requester) = requester {
                self.out.push(Command::WorkerRetired { requester, worker });
            }
            return;
        };
        w.status = WorkerStatus::Retiring;
        w.retire_requester = requester;
        // Its queued and running tasks go back to the scheduler's queue for the others.
        let mut processing: Vec<TaskId> = w.processing.drain().collect();
        processing.sort();
        for id in &processing {
            self.release.entry(worker).or_default().push(*id);
        }
        for id in processing {
            self.requeue(id);
        }
        let mut unique: Vec<TaskId> = self.workers[&worker]
            .has
            .iter()
            .filter(|id| self.only_retiring_workers_hold(**id))
            .copied()
            .collect();
        unique.sort();
        for id in unique {
            self.replicate_away(worker, id);
        }
        self.finish_retirement_if_done(worker);
    }

    /// True when every worker holding `id` is retiring: the result must be copied before they go.
    fn only_retiring_workers_hold(&self, id: TaskId) -> bool {
        self.tasks[&id].holders.iter().all(|h| {
            self.workers
                .get(h)
                .is_none_or(|w| w.status == WorkerStatus::Retiring)
        })
    }

    /// Keeps retirements moving whatever happened meanwhile: copies of results that were
    /// released or lost are forgotten, copies headed to a worker that is itself retiring or
    /// gone are sent elsewhere, and retirements with nothing left to do finish.
    fn sweep_retirements(&mut self) {
        let retiring: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.status == WorkerStatus::Retiring)
            .map(|(id, _)| *id)
            .collect();
        for r in retiring {
            let Some(w) = self.workers.get(&r) else {
                continue;
            };
            let copies: Vec<(TaskId, WorkerId)> =
                w.replicating.iter().map(|(k, t)| (*k, *t)).collect();
            for (key, target) in copies {
                let held_here = self
                    .tasks
                    .get(&key)
                    .is_some_and(|t| t.state == TaskState::Memory && t.holders.contains(&r));
                let target_ok = self
                    .workers
                    .get(&target)
                    .is_some_and(|t| t.status != WorkerStatus::Retiring);
                if !held_here || !self.only_retiring_workers_hold(key) {
                    self.workers
                        .get_mut(&r)
                        .expect("present")
                        .replicating
                        .remove(&key);
                } else if !target_ok {
                    self.workers
                        .get_mut(&r)
                        .expect("present")
                        .replicating
                        .remove(&key);
                    self.replicate_away(r, key);
                }
            }
            self.finish_retirement_if_done(r);
        }
    }

    /// Asks the running worker with the least data to copy `id` from the retiring `from`.
    fn replicate_away(&mut self, from: WorkerId, id: TaskId) {
        let target = self
            .workers
            .iter()
            .filter(|(wid, w)| **wid != from && w.status != WorkerStatus::Retiring)
            .min_by_key(|(wid, w)| (w.held_bytes, **wid))
            .map(|(wid, _)| *wid);
        // With no other worker left, the result stays recomputable from its lineage.
        let Some(target) = target else { return };
        let task = &self.tasks[&id];
        let loc = DepLocation {
            task: id,
            nbytes: task.nbytes,
            holders: vec![from],
        };
        self.replicate.entry(target).or_default().push(loc);
        self.workers
            .get_mut(&from)
            .expect("present")
            .replicating
            .insert(id, target);
    }

    fn finish_retirement_if_done(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.get(&worker) else {
            return;
        };
        if w.status != WorkerStatus::Retiring
            || !w.replicating.is_empty()
            || !w.processing.is_empty()
        {
            return;
        }
        let requester = w.retire_requester;
        self.out.push(Command::Close { worker });
        if let Some(requester) = requester {
            self.out.push(Command::WorkerRetired { requester, worker });
        }
        self.remove_worker(worker);
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

    /// Checks every invariant; used by tests after each event. Returns what is broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, t) in &self.tasks {
            match &t.state {
                TaskState::Processing(w) => {
                    let ok = self
                        .workers
                        .get(w)
                        .is_some_and(|w| w.processing.contains(id));
                    if !ok {
                        return Err(format!("{id} processing on {w}, which does not list it"));
                    }
                }
                TaskState::Memory => {
                    if t.holders.is_empty() {
                        return Err(format!("{id} in memory with no holder"));
                    }
                    for h in &t.holders {
                        if !self.workers.get(h).is_some_and(|w| w.has.contains(id)) {
                            return Err(format!("{id} held by {h}, which does not list it"));
                        }
                    }
                }
                TaskState::Waiting => {
                    let missing = t
                        .deps
                        .iter()
                        .filter(|d| self.tasks[d].state != TaskState::Memory)
                        .count() as u32;
                    if missing != t.waiting_on || missing == 0 {
                        return Err(format!(
                            "{id} waiting on {} but {missing} inputs are missing",
                            t.waiting_on
                        ));
                    }
                    for d in &t.deps {
                        if self.tasks[d].state == TaskState::Released {
                            return Err(format!("{id} waits on {d}, which nobody computes"));
                        }
                    }
                }
                TaskState::Queued => {
                    if let Some(d) = t
                        .deps
                        .iter()
                        .find(|d| self.tasks[d].state != TaskState::Memory)
                    {
                        return Err(format!("{id} queued but input {d} is not in memory"));
                    }
                }
                TaskState::Released | TaskState::Erred(_) => {
                    if !t.holders.is_empty() {
                        return Err(format!("{id} is {} but has holders", t.state.name()));
                    }
                }
            }
            let readers = t
                .dependents
                .iter()
                .filter(|d| self.tasks[d].state.is_active())
                .count() as u32;
            if readers != t.pending_dependents {
                return Err(format!(
                    "{id} counts {} pending dependents, has {readers}",
                    t.pending_dependents
                ));
            }
            if t.state == TaskState::Memory && !t.needed() {
                return Err(format!("{id} kept in memory though nobody needs it"));
            }
            if t.needed() && t.state == TaskState::Released {
                return Err(format!("{id} is needed but nobody computes it"));
            }
        }
        let mut seen_processing: BTreeSet<TaskId> = BTreeSet::new();
        for (wid, w) in &self.workers {
            for id in &w.processing {
                if !seen_processing.insert(*id) {
                    return Err(format!("{id} runs on two workers at once"));
                }
                if self.tasks.get(id).map(|t| &t.state) != Some(&TaskState::Processing(*wid)) {
                    return Err(format!(
                        "{wid} lists {id} as processing but the task disagrees"
                    ));
                }
            }
            for id in &w.has {
                if !self.tasks.get(id).is_some_and(|t| t.holders.contains(wid)) {
                    return Err(format!("{wid} lists {id} as held but the task disagrees"));
                }
            }
        }
        Ok(())
    }
}
