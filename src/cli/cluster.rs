//! `up`, `scale`, `adapt`, `status`, `down`, `list`, `logs`: named clusters on a login node.
//!
//! Each command is a short conversation with the cluster's daemon over its control socket
//! ([`rdask::cluster::control`]); only `up` (which starts the daemon) and `down --force`
//! (which cleans up after a dead one, from the ledger) act on their own.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::job_args::JobArgs;
use rdask::cluster::control::{self, ClusterStatus, JobView, Reply, Request};
use rdask::cluster::lifecycle::{self, name_flag, with_log_directory};
use rdask::cluster::process::tail;
use rdask::cluster::{self, force_down, ClusterDir, ClusterRecord, DEFAULT_NAME};
use rdask::error::{Error, Result};
use rdask::jobqueue::ledger::Ledger;
use rdask::jobqueue::scaler::{self, Blocked, ScalerConfig, Target};
use rdask::units::ByteSize;

/// How long a control request may take (status, scale); `down` has its own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    rdask-jobqueue up --system local --scale 2        # no batch system: local processes\n  \
    rdask-jobqueue up --metrics-token $(openssl rand -hex 16)   # a scraper's token for /metrics\n\n\
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
    /// The live dashboard's port on the scheduler's host [default: one the system picks;
    /// `status` shows the URL]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub dashboard_port: Option<u16>,
    /// A second token that opens `/metrics` only (for a Prometheus scraper), besides the
    /// dashboard's own; at least 16 letters, digits or - . _ ~
    #[arg(long, value_name = "TOKEN", value_parser = rdask::dashboard::token::parse_metrics_token)]
    pub metrics_token: Option<String>,
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
    rdask-jobqueue status --name big --json | jq '.workers | length'\n  \
    rdask-jobqueue status --watch            # redrawn every second; q or Ctrl-C quits")]
pub struct StatusArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Print one JSON object (workers, jobs, tasks, target, dashboard)
    #[arg(long)]
    pub json: bool,
    /// Redraw every second until q or Ctrl-C (a status a second when not a terminal)
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
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
    if let Some(warning) =
        lifecycle::check_job_script(&with_log_directory(loaded.clone(), &planned), &planned)?
    {
        eprintln!("warning: {warning}");
    }
    let starting = lifecycle::begin(&a.name.name)?;
    let dir = starting.dir.clone();
    let loaded = with_log_directory(loaded, &dir);
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
        dashboard_port: a.dashboard_port,
        metrics_token: a.metrics_token.clone(),
        dashboard: None,
        created_at: cluster::now(),
        closed_at: None,
    };
    let (rec, pid) = starting.launch(rec)?;
    let address = rec.address.clone().unwrap_or_default();
    println!(
        "cluster `{}` is up: scheduler at {address} ({}, daemon pid {pid})",
        dir.name, rec.system
    );
    println!("  secret:  {}", dir.secret_path().display());
    println!("  logs:    {}", dir.daemon_log().display());
    if let Some(url) = &rec.dashboard {
        println!("  dashboard: {url}");
        println!("             (from another machine: docs/observability.md, `ssh -L`)");
    }
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
        other => Err(Error::runtime(format!(
            "the daemon answered {other:?} instead of its status"
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
        let connected = s
            .workers
            .iter()
            .filter(|w| w.state != rdask::protocol::messages::WorkerState::Retiring)
            .count();
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
    if a.watch {
        return super::watch::watch(|| status_of(&dir).map(|s| render_status(&s)));
    }
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
        "cluster {}: scheduler {} ({}{}, daemon pid {})",
        s.name,
        s.address,
        s.system,
        // Older daemons do not say.
        match s.batch_path.as_str() {
            "" => String::new(),
            path => format!(" via {path}"),
        },
        s.pid
    );
    if let Some(url) = &s.dashboard {
        let _ = writeln!(o, "dashboard: {url}");
    }
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
    match rdask::sys::local_clock(unix) {
        Some((h, m, s)) => format!("{h:02}:{m:02}:{s:02}"),
        None => format!("{unix:.0} (Unix time)"),
    }
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
    let outcome = force_down::down(&dir, a.force, a.forget_unconfirmed, |w| {
        eprintln!("warning: {w}")
    })?;
    match outcome {
        force_down::Outcome::AlreadyDown => println!("cluster `{}` is already down", dir.name),
        force_down::Outcome::DaemonClosed(message) => println!("{message}; daemon stopped"),
        force_down::Outcome::ClosedFromLedger(message) => println!("{message}"),
    }
    Ok(0)
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
            batch_path: "commands".into(),
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
            dashboard: Some("http://vm:8787/?token=abc".into()),
        }
    }

    #[test]
    fn status_shows_the_dashboard_url() {
        let text = render_status(&a_status());
        assert!(
            text.contains("dashboard: http://vm:8787/?token=abc"),
            "{text}"
        );
        let json = serde_json::to_value(a_status()).unwrap();
        assert_eq!(json["dashboard"], "http://vm:8787/?token=abc");
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
