//! `array EXPR`: a NumPy-style expression over HDF5 datasets, computed on the embedded local
//! cluster (or an existing scheduler), printed or stored to HDF5.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::array::eval::{self, Context};
use crate::array::hdf5io::parse_target;
use crate::array::plan::{self, Planned};
use crate::array::{format, Array};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::local::{LocalCluster, LocalClusterOptions};
use crate::protocol::Secret;
use crate::units::ByteSize;

/// Results larger than this are not printed: store them with --output.
pub const MAX_PRINT_BYTES: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue array 'x.mean(axis=0)' --input x=data.h5:/x\n  \
    rdask-jobqueue array '(x + x.T) - x.mean(axis=0)' --input x=data.h5:/x --output out.h5:/y\n  \
    rdask-jobqueue array 'random((20000, 20000), chunks=(1000, 1000), seed=1).std()'\n  \
    rdask-jobqueue array 'x.sum()' --input x=data.h5:/x --local 4 --memory-limit 2GiB --format json\n  \
    rdask-jobqueue array 'x.sum()' --input x=data.h5:/x --cluster default   # on `up`'s cluster\n\n\
    Operations: + - * / ** @, unary -, sqrt exp log abs sin cos, sum mean min max var std\n\
    (axis=, keepdims=, ddof=), .T, transpose, dot, astype, rechunk, x[a:b:s, i, ...],\n\
    ones zeros full arange random (chunks=, seed=, dtype=). See docs/arrays.md.")]
