//! The state machine tested on its own, with simulated workers: no sockets, no clocks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proptest::prelude::*;

use super::state::*;
use crate::graph::TaskSpec;
use crate::ids::{ClientId, TaskId, WorkerId};

const CLIENT: ClientId = 1;

/// Simulated workers that run what the scheduler assigns, in order, on demand.
#[derive(Default)]
struct Sim {
    s: State,
    queues: BTreeMap<WorkerId, VecDeque<Assignment>>,
    data: BTreeMap<WorkerId, HashSet<TaskId>>,
    ready: HashMap<TaskId, Vec<WorkerId>>,
    erred: HashMap<TaskId, String>,
    closed: Vec<WorkerId>,
    next_worker: WorkerId,
}

impl Sim {
    fn new() -> Self {
        Sim {
            s: State::new(Config::default()),
            next_worker: 1,
            ..Sim::default()
        }
    }

    fn event(&mut self, e: Event) {
        self.s.handle(e);
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let cmds = self.s.take_commands();
            if cmds.is_empty() {
                break;
            }
            let mut follow_up = Vec::new();
            for c in cmds {
                match c {
                    Command::Compute { worker, tasks } => {
                        self.queues.entry(worker).or_default().extend(tasks)
                    }
                    Command::Release { worker, keys } => {
                        let keys: HashSet<TaskId> = keys.into_iter().collect();
                        if let Some(d) = self.data.get_mut(&worker) {
                            d.retain(|k| !keys.contains(k));
                        }
                        if let Some(q) = self.queues.get_mut(&worker) {
                            q.retain(|a| !keys.contains(&a.task));
                        }
                    }
                    Command::Replicate { worker, keys } => {
                        for loc in keys {
                            if loc
                                .holders
                                .iter()
                                .any(|h| self.data.get(h).is_some_and(|d| d.contains(&loc.task)))
                            {
                                self.data.entry(worker).or_default().insert(loc.task);
                                follow_up.push(Event::ReplicaAdded {
                                    worker,
                                    task: loc.task,
                                    nbytes: loc.nbytes,
                                });
                            }
                        }
                    }
                    Command::Close { worker } => {
                        self.closed.push(worker);
                        self.queues.remove(&worker);
                        self.data.remove(&worker);
                    }
                    Command::KeyReady { key, holders, .. } => {
                        self.ready.insert(key, holders);
                    }
                    Command::KeyErred { key, error, .. } => {
                        self.erred.insert(key, error);
                    }
                    Command::GraphRejected { reason, .. } => panic!("graph rejected: {reason}"),
                    Command::WorkerRetired { .. }
                    | Command::TasksStarted { .. }
                    | Command::TaskOutcomes { .. }
                    | Command::TaskArrayRejected { .. } => {}
                }
            }
            for e in follow_up {
                self.s.handle(e);
            }
        }
        if let Err(e) = self.s.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    fn join(&mut self, nthreads: u32) -> WorkerId {
        let worker = self.next_worker;
        self.next_worker += 1;
        let info = WorkerInfo {
            name: format!("w{worker}"),
            address: format!("127.0.0.1:{worker}"),
            nthreads,
            memory_limit: 1 << 30,
            ..WorkerInfo::default()
        };
        self.data.insert(worker, HashSet::new());
        self.event(Event::WorkerJoined { worker, info });
        worker
    }

    fn kill(&mut self, worker: WorkerId) {
        self.queues.remove(&worker);
        self.data.remove(&worker);
        self.event(Event::WorkerLost { worker });
    }

