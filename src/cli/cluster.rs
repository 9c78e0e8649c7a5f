//! `up`, `scale`, `adapt`, `status`, `down`, `list`, `logs`: named clusters on a login node.
//!
//! Each command is a short conversation with the cluster's daemon over its control socket
//! ([`rdask::cluster::control`]); only `up` (which starts the daemon) and `down --force`
//! (which cleans up after a dead one, from the ledger) act on their own.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::job_args::JobArgs;
use rdask::cluster::control::{self, ClusterStatus, JobView, Reply, Request};
use rdask::cluster::{self, ClusterDir, ClusterRecord, DEFAULT_NAME};
use rdask::config::JobConfig;
use rdask::error::{Error, Result};
use rdask::jobqueue::ledger::Ledger;
use rdask::jobqueue::scaler::{self, Blocked, ScalerConfig, Target};
use rdask::jobqueue::script;
use rdask::protocol::Secret;
use rdask::units::ByteSize;

/// How long a control request may take (status, scale); `down` has its own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits for the daemon: its workers, the cancels, the batch system's view.
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Args, Debug, Clone)]
pub struct NameArg {
    /// The cluster's name
    #[arg(long, short = 'n', default_value = DEFAULT_NAME, env = "RDASK_CLUSTER", value_name = "NAME")]
    pub name: String,
}

impl NameArg {
    fn dir(&self) -> Result<ClusterDir> {
        ClusterDir::new(&self.name)
    }
}

/// `MIN:MAX` for `up --adapt`.
fn min_max(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("`{s}`: expected MIN:MAX, two counts such as 2:20");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a = a.trim().parse().map_err(|_| bad())?;
    let b = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

/// A count of workers or jobs, with an error that says what is wrong with `-1`.
fn count(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(format!(
            "{n}: the count must be 0 or more (`scale 0` releases every job)"
        )),
        Ok(n) => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// The scaling knobs `up` fixes for the cluster's life.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Scaling")]
pub struct ScalerArgs {
    /// Seconds between scaling decisions (Dask's adapt interval)
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_secs)]
    pub interval: f64,
    /// Seconds between batch-state polls (one squeue/qstat call for all jobs)
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub poll_interval: f64,
    /// Jobs waiting in the queue at once, at most (sites limit queued jobs)
    #[arg(long, value_name = "N", default_value_t = scaler::DEFAULT_MAX_PENDING_JOBS)]
    pub max_pending_jobs: usize,
    /// A running job whose workers have not connected after this long is cancelled
    #[arg(long, value_name = "SECONDS", default_value = "5m", value_parser = parse_secs)]
    pub startup_timeout: f64,
}

/// The longest interval or timeout any of these flags takes: 30 days.
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    let v = match s.trim().parse::<f64>() {
        Ok(v) => v,
        Err(_) => rdask::units::seconds_arg(s)? as f64,
    };
    if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
        Ok(v)
    } else {
        Err(format!(
            "{s}: must be a positive number of seconds, at most 30 days"
        ))
    }
}

/// `adapt`'s policy flags, shared by `up --adapt` and `adapt`.
#[derive(Args, Debug, Clone)]
pub struct AdaptArgs {
    /// Seconds the queued work should take with the workers wanted
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub target_duration: f64,
    /// Consecutive intervals that must agree before scaling down
    #[arg(long, value_name = "N", default_value_t = scaler::DEFAULT_WAIT_COUNT)]
    pub wait_count: u32,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue up --system slurm --queue debug --cores 8 --processes 2 --memory 16GB --scale 4 --wait\n  \
    rdask-jobqueue up --name big --adapt 2:20 --walltime 01:00:00\n  \
    rdask-jobqueue up --system local --scale 2        # no batch system: local processes\n\n\
    Then: rdask-jobqueue status | scale K | adapt --minimum A --maximum B | down.\n\
    The job options are those of `job-script` (and the config file); see docs/clusters.md.")]
#[command(group(clap::ArgGroup::new("start").args(["scale", "adapt"])))]
pub struct UpArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Start with this many workers
    #[arg(long, value_name = "K", value_parser = count, conflicts_with = "adapt")]
    pub scale: Option<usize>,
    /// Start adaptive between MIN and MAX workers
    #[arg(long, value_name = "MIN:MAX", value_parser = min_max)]
    pub adapt: Option<(usize, usize)>,
    /// --scale and --adapt count jobs, not workers
    #[arg(long)]
    pub jobs: bool,
    /// With --scale K: wait until K workers are connected; with --adapt MIN:MAX, until MIN are
    // A group, not `requires = "scale"`: clap drops a `requires` when a conflicting flag
    // (--adapt) is given, and `up --adapt A:B --wait` then reached a panic.
    #[arg(long, requires = "start")]
    pub wait: bool,
    /// How long --wait waits before giving up (the cluster stays up)
    #[arg(long, value_name = "SECONDS", default_value = "10m", value_parser = parse_secs)]
    pub wait_timeout: f64,
    /// Scheduler port (0: any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Listen on this interface's address only (e.g. ib0), or `all` for every interface
    /// [default: the workers' network: the jobs' --interface, else the address the contact
    /// host (--contact-address, else this host's name) has here; every interface if neither
    /// is known]
    #[arg(long, value_name = "IFACE")]
    pub scheduler_interface: Option<String>,
    /// The host name or address workers dial, when they cannot reach this host by its name
    /// (NAT, proxies, another network)
    #[arg(long, value_name = "HOST")]
    pub contact_address: Option<String>,
    /// Most tasks one graph submission may carry [default: a tenth of this machine's memory
    /// at 1 KiB per task]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_graph_tasks: Option<u64>,
    #[command(flatten)]
    pub scaler: ScalerArgs,
    #[command(flatten)]
    pub adapt_policy: AdaptArgs,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue scale 10            # 10 workers: ceil(10 / processes per job) jobs\n  \
    rdask-jobqueue scale 3 --jobs      # 3 whole jobs\n  \
    rdask-jobqueue scale 0             # release every job (results move off first)\n\n\
    Scaling down cancels pending jobs first, then retires whole running jobs: their workers'\n\
    results move to the workers that stay before the jobs are cancelled.")]
pub struct ScaleArgs {
    /// Workers wanted (or jobs, with --jobs)
    #[arg(value_name = "K", value_parser = count, allow_hyphen_values = true)]
    pub count: usize,
    #[command(flatten)]
    pub name: NameArg,
    /// Count jobs instead of workers
    #[arg(long)]
    pub jobs: bool,
    /// Wait until that many workers are connected
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up
    #[arg(long, value_name = "SECONDS", default_value = "10m", value_parser = parse_secs)]
    pub wait_timeout: f64,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue adapt --minimum 0 --maximum 20\n  \
    rdask-jobqueue adapt --minimum 1 --maximum 4 --jobs --target-duration 30s\n  \
    rdask-jobqueue adapt --off         # keep the jobs there are now\n\n\
    Workers wanted = the queued work's expected duration / --target-duration (at most one per\n\
    task), within the bounds, rounded up to whole jobs; scale-down waits for --wait-count\n\
    intervals in a row to agree.")]
pub struct AdaptCommandArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Fewest workers (or jobs, with --jobs)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true, required_unless_present = "off")]
    pub minimum: Option<usize>,
    /// Most workers (or jobs, with --jobs)
    #[arg(long, value_name = "N", value_parser = count, allow_hyphen_values = true, required_unless_present = "off")]
    pub maximum: Option<usize>,
    /// Count jobs instead of workers
    #[arg(long)]
    pub jobs: bool,
    #[command(flatten)]
    pub policy: AdaptArgs,
    /// Seconds between scaling decisions [default: as given to `up`, 1]
    #[arg(long, value_name = "SECONDS", value_parser = parse_secs)]
    pub interval: Option<f64>,
    /// Stop adapting and keep the jobs counted now
    #[arg(long, conflicts_with_all = ["minimum", "maximum"])]
    pub off: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue status\n  \
    rdask-jobqueue status --name big --json | jq '.workers | length'")]
