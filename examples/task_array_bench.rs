//! Task-array throughput and the scheduler's memory per queued task, through the library.
//!
//! `task_array_bench throughput N WORKERS THREADS` runs N tasks of `true` on a LocalCluster
//! (the rdask-jobqueue binary beside this example, or $RDASK_WORKER_PROGRAM) and prints
//! tasks per second; compare with `seq N | xargs -P 2 -n 1 true`.
//!
//! `task_array_bench memory N` submits one array of N tasks to a scheduler state machine with
//! one busy worker and prints the heap it took (glibc's mallinfo2), per queued task.

use std::time::{Duration, Instant};

use rdask::scheduler::state::{Config, Event, State, WorkerInfo};
use rdask::task_array::{Items, SubmissionId, TaskArraySpec};
use rdask::{LocalCluster, LocalClusterOptions};

fn spec(n: u64) -> TaskArraySpec {
    TaskArraySpec::new(
        SubmissionId(1),
        Items::Range {
            start: 1,
            end: n,
            step: 1,
        },
        vec!["true".into()],
    )
}

fn heap() -> usize {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

fn memory(n: u64) {
    let mut s = State::new(Config::default());
    s.handle(Event::WorkerJoined {
        worker: 1,
        info: WorkerInfo {
            nthreads: 1,
            ..WorkerInfo::default()
        },
    });
    let _ = s.take_commands();
    let before = heap();
    s.handle(Event::TaskArraySubmitted {
        client: 1,
        spec: Box::new(spec(n)),
    });
    let _ = s.take_commands();
    let after = heap();
    let queued: u64 = s.queued_programs().iter().map(|d| d.tasks).sum();
    println!(
        "{queued} tasks queued: {} bytes of heap, {:.4} bytes per queued task",
        after - before,
        (after - before) as f64 / queued as f64
    );
}

async fn throughput(n: u64, workers: usize, threads: u32) {
    let cluster = LocalCluster::start(LocalClusterOptions {
        workers,
        threads_per_worker: threads,
        death_timeout: Duration::from_secs(10),
        ..LocalClusterOptions::default()
    })
    .await
    .expect("a local cluster");
    let client = cluster.client().await.expect("a client");
    let started = Instant::now();
    let outcomes = client
        .run_task_array(spec(n), |_| {})
        .await
        .expect("the array runs");
    let secs = started.elapsed().as_secs_f64();
    let ok = outcomes.iter().filter(|o| o.state.succeeded()).count();
    println!(
        "{ok}/{n} tasks of `true` on {workers} x {threads} threads: {secs:.2} s, {:.0} tasks/s",
        n as f64 / secs
    );
    cluster.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("memory") => memory(num(1, 100_000)),
        Some("throughput") => {
            let rt = rdask::rt::runtime().expect("a runtime");
            rt.block_on(throughput(
                num(1, 10_000),
                num(2, 2) as usize,
                num(3, 1) as u32,
            ));
        }
        _ => {
            eprintln!("usage: task_array_bench throughput [N WORKERS THREADS] | memory [N]");
            std::process::exit(2);
        }
    }
}