    /// Runs the worker's next task: fetch inputs from the given holders, compute, report.
    fn step(&mut self, worker: WorkerId) -> bool {
        let Some(a) = self.queues.get_mut(&worker).and_then(|q| q.pop_front()) else {
            return false;
        };
        let mut missing = Vec::new();
        for dep in &a.deps {
            let local = self.data[&worker].contains(&dep.task);
            let remote = dep
                .holders
                .iter()
                .any(|h| self.data.get(h).is_some_and(|d| d.contains(&dep.task)));
            if !local && !remote {
                missing.push((dep.task, dep.holders.clone()));
            }
        }
        if !missing.is_empty() {
            self.event(Event::MissingData {
                worker,
                task: a.task,
                missing,
            });
            return true;
        }
        if a.kernel == "fail" {
            self.event(Event::TaskFailed {
                worker,
                task: a.task,
                error: "boom".into(),
            });
            return true;
        }
        self.data.get_mut(&worker).unwrap().insert(a.task);
        self.event(Event::TasksFinished {
            worker,
            finished: vec![Finished {
                task: a.task,
                nbytes: 8,
                duration_us: 10,
            }],
        });
        true
    }

    fn run_all(&mut self) {
        let mut progress = true;
        while progress {
            progress = false;
            for w in self.queues.keys().copied().collect::<Vec<_>>() {
                progress |= self.step(w);
            }
        }
    }

    fn submit(&mut self, tasks: Vec<TaskSpec>, wanted: &[u64]) {
        let wanted = wanted.iter().map(|w| TaskId(*w)).collect();
        self.event(Event::GraphSubmitted {
            client: CLIENT,
            tasks,
            wanted,
        });
    }
}

fn t(id: u64, deps: &[u64]) -> TaskSpec {
    TaskSpec::new(
        TaskId(id),
        "noop",
        vec![],
        deps.iter().map(|d| TaskId(*d)).collect(),
    )
}

/// A binary tree reduction over `leaves` leaves; returns (tasks, root id).
fn tree(leaves: u64) -> (Vec<TaskSpec>, u64) {
    let mut tasks: Vec<TaskSpec> = (0..leaves).map(|i| t(i, &[])).collect();
    let mut level: Vec<u64> = (0..leaves).collect();
    let mut next = leaves;
    while level.len() > 1 {
        let mut up = Vec::new();
        for pair in level.chunks(2) {
            tasks.push(t(next, pair));
            up.push(next);
            next += 1;
        }
        level = up;
    }
    (tasks, level[0])
}

#[test]
fn a_tree_reduction_completes_and_releases_intermediates() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let b = sim.join(2);
    let (tasks, root) = tree(64);
    sim.submit(tasks, &[root]);
    sim.run_all();
    assert!(sim.ready.contains_key(&TaskId(root)));
    // Only the wanted result is still held anywhere.
    let held: usize = [a, b].iter().map(|w| sim.data[w].len()).sum();
    assert_eq!(held, 1, "intermediate results were not released");
    let counts = sim.s.counts();
    assert_eq!((counts.memory, counts.released), (1, 126));
    // Releasing the result forgets the whole graph.
    sim.event(Event::Release {
        client: CLIENT,
        keys: vec![TaskId(root)],
    });
    assert_eq!(sim.s.counts(), TaskCounts::default());
    assert!(sim.data.values().all(|d| d.is_empty()));
}

#[test]
fn root_tasks_wait_on_the_scheduler_instead_of_flooding_workers() {
    let mut sim = Sim::new();
    let w = sim.join(1);
    let tasks: Vec<TaskSpec> = (0..1000).map(|i| t(i, &[])).collect();
    let wanted: Vec<u64> = (0..1000).collect();
    sim.submit(tasks, &wanted);
    assert_eq!(
        sim.queues[&w].len(),
        2,
        "before any task is measured, two per thread"
    );
    assert_eq!(sim.s.counts().queued, 998);
    sim.run_all();
    assert_eq!(sim.ready.len(), 1000);
}

#[test]
fn memory_bounds_how_much_work_a_worker_holds() {
    let mut sim = Sim::new();
    let w = sim.join(1);
    // Teach the scheduler that tasks are fast but produce 64 MiB each (limit 1 GiB, 25%).
    sim.submit(vec![t(9999, &[])], &[9999]);
    let a = sim.queues.get_mut(&w).unwrap().pop_front().unwrap();
    sim.data.get_mut(&w).unwrap().insert(a.task);
    sim.event(Event::TasksFinished {
        worker: w,
        finished: vec![Finished {
            task: a.task,
            nbytes: 64 << 20,
            duration_us: 1,
        }],
    });
    let tasks: Vec<TaskSpec> = (0..100).map(|i| t(i, &[])).collect();
    sim.submit(tasks, &(0..100).collect::<Vec<_>>());
    assert_eq!(sim.queues[&w].len(), 4, "256 MiB of queued outputs at most");
}

