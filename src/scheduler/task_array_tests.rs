//! Task arrays in the state machine, with simulated workers (no sockets, no clocks): cpus
//! and resources never overbooked, retries, `after`, cancel, demand; and a property test
//! over random interleavings in which every task ends exactly once.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::state::task_arrays::is_program_key;
use super::state::*;
use crate::graph::TaskSpec;
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::protocol::messages::ProgramEnded;
use crate::task_array::{
    Items, ProgramTask, SubmissionId, TaskArraySpec, TaskEnd, TaskOutcome, PROGRAM_KERNEL,
};

const CLIENT: ClientId = 1;

/// The scheduler with workers that hold what they are given until told to end it.
#[derive(Default)]
struct Sim {
    s: State,
    /// Program tasks each worker runs: key -> (submission, task id from its environment).
    running: BTreeMap<WorkerId, BTreeMap<TaskId, ProgramTask>>,
    threads: BTreeMap<WorkerId, u32>,
    outcomes: Vec<TaskOutcome>,
    rejected: Vec<String>,
    released: Vec<TaskId>,
}

fn spec(id: u64, n: u64, cpus: u32) -> TaskArraySpec {
    let mut s = TaskArraySpec::new(
        SubmissionId(id),
        Items::Range {
            start: 1,
            end: n,
            step: 1,
        },
        vec!["run".into(), "{task}".into()],
    );
    s.cpus = cpus;
    s
}

impl Sim {
    fn new() -> Self {
        Sim {
            s: State::new(Config::default()),
            ..Sim::default()
        }
    }

    fn join(&mut self, worker: WorkerId, nthreads: u32, resources: &[(&str, f64)]) {
        self.threads.insert(worker, nthreads);
        self.event(Event::WorkerJoined {
            worker,
            info: WorkerInfo {
                name: format!("w{worker}"),
                host: "h".into(),
                nthreads,
                resources: resources.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
                ..WorkerInfo::default()
            },
        });
    }

    fn lose(&mut self, worker: WorkerId) {
        self.running.remove(&worker);
        self.threads.remove(&worker);
        self.event(Event::WorkerLost { worker });
    }

    fn submit(&mut self, spec: TaskArraySpec) {
        self.event(Event::TaskArraySubmitted {
            client: CLIENT,
            spec: Box::new(spec),
        });
    }

    fn event(&mut self, e: Event) {
        self.s.handle(e);
        self.pump();
    }

    fn pump(&mut self) {
        for c in self.s.take_commands() {
            match c {
                Command::Compute { worker, tasks } => {
                    for a in tasks {
                        assert_eq!(a.kernel, PROGRAM_KERNEL);
                        assert!(is_program_key(a.task));
                        let p = ProgramTask::decode(&a.args).unwrap();
                        self.running.entry(worker).or_default().insert(a.task, p);
                    }
                }
                Command::Release { keys, .. } => self.released.extend(keys),
                Command::TaskOutcomes { outcomes, .. } => self.outcomes.extend(outcomes),
                Command::TaskArrayRejected { reason, .. } => self.rejected.push(reason),
                _ => {}
            }
        }
        if let Err(e) = self.s.check_invariants() {
            panic!("invariant broken: {e}");
        }
        // No worker runs tasks needing more cpus than it has.
        for (w, tasks) in &self.running {
            let cpus: u32 = tasks.values().map(cpus_of).sum();
            assert!(cpus <= self.threads[w], "worker {w} overbooked: {cpus}");
        }
    }

    /// Ends the task with this id (`{task}`) of submission `sub`, wherever it runs.
    fn end(&mut self, sub: u64, task: u64, end: TaskEnd) {
        let found = self.running.iter().find_map(|(w, tasks)| {
            tasks
                .iter()
                .find(|(_, p)| {
                    env(p, "RDASK_SUBMISSION_ID") == sub && env(p, "RDASK_TASK_ID") == task
                })
                .map(|(k, _)| (*w, *k))
        });
        let (worker, key) = found.unwrap_or_else(|| panic!("task {sub}/{task} does not run"));
        self.end_key(worker, key, end);
    }

    fn end_key(&mut self, worker: WorkerId, key: TaskId, end: TaskEnd) {
        self.running.get_mut(&worker).unwrap().remove(&key);
        self.event(Event::ProgramsEnded {
            worker,
            ended: vec![ProgramEnded {
                task: key,
                end,
                start: 1.0,
                finish: 2.0,
                stderr_tail: String::new(),
            }],
        });
    }

