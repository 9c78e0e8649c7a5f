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
#[command(after_help = "Examples:\n  \
    rdask-jobqueue job-script --system slurm --cores 8 --processes 4 --memory 28GB --walltime 00:02:00\n  \
    rdask-jobqueue job-script --name big --system slurm --queue debug   # what `up --name big ...` submits first\n  \
    rdask-jobqueue job-script --name big      # cluster `big` runs: its next job, as its daemon writes it")]
pub struct JobScriptArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the script cluster NAME submits: when it runs, its next job exactly as its
    /// daemon writes it (its configuration, address, job name, logs); else the first job
    /// `up --name NAME` with these options would submit
    #[arg(long, value_name = "NAME", conflicts_with = "mpi")]
    pub name: Option<String>,
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
    /// Turn dask-jobqueue's jobqueue.yaml into this tool's configuration file
    Import(ImportArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue config import ~/.config/dask/jobqueue.yaml\n  \
    rdask-jobqueue config import jobqueue.yaml --output site.toml && rdask-jobqueue job-script --config site.toml\n  \
    rdask-jobqueue config import jobqueue.yaml --output -      # print it instead\n\n\
    Each jobqueue.<system> section becomes a [<system>] table; every key that could not be\n\
    mapped is named on stderr with the reason. See docs/configuration.md#migrating-from-dask-jobqueue.")]
pub struct ImportArgs {
    /// dask-jobqueue's YAML configuration (jobqueue: slurm: ... sections)
    #[arg(value_name = "YAML")]
    pub file: PathBuf,
    /// Where to write the TOML, `-` for stdout [default: $XDG_CONFIG_HOME/rdask/jobqueue.toml,
    /// else ~/.config/rdask/jobqueue.toml]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists
    #[arg(long)]
    pub force: bool,
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
    if let Some(name) = &a.name {
        print!("{}", cluster_job_script(&a, name)?);
        return Ok(0);
    }
    let text = script::render(&cfg, &a.target.target()?, &own_binary()?)?;
    print!("{text}");
    Ok(0)
}

/// `job-script --name NAME`: the script the cluster's daemon writes for its next job when it
/// runs (from its record and ledger: the options given here cannot change it), else the
/// first one `up --name NAME` with these options would write. The scheduler's address is
/// chosen when `up` starts the daemon, so before that it is `--scheduler` or a placeholder.
fn cluster_job_script(a: &JobScriptArgs, name: &str) -> Result<String> {
    use rdask::cluster::{lifecycle, ClusterDir};
    let dir = ClusterDir::new(name)?;
    let running = dir
        .read_record()?
        .filter(|rec| rec.closed_at.is_none() && dir.live_daemon().is_some());
    if let Some(rec) = running {
        let given = a.job.config.is_some()
            || !a.job.layer().values.is_empty()
            || a.target.scheduler.is_some()
            || a.target.secret_file.is_some();
        if given {
            return Err(Error::invalid(format!(
                "cluster `{name}` is running with the options it was started with; drop the \
                 job options to see its next job's script (or `down` it and `up` again with \
                 them)"
            )));
        }
        let seq = lifecycle::next_job_seq(&dir)?;
        let address = rec.address.clone().unwrap_or_default();
        return lifecycle::job_script(&rec.config, &address, &dir, seq, &own_binary()?);
    }
    let cfg = lifecycle::with_log_directory(a.job.load()?.config, &dir);
    let address = match &a.target.scheduler {
        Some(address) => {
            rdask::worker::command_line::check_scheduler_address(address, "--scheduler")?;
            address.clone()
        }
        None => {
            eprintln!(
                "note: cluster `{name}` is not running; its scheduler's address is chosen when \
                 `up` starts it, so the script shows tcp://SCHEDULER:8786 (run this again once \
                 it is up for the real one)"
            );
            "tcp://SCHEDULER:8786".into()
        }
    };
    if a.target.secret_file.is_some() {
        return Err(Error::invalid(
            "--secret-file with --name: a cluster's jobs read its own secret \
             ($RDASK_HOME/clusters/NAME/secret)",
        ));
    }
    lifecycle::job_script(&cfg, &address, &dir, 0, &own_binary()?)
}

pub fn config(c: ConfigCommand) -> Result<i32> {
    match c {
        ConfigCommand::Show(job) => {
            print!("{}", job.load()?.show());
            Ok(0)
        }
        ConfigCommand::Import(a) => config_import(a),
    }
}

/// `config import`: read, map, check that the result loads for every system it has, and
/// only then write it (atomically; an existing file only with --force).
fn config_import(a: ImportArgs) -> Result<i32> {
    use rdask::config::{self, import};
    let text = config::read_small_file(
        &a.file,
        "dask-jobqueue configuration",
        config::limits::MAX_CONFIG_FILE_BYTES,
    )?;
    let imported = import::import(&text, &a.file.display().to_string())?;
    import::check_loads(&imported.toml, &imported.systems)?;
    let output = match &a.output {
        Some(p) => Some(p.clone()),
        None => Some(
            config::default_config_path(&config::Env::from_process()).ok_or_else(|| {
                Error::invalid(
                    "no default place for the configuration file (neither XDG_CONFIG_HOME nor \
                     HOME is set): give --output FILE",
                )
            })?,
        ),
    }
    .filter(|p| p.as_os_str() != "-");
    let tables = imported
        .systems
        .iter()
        .map(|s| format!("[{s}]"))
        .collect::<Vec<_>>()
        .join(" ");
    match &output {
        None => print!("{}", imported.toml),
        Some(path) => {
            if path.exists() && !a.force {
                return Err(Error::invalid(format!(
                    "{} exists already: give --force to replace it, or --output OTHER_FILE \
                     (nothing was written)",
                    path.display()
                )));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
            }
            rdask::files::write_atomic(path, imported.toml.as_bytes(), 0o644)?;
            eprintln!(
                "wrote {} with {tables} from {}",
                path.display(),
                a.file.display()
            );
        }
    }
    if !imported.notes.is_empty() {
        eprintln!("not imported as is ({}):", imported.notes.len());
        for n in &imported.notes {
            eprintln!("  {}: {}", n.key, n.why);
        }
    }
    if let Some(path) = &output {
        let system = match imported.systems.as_slice() {
            [_] => String::new(),
            _ => " --system SYSTEM".into(),
        };
        eprintln!(
            "check it: rdask-jobqueue job-script --config {}{system}",
            path.display()
        );
    }
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
