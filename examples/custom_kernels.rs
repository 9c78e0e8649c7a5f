//! A Rust program with kernels of its own. The same binary is the driver and, started as
//! `custom_kernels worker ADDRESS ...`, a worker that knows its kernels (`run_with`).
//!
//!     cargo run --release --example custom_kernels
//!
//! On a batch system, point the job scripts at it: `--worker-command "/path/custom_kernels worker"`.

use rdask::graph::TaskSpec;
use rdask::kernels::Registry;
use rdask::{LocalCluster, LocalClusterOptions};

fn registry() -> Registry {
    let mut r = Registry::empty();
    // Counts the words of the text in its arguments.
    r.register("word-count", |args, _inputs| {
        let text = std::str::from_utf8(args).map_err(|e| format!("word-count: not UTF-8: {e}"))?;
        Ok((text.split_whitespace().count() as u64)
            .to_le_bytes()
            .to_vec()
            .into())
    });
    r
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        rdask::worker::run_with(registry());
    }
    let texts = [
        "the quick brown fox",
        "jumps over",
        "the lazy dog",
        "and runs away",
    ];
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let total = rt.block_on(async {
        let opts = LocalClusterOptions {
            workers: 2,
            worker_program: Some(std::env::current_exe().expect("this program")),
            ..LocalClusterOptions::default()
        };
        let cluster = LocalCluster::start(opts).await?;
        let client = cluster.client().await?;
        // One task per text, then the built-in sum-u64 adds the counts.
        let counts: Vec<TaskSpec> = texts
            .iter()
            .map(|t| {
                TaskSpec::new(
                    client.new_key(),
                    "word-count",
                    t.as_bytes().to_vec(),
                    vec![],
                )
            })
            .collect();
        let total = client.new_key();
        let deps = counts.iter().map(|t| t.id).collect();
        let mut tasks = counts;
        tasks.push(TaskSpec::new(total, "sum-u64", vec![], deps));
        let out = client.compute(tasks, &[total]).await?;
        cluster.close().await;
        Ok::<u64, rdask::Error>(u64::from_le_bytes(out[0][..8].try_into().expect("8 bytes")))
    });
    match total {
        Ok(n) => println!("{n} words"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
