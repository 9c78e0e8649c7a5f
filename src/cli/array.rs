//! `array EXPR`: a NumPy-style expression over HDF5 datasets, computed on the embedded local
//! cluster (or an existing scheduler), printed or stored to HDF5.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use rdask::array::eval::{self, Context};
use rdask::array::hdf5io::{check_output, parse_target};
use rdask::array::plan::{self, Planned};
use rdask::array::{format, netcdf, Array};
use rdask::client::Client;
use rdask::cluster::control::{self, Reply, Request};
use rdask::cluster::{self, ClusterDir};
use rdask::error::{Error, Result};
use rdask::jobqueue::scaler::Target;
use rdask::local::{LocalCluster, LocalClusterOptions};
use rdask::units::ByteSize;

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
    rdask-jobqueue array 'x.sum()' --input x=data.h5:/x --cluster default   # on `up`'s cluster\n  \
    rdask-jobqueue array 'x.std()' --input x=data.h5:/x --report perf.html  # task stream, timings\n\n\
    Operations: + - * / ** @, unary -, sqrt exp log abs sin cos, sum mean min max var std\n\
    (axis=, keepdims=, ddof=), .T, transpose, dot, astype, rechunk, x[a:b:s, i, ...],\n\
    ones zeros full arange random (chunks=, seed=, dtype=). See docs/arrays.md.")]
pub struct ArrayArgs {
    /// The expression, in NumPy syntax (may start with `-`, as in `-x`)
    // A leading `-` is the expression's, not an option's: clap then takes the argument as the
    // expression unless every letter after the `-` is one of our short options (`-q`, `-i`,
    // `-o`), so real options keep working anywhere on the line.
    #[arg(allow_hyphen_values = true)]
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
    /// Run on the named cluster that `rdask-jobqueue up --name NAME` started [default:
    /// $RDASK_CLUSTER, unless --scheduler-file, --local or --memory-limit is given]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["local", "memory_limit", "scheduler_file"])]
    pub cluster: Option<String>,
    /// No progress output, only the result
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// How to print the result
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Write a self-contained HTML performance report here (task stream, time per kind of
    /// task, transfers, memory over time, the expression, timings); the embedded local
    /// cluster only
    #[arg(long, value_name = "FILE.html", conflicts_with_all = ["cluster", "scheduler_file"])]
    pub report: Option<PathBuf>,
}

/// Where the computation runs.
enum Runner {
    // Boxed: the cluster (with its dashboard) is large, `Remote` nothing.
    Local(Box<LocalCluster>),
    Remote,
}

/// The signals that end a run early (Ctrl-C; the batch system's SIGTERM at the walltime),
/// with the exit status a shell gives a process they kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// SIGINT and SIGTERM, caught for the whole run: killed by either, the process would leave
/// the temporary output file behind and its local workers running.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(Error::io("catching SIGINT"))?,
            term: signal(SignalKind::terminate()).map_err(Error::io("catching SIGTERM"))?,
        })
    }

    async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
        }
    }
}

pub fn array(a: ArrayArgs) -> Result<i32> {
    let (expr, output) = prepare(&a)?;
    rdask::rt::runtime()?.block_on(async move {
        let mut signals = Signals::install()?;
        let began = Instant::now();
        // A signal while the cluster starts drops the half-started cluster (its Drop stops
        // the workers already running).
        let (runner, client) = tokio::select! {
            r = connect(&a) => r?,
            stop = signals.recv() => return Ok(stop.exit_code()),
        };
        let connected = began.elapsed().as_secs_f64();
        let outcome = {
            let work = run(&a, &client, &expr, output.as_ref());
            let lost = async {
                match &runner {
                    Runner::Local(cluster) => cluster.lost().await,
                    Runner::Remote => std::future::pending().await,
                }
            };
            // Whichever ends first ends the run; dropping `work` drops its pending output,
            // which removes the temporary file (store tasks still running cannot recreate
            // it: see hdf5io::write_chunk).
            tokio::select! {
                r = work => r,
                why = lost => Err(Error::runtime(why)),
                stop = signals.recv() => {
                    let what = match &output {
                        Some((file, dataset)) => format!("; {file}:{dataset} was not written"),
                        None => String::new(),
                    };
                    eprintln!("stopped by {}{what}", stop.name());
                    Ok(stop.exit_code())
                }
            }
        };
        let outcome = match (&runner, outcome) {
            (Runner::Local(cluster), Err(e)) => Err(explain_local_failure(e, cluster, &expr)),
            (_, outcome) => outcome,
        };
        let computed = began.elapsed().as_secs_f64() - connected;
        if let (Runner::Local(cluster), Some(path)) = (&runner, &a.report) {
            let ok = outcome.as_ref().is_ok_and(|code| *code == 0);
            let timings = [
                ("start the local cluster", connected),
                ("compute", computed),
            ];
            let written = write_report(cluster, path, &a, &expr, &timings, ok).await;
            if let Err(e) = written {
                eprintln!("error: {e}");
            }
        }
        if let Runner::Local(cluster) = runner {
            (*cluster).close().await;
        }
        outcome
    })
}

