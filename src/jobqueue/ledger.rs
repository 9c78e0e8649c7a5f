//! The job ledger: every batch job a named cluster ever submitted, persisted on disk.
//!
//! Why it exists: dask-jobqueue keeps its jobs only in the memory of the Python process that
//! submitted them, so when that process dies its jobs live on and nobody can cancel them. Our
//! daemon writes each job here *before* it runs the submit command (state
//! [`LedgerState::Submitting`], with the job name it is about to use) and again *after* (the
//! batch job id, [`LedgerState::Pending`]). A crash between the two still leaves a record whose
//! job can be found by its name (`rdask-<cluster>-<seq>`), so `down --force` can cancel
//! everything the cluster ever started even when the daemon is dead.
//!
//! The file is JSON, rewritten atomically on every change (a temporary file in the same
//! directory, fsync, rename over the ledger, fsync of the directory), so a reader or a crash
//! sees either the old ledger or the new one, never half of one. Each change is applied to a
//! copy first and only adopted once it is on disk: the ledger in memory never claims more than
//! the file does. Times are plain seconds (the daemon passes Unix time); nothing here reads a
//! clock, so the same numbers can be handed to the scaler.
//!
//! One writer at a time: the daemon while it lives, `down --force` only once it is dead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scaler::CancelReason;
use super::JobState;
use crate::error::{Error, Result};

/// The format version written in the file; files from a newer version are refused.
pub const LEDGER_VERSION: u32 = 1;

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

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Data {
    version: u32,
    cluster: String,
    next_seq: u64,
    closed: bool,
    closed_at: Option<f64>,
    jobs: Vec<JobRecord>,
}

/// The ledger of one cluster, bound to its file.
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
    data: Data,
}

