//! Task arrays: submissions of one program over many inputs, expanded as they are placed.
//!
//! Why a file of its own: program tasks follow rules of their own — they reserve `cpus` of a
//! worker's threads and its resources while they run and are never queued ahead on a worker;
//! a lost worker re-runs them up to `max_retries`; a non-zero exit is that task's failure;
//! `after` chains submissions; cancel kills running ones — and they share the workers'
//! threads with ordinary graph tasks (see `State::fill_slots`).
//!
//! Memory: a submission keeps its description once and its not-yet-started tasks as ranges
//! of positions, so a queued task costs nothing of its own; a task's arguments are generated
//! only when it is assigned. Only running tasks and tasks waiting for a retry have a record.
//! A submission is forgotten once its last outcome is out (its verdict — all succeeded or
//! not — stays, one entry per submission, for `after`).

use std::collections::VecDeque;

use super::*;
use crate::protocol::messages::{ProgramEnded, QueuedDemand};
use crate::task_array::{
    SubmissionId, TaskArraySpec, TaskEnd, TaskOutcome, TaskStarted, PROGRAM_KERNEL,
};

/// Program tasks' keys: the top bit set, a range no client's keys reach
/// (`ClientId << KEY_BITS` would need 2^23 clients).
pub const PROGRAM_KEY_BIT: u64 = 1 << 63;

pub fn is_program_key(id: TaskId) -> bool {
    id.0 & PROGRAM_KEY_BIT != 0
}

#[derive(Debug)]
struct Submission {
    spec: Arc<TaskArraySpec>,
    client: ClientId,
    /// Positions never started, as ascending half-open ranges.
    pending: VecDeque<(u64, u64)>,
    /// Positions to run again, with the runs they have had.
    retry: VecDeque<(u64, u32)>,
    /// Tasks ended so far (each ends exactly once).
    ended: u64,
    all_succeeded: bool,
    /// Submissions named in `after` that have not finished yet.
    waiting_for: Vec<SubmissionId>,
}

impl Submission {
    fn ready(&self) -> u64 {
        self.pending.iter().map(|(a, b)| b - a).sum::<u64>() + self.retry.len() as u64
    }

    /// The next position to run and its runs so far: retries first (they waited longest).
    fn take_next(&mut self) -> Option<(u64, u32)> {
        if let Some(r) = self.retry.pop_front() {
            return Some(r);
        }
        let (a, b) = self.pending.front_mut()?;
        let p = *a;
        *a += 1;
        if a == b {
            self.pending.pop_front();
        }
        Some((p, 0))
    }
}

#[derive(Debug, Clone)]
struct Running {
    submission: SubmissionId,
    position: u64,
    /// Runs including this one.
    attempt: u32,
    worker: WorkerId,
    /// Cancelled while it ran: its outcome is out; its room is freed when the worker says
    /// the process is gone.
    cancelled: bool,
}

/// Threads and resources program tasks hold on one worker.
#[derive(Debug, Default, Clone)]
struct Usage {
    cpus: u32,
    resources: Vec<(String, f64)>,
}

#[derive(Debug, Default)]
pub(super) struct Arrays {
    subs: BTreeMap<SubmissionId, Submission>,
    /// Finished submissions: whether every task succeeded.
    verdicts: HashMap<SubmissionId, bool>,
    running: HashMap<TaskId, Running>,
    usage: HashMap<WorkerId, Usage>,
    next_key: u64,
    started: BTreeMap<ClientId, Vec<TaskStarted>>,
    ended: BTreeMap<ClientId, Vec<TaskOutcome>>,
}

/// Room left on a worker for program tasks, and what it offers.
struct Room {
    worker: WorkerId,
    cpus: u32,
    resources: Vec<(String, f64)>,
}

impl Room {
    fn fits(&self, spec: &TaskArraySpec) -> bool {
        self.cpus >= spec.cpus
            && spec.resources.iter().all(|(name, need)| {
                self.resources
                    .iter()
                    .any(|(n, have)| n == name && *have + 1e-9 >= *need)
            })
    }

