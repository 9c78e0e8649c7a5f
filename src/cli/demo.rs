//! `demo`: the README's first command. On the embedded local cluster: writes a sample HDF5
//! dataset larger than the workers' memory, runs the classic dask.array examples on it, checks
//! every result against a direct single-process computation, and prints a summary.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ndarray::{s, Array2, ArrayD, Axis, IxDyn};

use rdask::array::block::{BinOp, ReduceOp};
use rdask::array::{self, Array, Data};
use rdask::error::{Error, Result};
use rdask::local::{LocalCluster, LocalClusterOptions};
use rdask::units::ByteSize;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  rdask-jobqueue demo --size 8192 --dir /tmp/rdask-demo")]
pub struct DemoArgs {
    /// Worker processes [default: one per core, at least 2]
    #[arg(long)]
    pub workers: Option<usize>,
    /// The sample dataset is SIZE x SIZE float64 (12288: 1.1 GiB)
    #[arg(long, default_value_t = 12288)]
    pub size: usize,
    /// Chunk edge (chunks are CHUNK x CHUNK)
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
    /// Memory limit per worker; the default keeps the dataset larger than all workers' memory
    #[arg(long, default_value = "512MiB")]
    pub memory_limit: String,
    /// Where the HDF5 files go [default: a new temporary directory, kept for you to inspect]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Edge of the slice used for the matrix product
    #[arg(long, default_value_t = 2048)]
    pub dot_size: usize,
}

struct Step {
    name: String,
    seconds: f64,
    bytes: f64,
    check: String,
}

pub fn demo(a: DemoArgs) -> Result<i32> {
    if a.size == 0 || a.chunk == 0 || a.dot_size == 0 {
        return Err(Error::invalid(
            "--size, --chunk and --dot-size must be at least 1",
        ));
    }
    let limit = a
        .memory_limit
        .parse::<ByteSize>()
        .map_err(|e| Error::invalid(format!("--memory-limit: {}", e.0)))?
        .bytes();
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(Error::io("creating the demo directory"))?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("rdask-demo-")
            .tempdir()
            .map_err(Error::io("creating a temporary directory"))?
            .keep(),
    };
    let input = dir.join("sample.h5");
    let output = dir.join("result.h5");
    let (input_s, output_s) = (input.display().to_string(), output.display().to_string());
    let workers = a
        .workers
        .unwrap_or_else(|| LocalClusterOptions::default().workers)
        .max(2);
    rdask::rt::runtime()?.block_on(async {
        let started = Instant::now();
        let cluster = LocalCluster::start(LocalClusterOptions {
            workers,
            memory_limit: limit,
            ..LocalClusterOptions::default()
        })
        .await?;
        let client = cluster.client().await?;
        let n = a.size;
        let nbytes = (n * n * 8) as f64;
        println!(
            "local cluster: {workers} workers, {} memory limit each, up in {:.0} ms",
            ByteSize(limit),
            started.elapsed().as_secs_f64() * 1e3
        );
        println!(
            "sample: {input_s}:/x, {n} x {n} float64 ({}), chunks {c} x {c}",
            ByteSize(nbytes as u64),
            c = a.chunk
        );
        let mut steps = Vec::new();
        let chunks = [a.chunk, a.chunk];
        let err = |e: String| Error::invalid(e);

        let t = Instant::now();
        let random = Array::random(&[n, n], 1, Some(&chunks)).map_err(err)?;
        array::store(&client, &random, &input_s, "/x", true).await?;
        steps.push(Step {
            name: "random((n, n), seed=1) -> sample.h5:/x".into(),
            seconds: t.elapsed().as_secs_f64(),
            bytes: nbytes,
            check: "read back below".into(),
        });

        let x = Array::from_hdf5(&input_s, "/x", None).map_err(err)?;
        let direct = Direct::read(&input_s, a.chunk)?;

        let t = Instant::now();
        let total = scalar(
            &array::compute(
                &client,
                &x.reduce(ReduceOp::Sum, None, false, 0.0).map_err(err)?,
            )
            .await?,
        );
        let secs = t.elapsed().as_secs_f64();
        let expect = direct.sum;
        close(total, expect, 1e-9, "x.sum()")?;
        steps.push(Step {
            name: "x.sum()".into(),
            seconds: secs,
            bytes: nbytes,
            check: format!("{total:.6} = direct {expect:.6}"),
        });

        let t = Instant::now();
        let row_means = array::compute(
            &client,
            &x.reduce(ReduceOp::Mean, Some(&[1]), false, 0.0)
                .map_err(err)?,
        )
        .await?
        .to_f64();
        let secs = t.elapsed().as_secs_f64();
        let worst = max_diff(&row_means, &direct.row_means);
        close(worst, 0.0, 1e-12, "x.mean(axis=1)")?;
        steps.push(Step {
            name: "x.mean(axis=1)".into(),
            seconds: secs,
            bytes: nbytes,
            check: format!("{} values, max |diff| {worst:.1e}", row_means.len()),
        });

        let t = Instant::now();
        let col_mean = x
            .reduce(ReduceOp::Mean, Some(&[0]), false, 0.0)
            .map_err(err)?;
        let expr = x
            .binary(BinOp::Add, &x.transpose(None).map_err(err)?)
            .and_then(|s| s.binary(BinOp::Sub, &col_mean))
            .map_err(err)?;
        array::store(&client, &expr, &output_s, "/centred", true).await?;
        let secs = t.elapsed().as_secs_f64();
        let checked = direct.check_centred(&output_s, a.chunk)?;
        steps.push(Step {
            name: "(x + x.T) - x.mean(axis=0) -> result.h5:/centred".into(),
            seconds: secs,
            bytes: 3.0 * nbytes,
            check: checked,
        });

        let d = a.dot_size.min(n);
        let t = Instant::now();
        let sl = x
            .slice(&[
                array::lazy::Select::Range(array::block::Dim::range(0, d as u64)),
                array::lazy::Select::Range(array::block::Dim::range(0, d as u64)),
            ])
            .map_err(err)?;
        let rhs = sl
            .transpose(None)
            .map_err(err)?
            .with_scalar(BinOp::Add, array::Scalar::Int(1), false)
            .map_err(err)?;
        let product = array::compute(&client, &sl.dot(&rhs).map_err(err)?)
            .await?
            .to_f64();
        let secs = t.elapsed().as_secs_f64();
        let m = direct.corner(&input_s, d)?;
        let reference = m.dot(&(m.t().mapv(|v| v + 1.0)));
        let worst = max_diff(&product, &reference.into_dyn());
        close(worst, 0.0, 1e-9 * d as f64, "dot")?;
        steps.push(Step {
            name: format!("y.dot(y.T + 1), y = x[:{d}, :{d}]"),
            seconds: secs,
            bytes: 2.0 * (d * d * d) as f64,
            check: format!("{d} x {d} result, max |diff| {worst:.1e}"),
        });

        let peaks: Vec<String> = cluster
            .worker_pids()
            .iter()
            .map(|p| {
                format!(
                    "{:.0} MiB",
                    rdask::sys::peak_rss_of(&p.to_string()) as f64 / 1048576.0
                )
            })
            .collect();
        cluster.close().await;
        println!();
        for s in &steps {
            let rate = if s.name.contains("dot") {
                format!("{:>6.1} GFLOP/s", s.bytes / s.seconds / 1e9)
            } else {
                format!("{:>6.2} GB/s   ", s.bytes / s.seconds / 1e9)
            };
            println!(
                "  ok  {:<52} {:>7.2} s {rate}  {}",
                s.name, s.seconds, s.check
            );
        }
        println!(
            "\npeak memory per worker: {} (limit {})",
            peaks.join(", "),
            ByteSize(limit)
        );
        println!("files: {input_s}, {output_s}");
        println!("every result matched its direct computation");
        Ok(0)
    })
}