#[test]
fn tasks_go_where_their_inputs_are() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let b = sim.join(1);
    sim.submit(vec![t(1, &[]), t(2, &[])], &[1, 2]);
    sim.run_all();
    let holder_of_1 = sim.ready[&TaskId(1)][0];
    sim.submit(vec![t(3, &[1])], &[3]);
    let assigned_to = [a, b]
        .into_iter()
        .find(|w| sim.queues[w].iter().any(|x| x.task == TaskId(3)))
        .unwrap();
    assert_eq!(assigned_to, holder_of_1);
}

#[test]
fn a_lost_worker_is_recomputed_from_lineage() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let b = sim.join(1);
    // x1, x2 -> y; let both x land, then kill the worker holding x1 before y runs.
    sim.submit(vec![t(1, &[]), t(2, &[]), t(3, &[1, 2])], &[3]);
    sim.step(a);
    sim.step(b);
    let holder = sim.s.holders(TaskId(1))[0];
    sim.kill(holder);
    assert_ne!(sim.s.task_state(TaskId(1)), Some(&TaskState::Memory));
    sim.run_all();
    assert!(
        sim.ready.contains_key(&TaskId(3)),
        "the result was not recomputed"
    );
    assert!(sim.erred.is_empty());
}

#[test]
fn a_failing_task_reports_its_error_to_the_client_and_downstream() {
    let mut sim = Sim::new();
    sim.join(1);
    let mut f = t(1, &[]);
    f.kernel = "fail".into();
    sim.submit(vec![f, t(2, &[1]), t(3, &[])], &[2, 3]);
    sim.run_all();
    assert!(sim.erred[&TaskId(2)].contains("boom"), "{:?}", sim.erred);
    assert!(sim.ready.contains_key(&TaskId(3)));
}

#[test]
fn a_task_that_kills_three_workers_is_marked_failed() {
    let mut sim = Sim::new();
    sim.submit(vec![t(1, &[])], &[1]);
    for round in 0..3 {
        assert!(sim.erred.is_empty(), "failed too early, round {round}");
        let w = sim.join(1);
        sim.event(Event::Heartbeat {
            worker: w,
            memory: 0,
            paused: false,
            executing: vec![TaskId(1)],
            spilled: 0,
            cpu_permille: 0,
        });
        sim.kill(w);
    }
    assert!(
        sim.erred[&TaskId(1)].contains("3 workers died"),
        "{:?}",
        sim.erred
    );
}

#[test]
fn only_the_executing_task_is_blamed_for_a_death() {
    let mut sim = Sim::new();
    let w = sim.join(4);
    sim.submit(vec![t(1, &[]), t(2, &[])], &[1, 2]);
    for _ in 0..5 {
        sim.event(Event::Heartbeat {
            worker: sim.s.worker_ids()[0],
            memory: 0,
            paused: false,
            executing: vec![TaskId(1)],
            spilled: 0,
            cpu_permille: 0,
        });
        let victim = sim.s.worker_ids()[0];
        sim.kill(victim);
        sim.join(4);
    }
    let _ = w;
    assert!(sim.erred.contains_key(&TaskId(1)));
    assert!(!sim.erred.contains_key(&TaskId(2)));
}

