//! What the user asks for and how the scaler is tuned: [`Target`] (fixed or adaptive, in
//! workers), [`ScalerConfig`] with its defaults and checks, and the pure arithmetic that turns a
//! target into jobs ([`wanted_jobs`], [`adaptive_workers`]).
//!
//! Why a file of its own: these are validated where they enter (the CLI, the control socket)
//! and are plain functions of their inputs; the scaler's memory ([`super::Scaler`]) only
//! consumes them.

use serde::{Deserialize, Serialize};

use super::Load;
use crate::error::{Error, Result};

/// Dask's defaults for `adapt`.
pub const DEFAULT_TARGET_DURATION: f64 = 5.0;
pub const DEFAULT_WAIT_COUNT: u32 = 3;
/// Sites commonly limit queued jobs per user; dask-jobqueue has no cap at all (#365).
pub const DEFAULT_MAX_PENDING_JOBS: usize = 10;

/// What the user asked for, in workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Target {
    /// `scale K`: exactly this many workers (rounded up to whole jobs).
    Fixed { workers: usize },
    /// `adapt --minimum A --maximum B`: follow the queued work within the bounds.
    Adaptive {
        minimum: usize,
        maximum: usize,
        /// Seconds the queued work should take with the workers wanted.
        target_duration: f64,
        /// Consecutive ticks that must want fewer jobs before scaling down.
        wait_count: u32,
    },
}

impl Target {
    /// `scale K --jobs`: K whole jobs of `processes` workers each.
    pub fn fixed_jobs(jobs: usize, processes: usize) -> Target {
        Target::Fixed {
            workers: jobs.saturating_mul(processes.max(1)),
        }
    }

    /// `adapt --jobs`: bounds given in jobs, converted to workers.
    pub fn adaptive_jobs(
        minimum_jobs: usize,
        maximum_jobs: usize,
        processes: usize,
        target_duration: f64,
        wait_count: u32,
    ) -> Target {
        let p = processes.max(1);
        Target::Adaptive {
            minimum: minimum_jobs.saturating_mul(p),
            maximum: maximum_jobs.saturating_mul(p),
            target_duration,
            wait_count,
        }
    }

