//! `mpi`: the MPI-style batch runner. Started N times by `mpirun -np N` or `srun -n N` inside
//! one allocation: rank 0 runs the scheduler, rank 1 the driver (`mpi array ...` or
//! `mpi run -- PROGRAM ...`), the other ranks workers. Every rank ends with the driver's exit
//! status once the driver is done. See docs/mpi.md and src/mpi.rs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::mpi::{self, Role, World};
use crate::protocol::Secret;
use crate::scheduler::server::{self, SchedulerOptions};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    mpirun -np 4 rdask-jobqueue mpi array 'x.mean(axis=0)' --input x=data.h5:/x\n  \
    srun -n 8 rdask-jobqueue mpi --nthreads 4 array 'x.sum()' --input x=data.h5:/x\n  \
    srun -n 8 rdask-jobqueue mpi run -- ./my-analysis --flag\n  \
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
    /// Threads per worker rank [default: SLURM_CPUS_PER_TASK, else 1]
    #[arg(long, value_name = "N")]
    pub nthreads: Option<u32>,
    /// Memory limit per worker rank (e.g. 4GiB; 0 for none)
    #[arg(long, default_value = "0")]
    pub memory_limit: crate::units::ByteSize,
    /// Ranks exit this long after losing the scheduler (rank 0)
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = super::seconds_arg)]
    pub death_timeout: u64,
    /// How long ranks wait for rank 0's scheduler file
    #[arg(long, value_name = "SECONDS", default_value = "120", value_parser = super::seconds_arg)]
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
}

pub fn mpi(a: MpiArgs) -> Result<i32> {
    let world = mpi::discover(|k| std::env::var(k).ok());
    world.check(a.no_driver)?;
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
    let file = a
        .scheduler_file
        .clone()
        .unwrap_or_else(|| world.default_scheduler_file());
    match world.role(a.no_driver) {
        Role::Scheduler => scheduler(&a, &world, &file),
        Role::Driver => driver(a, &world, &file),
        Role::Worker => worker(&a, &world, &file),
    }
}

fn scheduler(a: &MpiArgs, world: &World, file: &std::path::Path) -> Result<i32> {
    let secret = Secret::generate()?;
    let ip = match &a.interface {
        Some(iface) => crate::sys::interface_address(iface).map_err(Error::invalid)?,
        None => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let opts = SchedulerOptions::new((ip, 0).into(), secret.clone());
    super::runtime::runtime()?.block_on(async {
        let handle = server::start(opts).await?;
        let record = mpi::SchedulerFile {
            address: handle.address.clone(),
            secret: secret.to_hex(),
            launch_id: world.launch_id.clone(),
        };
        super::runtime::write_private(
            file,
            &serde_json::to_string_pretty(&record).expect("serialises"),
        )?;
        eprintln!(
            "rank 0: scheduler at {} ({} ranks from {}; scheduler file {})",
            handle.address,
            world.size,
            world.source,
            file.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(Error::io("installing the SIGTERM handler"))?;
        tokio::select! {
            _ = handle.stopped() => {}
            _ = term.recv() => handle.shutdown(),
            _ = tokio::signal::ctrl_c() => handle.shutdown(),
        }
        handle.stopped().await;
        Ok(mpi::read_exit_status(file, &world.launch_id).unwrap_or(0))
    })
}

fn driver(a: MpiArgs, world: &World, file: &std::path::Path) -> Result<i32> {
    let sf =
        mpi::wait_for_scheduler_file(file, &world.launch_id, Duration::from_secs(a.wait_timeout))?;
    let code = match a.command.expect("checked in mpi()") {
        MpiCommand::Array(mut args) => {
            args.scheduler_file = Some(file.to_path_buf());
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
        MpiCommand::Run { program } => {
            let status = std::process::Command::new(&program[0])
                .args(&program[1..])
                .env("RDASK_SCHEDULER_FILE", file)
                .env("RDASK_SCHEDULER", &sf.address)
                .env(crate::protocol::SECRET_ENV, &sf.secret)
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
    // The status first, then the shutdown: every rank reads it once the scheduler closes it.
    mpi::write_exit_status(file, &world.launch_id, code)?;
    let secret = Secret::from_hex(&sf.secret)?;
    let closed = super::runtime::runtime()?.block_on(async {
        let client = crate::client::Client::connect(&sf.address, &secret).await?;
        client.shutdown()?;
        // Wait (bounded) until the scheduler has closed this connection, so the request is
        // not lost with this process's socket.
        let gone = async {
            while client.status().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), gone).await;
        Ok::<(), Error>(())
    });
    if let Err(e) = closed {
        eprintln!("rank 1: could not stop the scheduler ({e}); the other ranks end after their death timeout");
    }
    Ok(code)
}

/// Parses the worker's own flags, as `worker` takes them.
#[derive(Parser, Debug)]
struct WorkerCommand {
    #[command(flatten)]
    args: super::runtime::WorkerArgs,
}

fn worker(a: &MpiArgs, world: &World, file: &std::path::Path) -> Result<i32> {
    mpi::wait_for_scheduler_file(file, &world.launch_id, Duration::from_secs(a.wait_timeout))?;
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
    // Supervised: a worker process that crashes or is killed is restarted by this rank, so
    // the launcher (which ends the whole job when a rank dies) never sees a rank die.
    let code = super::runtime::worker(parsed.args, crate::kernels::Registry::empty(), &["worker"])?;
    Ok(match code {
        0 => mpi::read_exit_status(file, &world.launch_id).unwrap_or(0),
        1 => {
            eprintln!(
                "rank {}: the scheduler (rank 0) has been unreachable for {} s; exiting",
                world.rank, a.death_timeout
            );
            1
        }
        other => other,
    })
}
