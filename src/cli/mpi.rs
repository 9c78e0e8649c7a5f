//! `mpi`: the MPI-style batch runner. Started N times by `mpirun -np N` or `srun -n N` inside
//! one allocation: rank 0 runs the scheduler, rank 1 the driver (`mpi array ...` or
//! `mpi run -- PROGRAM ...`), the other ranks workers. Every rank ends with the driver's exit
//! status once the driver is done. See docs/mpi.md and src/mpi.rs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use rdask::error::{Error, Result};
use rdask::mpi::{self, Role, World};
use rdask::protocol::Secret;
use rdask::scheduler::server::{self, SchedulerOptions};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    mpirun -np 4 rdask-jobqueue mpi array 'x.mean(axis=0)' --input x=data.h5:/x\n  \
    srun -n 8 rdask-jobqueue mpi --nthreads 4 array 'x.sum()' --input x=data.h5:/x\n  \
    srun -n 8 rdask-jobqueue mpi run -- ./my-analysis --flag\n  \
    srun -n 34 rdask-jobqueue mpi submit --array 1-10000 -- ./simulate --seed {task}\n  \
    srun -n 8 rdask-jobqueue mpi --no-driver --scheduler-file $SCRATCH/sched.json\n\n\
    Rank 0: the scheduler. Rank 1: the driver. Ranks 2..: workers. When the driver ends, every\n\
    rank exits with its status. See docs/mpi.md; ready batch scripts are in launchers/.")]
pub struct MpiArgs {
    #[command(subcommand)]
    pub command: Option<MpiCommand>,
    /// Every rank but 0 is a worker; an outside client drives (via the scheduler file)
    #[arg(long)]
    pub no_driver: bool,
    /// Where rank 0 publishes the scheduler's address and secret (a shared directory when the
    /// ranks span nodes) [default: ./rdask-scheduler-<job id>.json]
    #[arg(long, value_name = "FILE")]
    pub scheduler_file: Option<PathBuf>,
    /// Threads per worker rank, 1 to 1024 [default: SLURM_CPUS_PER_TASK, else 1]
    #[arg(long, value_name = "N", value_parser = rdask::worker::command_line::threads_arg)]
    pub nthreads: Option<u32>,
    /// Memory limit per worker rank (e.g. 4GiB; at least 64MiB; 0 for none)
    #[arg(long, default_value = "0", value_parser = rdask::worker::command_line::memory_limit_arg)]
    pub memory_limit: rdask::units::ByteSize,
    /// Ranks exit this long after losing the scheduler (rank 0; 1 s to a day)
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = rdask::worker::command_line::timeout_arg)]
    pub death_timeout: u64,
    /// How long ranks wait for rank 0's scheduler file (1 s to a day)
    #[arg(long, value_name = "SECONDS", default_value = "120", value_parser = rdask::worker::command_line::timeout_arg)]
    pub wait_timeout: u64,
    /// Network interface for the scheduler and the workers (e.g. ib0)
    #[arg(long)]
    pub interface: Option<String>,
    /// Where workers spill [default: the system's temporary directory]
    #[arg(long)]
    pub local_directory: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum MpiCommand {
    /// The driver computes an array expression (the `array` command's options)
    Array(super::array::ArrayArgs),
    /// The driver runs a program that finds the scheduler in RDASK_SCHEDULER_FILE (or
    /// RDASK_SCHEDULER and RDASK_SECRET) and uses the library's Client
    Run {
        /// The program and its arguments (after --)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        program: Vec<String>,
    },
    /// The driver runs a task array (the `submit` command's options) over the worker ranks
    /// and waits for it: the allocation ends when its tasks do
    Submit(Box<super::tasks::SubmitArgs>),
}

/// How this launch's ranks learn where the scheduler is. The driver's exit status needs no
/// exchange of its own: the driver passes it to the scheduler when it shuts it down, and the
/// scheduler tells every rank's connection as it stops (one mechanism for both kinds, and no
/// collective call at the end that a dead rank could hang).
enum Exchange {
    /// A scheduler file in a shared directory.
    Files { file: PathBuf },
    /// An MPI broadcast from rank 0; `file` is a node-local private copy of the address for
    /// this rank's child processes.
    #[cfg(feature = "mpi")]
    Mpi {
        mpi: rdask::mpi::native::Mpi,
        file: PathBuf,
        /// On rank 0 until it has broadcast: if it fails before, it broadcasts an empty
        /// message at the end, so the other ranks (blocked in the broadcast) hear of it.
        owes_broadcast: std::cell::Cell<bool>,
    },
}

