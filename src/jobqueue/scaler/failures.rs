//! Failures, back-off and pause: counting failed submit commands and jobs that died before a
//! worker connected ([`Failures`]), the submission back-off they set, and the [`Pause`] after
//! too many in a row (see the module rules in [`super`]).
//!
//! Why a file of its own: this is the part of the policy that protects the batch system from
//! a job that can never start (HyperQueue's "allocation failures"), with its own counters and
//! streaks; the rest of the tick only asks whether submitting is allowed.

use serde::{Deserialize, Serialize};

use super::{CancelReason, Ending, Life, Observation, Scaler};
use crate::jobqueue::JobState;

/// Failed submissions and jobs that failed to start, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Failed submit commands since the last successful one.
    pub consecutive: u32,
    /// Failed submit commands ever.
    pub total: u64,
    /// Jobs in a row that ended before any of their workers connected.
    pub start_consecutive: u32,
    /// Such jobs ever.
    pub start_total: u64,
    /// The latest such job.
    pub last_start_failure: Option<String>,
    /// No submission before this time.
    pub retry_at: Option<f64>,
    /// Set when submitting stopped until `scale`/`adapt` resumes it.
    pub paused: Option<Pause>,
}

/// Why the scaler stopped submitting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum PauseReason {
    /// This many jobs in a row ended before any of their workers connected; the last one.
    StartFailures { jobs: u32, last_job: String },
    /// This many submit commands in a row failed.
    SubmitFailures { count: u32 },
}

impl std::fmt::Display for PauseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseReason::StartFailures { jobs, last_job } => write!(
                f,
                "{jobs} jobs in a row ended before any of their workers connected (the last: job {last_job})"
            ),
            PauseReason::SubmitFailures { count } => {
                write!(f, "{count} submit commands in a row failed")
            }
        }
    }
}

/// A pause: why, and since when (seconds on the observations' clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: PauseReason,
    pub since: f64,
}

impl Scaler {
    /// Counts this observation's failures and successes: submit commands, and jobs that
    /// ended (seen finished, or no longer observed) without a worker ever connecting. Sets
    /// the back-off and, after too many in a row, the pause.
    pub(super) fn note_failures(&mut self, obs: &Observation) {
        let mut start_failures = 0u32;
        let mut connected = false;
        let observed: std::collections::BTreeSet<&str> =
            obs.jobs.iter().map(|j| j.job_id.as_str()).collect();
        let vanished: Vec<String> = self
            .lives
            .keys()
            .filter(|id| !observed.contains(id.as_str()))
            .cloned()
            .collect();
        let mut ends: Vec<(String, JobState, Life)> = vanished
            .into_iter()
            .map(|id| {
                let life = self.lives.remove(&id).unwrap_or_default();
                (id, JobState::Gone, life)
            })
            .collect();
        for job in &obs.jobs {
            let has_workers = !job.workers.is_empty() || job.workers_seen_at.is_some();
            if job.state.is_finished() {
                let mut life = self.lives.remove(&job.job_id).unwrap_or_default();
                life.connected |= has_workers;
                life.ran |= job.started_at.is_some();
                ends.push((job.job_id.clone(), job.state, life));
                continue;
            }
            let life = self.lives.entry(job.job_id.clone()).or_default();
            if has_workers && !life.connected {
                life.connected = true;
                connected = true;
            }
            life.ran |= job.state == JobState::Running || job.started_at.is_some();
        }
        for (id, state, life) in ends {
            if !self.judged.insert(id.clone()) {
                continue;
            }
            let scaled_down = matches!(
                self.ended.get(&id),
                Some(Ending::Retiring | Ending::Cancelled(CancelReason::ScaleDown))
            );
            let never_tried = state == JobState::Cancelled && !life.ran;
            if !life.connected && !scaled_down && !never_tried {
                start_failures += 1;
                self.failures.last_start_failure = Some(id);
            }
        }
        let f = &mut self.failures;
        if connected {
            f.start_consecutive = 0;
        }
        f.start_consecutive = f.start_consecutive.saturating_add(start_failures);
        f.start_total = f.start_total.saturating_add(u64::from(start_failures));
        if obs.submit_failures > 0 {
            f.consecutive = f.consecutive.saturating_add(obs.submit_failures);
            f.total = f.total.saturating_add(u64::from(obs.submit_failures));
        } else if obs.submit_successes > 0 {
            f.consecutive = 0;
        }
        if obs.submit_failures > 0 || start_failures > 0 {
            self.backoff_level = self.backoff_level.saturating_add(1);
            let factor = 2f64.powi(self.backoff_level.saturating_sub(1).min(62) as i32);
            let delay = (self.config.backoff_initial * factor).min(self.config.backoff_max);
            f.retry_at = Some(obs.now + delay);
        } else if f.consecutive == 0 && f.start_consecutive == 0 {
            f.retry_at = None;
            self.backoff_level = 0;
        }
        if f.paused.is_none() {
            let reason = if f.start_consecutive >= self.config.pause_after_start_failures {
                Some(PauseReason::StartFailures {
                    jobs: f.start_consecutive,
                    last_job: f.last_start_failure.clone().unwrap_or_default(),
                })
            } else if f.consecutive >= self.config.pause_after_submit_failures {
                Some(PauseReason::SubmitFailures {
                    count: f.consecutive,
                })
            } else {
                None
            };
            f.paused = reason.map(|reason| Pause {
                reason,
                since: obs.now,
            });
        }
    }
}
