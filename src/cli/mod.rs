//! The command line: one file per command group. Commands parse their flags, call the
//! library, and print; errors travel up as [`rdask::Error`] and become exit codes in main.rs.

pub mod array;
pub mod bench;
pub mod bench_array;
pub mod bench_dashboard;
pub mod cluster;
pub mod demo;
pub mod info;
pub mod job_args;
pub mod jobs;
pub mod mpi;
pub mod runtime;
pub mod tasks;
pub mod watch;

use clap::{Parser, Subcommand};

use rdask::error::Result;

/// rdask-jobqueue: Dask's model in Rust for batch-scheduled HPC clusters.
#[derive(Parser, Debug)]
#[command(name = "rdask-jobqueue", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue up --system slurm --queue debug --cores 8 --processes 2 --memory 16GB --scale 4 --wait\n  \
    rdask-jobqueue array 'x.mean(axis=0)' --input x=data.h5:/x --cluster default\n  \
    rdask-jobqueue status && rdask-jobqueue adapt --minimum 0 --maximum 20 && rdask-jobqueue down\n  \
    rdask-jobqueue submit --array 1-1000 --wait -- ./simulate --seed {task}\n  \
    rdask-jobqueue job-script --system slurm --cores 8 --processes 4 --memory 28GB --walltime 00:02:00\n\n\
    Docs: README.md, docs/clusters.md, docs/tasks.md, docs/arrays.md, docs/mpi.md, docs/configuration.md")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a named cluster: a scheduler daemon that submits and holds worker jobs
    Up(Box<cluster::UpArgs>),
    /// Hold a cluster at K workers (or K jobs with --jobs)
    Scale(cluster::ScaleArgs),
    /// Scale a cluster with its queued work, between a minimum and a maximum
    Adapt(cluster::AdaptCommandArgs),
    /// A cluster's jobs, workers and tasks
    Status(cluster::StatusArgs),
    /// Stop a cluster: its workers, every job it submitted, its daemon
    Down(cluster::DownArgs),
    /// The clusters recorded under $RDASK_HOME
    List(cluster::ListArgs),
    /// A cluster's daemon log, or one of its jobs' output
    Logs(cluster::LogsArgs),
    /// The daemon `up` starts (not for direct use)
    #[command(hide = true)]
    ClusterDaemon(cluster::DaemonArgs),
    /// Print the worker job script exactly as it would be submitted
    JobScript(jobs::JobScriptArgs),
    /// Show the merged configuration and where each value came from
    #[command(subcommand)]
    Config(jobs::ConfigCommand),
    /// Talk to the batch system directly: submit one worker job, ask states, cancel
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Run a scheduler: workers and clients connect to it
    Scheduler(runtime::SchedulerArgs),
    /// Run a worker (what the job scripts start)
    Worker(runtime::WorkerArgs),
    /// Run a program over an array of inputs on a cluster: a submission of tasks
    Submit(Box<tasks::SubmitArgs>),
    /// The submissions of a cluster, or the tasks of one (state, exit code, worker, stderr)
    Tasks(tasks::TasksArgs),
    /// Wait until every task of a submission ended (exit 1 if any did not succeed)
    Wait(tasks::WaitArgs),
    /// Cancel a submission's tasks (running ones are killed)
    Cancel(tasks::CancelArgs),
    /// Compute a NumPy-style expression over HDF5 datasets (print it or store it)
    Array(array::ArrayArgs),
    /// What an HDF5 or netCDF-4 file holds: groups and datasets with shape, type, chunks, filters, sizes
    Info(info::InfoArgs),
    /// The MPI-style runner: under mpirun/srun, rank 0 scheduler, rank 1 driver, others workers
    Mpi(mpi::MpiArgs),
    /// Run the classic dask.array examples on a local cluster and check every result
    Demo(demo::DemoArgs),
    /// Measure this machine: see docs/benchmarks.md
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command; the returned code is the process's exit status.
pub fn run(cli: Cli) -> Result<i32> {
    let daemon = matches!(
        cli.command,
        Command::Scheduler(_) | Command::Worker(_) | Command::ClusterDaemon(_)
    );
    rdask::rt::init_logging(if daemon { "info" } else { "warn" });
    match cli.command {
        Command::Up(a) => cluster::up(*a),
        Command::Scale(a) => cluster::scale(a),
        Command::Adapt(a) => cluster::adapt(a),
        Command::Status(a) => cluster::status(a),
        Command::Down(a) => cluster::down(a),
        Command::List(a) => cluster::list(a),
        Command::Logs(a) => cluster::logs(a),
        Command::ClusterDaemon(a) => cluster::daemon(a),
        Command::JobScript(a) => jobs::job_script(a),
        Command::Config(c) => jobs::config(c),
        Command::Jobs(c) => jobs::jobs(c),
        Command::Scheduler(a) => runtime::scheduler(a),
        Command::Bench(c) => bench::bench(c),
        Command::Array(a) => array::array(a),
        Command::Info(a) => info::info(a),
        Command::Submit(a) => tasks::submit(*a),
        Command::Tasks(a) => tasks::tasks(a),
        Command::Wait(a) => tasks::wait(a),
        Command::Cancel(a) => tasks::cancel(a),
        Command::Mpi(a) => mpi::mpi(a),
        Command::Demo(a) => demo::demo(a),
        Command::Worker(a) => {
            // Array kernels are the array layer's: this binary's workers run them.
            let mut kernels = rdask::kernels::Registry::empty();
            rdask::array::kernels::register(&mut kernels);
            runtime::worker(a, kernels, &["worker"])
        }
    }
}