/// `--report`'s file must be writable HTML: refused before anything runs (exit 2).
pub(super) fn check_report_path(path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "--report {}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::invalid(format!(
            "--report {}: is a directory; give a file name such as report.html",
            path.display()
        )));
    }
    Ok(())
}

/// The performance report of this run, written atomically (a reader never sees half).
async fn write_report(
    cluster: &LocalCluster,
    path: &std::path::Path,
    a: &ArrayArgs,
    expr: &Array,
    timings: &[(&str, f64)],
    ok: bool,
) -> Result<()> {
    // The last reports of finished tasks reach the dashboard's aggregate at its next fold.
    tokio::time::sleep(rdask::dashboard::DELTA_INTERVAL + Duration::from_millis(300)).await;
    let info = rdask::dashboard::report::RunInfo {
        title: format!("rdask-jobqueue array: {}", a.expr),
        expression: a.expr.clone(),
        timings: timings.iter().map(|(w, s)| (w.to_string(), *s)).collect(),
        notes: vec![
            format!(
                "result: {:?} {}{}",
                expr.shape(),
                expr.dtype(),
                if ok { "" } else { " (the run did not finish)" }
            ),
            format!(
                "local cluster: {} worker(s) x {} thread(s)",
                a.local
                    .unwrap_or_else(|| LocalClusterOptions::default().workers),
                a.threads
            ),
        ],
    };
    let html = cluster
        .report(&info)
        .ok_or_else(|| Error::runtime("the local cluster has no dashboard to report from"))?;
    rdask::files::write_atomic(path, html.as_bytes(), 0o644)?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// A failure on the local cluster whose workers passed their memory limit is most likely
/// that limit's fault: say so, with the numbers to change.
fn explain_local_failure(e: Error, cluster: &LocalCluster, expr: &Array) -> Error {
    let restarts = cluster.memory_restarts();
    if restarts == 0 || matches!(e, Error::Invalid(_)) {
        return e;
    }
    let (shape, dtype) = expr.largest_chunk();
    let bytes = shape.iter().product::<usize>() * dtype.size();
    Error::runtime(format!(
        "{e}\nlocal workers exited {restarts} times for passing their memory limit of {} \
         (--memory-limit, per worker): a task of this computation needs more than that. Its \
         largest chunk is {} ({shape:?} {}), and a task holds a few chunks at once; raise \
         --memory-limit, use fewer --local workers with more memory each, or smaller chunks \
         (--chunks, chunks=, or .rechunk(...))",
        ByteSize(cluster.memory_limit()).human(),
        ByteSize(bytes as u64).human(),
        dtype.name()
    ))
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
        if inputs.contains_key(name) {
            return Err(Error::invalid(format!(
                "--input '{spec}': the name '{name}' is given twice; give each input its own name"
            )));
        }
        let x = Array::from_hdf5(&file, &dataset, chunks).map_err(Error::invalid)?;
        // netCDF's _FillValue, missing_value, scale_factor and add_offset, as
        // netCDF4-python applies them (docs/arrays.md, "netCDF-4").
        let packing = netcdf::read(&file, &dataset).map_err(Error::invalid)?;
        let x = netcdf::apply(&x, &packing).map_err(Error::invalid)?;
        inputs.insert(name.to_string(), x);
    }
    let ctx = Context {
        inputs,
        default_chunks: a.chunks.clone(),
    };
    let expr = eval::evaluate(&a.expr, &ctx).map_err(Error::invalid)?;
    if let Some(path) = &a.report {
        check_report_path(path)?;
        // `$RDASK_CLUSTER` would send the run where this process sees no task stream.
        if cluster_name(a, std::env::var("RDASK_CLUSTER").ok()).is_some() {
            return Err(Error::invalid(
                "--report needs the embedded local cluster (its scheduler runs in this process);                  add --local N, or watch a named cluster live on its dashboard                  (`rdask-jobqueue status` prints the URL)",
            ));
        }
    }
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
        // Refuse an output that cannot be written before anything runs (PendingOutput::create
        // checks again when the run begins, commit once more before replacing a dataset).
        check_output(file, dataset, a.overwrite).map_err(Error::invalid)?;
    }
    Ok((expr, output))
}

/// The named cluster to run on: `--cluster`, else `$RDASK_CLUSTER` (the variable every
/// cluster command reads) unless a flag chose another place (`--scheduler-file`, `--local`,
/// `--memory-limit`).
fn cluster_name(a: &ArrayArgs, env: Option<String>) -> Option<String> {
    if a.cluster.is_some() {
        return a.cluster.clone();
    }
    if a.scheduler_file.is_some() || a.local.is_some() || a.memory_limit.is_some() {
        return None;
    }
    env.filter(|n| !n.is_empty())
}

/// Why a computation could never run on cluster `name`, judged from its status: no worker
/// and a target that wants none (`scale 0`, or adapting with a maximum of 0) — the graph
/// would wait forever.
fn cannot_run(name: &str, workers: usize, target: &Target) -> Option<String> {
    if workers > 0 {
        return None;
    }
    let flag = if name == cluster::DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {name}")
    };
    let target = match target {
        Target::Fixed { workers: 0 } => "a target of 0",
        Target::Adaptive { maximum: 0, .. } => "adapts to at most 0 workers",
        _ => return None,
    };
    Some(format!(
        "cluster {name} has no workers and {target}: run `rdask-jobqueue scale N{flag}` \
         or `rdask-jobqueue adapt --maximum N{flag}` first"
    ))
}

