//! The runtime end to end: a scheduler in the test process and worker processes of the real
//! binary, over TCP on loopback.

mod common;

use std::time::Duration;

use rdask::graph::{TaskId, TaskSpec};
use rdask::kernels::command::{CommandResult, CommandSpec};
use rdask::protocol::{Role, Secret};
use rdask::{Client, LocalCluster, LocalClusterOptions};

fn options(workers: usize) -> LocalClusterOptions {
    LocalClusterOptions {
        workers,
        threads_per_worker: 1,
        worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
        death_timeout: Duration::from_secs(5),
        ..LocalClusterOptions::default()
    }
}

fn u64_bytes(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

fn as_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// A binary tree summing `leaves` constants 0..leaves with `sum-u64`; returns (tasks, root).
fn sum_tree(client: &Client, leaves: u64) -> (Vec<TaskSpec>, TaskId) {
    let mut tasks = Vec::new();
    let leaf_ids: Vec<TaskId> = (0..leaves)
        .map(|i| {
            let id = client.new_key();
            tasks.push(TaskSpec::new(id, "sum-u64", u64_bytes(i), vec![]));
            id
        })
        .collect();
    let (inner, root) = rdask::graph::reduction_tree(leaf_ids, 2, "sum-u64", || client.new_key());
    tasks.extend(inner);
    (tasks, root)
}

fn bytes_task(client: &Client, len: u64, fill: u8) -> TaskSpec {
    let mut args = u64_bytes(len);
    args.push(fill);
    TaskSpec::new(client.new_key(), "bytes", args, vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_reduction_runs_on_three_workers() {
    let cluster = LocalCluster::start(options(3)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let (tasks, root) = sum_tree(&client, 1000);
    let out = client.compute(tasks, &[root]).await.unwrap();
    assert_eq!(as_u64(&out[0]), 999 * 1000 / 2);
    let status = client.status().await.unwrap();
    assert_eq!(status.workers.len(), 3);
    cluster.close().await;
}

/// Inputs on other workers move peer-to-peer; the scheduler only ever sees control messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_move_between_workers_never_through_the_scheduler() {
    let cluster = LocalCluster::start(options(3)).await.unwrap();
    let client = cluster.client().await.unwrap();
    const MIB: u64 = 1 << 20;
    let parts: Vec<TaskSpec> = (0..3)
        .map(|i| bytes_task(&client, 8 * MIB, i as u8 + 1))
        .collect();
    let part_ids: Vec<TaskId> = parts.iter().map(|t| t.id).collect();
    client.submit(parts, &part_ids).unwrap();
    client.wait(&part_ids).await.unwrap();
    let holders: std::collections::HashSet<u64> = client
        .who_has(&part_ids)
        .await
        .unwrap()
        .iter()
        .map(|(_, h)| h[0].worker)
        .collect();
    assert!(
        holders.len() >= 2,
        "the inputs all landed on one worker; nothing would move"
    );
    let before = client.status().await.unwrap();
    let joined = client.new_key();
    let out = client
        .compute(
            vec![TaskSpec::new(joined, "concat", vec![], part_ids.clone())],
            &[joined],
        )
        .await
        .unwrap();
    assert_eq!(out[0].len() as u64, 24 * MIB);
    for (i, chunk) in out[0].chunks(8 * MIB as usize).enumerate() {
        assert!(
            chunk.iter().all(|b| *b == i as u8 + 1),
            "part {i} arrived wrong"
        );
    }
    let after = client.status().await.unwrap();
    let scheduler_bytes =
        (after.bytes_received + after.bytes_sent) - (before.bytes_received + before.bytes_sent);
    assert!(
        scheduler_bytes < 64 * 1024,
        "the scheduler moved {scheduler_bytes} bytes for 24 MiB of data"
    );
    cluster.close().await;
}

/// kill -9 of a worker in the middle of a graph: its work is recomputed, the result is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_does_not_change_the_result() {
    // The scheduler's own recovery, without the cluster restarting the worker.
    let cluster = LocalCluster::start(LocalClusterOptions {
        restart_workers: false,
        ..options(3)
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    let leaves = 240u64;
    let mut tasks = Vec::new();
    let leaf_ids: Vec<TaskId> = (0..leaves)
        .map(|i| {
            let id = client.new_key();
            let mut args = u64_bytes(i);
            args.extend(u64_bytes(10_000)); // 10 ms of simulated work each
            tasks.push(TaskSpec::new(id, "sum-u64", args, vec![]));
            id
        })
        .collect();
    let (inner, root) = rdask::graph::reduction_tree(leaf_ids, 3, "sum-u64", || client.new_key());
    tasks.extend(inner);
    client.submit(tasks, &[root]).unwrap();
    let mut progress = client.progress();
    while *progress.borrow() < 60 {
        progress.changed().await.unwrap();
    }
    let victim = cluster.worker_pids()[1];
    // SAFETY: kill(2) on a child process of this test.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let out = client.gather(&[root]).await.unwrap();
    assert_eq!(as_u64(&out[0]), leaves * (leaves - 1) / 2);
    assert_eq!(client.status().await.unwrap().workers.len(), 2);
    cluster.close().await;
}

/// A memory limit below the data forces spilling; results stay right and every worker's peak
/// RSS stays under its limit. The limit is 128 MiB for 200 MiB of results: a worker's own
/// footprint (its code, runtime and buffers, ~20 MiB) is a fixed cost, and at 96 MiB it left
/// so little room that a busy machine's scheduling delays decided the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilling_keeps_workers_under_their_memory_limit() {
    const MIB: u64 = 1 << 20;
    let limit = 128 * MIB;
    let mut opts = options(1);
    opts.memory_limit = limit;
    let dir = tempfile::tempdir().unwrap();
    opts.local_directory = dir.path().to_path_buf();
    let cluster = LocalCluster::start(opts).await.unwrap();
    let client = cluster.client().await.unwrap();
    let tasks: Vec<TaskSpec> = (0..50)
        .map(|i| bytes_task(&client, 4 * MIB, i as u8))
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    client.submit(tasks, &ids).unwrap();
    client.wait(&ids).await.unwrap();
    let spilled: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(
        spilled >= 100 * MIB,
        "200 MiB of results with a 128 MiB limit, but only {spilled} bytes on disk"
    );
    // The worker's heartbeat tells the scheduler what it spilled (status, dashboard).
    let started = std::time::Instant::now();
    let reported = loop {
        let s = client.status().await.unwrap();
        let reported = s.workers[0].spilled_bytes;
        if reported >= 100 * MIB || started.elapsed() > Duration::from_secs(15) {
            break reported;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reported >= 100 * MIB,
        "the worker spilled {spilled} bytes but its heartbeat reports {reported}"
    );
    for (i, chunk) in client.gather(&ids).await.unwrap().iter().enumerate() {
        assert_eq!(chunk.len() as u64, 4 * MIB);
        assert!(
            chunk.iter().all(|b| *b == i as u8),
            "result {i} came back wrong"
        );
    }
    let peak = rdask::sys::peak_rss_of(&cluster.worker_pids()[0].to_string());
    assert!(
        peak > 0 && peak < limit,
        "worker peak RSS {} MiB over its {} MiB limit",
        peak / MIB,
        limit / MIB
    );
    cluster.close().await;
}

/// A wrong secret, no handshake at all, or garbage: refused; the scheduler keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_wrong_secret_clients_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = LocalCluster::start(options(1)).await.unwrap();
    let wrong = Secret::generate().unwrap();
    let err = Client::connect(cluster.address(), &wrong)
        .await
        .err()
        .expect("a wrong secret must be refused");
    assert!(err.to_string().contains("secret"), "{err}");
    let err = rdask::protocol::connect(cluster.address(), &wrong, Role::Worker)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("secret"), "{err}");
    let addr = cluster.address().trim_start_matches("tcp://").to_string();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), raw.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a garbage connection was left open");
    // Still serving the right secret.
    let client = cluster.client().await.unwrap();
    let (tasks, root) = sum_tree(&client, 10);
    assert_eq!(
        as_u64(&client.compute(tasks, &[root]).await.unwrap()[0]),
        45
    );
    cluster.close().await;
}

/// A task's error comes back to the client with the worker's message and name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_returns_its_error() {
    let cluster = LocalCluster::start(options(1)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let bad = client.new_key();
    let after = client.new_key();
    let tasks = vec![
        TaskSpec::new(bad, "sum-u64", vec![1, 2], vec![]),
        TaskSpec::new(after, "sum-u64", vec![], vec![bad]),
    ];
    let err = client
        .compute(tasks, &[after])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("8-byte") && err.contains("local-0"), "{err}");
    let unknown = client.new_key();
    let err = client
        .compute(
            vec![TaskSpec::new(unknown, "no-such-kernel", vec![], vec![])],
            &[unknown],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown kernel 'no-such-kernel'"), "{err}");
    cluster.close().await;
}

/// Plain programs run as tasks; a task that kills its worker three times is marked failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_tasks_and_a_worker_killer_is_stopped() {
    let cluster = LocalCluster::start(options(4)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let echo = client.new_key();
    let spec = CommandSpec::new(["sh", "-c", "echo hello $X; exit 4"]);
    let mut spec = spec;
    spec.env.push(("X".into(), "world".into()));
    let out = client
        .compute(
            vec![TaskSpec::new(echo, "command", spec.encode(), vec![])],
            &[echo],
        )
        .await
        .unwrap();
    let result = CommandResult::decode(&out[0]).unwrap();
    assert_eq!(
        (result.code, result.stdout.as_slice()),
        (Some(4), &b"hello world\n"[..])
    );

    let killer = client.new_key();
    let spec = CommandSpec::new(["sh", "-c", "kill -9 $PPID"]);
    let err = client
        .compute(
            vec![TaskSpec::new(killer, "command", spec.encode(), vec![])],
            &[killer],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 workers died"), "{err}");
    assert_eq!(client.status().await.unwrap().workers.len(), 1);
    cluster.close().await;
}

/// Retiring workers copies their unique results to the survivors first: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_retirement_keeps_every_result() {
    let cluster = LocalCluster::start(options(3)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let tasks: Vec<TaskSpec> = (0..30)
        .map(|i| bytes_task(&client, 1000 + i, i as u8))
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    client.submit(tasks, &ids).unwrap();
    client.wait(&ids).await.unwrap();
    let workers: Vec<u64> = client
        .status()
        .await
        .unwrap()
        .workers
        .iter()
        .map(|w| w.id)
        .collect();
    client.retire(&workers[..2]).await.unwrap();
    let status = client.status().await.unwrap();
    assert_eq!(status.workers.len(), 1);
    assert_eq!(status.workers[0].results, 30);
    let out = client.gather(&ids).await.unwrap();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.len(), 1000 + i);
        assert!(r.iter().all(|b| *b == i as u8));
    }
    cluster.close().await;
}