impl Ledger {
    /// Loads the ledger of `cluster` from `path`. A missing file is an empty ledger (nothing
    /// is written until the first change); an unreadable, corrupt, foreign or newer one is an
    /// error that names the file.
    pub fn open(path: &Path, cluster: &str) -> Result<Ledger> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ledger {
                    path: path.to_path_buf(),
                    data: Data {
                        version: LEDGER_VERSION,
                        cluster: cluster.to_string(),
                        next_seq: 0,
                        closed: false,
                        closed_at: None,
                        jobs: Vec::new(),
                    },
                });
            }
            Err(e) => {
                return Err(Error::io(format!(
                    "reading the job ledger {}",
                    path.display()
                ))(e))
            }
        };
        let data = Self::parse(path, cluster, &text)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            data,
        })
    }

    fn parse(path: &Path, cluster: &str, text: &str) -> Result<Data> {
        let corrupt = |why: String| {
            Error::runtime(format!(
                "the job ledger {} of cluster `{cluster}` is corrupt ({why}); it is the only \
                 record of the batch jobs this cluster submitted. Look for jobs named \
                 `rdask-{cluster}-*` in the batch queue and cancel them by hand before moving \
                 the file away",
                path.display(),
            ))
        };
        // Read the version first, so a newer file is refused as such rather than as corrupt.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v > u64::from(LEDGER_VERSION) => {
                return Err(Error::runtime(format!(
                    "the job ledger {} has format version {v}, newer than this rdask-jobqueue \
                     understands ({LEDGER_VERSION}); use the newer rdask-jobqueue that wrote it",
                    path.display()
                )))
            }
            Some(_) => {}
            None => return Err(corrupt("no format version".into())),
        }
        let data: Data = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if data.cluster != cluster {
            return Err(Error::runtime(format!(
                "the job ledger {} belongs to cluster `{}`, not `{cluster}`",
                path.display(),
                data.cluster
            )));
        }
        let mut seen_seq = std::collections::BTreeSet::new();
        for job in &data.jobs {
            if !seen_seq.insert(job.seq) || job.seq >= data.next_seq {
                return Err(corrupt(format!(
                    "job sequence number {} is invalid",
                    job.seq
                )));
            }
        }
        Ok(data)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cluster(&self) -> &str {
        &self.data.cluster
    }

    /// True once `down` finished: the cluster is over and must not submit again.
    pub fn is_closed(&self) -> bool {
        self.data.closed
    }

    pub fn closed_at(&self) -> Option<f64> {
        self.data.closed_at
    }

    /// Every job ever recorded, in submission order.
    pub fn jobs(&self) -> &[JobRecord] {
        &self.data.jobs
    }

    /// The job with this batch id: the latest one, since a finished job's id can come back
    /// (local jobs are process ids, and some sites recycle ids).
    pub fn job(&self, job_id: &str) -> Option<&JobRecord> {
        self.data
            .jobs
            .iter()
            .rfind(|j| j.job_id.as_deref() == Some(job_id))
    }

    /// The job with this sequence number.
    pub fn job_by_seq(&self, seq: u64) -> Option<&JobRecord> {
        self.data.jobs.iter().find(|j| j.seq == seq)
    }

    /// Jobs that may still be alive: submitting, pending or running. What `down` must cancel.
    pub fn unfinished(&self) -> impl Iterator<Item = &JobRecord> {
        self.data.jobs.iter().filter(|j| !j.is_finished())
    }

    /// The batch ids of the unfinished jobs: what `down --force` passes to the cancel command.
    pub fn unfinished_ids(&self) -> Vec<String> {
        self.unfinished().filter_map(|j| j.job_id.clone()).collect()
    }

    /// The names of jobs still `Submitting` (no id recorded): `down --force` must look these up
    /// by name in the batch queue, since the submit may or may not have happened.
    pub fn submitting_names(&self) -> Vec<String> {
        self.data
            .jobs
            .iter()
            .filter(|j| j.state == LedgerState::Submitting)
            .map(|j| j.name.clone())
            .collect()
    }

    /// Records a job about to be submitted and returns its sequence number and the name to
    /// submit it under. Call before running the submit command; refused once closed.
    pub fn begin_submit(&mut self, now: f64) -> Result<(u64, String)> {
        Ok(self.begin_submits(1, now)?.remove(0))
    }

    /// Records `n` jobs about to be submitted, in one write (the daemon then submits them side
    /// by side): their sequence numbers and names.
    pub fn begin_submits(&mut self, n: usize, now: f64) -> Result<Vec<(u64, String)>> {
        if self.data.closed {
            return Err(Error::runtime(format!(
                "cluster `{}` is closed (its ledger {} says so): it submits no more jobs",
                self.data.cluster,
                self.path.display()
            )));
        }
        self.change(|d| {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let seq = d.next_seq;
                let name = job_name(&d.cluster, seq);
                d.next_seq += 1;
                d.jobs.push(JobRecord {
                    seq,
                    name: name.clone(),
                    job_id: None,
                    state: LedgerState::Submitting,
                    recorded_at: now,
                    submitted_at: None,
                    started_at: None,
                    workers_seen_at: None,
                    ended_at: None,
                    end_reason: None,
                    detail: None,
                });
                out.push((seq, name));
            }
            Ok((n > 0, out))
        })
    }

    /// The submit command printed `job_id` for the job `seq`: it is now pending. Also used when
    /// a job left `Submitting` (the daemon died or the command timed out) is found by name.
    pub fn submitted(&mut self, seq: u64, job_id: &str, now: f64) -> Result<()> {
        let path = self.path.clone();
        self.change(|d| {
            // An id may come back once its job has finished, never while it may be alive.
            if let Some(other) = d
                .jobs
                .iter()
                .find(|j| j.job_id.as_deref() == Some(job_id) && !j.is_finished())
            {
                return Err(Error::runtime(format!(
                    "job id {job_id} is already recorded for job {} in {}, which may still run",
                    other.seq,
                    path.display()
                )));
            }
            let job = submitting_job(d, seq, &path)?;
            job.job_id = Some(job_id.to_string());
            job.state = LedgerState::Pending;
            job.submitted_at = Some(now);
            Ok((true, ()))
        })
    }

    /// The submit command for job `seq` failed and no job exists. Only when the failure is
    /// certain: if the command timed out, leave the job `Submitting` and resolve it later by
    /// name ([`Ledger::submitted`] if found, this if not).
    pub fn submit_failed(&mut self, seq: u64, message: &str, now: f64) -> Result<()> {
        let path = self.path.clone();
        self.change(|d| {
            let job = submitting_job(d, seq, &path)?;
            job.state = LedgerState::NotSubmitted;
            job.ended_at = Some(now);
            job.end_reason = Some(EndReason::SubmitFailed);
            job.detail = Some(message.to_string());
            Ok((true, ()))
        })
    }

    /// Applies the batch states from one poll (ids not ours are ignored), saving once. Returns
    /// the ids whose state changed. Completed, failed and cancelled are final; `gone` is the
    /// batch system's silence rather than a fact, so a job seen alive again comes back. A job
    /// first seen finished gets its end time and, unless we already gave one, the reason the
    /// state implies.
    pub fn update_states(
        &mut self,
        states: &BTreeMap<String, JobState>,
        now: f64,
    ) -> Result<Vec<String>> {
        self.change(|d| {
            let mut changed = Vec::new();
            // A state belongs to the latest job with that id (ids can come back).
            let mut seen = std::collections::BTreeSet::new();
            for job in d.jobs.iter_mut().rev() {
                let Some(id) = job.job_id.as_deref() else {
                    continue;
                };
                if !seen.insert(id.to_string()) {
                    continue;
                }
                let Some(&new) = states.get(id) else {
                    continue;
                };
                let new_state = LedgerState::from(new);
                if new_state == job.state
                    || matches!(
                        job.state,
                        LedgerState::Completed | LedgerState::Failed | LedgerState::Cancelled
                    )
                {
                    continue;
                }
                if job.state == LedgerState::Gone {
                    // Back from the dead: it was never over.
                    job.ended_at = None;
                    if job.end_reason == Some(EndReason::Vanished) {
                        job.end_reason = None;
                    }
                }
                job.state = new_state;
                if new == JobState::Running && job.started_at.is_none() {
                    job.started_at = Some(now);
                }
                if new.is_finished() {
                    job.ended_at.get_or_insert(now);
                    if job.end_reason.is_none() {
                        job.end_reason = EndReason::inferred(new);
                    }
                }
                changed.push(id.to_string());
            }
            changed.reverse();
            Ok((!changed.is_empty(), changed))
        })
    }

    /// One job's batch state; see [`Ledger::update_states`]. True if it changed.
    pub fn set_state(&mut self, job_id: &str, state: JobState, now: f64) -> Result<bool> {
        let states = BTreeMap::from([(job_id.to_string(), state)]);
        Ok(!self.update_states(&states, now)?.is_empty())
    }

    /// A worker of `job_id` connected: records the first time. True if this was the first (an
    /// unknown id, a worker of a job not ours, is ignored and gives false).
    pub fn workers_seen(&mut self, job_id: &str, now: f64) -> Result<bool> {
        self.change(|d| {
            match d
                .jobs
                .iter_mut()
                .rfind(|j| j.job_id.as_deref() == Some(job_id))
            {
                Some(job) if job.workers_seen_at.is_none() => {
                    job.workers_seen_at = Some(now);
                    Ok((true, true))
                }
                _ => Ok((false, false)),
            }
        })
    }

    /// Says why `job_id` ends. Record our own reasons *before* running the cancel command, so
    /// that the `cancelled` state polled afterwards is not taken for a cancel from outside.
    /// Overrides an inferred reason (the daemon knows a walltime when it sees one).
    pub fn set_end_reason(&mut self, job_id: &str, reason: EndReason) -> Result<()> {
        let path = self.path.clone();
        self.change(|d| {
            let job = d
                .jobs
                .iter_mut()
                .rfind(|j| j.job_id.as_deref() == Some(job_id))
                .ok_or_else(|| {
                    Error::runtime(format!(
                        "job {job_id} is not in the job ledger {}",
                        path.display()
                    ))
                })?;
            let changed = job.end_reason != Some(reason);
            job.end_reason = Some(reason);
            Ok((changed, ()))
        })
    }

    /// Notes for `status` why `job_id` ended, as far as we can tell (its batch state and the
    /// end of its output, when it died before a worker connected). Unknown ids are ignored.
    pub fn set_detail(&mut self, job_id: &str, detail: &str) -> Result<()> {
        self.change(|d| {
            match d
                .jobs
                .iter_mut()
                .rfind(|j| j.job_id.as_deref() == Some(job_id))
            {
                Some(job) if job.detail.as_deref() != Some(detail) => {
                    job.detail = Some(detail.to_string());
                    Ok((true, ()))
                }
                _ => Ok((false, ())),
            }
        })
    }

    /// Marks the whole cluster closed (`down` finished). Idempotent.
    pub fn close(&mut self, now: f64) -> Result<()> {
        self.change(|d| {
            if d.closed {
                return Ok((false, ()));
            }
            d.closed = true;
            d.closed_at = Some(now);
            Ok((true, ()))
        })
    }

    /// Applies `f` to a copy; if it reports a change, writes the copy and only then adopts it.
    fn change<T>(&mut self, f: impl FnOnce(&mut Data) -> Result<(bool, T)>) -> Result<T> {
        let mut next = self.data.clone();
        let (changed, out) = f(&mut next)?;
        if changed {
            // JSON has no NaN or infinity (serde_json would write `null` and then refuse to read
            // its own file back): refuse the change rather than write a ledger we cannot load.
            if let Some(bad) = times(&next).find(|t| !t.is_finite()) {
                return Err(Error::runtime(format!(
                    "not recording the time {bad} in the job ledger {}: times must be finite",
                    self.path.display()
                )));
            }
            write_atomically(&self.path, &next)?;
            self.data = next;
        }
        Ok(out)
    }
}

