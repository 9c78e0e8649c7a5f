//! The scaling policy of a deployed cluster, as a sans-IO state machine.
//!
//! Why a state machine: scaling is where dask-jobqueue goes wrong (see
//! shared/notes/anchors.md) and where bugs only show after hours on a real queue. Keeping
//! the policy free of clocks, sockets and batch commands lets every rule be tested tick by
//! tick, and a property test drive thousands of random histories through it. The daemon
//! gathers an [`Observation`] (the target, the jobs with their batch states and connected
//! workers, the scheduler's load, the time as seconds), calls [`Scaler::tick`], and carries out
//! the [`Decision`]s. The [`Scaler`] itself remembers only what cannot be observed: the
//! recent wishes to scale down, the submission back-off, and which jobs it already decided to
//! end.
//!
//! # Rules
//! - Everything is counted in **jobs**: K workers with P processes per job is ceil(K/P) jobs.
//!   Comparing whole jobs with whole jobs is what prevents dask-jobqueue's start/kill loop
//!   with P > 1 (#498: Adaptive asks for 5 workers, gets 8, retires 3 single workers, which
//!   cancels a whole job, leaving 4 < 5, so it starts one again, forever).
//! - A job is *counted* while it is pending, running or being submitted, unless the scaler
//!   already decided to end it (cancel or retire) or all its connected workers are retiring.
//!   Finished jobs (completed, failed, cancelled, gone) are not counted, so while the target
//!   still wants them they are replaced on the same tick.
//! - Health, checked first on every tick, whatever the target:
//!   a running job none of whose workers ever connected within `startup_timeout` seconds of
//!   its start (the time it was first seen running: queue waits do not count) is cancelled
//!   ([`CancelReason::StartupTimeout`]); a running job whose workers all left, and stayed
//!   gone for `workers_lost_grace` seconds, is cancelled ([`CancelReason::WorkersLost`]).
//! - Wanted jobs: `Fixed { workers }` wants ceil(workers/P). `Adaptive` wants
//!   ceil(clamp(W, minimum, maximum) / P), where W is [`adaptive_workers`]:
//!   with T = queued + processing tasks, if T = 0 then W = 0, else
//!   cores = clamp(ceil(work_seconds / target_duration), 1, T) and
//!   W = ceil(cores / threads_per_worker). This is Dask's `adaptive_target` for CPU
//!   (occupancy over target duration, at most one core per task, divided by threads per
//!   worker); `work_seconds` is the estimated duration of all unfinished work (tasks waiting,
//!   queued or processing, times their observed mean duration). Unlike Dask, W does not depend
//!   on the workers now connected, so it cannot feed back on itself. Program tasks (task
//!   arrays) count by the threads they reserve (`Load::program_cpus`): cores is at least
//!   that, so 200 queued one-cpu programs want 200 cores (then the maximum bounds it).
//! - Scale up at once. Scale down: `Fixed` at once; `Adaptive` only when `wait_count`
//!   consecutive ticks each wanted fewer jobs than were counted, and then to the largest of
//!   those wishes.
//! - Scale down removes pending jobs first, newest first (the oldest are likeliest to start
//!   soon); then whole running jobs, those holding the fewest result bytes first (least data to
//!   move), ties to the oldest (least walltime left). A running job with connected workers is
//!   [`Decision::Retire`]d (the daemon retires its workers, which copies their unique results
//!   to survivors, then cancels the job); one without workers is simply cancelled.
//! - Never more than `max_pending_jobs` jobs pending (or being submitted) at once.
//! - Failures are failed submit commands, and *start failures*: jobs that ended (or were
//!   cancelled for the startup timeout) before any of their workers connected — a bad
//!   `--worker-command`, interface or memory kills every job the same way, so replacing each
//!   at once would submit a job a second forever (HyperQueue's "allocation failures").
//!   A job cancelled while it was pending (by us or anyone) never tried to start and is
//!   not one; nor is a job we scaled down.
//! - After a tick that reports failures, no submission for `backoff_initial` seconds, doubling
//!   with each further such tick, capped at `backoff_max`. The back-off ends when every
//!   streak is broken: a submit command succeeds *and* no start failure is pending
//!   (a job's workers connected since the last one).
//! - After `pause_after_start_failures` start failures in a row (3, as HyperQueue), or
//!   `pause_after_submit_failures` failed submit commands in a row, the scaler *pauses*: it
//!   submits nothing until [`Scaler::resume`] (the daemon calls it on every `scale` or
//!   `adapt` request). Health checks and scaling down go on while paused.
//!   [`Scaler::failures`] shows the counts, the retry time and the pause with its reason.
//! - A job is decided about at most once: a job once cancelled or retired is never cancelled
//!   or retired again, and no longer counted. Retrying a cancel command that failed is the
//!   daemon's business.
//!
//! # Files
//! This file holds the scaler's memory and the tick (health, counting, scaling up and down).
//! `target.rs` holds what is asked for and the arithmetic from targets to jobs;
//! `observation.rs` the inputs; `decision.rs` the outputs; `failures.rs` the failure counts,
//! back-off and pause; `tests.rs` the unit and property tests.