impl Exchange {
    /// The scheduler file this rank's processes read.
    fn file(&self) -> &std::path::Path {
        match self {
            Exchange::Files { file } => file,
            #[cfg(feature = "mpi")]
            Exchange::Mpi { file, .. } => file,
        }
    }

    /// Rank 0: tells every rank where the scheduler is.
    fn publish(&self, record: &mpi::SchedulerFile) -> Result<()> {
        let text = serde_json::to_string_pretty(record).expect("serialises");
        rdask::files::write_private(self.file(), &text)?;
        #[cfg(feature = "mpi")]
        if let Exchange::Mpi {
            mpi,
            owes_broadcast,
            ..
        } = self
        {
            mpi.broadcast(0, Some(text.into_bytes()));
            owes_broadcast.set(false);
        }
        Ok(())
    }

    /// Every other rank: where the scheduler is (waits for rank 0).
    fn fetch(&self, world: &World, wait: Duration) -> Result<mpi::SchedulerFile> {
        match self {
            Exchange::Files { file } => mpi::wait_for_scheduler_file(file, &world.launch_id, wait),
            #[cfg(feature = "mpi")]
            Exchange::Mpi { mpi, file, .. } => {
                let bytes = mpi.broadcast(0, None);
                if bytes.is_empty() {
                    return Err(Error::runtime(
                        "rank 0 could not start the scheduler (see its output)",
                    ));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::runtime("rank 0 broadcast a malformed address"))?;
                let record: mpi::SchedulerFile = serde_json::from_str(&text).map_err(|e| {
                    Error::runtime(format!("rank 0 broadcast a malformed address: {e}"))
                })?;
                rdask::files::write_private(file, &text)?;
                Ok(record)
            }
        }
    }

    /// No rank will wait for rank 0's broadcast (they all refused the world alike).
    fn release_broadcast(&self) {
        #[cfg(feature = "mpi")]
        if let Exchange::Mpi { owes_broadcast, .. } = self {
            owes_broadcast.set(false);
        }
    }

    /// Ends MPI (when it is in use) and exits with `code`. `MPI_Finalize` synchronises with
    /// the other ranks in some implementations: if one of them is gone it could wait forever,
    /// so a watchdog exits regardless after a few seconds. No hang, ever.
    fn finish(self, code: i32) -> i32 {
        match self {
            Exchange::Files { .. } => code,
            #[cfg(feature = "mpi")]
            Exchange::Mpi {
                mpi,
                file,
                owes_broadcast,
            } => {
                if owes_broadcast.get() {
                    mpi.broadcast(0, Some(Vec::new()));
                }
                let _ = std::fs::remove_file(&file);
                std::thread::spawn(move || {
                    std::thread::sleep(FINALIZE_WAIT);
                    eprintln!(
                        "warning: MPI_Finalize did not return within {FINALIZE_WAIT:?}; exiting"
                    );
                    // SAFETY: _exit(2) takes no pointer and ends the process at once, without
                    // atexit handlers or destructors: the main thread may be stuck inside
                    // MPI_Finalize, whose handlers std::process::exit would run and could hang
                    // in. Nothing after it runs, so no Rust invariant can be observed broken.
                    unsafe { libc::_exit(code) }
                });
                drop(mpi);
                code
            }
        }
    }
}

/// How long a rank waits in `MPI_Finalize` before it exits anyway.
#[cfg(feature = "mpi")]
const FINALIZE_WAIT: Duration = Duration::from_secs(10);

/// The world and how its ranks exchange: MPI when built with it and it sees the launch,
/// else the launcher's environment and files.
fn connect_world(a: &MpiArgs) -> (World, Exchange) {
    let env_world = mpi::discover(|k| std::env::var(k).ok());
    let shared = |w: &World| {
        a.scheduler_file
            .clone()
            .unwrap_or_else(|| w.default_scheduler_file())
    };
    // MPI_Init only under a launcher that speaks to MPI (mpirun, or srun with PMI/PMIx): an
    // OpenMPI rank started by a plain srun can abort inside MPI_Init ("OMPI was not built
    // with SLURM's PMI support"), and a process started by hand needs no MPI at all.
    #[cfg(feature = "mpi")]
    let native = mpi::launched_for_mpi(|k| std::env::var_os(k).is_some())
        .then(rdask::mpi::native::Mpi::init)
        .flatten();
    #[cfg(feature = "mpi")]
    if let Some(native) = native {
        let world = native.world(env_world.launch_id.clone());
        if world.size > 1 || env_world.size <= 1 {
            let file = std::env::temp_dir().join(format!(
                "rdask-mpi-{}-rank{}.json",
                std::process::id(),
                world.rank
            ));
            let owes_broadcast = std::cell::Cell::new(world.rank == 0);
            return (
                world,
                Exchange::Mpi {
                    mpi: native,
                    file,
                    owes_broadcast,
                },
            );
        }
        eprintln!(
            "warning: MPI sees a world of 1 but the launcher started {} ranks (srun without              --mpi=pmix?); using the launcher's environment and a scheduler file",
            env_world.size
        );
        // Keep MPI initialised until exit, so it finalises cleanly.
        std::mem::forget(native);
    }
    let file = shared(&env_world);
    (env_world, Exchange::Files { file })
}