    /// Ends every running task, succeeded, until none is left.
    fn drain(&mut self) {
        while let Some((w, k)) = self
            .running
            .iter()
            .find_map(|(w, t)| t.keys().next().map(|k| (*w, *k)))
        {
            self.end_key(w, k, TaskEnd::Succeeded);
        }
    }

    fn running_ids(&self, sub: u64) -> BTreeSet<u64> {
        self.running
            .values()
            .flat_map(|t| t.values())
            .filter(|p| env(p, "RDASK_SUBMISSION_ID") == sub)
            .map(|p| env(p, "RDASK_TASK_ID"))
            .collect()
    }

    fn ends_of(&self, sub: u64) -> Vec<(u64, TaskEnd, u32)> {
        let mut v: Vec<(u64, TaskEnd, u32)> = self
            .outcomes
            .iter()
            .filter(|o| o.submission == SubmissionId(sub))
            .map(|o| (o.task, o.state.clone(), o.attempt))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }
}

fn env(p: &ProgramTask, name: &str) -> u64 {
    p.env
        .iter()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
        .parse()
        .unwrap()
}

fn cpus_of(p: &ProgramTask) -> u32 {
    env(p, "RDASK_CPUS") as u32
}

#[test]
fn tasks_take_exactly_their_cpus_and_one_too_big_waits() {
    let mut sim = Sim::new();
    sim.join(1, 2, &[]);
    sim.join(2, 4, &[]);
    sim.submit(spec(1, 5, 3));
    // Only the 4-thread worker fits a 3-cpu task, one at a time.
    assert_eq!(sim.running_ids(1).len(), 1);
    assert_eq!(sim.s.program_usage(), [(2, 3, 1)]);
    // A task wider than every worker waits, counted as demand for scaling.
    sim.submit(spec(2, 2, 8));
    let demand = sim.s.queued_programs();
    let wide = demand.iter().find(|d| d.cpus == 8).unwrap();
    assert_eq!(wide.tasks, 2);
    assert_eq!(demand.iter().find(|d| d.cpus == 3).unwrap().tasks, 4);
    // 1-cpu tasks fill worker 1; worker 2's last thread is kept for the older 3-cpu tasks.
    sim.submit(spec(3, 10, 1));
    assert_eq!(sim.running_ids(3).len(), 2);
    sim.end(1, 1, TaskEnd::Succeeded);
    // Freed 3 cpus on worker 2: the next 3-cpu task goes first (older submission).
    assert_eq!(sim.running_ids(1), BTreeSet::from([2]));
    // A worker big enough joins: the wide tasks run there (once the older submission's
    // tasks placed on it end), and the newer 1-cpu tasks do not take its threads meanwhile.
    sim.join(3, 8, &[]);
    assert!(sim.running_ids(2).is_empty());
    let on_3 = |sim: &Sim| sim.running.get(&3).map_or(0, |t| t.len());
    assert_eq!(on_3(&sim), 2, "two 3-cpu tasks of the older submission");
    sim.end(1, 3, TaskEnd::Succeeded);
    sim.end(1, 4, TaskEnd::Succeeded);
    sim.end(1, 5, TaskEnd::Succeeded);
    assert_eq!(
        sim.running_ids(2).len(),
        1,
        "the wide task got the big worker"
    );
    while !sim.running.values().all(|t| t.is_empty()) {
        sim.drain();
    }
    assert_eq!(sim.outcomes.len(), 5 + 2 + 10);
    assert!(sim.outcomes.iter().all(|o| o.state.succeeded()));
    assert!(
        sim.s.submissions().is_empty(),
        "finished submissions are forgotten"
    );
    assert!(sim.s.queued_programs().is_empty());
}

#[test]
fn a_wide_task_is_not_starved_by_newer_narrow_ones() {
    let mut sim = Sim::new();
    sim.join(1, 4, &[]);
    sim.submit(spec(1, 4, 1));
    sim.submit(spec(2, 1, 4));
    sim.submit(spec(3, 20, 1));
    assert_eq!(sim.running_ids(1).len(), 4);
    sim.end(1, 1, TaskEnd::Succeeded);
    sim.end(1, 2, TaskEnd::Succeeded);
    assert!(
        sim.running_ids(3).is_empty(),
        "threads kept for the wide task"
    );
    sim.end(1, 3, TaskEnd::Succeeded);
    sim.end(1, 4, TaskEnd::Succeeded);
    assert_eq!(sim.running_ids(2), BTreeSet::from([1]));
    sim.end(2, 1, TaskEnd::Succeeded);
    assert_eq!(sim.running_ids(3).len(), 4);
}