mod decision;
mod failures;
mod observation;
mod target;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use self::decision::{Blocked, CancelReason, Decision, Ending, Tick};
pub use self::failures::{Failures, Pause, PauseReason};
pub use self::observation::{JobObservation, Load, Observation, WorkerObservation};
pub use self::target::{
    adaptive_workers, wanted_jobs, ScalerConfig, Target, DEFAULT_MAX_PENDING_JOBS,
    DEFAULT_PAUSE_AFTER_START_FAILURES, DEFAULT_PAUSE_AFTER_SUBMIT_FAILURES,
    DEFAULT_TARGET_DURATION, DEFAULT_WAIT_COUNT,
};

use super::JobState;
use crate::error::Result;

/// What the scaler notes about a live job between ticks.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// First tick at which it was seen running (when the observation has no start time).
    running_since: Option<f64>,
    /// First tick at which it was seen running with no workers left.
    empty_since: Option<f64>,
}

/// What the scaler knows of a live job, to judge it once it ends.
#[derive(Clone, Copy, Debug, Default)]
struct Life {
    /// A worker of it connected.
    connected: bool,
    /// It was seen running (a job cancelled while pending never tried to start).
    ran: bool,
}

/// The scaling policy's memory. See the module documentation for the rules.
#[derive(Clone, Debug)]
pub struct Scaler {
    config: ScalerConfig,
    last_target: Option<Target>,
    /// The wanted job counts of the latest consecutive ticks that wanted fewer than counted.
    lower_wishes: Vec<usize>,
    /// Jobs decided about, kept for good (a few bytes per job ended) so none is ended twice.
    ended: BTreeMap<String, Ending>,
    /// Live jobs only; forgotten once finished or no longer observed.
    seen: BTreeMap<String, Seen>,
    /// Live jobs observed, until they end (or vanish from the observations).
    lives: BTreeMap<String, Life>,
    /// Jobs whose end was judged, kept for good so that none is counted twice (a finished job
    /// may be observed more than once).
    judged: std::collections::BTreeSet<String>,
    backoff_level: u32,
    failures: Failures,
}

impl Scaler {
    pub fn new(config: ScalerConfig) -> Result<Scaler> {
        config.validate()?;
        Ok(Scaler {
            config,
            last_target: None,
            lower_wishes: Vec::new(),
            ended: BTreeMap::new(),
            seen: BTreeMap::new(),
            lives: BTreeMap::new(),
            judged: Default::default(),
            backoff_level: 0,
            failures: Failures::default(),
        })
    }

    pub fn config(&self) -> &ScalerConfig {
        &self.config
    }

    /// Failures, when submitting resumes, and the pause if any.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Ends a pause and forgets the streaks and the back-off (the totals stay): the user
    /// changed something, or wants another try. The daemon calls it on `scale` and `adapt`.
    pub fn resume(&mut self) {
        self.failures.paused = None;
        self.failures.consecutive = 0;
        self.failures.start_consecutive = 0;
        self.failures.retry_at = None;
        self.backoff_level = 0;
    }

    /// How the scaler decided to end `job_id`, if it did.
    pub fn ending(&self, job_id: &str) -> Option<Ending> {
        self.ended.get(job_id).copied()
    }

