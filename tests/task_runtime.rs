//! Task arrays through the library on a real LocalCluster (scheduler in-process, worker
//! processes of the real binary): outputs, no overbooking of cpus or resources, time limits,
//! cancel, a task killed by a signal, a worker killed mid-array, `after` chains.

use std::path::Path;
use std::time::{Duration, Instant};

use rdask::client::TaskEvent;
use rdask::task_array::{Items, OutputPattern, SubmissionId, TaskArraySpec, TaskEnd, TaskOutcome};
use rdask::{Client, LocalCluster, LocalClusterOptions};

async fn cluster(workers: usize, threads: u32, extra: &[&str]) -> LocalCluster {
    LocalCluster::start(LocalClusterOptions {
        workers,
        threads_per_worker: threads,
        worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
        death_timeout: Duration::from_secs(5),
        worker_args: extra.iter().map(|s| s.to_string()).collect(),
        restart_workers: false,
        ..LocalClusterOptions::default()
    })
    .await
    .expect("a local cluster")
}

fn sh(id: u64, first: u64, last: u64, script: &str) -> TaskArraySpec {
    TaskArraySpec::new(
        SubmissionId(id),
        Items::Range {
            start: first,
            end: last,
            step: 1,
        },
        vec!["sh".into(), "-c".into(), script.into()],
    )
}

fn ends(outcomes: &[TaskOutcome]) -> Vec<(u64, TaskEnd)> {
    outcomes.iter().map(|o| (o.task, o.state.clone())).collect()
}

/// Collects outcomes from `events` until `total` tasks have ended (or the deadline).
async fn collect(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<TaskEvent>,
    total: usize,
) -> Vec<TaskOutcome> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while out.len() < total {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(TaskEvent::Ended(o))) => out.extend(o),
            Ok(Some(TaskEvent::Rejected { reason, .. })) => panic!("rejected: {reason}"),
            Ok(Some(TaskEvent::Started(_))) => {}
            Ok(None) => panic!("the scheduler went away"),
            Err(_) => panic!("only {} of {total} tasks ended in time", out.len()),
        }
    }
    out.sort_by_key(|o| (o.submission, o.task));
    out
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_in(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Running (a zombie not yet reaped by whoever inherited it counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Each task writes its output by pattern, sees its placeholders and environment, and the
/// tasks running at once never hold more cpus than the workers have: with 2 workers of 2
/// threads and 2 cpus per task, at most 2 tasks run at any moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_right_and_cpus_are_never_overbooked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("running")).unwrap();
    let c = cluster(2, 2, &[]).await;
    let client = c.client().await.unwrap();
    // Each task marks itself running, counts the marks, and records the count.
    let script = format!(
        "touch {d}/running/{{task}}; ls {d}/running | wc -l >> {d}/counts; \
         echo task={{task}} id=$RDASK_TASK_ID sub=$RDASK_SUBMISSION_ID cpus=$RDASK_CPUS; \
         sleep 0.3; rm {d}/running/{{task}}"
    );
    let mut spec = sh(1, 1, 10, &script);
    spec.cpus = 2;
    spec.stdout = OutputPattern::File(format!("{d}/out/{{submission}}/{{task}}.out"));
    spec.stderr = OutputPattern::File(format!("{d}/out/{{submission}}/{{task}}.err"));
    let outcomes = client.run_task_array(spec, |_| {}).await.unwrap();
    assert_eq!(
        ends(&outcomes),
        (1..=10)
            .map(|t| (t, TaskEnd::Succeeded))
            .collect::<Vec<_>>()
    );
    for o in &outcomes {
        assert_eq!(o.attempt, 1);
        assert!(o.end >= o.start && o.start > 0.0, "{o:?}");
        assert!(!o.worker.is_empty() && !o.host.is_empty(), "{o:?}");
        let out = std::fs::read_to_string(dir.path().join(format!("out/1/{}.out", o.task)));
        assert_eq!(
            out.unwrap(),
            format!("task={0} id={0} sub=1 cpus=2\n", o.task)
        );
    }
    let counts: Vec<u32> = std::fs::read_to_string(dir.path().join("counts"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 10);
    assert!(
        counts.iter().all(|n| *n <= 2),
        "more than 2 tasks of 2 cpus ran at once on 4 threads: {counts:?}"
    );
    c.close().await;
}

/// A resource a task needs is held while it runs: two workers offering GPU=1 each run one
/// GPU task at a time although each has 2 free threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_held_while_tasks_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("running")).unwrap();
    let c = cluster(2, 2, &["--resources", "GPU=1"]).await;
    let client = c.client().await.unwrap();
    let script = format!(
        "touch {d}/running/{{task}}; ls {d}/running | wc -l >> {d}/counts; sleep 0.3; \
         rm {d}/running/{{task}}"
    );
    let mut spec = sh(1, 1, 8, &script);
    spec.resources = vec![("GPU".into(), 1.0)];
    let outcomes = client.run_task_array(spec, |_| {}).await.unwrap();
    assert!(outcomes.iter().all(|o| o.state.succeeded()), "{outcomes:?}");
    let counts = std::fs::read_to_string(dir.path().join("counts")).unwrap();
    assert!(
        counts
            .lines()
            .all(|l| l.trim().parse::<u32>().unwrap() <= 2),
        "more GPU tasks at once than GPUs: {counts}"
    );
    c.close().await;
}

/// `time_limit` kills the task and its children (its process group) and marks it timed
/// out; the stderr written before is kept as its tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let c = cluster(1, 2, &[]).await;
    let client = c.client().await.unwrap();
    let script = format!(
        "echo started >&2; (sleep 3; touch {d}/child-{{task}}) & echo $! > {d}/pid-{{task}}; sleep 60"
    );
    let mut spec = sh(1, 1, 2, &script);
    spec.time_limit = Some(Duration::from_secs(1));
    spec.stderr = OutputPattern::File(format!("{d}/{{task}}.err"));
    let started = Instant::now();
    let outcomes = client.run_task_array(spec, |_| {}).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        ends(&outcomes),
        [(1, TaskEnd::TimedOut), (2, TaskEnd::TimedOut)]
    );
    assert_eq!(outcomes[0].stderr_tail, "started\n");
    for t in [1, 2] {
        assert!(!alive(pid_in(&dir.path().join(format!("pid-{t}")))));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !dir.path().join("child-1").exists(),
        "a child outlived the limit"
    );
    c.close().await;
}