#[test]
fn resources_are_held_while_tasks_run() {
    let mut sim = Sim::new();
    sim.join(1, 4, &[("GPU", 2.0)]);
    sim.join(2, 4, &[]);
    let mut s = spec(1, 5, 1);
    s.resources = vec![("GPU".into(), 1.0)];
    sim.submit(s);
    // Two GPUs on worker 1, none on worker 2.
    assert_eq!(sim.running.get(&1).map_or(0, |t| t.len()), 2);
    assert_eq!(sim.running.get(&2).map_or(0, |t| t.len()), 0);
    sim.end(1, 1, TaskEnd::Succeeded);
    assert_eq!(sim.running_ids(1), BTreeSet::from([2, 3]));
}

#[test]
fn graph_tasks_and_program_tasks_share_the_threads() {
    let mut sim = Sim::new();
    sim.join(1, 2, &[]);
    sim.submit(spec(1, 3, 2));
    assert_eq!(sim.running_ids(1).len(), 1);
    // Both threads are held: a graph task waits.
    sim.s.handle(Event::GraphSubmitted {
        client: CLIENT,
        tasks: vec![TaskSpec::new(TaskId(1), "noop", vec![], vec![])],
        wanted: vec![TaskId(1)],
    });
    let cmds = sim.s.take_commands();
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Compute { .. })),
        "{cmds:?}"
    );
    // The program task ends: the graph task goes, and the next 2-cpu task must wait for it.
    let (w, k) = sim
        .running
        .iter()
        .find_map(|(w, t)| t.keys().next().map(|k| (*w, *k)))
        .unwrap();
    sim.running.get_mut(&w).unwrap().remove(&k);
    sim.s.handle(Event::ProgramsEnded {
        worker: w,
        ended: vec![ProgramEnded {
            task: k,
            end: TaskEnd::Succeeded,
            start: 0.0,
            finish: 0.0,
            stderr_tail: String::new(),
        }],
    });
    let cmds = sim.s.take_commands();
    let computes: Vec<&Command> = cmds
        .iter()
        .filter(|c| matches!(c, Command::Compute { .. }))
        .collect();
    assert_eq!(computes.len(), 1);
    let Command::Compute { tasks, .. } = computes[0] else {
        unreachable!()
    };
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].kernel, "noop");
}

#[test]
fn a_lost_worker_reruns_its_tasks_up_to_max_retries_then_they_are_lost() {
    let mut sim = Sim::new();
    sim.join(1, 1, &[]);
    let mut s = spec(1, 2, 1);
    s.max_retries = 1;
    sim.submit(s);
    assert_eq!(sim.running_ids(1), BTreeSet::from([1]));
    sim.lose(1);
    sim.join(2, 1, &[]);
    // Task 1 runs again (attempt 2) before task 2 (retries first).
    assert_eq!(sim.running_ids(1), BTreeSet::from([1]));
    sim.lose(2);
    assert_eq!(sim.ends_of(1), [(1, TaskEnd::Lost, 2)]);
    sim.join(3, 1, &[]);
    sim.drain();
    assert_eq!(
        sim.ends_of(1),
        [(1, TaskEnd::Lost, 2), (2, TaskEnd::Succeeded, 1)]
    );
}

#[test]
fn failures_are_final_unless_retry_failed() {
    let mut sim = Sim::new();
    sim.join(1, 1, &[]);
    sim.submit(spec(1, 1, 1));
    sim.end(1, 1, TaskEnd::Failed { code: 3 });
    assert_eq!(sim.ends_of(1), [(1, TaskEnd::Failed { code: 3 }, 1)]);
    let mut s = spec(2, 1, 1);
    s.retry_failed = true;
    s.max_retries = 2;
    sim.submit(s);
    sim.end(2, 1, TaskEnd::Signalled { signal: 9 });
    sim.end(2, 1, TaskEnd::Failed { code: 1 });
    assert!(sim.ends_of(2).is_empty());
    sim.end(2, 1, TaskEnd::Failed { code: 1 });
    assert_eq!(sim.ends_of(2), [(1, TaskEnd::Failed { code: 1 }, 3)]);
    // Timeouts are not retried.
    let mut s = spec(3, 1, 1);
    s.retry_failed = true;
    sim.submit(s);
    sim.end(3, 1, TaskEnd::TimedOut);
    assert_eq!(sim.ends_of(3), [(1, TaskEnd::TimedOut, 1)]);
}