    /// Looks at one observation and decides. Call it at the adapt interval (Dask: 1 s), and
    /// right after the target changes.
    pub fn tick(&mut self, obs: &Observation) -> Tick {
        let now = obs.now;
        self.note_failures(obs);
        if self.last_target.as_ref() != Some(&obs.target) {
            self.lower_wishes.clear();
            self.last_target = Some(obs.target.clone());
        }
        self.seen.retain(|id, _| {
            obs.jobs
                .iter()
                .any(|j| &j.job_id == id && !j.state.is_finished())
        });

        // Health first: jobs that will never give us workers are ended and not counted.
        let mut decisions = Vec::new();
        let mut counted: Vec<&JobObservation> = Vec::new();
        for job in &obs.jobs {
            if job.state.is_finished() || self.ended.contains_key(&job.job_id) {
                continue;
            }
            if !job.workers.is_empty() && job.workers.iter().all(|w| w.retiring) {
                // Retired by someone else, or draining before its walltime: on its way out.
                continue;
            }
            if job.state == JobState::Running {
                if let Some(reason) = self.unhealthy(job, now) {
                    self.ended
                        .insert(job.job_id.clone(), Ending::Cancelled(reason));
                    self.seen.remove(&job.job_id);
                    decisions.push(Decision::Cancel {
                        job_id: job.job_id.clone(),
                        reason,
                    });
                    continue;
                }
            }
            counted.push(job);
        }
        let pending = counted
            .iter()
            .filter(|j| j.state == JobState::Pending)
            .count()
            + obs.submitting;
        let active = counted.len() + obs.submitting;

        let wanted = wanted_jobs(
            &obs.target,
            &obs.load,
            self.config.processes,
            self.config.threads_per_worker,
        );
        let target = match obs.target {
            Target::Fixed { .. } => wanted,
            Target::Adaptive { wait_count, .. } => {
                if wanted >= active {
                    self.lower_wishes.clear();
                    wanted
                } else {
                    let need = wait_count.max(1) as usize;
                    self.lower_wishes.push(wanted);
                    if self.lower_wishes.len() >= need {
                        let t = self.lower_wishes.iter().copied().max().unwrap_or(wanted);
                        self.lower_wishes.clear();
                        t
                    } else {
                        active
                    }
                }
            }
        };

        let mut blocked = None;
        if target > active {
            let need = target - active;
            let room = self.config.max_pending_jobs.saturating_sub(pending);
            match self.failures.retry_at {
                _ if self.failures.paused.is_some() => blocked = Some(Blocked::Paused),
                Some(retry_at) if now < retry_at => {
                    blocked = Some(Blocked::Backoff { retry_at });
                }
                _ => {
                    let n = need.min(room);
                    if n > 0 {
                        decisions.push(Decision::Submit { jobs: n });
                    }
                    if n < need {
                        blocked = Some(Blocked::PendingCap {
                            pending,
                            cap: self.config.max_pending_jobs,
                        });
                    }
                }
            }
        } else if target < active {
            decisions.extend(self.scale_down(&counted, active - target));
        }

        Tick {
            decisions,
            wanted_jobs: wanted,
            target_jobs: target,
            counted_jobs: active,
            pending_jobs: pending,
            blocked,
        }
    }

    /// For a running job not yet ended: the reason to cancel it, if any.
    fn unhealthy(&mut self, job: &JobObservation, now: f64) -> Option<CancelReason> {
        let seen = self.seen.entry(job.job_id.clone()).or_default();
        let started = job
            .started_at
            .unwrap_or_else(|| *seen.running_since.get_or_insert(now));
        let ever_connected = job.workers_seen_at.is_some() || !job.workers.is_empty();
        if !ever_connected {
            return (now - started >= self.config.startup_timeout)
                .then_some(CancelReason::StartupTimeout);
        }
        if job.workers.is_empty() {
            let since = *seen.empty_since.get_or_insert(now);
            return (now - since >= self.config.workers_lost_grace)
                .then_some(CancelReason::WorkersLost);
        }
        seen.empty_since = None;
        None
    }

    /// Ends `excess` of the counted jobs: pending ones newest first, then running ones with the
    /// least data, oldest first. Jobs being submitted cannot be chosen; they are dealt with on
    /// a later tick, once they have an id.
    fn scale_down(&mut self, counted: &[&JobObservation], excess: usize) -> Vec<Decision> {
        let mut pending: Vec<&JobObservation> = counted
            .iter()
            .copied()
            .filter(|j| j.state == JobState::Pending)
            .collect();
        pending.sort_by(|a, b| {
            b.submitted_at
                .total_cmp(&a.submitted_at)
                .then_with(|| b.job_id.cmp(&a.job_id))
        });
        let bytes = |j: &JobObservation| {
            j.workers
                .iter()
                .fold(0u64, |s, w| s.saturating_add(w.held_bytes))
        };
        let mut running: Vec<&JobObservation> = counted
            .iter()
            .copied()
            .filter(|j| j.state == JobState::Running)
            .collect();
        running.sort_by(|a, b| {
            bytes(a)
                .cmp(&bytes(b))
                .then_with(|| {
                    let start = |j: &JobObservation| j.started_at.unwrap_or(j.submitted_at);
                    start(a).total_cmp(&start(b))
                })
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        let mut out = Vec::new();
        for job in pending.into_iter().chain(running).take(excess) {
            self.seen.remove(&job.job_id);
            if job.workers.is_empty() {
                self.ended.insert(
                    job.job_id.clone(),
                    Ending::Cancelled(CancelReason::ScaleDown),
                );
                out.push(Decision::Cancel {
                    job_id: job.job_id.clone(),
                    reason: CancelReason::ScaleDown,
                });
            } else {
                self.ended.insert(job.job_id.clone(), Ending::Retiring);
                out.push(Decision::Retire {
                    job_id: job.job_id.clone(),
                    workers: job.workers.iter().map(|w| w.name.clone()).collect(),
                });
            }
        }
        out
    }
}