pub struct StatusArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Print one JSON object (workers, jobs, tasks, target)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue down\n  \
    rdask-jobqueue down --name big --force   # the daemon died: cancel its jobs from the ledger")]
pub struct DownArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Also when the daemon is dead or does not answer: cancel every job the ledger holds
    #[arg(long)]
    pub force: bool,
    /// With --force: jobs whose submission was never confirmed, on a system that cannot
    /// cancel by name, are closed as not submitted (check the queue for their names first)
    #[arg(long, requires = "force")]
    pub forget_unconfirmed: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue logs                # the daemon's log\n  \
    rdask-jobqueue logs --job 1234     # the output of batch job 1234")]
pub struct LogsArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Show this batch job's output instead of the daemon's log
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Show only the last N lines of each file (0: all)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub lines: usize,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub name: NameArg,
}

// ---------------------------------------------------------------------------------------

pub fn up(a: UpArgs) -> Result<i32> {
    a.name.dir()?;
    let loaded = a.job.load()?.config;
    let processes = loaded.processes as usize;
    let target = initial_target(&a, processes);
    if let Some(t) = &target {
        t.validate()?;
    }
    let scaler = ScalerConfig {
        processes,
        threads_per_worker: loaded.threads_per_process() as usize,
        max_pending_jobs: a.scaler.max_pending_jobs,
        startup_timeout: a.scaler.startup_timeout,
        ..ScalerConfig::default()
    };
    scaler.validate()?;
    let bind_host = match a.scheduler_interface.as_deref() {
        Some("all") => "0.0.0.0".to_string(),
        Some(iface) => rdask::sys::interface_address(iface)
            .map_err(Error::invalid)?
            .to_string(),
        None => rdask::scheduler::server::default_listen_address(
            a.contact_address.as_deref(),
            loaded.interface.as_deref(),
        )
        .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
    };
    let planned = a.name.dir()?;
    check_job_script(&with_log_directory(loaded.clone(), &planned), &planned)?;
    // The cluster's directory, then (its path canonical now that it exists) its `up` lock,
    // before anything is written: of two `up` of one name exactly one goes on; the other
    // leaves the winner's record, secret and daemon alone.
    create_private_dir(&a.name.dir()?.root)?;
    let dir = a.name.dir()?;
    let _starting = lock_for_up(&dir)?;
    make_room(&dir)?;

    // The cluster's own places, absolute: the jobs read them from compute nodes.
    for d in [&dir.logs_dir(), &dir.scripts_dir()] {
        create_private_dir(d)?;
    }
    let loaded = with_log_directory(loaded, &dir);
    Secret::generate()?.save(&dir.secret_path())?;
    let rec = ClusterRecord {
        name: dir.name.clone(),
        address: None,
        pid: None,
        system: loaded.system,
        config: loaded,
        scaler,
        interval: a.scaler.interval,
        poll_interval: a.scaler.poll_interval,
        bind_host,
        port: a.port,
        contact_address: a.contact_address.clone(),
        max_graph_tasks: a.max_graph_tasks,
        created_at: cluster::now(),
        closed_at: None,
    };
    dir.write_record(&rec)?;
    let pid = spawn_daemon(&dir)?;
    let rec = match wait_until_serving(&dir, pid) {
        Ok(r) => r,
        Err(e) => {
            // Nothing was submitted yet: leave a record that says it is closed.
            let mut closed = rec;
            closed.closed_at = Some(cluster::now());
            let _ = dir.write_record(&closed);
            return Err(e);
        }
    };
    let address = rec.address.clone().unwrap_or_default();
    println!(
        "cluster `{}` is up: scheduler at {address} ({}, daemon pid {pid})",
        dir.name, rec.system
    );
    println!("  secret:  {}", dir.secret_path().display());
    println!("  logs:    {}", dir.daemon_log().display());
    if let Some(t) = &target {
        control::request(
            &dir,
            &Request::Scale {
                target: t.clone(),
                interval: None,
            },
            REQUEST_TIMEOUT,
        )?;
        println!("  target:  {}", describe_target(t, processes));
    } else {
        println!(
            "  no workers yet: `rdask-jobqueue scale K{}` or `rdask-jobqueue adapt --minimum A --maximum B{0}`",
            name_flag(&dir.name)
        );
    }
    println!(
        "  use it:  rdask-jobqueue array EXPR --cluster {} | rdask::cluster::connect_named(\"{0}\") | rdask-jobqueue down{}",
        dir.name,
        name_flag(&dir.name)
    );
    if let (true, Some(t)) = (a.wait, &target) {
        let workers = match *t {
            Target::Fixed { workers } => workers,
            Target::Adaptive { minimum, .. } => minimum,
        };
        return wait_for_workers(&dir, workers, Duration::from_secs_f64(a.wait_timeout));
    }
    Ok(0)
}