/// Cancel ends queued tasks at once and kills running ones (their process groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_running_tasks_and_ends_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let c = cluster(2, 1, &[]).await;
    let client = c.client().await.unwrap();
    let mut events = client.task_events();
    client
        .submit_task_array(sh(5, 1, 6, &format!("echo $$ > {d}/pid-{{task}}.tmp; mv {d}/pid-{{task}}.tmp {d}/pid-{{task}}; sleep 60")))
        .unwrap();
    // Two run (one per worker), four wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let pids: Vec<i32> = (1..=6)
            .map(|t| dir.path().join(format!("pid-{t}")))
            .filter(|p| p.exists())
            .map(|p| pid_in(&p))
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "the tasks did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Cancel tasks 1-5 (6 runs when a worker is free again).
    client.cancel_tasks(SubmissionId(5), Some((1, 5))).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.cancel_tasks(SubmissionId(5), None).unwrap();
    let outcomes = collect(&mut events, 6).await;
    assert!(
        outcomes.iter().all(|o| o.state == TaskEnd::Cancelled),
        "{outcomes:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for pid in running {
        assert!(!alive(pid), "cancelled task {pid} still runs");
    }
    // The workers are free again: a new submission runs.
    let outcomes = client
        .run_task_array(sh(6, 1, 2, "true"), |_| {})
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.state.succeeded()));
    c.close().await;
}

