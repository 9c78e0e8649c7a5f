//! What the scaler answers: the [`Decision`]s the daemon carries out, the [`Tick`] with the
//! numbers behind them for `status`, why submissions were [`Blocked`], and how a job is being
//! ended ([`Ending`], [`CancelReason`]).
//!
//! Why a file of its own: these are the scaler's outputs, the other half of its boundary with
//! the daemon (and the ledger's end reasons are made from [`CancelReason`]).

use serde::{Deserialize, Serialize};

/// Why the scaler cancels a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The target wants fewer jobs.
    ScaleDown,
    /// It runs, but none of its workers connected within the startup timeout.
    StartupTimeout,
    /// It runs, but all its workers were lost.
    WorkersLost,
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Submit this many new jobs.
    Submit { jobs: usize },
    /// Cancel the job now (it has no workers to retire).
    Cancel {
        job_id: String,
        reason: CancelReason,
    },
    /// Retire these workers (copying their unique results to survivors), then cancel the job.
    /// The reason is always [`CancelReason::ScaleDown`].
    Retire {
        job_id: String,
        workers: Vec<String>,
    },
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::ScaleDown => "scaled down",
            CancelReason::StartupTimeout => "its workers never connected (startup timeout)",
            CancelReason::WorkersLost => "all its workers were lost",
        })
    }
}

/// For the daemon's log: "submit 2 job(s)", not a struct dump.
impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Submit { jobs } => write!(f, "submit {jobs} job(s)"),
            Decision::Cancel { job_id, reason } => write!(f, "cancel job {job_id}: {reason}"),
            Decision::Retire { job_id, workers } => write!(
                f,
                "retire the workers {} of job {job_id}, then cancel it: scaled down",
                workers.join(" ")
            ),
        }
    }
}

/// Why fewer jobs were submitted than the target wants.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Blocked {
    /// `max_pending_jobs` jobs are already pending.
    PendingCap { pending: usize, cap: usize },
    /// Backing off after failures until this time.
    Backoff { retry_at: f64 },
    /// Paused after failures in a row, until `scale` or `adapt` resumes it
    /// ([`Failures::paused`] says why).
    Paused,
}

/// The outcome of one tick: the decisions, and the numbers behind them for `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub decisions: Vec<Decision>,
    /// Jobs the target asks for on this tick.
    pub wanted_jobs: usize,
    /// Jobs the scaler steers to: `wanted_jobs`, except while an adaptive scale-down waits
    /// for agreement (then the jobs counted).
    pub target_jobs: usize,
    /// Jobs counted before this tick's scaling decisions (after its health cancels).
    pub counted_jobs: usize,
    /// Of those, pending or being submitted.
    pub pending_jobs: usize,
    pub blocked: Option<Blocked>,
}

/// How the scaler decided to end a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Cancelled(CancelReason),
    Retiring,
}
