//! `bench array`: the array benchmark — four expressions over a float64 HDF5 dataset
//! on a local cluster, each next to the physical floor (one process reading the file chunk by
//! chunk and summing). bench/run.sh runs dask.array on the same file beside it.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use rdask::array::block::{BinOp, Dim, ReduceOp};
use rdask::array::lazy::Select;
use rdask::array::{self, Array};
use rdask::error::{Error, Result};
use rdask::local::{LocalCluster, LocalClusterOptions};

#[derive(Args, Debug)]
pub struct ArrayBenchArgs {
    /// The dataset file (/x inside); created when missing (random values, seed 1)
    #[arg(long, default_value = "/tmp/rdask-bench/x.h5")]
    pub file: PathBuf,
    /// The dataset is SIZE x SIZE float64 (16384: 2 GiB)
    #[arg(long, default_value_t = 16384)]
    pub size: usize,
    /// Chunk edge
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
    /// Edge of the slice for the matrix product
    #[arg(long, default_value_t = 8192)]
    pub dot: usize,
    /// Worker processes (one thread each)
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Timed runs per expression (the median is reported), after one warm-up run
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
struct Report {
    shape: [usize; 2],
    chunk: usize,
    workers: usize,
    gib: f64,
    /// One process reading every chunk and summing it, seconds (median).
    floor_read_sum_s: f64,
    mean0_s: f64,
    sum_s: f64,
    centred_s: f64,
    dot: usize,
    dot_s: f64,
    dot_gflop_s: f64,
    worker_peak_rss_mb: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The floor: read each chunk of /x in order into memory and sum it, in this one process.
fn floor(file: &str, chunk: usize) -> Result<f64> {
    let started = Instant::now();
    let f = hdf5::File::with_options()
        .with_fapl(|p| p.chunk_cache(0, 0, 1.0))
        .open(file)
        .map_err(|e| Error::runtime(format!("{file}: {e}")))?;
    let ds = f.dataset("/x").map_err(|e| Error::runtime(e.to_string()))?;
    let shape = ds.shape();
    let mut total = 0.0;
    for r in (0..shape[0]).step_by(chunk) {
        for c in (0..shape[1]).step_by(chunk) {
            let block: ndarray::Array2<f64> = ds
                .read_slice_2d(ndarray::s![
                    r..(r + chunk).min(shape[0]),
                    c..(c + chunk).min(shape[1])
                ])
                .map_err(|e| Error::runtime(e.to_string()))?;
            total += block.sum();
        }
    }
    std::hint::black_box(total);
    Ok(started.elapsed().as_secs_f64())
}

pub fn bench_array(a: ArrayBenchArgs) -> Result<i32> {
    let file = a.file.display().to_string();
    let err = |e: String| Error::runtime(e);
    rdask::rt::runtime()?.block_on(async {
        let cluster = LocalCluster::start(LocalClusterOptions {
            workers: a.workers,
            threads_per_worker: 1,
            ..LocalClusterOptions::default()
        })
        .await?;
        let client = cluster.client().await?;
        let log = |s: String| {
            if a.json {
                eprintln!("{s}");
            } else {
                println!("{s}");
            }
        };
        if !a.file.exists() {
            if let Some(dir) = a.file.parent() {
                std::fs::create_dir_all(dir).map_err(Error::io("creating the bench directory"))?;
            }
            let t = Instant::now();
            let x = Array::random(&[a.size, a.size], 1, Some(&[a.chunk, a.chunk])).map_err(err)?;
            array::store(&client, &x, &file, "/x", false).await?;
            log(format!(
                "wrote {file} in {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        let x = Array::from_hdf5(&file, "/x", Some(&[a.chunk, a.chunk])).map_err(err)?;
        let shape = [x.shape()[0], x.shape()[1]];
        let d = a.dot.min(shape[0]).min(shape[1]);
        let y = x
            .slice(&[
                Select::Range(Dim::range(0, d as u64)),
                Select::Range(Dim::range(0, d as u64)),
            ])
            .map_err(err)?;
        let cases: Vec<(&str, Array)> = vec![
            (
                "mean0",
                x.reduce(ReduceOp::Mean, Some(&[0]), false, 0.0)
                    .map_err(err)?,
            ),
            (
                "sum",
                x.reduce(ReduceOp::Sum, None, false, 0.0).map_err(err)?,
            ),
            (
                "centred",
                x.binary(BinOp::Add, &x.transpose(None).map_err(err)?)
                    .and_then(|s| {
                        s.binary(
                            BinOp::Sub,
                            &x.reduce(ReduceOp::Mean, Some(&[0]), false, 0.0)?,
                        )
                    })
                    .and_then(|s| s.reduce(ReduceOp::Sum, Some(&[1]), false, 0.0))
                    .map_err(err)?,
            ),
            ("dot", y.dot(&y.transpose(None).map_err(err)?).map_err(err)?),
        ];
        floor(&file, a.chunk)?;
        let floor_s = median(
            (0..a.repeat.max(1))
                .map(|_| floor(&file, a.chunk))
                .collect::<Result<_>>()?,
        );
        log(format!(
            "floor (one process reads and sums every chunk): {floor_s:.3} s"
        ));
        let mut times = Vec::new();
        for (name, expr) in &cases {
            array::compute(&client, expr).await?;
            let mut runs = Vec::new();
            for _ in 0..a.repeat.max(1) {
                let t = Instant::now();
                array::compute(&client, expr).await?;
                runs.push(t.elapsed().as_secs_f64());
            }
            let m = median(runs.clone());
            log(format!("rdask {name}: {m:.3} s (runs {runs:.3?})"));
            times.push(m);
        }
        let peaks = cluster
            .worker_pids()
            .iter()
            .map(|p| rdask::sys::peak_rss_of(&p.to_string()) as f64 / 1048576.0)
            .collect();
        cluster.close().await;
        let report = Report {
            shape,
            chunk: a.chunk,
            workers: a.workers,
            gib: (shape[0] * shape[1] * 8) as f64 / (1u64 << 30) as f64,
            floor_read_sum_s: floor_s,
            mean0_s: times[0],
            sum_s: times[1],
            centred_s: times[2],
            dot: d,
            dot_s: times[3],
            dot_gflop_s: 2.0 * (d as f64).powi(3) / times[3] / 1e9,
            worker_peak_rss_mb: peaks,
        };
        if a.json {
            println!(
                "{}",
                serde_json::to_string(&report).expect("a report serialises")
            );
        } else {
            println!("{report:#?}");
        }
        Ok(0)
    })
}
