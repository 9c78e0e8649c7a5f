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

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{JobConfig, SystemKind};
use crate::error::{Error, Result};
use crate::jobqueue::scaler::ScalerConfig;
use crate::protocol::Secret;

/// The name used when `--name` is not given.
pub const DEFAULT_NAME: &str = "default";

/// `$RDASK_HOME/clusters`, absolute: job scripts on compute nodes read the secret from it.
pub fn clusters_root() -> PathBuf {
    let home = crate::paths::rdask_home();
    std::path::absolute(&home).unwrap_or(home).join("clusters")
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

/// Seconds since the Unix epoch: the clock of the ledger and the scaler.
pub use crate::sys::unix_now as now;

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
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Held (flock) by the daemon for its whole life: two daemons of one cluster cannot run.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }
    pub fn scripts_dir(&self) -> PathBuf {
        self.root.join("jobs")
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
                 submitted are listed in {}",
                path.display(),
                self.ledger_path().display()
            ))
        })
    }

    /// The record, or an invalid-input error naming the clusters there are.
    pub fn require_record(&self) -> Result<ClusterRecord> {
        self.read_record()?.ok_or_else(|| {
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
    /// error saying what to do).
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
        if !record_alive(&rec) {
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
        crate::cli::runtime::write_private(&self.record_path(), &text)
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

/// Whether `pid` is a live (not zombie) `cluster-daemon` of the cluster `name` under this
/// `$RDASK_HOME`: a pid alone may have been reused since the record was written, even by
/// another cluster's daemon.
pub fn daemon_alive(pid: u32, name: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let words = |file: &str| -> Vec<Vec<u8>> {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .map(|c| c.split(|b| *b == 0).map(<[u8]>::to_vec).collect())
            .unwrap_or_default()
    };
    let argv = words("cmdline");
    let ours = argv.iter().any(|a| a == b"cluster-daemon")
        && argv
            .windows(2)
            .any(|w| w[0] == b"--name" && w[1] == name.as_bytes());
    // `up` gives the daemon its home as an absolute RDASK_HOME.
    let home = format!(
        "RDASK_HOME={}",
        clusters_root()
            .parent()
            .unwrap_or(&clusters_root())
            .display()
    );
    ours && words("environ").iter().any(|kv| kv == home.as_bytes())
}

/// Whether the record's daemon runs.
pub fn record_alive(rec: &ClusterRecord) -> bool {
    rec.pid.is_some_and(|pid| daemon_alive(pid, &rec.name))
}

/// The scheduler address and secret of a running cluster, for clients.
pub fn address_and_secret(name: &str) -> Result<(String, Secret)> {
    let dir = ClusterDir::new(name)?;
    let rec = dir.require_live()?;
    let address = rec
        .address
        .ok_or_else(|| Error::runtime(format!("cluster `{name}` has no scheduler address yet")))?;
    Ok((address, dir.secret()?))
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
    fn our_own_process_is_not_a_daemon() {
        assert!(!daemon_alive(std::process::id(), "default"));
        assert!(!daemon_alive(u32::MAX - 1, "default"));
    }
}