pub fn mpi(a: MpiArgs) -> Result<i32> {
    match (&a.command, a.no_driver) {
        (None, false) => {
            return Err(Error::invalid(
                "say what the driver (rank 1) runs: `mpi array EXPR ...` or `mpi run -- PROGRAM`, \
                 or pass --no-driver to make every rank but 0 a worker",
            ))
        }
        (Some(_), true) => {
            return Err(Error::invalid(
                "--no-driver makes rank 1 a worker: give no array/run command with it",
            ))
        }
        _ => {}
    }
    let (world, exchange) = connect_world(&a);
    if let Err(e) = world.check(a.no_driver) {
        exchange.release_broadcast();
        exchange.finish(0);
        return Err(e);
    }
    let outcome = match world.role(a.no_driver) {
        Role::Scheduler => scheduler(&a, &world, &exchange),
        Role::Driver => driver(a, &world, &exchange),
        Role::Worker => worker(&a, &world, &exchange),
    };
    match outcome {
        Ok(code) => Ok(exchange.finish(code)),
        Err(e) => {
            exchange.finish(e.exit_code());
            Err(e)
        }
    }
}

fn scheduler(a: &MpiArgs, world: &World, exchange: &Exchange) -> Result<i32> {
    let secret = Secret::generate()?;
    let ip = match &a.interface {
        Some(iface) => rdask::sys::interface_address(iface).map_err(Error::invalid)?,
        None => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let opts = SchedulerOptions::new((ip, 0).into(), secret.clone());
    let rt = rdask::rt::runtime()?;
    let handle = rt.block_on(server::start(opts))?;
    // Published from this (main) thread: with MPI, a broadcast; the scheduler already runs
    // on the runtime's threads.
    exchange.publish(&mpi::SchedulerFile {
        address: handle.address.clone(),
        secret: secret.to_hex(),
        launch_id: world.launch_id.clone(),
    })?;
    eprintln!(
        "rank 0: scheduler at {} ({} ranks from {}; scheduler file {})",
        handle.address,
        world.size,
        world.source,
        exchange.file().display()
    );
    let status = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(Error::io("installing the SIGTERM handler"))?;
        // Cancelled by the batch system: every rank ends with 143, as a killed job does.
        tokio::select! {
            _ = handle.stopped() => {}
            _ = term.recv() => handle.shutdown_with_status(Some(143)),
            _ = tokio::signal::ctrl_c() => handle.shutdown_with_status(Some(130)),
        }
        Ok::<_, Error>(handle.stopped().await)
    })?;
    // The driver's status, which it gave with its shutdown request.
    Ok(status.unwrap_or(0))
}