    fn take(&mut self, spec: &TaskArraySpec) {
        self.cpus -= spec.cpus;
        for (name, need) in &spec.resources {
            if let Some((_, have)) = self.resources.iter_mut().find(|(n, _)| n == name) {
                *have -= need;
            }
        }
    }
}

/// A submission whose next task fits nowhere now keeps the worker where it will fit first
/// (the one with most room among those big enough) from newer submissions' smaller tasks:
/// without it, 1-cpu tasks would fill every thread that frees and a wide task would never
/// start. No worker is big enough: nothing is kept (the task waits for the cluster to grow).
fn reserve(workers: &BTreeMap<WorkerId, Worker>, spec: &TaskArraySpec, rooms: &mut Vec<Room>) {
    let room_of = |id: &WorkerId| rooms.iter().find(|r| r.worker == *id).map_or(0, |r| r.cpus);
    let best = workers
        .iter()
        .filter(|(_, w)| w.status == WorkerStatus::Running)
        .filter(|(_, w)| {
            let whole = Room {
                worker: 0,
                cpus: w.info.nthreads,
                resources: w.info.resources.clone(),
            };
            whole.fits(spec)
        })
        .max_by_key(|(id, _)| (room_of(id), Reverse(**id)))
        .map(|(id, _)| *id);
    if let Some(id) = best {
        rooms.retain(|r| r.worker != id);
    }
}

fn empty_outcome(spec: &TaskArraySpec, position: u64, state: TaskEnd, attempt: u32) -> TaskOutcome {
    TaskOutcome {
        submission: spec.submission,
        task: spec.items.id(position),
        state,
        attempt,
        start: 0.0,
        end: 0.0,
        worker: String::new(),
        host: String::new(),
        stderr_tail: String::new(),
    }
}

impl State {
    /// A task array arrives: checked, then queued (or held by `after`, or failed at once
    /// when a submission it waits for failed).
    pub(super) fn submit_task_array(&mut self, client: ClientId, spec: TaskArraySpec) {
        let id = spec.submission;
        let reject = |s: &mut State, reason: String| {
            s.out.push(Command::TaskArrayRejected {
                client,
                submission: id,
                reason,
            });
        };
        if let Err(e) = spec.check() {
            return reject(self, e.to_string());
        }
        if self.arrays.subs.contains_key(&id) || self.arrays.verdicts.contains_key(&id) {
            return reject(
                self,
                format!("submission {id} is already known; use a new id"),
            );
        }
        if let Some(unknown) = spec
            .after
            .iter()
            .find(|a| !self.arrays.subs.contains_key(a) && !self.arrays.verdicts.contains_key(a))
        {
            return reject(
                self,
                format!("--after {unknown}: no such submission on this scheduler"),
            );
        }
        let failed_before = spec
            .after
            .iter()
            .any(|a| self.arrays.verdicts.get(a) == Some(&false));
        let waiting_for: Vec<SubmissionId> = spec
            .after
            .iter()
            .filter(|a| self.arrays.subs.contains_key(a))
            .copied()
            .collect();
        let len = spec.len();
        self.arrays.subs.insert(
            id,
            Submission {
                spec: Arc::new(spec),
                client,
                pending: VecDeque::from([(0, len)]),
                retry: VecDeque::new(),
                ended: 0,
                all_succeeded: true,
                waiting_for,
            },
        );
        if failed_before {
            self.fail_dependents_of(id);
        }
    }

