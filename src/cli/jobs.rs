//! `job-script`, `config show` and the low-level `jobs submit|status|cancel`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::job_args::JobArgs;
use rdask::config::JobConfig;
use rdask::error::{CommandStatus, Error, Result};
use rdask::jobqueue::script::{self, Target};
use rdask::jobqueue::{system, JobQueue, SubmitFailure};

/// Where workers should connect; without these, placeholders are written and a warning says so.
#[derive(Args, Clone, Debug, Default)]
pub struct TargetArgs {
    /// Scheduler address the workers connect to (tcp://HOST:PORT)
    #[arg(long, value_name = "ADDRESS")]
    pub scheduler: Option<String>,
    /// File holding the cluster's secret, readable from the compute nodes
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self) -> Result<Target> {
        if let Some(address) = &self.scheduler {
            rdask::worker::command_line::check_scheduler_address(address, "--scheduler")?;
        }
        // Written into the worker command: one line, as every value in a script.
        if let Some(file) = &self.secret_file {
            rdask::config::check_one_line(&file.display().to_string(), false)
                .map_err(|why| Error::invalid(format!("--secret-file: {why}")))?;
        }
        let scheduler_address = self.scheduler.clone().unwrap_or_else(|| {
            eprintln!(
                "warning: no --scheduler given; the script uses the placeholder tcp://SCHEDULER:8786 \
                 (pass the address of a running `rdask-jobqueue scheduler`)"
            );
            "tcp://SCHEDULER:8786".into()
        });
        Ok(Target {
            scheduler_address,
            secret_file: self.secret_file.clone(),
        })
    }
}

#[derive(Args, Debug)]
pub struct JobScriptArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print a script that runs the MPI-style runner in one allocation instead (cores and
    /// memory are then per rank; see docs/mpi.md)
    #[arg(long, requires = "ranks")]
    pub mpi: bool,
    /// With --mpi: all ranks (scheduler + driver + workers)
    #[arg(long, value_name = "N")]
    pub ranks: Option<u32>,
    /// With --mpi: what the driver runs, after `--` (e.g. -- array 'x.sum()' --input x=d.h5:/x)
    #[arg(last = true, value_name = "DRIVER")]
    pub driver: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the merged configuration as TOML, each value commented with its source
    Show(Box<JobArgs>),
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Submit one worker job and print its id
    Submit(Box<SubmitArgs>),
    /// Print the batch state of jobs (pending, running, completed, failed, cancelled, gone)
    Status(IdArgs),
    /// Cancel jobs; jobs that already finished are not an error
    Cancel(IdArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Directory the job script is written to (it must stay until the job starts)
    #[arg(long, value_name = "DIR")]
    pub script_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// Job ids as the batch system printed them
    #[arg(required = true, value_name = "JOB_ID")]
    pub ids: Vec<String>,
    /// Print one JSON object {"ID": "state", ...}
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

fn own_binary() -> Result<PathBuf> {
    std::env::current_exe().map_err(Error::io("finding this program's own path"))
}

pub fn job_script(a: JobScriptArgs) -> Result<i32> {
    let cfg = a.job.load()?.config;
    if a.mpi {
        let ranks = a.ranks.expect("clap requires --ranks with --mpi");
        let text = rdask::jobqueue::mpi_script::render(&cfg, ranks, &a.driver, &own_binary()?)?;
        print!("{text}");
        return Ok(0);
    }
    if a.ranks.is_some() || !a.driver.is_empty() {
        return Err(rdask::error::Error::invalid(
            "--ranks and a driver command go with --mpi",
        ));
    }
    let text = script::render(&cfg, &a.target.target()?, &own_binary()?)?;
    print!("{text}");
    Ok(0)
}

pub fn config(c: ConfigCommand) -> Result<i32> {
    let ConfigCommand::Show(job) = c;
    print!("{}", job.load()?.show());
    Ok(0)
}

pub fn jobs(c: JobsCommand) -> Result<i32> {
    match c {
        JobsCommand::Submit(a) => {
            let cfg = a.job.load()?.config;
            let text = script::render(&cfg, &a.target.target()?, &own_binary()?)?;
            let dir = match &a.script_dir {
                Some(d) => d.clone(),
                None => rdask::paths::rdask_home().join("scripts"),
            };
            let id = submit_script(&cfg, &text, &dir)?;
            println!("{id}");
            Ok(0)
        }
        JobsCommand::Status(a) => {
            let cfg = a.job.load()?.config;
            // Through libslurm where `slurm_native` allows (one poll, as the daemon's).
            let states = JobQueue::with_native(&cfg).states(&a.ids)?;
            let mut out = std::io::stdout().lock();
            if a.json {
                let map: serde_json::Map<String, serde_json::Value> = states
                    .iter()
                    .map(|(id, s)| (id.clone(), s.name().into()))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(map)).ok();
            } else {
                for id in &a.ids {
                    writeln!(out, "{id} {}", states[id]).ok();
                }
            }
            Ok(0)
        }
        JobsCommand::Cancel(a) => {
            let cfg = a.job.load()?.config;
            JobQueue::new(&cfg).cancel(&a.ids)?;
            Ok(0)
        }
    }
}

/// Writes the script under a fresh name in `dir` and submits it. A rejected submission
/// removes its script again, so nothing is left behind.
pub fn submit_script(cfg: &JobConfig, text: &str, dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let file = tempfile::Builder::new()
        .prefix(&format!("{}-", cfg.job_name))
        .suffix(&format!("-{}", system(cfg.system).script_file_name()))
        .tempfile_in(dir)
        .map_err(Error::io(format!(
            "creating a job script in {}",
            dir.display()
        )))?;
    let path = file.path().to_path_buf();
    script::write_executable(&path, text)?;
    // Close our handle before submitting: a batch system that executes the script file (OAR,
    // local) fails with ETXTBSY while any process holds it open for writing. The TempPath
    // still deletes the script if the submission fails.
    let script = file.into_temp_path();
    match JobQueue::new(cfg).submit(&path) {
        Ok(id) => {
            // Keep the script: OAR and local jobs read it when they start.
            script
                .keep()
                .map_err(|e| Error::io(format!("keeping {}", path.display()))(e.error))?;
            Ok(id)
        }
        // `script` is dropped here, which deletes it. Some systems do not say what
        // they rejected (PBS: "qsub: Unknown queue"), so the error names the request.
        Err(SubmitFailure::Refused(Error::Command(failure)))
            if matches!(failure.status, CommandStatus::Exited(_)) =>
        {
            let queue = cfg
                .queue
                .as_deref()
                .map(|q| format!(" to queue {q}"))
                .unwrap_or_default();
            Err(Error::runtime(format!(
                "{} rejected the job{queue}: {failure}",
                cfg.system
            )))
        }
        // The submit command never ran: nothing can have been queued.
        Err(SubmitFailure::Refused(e)) => Err(e),
        // Timed out, or accepted with an id we cannot read: the job may be queued and may
        // read its script when it starts, so the script stays.
        Err(SubmitFailure::Uncertain(e)) => {
            let _ = script.keep();
            Err(Error::runtime(format!(
                "{e}; the job may have been submitted anyway: its script stays at {} (check the queue with {}'s own commands)",
                path.display(),
                cfg.system
            )))
        }
    }
}