fn driver(a: MpiArgs, world: &World, exchange: &Exchange) -> Result<i32> {
    let sf = exchange.fetch(world, Duration::from_secs(a.wait_timeout))?;
    let file = exchange.file().to_path_buf();
    let code = match a.command.expect("checked in mpi()") {
        MpiCommand::Array(mut args) => {
            args.scheduler_file = Some(file.clone());
            args.local = None;
            args.memory_limit = None;
            match super::array::array(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        MpiCommand::Submit(args) => {
            match super::tasks::submit_in_mpi(*args, &file, &world.launch_id) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        MpiCommand::Run { program } => {
            let status = std::process::Command::new(&program[0])
                .args(&program[1..])
                .env("RDASK_SCHEDULER_FILE", &file)
                .env("RDASK_SCHEDULER", &sf.address)
                .env(rdask::protocol::SECRET_ENV, &sf.secret)
                .status();
            match status {
                Ok(s) => s.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + s.signal().unwrap_or(0)
                }),
                Err(e) => {
                    eprintln!("error: cannot run {}: {e}", program[0]);
                    127
                }
            }
        }
    };
    // The shutdown carries the status: the scheduler tells it to every rank as it stops.
    let secret = Secret::from_hex(&sf.secret)?;
    let worker_ranks = world.size.saturating_sub(2) as u64;
    let closed = rdask::rt::runtime()?.block_on(async {
        let client = connect_retrying(&sf.address, &secret, Duration::from_secs(10)).await?;
        // Every worker rank listens for the end on a connection of its own: wait (briefly)
        // until they all do, or one that is slow to start would miss it and wait out its
        // death timeout. A rank that never comes is not waited for beyond this.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            match client.status().await {
                Ok(s) if s.clients > worker_ranks => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => break,
            }
        }
        client.shutdown_with_status(Some(code))?;
        // Wait (bounded) until the scheduler has closed this connection, so the request is
        // not lost with this process's socket.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.ended()).await;
        Ok::<(), Error>(())
    });
    match closed {
        Ok(()) => Ok(code),
        // The other ranks would run on until the walltime: fail, so the launcher ends them.
        Err(e) => {
            eprintln!(
                "rank 1: could not stop the scheduler ({e}); exiting non-zero so that the \
                 launcher ends the other ranks"
            );
            Ok(if code == 0 { 1 } else { code })
        }
    }
}

/// Connects, retrying for up to `wait` (the scheduler may be busy or slow to accept).
async fn connect_retrying(
    address: &str,
    secret: &Secret,
    wait: Duration,
) -> Result<rdask::client::Client> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match rdask::client::Client::connect(address, secret).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Parses the worker's own flags, as `worker` takes them.
#[derive(Parser, Debug)]
struct WorkerCommand {
    #[command(flatten)]
    args: rdask::worker::command_line::WorkerArgs,
}

fn worker(a: &MpiArgs, world: &World, exchange: &Exchange) -> Result<i32> {
    let sf = exchange.fetch(world, Duration::from_secs(a.wait_timeout))?;
    let file = exchange.file();
    let threads = a
        .nthreads
        .or_else(|| std::env::var("SLURM_CPUS_PER_TASK").ok()?.parse().ok())
        .unwrap_or(1);
    let mut argv: Vec<String> = vec![
        "worker".into(),
        "--scheduler-file".into(),
        file.display().to_string(),
        "--nthreads".into(),
        threads.to_string(),
        "--memory-limit".into(),
        a.memory_limit.bytes().to_string(),
        "--death-timeout".into(),
        a.death_timeout.to_string(),
        "--name".into(),
        format!("rank-{}", world.rank),
    ];
    if let Some(i) = &a.interface {
        argv.extend(["--interface".into(), i.clone()]);
    }
    if let Some(d) = &a.local_directory {
        argv.extend(["--local-directory".into(), d.display().to_string()]);
    }
    let parsed = WorkerCommand::try_parse_from(&argv).map_err(|e| Error::invalid(e.to_string()))?;
    let secret = Secret::from_hex(&sf.secret)?;
    let (program, child_args, n) =
        rdask::worker::command_line::supervised_command(&parsed.args, &["worker"])?;
    rdask::rt::runtime()?.block_on(async {
        // This rank's own connection hears the scheduler stop, with the driver's status: the
        // rank ends then, even if its worker process has not registered yet (it would
        // otherwise try to reach the stopped scheduler for its whole death timeout).
        let watcher = rdask::client::Client::connect(&sf.address, &secret).await?;
        let stop = async {
            // A lost connection (rank 0 died) is left to the death timeout, as the user set it.
            if watcher.ended().await.is_none() {
                std::future::pending::<()>().await;
            }
        };
        // Supervised: a worker process that crashes or is killed is restarted by this rank,
        // so the launcher (which ends the whole job when a rank dies) never sees a rank die.
        let code = rdask::worker::supervisor::supervise(program, child_args, n, stop).await;
        // Closed workers can end a moment before the scheduler's last word reaches us.
        let driver_status = tokio::time::timeout(Duration::from_secs(5), watcher.ended())
            .await
            .ok()
            .flatten()
            .map(|status| status.unwrap_or(0));
        Ok(match (driver_status, code) {
            (Some(status), _) => status,
            (None, 1) => {
                eprintln!(
                    "rank {}: its worker ended with status 1 without the scheduler saying the run \
                     ended: the scheduler (rank 0) unreachable for {} s, or the worker could not \
                     be (re)started (see above); exiting",
                    world.rank, a.death_timeout
                );
                1
            }
            (None, code) => code,
        })
    })
}