    /// Cancels a submission's tasks (ids `first..=last`, or all): queued ones end at once,
    /// running ones are released on their workers (which kill their process groups).
    pub(super) fn cancel_tasks(&mut self, submission: SubmissionId, tasks: Option<(u64, u64)>) {
        let Some(sub) = self.arrays.subs.get_mut(&submission) else {
            return; // finished (or never known): nothing left to cancel
        };
        let spec = sub.spec.clone();
        let (lo, hi) = match tasks {
            Some((first, last)) => spec.items.positions(first, last),
            None => (0, spec.len()),
        };
        let mut outcomes = Vec::new();
        // Never started: cut [lo, hi) out of the pending ranges.
        let mut kept = VecDeque::with_capacity(sub.pending.len() + 1);
        for (a, b) in sub.pending.drain(..) {
            let (cut_a, cut_b) = (a.max(lo), b.min(hi));
            if cut_a >= cut_b {
                kept.push_back((a, b));
                continue;
            }
            if a < cut_a {
                kept.push_back((a, cut_a));
            }
            outcomes.extend((cut_a..cut_b).map(|p| empty_outcome(&spec, p, TaskEnd::Cancelled, 0)));
            if cut_b < b {
                kept.push_back((cut_b, b));
            }
        }
        sub.pending = kept;
        sub.retry.retain(|(p, runs)| {
            let cut = (lo..hi).contains(p);
            if cut {
                outcomes.push(empty_outcome(&spec, *p, TaskEnd::Cancelled, *runs));
            }
            !cut
        });
        // Running: released on their worker; the outcome is out now.
        let mut running: Vec<(TaskId, WorkerId)> = self
            .arrays
            .running
            .iter()
            .filter(|(_, r)| {
                r.submission == submission && !r.cancelled && (lo..hi).contains(&r.position)
            })
            .map(|(k, r)| (*k, r.worker))
            .collect();
        running.sort();
        for (key, worker) in running {
            let r = self.arrays.running.get_mut(&key).expect("present");
            r.cancelled = true;
            let mut o = empty_outcome(&spec, r.position, TaskEnd::Cancelled, r.attempt);
            if let Some(w) = self.workers.get(&worker) {
                o.worker = w.info.name.clone();
                o.host = w.info.host.clone();
            }
            outcomes.push(o);
            self.release.entry(worker).or_default().push(key);
        }
        for o in outcomes {
            self.task_ended(o);
        }
    }

    /// Program tasks ended on `worker`: their outcome, or a retry.
    pub(super) fn programs_ended(&mut self, worker: WorkerId, ended: Vec<ProgramEnded>) {
        for e in ended {
            let Some(r) = self.arrays.running.get(&e.task) else {
                continue; // not ours (any more): a late or made-up report
            };
            if r.worker != worker {
                continue;
            }
            let r = self.arrays.running.remove(&e.task).expect("present");
            self.free_room(worker, &r);
            if r.cancelled {
                self.forget_if_done(r.submission);
                self.finish_retirement_if_done(worker);
                continue;
            }
            let Some(sub) = self.arrays.subs.get_mut(&r.submission) else {
                continue;
            };
            let spec = sub.spec.clone();
            let retry = matches!(e.end, TaskEnd::Failed { .. } | TaskEnd::Signalled { .. })
                && spec.retry_failed
                && r.attempt <= spec.max_retries;
            if retry {
                sub.retry.push_back((r.position, r.attempt));
            } else {
                let (name, host) = self
                    .workers
                    .get(&worker)
                    .map(|w| (w.info.name.clone(), w.info.host.clone()))
                    .unwrap_or_default();
                self.task_ended(TaskOutcome {
                    submission: r.submission,
                    task: spec.items.id(r.position),
                    state: e.end,
                    attempt: r.attempt,
                    start: e.start,
                    end: e.finish,
                    worker: name,
                    host,
                    stderr_tail: e.stderr_tail,
                });
            }
            self.finish_retirement_if_done(worker);
        }
    }

