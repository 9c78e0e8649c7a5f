//! What the scaler is shown on each tick: the [`Observation`] the daemon gathers from the
//! ledger, the last poll of the batch system and the scheduler (jobs, their workers, the load).
//!
//! Why a file of its own: these are the scaler's inputs, the boundary with the daemon; they
//! carry no policy.

use serde::{Deserialize, Serialize};

use super::Target;
use crate::jobqueue::JobState;

/// A worker connected from a job, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerObservation {
    pub name: String,
    /// Bytes of results it holds.
    pub held_bytes: u64,
    /// Whether it is being retired (by us or anyone).
    pub retiring: bool,
}

/// One job of the cluster, as the ledger, the last poll and the scheduler see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobObservation {
    pub job_id: String,
    pub state: JobState,
    /// Seconds, on the same clock as [`Observation::now`].
    pub submitted_at: f64,
    /// When the job was first seen running; `None` lets the scaler use the first tick at
    /// which it saw it running.
    pub started_at: Option<f64>,
    /// When a worker of this job first connected, if ever (the ledger's `workers_seen_at`).
    /// Connected workers count as seen even when this is `None`.
    pub workers_seen_at: Option<f64>,
    /// The workers connected now that report this job id.
    pub workers: Vec<WorkerObservation>,
}

/// The scheduler's unfinished work, for adaptive scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Tasks waiting or queued: not yet on a worker.
    pub queued_tasks: usize,
    /// Tasks assigned to workers.
    pub processing_tasks: usize,
    /// Estimated seconds of all that work: tasks times their observed mean duration (the
    /// scheduler's `pending_work_us` / 1e6).
    pub work_seconds: f64,
    /// Threads wanted by program tasks (task arrays): the cpus of those queued and ready to
    /// run, plus one per processing task while a submission is unfinished (a worker retired
    /// under a running program kills it). A program's duration is unknown until it ran, so
    /// this is counted as it is, not through `work_seconds`.
    #[serde(default)]
    pub program_cpus: u64,
}

/// Everything the scaler looks at on one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds on the daemon's clock (Unix time works).
    pub now: f64,
    pub target: Target,
    /// The cluster's jobs. Finished jobs may be passed or left out; both mean "not counted".
    pub jobs: Vec<JobObservation>,
    /// Submissions under way (recorded, no job id yet): counted as pending jobs.
    pub submitting: usize,
    pub load: Load,
    /// Submit commands that failed since the last tick.
    pub submit_failures: u32,
    /// Submit commands that succeeded since the last tick.
    pub submit_successes: u32,
}
