//! The daemon's control socket: how `scale`, `adapt`, `status`, `down`, and `submit`, `tasks`,
//! `wait` and `cancel` reach it.
//!
//! We chose a Unix socket in the cluster's directory (`control.sock`, mode 0600, in a 0700
//! directory) speaking newline-delimited JSON, one request and one reply per connection:
//! only the owner can connect (the file system checks it, so no secret or handshake is
//! needed), nothing listens on the network, and a stale socket of a dead daemon simply refuses
//! connections. The scheduler's TCP port stays for workers and clients only.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::TaskState;
pub use super::journal::TasksView;
use super::ClusterDir;
use crate::error::{Error, Result};
use crate::jobqueue::ledger::JobRecord;
use crate::jobqueue::scaler::{Blocked, Failures, Target};
use crate::protocol::messages::TaskCountsReport;
use crate::task_array::{SubmissionId, TaskArraySpec};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon up and serving?
    Ping,
    /// Steer to this target (scale or adapt); `interval` changes the seconds between
    /// scaling decisions.
    Scale {
        target: Target,
        #[serde(default)]
        interval: Option<f64>,
    },
    /// Stop adapting; keep the jobs counted now.
    AdaptOff,
    Status,
    /// Retire the workers, cancel every unfinished job, close the ledger and exit.
    Down,
    /// Run a task array (`submit`). The daemon assigns its id (`spec.submission` is
    /// ignored), journals it, and hands it to the scheduler.
    Submit {
        spec: Box<TaskArraySpec>,
    },
    /// `tasks`: every submission, or one (`submission`) with its tasks in `states` (all
    /// states when empty; no task list at all when None, which is what `wait` polls).
    Tasks {
        #[serde(default)]
        submission: Option<SubmissionId>,
        #[serde(default)]
        states: Option<Vec<TaskState>>,
    },
    /// `cancel`: a submission's tasks, all of them or those with ids `first..=last`.
    CancelTasks {
        submission: SubmissionId,
        #[serde(default)]
        tasks: Option<(u64, u64)>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ok {
        message: String,
    },
    Status(Box<ClusterStatus>),
    Error {
        message: String,
        invalid: bool,
    },
    /// A submission was accepted: its id, its task count, and a warning when nothing will
    /// run it yet (no workers and a target of none).
    Submitted {
        submission: SubmissionId,
        tasks: u64,
        #[serde(default)]
        warning: Option<String>,
    },
    Tasks(Box<TasksView>),
}

/// A worker as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerView {
    pub name: String,
    pub job_id: Option<String>,
    pub address: String,
    pub host: String,
    pub nthreads: u32,
    pub memory: u64,
    pub memory_limit: u64,
    pub state: crate::protocol::messages::WorkerState,
    pub processing: u64,
    pub results: u64,
    pub held_bytes: u64,
}

/// A job as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: Option<String>,
    pub name: String,
    pub state: String,
    /// Seconds since it was recorded.
    pub age: f64,
    /// Names of its connected workers.
    pub workers: Vec<String>,
    pub end_reason: Option<String>,
    pub detail: Option<String>,
    /// Why a pending job waits, as the batch system says (SLURM's reason: Resources,
    /// Priority, QOSMaxJobsPerUserLimit, ...).
    pub pending_reason: Option<String>,
}

impl JobView {
    pub fn of(
        job: &JobRecord,
        workers: Vec<String>,
        pending_reason: Option<String>,
        now: f64,
    ) -> JobView {
        // Connected workers prove a job runs, even before the next poll of the batch system.
        let state = super::deployer::state_with_workers(job.state, !workers.is_empty());
        JobView {
            job_id: job.job_id.clone(),
            name: job.name.clone(),
            state: state.name().to_string(),
            age: (now - job.recorded_at).max(0.0),
            workers,
            end_reason: job.end_reason.map(|r| r.name().to_string()),
            detail: job.detail.clone(),
            pending_reason,
        }
    }
}

/// What `status --json` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    pub address: String,
    pub system: String,
    /// How the daemon talks to the batch system: "commands", or for SLURM built with
    /// `slurm-native`, "libslurm API 38.0.0".
    #[serde(default)]
    pub batch_path: String,
    pub pid: u32,
    pub target: Target,
    pub processes: usize,
    pub workers: Vec<WorkerView>,
    /// Jobs that may still be alive (submitting, pending, running).
    pub jobs: Vec<JobView>,
    /// The latest jobs that ended, newest last (at most 20).
    pub ended_jobs: Vec<JobView>,
    pub tasks: TaskCountsReport,
    /// Jobs the target wants now, and jobs counted (from the last scaling tick).
    pub wanted_jobs: usize,
    pub counted_jobs: usize,
    pub blocked: Option<Blocked>,
    /// Failed submissions and jobs that died before a worker connected; the back-off and
    /// the pause.
    pub failures: Failures,
    /// Recent problems (failed batch commands), newest last.
    pub errors: Vec<String>,
    /// The live dashboard's URL (with its token), if it serves.
    #[serde(default)]
    pub dashboard: Option<String>,
}

/// Sends one request to the daemon of `dir` and waits up to `timeout` for its reply.
pub fn request(dir: &ClusterDir, req: &Request, timeout: Duration) -> Result<Reply> {
    let path = dir.socket_path();
    let unreachable = |e: std::io::Error| {
        Error::runtime(format!(
            "cannot reach cluster `{}`'s daemon at {}: {e}",
            dir.name,
            path.display()
        ))
    };
    let mut stream = UnixStream::connect(&path).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    let mut line = serde_json::to_string(req).expect("a request serialises");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(unreachable)?;
    if answer.trim().is_empty() {
        return Err(Error::runtime(format!(
            "cluster `{}`'s daemon closed the connection without answering (see {})",
            dir.name,
            dir.daemon_log().display()
        )));
    }
    let reply: Reply = serde_json::from_str(answer.trim())
        .map_err(|e| Error::runtime(format!("unreadable reply from the daemon: {e}")))?;
    match reply {
        Reply::Error { message, invalid } if invalid => Err(Error::invalid(message)),
        Reply::Error { message, .. } => Err(Error::runtime(message)),
        other => Ok(other),
    }
}
