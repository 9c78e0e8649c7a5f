//! The ledger's records: one [`JobRecord`] per job the cluster submitted, where it stands
//! ([`LedgerState`]) and why it ended ([`EndReason`]), and the names jobs are submitted under.
//!
//! Why a file of its own: these are the *vocabulary* of the ledger, shared with the daemon,
//! `status` and `down --force`; how they are kept on disk (`super::log`) and how they change
//! ([`super::Ledger`]) are separate concerns that can change without touching them.

use serde::{Deserialize, Serialize};

use crate::jobqueue::scaler::CancelReason;
use crate::jobqueue::JobState;

/// The name every job of `cluster` is submitted under: `rdask-<cluster>-<seq>`. Stable, so a
/// job whose id was never recorded can still be found by name in the batch system's queue.
pub fn job_name(cluster: &str, seq: u64) -> String {
    format!("rdask-{cluster}-{seq}")
}

/// Where a job of the ledger stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// Recorded before the submit command ran; no job id yet. If the daemon died here the job
    /// may or may not exist: look for it by name.
    Submitting,
    /// The submit command failed: no job exists.
    NotSubmitted,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// The batch system no longer knows the job (it ended and was purged from its view).
    Gone,
}

impl LedgerState {
    /// True when the job will never run again (or never existed).
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            LedgerState::Submitting | LedgerState::Pending | LedgerState::Running
        )
    }

    /// The batch state this corresponds to, if the job was submitted.
    pub fn batch_state(self) -> Option<JobState> {
        Some(match self {
            LedgerState::Submitting | LedgerState::NotSubmitted => return None,
            LedgerState::Pending => JobState::Pending,
            LedgerState::Running => JobState::Running,
            LedgerState::Completed => JobState::Completed,
            LedgerState::Failed => JobState::Failed,
            LedgerState::Cancelled => JobState::Cancelled,
            LedgerState::Gone => JobState::Gone,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LedgerState::Submitting => "submitting",
            LedgerState::NotSubmitted => "not_submitted",
            other => other.batch_state().map(JobState::name).unwrap_or("?"),
        }
    }
}

impl From<JobState> for LedgerState {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Pending => LedgerState::Pending,
            JobState::Running => LedgerState::Running,
            JobState::Completed => LedgerState::Completed,
            JobState::Failed => LedgerState::Failed,
            JobState::Cancelled => LedgerState::Cancelled,
            JobState::Gone => LedgerState::Gone,
        }
    }
}

impl std::fmt::Display for LedgerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a job ended (or is being ended). The first four are decisions of ours, recorded before
/// the cancel command runs; the rest are inferred from the batch state when the job is seen
/// finished without a reason of ours, or set by the daemon when it knows better (walltime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Cancelled (after retiring its workers) because the target wanted fewer jobs.
    ScaledDown,
    /// Cancelled because its workers never connected within the startup timeout.
    StartupTimeout,
    /// Cancelled because it was still running but all its workers were lost.
    WorkersLost,
    /// Cancelled by `down`.
    Shutdown,
    /// Ended by itself with exit status 0 (e.g. its workers drained before the walltime).
    Completed,
    /// Ended with an error.
    Failed,
    /// Killed by the batch system at its walltime.
    Walltime,
    /// Cancelled by someone else (a user's scancel/qdel, an administrator, preemption).
    CancelledOutside,
    /// Disappeared from the batch system's view without being seen to end.
    Vanished,
    /// The submit command failed.
    SubmitFailed,
}

impl EndReason {
    /// True for the reasons that are our own decisions.
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            EndReason::ScaledDown
                | EndReason::StartupTimeout
                | EndReason::WorkersLost
                | EndReason::Shutdown
        )
    }

    /// The reason inferred from a finished batch state when we did not give one.
    pub fn inferred(state: JobState) -> Option<EndReason> {
        match state {
            JobState::Pending | JobState::Running => None,
            JobState::Completed => Some(EndReason::Completed),
            JobState::Failed => Some(EndReason::Failed),
            JobState::Cancelled => Some(EndReason::CancelledOutside),
            JobState::Gone => Some(EndReason::Vanished),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EndReason::ScaledDown => "scaled down",
            EndReason::StartupTimeout => "workers never connected (startup timeout)",
            EndReason::WorkersLost => "all its workers were lost",
            EndReason::Shutdown => "cluster shut down",
            EndReason::Completed => "completed",
            EndReason::Failed => "failed",
            EndReason::Walltime => "walltime reached",
            EndReason::CancelledOutside => "cancelled from outside",
            EndReason::Vanished => "vanished from the batch system",
            EndReason::SubmitFailed => "submission failed",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<CancelReason> for EndReason {
    fn from(r: CancelReason) -> Self {
        match r {
            CancelReason::ScaleDown => EndReason::ScaledDown,
            CancelReason::StartupTimeout => EndReason::StartupTimeout,
            CancelReason::WorkersLost => EndReason::WorkersLost,
        }
    }
}

/// One job the cluster submitted (or was about to submit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The cluster's own sequence number, from 0, never reused.
    pub seq: u64,
    /// The name it is submitted under ([`job_name`]).
    pub name: String,
    /// The batch system's id, once the submit command printed it.
    pub job_id: Option<String>,
    pub state: LedgerState,
    /// When the record was made, just before submitting.
    pub recorded_at: f64,
    /// When the submit command returned the id.
    pub submitted_at: Option<f64>,
    /// When it was first seen running.
    pub started_at: Option<f64>,
    /// When the first of its workers connected to the scheduler.
    pub workers_seen_at: Option<f64>,
    /// When it was first seen finished.
    pub ended_at: Option<f64>,
    /// Why it ended, or why we are ending it.
    pub end_reason: Option<EndReason>,
    /// Free text for `status`: the submit command's error, for instance.
    pub detail: Option<String>,
}

impl JobRecord {
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }
}