/// Every time the ledger holds.
fn times(d: &Data) -> impl Iterator<Item = f64> + '_ {
    d.closed_at.into_iter().chain(d.jobs.iter().flat_map(|j| {
        [
            Some(j.recorded_at),
            j.submitted_at,
            j.started_at,
            j.workers_seen_at,
            j.ended_at,
        ]
        .into_iter()
        .flatten()
    }))
}

fn submitting_job<'a>(d: &'a mut Data, seq: u64, path: &Path) -> Result<&'a mut JobRecord> {
    let job = d.jobs.iter_mut().find(|j| j.seq == seq).ok_or_else(|| {
        Error::runtime(format!(
            "job {seq} is not in the job ledger {}",
            path.display()
        ))
    })?;
    if job.state != LedgerState::Submitting {
        return Err(Error::runtime(format!(
            "job {seq} in the job ledger {} is {}, not submitting",
            path.display(),
            job.state
        )));
    }
    Ok(job)
}

/// Temporary file in the same directory, fsync, rename over `path`, fsync the directory (so
/// the rename itself survives a crash).
fn write_atomically(path: &Path, data: &Data) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(data)
        .map_err(|e| Error::runtime(format!("writing the job ledger {}: {e}", path.display())))?;
    json.push(b'\n');
    crate::files::write_atomic(path, &json, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        (dir, path)
    }

    fn states(pairs: &[(&str, JobState)]) -> BTreeMap<String, JobState> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn missing_file_is_an_empty_ledger_and_is_not_created_until_a_change() {
        let (_dir, path) = fresh();
        let l = Ledger::open(&path, "c").unwrap();
        assert!(l.jobs().is_empty());
        assert!(!l.is_closed());
        assert_eq!(l.cluster(), "c");
        assert!(!path.exists());
    }

    #[test]
    fn job_names_carry_the_cluster_and_sequence() {
        assert_eq!(job_name("default", 7), "rdask-default-7");
    }

    #[test]
    fn records_before_and_after_submission_and_persists_each_step() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (seq, name) = l.begin_submit(100.0).unwrap();
        assert_eq!((seq, name.as_str()), (0, "rdask-c-0"));
        // On disk already, before any submit command ran.
        let disk = Ledger::open(&path, "c").unwrap();
        assert_eq!(disk.jobs().len(), 1);
        assert_eq!(disk.jobs()[0].state, LedgerState::Submitting);
        assert_eq!(disk.jobs()[0].job_id, None);
        assert_eq!(disk.submitting_names(), vec!["rdask-c-0".to_string()]);

        l.submitted(seq, "4242", 101.0).unwrap();
        let disk = Ledger::open(&path, "c").unwrap();
        let j = disk.job("4242").unwrap();
        assert_eq!(j.state, LedgerState::Pending);
        assert_eq!(j.submitted_at, Some(101.0));
        assert_eq!(j.recorded_at, 100.0);
        assert!(disk.submitting_names().is_empty());
        assert_eq!(disk.unfinished_ids(), vec!["4242".to_string()]);
    }

    #[test]
    fn sequence_numbers_are_never_reused_across_reloads() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.begin_submit(0.0).unwrap().0, 0);
        assert_eq!(l.begin_submit(0.0).unwrap().0, 1);
        let mut l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.begin_submit(0.0).unwrap(), (2, "rdask-c-2".to_string()));
        assert_eq!(l.job_by_seq(1).unwrap().name, "rdask-c-1");
    }

    #[test]
    fn a_crash_between_record_and_submit_leaves_a_job_to_find_by_name() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (a, _) = l.begin_submit(0.0).unwrap();
        l.submitted(a, "1", 0.0).unwrap();
        let (_b, _) = l.begin_submit(1.0).unwrap();
        drop(l); // the daemon dies before sbatch returns
        let l = Ledger::open(&path, "c").unwrap();
        let unfinished: Vec<_> = l.unfinished().map(|j| j.name.clone()).collect();
        assert_eq!(unfinished, vec!["rdask-c-0", "rdask-c-1"]);
        assert_eq!(l.unfinished_ids(), vec!["1".to_string()]);
        assert_eq!(l.submitting_names(), vec!["rdask-c-1".to_string()]);
    }

    #[test]
    fn a_submitting_job_found_later_by_name_gets_its_id() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (seq, _) = l.begin_submit(0.0).unwrap();
        let mut l = Ledger::open(&path, "c").unwrap();
        l.submitted(seq, "77", 5.0).unwrap();
        assert_eq!(l.job("77").unwrap().seq, seq);
    }

    #[test]
    fn failed_submission_is_finished_with_its_message() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (seq, _) = l.begin_submit(0.0).unwrap();
        l.submit_failed(seq, "sbatch: error: invalid partition", 2.0)
            .unwrap();
        let l = Ledger::open(&path, "c").unwrap();
        let j = l.job_by_seq(seq).unwrap();
        assert_eq!(j.state, LedgerState::NotSubmitted);
        assert!(j.is_finished());
        assert_eq!(j.end_reason, Some(EndReason::SubmitFailed));
        assert_eq!(
            j.detail.as_deref(),
            Some("sbatch: error: invalid partition")
        );
        assert_eq!(j.ended_at, Some(2.0));
        assert_eq!(l.unfinished().count(), 0);
    }

    #[test]
    fn submit_steps_are_checked() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        assert!(l.submitted(0, "1", 0.0).is_err(), "unknown seq");
        let (a, _) = l.begin_submit(0.0).unwrap();
        l.submitted(a, "1", 0.0).unwrap();
        let err = l.submitted(a, "2", 0.0).unwrap_err().to_string();
        assert!(err.contains("not submitting"), "{err}");
        assert!(l.submit_failed(a, "x", 0.0).is_err());
        let (b, _) = l.begin_submit(0.0).unwrap();
        let err = l.submitted(b, "1", 0.0).unwrap_err().to_string();
        assert!(err.contains("already recorded"), "{err}");
        // The failed steps changed nothing, in memory or on disk.
        assert_eq!(l.job_by_seq(b).unwrap().state, LedgerState::Submitting);
        let disk = Ledger::open(&path, "c").unwrap();
        assert_eq!(disk.jobs(), l.jobs());
    }

    #[test]
    fn an_id_comes_back_only_after_its_job_finished_and_then_means_the_new_job() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (a, _) = l.begin_submit(0.0).unwrap();
        l.submitted(a, "77", 0.0).unwrap();
        l.set_state("77", JobState::Gone, 1.0).unwrap();
        // Local job ids are pids: a later job may get the same one.
        let (b, _) = l.begin_submit(2.0).unwrap();
        l.submitted(b, "77", 2.0).unwrap();
        assert_eq!(l.job("77").unwrap().seq, b);
        l.set_state("77", JobState::Running, 3.0).unwrap();
        assert_eq!(l.job_by_seq(a).unwrap().state, LedgerState::Gone);
        assert_eq!(l.job_by_seq(b).unwrap().state, LedgerState::Running);
        assert_eq!(l.unfinished_ids(), ["77"]);
    }

    #[test]
    fn polled_states_update_times_and_infer_reasons() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        for id in ["1", "2", "3", "4"] {
            let (s, _) = l.begin_submit(0.0).unwrap();
            l.submitted(s, id, 0.0).unwrap();
        }
        let changed = l
            .update_states(
                &states(&[
                    ("1", JobState::Running),
                    ("2", JobState::Pending),
                    ("3", JobState::Failed),
                    ("4", JobState::Cancelled),
                    ("not-ours", JobState::Running),
                ]),
                10.0,
            )
            .unwrap();
        assert_eq!(changed, vec!["1", "3", "4"]);
        let l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.job("1").unwrap().state, LedgerState::Running);
        assert_eq!(l.job("1").unwrap().started_at, Some(10.0));
        assert_eq!(l.job("2").unwrap().started_at, None);
        assert_eq!(l.job("3").unwrap().end_reason, Some(EndReason::Failed));
        assert_eq!(l.job("3").unwrap().ended_at, Some(10.0));
        assert_eq!(
            l.job("4").unwrap().end_reason,
            Some(EndReason::CancelledOutside)
        );
        assert_eq!(l.unfinished_ids(), vec!["1", "2"]);
    }

    #[test]
    fn started_time_is_the_first_time_seen_running() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, "1", 0.0).unwrap();
        assert!(l.set_state("1", JobState::Running, 5.0).unwrap());
        assert!(!l.set_state("1", JobState::Running, 6.0).unwrap());
        // Requeued, then running again: the first start stays.
        assert!(l.set_state("1", JobState::Pending, 7.0).unwrap());
        assert!(l.set_state("1", JobState::Running, 8.0).unwrap());
        assert_eq!(l.job("1").unwrap().started_at, Some(5.0));
    }

    #[test]
    fn finished_states_are_final_but_gone_can_come_back() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        for id in ["1", "2"] {
            let (s, _) = l.begin_submit(0.0).unwrap();
            l.submitted(s, id, 0.0).unwrap();
        }
        l.set_state("1", JobState::Completed, 1.0).unwrap();
        assert!(!l.set_state("1", JobState::Running, 2.0).unwrap());
        assert!(!l.set_state("1", JobState::Gone, 2.0).unwrap());
        assert_eq!(l.job("1").unwrap().state, LedgerState::Completed);

        l.set_state("2", JobState::Gone, 1.0).unwrap();
        assert_eq!(l.job("2").unwrap().end_reason, Some(EndReason::Vanished));
        assert!(l.unfinished_ids().is_empty());
        // The batch system lost sight of it for one poll; it is alive after all.
        assert!(l.set_state("2", JobState::Running, 2.0).unwrap());
        let j = l.job("2").unwrap();
        assert_eq!(j.state, LedgerState::Running);
        assert_eq!(j.ended_at, None);
        assert_eq!(j.end_reason, None);
        assert_eq!(l.unfinished_ids(), vec!["2"]);
    }

    #[test]
    fn our_reason_given_before_cancelling_survives_the_cancelled_state() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        for id in ["1", "2"] {
            let (s, _) = l.begin_submit(0.0).unwrap();
            l.submitted(s, id, 0.0).unwrap();
        }
        l.set_end_reason("1", CancelReason::ScaleDown.into())
            .unwrap();
        l.set_end_reason("2", CancelReason::StartupTimeout.into())
            .unwrap();
        l.update_states(
            &states(&[("1", JobState::Cancelled), ("2", JobState::Gone)]),
            3.0,
        )
        .unwrap();
        let l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.job("1").unwrap().end_reason, Some(EndReason::ScaledDown));
        assert!(l.job("1").unwrap().end_reason.unwrap().is_ours());
        assert_eq!(
            l.job("2").unwrap().end_reason,
            Some(EndReason::StartupTimeout)
        );
    }

    #[test]
    fn walltime_overrides_an_inferred_reason() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, "1", 0.0).unwrap();
        l.set_state("1", JobState::Failed, 3600.0).unwrap();
        l.set_end_reason("1", EndReason::Walltime).unwrap();
        assert_eq!(l.job("1").unwrap().end_reason, Some(EndReason::Walltime));
        assert!(!EndReason::Walltime.is_ours());
        assert!(l.set_end_reason("nope", EndReason::Failed).is_err());
    }

    #[test]
    fn workers_seen_records_the_first_time_only() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, "1", 0.0).unwrap();
        assert!(l.workers_seen("1", 4.0).unwrap());
        assert!(!l.workers_seen("1", 9.0).unwrap());
        assert!(!l.workers_seen("foreign", 9.0).unwrap());
        let l = Ledger::open(&path, "c").unwrap();
        assert_eq!(l.job("1").unwrap().workers_seen_at, Some(4.0));
    }

    #[test]
    fn a_detail_is_persisted_for_the_latest_job_with_that_id() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, "1", 0.0).unwrap();
        l.set_detail("1", "ended (failed) before any of its workers connected")
            .unwrap();
        l.set_detail("foreign", "ignored").unwrap();
        let l = Ledger::open(&path, "c").unwrap();
        assert_eq!(
            l.job("1").unwrap().detail.as_deref(),
            Some("ended (failed) before any of its workers connected")
        );
    }

    #[test]
    fn close_is_persisted_idempotent_and_stops_submissions() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        l.submitted(s, "1", 0.0).unwrap();
        l.close(50.0).unwrap();
        l.close(60.0).unwrap();
        let mut l = Ledger::open(&path, "c").unwrap();
        assert!(l.is_closed());
        assert_eq!(l.closed_at(), Some(50.0));
        let err = l.begin_submit(70.0).unwrap_err().to_string();
        assert!(err.contains("closed"), "{err}");
        // `down --force` may still record what it cancelled after closing.
        l.set_end_reason("1", EndReason::Shutdown).unwrap();
        l.set_state("1", JobState::Cancelled, 71.0).unwrap();
    }

    #[test]
    fn corrupt_file_is_refused_naming_the_file() {
        let (_dir, path) = fresh();
        for text in ["", "{not json", "[1, 2]", "{\"version\": 1}"] {
            std::fs::write(&path, text).unwrap();
            let err = Ledger::open(&path, "c").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("corrupt"), "{msg}");
            assert!(msg.contains("rdask-c-*"), "{msg}");
            assert_eq!(err.exit_code(), 1);
        }
    }

    #[test]
    fn inconsistent_sequence_numbers_are_corrupt() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        l.begin_submit(0.0).unwrap();
        l.begin_submit(0.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replace("\"next_seq\": 2", "\"next_seq\": 1");
        assert_ne!(bad, text);
        std::fs::write(&path, bad).unwrap();
        let msg = Ledger::open(&path, "c").unwrap_err().to_string();
        assert!(msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn newer_versions_and_other_clusters_are_refused() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        l.begin_submit(0.0).unwrap();
        let err = Ledger::open(&path, "other").unwrap_err().to_string();
        assert!(err.contains("belongs to cluster `c`"), "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 99")).unwrap();
        let err = Ledger::open(&path, "c").unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }

    #[test]
    fn unreadable_path_is_an_io_error_naming_the_file() {
        let (dir, _) = fresh();
        // A directory where the file should be.
        let err = Ledger::open(dir.path(), "c").unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn writes_leave_no_temporary_files_and_readable_json() {
        let (dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        for i in 0..5 {
            let (s, _) = l.begin_submit(f64::from(i)).unwrap();
            l.submitted(s, &format!("j{i}"), 0.0).unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["ledger.json"]);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["cluster"], "c");
        assert_eq!(v["closed"], false);
        assert_eq!(v["jobs"][4]["job_id"], "j4");
        assert_eq!(v["jobs"][4]["state"], "pending");
        assert_eq!(v["jobs"][4]["name"], "rdask-c-4");
    }

    #[test]
    fn a_failed_write_changes_nothing_in_memory() {
        let (dir, _) = fresh();
        let path = dir.path().join("missing-dir").join("ledger.json");
        let mut l = Ledger::open(&path, "c").unwrap();
        let err = l.begin_submit(0.0).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(l.jobs().is_empty());
        // Once the directory exists the same ledger works, and the sequence was not consumed.
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        assert_eq!(l.begin_submit(0.0).unwrap().0, 0);
    }

    #[test]
    fn reload_gives_back_exactly_what_was_written() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (a, _) = l.begin_submit(1.5).unwrap();
        l.submitted(a, "1.server", 2.5).unwrap();
        l.set_state("1.server", JobState::Running, 3.5).unwrap();
        l.workers_seen("1.server", 4.5).unwrap();
        let (b, _) = l.begin_submit(5.5).unwrap();
        l.submit_failed(b, "no \"quota\"\nleft", 6.5).unwrap();
        l.begin_submit(7.5).unwrap();
        let back = Ledger::open(&path, "c").unwrap();
        assert_eq!(back.jobs(), l.jobs());
        assert_eq!(back.is_closed(), l.is_closed());
    }

    #[test]
    fn non_finite_times_are_refused_and_change_nothing() {
        let (_dir, path) = fresh();
        let mut l = Ledger::open(&path, "c").unwrap();
        let (s, _) = l.begin_submit(0.0).unwrap();
        let err = l.submitted(s, "1", f64::NAN).unwrap_err().to_string();
        assert!(err.contains("finite"), "{err}");
        assert!(l.begin_submit(f64::INFINITY).is_err());
        assert_eq!(l.jobs().len(), 1);
        assert_eq!(l.jobs()[0].state, LedgerState::Submitting);
        // The file is still readable and agrees.
        assert_eq!(Ledger::open(&path, "c").unwrap().jobs(), l.jobs());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Begin,
        Submitted(usize, u8),
        SubmitFailed(usize),
        States(Vec<(u8, u8)>),
        WorkersSeen(u8),
        EndReason(u8, u8),
        Close,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Begin),
            3 => (0usize..16, 0u8..12).prop_map(|(s, i)| Op::Submitted(s, i)),
            1 => (0usize..16).prop_map(Op::SubmitFailed),
            3 => proptest::collection::vec((0u8..12, 0u8..6), 0..5).prop_map(Op::States),
            1 => (0u8..12).prop_map(Op::WorkersSeen),
            1 => (0u8..12, 0u8..10).prop_map(|(i, r)| Op::EndReason(i, r)),
            1 => Just(Op::Close),
        ]
    }

    const REASONS: [EndReason; 10] = [
        EndReason::ScaledDown,
        EndReason::StartupTimeout,
        EndReason::WorkersLost,
        EndReason::Shutdown,
        EndReason::Completed,
        EndReason::Failed,
        EndReason::Walltime,
        EndReason::CancelledOutside,
        EndReason::Vanished,
        EndReason::SubmitFailed,
    ];

    const STATES: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Gone,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the daemon does, the file always reads back as the ledger in memory, and
        /// the ledger's own rules hold.
        #[test]
        fn random_operations_persist_exactly_and_keep_the_rules(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let (_dir, path) = fresh();
            let mut l = Ledger::open(&path, "c\"ø").unwrap();
            let mut now = 0.0;
            for op in ops {
                now += 0.125;
                let before = l.jobs().to_vec();
                // Odd ids: quotes, unicode, server suffixes.
                let id = |i: u8| format!("{i}.srv\"é");
                let _ = match op {
                    Op::Begin => l.begin_submit(now).map(|_| ()),
                    Op::Submitted(s, i) => l.submitted(s as u64, &id(i), now),
                    Op::SubmitFailed(s) => l.submit_failed(s as u64, "no", now),
                    Op::States(v) => l
                        .update_states(
                            &v.iter().map(|&(i, s)| (id(i), STATES[s as usize])).collect(),
                            now,
                        )
                        .map(|_| ()),
                    Op::WorkersSeen(i) => l.workers_seen(&id(i), now).map(|_| ()),
                    Op::EndReason(i, r) => l.set_end_reason(&id(i), REASONS[r as usize]),
                    Op::Close => l.close(now),
                };
                let disk = Ledger::open(&path, "c\"ø");
                if path.exists() {
                    let disk = disk.unwrap();
                    prop_assert_eq!(disk.jobs(), l.jobs());
                    prop_assert_eq!(disk.is_closed(), l.is_closed());
                }
                // Records are never lost, and finished ones stay finished except `gone`.
                prop_assert!(l.jobs().len() >= before.len());
                for (old, new) in before.iter().zip(l.jobs()) {
                    prop_assert_eq!(old.seq, new.seq);
                    prop_assert!(old.job_id.is_none() || old.job_id == new.job_id);
                    if old.is_finished() && old.state != LedgerState::Gone {
                        prop_assert_eq!(old.state, new.state);
                    }
                }
                let mut ids = std::collections::BTreeSet::new();
                for (k, j) in l.jobs().iter().enumerate() {
                    prop_assert_eq!(j.seq, k as u64);
                    prop_assert_eq!(&j.name, &job_name("c\"ø", j.seq));
                    prop_assert_eq!(j.job_id.is_none(), matches!(
                        j.state, LedgerState::Submitting | LedgerState::NotSubmitted));
                    // An id may come back, but only one job with it may be alive.
                    if let (Some(id), false) = (&j.job_id, j.is_finished()) {
                        prop_assert!(ids.insert(id.clone()), "id {} alive twice", id);
                    }
                    prop_assert_eq!(j.ended_at.is_some(), j.is_finished());
                    if j.state == LedgerState::Running {
                        prop_assert!(j.started_at.is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn state_names_and_batch_states_agree() {
        for s in [
            JobState::Pending,
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Gone,
        ] {
            let l = LedgerState::from(s);
            assert_eq!(l.batch_state(), Some(s));
            assert_eq!(l.is_finished(), s.is_finished());
            assert_eq!(l.name(), s.name());
        }
        assert!(!LedgerState::Submitting.is_finished());
        assert!(LedgerState::NotSubmitted.is_finished());
        assert_eq!(LedgerState::Submitting.batch_state(), None);
    }
}