#[test]
fn after_waits_for_success_and_a_failure_cascades() {
    let mut sim = Sim::new();
    sim.join(1, 4, &[]);
    sim.submit(spec(1, 2, 1));
    let mut b = spec(2, 2, 1);
    b.after = vec![SubmissionId(1)];
    sim.submit(b);
    let mut c = spec(3, 1, 1);
    c.after = vec![SubmissionId(2)];
    sim.submit(c);
    assert!(sim.running_ids(2).is_empty());
    let demand = sim.s.queued_programs();
    assert_eq!((demand[0].tasks, demand[0].held), (0, 3));
    sim.end(1, 1, TaskEnd::Succeeded);
    assert!(sim.running_ids(2).is_empty(), "B waits for all of A");
    sim.end(1, 2, TaskEnd::Succeeded);
    assert_eq!(sim.running_ids(2), BTreeSet::from([1, 2]));
    sim.end(2, 1, TaskEnd::Failed { code: 1 });
    sim.end(2, 2, TaskEnd::Succeeded);
    assert_eq!(sim.ends_of(3), [(1, TaskEnd::DependencyFailed, 0)]);
    // After a submission that already failed: ends at once. After an unknown one: refused.
    let mut d = spec(4, 3, 1);
    d.after = vec![SubmissionId(3)];
    sim.submit(d);
    assert_eq!(sim.ends_of(4).len(), 3);
    let mut e = spec(5, 1, 1);
    e.after = vec![SubmissionId(99)];
    sim.submit(e);
    assert!(sim.rejected.last().unwrap().contains("99"));
    // A submission id in use is refused.
    sim.submit(spec(1, 1, 1));
    assert!(sim.rejected.last().unwrap().contains("already known"));
    assert!(sim.s.submissions().is_empty());
}

#[test]
fn cancel_ends_queued_tasks_at_once_and_frees_room_when_the_process_is_gone() {
    let mut sim = Sim::new();
    sim.join(1, 2, &[]);
    sim.submit(spec(1, 10, 1));
    assert_eq!(sim.running_ids(1), BTreeSet::from([1, 2]));
    // Cancel 2..=5: task 2 runs (released), 3-5 queued (cancelled now).
    sim.event(Event::CancelTasks {
        submission: SubmissionId(1),
        tasks: Some((2, 5)),
    });
    let cancelled: Vec<u64> = sim
        .ends_of(1)
        .iter()
        .filter(|e| e.1 == TaskEnd::Cancelled)
        .map(|e| e.0)
        .collect();
    assert_eq!(cancelled, [2, 3, 4, 5]);
    assert_eq!(sim.released.len(), 1);
    // Its thread is still taken until the worker says the process is gone.
    assert_eq!(sim.running_ids(1), BTreeSet::from([1, 2]));
    sim.end(1, 2, TaskEnd::Cancelled);
    assert_eq!(sim.running_ids(1), BTreeSet::from([1, 6]));
    assert_eq!(
        sim.ends_of(1).len(),
        4,
        "the worker's report adds no outcome"
    );
    sim.event(Event::CancelTasks {
        submission: SubmissionId(1),
        tasks: None,
    });
    assert_eq!(sim.ends_of(1).len(), 10);
    assert_eq!(
        sim.s.submissions(),
        [SubmissionId(1)],
        "kept while processes run"
    );
    sim.drain();
    assert!(sim.s.submissions().is_empty());
    assert_eq!(sim.ends_of(1).len(), 10);
}

#[test]
fn a_retiring_worker_closes_only_after_its_programs_end() {
    let mut sim = Sim::new();
    sim.join(1, 1, &[]);
    sim.submit(spec(1, 2, 1));
    sim.s.handle(Event::Retire {
        workers: vec![1],
        requester: Some(CLIENT),
    });
    let cmds = sim.s.take_commands();
    assert!(!cmds.iter().any(|c| matches!(c, Command::Close { .. })));
    sim.end(1, 1, TaskEnd::Succeeded);
    assert_eq!(sim.ends_of(1), [(1, TaskEnd::Succeeded, 1)]);
    assert!(sim.s.worker_ids().is_empty(), "closed once its task ended");
}