    /// A worker is gone: its program tasks run again elsewhere, up to `max_retries` re-runs.
    pub(super) fn programs_lost(&mut self, worker: WorkerId, name: &str, host: &str) {
        self.arrays.usage.remove(&worker);
        let mut lost: Vec<(TaskId, Running)> = self
            .arrays
            .running
            .iter()
            .filter(|(_, r)| r.worker == worker)
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        lost.sort_by_key(|(k, _)| *k);
        for (key, r) in lost {
            self.arrays.running.remove(&key);
            if r.cancelled {
                self.forget_if_done(r.submission);
                continue;
            }
            let Some(sub) = self.arrays.subs.get_mut(&r.submission) else {
                continue;
            };
            if r.attempt <= sub.spec.max_retries {
                sub.retry.push_back((r.position, r.attempt));
            } else {
                let mut o = empty_outcome(&sub.spec, r.position, TaskEnd::Lost, r.attempt);
                o.worker = name.to_string();
                o.host = host.to_string();
                self.task_ended(o);
            }
        }
    }

    /// The client that submitted arrays is gone: nobody would hear their outcomes, so they
    /// are cancelled (running ones killed).
    pub(super) fn arrays_client_gone(&mut self, client: ClientId) {
        let ids: Vec<SubmissionId> = self
            .arrays
            .subs
            .iter()
            .filter(|(_, s)| s.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.cancel_tasks(id, None);
        }
        self.arrays.started.remove(&client);
        self.arrays.ended.remove(&client);
    }

    fn free_room(&mut self, worker: WorkerId, r: &Running) {
        let Some(spec) = self.arrays.subs.get(&r.submission).map(|s| s.spec.clone()) else {
            return;
        };
        if let Some(u) = self.arrays.usage.get_mut(&worker) {
            u.cpus = u.cpus.saturating_sub(spec.cpus);
            for (name, amount) in &spec.resources {
                if let Some((_, used)) = u.resources.iter_mut().find(|(n, _)| n == name) {
                    *used = (*used - amount).max(0.0);
                }
            }
        }
    }

    /// One task ended: its outcome goes to the submitter; a submission whose last task
    /// ended is forgotten, and the submissions waiting for it start or fail.
    fn task_ended(&mut self, outcome: TaskOutcome) {
        let id = outcome.submission;
        let Some(sub) = self.arrays.subs.get_mut(&id) else {
            return;
        };
        sub.ended += 1;
        sub.all_succeeded &= outcome.state.succeeded();
        let client = sub.client;
        self.arrays.ended.entry(client).or_default().push(outcome);
        self.forget_if_done(id);
    }

    /// Forgets a submission whose every task has ended, unless a task cancelled while it ran
    /// is still running: it keeps its room (and needs the spec to free it) until it is gone.
    fn forget_if_done(&mut self, id: SubmissionId) {
        let Some(sub) = self.arrays.subs.get(&id) else {
            return;
        };
        if sub.ended < sub.spec.len() || self.arrays.running.values().any(|r| r.submission == id) {
            return;
        }
        let verdict = sub.all_succeeded;
        self.forget_submission(id, verdict);
    }

    fn forget_submission(&mut self, id: SubmissionId, verdict: bool) {
        self.arrays.subs.remove(&id);
        self.arrays.verdicts.insert(id, verdict);
        let waiting: Vec<SubmissionId> = self
            .arrays
            .subs
            .iter()
            .filter(|(_, s)| s.waiting_for.contains(&id))
            .map(|(k, _)| *k)
            .collect();
        for w in waiting {
            if verdict {
                if let Some(s) = self.arrays.subs.get_mut(&w) {
                    s.waiting_for.retain(|x| *x != id);
                }
            } else {
                self.fail_dependents_of(w);
            }
        }
    }

    /// Every task of submission `id` that has not started ends `DependencyFailed` (it waits
    /// for a submission that failed, so nothing of it ran).
    fn fail_dependents_of(&mut self, id: SubmissionId) {
        let Some(sub) = self.arrays.subs.get_mut(&id) else {
            return;
        };
        let spec = sub.spec.clone();
        let pending: Vec<(u64, u64)> = sub.pending.drain(..).collect();
        let retry: Vec<(u64, u32)> = sub.retry.drain(..).collect();
        let outcomes: Vec<TaskOutcome> = pending
            .into_iter()
            .flat_map(|(a, b)| a..b)
            .map(|p| empty_outcome(&spec, p, TaskEnd::DependencyFailed, 0))
            .chain(
                retry
                    .into_iter()
                    .map(|(p, runs)| empty_outcome(&spec, p, TaskEnd::DependencyFailed, runs)),
            )
            .collect();
        for o in outcomes {
            self.task_ended(o);
        }
    }

