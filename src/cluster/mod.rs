//! Named clusters on a login node: one scheduler daemon per name, driving batch jobs.
//!
//! Everything a cluster is lives in `$RDASK_HOME/clusters/NAME/` (default `~/.rdask`):
//!
//! | file | what | written by |
//! |---|---|---|
//! | `cluster.json` | name, address, daemon pid, system, job configuration, created/closed | `up`, then the daemon; `down` |
//! | `secret` (0600) | the cluster's secret, read by workers through the shared home | `up` |
//! | `ledger.json` | every job the cluster submitted ([`crate::jobqueue::ledger`]) | the daemon; `down --force` once it is dead |
//! | `control.sock` (0600) | the daemon's control socket ([`control`]) | the daemon |
//! | `logs/` | `daemon.log`, and the jobs' output | the daemon, the jobs |
//! | `jobs/` | the job scripts as submitted | the daemon |
//!
//! Why a daemon with a socket: dask-jobqueue's scheduler lives in the user's Python process,
//! so a second shell cannot scale it and its jobs outlive it. Here the daemon owns the jobs
//! (through the ledger) and every command — `scale`, `adapt`, `status`, `down` — is a request
//! to it over a local Unix socket that only the owner can open.

pub mod control;
pub mod daemon;
pub mod deployer;
pub mod force_down;
pub mod journal;
pub mod lifecycle;
pub mod panel;
pub mod process;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{JobConfig, SystemKind};
use crate::error::{Error, Result};
use crate::jobqueue::scaler::ScalerConfig;
use crate::protocol::Secret;

/// The name used when `--name` is not given.
pub const DEFAULT_NAME: &str = "default";

/// `$RDASK_HOME`, spelt one way whatever way it was given: canonical (symlinks resolved) when
/// it exists, else absolute with `.`, `..` and trailing slashes gone. Every command and the
/// daemon must agree on where a cluster lives (`/x/home/`, `home` run from `/x`, and a link to
/// it are one home), and job scripts on compute nodes read the secret from it.
pub fn home() -> PathBuf {
    let home = crate::paths::rdask_home();
    if let Ok(canonical) = std::fs::canonicalize(&home) {
        return canonical;
    }
    let absolute = std::path::absolute(&home).unwrap_or(home);
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `$RDASK_HOME/clusters`, canonical ([`home`]).
pub fn clusters_root() -> PathBuf {
    home().join("clusters")
}

/// Names become directory names and batch job names (`rdask-NAME-SEQ`): keep them plain.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "cluster name `{name}`: use 1-40 letters, digits, - or _, starting with a letter \
             (it becomes a directory and part of every batch job's name)"
        )))
    }
}

/// Seconds since the Unix epoch on a clock that never jumps (see [`crate::sys::steady_unix_now`]):
/// the clock of the ledger and the scaler, so their timeouts are monotonic within a daemon.
pub use crate::sys::steady_unix_now as now;

/// What `cluster.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    /// "tcp://host:port" of the scheduler, once the daemon listens.
    pub address: Option<String>,
    /// The daemon's pid, once it runs.
    pub pid: Option<u32>,
    pub system: SystemKind,
    /// The worker jobs' configuration, merged and checked by `up`.
    pub config: JobConfig,
    pub scaler: ScalerConfig,
    /// Seconds between the daemon's scaling ticks (Dask's adapt interval).
    pub interval: f64,
    /// Seconds between batch-state polls (one status call for all jobs).
    pub poll_interval: f64,
    /// Where the scheduler listens ("0.0.0.0"), and the host workers dial, if not our name.
    pub bind_host: String,
    pub port: u16,
    pub contact_address: Option<String>,
    /// Most tasks one graph submission may carry (`up --max-graph-tasks`); None: sized to
    /// the daemon's machine.
    #[serde(default)]
    pub max_graph_tasks: Option<u64>,
    /// The dashboard's port (`up --dashboard-port`); None: the system picks one.
    #[serde(default)]
    pub dashboard_port: Option<u16>,
    /// A second token `/metrics` accepts (`up --metrics-token`); this file is 0600.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// The dashboard's URL with its token, once the daemon serves it.
    #[serde(default)]
    pub dashboard: Option<String>,
    pub created_at: f64,
    pub closed_at: Option<f64>,
}

