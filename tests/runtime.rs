//! The runtime end to end: a scheduler in the test process and worker processes of the real
//! binary, over TCP on loopback.

mod common;

use std::time::Duration;

use rdask::graph::{TaskId, TaskSpec};
use rdask::kernels::command::{CommandResult, CommandSpec};
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
    let mut level: Vec<TaskId> = (0..leaves)
        .map(|i| {
            let id = client.new_key();
            tasks.push(TaskSpec::new(id, "sum-u64", u64_bytes(i), vec![]));
            id
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let id = client.new_key();
                tasks.push(TaskSpec::new(id, "sum-u64", vec![], pair.to_vec()));
                id
            })
            .collect();
    }
    (tasks, level[0])
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
