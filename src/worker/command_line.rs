//! The worker's command line (`rdask-jobqueue worker ...`, and a program that embeds the
//! worker through [`super::run_with`]): its flags with their bounds, and what runs them — one
//! worker process, or a supervisor of `--nworkers` of them. It lives with the worker, not in
//! the CLI, so an embedding program gets exactly the flags job scripts pass.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::config::limits;
use crate::error::{Error, Result};
use crate::kernels::Registry;
use crate::protocol::{SchedulerFile, Secret};
use crate::units::ByteSize;
use crate::worker::{self, Exit, WorkerOptions, EXIT_RESTART};

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Scheduler address (tcp://host:port); or use --scheduler-file
    #[arg(value_name = "ADDRESS", required_unless_present = "scheduler_file")]
    pub address: Option<String>,
    /// A file written by `scheduler --scheduler-file` (address and secret)
    #[arg(long, value_name = "FILE")]
    pub scheduler_file: Option<PathBuf>,
    /// Threads per worker process, 1 to 1024 [default: the cores available / --nworkers]
    #[arg(long, value_name = "N", value_parser = threads_arg)]
    pub nthreads: Option<u32>,
    /// Memory limit per worker process (e.g. 4GiB; at least 64MiB; 0 for none)
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = memory_limit_arg)]
    pub memory_limit: ByteSize,
    /// Worker processes to start under one supervisor, 1 to 1024
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = processes_arg)]
    pub nworkers: u32,
    /// Worker name [default: HOST-PID]
    #[arg(long)]
    pub name: Option<String>,
    /// Exit after the scheduler has been unreachable this long (seconds or 90s, 2m; 1 s to a day)
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = timeout_arg)]
    pub death_timeout: u64,
    /// Scratch directory for spilled results [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR")]
    pub local_directory: Option<PathBuf>,
    /// Network interface to listen and advertise on (e.g. ib0)
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// File holding the cluster secret (hex) [default: $RDASK_SECRET]
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Run the worker in this process, without a supervisor that restarts it
    #[arg(long)]
    pub no_nanny: bool,
    /// Retire gracefully after this long (seconds or 55m, 1h): its results move to other
    /// workers, then it exits. Job scripts set it to the walltime minus a margin (at most 365 days).
    #[arg(long, value_name = "SECONDS", value_parser = lifetime_arg)]
    pub lifetime: Option<u64>,
    /// Retire up to this much earlier, at random, so a job's workers do not all leave at once
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = stagger_arg)]
    pub lifetime_stagger: u64,
    /// The end of the lifetime as Unix time (the supervisor passes it to its processes, so a
    /// restarted process keeps the job's deadline)
    #[arg(long, value_name = "UNIX_TIME", hide = true, value_parser = unix_time_arg)]
    pub lifetime_end: Option<f64>,
    /// Resources this worker offers tasks that ask for them, e.g. GPU=1,MEM=64e9 (a task
    /// array's `--resources` holds them while a task runs)
    #[arg(long, value_name = "NAME=AMOUNT,...", value_parser = resources_arg)]
    pub resources: Option<Resources>,
}

/// `--resources NAME=AMOUNT,...`, parsed.
pub type Resources = Vec<(String, f64)>;

fn resources_arg(s: &str) -> std::result::Result<Resources, String> {
    crate::task_array::parse_resources(s)
}

/// `--nthreads`: 1 to [`limits::MAX_THREADS`].
pub fn threads_arg(s: &str) -> std::result::Result<u32, String> {
    let n: u64 = s.trim().parse().map_err(|_| {
        format!(
            "'{s}' is not a whole number (use 1 to {})",
            limits::MAX_THREADS
        )
    })?;
    limits::check_threads(n)?;
    Ok(n as u32)
}

/// `--nworkers`: 1 to [`limits::MAX_PROCESSES`].
fn processes_arg(s: &str) -> std::result::Result<u32, String> {
    count_in(s, limits::MAX_PROCESSES)
}

fn count_in(s: &str, max: u32) -> std::result::Result<u32, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=u64::from(max)).contains(&n) => Ok(n as u32),
        Ok(n) => Err(format!("{n} is out of range: use 1 to {max}")),
        Err(_) => Err(format!("'{s}' is not a whole number (use 1 to {max})")),
    }
}

/// A worker's memory limit: 0 (none), or [`limits::MIN_WORKER_MEMORY`] to
/// [`limits::MAX_MEMORY`].
pub fn memory_limit_arg(s: &str) -> std::result::Result<ByteSize, String> {
    let size: ByteSize = s.parse().map_err(|e: crate::units::UnitError| e.0)?;
    limits::check_worker_memory(size.0)?;
    Ok(size)
}

fn seconds_in(s: &str, lo: u64, hi: u64) -> std::result::Result<u64, String> {
    let n = crate::units::seconds_arg(s)?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} s is out of range: use {lo} s to {hi} s"))
    }
}