pub struct ArrayArgs {
    /// The expression, in NumPy syntax
    pub expr: String,
    /// An input array: NAME=FILE.h5:/path/to/dataset (repeatable)
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.h5:/DATASET")]
    pub inputs: Vec<String>,
    /// Store the result here instead of printing it
    #[arg(long, short = 'o', value_name = "FILE.h5:/DATASET")]
    pub output: Option<String>,
    /// Replace an existing output dataset
    #[arg(long)]
    pub overwrite: bool,
    /// Chunk shape for the inputs and for generators without chunks= (e.g. 1024,1024)
    #[arg(long, value_delimiter = ',', value_name = "C1,C2,..")]
    pub chunks: Option<Vec<usize>>,
    /// Worker processes of the embedded local cluster [default: one per core]
    #[arg(long, value_name = "N")]
    pub local: Option<usize>,
    /// Threads per worker
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Memory limit per worker (e.g. 2GiB) [default: this machine's memory / workers]
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Run on an existing scheduler instead, given by its scheduler file (JSON with address
    /// and secret, as `scheduler --scheduler-file` and `mpi` write it)
    #[arg(long, value_name = "FILE", env = "RDASK_SCHEDULER_FILE", conflicts_with_all = ["local", "memory_limit"])]
    pub scheduler_file: Option<PathBuf>,
    /// Run on the named cluster that `rdask-jobqueue up --name NAME` started
    #[arg(long, value_name = "NAME", conflicts_with_all = ["local", "memory_limit", "scheduler_file"])]
    pub cluster: Option<String>,
    /// No progress output, only the result
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// How to print the result
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Where the computation runs.
enum Runner {
    Local(LocalCluster),
    Remote,
}

pub fn array(a: ArrayArgs) -> Result<i32> {
    let (expr, output) = prepare(&a)?;
    super::runtime::runtime()?.block_on(async move {
        let (runner, client) = connect(&a).await?;
        let outcome = run(&a, &client, &expr, output.as_ref()).await;
        if let Runner::Local(cluster) = runner {
            cluster.close().await;
        }
        outcome
    })
}

/// Everything that can be checked before a cluster starts: inputs, expression, output.
pub fn prepare(a: &ArrayArgs) -> Result<(Array, Option<(String, String)>)> {
    let mut inputs = HashMap::new();
    for spec in &a.inputs {
        let (name, target) = spec.split_once('=').ok_or_else(|| {
            Error::invalid(format!("--input '{spec}': expected NAME=FILE.h5:/dataset"))
        })?;
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(Error::invalid(format!(
                "--input '{spec}': '{name}' is not a valid name (letters, digits, _)"
            )));
        }
        let (file, dataset) =
            parse_target(target).map_err(|e| Error::invalid(format!("--input {e}")))?;
        let chunks = a.chunks.as_deref();
        let x = Array::from_hdf5(&file, &dataset, chunks).map_err(Error::invalid)?;
        inputs.insert(name.to_string(), x);
    }
    let ctx = Context {
        inputs,
        default_chunks: a.chunks.clone(),
    };
    let expr = eval::evaluate(&a.expr, &ctx).map_err(Error::invalid)?;
    let output = match &a.output {
        Some(t) => Some(parse_target(t).map_err(|e| Error::invalid(format!("--output {e}")))?),
        None => {
            if expr.nbytes() > MAX_PRINT_BYTES {
                return Err(Error::invalid(format!(
                    "the result is {} ({:?} {}), too large to print; store it with --output FILE.h5:/dataset",
                    ByteSize(expr.nbytes() as u64).human(),
                    expr.shape(),
                    expr.dtype()
                )));
            }
            None
        }
    };
    if let Some((file, dataset)) = &output {
        // Refuse an existing output before anything runs (plan_store checks again).
        if std::path::Path::new(file).exists() && !a.overwrite {
            let exists = hdf5::File::open(file)
                .map(|f| f.link_exists(dataset))
                .unwrap_or(false);
            if exists {
                return Err(Error::invalid(format!(
                    "{file}:{dataset} already exists; pass --overwrite to replace it"
                )));
            }
        }
    }
    Ok((expr, output))
}

async fn connect(a: &ArrayArgs) -> Result<(Runner, Client)> {
    if let Some(name) = &a.cluster {
        return Ok((Runner::Remote, Client::connect_named(name).await?));
    }
    if let Some(path) = &a.scheduler_file {
        let (address, secret) = read_scheduler_file(path)?;
        let client = Client::connect(&address, &secret).await?;
        return Ok((Runner::Remote, client));
    }
    let workers = a
        .local
        .unwrap_or_else(|| LocalClusterOptions::default().workers);
    if workers == 0 {
        return Err(Error::invalid("--local must be at least 1"));
    }
    if a.threads == 0 {
        return Err(Error::invalid("--threads must be at least 1"));
    }
    let memory_limit = match &a.memory_limit {
        Some(m) => m
            .parse::<ByteSize>()
            .map_err(|e| Error::invalid(format!("--memory-limit: {}", e.0)))?
            .bytes(),
        None => crate::sys::total_memory() / workers as u64,
    };
    let cluster = LocalCluster::start(LocalClusterOptions {
        workers,
        threads_per_worker: a.threads,
        memory_limit,
        ..LocalClusterOptions::default()
    })
    .await?;
    let client = cluster.client().await?;
    Ok((Runner::Local(cluster), client))
}

/// The scheduler file `scheduler --scheduler-file` writes: `{"address": .., "secret": ..}`.
pub fn read_scheduler_file(path: &std::path::Path) -> Result<(String, Secret)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not a scheduler file: {e}", path.display())))?;
    let address = v["address"].as_str().ok_or_else(|| {
        Error::invalid(format!(
            "{}: no \"address\" in the scheduler file",
            path.display()
        ))
    })?;
    let secret = v["secret"].as_str().ok_or_else(|| {
        Error::invalid(format!(
            "{}: no \"secret\" in the scheduler file",
            path.display()
        ))
    })?;
    let secret =
        Secret::from_hex(secret).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    Ok((address.to_string(), secret))
}

async fn run(
    a: &ArrayArgs,
    client: &Client,
    expr: &Array,
    output: Option<&(String, String)>,
) -> Result<i32> {
    let started = Instant::now();
    let planned: Planned = match output {
        Some((file, dataset)) => {
            plan::plan_store(expr, file, dataset, a.overwrite, || client.new_key())?
        }
        None => plan::plan_compute(expr, || client.new_key()),
    };
    let total = planned.task_count() as u64;
    let reads = planned.read_bytes;
    let progress = Progress::start(client, total, reads, a.quiet);
    let result = plan::run(client, planned).await;
    progress.finish(result.is_ok()).await;
    let value = result?;
    let seconds = started.elapsed().as_secs_f64();
    match (value, output) {
        (Some(v), _) => match a.format {
            OutputFormat::Text => println!("{}", format::text(&v)),
            OutputFormat::Json => println!("{}", format::json(&v)),
        },
        (None, Some((file, dataset))) => {
            let line = format!(
                "stored {:?} {} to {file}:{dataset} in {seconds:.2} s",
                expr.shape(),
                expr.dtype()
            );
            match a.format {
                OutputFormat::Text => println!("{line}"),
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({"stored": format!("{file}:{dataset}"), "shape": expr.shape(),
                        "dtype": expr.dtype().name(), "seconds": seconds})
                ),
            }
        }
        (None, None) => unreachable!("a compute returns a value"),
    }
    Ok(0)
}

/// Progress: a bar on a terminal; a line every few seconds otherwise; nothing with --quiet.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Progress {
    fn start(client: &Client, total: u64, read_bytes: u64, quiet: bool) -> Progress {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        if quiet {
            return Progress { task: None, stop };
        }
        let mut done = client.progress();
        let base = *done.borrow();
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} tasks  {msg}  {elapsed}",
                    )
                    .expect("a valid template"),
                );
                bar
            });
            let mut last_line = Instant::now();
            loop {
                let n = done.borrow().saturating_sub(base).min(total);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let read = read_bytes as f64 * n as f64 / total.max(1) as f64;
                let msg = format!(
                    "{:.0} tasks/s, ~{} read ({:.2} GB/s)",
                    n as f64 / secs,
                    ByteSize(read as u64).human(),
                    read / secs / 1e9
                );
                match &bar {
                    Some(b) => {
                        b.set_position(n);
                        b.set_message(msg);
                    }
                    None if last_line.elapsed() >= Duration::from_secs(5) => {
                        eprintln!("progress: {n}/{total} tasks, {msg}");
                        last_line = Instant::now();
                    }
                    None => {}
                }
                tokio::select! {
                    _ = done.changed() => {}
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Progress {
            task: Some(task),
            stop,
        }
    }

    async fn finish(self, _ok: bool) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}
