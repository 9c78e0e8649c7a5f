//! `demo`: the README's first command. Starts the embedded local cluster and runs the classic
//! examples of the runtime on it, checking every result against a direct computation.

use std::time::{Duration, Instant};

use clap::Args;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::graph::{TaskId, TaskSpec};
use crate::kernels::command::{CommandResult, CommandSpec};
use crate::local::{LocalCluster, LocalClusterOptions};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Worker processes [default: one per core]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Leaves of the tree reduction
    #[arg(long, default_value_t = 200_000)]
    pub leaves: u64,
}

struct Outcome {
    name: &'static str,
    detail: String,
    seconds: f64,
}

pub fn demo(a: DemoArgs) -> Result<i32> {
    super::runtime::runtime()?.block_on(async {
        let workers = a
            .workers
            .unwrap_or_else(|| LocalClusterOptions::default().workers)
            .max(2);
        let started = Instant::now();
        let opts = LocalClusterOptions {
            workers,
            threads_per_worker: 1,
            ..LocalClusterOptions::default()
        };
        let cluster = LocalCluster::start(opts).await?;
        let client = cluster.client().await?;
        println!(
            "local cluster: scheduler {} + {workers} worker processes, up in {:.0} ms",
            cluster.address(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let outcomes = vec![
            tree_reduction(&client, a.leaves).await?,
            programs_as_tasks(&client).await?,
            peer_to_peer(&client).await?,
            lost_worker(&cluster, &client).await?,
        ];
        cluster.close().await;
        println!();
        for o in &outcomes {
            println!("  ok  {:<28} {:>8.3} s  {}", o.name, o.seconds, o.detail);
        }
        println!("\nevery result matched its direct computation");
        Ok(0)
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::runtime(format!("demo check failed: {}", what())))
    }
}

fn as_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// sum(0..n) as a binary tree of `sum-u64` tasks.
async fn tree_reduction(client: &Client, leaves: u64) -> Result<Outcome> {
    let mut tasks = Vec::with_capacity(2 * leaves as usize);
    let leaf_ids: Vec<TaskId> = (0..leaves)
        .map(|i| {
            let id = client.new_key();
            tasks.push(TaskSpec::new(
                id,
                "sum-u64",
                i.to_le_bytes().to_vec(),
                vec![],
            ));
            id
        })
        .collect();
    let (inner, root) = crate::graph::reduction_tree(leaf_ids, 2, "sum-u64", || client.new_key());
    tasks.extend(inner);
    let n = tasks.len();
    let started = Instant::now();
    let out = client.compute(tasks, &[root]).await?;
    let seconds = started.elapsed().as_secs_f64();
    let want = leaves * (leaves - 1) / 2;
    check(as_u64(&out[0]) == want, || {
        format!("tree sum {} != {want}", as_u64(&out[0]))
    })?;
    Ok(Outcome {
        name: "tree reduction",
        detail: format!(
            "sum(0..{leaves}) = {want}; {n} tasks, {:.0} tasks/s",
            n as f64 / seconds
        ),
        seconds,
    })
}

/// 200 shell commands as tasks; the sum of their outputs.
async fn programs_as_tasks(client: &Client) -> Result<Outcome> {
    let n = 200u64;
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|i| {
            let mut spec = CommandSpec::new(["sh", "-c", "echo $((I * I))"]);
            spec.env.push(("I".into(), i.to_string()));
            TaskSpec::new(client.new_key(), "command", spec.encode(), vec![])
        })
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let started = Instant::now();
    let out = client.compute(tasks, &ids).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut total = 0u64;
    for r in &out {
        let r = CommandResult::decode(r).map_err(Error::runtime)?;
        check(r.code == Some(0), || {
            format!("a command exited {:?}", r.code)
        })?;
        total += String::from_utf8_lossy(&r.stdout)
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::runtime(e.to_string()))?;
    }
    let want: u64 = (0..n).map(|i| i * i).sum();
    check(total == want, || {
        format!("sum of squares {total} != {want}")
    })?;
    Ok(Outcome {
        name: "programs as tasks",
        detail: format!("{n} `sh -c` tasks, sum of squares {want}"),
        seconds,
    })
}

/// Chunks made on different workers are joined on one: they travel worker to worker, and the
/// scheduler sees only control messages.
async fn peer_to_peer(client: &Client) -> Result<Outcome> {
    const MIB: u64 = 1 << 20;
    let parts: Vec<TaskSpec> = (0..8u8)
        .map(|i| {
            let mut args = (32 * MIB).to_le_bytes().to_vec();
            args.push(i);
            TaskSpec::new(client.new_key(), "bytes", args, vec![])
        })
        .collect();
    let ids: Vec<TaskId> = parts.iter().map(|t| t.id).collect();
    let joined = client.new_key();
    let mut tasks = parts;
    tasks.push(TaskSpec::new(joined, "concat", vec![], ids));
    let before = client.status().await?;
    let started = Instant::now();
    let out = client.compute(tasks, &[joined]).await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = client.status().await?;
    check(out[0].len() as u64 == 256 * MIB, || {
        "the joined result has the wrong size".into()
    })?;
    for (i, chunk) in out[0].chunks((32 * MIB) as usize).enumerate() {
        check(chunk.iter().all(|b| *b == i as u8), || {
            format!("chunk {i} arrived wrong")
        })?;
    }
    let control =
        (after.bytes_received + after.bytes_sent) - (before.bytes_received + before.bytes_sent);
    Ok(Outcome {
        name: "peer-to-peer data",
        detail: format!(
            "256 MiB joined from 8 chunks; the scheduler carried {:.1} KiB of control messages",
            control as f64 / 1024.0
        ),
        seconds,
    })
}

/// kill -9 of a worker in the middle of a graph; its work is recomputed.
async fn lost_worker(cluster: &LocalCluster, client: &Client) -> Result<Outcome> {
    let leaves = 200u64;
    let mut tasks = Vec::new();
    let leaf_ids: Vec<TaskId> = (0..leaves)
        .map(|i| {
            let id = client.new_key();
            let mut args = i.to_le_bytes().to_vec();
            args.extend(5_000u64.to_le_bytes()); // 5 ms of work
            tasks.push(TaskSpec::new(id, "sum-u64", args, vec![]));
            id
        })
        .collect();
    let (inner, root) = crate::graph::reduction_tree(leaf_ids, 4, "sum-u64", || client.new_key());
    tasks.extend(inner);
    let started = Instant::now();
    client.submit(tasks, &[root])?;
    // Progress counts every task this client finished; wait for a third of these leaves.
    let mut progress = client.progress();
    let target = *progress.borrow() + leaves / 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    while *progress.borrow() < target && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()).await;
    }
    let victim = *cluster.worker_pids().last().expect("workers");
    // SAFETY: kill(2) on a worker process this demo started.
    unsafe {
        libc::kill(victim as libc::pid_t, libc::SIGKILL);
    }
    let out = client.gather(&[root]).await?;
    client.release(&[root])?;
    let seconds = started.elapsed().as_secs_f64();
    let want = leaves * (leaves - 1) / 2;
    check(as_u64(&out[0]) == want, || {
        format!("sum after a lost worker {} != {want}", as_u64(&out[0]))
    })?;
    Ok(Outcome {
        name: "surviving a lost worker",
        detail: format!(
            "kill -9 of worker pid {victim} mid-graph; its work recomputed, sum {want}"
        ),
        seconds,
    })
}