    /// Checks the user's numbers; the errors are [`Error::Invalid`] (exit code 2).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Target::Fixed { .. } => Ok(()),
            Target::Adaptive {
                minimum,
                maximum,
                target_duration,
                wait_count,
            } => {
                if minimum > maximum {
                    return Err(Error::invalid(format!(
                        "adapt: the minimum ({minimum}) is above the maximum ({maximum})"
                    )));
                }
                if !(target_duration.is_finite() && target_duration > 0.0) {
                    return Err(Error::invalid(format!(
                        "adapt: the target duration must be a positive number of seconds, \
                         not {target_duration}"
                    )));
                }
                if wait_count == 0 {
                    return Err(Error::invalid(
                        "adapt: the wait count must be at least 1".to_string(),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Target {
    /// The target as people read it, with `processes` workers per job.
    pub fn describe(&self, processes: usize) -> String {
        let jobs = |w: usize| w.div_ceil(processes.max(1));
        match *self {
            Target::Fixed { workers } => format!(
                "{workers} worker(s) = {} job(s) of {processes} process(es)",
                jobs(workers)
            ),
            Target::Adaptive {
                minimum,
                maximum,
                target_duration,
                wait_count,
            } => format!(
                "adaptive, {minimum}..{maximum} workers ({}..{} jobs), target duration \
                 {target_duration} s, wait count {wait_count}",
                jobs(minimum),
                jobs(maximum)
            ),
        }
    }
}

/// The knobs of the policy, fixed for a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalerConfig {
    /// Worker processes per job (P).
    pub processes: usize,
    /// Threads of each worker process, to turn cores into workers under adapt.
    pub threads_per_worker: usize,
    /// Jobs pending (or being submitted) at once, at most.
    pub max_pending_jobs: usize,
    /// Seconds after a job starts running within which one of its workers must connect.
    pub startup_timeout: f64,
    /// Seconds a running job may have no workers left (after having had some) before it is
    /// cancelled.
    pub workers_lost_grace: f64,
    /// The first back-off after failed submissions, in seconds; it doubles on each failure.
    pub backoff_initial: f64,
    /// The longest back-off, in seconds.
    pub backoff_max: f64,
    /// Jobs in a row that end before any worker connects, before submitting pauses.
    #[serde(default = "default_pause_after_start_failures")]
    pub pause_after_start_failures: u32,
    /// Failed submit commands in a row before submitting pauses.
    #[serde(default = "default_pause_after_submit_failures")]
    pub pause_after_submit_failures: u32,
}

/// HyperQueue pauses an allocation queue after 3 failed allocations in a row.
pub const DEFAULT_PAUSE_AFTER_START_FAILURES: u32 = 3;
/// A submit command can fail for a minute while a controller restarts: with the back-off
/// (1, 2, 4 ... 60 s) ten failures span about four minutes.
pub const DEFAULT_PAUSE_AFTER_SUBMIT_FAILURES: u32 = 10;

fn default_pause_after_start_failures() -> u32 {
    DEFAULT_PAUSE_AFTER_START_FAILURES
}

fn default_pause_after_submit_failures() -> u32 {
    DEFAULT_PAUSE_AFTER_SUBMIT_FAILURES
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            processes: 1,
            threads_per_worker: 1,
            max_pending_jobs: DEFAULT_MAX_PENDING_JOBS,
            startup_timeout: 300.0,
            workers_lost_grace: 30.0,
            backoff_initial: 1.0,
            backoff_max: 60.0,
            pause_after_start_failures: DEFAULT_PAUSE_AFTER_START_FAILURES,
            pause_after_submit_failures: DEFAULT_PAUSE_AFTER_SUBMIT_FAILURES,
        }
    }
}

impl ScalerConfig {
    /// Checks the numbers; the errors are [`Error::Invalid`] (exit code 2).
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(Error::invalid(format!("{name} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("processes per job", self.processes)?;
        positive("threads per worker", self.threads_per_worker)?;
        positive("max_pending_jobs", self.max_pending_jobs)?;
        positive(
            "the start failures before a pause",
            self.pause_after_start_failures as usize,
        )?;
        positive(
            "the submit failures before a pause",
            self.pause_after_submit_failures as usize,
        )?;
        for (name, v) in [
            ("the startup timeout", self.startup_timeout),
            ("the grace for lost workers", self.workers_lost_grace),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "{name} must be a number of seconds, not {v}"
                )));
            }
        }
        if !(self.backoff_initial.is_finite()
            && self.backoff_initial > 0.0
            && self.backoff_max.is_finite()
            && self.backoff_max >= self.backoff_initial)
        {
            return Err(Error::invalid(format!(
                "the submission back-off must satisfy 0 < initial ({}) <= maximum ({})",
                self.backoff_initial, self.backoff_max
            )));
        }
        Ok(())
    }
}

/// Workers wanted for `load` under adapt, before bounds; see the module documentation.
pub fn adaptive_workers(load: &Load, target_duration: f64, threads_per_worker: usize) -> usize {
    let tasks = load.queued_tasks.saturating_add(load.processing_tasks);
    let programs = usize::try_from(load.program_cpus).unwrap_or(usize::MAX);
    if tasks == 0 && programs == 0 {
        return 0;
    }
    if tasks == 0 {
        return programs.div_ceil(threads_per_worker.max(1));
    }
    let cores = load.work_seconds / target_duration;
    let cores = if cores.is_nan() || cores <= 1.0 {
        1
    } else if cores >= tasks as f64 {
        tasks
    } else {
        // Below `tasks`, so it fits.
        (cores.ceil() as usize).clamp(1, tasks)
    };
    // Program tasks reserve their cpus whatever they last: one core each is not enough.
    cores.max(programs).div_ceil(threads_per_worker.max(1))
}

/// The jobs `target` wants, with P processes per job, before waiting for agreement.
pub fn wanted_jobs(
    target: &Target,
    load: &Load,
    processes: usize,
    threads_per_worker: usize,
) -> usize {
    let p = processes.max(1);
    match *target {
        Target::Fixed { workers } => workers.div_ceil(p),
        Target::Adaptive {
            minimum,
            maximum,
            target_duration,
            ..
        } => {
            let w = adaptive_workers(load, target_duration, threads_per_worker);
            w.clamp(minimum, maximum.max(minimum)).div_ceil(p)
        }
    }
}
