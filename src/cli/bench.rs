//! `bench runtime`: the runtime's speeds on this machine, each next to its physical floor.
//! bench/run.sh runs it beside Dask and writes the results up (docs/benchmarks.md).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use rdask::client::Client;
use rdask::error::{Error, Result};
use rdask::graph::TaskSpec;
use rdask::ids::TaskId;
use rdask::local::{LocalCluster, LocalClusterOptions};
use rdask::scheduler::state::{Command, Config, Event, Finished, State, WorkerInfo};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Task throughput, scheduler overhead, peer-to-peer bandwidth, worker footprint
    Runtime(RuntimeArgs),
    /// dask.array-style expressions over an HDF5 dataset, next to the read-and-sum floor
    Array(super::bench_array::ArrayBenchArgs),
    /// What the live dashboard costs: no-op throughput with it open in headless Chromium and
    /// /metrics scraped each second vs without (alternating rounds), and its memory
    Dashboard(super::bench_dashboard::DashboardBenchArgs),
}

#[derive(Args, Debug)]
pub struct RuntimeArgs {
    /// Tasks in the no-op and tree graphs
    #[arg(long, default_value_t = 100_000)]
    pub tasks: u64,
    /// Size of the result moved between two workers, in MiB
    #[arg(long, default_value_t = 512)]
    pub transfer_mib: u64,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
struct Rate {
    tasks: u64,
    seconds: f64,
    tasks_per_s: f64,
    us_per_task: f64,
}

impl Rate {
    fn new(tasks: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Rate {
            tasks,
            seconds,
            tasks_per_s: tasks as f64 / seconds,
            us_per_task: seconds * 1e6 / tasks as f64,
        }
    }
}

#[derive(Serialize, Debug)]
struct Report {
    workers: usize,
    threads_per_worker: u32,
    noop: Rate,
    tree: Rate,
    scheduler_only_noop: Rate,
    scheduler_only_tree: Rate,
    transfer_mib: u64,
    /// The first move between the two workers, into memory nobody touched lately.
    first_transfer_gb_s: f64,
    /// Moves between the two workers once both have received before, median of 3.
    peer_to_peer_gb_s: f64,
    plain_tcp_gb_s: f64,
    peer_to_peer_vs_tcp: f64,
    worker_idle_rss_mb: f64,
    worker_start_to_registered_ms: f64,
}

pub fn bench(c: BenchCommand) -> Result<i32> {
    let a = match c {
        BenchCommand::Runtime(a) => a,
        BenchCommand::Array(a) => return super::bench_array::bench_array(a),
        BenchCommand::Dashboard(a) => return super::bench_dashboard::bench_dashboard(a),
    };
    let report = rdask::rt::runtime()?.block_on(runtime_bench(&a))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialises")
        );
    } else {
        let r = &report;
        println!(
            "rdask runtime on this machine: {} workers x {} thread",
            r.workers, r.threads_per_worker
        );
        for (name, rate) in [
            ("no-op tasks, end to end", &r.noop),
            ("tree reduction, end to end", &r.tree),
            ("no-op tasks, scheduler alone", &r.scheduler_only_noop),
            ("tree reduction, scheduler alone", &r.scheduler_only_tree),
        ] {
            println!(
                "  {name:<32} {:>9} tasks {:>8.3} s {:>12.0} tasks/s {:>8.2} us/task",
                rate.tasks, rate.seconds, rate.tasks_per_s, rate.us_per_task
            );
        }
        println!(
            "  {} MiB result moved worker to worker: {:.2} GB/s; plain TCP over loopback {:.2} GB/s ({:.0}%); the very first move {:.2} GB/s",
            r.transfer_mib,
            r.peer_to_peer_gb_s,
            r.plain_tcp_gb_s,
            100.0 * r.peer_to_peer_vs_tcp,
            r.first_transfer_gb_s
        );
        println!(
            "  idle worker: {:.1} MB resident; {:.1} ms from process start to registered",
            r.worker_idle_rss_mb, r.worker_start_to_registered_ms
        );
    }
    Ok(0)
}