    /// Cpus of `worker`'s threads held by program tasks.
    pub(super) fn program_cpus(&self, worker: WorkerId) -> u32 {
        self.arrays.usage.get(&worker).map_or(0, |u| u.cpus)
    }

    /// True while program tasks run on `worker` (a retiring worker waits for them).
    pub(super) fn runs_programs(&self, worker: WorkerId) -> bool {
        self.arrays.running.values().any(|r| r.worker == worker)
    }

    /// Hands ready program tasks to workers with room: a task takes exactly `cpus` free
    /// threads (threads minus those held by program tasks and by running graph tasks) and
    /// its resources; nothing is queued ahead on a worker, so no worker is ever overbooked.
    pub(super) fn place_programs(&mut self) {
        if self.arrays.subs.is_empty() {
            return;
        }
        let mut rooms: Vec<Room> = self
            .workers
            .iter()
            .filter(|(_, w)| w.status == WorkerStatus::Running)
            .filter_map(|(id, w)| {
                let used = self.arrays.usage.get(id);
                let graph = w.processing.len().min(w.info.nthreads as usize) as u32;
                let cpus = w
                    .info
                    .nthreads
                    .saturating_sub(used.map_or(0, |u| u.cpus))
                    .saturating_sub(graph);
                let resources = w
                    .info
                    .resources
                    .iter()
                    .map(|(n, have)| {
                        let held = used
                            .and_then(|u| u.resources.iter().find(|(m, _)| m == n))
                            .map_or(0.0, |(_, h)| *h);
                        (n.clone(), have - held)
                    })
                    .collect();
                (cpus > 0).then_some(Room {
                    worker: *id,
                    cpus,
                    resources,
                })
            })
            .collect();
        let ids: Vec<SubmissionId> = self.arrays.subs.keys().copied().collect();
        for id in ids {
            if rooms.is_empty() {
                break;
            }
            loop {
                let sub = self.arrays.subs.get_mut(&id).expect("present");
                if !sub.waiting_for.is_empty() {
                    break;
                }
                let spec = sub.spec.clone();
                // The roomiest worker that fits: spreads tasks over the workers.
                let Some(slot) = rooms
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.fits(&spec))
                    .max_by_key(|(i, r)| (r.cpus, Reverse(*i)))
                    .map(|(i, _)| i)
                else {
                    if sub.ready() > 0 {
                        reserve(&self.workers, &spec, &mut rooms);
                    }
                    break;
                };
                let Some((position, runs)) = sub.take_next() else {
                    break;
                };
                let client = sub.client;
                let room = &mut rooms[slot];
                room.take(&spec);
                let worker = room.worker;
                if room.cpus == 0 {
                    rooms.swap_remove(slot);
                }
                self.assign_program(client, &spec, position, runs + 1, worker);
            }
        }
    }

    fn assign_program(
        &mut self,
        client: ClientId,
        spec: &TaskArraySpec,
        position: u64,
        attempt: u32,
        worker: WorkerId,
    ) {
        let key = TaskId(PROGRAM_KEY_BIT | self.arrays.next_key);
        self.arrays.next_key += 1;
        let usage = self.arrays.usage.entry(worker).or_default();
        usage.cpus += spec.cpus;
        for (name, amount) in &spec.resources {
            match usage.resources.iter_mut().find(|(n, _)| n == name) {
                Some((_, used)) => *used += amount,
                None => usage.resources.push((name.clone(), *amount)),
            }
        }
        self.arrays.running.insert(
            key,
            Running {
                submission: spec.submission,
                position,
                attempt,
                worker,
                cancelled: false,
            },
        );
        let info = &self.workers[&worker].info;
        self.arrays
            .started
            .entry(client)
            .or_default()
            .push(TaskStarted {
                submission: spec.submission,
                task: spec.items.id(position),
                attempt,
                worker: info.name.clone(),
                host: info.host.clone(),
            });
        self.compute.entry(worker).or_default().push(Assignment {
            task: key,
            kernel: PROGRAM_KERNEL.to_string(),
            args: spec.task(position).encode(),
            deps: Vec::new(),
            priority: (0, 0),
        });
    }

    /// The batched notices for clients, into `out`.
    pub(super) fn take_array_commands(&mut self, out: &mut Vec<Command>) {
        for (client, started) in std::mem::take(&mut self.arrays.started) {
            out.push(Command::TasksStarted { client, started });
        }
        for (client, outcomes) in std::mem::take(&mut self.arrays.ended) {
            out.push(Command::TaskOutcomes { client, outcomes });
        }
    }

    /// Queued program tasks grouped by what each needs, for adaptive scaling.
    pub fn queued_programs(&self) -> Vec<QueuedDemand> {
        let mut demand: Vec<QueuedDemand> = Vec::new();
        for sub in self.arrays.subs.values() {
            let n = sub.ready();
            if n == 0 {
                continue;
            }
            let held = !sub.waiting_for.is_empty();
            let mut resources = sub.spec.resources.clone();
            resources.sort_by(|a, b| a.0.cmp(&b.0));
            let entry = match demand
                .iter_mut()
                .position(|d| d.cpus == sub.spec.cpus && d.resources == resources)
            {
                Some(i) => &mut demand[i],
                None => {
                    demand.push(QueuedDemand {
                        cpus: sub.spec.cpus,
                        resources,
                        tasks: 0,
                        held: 0,
                    });
                    demand.last_mut().expect("pushed")
                }
            };
            if held {
                entry.held += n;
            } else {
                entry.tasks += n;
            }
        }
        demand
    }

    /// Submissions known (running or queued), for status and tests.
    pub fn submissions(&self) -> Vec<SubmissionId> {
        self.arrays.subs.keys().copied().collect()
    }

    /// Program tasks running on each worker with the cpus they hold, for tests.
    pub fn program_usage(&self) -> Vec<(WorkerId, u32, usize)> {
        let mut v: Vec<(WorkerId, u32, usize)> = self
            .arrays
            .usage
            .iter()
            .map(|(w, u)| {
                let n = self
                    .arrays
                    .running
                    .values()
                    .filter(|r| r.worker == *w)
                    .count();
                (*w, u.cpus, n)
            })
            .collect();
        v.sort();
        v
    }

    /// The program-task invariants: each running task's worker exists; the cpus held on a
    /// worker are the sum over its running tasks and never above its threads; no
    /// submission has ended more tasks than it has.
    pub(super) fn check_array_invariants(&self) -> Result<(), String> {
        let mut held: HashMap<WorkerId, u32> = HashMap::new();
        for (k, r) in &self.arrays.running {
            if !self.workers.contains_key(&r.worker) {
                return Err(format!("program {k} runs on {}, which is gone", r.worker));
            }
            let cpus = self
                .arrays
                .subs
                .get(&r.submission)
                .map(|s| s.spec.cpus)
                .ok_or_else(|| format!("program {k} of a forgotten submission"))?;
            *held.entry(r.worker).or_default() += cpus;
        }
        for (w, worker) in &self.workers {
            let h = held.get(w).copied().unwrap_or(0);
            if self.program_cpus(*w) != h {
                return Err(format!(
                    "worker {w}: {} cpus counted, running tasks hold {h}",
                    self.program_cpus(*w)
                ));
            }
            if h > worker.info.nthreads {
                return Err(format!(
                    "worker {w} overbooked: {h} cpus held of {}",
                    worker.info.nthreads
                ));
            }
        }
        for (id, s) in &self.arrays.subs {
            if s.ended > s.spec.len() {
                return Err(format!(
                    "submission {id} ended {} of {}",
                    s.ended,
                    s.spec.len()
                ));
            }
        }
        Ok(())
    }
}
