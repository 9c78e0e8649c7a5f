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
//! This file owns the *changes*: what each step of a job's life does to the ledger and which
//! steps are refused. The records themselves are in `record.rs`; how they are kept on disk (an
//! append-only log of JSON lines with an fsync per change, compacted atomically, tolerant of a
//! torn last line) is in `log.rs`. Each change is applied to a copy first and only adopted once
//! it is on disk: the ledger in memory never claims more than the file does. Times are plain
//! seconds (the daemon passes Unix time); nothing here reads a clock, so the same numbers can
//! be handed to the scaler.
//!
//! One writer at a time: the daemon while it lives, `down --force` only once it is dead.

mod log;
mod record;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use self::log::{changed_positions, Data, Index, Store};
use super::JobState;
use crate::error::{Error, Result};

pub use self::log::{should_compact, COMPACT_MIN_RECORDS, COMPACT_RATIO, LEDGER_VERSION};
pub use self::record::{job_name, EndReason, JobRecord, LedgerState};

/// The ledger of one cluster, bound to its file.
#[derive(Clone, Debug)]
pub struct Ledger {
    data: Data,
    /// Finds records by sequence number and job id without a scan.
    index: Index,
    store: Store,
}

impl Ledger {
    /// Loads the ledger of `cluster` from `path`. A missing file is an empty ledger (nothing
    /// is written until the first change); an unreadable, corrupt, foreign or newer one is an
    /// error that names the file. Both the log (version 2) and the older whole-file format
    /// (version 1) are read.
    pub fn open(path: &Path, cluster: &str) -> Result<Ledger> {
        let loaded = Store::load(path, cluster)?;
        Ok(Ledger {
            data: loaded.data,
            index: loaded.index,
            store: loaded.store,
        })
    }

    pub fn path(&self) -> &Path {
        self.store.path()
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
        self.index.id(job_id).map(|i| &self.data.jobs[i])
    }

    /// The job with this sequence number.
    pub fn job_by_seq(&self, seq: u64) -> Option<&JobRecord> {
        self.index.seq(seq).map(|i| &self.data.jobs[i])
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
    /// Each name once: the elements of an array share theirs.
    pub fn submitting_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for j in self
            .data
            .jobs
            .iter()
            .filter(|j| j.state == LedgerState::Submitting)
        {
            if !names.contains(&j.name) {
                names.push(j.name.clone());
            }
        }
        names
    }

    /// Records a job about to be submitted and returns its sequence number and the name to
    /// submit it under. Call before running the submit command; refused once closed.
    pub fn begin_submit(&mut self, now: f64) -> Result<(u64, String)> {
        Ok(self.begin_submits(1, now)?.remove(0))
    }

    /// Records `n` jobs about to be submitted, in one write (the daemon then submits them side
    /// by side): their sequence numbers and names.
    pub fn begin_submits(&mut self, n: usize, now: f64) -> Result<Vec<(u64, String)>> {
        self.begin(n, false, now)
    }

    /// Records the `n` elements of one job array about to be submitted, in one write: their
    /// sequence numbers, and the one name the array is submitted under (that of its first
    /// element). Each element is a job of its own to the ledger; the shared name is what
    /// finds them all if the submit command's outcome is unknown.
    pub fn begin_array(&mut self, n: usize, now: f64) -> Result<(String, Vec<u64>)> {
        let named = self.begin(n, true, now)?;
        let name = named.first().map(|(_, n)| n.clone()).unwrap_or_default();
        Ok((name, named.into_iter().map(|(seq, _)| seq).collect()))
    }

    fn begin(&mut self, n: usize, one_name: bool, now: f64) -> Result<Vec<(u64, String)>> {
        if self.data.closed {
            return Err(Error::runtime(format!(
                "cluster `{}` is closed (its ledger {} says so): it submits no more jobs",
                self.data.cluster,
                self.path().display()
            )));
        }
        self.change(|d| {
            let mut out = Vec::with_capacity(n);
            let first = job_name(&d.cluster, d.next_seq);
            for _ in 0..n {
                let seq = d.next_seq;
                let name = if one_name {
                    first.clone()
                } else {
                    job_name(&d.cluster, seq)
                };
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
        self.submitted_all(&[(seq, job_id.to_string())], now)
    }

    /// [`Ledger::submitted`] for several jobs in one write (the elements of an array): all
    /// of them, or none if one is refused.
    pub fn submitted_all(&mut self, jobs: &[(u64, String)], now: f64) -> Result<()> {
        let path = self.path().to_path_buf();
        self.change(|d| {
            for (seq, job_id) in jobs {
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
                let job = submitting_job(d, *seq, &path)?;
                job.job_id = Some(job_id.clone());
                job.state = LedgerState::Pending;
                job.submitted_at = Some(now);
            }
            Ok((!jobs.is_empty(), ()))
        })
    }

    /// The submit command for job `seq` failed and no job exists. Only when the failure is
    /// certain: if the command timed out, leave the job `Submitting` and resolve it later by
    /// name ([`Ledger::submitted`] if found, this if not).
    pub fn submit_failed(&mut self, seq: u64, message: &str, now: f64) -> Result<()> {
        let path = self.path().to_path_buf();
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
        let path = self.path().to_path_buf();
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
                    self.path().display()
                )));
            }
            let changed = changed_positions(&self.data.jobs, &next.jobs);
            self.store.save(&self.data, &next, &changed)?;
            for &i in &changed {
                self.index.note(&next.jobs, i);
            }
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