async fn runtime_bench(a: &RuntimeArgs) -> Result<Report> {
    let opts = LocalClusterOptions {
        workers: 2,
        threads_per_worker: 1,
        ..LocalClusterOptions::default()
    };
    let cluster = LocalCluster::start(opts.clone()).await?;
    let client = cluster.client().await?;

    // Warm up connections and the scheduler's observations.
    let warm: Vec<TaskSpec> = (0..1000)
        .map(|_| TaskSpec::new(client.new_key(), "noop", vec![], vec![]))
        .collect();
    let ids: Vec<TaskId> = warm.iter().map(|t| t.id).collect();
    client.compute(warm, &ids).await?;

    let (tasks, wanted) = noop_graph(a.tasks, || client.new_key());
    let started = Instant::now();
    client.compute(tasks, &wanted).await?;
    let noop = Rate::new(a.tasks, started.elapsed());

    let (tasks, root) = tree_graph(a.tasks, || client.new_key());
    let n = tasks.len() as u64;
    let started = Instant::now();
    client.compute(tasks, &[root]).await?;
    let tree = Rate::new(n, started.elapsed());

    let moved = transfer(&client, a.transfer_mib).await?;
    cluster.close().await;

    let mut next = 0u64;
    let mut key = || {
        next += 1;
        TaskId(next)
    };
    let (tasks, wanted) = noop_graph(a.tasks, &mut key);
    let scheduler_only_noop = scheduler_only(tasks, wanted);
    let (tasks, root) = tree_graph(a.tasks, &mut key);
    let scheduler_only_tree = scheduler_only(tasks, vec![root]);

    let (rss, start_ms) = worker_footprint(&opts).await?;
    Ok(Report {
        workers: 2,
        threads_per_worker: 1,
        noop,
        tree,
        scheduler_only_noop,
        scheduler_only_tree,
        transfer_mib: a.transfer_mib,
        first_transfer_gb_s: moved.cold,
        peer_to_peer_gb_s: moved.warm,
        plain_tcp_gb_s: moved.tcp,
        peer_to_peer_vs_tcp: moved.warm / moved.tcp,
        worker_idle_rss_mb: rss,
        worker_start_to_registered_ms: start_ms,
    })
}

fn noop_graph(n: u64, mut key: impl FnMut() -> TaskId) -> (Vec<TaskSpec>, Vec<TaskId>) {
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|_| TaskSpec::new(key(), "noop", vec![], vec![]))
        .collect();
    let wanted = tasks.iter().map(|t| t.id).collect();
    (tasks, wanted)
}

/// A binary tree over `leaves` no-op leaves: about 2 x leaves tasks.
fn tree_graph(leaves: u64, mut key: impl FnMut() -> TaskId) -> (Vec<TaskSpec>, TaskId) {
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|_| TaskSpec::new(key(), "noop", vec![], vec![]))
        .collect();
    let leaf_ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let (inner, root) = rdask::graph::reduction_tree(leaf_ids, 2, "noop", &mut key);
    tasks.extend(inner);
    (tasks, root)
}