#[test]
fn retirement_copies_unique_results_first_and_keeps_every_result() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let b = sim.join(1);
    let tasks: Vec<TaskSpec> = (0..20).map(|i| t(i, &[])).collect();
    sim.submit(tasks, &(0..20).collect::<Vec<_>>());
    sim.run_all();
    assert!(!sim.data[&a].is_empty() && !sim.data[&b].is_empty());
    sim.event(Event::Retire {
        workers: vec![a],
        requester: Some(CLIENT),
    });
    assert_eq!(sim.closed, vec![a]);
    assert_eq!(
        sim.data[&b].len(),
        20,
        "every result now lives on the survivor"
    );
    for i in 0..20 {
        assert_eq!(sim.s.holders(TaskId(i)), &[b]);
    }
}

#[test]
fn a_paused_worker_gets_no_new_work() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    sim.event(Event::Heartbeat {
        worker: a,
        memory: 900 << 20,
        paused: true,
        executing: vec![],
        spilled: 0,
        cpu_permille: 0,
    });
    sim.submit(vec![t(1, &[])], &[1]);
    assert!(sim.queues.get(&a).is_none_or(|q| q.is_empty()));
    sim.event(Event::Heartbeat {
        worker: a,
        memory: 100 << 20,
        paused: false,
        executing: vec![],
        spilled: 0,
        cpu_permille: 0,
    });
    sim.run_all();
    assert!(sim.ready.contains_key(&TaskId(1)));
}

#[test]
fn cancelling_stops_work_nobody_wants() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let (tasks, root) = tree(16);
    sim.submit(tasks, &[root]);
    sim.step(a);
    sim.event(Event::Release {
        client: CLIENT,
        keys: vec![TaskId(root)],
    });
    assert!(sim.queues[&a].is_empty(), "queued work was not cancelled");
    assert_eq!(sim.s.counts(), TaskCounts::default());
}

#[test]
fn bad_graphs_are_rejected_whole() {
    let mut s = State::new(Config::default());
    s.handle(Event::GraphSubmitted {
        client: 1,
        tasks: vec![t(1, &[2]), t(2, &[1])],
        wanted: vec![TaskId(1)],
    });
    let out = s.take_commands();
    assert!(
        matches!(&out[..], [Command::GraphRejected { reason, .. }] if reason.contains("cycle"))
    );
    assert_eq!(s.counts(), TaskCounts::default());
}

#[test]
fn a_graph_may_list_dependents_before_their_inputs() {
    // Nothing asks clients for topological order; this used to panic the scheduler core
    // (dependents were wired while inserting, so an input listed later was not there yet).
    let mut sim = Sim::new();
    sim.join(1);
    let (mut tasks, root) = tree(16);
    tasks.reverse();
    sim.submit(tasks, &[root]);
    sim.run_all();
    assert!(sim.ready.contains_key(&TaskId(root)));
    // An input shared by two dependents, both listed before it, with one wanted too.
    sim.submit(
        vec![t(102, &[100]), t(101, &[100]), t(100, &[])],
        &[101, 102],
    );
    sim.run_all();
    assert!(sim.ready.contains_key(&TaskId(101)) && sim.ready.contains_key(&TaskId(102)));
}

#[test]
fn bad_graphs_get_a_reason_and_leave_the_scheduler_serving() {
    let mut s = State::new(Config::default());
    let reject = |s: &mut State, tasks: Vec<TaskSpec>, wanted: &[u64]| -> String {
        s.handle(Event::GraphSubmitted {
            client: 7,
            tasks,
            wanted: wanted.iter().map(|k| TaskId(*k)).collect(),
        });
        match &s.take_commands()[..] {
            [Command::GraphRejected { client: 7, reason }] => reason.clone(),
            other => panic!("{other:?}"),
        }
    };
    // A dependent listed before its input on a cycle, a duplicate key, an unknown input.
    assert!(reject(&mut s, vec![t(3, &[2]), t(2, &[1]), t(1, &[3])], &[3]).contains("cycle"));
    assert!(reject(&mut s, vec![t(1, &[]), t(2, &[1]), t(1, &[])], &[2]).contains("twice"));
    assert!(reject(&mut s, vec![t(2, &[9]), t(1, &[])], &[2]).contains("neither"));
    assert!(reject(&mut s, vec![t(1, &[])], &[5]).contains("wanted key"));
    assert_eq!(s.counts(), TaskCounts::default());
    // And the next, good graph runs.
    let info = WorkerInfo {
        nthreads: 1,
        ..WorkerInfo::default()
    };
    s.handle(Event::WorkerJoined { worker: 1, info });
    s.handle(Event::GraphSubmitted {
        client: 7,
        tasks: vec![t(2, &[1]), t(1, &[])],
        wanted: vec![TaskId(2)],
    });
    assert!(matches!(&s.take_commands()[..], [Command::Compute { .. }]));
    s.check_invariants().unwrap();
}