/// `kill -9` of one task's process fails that task (with its signal) and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_killed_by_a_signal_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let c = cluster(1, 2, &[]).await;
    let client = c.client().await.unwrap();
    let mut events = client.task_events();
    let script = format!(
        "echo $$ > {d}/pid-{{task}}.tmp; mv {d}/pid-{{task}}.tmp {d}/pid-{{task}}; exec sleep 2"
    );
    client.submit_task_array(sh(1, 1, 4, &script)).unwrap();
    let pid_file = dir.path().join("pid-1");
    wait_for_file(&pid_file).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_in(&pid_file)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let outcomes = collect(&mut events, 4).await;
    assert_eq!(
        ends(&outcomes),
        [
            (1, TaskEnd::Signalled { signal: 9 }),
            (2, TaskEnd::Succeeded),
            (3, TaskEnd::Succeeded),
            (4, TaskEnd::Succeeded),
        ]
    );
    c.close().await;
}

/// A worker killed mid-array: the tasks it ran run again on the other worker, once; every
/// task ends exactly once, succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_array_has_its_tasks_run_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let c = cluster(2, 1, &[]).await;
    let client = c.client().await.unwrap();
    let mut events = client.task_events();
    client
        .submit_task_array(sh(
            1,
            1,
            6,
            &format!("sleep 0.5; echo {{task}} >> {d}/done"),
        ))
        .unwrap();
    // Kill one worker while its first task runs.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let victim = c.worker_pids()[0] as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let outcomes = collect(&mut events, 6).await;
    assert_eq!(
        ends(&outcomes),
        (1..=6).map(|t| (t, TaskEnd::Succeeded)).collect::<Vec<_>>()
    );
    let rerun: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.attempt == 2)
        .map(|o| o.task)
        .collect();
    assert_eq!(rerun.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.attempt <= 2), "{outcomes:?}");
    c.close().await;
}

/// `after`: a submission starts once those it names succeeded; one waiting for a failed
/// submission ends `DependencyFailed` without running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_chains_wait_for_success_and_fail_after_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let c = cluster(2, 1, &[]).await;
    let client = c.client().await.unwrap();
    let mut events = client.task_events();
    client.submit_task_array(sh(1, 1, 3, "sleep 0.3")).unwrap();
    let mut b = sh(2, 1, 2, &format!("touch {d}/b-{{task}}"));
    b.after = vec![SubmissionId(1)];
    client.submit_task_array(b).unwrap();
    client.submit_task_array(sh(3, 1, 1, "exit 1")).unwrap();
    let mut d4 = sh(4, 1, 2, &format!("touch {d}/d-{{task}}"));
    d4.after = vec![SubmissionId(3), SubmissionId(2)];
    client.submit_task_array(d4).unwrap();
    let outcomes = collect(&mut events, 8).await;
    let of = |s: u64| -> Vec<&TaskOutcome> {
        outcomes
            .iter()
            .filter(|o| o.submission == SubmissionId(s))
            .collect()
    };
    let a_end = of(1).iter().map(|o| o.end).fold(0.0, f64::max);
    assert!(of(1).iter().all(|o| o.state.succeeded()));
    assert!(of(2)
        .iter()
        .all(|o| o.state.succeeded() && o.start >= a_end));
    assert_eq!(of(3)[0].state, TaskEnd::Failed { code: 1 });
    assert!(of(4)
        .iter()
        .all(|o| o.state == TaskEnd::DependencyFailed && o.attempt == 0));
    assert!(!dir.path().join("d-1").exists());
    // Naming an unknown submission is refused.
    let mut bad = sh(9, 1, 1, "true");
    bad.after = vec![SubmissionId(77)];
    let err = client.run_task_array(bad, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("77"), "{err}");
    c.close().await;
}

/// The array is one message: 100,000 tasks go out at once and the scheduler reports them
/// queued by what they need, before any has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_array_is_queued_as_one_description() {
    let c = cluster(1, 1, &[]).await;
    let client: Client = c.client().await.unwrap();
    let mut spec = sh(1, 1, 100_000, "sleep 60");
    spec.cpus = 1;
    client.submit_task_array(spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.status().await.unwrap();
        // One task runs on the one thread; the rest wait, as one entry.
        if let [d] = &status.queued_programs[..] {
            assert_eq!((d.cpus, d.held), (1, 0));
            if d.tasks == 99_999 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no demand reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.cancel_tasks(SubmissionId(1), None).unwrap();
    c.close().await;
}