/// One cluster's directory.
#[derive(Clone, Debug)]
pub struct ClusterDir {
    pub name: String,
    pub root: PathBuf,
}

impl ClusterDir {
    pub fn new(name: &str) -> Result<ClusterDir> {
        validate_name(name)?;
        Ok(ClusterDir {
            name: name.to_string(),
            root: clusters_root().join(name),
        })
    }

    pub fn record_path(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    pub fn secret_path(&self) -> PathBuf {
        self.root.join("secret")
    }
    pub fn ledger_path(&self) -> PathBuf {
        self.root.join("ledger.json")
    }
    /// The task journal: submissions of programs and their tasks' ends (`journal.rs`).
    pub fn journal_path(&self) -> PathBuf {
        self.root.join("tasks.jsonl")
    }
    /// Where a submission's tasks write their stdout and stderr by default.
    pub fn task_output_dir(&self, submission: u64) -> PathBuf {
        self.root.join("tasks").join(submission.to_string())
    }
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Held (flock) by the daemon for its whole life, with its pid inside: two daemons of one
    /// cluster cannot run, and whoever holds it is the live daemon ([`ClusterDir::live_daemon`]).
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    /// Held by `up` from before it writes anything until its daemon serves: of two `up` of one
    /// name, exactly one gets it.
    pub fn up_lock_path(&self) -> PathBuf {
        self.root.join("up.lock")
    }

    /// The cluster's running daemon, found through its lock: the daemon holds `daemon.lock`
    /// for its whole life and writes its pid into it. The kernel knows who holds a lock, so
    /// this needs neither the record (which a crash may have left wrong or missing) nor one
    /// spelling of `$RDASK_HOME`, and a pid reused by another process is never taken for it.
    pub fn live_daemon(&self) -> Option<LiveDaemon> {
        let file = std::fs::File::open(self.lock_path()).ok()?;
        // std's file locks are flock(2) on Linux: per open file, released at close.
        if file.try_lock_shared().is_ok() {
            // Nobody holds it (ours is released when `file` closes).
            return None;
        }
        // Held: the daemon writes its pid right after locking; give it a moment.
        for _ in 0..50 {
            if let Some(pid) = std::fs::read_to_string(self.lock_path())
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                return Some(LiveDaemon { pid: Some(pid) });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Some(LiveDaemon { pid: None })
    }

    /// The names of the jobs this cluster wrote scripts for (`jobs/rdask-NAME-SEQ-job.sh`):
    /// every job it submitted has one, written before its submit command ran. What is left to
    /// go by when the ledger is lost.
    pub fn scripted_job_names(&self) -> Vec<String> {
        let prefix = format!("rdask-{}-", self.name);
        let mut seqs: Vec<u64> = std::fs::read_dir(self.scripts_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let rest = file.strip_prefix(&prefix)?;
                let (seq, _) = rest.split_once('-')?;
                seq.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.into_iter()
            .map(|seq| crate::jobqueue::ledger::job_name(&self.name, seq))
            .collect()
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }
    pub fn scripts_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    /// The script job `name` was submitted with (written before its submit command ran).
    pub fn job_script(&self, system: SystemKind, name: &str) -> PathBuf {
        let file_name = crate::jobqueue::system(system).script_file_name();
        self.scripts_dir().join(format!("{name}-{file_name}"))
    }

    /// The record, or None when there is no cluster of this name.
    pub fn read_record(&self) -> Result<Option<ClusterRecord>> {
        let path = self.record_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::runtime(format!(
                "{} is not a cluster record ({e}): restore or fix it; the jobs the cluster \
                 submitted are listed in {}, and `rdask-jobqueue down` still stops its daemon \
                 if it runs",
                path.display(),
                self.ledger_path().display()
            ))
        })
    }

    /// The record, or an invalid-input error naming the clusters there are.
    pub fn require_record(&self) -> Result<ClusterRecord> {
        let record = self.read_record()?;
        if record.is_none() && (self.live_daemon().is_some() || self.ledger_path().exists()) {
            // A cluster was here: its record was lost, not never written.
            return Err(Error::runtime(format!(
                "cluster `{}`'s record {} is missing{}; `rdask-jobqueue down{}` still stops \
                 its daemon, and its jobs are listed in {}",
                self.name,
                self.record_path().display(),
                if self.live_daemon().is_some() {
                    " (its daemon runs)"
                } else {
                    ""
                },
                if self.name == DEFAULT_NAME {
                    String::new()
                } else {
                    format!(" --name {}", self.name)
                },
                self.ledger_path().display()
            )));
        }
        record.ok_or_else(|| {
            let known = list_names();
            let known = if known.is_empty() {
                "there are none; start one with `rdask-jobqueue up`".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            Error::invalid(format!(
                "no cluster named `{}` under {} ({known})",
                self.name,
                clusters_root().display()
            ))
        })
    }

    /// The record of a cluster that is up: not shut down, its daemon running (or a clear
    /// error saying what to do). A record that cannot be read is an error (exit 1) even when
    /// the daemon runs: `down` still reaches the daemon through its lock and socket.
    pub fn require_live(&self) -> Result<ClusterRecord> {
        let rec = self.require_record()?;
        let flag = if self.name == DEFAULT_NAME {
            String::new()
        } else {
            format!(" --name {}", self.name)
        };
        if rec.closed_at.is_some() {
            return Err(Error::invalid(format!(
                "cluster `{}` is down; start it with `rdask-jobqueue up{flag}`",
                self.name
            )));
        }
        if self.live_daemon().is_none() {
            return Err(Error::runtime(format!(
                "cluster `{}`'s daemon is not running (see {}); `rdask-jobqueue down --force{flag}` \
                 cancels its jobs",
                self.name,
                self.daemon_log().display()
            )));
        }
        Ok(rec)
    }

    /// Rewrites `cluster.json` atomically (0600: it names the secret's neighbour).
    pub fn write_record(&self, rec: &ClusterRecord) -> Result<()> {
        let text = serde_json::to_string_pretty(rec).expect("a record serialises");
        crate::files::write_private(&self.record_path(), &text)
    }

    pub fn secret(&self) -> Result<Secret> {
        Secret::load(&self.secret_path())
    }
}

/// Every cluster directory's name, sorted.
pub fn list_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(clusters_root())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("cluster.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Output files whose name holds one of `keys` (a job id or name) as a whole word:
/// `rdask-x-3-1234.out` and `x.o1234` for 1234, but not `rdask-x-3-12345.out`; never the
/// job scripts themselves.
pub fn job_log_files(dir: &std::path::Path, keys: &[String]) -> Vec<PathBuf> {
    let whole = |name: &str, key: &str| {
        name.match_indices(key).any(|(i, _)| {
            let before = name[..i].chars().last();
            let after = name[i + key.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_digit())
                && !after.is_some_and(|c| c.is_ascii_digit())
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let script = name.ends_with(".sh") || name.ends_with(".sub");
            !script && keys.iter().any(|k| whole(name, k))
        })
        .collect();
    files.sort();
    files
}

/// Where a job's output goes: the configured log directory (the job script's -e/-o), else
/// the cluster's `logs/`; local jobs log beside their script in `jobs/`.
pub fn job_log_dirs(dir: &ClusterDir, rec: &ClusterRecord) -> Vec<PathBuf> {
    let logs = rec
        .config
        .log_directory
        .clone()
        .unwrap_or_else(|| dir.logs_dir());
    vec![logs, dir.scripts_dir()]
}

/// The last `lines` lines of the job's error output, for people: why a job died. Its
/// standard error file when the system writes one apart (SLURM's `.err`), else its merged
/// output (SGE's `-j y` `.o<id>`, local jobs' `.log`). None when the job wrote nothing.
pub fn job_output_tail(
    dir: &ClusterDir,
    rec: &ClusterRecord,
    job_id: &str,
    job_name: &str,
    lines: usize,
) -> Option<(PathBuf, String)> {
    let keys = [job_id.to_string(), job_name.to_string()];
    let files: Vec<PathBuf> = job_log_dirs(dir, rec)
        .iter()
        .flat_map(|d| job_log_files(d, &keys))
        .collect();
    let is_err = |p: &PathBuf| p.extension().is_some_and(|e| e == "err");
    let best = files
        .iter()
        .filter(|p| is_err(p))
        .chain(files.iter().filter(|p| !is_err(p)))
        .find_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            (!kept.is_empty()).then(|| {
                let from = kept.len().saturating_sub(lines);
                (p.clone(), kept[from..].join("\n"))
            })
        });
    best
}

/// The daemon that holds a cluster's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveDaemon {
    /// Its pid, as it wrote it into the lock (None only if it could not be read).
    pub pid: Option<u32>,
}

/// The scheduler address and secret of a running cluster, for clients.
/// Connects a client to the named cluster that `rdask-jobqueue up --name NAME` started,
/// reading its address and secret from `$RDASK_HOME/clusters/NAME/`. (The cluster layer
/// knows where clusters keep their files; the client only knows addresses and secrets.)
pub async fn connect_named(name: &str) -> Result<crate::client::Client> {
    let (address, secret) = address_and_secret(name)?;
    crate::client::Client::connect(&address, &secret).await
}

pub fn address_and_secret(name: &str) -> Result<(String, Secret)> {
    let dir = ClusterDir::new(name)?;
    let rec = dir.require_live()?;
    let address = rec
        .address
        .ok_or_else(|| Error::runtime(format!("cluster `{name}` has no scheduler address yet")))?;
    Ok((address, dir.secret()?))
}

/// The dashboard URL of the named cluster, if its daemon serves one (for `array` and
/// `submit` to print at the start of a run).
pub fn dashboard_url(name: &str) -> Option<String> {
    ClusterDir::new(name).ok()?.require_record().ok()?.dashboard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for ok in ["default", "a", "gpu-2", "my_cluster"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "1x", "a/b", "a b", "..", "-x", &"a".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_live_daemon_is_whoever_holds_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir {
            name: "c".into(),
            root: tmp.path().to_path_buf(),
        };
        // No lock file, or one nobody holds (a dead daemon's): no daemon.
        assert_eq!(dir.live_daemon(), None);
        std::fs::write(dir.lock_path(), "4242\n").unwrap();
        assert_eq!(dir.live_daemon(), None);
        // Held (as the daemon holds it): found, with the pid written inside.
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.lock_path())
            .unwrap();
        held.try_lock().unwrap();
        assert_eq!(dir.live_daemon(), Some(LiveDaemon { pid: Some(4242) }));
        drop(held);
        assert_eq!(dir.live_daemon(), None);
    }

    #[test]
    fn job_names_come_back_from_the_scripts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir {
            name: "c".into(),
            root: tmp.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.scripts_dir()).unwrap();
        for f in [
            "rdask-c-10-job.sh",
            "rdask-c-2-job.sh",
            "rdask-cc-1-job.sh",
            "other",
        ] {
            std::fs::write(dir.scripts_dir().join(f), "").unwrap();
        }
        assert_eq!(dir.scripted_job_names(), ["rdask-c-2", "rdask-c-10"]);
    }
}