fn initial_target(a: &UpArgs, processes: usize) -> Option<Target> {
    let p = a.adapt_policy.clone();
    match (a.scale, a.adapt) {
        (Some(k), _) if a.jobs => Some(Target::fixed_jobs(k, processes)),
        (Some(k), _) => Some(Target::Fixed { workers: k }),
        (None, Some((lo, hi))) if a.jobs => Some(Target::adaptive_jobs(
            lo,
            hi,
            processes,
            p.target_duration,
            p.wait_count,
        )),
        (None, Some((minimum, maximum))) => Some(Target::Adaptive {
            minimum,
            maximum,
            target_duration: p.target_duration,
            wait_count: p.wait_count,
        }),
        (None, None) => None,
    }
}

/// ` --name N`, unless N is the default.
fn name_flag(name: &str) -> String {
    if name == DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

/// The jobs' log directory: the one configured, else the cluster's `logs/`; absolute, since
/// the jobs read it from compute nodes.
fn with_log_directory(mut cfg: JobConfig, dir: &ClusterDir) -> JobConfig {
    let l = cfg.log_directory.take().unwrap_or_else(|| dir.logs_dir());
    cfg.log_directory = Some(std::path::absolute(&l).unwrap_or(l));
    cfg
}

/// The worker's own command line, to check the arguments a job script gives it.
#[derive(clap::Parser, Debug)]
#[command(name = "worker")]
struct WorkerCommandLine {
    #[command(flatten)]
    _args: rdask::worker::command_line::WorkerArgs,
}

/// Renders one job script as the daemon will and checks it before anything is written or
/// started, so that what would kill every job fails `up` at once (exit 2) rather than after
/// its `--wait`: the template, the worker's arguments (by the worker's own parser), and where
/// the system has one, a dry-run submission (a bad partition, queue or resource request).
fn check_job_script(cfg: &JobConfig, dir: &ClusterDir) -> Result<()> {
    use clap::Parser;
    let own_binary = std::env::current_exe().map_err(Error::io("finding this program"))?;
    let mut cfg = cfg.clone();
    cfg.job_name = rdask::jobqueue::ledger::job_name(&dir.name, 0);
    // The scheduler's address is not known yet; any well-formed one checks the same.
    let target = script::Target {
        scheduler_address: "tcp://127.0.0.1:8786".into(),
        secret_file: Some(dir.secret_path()),
    };
    let text = script::render(&cfg, &target, &own_binary)
        .map_err(|e| Error::invalid(format!("the job script cannot be rendered: {e}")))?;
    // The arguments after the worker command, as the job's shell splits them.
    let bare = JobConfig {
        worker_command: Some(String::new()),
        ..cfg.clone()
    };
    let line = script::worker_command(&bare, &target, &own_binary);
    let words = shell_words::split(line.trim()).map_err(|e| {
        Error::invalid(format!(
            "the worker command's arguments cannot be split as a shell would ({e}): {line}"
        ))
    })?;
    if let Err(e) =
        WorkerCommandLine::try_parse_from(std::iter::once("worker".to_string()).chain(words))
    {
        let why = e.to_string();
        let why = why.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(Error::invalid(format!(
            "the workers would refuse the arguments the job script gives them: {}; check \
             --worker-extra-arg and the options behind them (the worker command: {})",
            why.trim_start_matches("error: "),
            line.trim()
        )));
    }
    let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
    let file_name = rdask::jobqueue::system(cfg.system).script_file_name();
    let path = scratch.path().join(format!("{}-{file_name}", cfg.job_name));
    script::write_executable(&path, &text)?;
    match rdask::jobqueue::JobQueue::new(&cfg).dry_run(&path) {
        Ok(_) => Ok(()),
        Err(Error::Command(f))
            if matches!(f.status, rdask::error::CommandStatus::TimedOut { .. }) =>
        {
            // A slow controller says nothing about the script: the daemon will see.
            eprintln!("warning: the dry-run submission timed out; going on");
            Ok(())
        }
        Err(Error::Command(f)) => Err(Error::invalid(format!(
            "{} refuses the job script (`{}` {}): {}",
            cfg.system,
            f.command,
            f.status,
            [f.stderr.trim(), f.stdout.trim()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        Err(e) => Err(e),
    }
}

/// Takes the cluster's `up` lock, held until `up` returns; another `up` of the same name
/// holding it is invalid input (exit 2), and nothing is written.
fn lock_for_up(dir: &ClusterDir) -> Result<std::fs::File> {
    let path = dir.up_lock_path();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    if !cluster::try_flock(&file, libc::LOCK_EX) {
        return Err(Error::invalid(format!(
            "another `rdask-jobqueue up{}` is starting cluster `{}` right now; use it once it \
             is up, or choose another --name",
            name_flag(&dir.name),
            dir.name
        )));
    }
    Ok(file)
}

/// Refuses a live cluster of the same name; clears a finished one's record.
fn make_room(dir: &ClusterDir) -> Result<()> {
    if let Some(live) = dir.live_daemon() {
        let address = dir
            .read_record()
            .ok()
            .flatten()
            .and_then(|r| r.address)
            .unwrap_or_else(|| "?".into());
        return Err(Error::invalid(format!(
            "cluster `{}` is already up (daemon pid {}, scheduler {address}); use \
             `scale`/`adapt`/`status`, `down{}` first, or choose another --name",
            dir.name,
            live.pid.map_or("?".to_string(), |p| p.to_string()),
            name_flag(&dir.name)
        )));
    }
    // A record that cannot be read is an error here too: nothing is replaced blindly.
    let old = dir.read_record()?;
    // Dead (or closed, or its record lost): its ledger must show every job finished before
    // anything is replaced.
    let ledger = Ledger::open(&dir.ledger_path(), &dir.name)?;
    let alive = ledger.unfinished_ids();
    let submitting = ledger.submitting_names();
    if !alive.is_empty() || !submitting.is_empty() {
        return Err(Error::invalid(format!(
            "cluster `{}`'s daemon is dead but its ledger still lists jobs that may be alive \
             ({}); run `rdask-jobqueue down --force{}` first",
            dir.name,
            alive
                .iter()
                .chain(&submitting)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            name_flag(&dir.name)
        )));
    }
    // Keep the old ledger beside the new one, for the record.
    if dir.ledger_path().exists() {
        let stamp = old.map_or_else(cluster::now, |o| o.closed_at.unwrap_or(o.created_at)) as u64;
        let kept = dir.root.join(format!("ledger-{stamp}.json"));
        std::fs::rename(dir.ledger_path(), &kept).map_err(Error::io(format!(
            "keeping the old ledger as {}",
            kept.display()
        )))?;
    }
    Ok(())
}

fn create_private_dir(d: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(Error::io(format!("creating {}", d.display())))?;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("setting the mode of {}", d.display())))
}

/// Starts `cluster-daemon` detached: its own session (no terminal, survives the shell and
/// its hang-up), stdin from /dev/null, stdout and stderr appended to the daemon's log.
fn spawn_daemon(dir: &ClusterDir) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.daemon_log())
        .map_err(Error::io(format!("opening {}", dir.daemon_log().display())))?;
    let err = log
        .try_clone()
        .map_err(Error::io("duplicating the log file"))?;
    let exe = std::env::current_exe().map_err(Error::io("finding this program"))?;
    let mut cmd = std::process::Command::new(exe);
    // Started inside a batch job, the daemon must not hand that job's context to the jobs it
    // submits: sbatch reads SLURM_* variables such as SLURM_MEM_PER_CPU as defaults (then
    // `--mem` conflicts with them). SLURM_CONF says where SLURM is, and stays.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("SLURM_") && k != "SLURM_CONF" {
            cmd.env_remove(&*k);
        }
    }
    cmd.args(["cluster-daemon", "--name", &dir.name])
        .env("RDASK_HOME", cluster::home())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe, called between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(Error::io("starting the cluster daemon"))?;
    Ok(child.id())
}