#[test]
fn a_graph_over_the_task_limit_is_refused_with_the_limit() {
    let mut s = State::new(Config {
        max_graph_tasks: 10,
        ..Config::default()
    });
    let tasks: Vec<TaskSpec> = (0..11).map(|i| t(i, &[])).collect();
    s.handle(Event::GraphSubmitted {
        client: 1,
        tasks,
        wanted: vec![TaskId(0)],
    });
    match &s.take_commands()[..] {
        [Command::GraphRejected { reason, .. }] => {
            assert!(
                reason.contains("11 tasks") && reason.contains("10"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.counts(), TaskCounts::default());
}

/// What a property test does to the cluster between checks.
#[derive(Clone, Debug)]
enum Action {
    Step(usize),
    Kill(usize),
    Join,
    Retire(usize),
    Heartbeat(usize, bool),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0..4usize).prop_map(Action::Step),
        1 => (0..4usize).prop_map(Action::Kill),
        1 => Just(Action::Join),
        1 => (0..4usize).prop_map(Action::Retire),
        1 => (0..4usize, any::<bool>()).prop_map(|(w, p)| Action::Heartbeat(w, p)),
    ]
}

/// A random DAG: each task depends on up to three earlier tasks.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    dag_of(1..40)
}

/// A random DAG of `n` tasks (a range).
fn dag_of(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Vec<usize>>> {
    n.prop_flat_map(|n| {
        proptest::collection::vec(
            proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            n,
        )
        .prop_map(|picks| {
            picks
                .into_iter()
                .enumerate()
                .map(|(i, deps)| {
                    let mut d: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        deps.iter().map(|x| x.index(i)).collect()
                    };
                    d.sort();
                    d.dedup();
                    d
                })
                .collect()
        })
    })
}

/// A random DAG's tasks in a random order: clients owe the scheduler no particular order.
fn shuffled_graph() -> impl Strategy<Value = Vec<TaskSpec>> {
    shuffled(dag())
}

fn shuffled(dag: impl Strategy<Value = Vec<Vec<usize>>>) -> impl Strategy<Value = Vec<TaskSpec>> {
    dag.prop_flat_map(|graph| {
        let tasks: Vec<TaskSpec> = graph
            .iter()
            .enumerate()
            .map(|(i, deps)| {
                t(
                    i as u64,
                    &deps.iter().map(|d| *d as u64).collect::<Vec<_>>(),
                )
            })
            .collect();
        Just(tasks).prop_shuffle()
    })
}