/// A worker whose scheduler vanishes exits after its death timeout, saying why.
#[test]
fn a_worker_exits_after_its_death_timeout() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut scheduler = common::spawn_scheduler(dir.path());
    let worker = Command::new(env!("CARGO_BIN_EXE_rdask-jobqueue"))
        .args([
            "worker",
            "--no-nanny",
            "--death-timeout",
            "2",
            "--scheduler-file",
        ])
        .arg(dir.path().join("scheduler.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it has registered, take the scheduler away without a goodbye.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&scheduler.address, &scheduler.secret)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while client.status().await.unwrap().workers.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker never registered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    scheduler.child.kill().unwrap();
    scheduler.child.wait().unwrap();
    let started = std::time::Instant::now();
    let out = worker.wait_with_output().unwrap();
    let waited = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unreachable for 2 s"), "{err}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(15),
        "exited after {waited:?}"
    );
}

/// `worker --nworkers 2` supervises two worker processes: a killed one is restarted, and
/// SIGTERM (a batch system cancelling the job) ends them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_restarts_a_killed_worker_and_ends_all_on_sigterm() {
    let cluster = LocalCluster::start(options(0)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let mut supervisor = std::process::Command::new(env!("CARGO_BIN_EXE_rdask-jobqueue"))
        .args([
            "worker",
            cluster.address(),
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--name",
            "sup",
        ])
        .env(rdask::protocol::SECRET_ENV, cluster.secret.to_hex())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let workers = |n: usize| {
        let client = &client;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let status = client.status().await.unwrap();
                if status.workers.len() == n {
                    return status.workers;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "expected {n} workers, have {:?}",
                    status.workers
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = workers(2).await;
    assert!(
        first.iter().all(|w| w.name.starts_with("sup-")),
        "{first:?}"
    );
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", supervisor.id())).unwrap();
    let victim: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill(2) on a worker process of the supervisor this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    // The lost worker leaves, and a fresh one (a new id) takes its place.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = client.status().await.unwrap().workers;
        if now.len() == 2 && now.iter().any(|w| first.iter().all(|f| f.id != w.id)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no replacement worker: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: as above, on the supervisor.
    unsafe { libc::kill(supervisor.id() as i32, libc::SIGTERM) };
    let status = supervisor.wait().unwrap();
    assert!(status.success(), "supervisor ended with {status}");
    workers(0).await;
    cluster.close().await;
}

/// A worker that goes silent without closing its connection (a node that hangs or dies hard)
/// is declared lost after the heartbeat timeout; its work moves to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_declared_lost_after_the_heartbeat_timeout() {
    use rdask::scheduler::server::{self, SchedulerOptions};
    let secret = Secret::generate().unwrap();
    let mut opts = SchedulerOptions::new("127.0.0.1:0".parse().unwrap(), secret.clone());
    opts.heartbeat = Duration::from_millis(100);
    opts.heartbeat_timeout = Duration::from_secs(2);
    let scheduler = server::start(opts).await.unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rdask-jobqueue"))
            .args([
                "worker",
                &scheduler.address,
                "--no-nanny",
                "--nthreads",
                "1",
            ])
            .env(rdask::protocol::SECRET_ENV, secret.to_hex())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn();
    let mut b = spawn();
    let client = Client::connect(&scheduler.address, &secret).await.unwrap();
    while client.status().await.unwrap().workers.len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Freeze one worker: its socket stays open, it just stops talking.
    // SAFETY: kill(2) on a worker process this test started.
    unsafe { libc::kill(a.id() as i32, libc::SIGSTOP) };
    let (tasks, root) = sum_tree(&client, 64);
    let started = std::time::Instant::now();
    let out = client.compute(tasks, &[root]).await.unwrap();
    assert_eq!(as_u64(&out[0]), 63 * 64 / 2);
    let status = client.status().await.unwrap();
    assert_eq!(
        status.workers.len(),
        1,
        "the frozen worker was never declared lost"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}

/// `replicate` copies a result to another worker, peer-to-peer; both then hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_can_be_replicated_to_another_worker() {
    let cluster = LocalCluster::start(options(2)).await.unwrap();
    let client = cluster.client().await.unwrap();
    let task = bytes_task(&client, 3 << 20, 5);
    let id = task.id;
    client.submit(vec![task], &[id]).unwrap();
    client.wait(&[id]).await.unwrap();
    let holder = client.who_has(&[id]).await.unwrap()[0].1[0].worker;
    let other = client
        .status()
        .await
        .unwrap()
        .workers
        .iter()
        .map(|w| w.id)
        .find(|w| *w != holder)
        .unwrap();
    client.replicate(&[id], other).await.unwrap();
    let mut holders: Vec<u64> = client.who_has(&[id]).await.unwrap()[0]
        .1
        .iter()
        .map(|h| h.worker)
        .collect();
    holders.sort();
    let mut want = vec![holder, other];
    want.sort();
    assert_eq!(holders, want);
    cluster.close().await;
}