fn scalar(d: &Data) -> f64 {
    d.to_f64().iter().next().copied().unwrap_or(f64::NAN)
}

fn close(got: f64, want: f64, rtol: f64, what: &str) -> Result<()> {
    if (got - want).abs() <= rtol * want.abs().max(1.0) {
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "demo check failed: {what} = {got}, direct computation {want}"
        )))
    }
}

fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    if a.shape() != b.shape() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The same results computed directly: one process reading the file block row by block row.
struct Direct {
    sum: f64,
    row_means: ArrayD<f64>,
    col_means: Vec<f64>,
    n: usize,
}

fn open(file: &str) -> Result<hdf5::Dataset> {
    hdf5::File::open(file)
        .and_then(|f| f.dataset("/x"))
        .map_err(|e| Error::runtime(format!("{file}: {e}")))
}

fn h5(e: hdf5::Error) -> Error {
    Error::runtime(e.to_string())
}

impl Direct {
    fn read(file: &str, rows: usize) -> Result<Direct> {
        let ds = open(file)?;
        let n = ds.shape()[0];
        let mut sum = 0.0;
        let mut row_means = Vec::with_capacity(n);
        let mut col_sums = vec![0.0; n];
        for start in (0..n).step_by(rows) {
            let end = (start + rows).min(n);
            let block: Array2<f64> = ds.read_slice_2d(s![start..end, ..]).map_err(h5)?;
            for row in block.axis_iter(Axis(0)) {
                let r: f64 = row.sum();
                sum += r;
                row_means.push(r / n as f64);
                for (c, v) in col_sums.iter_mut().zip(row) {
                    *c += v;
                }
            }
        }
        Ok(Direct {
            sum,
            row_means: ArrayD::from_shape_vec(IxDyn(&[n]), row_means).expect("shape"),
            col_means: col_sums.into_iter().map(|c| c / n as f64).collect(),
            n,
        })
    }

    fn corner(&self, file: &str, d: usize) -> Result<Array2<f64>> {
        open(file)?.read_slice_2d(s![..d, ..d]).map_err(h5)
    }

    /// Compares sampled blocks of the stored result (the diagonal and one off-diagonal block
    /// row) with x[i, j] + x[j, i] - colmean[j] computed here.
    fn check_centred(&self, out: &str, chunk: usize) -> Result<String> {
        let x = open(out.replace("result.h5", "sample.h5").as_str())?;
        let got = hdf5::File::open(out)
            .and_then(|f| f.dataset("/centred"))
            .map_err(h5)?;
        let n = self.n;
        let mut worst: f64 = 0.0;
        let mut checked = 0usize;
        for start in (0..n).step_by(chunk.max(1) * 3) {
            let end = (start + chunk).min(n);
            let a: Array2<f64> = x.read_slice_2d(s![start..end, ..]).map_err(h5)?;
            let b: Array2<f64> = x.read_slice_2d(s![.., start..end]).map_err(h5)?;
            let r: Array2<f64> = got.read_slice_2d(s![start..end, ..]).map_err(h5)?;
            for ((i, j), v) in r.indexed_iter() {
                let want = a[[i, j]] + b[[j, i]] - self.col_means[j];
                worst = worst.max((v - want).abs());
                checked += 1;
            }
        }
        close(worst, 0.0, 1e-12, "(x + x.T) - x.mean(axis=0)")?;
        Ok(format!(
            "{checked} values read back, max |diff| {worst:.1e}"
        ))
    }
}