async fn connect(a: &ArrayArgs) -> Result<(Runner, Client)> {
    if let Some(name) = cluster_name(a, std::env::var("RDASK_CLUSTER").ok()) {
        let dir = ClusterDir::new(&name)?;
        dir.require_live()?;
        let reply = tokio::task::spawn_blocking(move || {
            control::request(&dir, &Request::Status, Duration::from_secs(30))
        })
        .await
        .map_err(|e| Error::runtime(format!("asking the cluster's status: {e}")))??;
        if let Reply::Status(status) = reply {
            if let Some(why) = cannot_run(&name, status.workers.len(), &status.target) {
                return Err(Error::invalid(why));
            }
        }
        if !a.quiet {
            if let Some(url) = rdask::cluster::dashboard_url(&name) {
                eprintln!("{}", rdask::dashboard::announce(&url));
            }
        }
        return Ok((Runner::Remote, rdask::cluster::connect_named(&name).await?));
    }
    if let Some(path) = &a.scheduler_file {
        let (address, secret) = rdask::protocol::SchedulerFile::load(path)?;
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
        None => rdask::sys::total_memory() / workers as u64,
    };
    let cluster = LocalCluster::start(LocalClusterOptions {
        workers,
        threads_per_worker: a.threads,
        memory_limit,
        record: a.report.is_some(),
        ..LocalClusterOptions::default()
    })
    .await?;
    if !a.quiet {
        if let Some(url) = cluster.dashboard_url() {
            eprintln!("{}", rdask::dashboard::announce(url));
        }
    }
    let client = cluster.client().await?;
    Ok((Runner::Local(Box::new(cluster)), client))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ArrayArgs,
    }

    fn args(argv: &[&str]) -> ArrayArgs {
        Cli::try_parse_from(std::iter::once("array").chain(argv.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn the_cluster_comes_from_the_flag_else_the_variable_unless_a_flag_chose_elsewhere() {
        let env = || Some("env".to_string());
        assert_eq!(cluster_name(&args(&["x"]), env()).as_deref(), Some("env"));
        assert_eq!(cluster_name(&args(&["x"]), Some(String::new())), None);
        assert_eq!(cluster_name(&args(&["x"]), None), None);
        let flag = args(&["x", "--cluster", "c"]);
        assert_eq!(cluster_name(&flag, env()).as_deref(), Some("c"));
        for other in [
            &["x", "--local", "2"][..],
            &["x", "--memory-limit", "1GiB"],
            &["x", "--scheduler-file", "s.json"],
        ] {
            assert_eq!(cluster_name(&args(other), env()), None, "{other:?}");
        }
    }

    #[test]
    fn a_cluster_that_can_never_have_a_worker_is_refused() {
        let fixed = |workers| Target::Fixed { workers };
        let adaptive = |minimum, maximum| Target::Adaptive {
            minimum,
            maximum,
            target_duration: 5.0,
            wait_count: 3,
        };
        let why = cannot_run("gpu", 0, &fixed(0)).unwrap();
        assert!(
            why.starts_with("cluster gpu has no workers and a target of 0: run `rdask-jobqueue scale N --name gpu`"),
            "{why}"
        );
        assert!(cannot_run("default", 0, &fixed(0))
            .unwrap()
            .contains("`rdask-jobqueue scale N`"));
        assert!(cannot_run("gpu", 0, &adaptive(0, 0)).is_some());
        // Workers are coming (a target above 0, or adapting up to some), or already there.
        assert_eq!(cannot_run("gpu", 0, &fixed(2)), None);
        assert_eq!(cannot_run("gpu", 0, &adaptive(0, 4)), None);
        assert_eq!(cannot_run("gpu", 1, &fixed(0)), None);
    }

    #[test]
    fn expressions_may_start_with_a_minus_and_short_options_still_parse() {
        let a = args(&["-x", "-i", "x=f.h5:/x", "-q"]);
        assert_eq!(a.expr, "-x");
        assert_eq!(a.inputs, vec!["x=f.h5:/x".to_string()]);
        assert!(a.quiet);
        let a = args(&["-q", "-2 * x.sum()", "-o", "o.h5:/y"]);
        assert_eq!(a.expr, "-2 * x.sum()");
        assert!(a.quiet);
        assert_eq!(a.output.as_deref(), Some("o.h5:/y"));
    }

    #[test]
    fn the_largest_chunk_is_found_anywhere_in_the_expression() {
        let ctx = Context::default();
        let a = eval::evaluate(
            "random((400, 300), chunks=(200, 100)).sum() + ones((10,), chunks=(5,))",
            &ctx,
        )
        .unwrap();
        assert_eq!(
            a.largest_chunk(),
            (vec![200, 100], rdask::array::DType::F64)
        );
    }
}