/// Any event a client or worker can cause, over small id ranges so that they collide: tasks
/// and workers that exist, existed, or never did; graphs with cycles, duplicates and unknown
/// inputs; reports no worker should send (finishing tasks it was never given, replicas of
/// released results, missing data from strangers).
fn any_event() -> impl Strategy<Value = Event> {
    let task = || (0..12u64).prop_map(TaskId);
    let tasks = || proptest::collection::vec(task(), 0..4);
    let worker = || 0..6u64;
    let client = || 0..3u64;
    let spec = (task(), tasks(), any::<bool>()).prop_map(|(id, deps, fail)| TaskSpec {
        kernel: if fail { "fail".into() } else { "noop".into() },
        ..t(id.0, &deps.iter().map(|d| d.0).collect::<Vec<_>>())
    });
    prop_oneof![
        // Valid graphs in any order (over the same 12 ids, so they overlap known tasks)...
        3 => (client(), shuffled(dag_of(1..12)), tasks())
            .prop_map(|(client, tasks, wanted)| Event::GraphSubmitted { client, tasks, wanted }),
        // ... and anything at all.
        1 => (client(), proptest::collection::vec(spec, 0..8), tasks())
            .prop_map(|(client, tasks, wanted)| Event::GraphSubmitted { client, tasks, wanted }),
        3 => (worker(), proptest::collection::vec((task(), 0..100u64, 0..1000u64), 0..4))
            .prop_map(|(worker, done)| Event::TasksFinished {
                worker,
                finished: done.into_iter().map(|(task, nbytes, duration_us)| Finished { task, nbytes, duration_us }).collect(),
            }),
        1 => (worker(), task()).prop_map(|(worker, task)| Event::TaskFailed { worker, task, error: "boom".into() }),
        1 => (worker(), task(), proptest::collection::vec((task(), proptest::collection::vec(worker(), 0..3)), 0..3))
            .prop_map(|(worker, task, missing)| Event::MissingData { worker, task, missing }),
        1 => (worker(), task(), 0..100u64).prop_map(|(worker, task, nbytes)| Event::ReplicaAdded { worker, task, nbytes }),
        1 => (client(), tasks()).prop_map(|(client, keys)| Event::Release { client, keys }),
        1 => client().prop_map(|client| Event::ClientGone { client }),
        1 => (tasks(), worker()).prop_map(|(keys, to)| Event::Replicate { keys, to }),
        1 => (proptest::collection::vec(worker(), 0..3), proptest::option::of(client()))
            .prop_map(|(workers, requester)| Event::Retire { workers, requester }),
        1 => worker().prop_map(|worker| Event::WorkerLost { worker }),
        1 => (worker(), any::<u64>(), any::<bool>(), tasks())
            .prop_map(|(worker, memory, paused, executing)| Event::Heartbeat { worker, memory, paused, executing, spilled: 0, cpu_permille: 0 }),
        // Joins take a fresh id below (the server never reuses one).
        1 => (1..4u32).prop_map(|nthreads| Event::WorkerJoined {
            worker: 0,
            info: WorkerInfo { nthreads, memory_limit: 1 << 30, ..WorkerInfo::default() },
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// No interleaving of client and worker events panics the state machine or breaks an
    /// invariant, however wrong the reports: the core serves everyone, so one confused peer
    /// must not take it down.
    #[test]
    fn no_sequence_of_events_panics_or_breaks_an_invariant(events in proptest::collection::vec(any_event(), 0..60)) {
        let mut s = State::new(Config::default());
        let mut next_worker = 0;
        let mut alive: Vec<WorkerId> = Vec::new();
        for mut e in events {
            match &mut e {
                Event::WorkerJoined { worker, .. } => {
                    *worker = next_worker;
                    alive.push(next_worker);
                    next_worker += 1;
                }
                Event::WorkerLost { worker } => alive.retain(|w| w != worker),
                _ => {}
            }
            s.handle(e);
            for c in s.take_commands() {
                if let Command::Close { worker } = c {
                    alive.retain(|w| *w != worker);
                }
            }
            if let Err(broken) = s.check_invariants() {
                prop_assert!(false, "invariant broken: {broken}");
            }
        }
        // Every worker the scheduler lists is one that joined and was not lost or closed.
        for w in s.worker_ids() {
            prop_assert!(alive.contains(&w), "{w} listed but gone");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever happens to the workers, the invariants hold after every event, and once a
    /// healthy worker remains every wanted result arrives.
    #[test]
    fn invariants_hold_and_every_wanted_result_arrives(tasks in shuffled_graph(), actions in proptest::collection::vec(action(), 0..80), threads in 1..3u32) {
        let mut sim = Sim::new();
        sim.join(threads);
        sim.join(threads);
        let mut has_dependent = vec![false; tasks.len()];
        for task in &tasks { for d in &task.deps { has_dependent[d.0 as usize] = true; } }
        let wanted: Vec<u64> = (0..tasks.len() as u64).filter(|i| !has_dependent[*i as usize] || i % 5 == 0).collect();
        sim.submit(tasks, &wanted);
        for a in actions {
            let ids = sim.s.worker_ids();
            let pick = |i: usize| ids.get(i % ids.len().max(1)).copied();
            match a {
                Action::Step(i) => { if let Some(w) = pick(i) { sim.step(w); } }
                Action::Kill(i) => { if let Some(w) = pick(i) { sim.kill(w); } }
                Action::Join => { sim.join(threads); }
                Action::Retire(i) => { if let Some(w) = pick(i) { sim.event(Event::Retire { workers: vec![w], requester: None }); } }
                Action::Heartbeat(i, paused) => { if let Some(w) = pick(i) { sim.event(Event::Heartbeat { worker: w, memory: 0, paused, executing: vec![], spilled: 0, cpu_permille: 0 }); } }
            }
        }
        // Recovery: unpause everyone, add a healthy worker, run to the end.
        for w in sim.s.worker_ids() {
            sim.event(Event::Heartbeat { worker: w, memory: 0, paused: false, executing: vec![], spilled: 0, cpu_permille: 0 });
        }
        sim.join(threads);
        sim.run_all();
        for k in &wanted {
            let k = TaskId(*k);
            prop_assert!(sim.ready.contains_key(&k) || sim.erred.contains_key(&k), "wanted {k} never arrived: {:?}", sim.s.task_state(k));
            prop_assert!(!sim.erred.contains_key(&k) || sim.erred[&k].contains("workers died"), "unexpected error {:?}", sim.erred.get(&k));
        }
    }
}

#[test]
fn a_retirement_finishes_when_a_result_being_copied_is_released() {
    let mut s = State::new(Config::default());
    for w in [1, 2] {
        let info = WorkerInfo {
            nthreads: 1,
            ..WorkerInfo::default()
        };
        s.handle(Event::WorkerJoined { worker: w, info });
    }
    s.handle(Event::GraphSubmitted {
        client: CLIENT,
        tasks: vec![t(1, &[])],
        wanted: vec![TaskId(1)],
    });
    let holder = match &s.take_commands()[..] {
        [Command::Compute { worker, .. }] => *worker,
        other => panic!("{other:?}"),
    };
    s.handle(Event::TasksFinished {
        worker: holder,
        finished: vec![Finished {
            task: TaskId(1),
            nbytes: 8,
            duration_us: 1,
        }],
    });
    s.take_commands();
    s.handle(Event::Retire {
        workers: vec![holder],
        requester: Some(CLIENT),
    });
    assert!(s
        .take_commands()
        .iter()
        .any(|c| matches!(c, Command::Replicate { .. })));
    // The client drops the result before the copy lands: the retirement must still end.
    s.handle(Event::Release {
        client: CLIENT,
        keys: vec![TaskId(1)],
    });
    let out = s.take_commands();
    assert!(
        out.contains(&Command::WorkerRetired {
            requester: CLIENT,
            worker: holder
        }),
        "{out:?}"
    );
    s.check_invariants().unwrap();
}

#[test]
fn every_retire_request_is_answered() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    sim.s.handle(Event::Retire {
        workers: vec![999],
        requester: Some(CLIENT),
    });
    assert!(sim.s.take_commands().contains(&Command::WorkerRetired {
        requester: CLIENT,
        worker: 999
    }));
    // Lost while retiring (its copy target never answers): still answered.
    let b = sim.join(1);
    sim.submit(vec![t(1, &[])], &[1]);
    sim.run_all();
    let holder = sim.s.holders(TaskId(1))[0];
    let other = if holder == a { b } else { a };
    sim.s.handle(Event::Retire {
        workers: vec![holder],
        requester: Some(CLIENT),
    });
    sim.s.handle(Event::WorkerLost { worker: holder });
    let out = sim.s.take_commands();
    assert!(
        out.contains(&Command::WorkerRetired {
            requester: CLIENT,
            worker: holder
        }),
        "{out:?}"
    );
    let _ = other;
}

#[test]
fn retiring_two_workers_at_once_keeps_what_only_they_hold() {
    let mut sim = Sim::new();
    let a = sim.join(1);
    let b = sim.join(1);
    let c = sim.join(1);
    sim.submit(vec![t(1, &[])], &[1]);
    sim.run_all();
    // Give the result a second copy, then retire both holders together.
    let first = sim.s.holders(TaskId(1))[0];
    let second = if first == a { b } else { a };
    sim.data.get_mut(&second).unwrap().insert(TaskId(1));
    sim.event(Event::ReplicaAdded {
        worker: second,
        task: TaskId(1),
        nbytes: 8,
    });
    sim.event(Event::Retire {
        workers: vec![first, second],
        requester: None,
    });
    assert_eq!(
        sim.s.holders(TaskId(1)),
        &[c],
        "the shared result was not copied to the survivor"
    );
}

#[test]
fn graph_tasks_nobody_wants_are_forgotten() {
    let mut sim = Sim::new();
    sim.join(1);
    // a -> b (wanted), a -> c (not wanted): c and, once b is released, a must go.
    sim.submit(vec![t(1, &[]), t(2, &[1]), t(3, &[1])], &[2]);
    sim.run_all();
    sim.event(Event::Release {
        client: CLIENT,
        keys: vec![TaskId(2)],
    });
    assert_eq!(sim.s.counts(), TaskCounts::default());
}

#[test]
fn a_released_graph_gives_its_room_back() {
    let mut s = State::new(Config::default());
    let n = 200_000;
    s.handle(Event::GraphSubmitted {
        client: CLIENT,
        tasks: (0..n).map(|i| t(i, &[])).collect(),
        wanted: (0..n).map(TaskId).collect(),
    });
    s.take_commands();
    assert_eq!(s.counts().queued, n as usize);
    let peak = s.task_capacity();
    assert!(peak >= n as usize);
    assert!(!s.compact(), "nothing to give back while the graph is live");
    s.handle(Event::Release {
        client: CLIENT,
        keys: (0..n).map(TaskId).collect(),
    });
    s.take_commands();
    assert_eq!(s.counts(), TaskCounts::default());
    assert!(s.compact());
    assert!(s.task_capacity() < 1024, "{} slots kept", s.task_capacity());
    s.check_invariants().unwrap();
    // The scheduler still works afterwards.
    let info = WorkerInfo {
        nthreads: 1,
        ..WorkerInfo::default()
    };
    s.handle(Event::WorkerJoined { worker: 1, info });
    s.handle(Event::GraphSubmitted {
        client: CLIENT,
        tasks: vec![t(1, &[])],
        wanted: vec![TaskId(1)],
    });
    assert!(matches!(&s.take_commands()[..], [Command::Compute { tasks, .. }] if tasks.len() == 1));
}

#[test]
fn forgetting_many_dependents_of_one_input_is_one_pass() {
    // `x - x.mean()` over many chunks: one input read by every task. Each forgotten
    // dependent used to scan the input's whole list of dependents (quadratic: 100,000
    // dependents took the core minutes, serving nobody meanwhile).
    let mut sim = Sim::new();
    sim.join(1);
    let n = 100_000u64;
    let mut tasks = vec![t(0, &[])];
    tasks.extend((1..=n).map(|i| t(i, &[0])));
    let wanted: Vec<u64> = (1..=n).collect();
    sim.submit(tasks, &wanted);
    sim.event(Event::Release {
        client: CLIENT,
        keys: (1..=n).map(TaskId).collect(),
    });
    assert_eq!(sim.s.counts(), TaskCounts::default());
    // And as the client goes (the other way results are given up).
    let mut tasks = vec![t(0, &[])];
    tasks.extend((1..=n).map(|i| t(i, &[0])));
    sim.submit(tasks, &wanted);
    sim.event(Event::ClientGone { client: CLIENT });
    assert_eq!(sim.s.counts(), TaskCounts::default());
}