/// The state machine alone, with two workers that finish every task the moment it is
/// assigned: the cost of scheduling decisions, without sockets or kernels.
fn scheduler_only(tasks: Vec<TaskSpec>, wanted: Vec<TaskId>) -> Rate {
    let n = tasks.len() as u64;
    let started = Instant::now();
    let mut s = State::new(Config::default());
    for w in 1..=2 {
        let info = WorkerInfo {
            nthreads: 1,
            memory_limit: 1 << 30,
            ..WorkerInfo::default()
        };
        s.handle(Event::WorkerJoined { worker: w, info });
    }
    s.handle(Event::GraphSubmitted {
        client: 1,
        tasks,
        wanted: wanted.clone(),
    });
    let mut ready = 0usize;
    loop {
        let commands = s.take_commands();
        let mut progressed = false;
        for c in commands {
            match c {
                Command::Compute { worker, tasks } => {
                    progressed = true;
                    let finished = tasks
                        .iter()
                        .map(|a| Finished {
                            task: a.task,
                            nbytes: 0,
                            duration_us: 1,
                        })
                        .collect();
                    s.handle(Event::TasksFinished { worker, finished });
                }
                Command::KeyReady { .. } => ready += 1,
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    assert_eq!(ready, wanted.len(), "the simulated run did not finish");
    Rate::new(n, started.elapsed())
}

/// Bulk transfer speeds between the two workers (`Client::replicate`: the receiver fetches
/// from the holder, peer-to-peer):
/// - `cold`: the first move, into a worker that never held a large result: it includes this
///   machine's cost of handing out memory nobody touched lately (see docs/benchmarks.md);
/// - `warm`: the median of three moves once each worker has received one result;
/// - `tcp`: the floor, the same bytes over one loopback socket between two threads, both
///   buffers huge-page backed and touched before the clock starts (median of three,
///   interleaved; see [`tcp_copy`]).
async fn transfer(client: &Client, mib: u64) -> Result<Transfer> {
    let bytes = mib << 20;
    let workers: Vec<u64> = client
        .status()
        .await?
        .workers
        .iter()
        .map(|w| w.id)
        .collect();
    let move_once = || async {
        let id = client.new_key();
        let mut args = bytes.to_le_bytes().to_vec();
        args.push(7);
        client.submit(vec![TaskSpec::new(id, "bytes", args, vec![])], &[id])?;
        client.wait(&[id]).await?;
        let holder = client.who_has(&[id]).await?[0].1[0].worker;
        let to = *workers
            .iter()
            .find(|w| **w != holder)
            .ok_or_else(|| Error::runtime("needs two workers"))?;
        let started = Instant::now();
        client.replicate(&[id], to).await?;
        let gb_s = bytes as f64 / started.elapsed().as_secs_f64() / 1e9;
        client.release(&[id])?;
        Ok::<(f64, u64), Error>((gb_s, to))
    };
    let (cold, first) = move_once().await?;
    let mut received = vec![first];
    for _ in 0..8 {
        if received.len() == workers.len() {
            break;
        }
        let (_, to) = move_once().await?;
        if !received.contains(&to) {
            received.push(to);
        }
    }
    let mut warm = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..3 {
        warm.push(move_once().await?.0);
        tcp.push(tcp_floor(bytes).await?);
    }
    Ok(Transfer {
        cold,
        warm: median(warm),
        tcp: median(tcp),
    })
}

struct Transfer {
    cold: f64,
    warm: f64,
    tcp: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn tcp_floor(bytes: u64) -> Result<f64> {
    tokio::task::spawn_blocking(move || tcp_copy(bytes as usize))
        .await
        .map_err(|e| Error::runtime(e.to_string()))?
        .map_err(Error::io("copying over loopback"))
}

/// The best plain copy this machine does: one loopback socket, a sending and a receiving
/// thread with blocking calls, both buffers huge-page backed (as the workers' are) and
/// touched before the clock starts.
fn tcp_copy(len: usize) -> std::io::Result<f64> {
    use rdask::protocol::hugebuf::HugeBuf;
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut data = HugeBuf::new(len)?;
    data.as_mut_slice().fill(7);
    let mut buf = HugeBuf::new(len)?;
    buf.as_mut_slice().fill(1);
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut sock, _) = listener.accept()?;
        let mut go = [0u8; 1];
        sock.read_exact(&mut go)?;
        sock.write_all(data.as_mut_slice())
    });
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let started = Instant::now();
    sock.write_all(&[1])?;
    sock.read_exact(buf.as_mut_slice())?;
    let gb_s = len as f64 / started.elapsed().as_secs_f64() / 1e9;
    sender
        .join()
        .map_err(|_| std::io::Error::other("the sending thread panicked"))??;
    Ok(gb_s)
}

/// A fresh worker's resident memory when idle, and the time from spawning its process to its
/// registration with the scheduler (the median of 5 starts).
async fn worker_footprint(opts: &LocalClusterOptions) -> Result<(f64, f64)> {
    let mut starts = Vec::new();
    let mut rss = 0.0;
    for _ in 0..5 {
        let one = LocalClusterOptions {
            workers: 0,
            ..opts.clone()
        };
        let cluster = LocalCluster::start(one).await?;
        let client = cluster.client().await?;
        let program = rdask::local::worker_program(None)?;
        let started = Instant::now();
        let mut child = std::process::Command::new(program)
            .args(["worker", cluster.address(), "--no-nanny", "--nthreads", "1"])
            .env(rdask::protocol::SECRET_ENV, cluster.secret.to_hex())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::runtime(format!("starting a worker: {e}")))?;
        while client.status().await?.workers.is_empty() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return Err(Error::runtime("a worker did not register within 30 s"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        starts.push(started.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = rdask::sys::rss_of(&child.id().to_string()) as f64 / 1e6;
        client.shutdown()?;
        let _ = child.wait();
        cluster.close().await;
    }
    starts.sort_by(f64::total_cmp);
    Ok((rss, starts[starts.len() / 2]))
}