#[test]
fn a_client_that_leaves_cancels_its_submissions() {
    let mut sim = Sim::new();
    sim.join(1, 1, &[]);
    sim.submit(spec(1, 3, 1));
    sim.event(Event::ClientGone { client: CLIENT });
    assert_eq!(sim.released.len(), 1);
    sim.drain();
    assert!(sim.s.submissions().is_empty());
}

#[derive(Clone, Debug)]
enum Step {
    Join(u32),
    Lose(usize),
    Submit {
        n: u64,
        cpus: u32,
        after: Option<u64>,
        retries: u32,
        retry_failed: bool,
    },
    End {
        pick: usize,
        how: u8,
    },
    Cancel {
        sub: u64,
        range: Option<(u64, u64)>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (1..5u32).prop_map(Step::Join),
        1 => (0..8usize).prop_map(Step::Lose),
        2 => (1..12u64, 1..4u32, proptest::option::of(1..6u64), 0..3u32, any::<bool>())
            .prop_map(|(n, cpus, after, retries, retry_failed)| Step::Submit { n, cpus, after, retries, retry_failed }),
        6 => (0..64usize, 0..4u8).prop_map(|(pick, how)| Step::End { pick, how }),
        1 => (1..6u64, proptest::option::of((1..12u64, 1..12u64)))
            .prop_map(|(sub, range)| Step::Cancel { sub, range }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever happens — workers joining and dying, tasks ending any way, cancels, chains —
    /// no worker is overbooked, the invariants hold, and once workers stay and tasks run to
    /// their end, every task of every accepted submission has ended exactly once.
    #[test]
    fn every_task_ends_exactly_once_and_no_worker_is_overbooked(steps in proptest::collection::vec(step(), 1..60)) {
        let mut sim = Sim::new();
        let mut next_worker: WorkerId = 1;
        let mut next_sub = 1;
        let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
        for st in steps {
            match st {
                Step::Join(n) => {
                    sim.join(next_worker, n, &[]);
                    next_worker += 1;
                }
                Step::Lose(i) => {
                    let ids: Vec<WorkerId> = sim.threads.keys().copied().collect();
                    if let Some(w) = ids.get(i % ids.len().max(1)) {
                        sim.lose(*w);
                    }
                }
                Step::Submit { n, cpus, after, retries, retry_failed } => {
                    let mut s = spec(next_sub, n, cpus);
                    s.after = after.filter(|a| *a < next_sub).map(SubmissionId).into_iter().collect();
                    s.max_retries = retries;
                    s.retry_failed = retry_failed;
                    sizes.insert(next_sub, n);
                    next_sub += 1;
                    sim.submit(s);
                }
                Step::End { pick, how } => {
                    let all: Vec<(WorkerId, TaskId)> = sim
                        .running
                        .iter()
                        .flat_map(|(w, t)| t.keys().map(move |k| (*w, *k)))
                        .collect();
                    if let Some((w, k)) = all.get(pick % all.len().max(1)) {
                        let end = match how {
                            0 | 1 => TaskEnd::Succeeded,
                            2 => TaskEnd::Failed { code: 1 },
                            _ => TaskEnd::Signalled { signal: 9 },
                        };
                        sim.end_key(*w, *k, end);
                    }
                }
                Step::Cancel { sub, range } => sim.event(Event::CancelTasks {
                    submission: SubmissionId(sub),
                    tasks: range,
                }),
            }
        }
        // Then a worker big enough for anything stays, and everything runs to its end.
        sim.join(next_worker, 4, &[]);
        for _ in 0..10_000 {
            if sim.running.values().all(|t| t.is_empty()) {
                break;
            }
            sim.drain();
        }
        prop_assert!(sim.s.submissions().is_empty(), "{:?}", sim.s.submissions());
        for (sub, n) in sizes {
            let mut ids: Vec<u64> = sim.ends_of(sub).iter().map(|e| e.0).collect();
            ids.sort();
            prop_assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "submission {}", sub);
        }
    }
}