/// Death timeouts and waits: 1 s to [`limits::MAX_TIMEOUT_SECONDS`].
pub fn timeout_arg(s: &str) -> std::result::Result<u64, String> {
    seconds_in(s, 1, limits::MAX_TIMEOUT_SECONDS)
}

fn stagger_arg(s: &str) -> std::result::Result<u64, String> {
    seconds_in(s, 0, limits::MAX_TIMEOUT_SECONDS)
}

fn lifetime_arg(s: &str) -> std::result::Result<u64, String> {
    seconds_in(s, 1, crate::units::MAX_WALLTIME_SECONDS)
}

fn unix_time_arg(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("'{s}' is not a Unix time")),
    }
}

/// Refuses a scheduler address that is not `tcp://HOST:PORT` (or `HOST:PORT`) before anything
/// dials it; the error names the flag or file it came from.
pub fn check_scheduler_address(addr: &str, from: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "{from} '{}': {why}; use tcp://HOST:PORT (e.g. tcp://10.0.0.1:8786)",
            addr.escape_debug()
        )))
    };
    let rest = match addr.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => return bad(&format!("{scheme}:// is not supported, only tcp://")),
        None => addr,
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad("no port");
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    if !host_ok {
        return bad("not a host name or IP address");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

impl WorkerArgs {
    /// Threads per worker process: `--nthreads`, else the cores shared by `--nworkers`.
    fn threads(&self) -> Result<u32> {
        if self.nworkers == 0 {
            return Err(Error::invalid("--nworkers must be at least 1"));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Ok(self.nthreads.unwrap_or((cores / self.nworkers).max(1)))
    }

    /// The end of this worker's lifetime as Unix time, if it has one.
    fn lifetime_end(&self) -> Option<f64> {
        self.lifetime_end
            .or_else(|| self.lifetime.map(|l| crate::sys::unix_now() + l as f64))
    }

    /// When this process asks to be retired: the lifetime's end, minus a random part of the
    /// stagger (each process draws its own).
    fn retire_at(&self) -> Option<std::time::Instant> {
        let end = self.lifetime_end()?;
        let mut r = [0u8; 8];
        let fraction = match getrandom::fill(&mut r) {
            Ok(()) => (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        let left = end - crate::sys::unix_now() - fraction * self.lifetime_stagger as f64;
        // Any lifetime past a year is "never" for a batch job (and keeps the sum in range).
        Some(std::time::Instant::now() + Duration::from_secs_f64(left.clamp(0.0, 3.2e7)))
    }
}

impl WorkerArgs {
    /// The command line of one supervised worker process: the same settings, one process,
    /// no supervisor of its own.
    fn child_args(&self, nthreads: u32) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(a) = &self.address {
            v.push(a.clone());
        }
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(f) = &self.scheduler_file {
            v.extend(["--scheduler-file".into(), path(f)]);
        }
        if let Some(f) = &self.secret_file {
            v.extend(["--secret-file".into(), path(f)]);
        }
        v.extend(["--nthreads".into(), nthreads.to_string()]);
        v.extend([
            "--memory-limit".into(),
            self.memory_limit.bytes().to_string(),
        ]);
        v.extend(["--death-timeout".into(), self.death_timeout.to_string()]);
        if let Some(n) = &self.name {
            v.extend(["--name".into(), n.clone()]);
        }
        if let Some(d) = &self.local_directory {
            v.extend(["--local-directory".into(), path(d)]);
        }
        if let Some(i) = &self.interface {
            v.extend(["--interface".into(), i.clone()]);
        }
        if let Some(r) = &self.resources {
            v.extend(["--resources".into(), crate::task_array::format_resources(r)]);
        }
        if let Some(end) = self.lifetime_end() {
            v.extend(["--lifetime-end".into(), format!("{end:.3}")]);
            v.extend([
                "--lifetime-stagger".into(),
                self.lifetime_stagger.to_string(),
            ]);
        }
        v.extend(["--nworkers".into(), "1".into(), "--no-nanny".into()]);
        v
    }
}

/// The worker command line when a program embeds the worker (`rdask::worker::run_with`).
#[derive(Parser, Debug)]
#[command(about = "A worker of an rdask cluster, with this program's own kernels")]
struct EmbeddedWorker {
    #[command(flatten)]
    args: WorkerArgs,
}

/// Entry point of `rdask::worker::run_with`: parses the worker flags from this process's own
/// arguments and runs.
pub fn worker_main(registry: Registry) -> ! {
    crate::rt::init_logging("info");
    // `prog worker ADDRESS ...` (as LocalCluster and job scripts call it) or `prog ADDRESS ...`.
    let argv: Vec<String> = std::env::args().collect();
    let skip = usize::from(argv.get(1).map(String::as_str) == Some("worker"));
    let args = EmbeddedWorker::parse_from(argv[..1].iter().chain(&argv[1 + skip..])).args;
    let code = match worker(args, registry, &["worker"][..skip]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code)
}

/// Runs a worker (or a supervisor of `nworkers` of them). `prefix` is what comes before the
/// worker flags on this program's command line ("worker" for rdask-jobqueue).
pub fn worker(a: WorkerArgs, registry: Registry, prefix: &[&str]) -> Result<i32> {
    let (address, secret) = match &a.scheduler_file {
        Some(f) => {
            let (address, secret) = SchedulerFile::load(f)?;
            let from = format!("the address in scheduler file {}", f.display());
            check_scheduler_address(&address, &from)?;
            (address, secret)
        }
        None => {
            let address = a.address.clone().expect("clap requires it");
            check_scheduler_address(&address, "scheduler address")?;
            (address, Secret::from_env_or_file(a.secret_file.as_deref())?)
        }
    };
    let nthreads = a.threads()?;
    if !a.no_nanny {
        let (program, child_args, n) = supervised_command(&a, prefix)?;
        let forever = std::future::pending();
        return Ok(
            crate::rt::runtime()?.block_on(worker::supervisor::supervise(
                program, child_args, n, forever,
            )),
        );
    }
    let mut opts = WorkerOptions::new(address, secret);
    opts.retire_at = a.retire_at();
    opts.nthreads = nthreads;
    opts.memory_limit = a.memory_limit.bytes();
    // Processes of one supervisor share its name, told apart by their index.
    opts.name = a.name.map(|n| match std::env::var("RDASK_WORKER_INDEX") {
        Ok(i) => format!("{n}-{i}"),
        Err(_) => n,
    });
    opts.death_timeout = Duration::from_secs(a.death_timeout);
    opts.local_directory = a.local_directory.unwrap_or_else(std::env::temp_dir);
    opts.interface = a.interface;
    opts.resources = a.resources.unwrap_or_default();
    let mut full = Registry::builtin();
    full.extend(registry);
    match crate::rt::runtime()?.block_on(worker::run(opts, full))? {
        Exit::Closed => Ok(0),
        Exit::SchedulerGone(why) => {
            eprintln!("error: {why}");
            Ok(1)
        }
        Exit::MemoryRestart => Ok(EXIT_RESTART),
    }
}

/// What a supervisor runs: this program with `prefix` and the worker flags for one
/// unsupervised process, `nworkers` times.
pub fn supervised_command(a: &WorkerArgs, prefix: &[&str]) -> Result<(PathBuf, Vec<String>, u32)> {
    let nthreads = a.threads()?;
    let program = std::env::current_exe().map_err(Error::io("finding this program"))?;
    let mut child_args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    child_args.extend(a.child_args(nthreads));
    Ok((program, child_args, a.nworkers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_are_tcp_host_and_port() {
        for ok in [
            "tcp://10.0.0.1:8786",
            "tcp://vm:1",
            "node-1.cluster:65535",
            "tcp://[::1]:8786",
        ] {
            assert!(check_scheduler_address(ok, "x").is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://h:1", "only tcp://"),
            ("tcp://h", "no port"),
            ("tcp://:1", "not a host"),
            ("tcp://h:0", "1 to 65535"),
            ("tcp://h:70000", "1 to 65535"),
            ("tcp://h;x:1", "not a host"),
            ("tcp://h\n:1", "not a host"),
        ] {
            let err = check_scheduler_address(bad, "--scheduler").unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains("--scheduler") && msg.contains(why),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn worker_numbers_have_bounds() {
        assert_eq!(threads_arg("1024"), Ok(1024));
        assert!(threads_arg("1025").unwrap_err().contains("1 to 1024"));
        assert!(threads_arg("0").is_err());
        assert!(threads_arg("99999999999999999999").is_err());
        assert!(processes_arg("100000").is_err());
        assert_eq!(memory_limit_arg("0"), Ok(ByteSize(0)));
        assert_eq!(memory_limit_arg("64MiB"), Ok(ByteSize(64 << 20)));
        assert!(memory_limit_arg("63MiB").unwrap_err().contains("64.0 MiB"));
        assert!(memory_limit_arg("65TiB").is_err());
        assert_eq!(timeout_arg("1d"), Ok(86_400));
        assert!(timeout_arg("0").is_err());
        assert!(timeout_arg("86401").is_err());
        assert_eq!(stagger_arg("0"), Ok(0));
        assert!(lifetime_arg("366d").is_err());
        assert!(unix_time_arg("NaN").is_err());
        assert!(unix_time_arg("inf").is_err());
        assert!(unix_time_arg("-1").is_err());
        assert_eq!(unix_time_arg("1700000000.5"), Ok(1_700_000_000.5));
    }
}