/// Waits until the daemon published its address and answers on its socket.
fn wait_until_serving(dir: &ClusterDir, pid: u32) -> Result<ClusterRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(rec) = dir.read_record()? {
            if rec.pid == Some(pid)
                && rec.address.is_some()
                && control::request(dir, &Request::Ping, Duration::from_secs(2)).is_ok()
            {
                return Ok(rec);
            }
        }
        if !process_exists(pid) || Instant::now() > deadline {
            let log = tail(&dir.daemon_log(), 15);
            let _ = kill(pid, libc::SIGKILL);
            return Err(Error::runtime(format!(
                "the cluster daemon did not start{}; its log ({}):\n{log}",
                if process_exists(pid) {
                    " within 30 s"
                } else {
                    ""
                },
                dir.daemon_log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process_exists(pid: u32) -> bool {
    // Our own child until `up` exits: reap it if it ended, so it does not linger as a zombie.
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid we spawned.
    let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    reaped == 0 || (reaped < 0 && std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn kill(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = if lines == 0 {
        0
    } else {
        all.len().saturating_sub(lines)
    };
    all[from..].join("\n")
}

fn describe_target(t: &Target, processes: usize) -> String {
    t.describe(processes)
}

// ---------------------------------------------------------------------------------------

/// The cluster's directory and record, with its daemon running (or a clear error).
fn live(name: &NameArg) -> Result<(ClusterDir, ClusterRecord)> {
    let dir = name.dir()?;
    let rec = dir.require_live()?;
    Ok((dir, rec))
}

fn status_of(dir: &ClusterDir) -> Result<ClusterStatus> {
    match control::request(dir, &Request::Status, REQUEST_TIMEOUT)? {
        Reply::Status(s) => Ok(*s),
        Reply::Ok { message } | Reply::Error { message, .. } => Err(Error::runtime(format!(
            "the daemon answered `{message}` instead of its status"
        ))),
    }
}

pub fn scale(a: ScaleArgs) -> Result<i32> {
    let (dir, rec) = live(&a.name)?;
    let processes = rec.scaler.processes;
    let target = if a.jobs {
        Target::fixed_jobs(a.count, processes)
    } else {
        Target::Fixed { workers: a.count }
    };
    control::request(
        &dir,
        &Request::Scale {
            target: target.clone(),
            interval: None,
        },
        REQUEST_TIMEOUT,
    )?;
    println!(
        "cluster `{}`: scaling to {}",
        dir.name,
        describe_target(&target, processes)
    );
    if a.wait {
        let Target::Fixed { workers } = target else {
            unreachable!("scale sets a fixed target")
        };
        return wait_for_workers(&dir, workers, Duration::from_secs_f64(a.wait_timeout));
    }
    Ok(0)
}

pub fn adapt(a: AdaptCommandArgs) -> Result<i32> {
    let (dir, rec) = live(&a.name)?;
    if a.off {
        if let Reply::Ok { message } = control::request(&dir, &Request::AdaptOff, REQUEST_TIMEOUT)?
        {
            println!("cluster `{}`: {message}", dir.name);
        }
        return Ok(0);
    }
    let processes = rec.scaler.processes;
    let (lo, hi) = (
        a.minimum.expect("clap: required"),
        a.maximum.expect("clap: required"),
    );
    let target = if a.jobs {
        Target::adaptive_jobs(
            lo,
            hi,
            processes,
            a.policy.target_duration,
            a.policy.wait_count,
        )
    } else {
        Target::Adaptive {
            minimum: lo,
            maximum: hi,
            target_duration: a.policy.target_duration,
            wait_count: a.policy.wait_count,
        }
    };
    target.validate()?;
    control::request(
        &dir,
        &Request::Scale {
            target: target.clone(),
            interval: a.interval,
        },
        REQUEST_TIMEOUT,
    )?;
    println!(
        "cluster `{}`: {}",
        dir.name,
        describe_target(&target, processes)
    );
    Ok(0)
}

/// Waits until `workers` workers are connected, showing how many are and what the jobs wait
/// for. Returns 0, or 1 after the timeout (the cluster stays as it is).
fn wait_for_workers(dir: &ClusterDir, workers: usize, timeout: Duration) -> Result<i32> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(workers as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} workers  {msg}  {elapsed}",
            )
            .expect("a valid template"),
        );
        bar
    });
    let mut last_line = String::new();
    loop {
        let s = status_of(dir)?;
        let connected = s.workers.iter().filter(|w| w.state != "retiring").count();
        let msg = jobs_summary(&s);
        if connected < workers && s.failures.paused.is_some() {
            // Nothing more will be submitted: waiting out the timeout would only hide why.
            if let Some(b) = bar {
                b.abandon();
            }
            eprintln!(
                "error: only {connected} of {workers} workers connected, and the cluster stopped \
                 submitting jobs:\n{}",
                failure_lines(&s).join("\n")
            );
            return Ok(1);
        }
        match &bar {
            Some(b) => {
                b.set_position(connected.min(workers) as u64);
                b.set_message(msg.clone());
            }
            None => {
                let line = format!("{connected}/{workers} workers; {msg}");
                if line != last_line {
                    eprintln!("{line}");
                    last_line = line;
                }
            }
        }
        if connected >= workers {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            println!(
                "{connected} worker(s) connected in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(0);
        }
        if started.elapsed() > timeout {
            if let Some(b) = bar {
                b.abandon();
            }
            eprintln!(
                "error: only {connected} of {workers} workers connected after {:.0} s ({msg}); \
                 the cluster keeps trying: see `rdask-jobqueue status{}`",
                timeout.as_secs_f64(),
                name_flag(&dir.name)
            );
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// "jobs: 2 running, 3 pending (Resources: 123 124 125)": what `--wait` shows.
fn jobs_summary(s: &ClusterStatus) -> String {
    let count = |state: &str| s.jobs.iter().filter(|j| j.state == state).count();
    let mut parts = vec![format!(
        "jobs: {} running, {} pending",
        count("running"),
        count("pending") + count("submitting")
    )];
    let mut reasons: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for j in s.jobs.iter().filter(|j| j.state == "pending") {
        if let Some(r) = j.pending_reason.as_deref() {
            reasons
                .entry(r)
                .or_default()
                .push(j.job_id.as_deref().unwrap_or("?"));
        }
    }
    for (why, ids) in reasons {
        parts.push(format!("waiting for {why}: {}", ids.join(" ")));
    }
    if let Some(b) = &s.blocked {
        parts.push(describe_blocked(b));
    }
    if let Some(j) = last_start_failure(s) {
        // The batch state and the last line of its output (the detail's first line says
        // both): the likeliest cause.
        parts.push(format!(
            "job {} {}",
            j.job_id.as_deref().unwrap_or(&j.name),
            first_line(j.detail.as_deref().unwrap_or(&j.state)),
        ));
    } else if let Some(e) = s.errors.last() {
        parts.push(format!("last error: {e}"));
    }
    parts.join("; ")
}

pub fn status(a: StatusArgs) -> Result<i32> {
    let (dir, _) = live(&a.name)?;
    let s = status_of(&dir)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("a status serialises")
        );
        return Ok(0);
    }
    print!("{}", render_status(&s));
    Ok(0)
}

fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `status` as a person reads it.
pub fn render_status(s: &ClusterStatus) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "cluster {}: scheduler {} ({}, daemon pid {})",
        s.name, s.address, s.system, s.pid
    );
    let _ = writeln!(
        o,
        "target: {}; at the last decision {} job(s) wanted",
        describe_target(&s.target, s.processes),
        s.wanted_jobs
    );
    for line in failure_lines(s) {
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(o, "\njobs ({}):", s.jobs.len());
    if !s.jobs.is_empty() {
        let _ = writeln!(
            o,
            "  {:<12} {:<18} {:<10} {:>7}  workers",
            "job id", "name", "state", "age"
        );
    }
    for j in &s.jobs {
        let mut state = j.state.clone();
        if let Some(r) = &j.pending_reason {
            state = format!("{state} ({r})");
        }
        let _ = writeln!(
            o,
            "  {:<12} {:<18} {:<10} {:>7}  {}{}",
            j.job_id.as_deref().unwrap_or("-"),
            j.name,
            state,
            age(j.age),
            if j.workers.is_empty() {
                "-".to_string()
            } else {
                j.workers.join(" ")
            },
            j.end_reason
                .as_deref()
                .map(|r| format!("  (ending: {r})"))
                .unwrap_or_default()
        );
    }
    if !s.ended_jobs.is_empty() {
        let recent: Vec<String> = s
            .ended_jobs
            .iter()
            .rev()
            .take(5)
            .map(|j| {
                format!(
                    "{} {}{}",
                    j.job_id.as_deref().unwrap_or(&j.name),
                    j.end_reason.as_deref().unwrap_or(&j.state),
                    j.detail
                        .as_deref()
                        .map(|d| format!(": {}", first_line(d)))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(o, "  ended recently: {}", recent.join("; "));
    }
    let _ = writeln!(o, "\nworkers ({}):", s.workers.len());
    if !s.workers.is_empty() {
        let _ = writeln!(
            o,
            "  {:<24} {:<10} {:<12} {:>7} {:>21} {:>6} {:>8}  state",
            "name", "job id", "host", "threads", "memory used/limit", "tasks", "results"
        );
    }
    for w in &s.workers {
        let limit = if w.memory_limit == 0 {
            "none".to_string()
        } else {
            ByteSize(w.memory_limit).human()
        };
        let _ = writeln!(
            o,
            "  {:<24} {:<10} {:<12} {:>7} {:>21} {:>6} {:>8}  {}",
            w.name,
            w.job_id.as_deref().unwrap_or("-"),
            w.host,
            w.nthreads,
            format!("{} / {limit}", ByteSize(w.memory).human()),
            w.processing,
            w.results,
            w.state
        );
    }
    let t = &s.tasks;
    let _ = writeln!(
        o,
        "\ntasks: {} waiting, {} queued, {} processing, {} in memory, {} erred, {} released",
        t.waiting, t.queued, t.processing, t.memory, t.erred, t.released
    );
    if !s.errors.is_empty() {
        let _ = writeln!(o, "\nrecent problems:");
        for e in &s.errors {
            let _ = writeln!(o, "  {}", first_line(e));
        }
    }
    o
}

/// A Unix time as the local wall clock: "12:03:10".
fn clock(unix: f64) -> String {
    let t = unix as libc::time_t;
    // SAFETY: an all-zero `tm` is valid; localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{unix:.0} (Unix time)");
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn describe_blocked(b: &Blocked) -> String {
    match *b {
        Blocked::PendingCap { pending, cap } => {
            format!("{pending} job(s) pending, the most allowed (--max-pending-jobs {cap})")
        }
        Blocked::Backoff { retry_at } => {
            format!("backing off after failures until {}", clock(retry_at))
        }
        Blocked::Paused => "paused".to_string(),
    }
}

/// The last job that ended before any of its workers connected, if `status` still lists it.
fn last_start_failure(s: &ClusterStatus) -> Option<&JobView> {
    let id = s.failures.last_start_failure.as_deref()?;
    s.ended_jobs
        .iter()
        .rev()
        .find(|j| j.job_id.as_deref() == Some(id))
}

/// What `status` says about failures: the pause (and how to resume), the back-off, the
/// counts, and why the last job died (its batch state and the end of its output).
fn failure_lines(s: &ClusterStatus) -> Vec<String> {
    let f = &s.failures;
    let mut out = Vec::new();
    if let Some(p) = &f.paused {
        out.push(format!(
            "submissions PAUSED since {}: {}; fix the cause, then `rdask-jobqueue scale K{2}` \
             or `rdask-jobqueue adapt --minimum A --maximum B{2}` resumes",
            clock(p.since),
            p.reason,
            name_flag(&s.name)
        ));
    } else if let Some(b) = &s.blocked {
        out.push(format!("submissions held back: {}", describe_blocked(b)));
    }
    if f.total > 0 {
        out.push(format!(
            "failed submit commands: {} in a row, {} in all",
            f.consecutive, f.total
        ));
    }
    if f.start_total > 0 {
        out.push(format!(
            "jobs that ended before any worker connected: {} in a row, {} in all",
            f.start_consecutive, f.start_total
        ));
        if let Some(j) = last_start_failure(s) {
            let detail = j.detail.as_deref().unwrap_or(&j.state);
            out.push(format!(
                "  last: job {} {}",
                j.job_id.as_deref().unwrap_or(&j.name),
                detail.replace('\n', "\n    ")
            ));
        }
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn down(a: DownArgs) -> Result<i32> {
    let dir = a.name.dir()?;
    // The record as far as it can be read: a missing or corrupt one must not hide a live
    // daemon, which is found through its lock whatever the record says.
    let (rec, record_problem) = match dir.read_record() {
        Ok(Some(r)) => (Some(r), None),
        Ok(None) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let live = dir.live_daemon();
    let traces = dir.ledger_path().exists() || !dir.scripted_job_names().is_empty();
    if rec.is_none() && record_problem.is_none() && live.is_none() && !traces {
        // No record, no daemon, no job: no cluster of this name.
        dir.require_record()?;
    }
    let record_problem = match (&rec, record_problem) {
        (None, None) => Some(format!(
            "its record {} is missing",
            dir.record_path().display()
        )),
        (_, p) => p,
    };
    if let (Some(r), None) = (&rec, live) {
        if r.closed_at.is_some() && !a.force {
            println!("cluster `{}` is already down", dir.name);
            return Ok(0);
        }
    }
    if let Some(live) = live {
        let timeout = if a.force {
            Duration::from_secs(30)
        } else {
            DOWN_TIMEOUT
        };
        match control::request(&dir, &Request::Down, timeout) {
            Ok(Reply::Ok { message }) => {
                wait_for_exit(&dir, Duration::from_secs(10));
                // The daemon rewrote its record (a lost one included) as it closed.
                println!("{message}; daemon stopped");
                return Ok(0);
            }
            Ok(_) if !a.force => {
                return Err(Error::runtime(
                    "the daemon gave an unexpected answer to `down`; `down --force` stops it",
                ))
            }
            Err(e) if !a.force => {
                return Err(Error::runtime(format!(
                    "{e}; `rdask-jobqueue down --force{}` stops the daemon and cancels the jobs \
                     from the ledger",
                    name_flag(&dir.name)
                )))
            }
            Ok(_) => eprintln!("warning: unexpected answer; stopping the daemon"),
            Err(e) => {
                eprintln!("warning: {e}; stopping the daemon and cleaning up from the ledger")
            }
        }
        // Forced: the daemon did not finish the job; stop it so only we write the ledger.
        let Some(pid) = live.pid else {
            return Err(Error::runtime(format!(
                "cluster `{}`'s daemon holds {} but its pid cannot be read; stop it by hand \
                 (`fuser {0}`), then run `down --force` again",
                dir.name,
                dir.lock_path().display()
            )));
        };
        kill(pid, libc::SIGTERM);
        if !wait_for_exit(&dir, Duration::from_secs(10)) {
            kill(pid, libc::SIGKILL);
            if !wait_for_exit(&dir, Duration::from_secs(5)) {
                return Err(Error::runtime(format!(
                    "cluster `{}`'s daemon (pid {pid}) did not stop; nothing was cancelled",
                    dir.name
                )));
            }
        }
    } else if !a.force {
        if let Some(problem) = &record_problem {
            return Err(Error::runtime(format!(
                "cluster `{}`: {problem}; its daemon is not running; `rdask-jobqueue down \
                 --force{}` says which jobs may be alive",
                dir.name,
                name_flag(&dir.name)
            )));
        }
        return Err(Error::runtime(format!(
            "cluster `{}`'s daemon is not running; `rdask-jobqueue down --force{}` cancels its \
             jobs from the ledger",
            dir.name,
            name_flag(&dir.name)
        )));
    }
    // The daemon is gone: from here we are the ledger's only writer.
    let Some(mut rec) = rec else {
        return Err(lost_record(&dir, record_problem));
    };
    let ledger = if !dir.ledger_path().exists() && !dir.scripted_job_names().is_empty() {
        Err(Error::runtime(format!(
            "its job ledger {} is missing",
            dir.ledger_path().display()
        )))
    } else {
        Ledger::open(&dir.ledger_path(), &dir.name)
    };
    let mut ledger = match ledger {
        Ok(l) => l,
        Err(e) => return Err(cancel_without_ledger(&dir, &rec, &e)),
    };
    let message = if ledger.is_closed() {
        format!("cluster `{}`: the ledger was already closed", dir.name)
    } else {
        rdask::cluster::daemon::finish_jobs(&rec, &mut ledger, a.forget_unconfirmed)?
    };
    rec.closed_at = rec.closed_at.or(Some(cluster::now()));
    dir.write_record(&rec)?;
    let _ = std::fs::remove_file(dir.socket_path());
    println!("{message}");
    Ok(0)
}

/// `down --force` without a readable record, the daemon dead: without the record the batch
/// system of the jobs is unknown, so nothing can be cancelled; say which jobs there are.
fn lost_record(dir: &ClusterDir, problem: Option<String>) -> Error {
    let problem = problem.unwrap_or_default();
    let jobs = match Ledger::open(&dir.ledger_path(), &dir.name) {
        Ok(l) => l
            .unfinished()
            .map(|j| j.job_id.clone().unwrap_or_else(|| j.name.clone()))
            .collect::<Vec<_>>(),
        Err(_) => dir.scripted_job_names(),
    };
    Error::runtime(format!(
        "cluster `{}`: {problem}; without it the batch system of its jobs is unknown, so \
         nothing was cancelled. {}Cancel them with the batch system's own command (scancel, \
         qdel, ...), then restore the record or remove {}",
        dir.name,
        if jobs.is_empty() {
            "It lists no job that may be alive. ".to_string()
        } else {
            format!("Jobs that may be alive: {}. ", jobs.join(" "))
        },
        dir.root.display()
    ))
}

/// `down --force` when the ledger is missing or unreadable: the daemon is dead, so the job
/// scripts are the only list of jobs left. Cancels each by its name where the system can;
/// the cluster stays open (exit 1): what ran cannot be proven finished without the ledger.
fn cancel_without_ledger(dir: &ClusterDir, rec: &ClusterRecord, problem: &Error) -> Error {
    let queue = rdask::jobqueue::JobQueue::new(&rec.config);
    let names = dir.scripted_job_names();
    let mut cancelled = Vec::new();
    let mut failed = Vec::new();
    let mut by_name = true;
    for name in &names {
        match queue.cancel_by_name(name, &dir.job_script(rec.config.system, name)) {
            Ok(true) => cancelled.push(name.as_str()),
            Ok(false) => {
                by_name = false;
                break;
            }
            Err(e) => failed.push(format!("{name} ({e})")),
        }
    }
    let done = if !by_name {
        format!(
            "{} cannot cancel jobs by name: look for jobs named rdask-{}-* in the queue and \
             cancel them by hand",
            rec.system, dir.name
        )
    } else if names.is_empty() {
        "no job script was found either".to_string()
    } else {
        let mut s = format!(
            "cancelled by name every job it wrote a script for: {}",
            cancelled.join(" ")
        );
        if !failed.is_empty() {
            s.push_str(&format!("; failed: {}", failed.join("; ")));
        }
        s
    };
    Error::runtime(format!(
        "cluster `{}`: {problem}; {done}. The cluster stays open: restore the ledger, or move \
         it away once the queue shows no rdask-{}-* job",
        dir.name, dir.name
    ))
}

/// Waits until the cluster's daemon has let go of its lock (it exited); true if it did.
fn wait_for_exit(dir: &ClusterDir, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while dir.live_daemon().is_some() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[derive(serde::Serialize)]
struct ListEntry {
    name: String,
    state: &'static str,
    system: String,
    address: Option<String>,
    pid: Option<u32>,
    created_at: f64,
}

pub fn list(a: ListArgs) -> Result<i32> {
    let mut entries = Vec::new();
    for name in cluster::list_names() {
        let Ok(dir) = ClusterDir::new(&name) else {
            continue;
        };
        let Ok(Some(rec)) = dir.read_record() else {
            continue;
        };
        let state = if dir.live_daemon().is_some() {
            "up"
        } else if rec.closed_at.is_some() {
            "down"
        } else {
            "dead (down --force cleans up)"
        };
        entries.push(ListEntry {
            name,
            state,
            system: rec.system.name().to_string(),
            address: rec.address,
            pid: rec.pid,
            created_at: rec.created_at,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("serialises")
        );
        return Ok(0);
    }
    if entries.is_empty() {
        println!(
            "no clusters under {} (start one with `rdask-jobqueue up`)",
            cluster::clusters_root().display()
        );
        return Ok(0);
    }
    println!("{:<20} {:<9} {:<30} state", "name", "system", "scheduler");
    for e in entries {
        println!(
            "{:<20} {:<9} {:<30} {}",
            e.name,
            e.system,
            e.address.as_deref().unwrap_or("-"),
            e.state
        );
    }
    Ok(0)
}

pub fn logs(a: LogsArgs) -> Result<i32> {
    let dir = a.name.dir()?;
    let rec = dir.require_record()?;
    let Some(id) = &a.job else {
        println!("==> {} <==", dir.daemon_log().display());
        println!("{}", tail(&dir.daemon_log(), a.lines));
        return Ok(0);
    };
    let dirs = cluster::job_log_dirs(&dir, &rec);
    // Files name the job by its id (SLURM's -%J, SGE's .o<id>) or by its name (local jobs log
    // beside their script, rdask-NAME-SEQ-job.sh.log).
    let ledger = Ledger::open(&dir.ledger_path(), &dir.name)?;
    let mut keys = vec![id.clone()];
    if let Some(job) = ledger.job(id) {
        keys.push(job.name.clone());
    }
    let files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| cluster::job_log_files(d, &keys))
        .collect();
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "no output of job {id} under {} (the batch system writes it when the job starts; \
             `rdask-jobqueue status{}` lists the jobs)",
            dirs[0].display(),
            name_flag(&dir.name)
        )));
    }
    for f in files {
        println!("==> {} <==", f.display());
        println!("{}", tail(&f, a.lines));
    }
    Ok(0)
}

pub fn daemon(a: DaemonArgs) -> Result<i32> {
    rdask::cluster::daemon::run(&a.name.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounds_parse_with_clear_errors() {
        assert_eq!(count("4"), Ok(4));
        assert!(count("-1").unwrap_err().contains("0 or more"));
        assert!(count("x").unwrap_err().contains("whole number"));
        assert_eq!(min_max("2:20"), Ok((2, 20)));
        assert!(min_max("2-20").is_err());
        assert_eq!(parse_secs("1.5"), Ok(1.5));
        assert_eq!(parse_secs("2m"), Ok(120.0));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("1e300").is_err());
        assert!(parse_secs("inf").is_err());
    }

    fn a_status() -> ClusterStatus {
        use rdask::jobqueue::scaler::Failures;
        ClusterStatus {
            name: "x".into(),
            address: "tcp://vm:1".into(),
            system: "slurm".into(),
            pid: 7,
            target: Target::Fixed { workers: 2 },
            processes: 1,
            workers: Vec::new(),
            jobs: Vec::new(),
            ended_jobs: vec![JobView {
                job_id: Some("350".into()),
                name: "rdask-x-2".into(),
                state: "failed".into(),
                age: 3.0,
                workers: Vec::new(),
                end_reason: Some("failed".into()),
                detail: Some(
                    "ended (failed) before any of its workers connected: bad interface\n\
                     rdask-x-2-350.err ends with:\nstarting\nbad interface"
                        .into(),
                ),
                pending_reason: None,
            }],
            tasks: Default::default(),
            wanted_jobs: 2,
            counted_jobs: 0,
            blocked: Some(Blocked::Backoff { retry_at: 1e9 }),
            failures: Failures {
                start_consecutive: 2,
                start_total: 2,
                last_start_failure: Some("350".into()),
                retry_at: Some(1e9),
                paused: None,
                ..Failures::default()
            },
            errors: Vec::new(),
        }
    }

    #[test]
    fn status_says_why_jobs_fail_in_words() {
        let mut s = a_status();
        let text = render_status(&s);
        assert!(
            text.contains(&format!("backing off after failures until {}", clock(1e9))),
            "{text}"
        );
        assert!(text.contains("2 in a row, 2 in all"), "{text}");
        assert!(text.contains("last: job 350 ended (failed)"), "{text}");
        assert!(text.contains("    bad interface"), "{text}");
        let summary = jobs_summary(&s);
        assert!(summary.contains("job 350 ended (failed)"), "{summary}");
        // Paused: the reason and how to resume.
        s.blocked = Some(Blocked::Paused);
        s.failures.paused = Some(rdask::jobqueue::scaler::Pause {
            reason: rdask::jobqueue::scaler::PauseReason::StartFailures {
                jobs: 3,
                last_job: "350".into(),
            },
            since: 1e9,
        });
        let text = render_status(&s);
        assert!(text.contains("submissions PAUSED since"), "{text}");
        assert!(text.contains("3 jobs in a row ended before"), "{text}");
        assert!(text.contains("`rdask-jobqueue scale K --name x`"), "{text}");
        // No Rust dumps anywhere.
        for dump in ["Some(", "None", "Backoff {", "Fixed {", "StartFailures"] {
            assert!(!text.contains(dump), "{dump:?} in:\n{text}");
        }
    }

    #[test]
    fn job_logs_are_found_by_whole_id() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "rdask-a-0-12.out",
            "rdask-a-1-123.out",
            "rdask-a-2.o12",
            "daemon.log",
            "rdask-a-12-job.sh",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        let names: Vec<String> = cluster::job_log_files(d.path(), &["12".to_string()])
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["rdask-a-0-12.out", "rdask-a-2.o12"]);
    }
}
