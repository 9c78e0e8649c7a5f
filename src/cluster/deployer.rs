//! The deployer's decisions, sans IO: pure functions of the ledger, the scheduler's workers,
//! the outcomes of batch commands and the monotonic time, so that each is tested without a
//! batch system, a scheduler or a clock (the shell in `daemon.rs` runs the commands and
//! feeds their outcomes back here). The scaling policy itself is the [`Scaler`]'s; what is
//! here is everything around it: which job a worker belongs to, the rule that a job with
//! workers runs, when a submission whose outcome is unknown is given up, how cancels fall
//! back to one-by-one, and what `adapt --off` keeps.
//!
//! This module depends only on the ledger's and the scaler's types, the ids and the
//! scheduler's status report (plain data): nothing here runs a command or reads a file.
//!
//! [`Scaler`]: crate::jobqueue::scaler::Scaler

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::ids::WorkerId;
use crate::jobqueue::ledger::{JobRecord, LedgerState};
use crate::jobqueue::scaler::{Target, Tick, WorkerObservation};
use crate::jobqueue::BatchSystem;
use crate::protocol::messages::{QueuedDemand, WorkerState, WorkerStatusReport};

// ---- The running rule -------------------------------------------------------------------

/// A job's state given whether workers of it are connected: connected workers prove the job
/// runs, whatever the last poll said (pending: the poll is older than the workers; gone: the
/// batch system lost it from view). The one place this rule lives: the ledger is updated
/// with it and `status` shows it.
pub fn state_with_workers(state: LedgerState, has_workers: bool) -> LedgerState {
    match state {
        LedgerState::Pending | LedgerState::Gone if has_workers => LedgerState::Running,
        other => other,
    }
}

// ---- Which job a worker belongs to ------------------------------------------------------

/// The ledger's id of the job a worker reports: the same id (the latest such job: ids can
/// come back), or else the latest job with the same number (PBS and Moab ids carry server
/// names that a job's environment may spell differently). None: not a job of ours.
pub fn ledger_id(jobs: &[JobRecord], reported: &str, sys: &dyn BatchSystem) -> Option<String> {
    if jobs.iter().any(|j| j.job_id.as_deref() == Some(reported)) {
        return Some(reported.to_string());
    }
    let number = sys.canonical_id(reported);
    jobs.iter()
        .rev()
        .filter_map(|j| j.job_id.as_deref())
        .find(|id| sys.canonical_id(id) == number)
        .map(str::to_string)
}

/// The scheduler's workers grouped by the ledger's id of the job each one reports; workers
/// of no job of ours are left out.
pub fn workers_by_job(
    jobs: &[JobRecord],
    workers: &[WorkerStatusReport],
    sys: &dyn BatchSystem,
) -> BTreeMap<String, Vec<WorkerObservation>> {
    let mut by_job: BTreeMap<String, Vec<WorkerObservation>> = BTreeMap::new();
    for w in workers {
        let Some(id) = w.job_id.as_deref().and_then(|id| ledger_id(jobs, id, sys)) else {
            continue;
        };
        by_job.entry(id).or_default().push(WorkerObservation {
            name: w.name.clone(),
            held_bytes: w.held_bytes,
            retiring: w.state == WorkerState::Retiring,
        });
    }
    by_job
}

/// The scheduler ids of the workers named `names` that belong to job `job_id`. Names need
/// not be unique across jobs (`--name w` gives every job w-0, w-1): the job decides.
pub fn workers_to_retire(
    jobs: &[JobRecord],
    workers: &[WorkerStatusReport],
    job_id: &str,
    names: &[String],
    sys: &dyn BatchSystem,
) -> Vec<WorkerId> {
    workers
        .iter()
        .filter(|w| {
            names.contains(&w.name)
                && w.job_id
                    .as_deref()
                    .and_then(|id| ledger_id(jobs, id, sys))
                    .as_deref()
                    == Some(job_id)
        })
        .map(|w| w.id)
        .collect()
}

// ---- Submissions whose outcome is unknown -----------------------------------------------

/// How long after a submission became uncertain it is given up: the controller has had
/// time to register anything it accepted late (twice the command timeout, and a margin).
pub fn settle_time(command_timeout_secs: u64) -> Duration {
    Duration::from_secs(2 * command_timeout_secs.max(1) + 5)
}

/// The ledger's entries whose submission outcome is unknown: recorded as `submitting`
/// and no submit command of ours running for them any more (the command timed out, lost
/// its controller mid-way, or a daemon before us died). `(seq, name)`.
pub fn uncertain(jobs: &[JobRecord], in_flight: &BTreeSet<u64>) -> Vec<(u64, String)> {
    jobs.iter()
        .filter(|j| j.state == LedgerState::Submitting && !in_flight.contains(&j.seq))
        .map(|j| (j.seq, j.name.clone()))
        .collect()
}

/// Since when (monotonic) each uncertain entry has been uncertain in this daemon's life.
/// An entry a previous daemon left behind starts counting when this one first sees it.
#[derive(Debug, Default)]
pub struct UncertainSince(BTreeMap<u64, Instant>);

impl UncertainSince {
    /// Notes the entries uncertain now (forgetting the others) and says how long each has
    /// waited by `now`.
    pub fn observe(
        &mut self,
        uncertain: &[(u64, String)],
        now: Instant,
    ) -> BTreeMap<u64, Duration> {
        let current: BTreeSet<u64> = uncertain.iter().map(|(s, _)| *s).collect();
        self.0.retain(|s, _| current.contains(s));
        current
            .into_iter()
            .map(|s| {
                let since = *self.0.entry(s).or_insert(now);
                (s, now.saturating_duration_since(since))
            })
            .collect()
    }

    /// A submission just came back uncertain: it starts waiting now.
    pub fn start(&mut self, seq: u64, now: Instant) {
        self.0.insert(seq, now);
    }
}

/// What cancelling an uncertain entry by name did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ByName {
    /// Whatever was queued under the name is cancelled (or nothing was).
    Cancelled,
    /// This batch system cannot cancel by name.
    Unsupported,
    /// The cancel command failed; why.
    Failed(String),
}

/// What becomes of an uncertain entry after a cancel by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uncertain {
    /// Nothing can be queued under the name any more: close it as not submitted (the scaler
    /// then submits afresh).
    GiveUp,
    /// Cancelled, but the controller may still register a late acceptance: cancel again at
    /// the next poll.
    Wait,
    /// Only a person can look: it stays, shown in `status`, until `down --force
    /// --forget-unconfirmed`.
    AskUser,
    /// The cancel failed: try again at the next poll, and say why.
    Retry(String),
}

/// Decides an uncertain entry: given up only once cancelled by name *after* it has waited
/// `settle` (a cancel before then can miss a job the controller registers later).
pub fn judge_uncertain(by_name: &ByName, waited: Duration, settle: Duration) -> Uncertain {
    match by_name {
        ByName::Cancelled if waited >= settle => Uncertain::GiveUp,
        ByName::Cancelled => Uncertain::Wait,
        ByName::Unsupported => Uncertain::AskUser,
        ByName::Failed(e) => Uncertain::Retry(e.clone()),
    }
}

// ---- Cancels ----------------------------------------------------------------------------

/// The jobs still to cancel: those we decided to end that the ledger does not show
/// finished (a job we do not know is dropped: nothing of ours to cancel).
pub fn still_to_cancel(jobs: &[JobRecord], decided: &BTreeSet<String>) -> Vec<String> {
    decided
        .iter()
        .filter(|id| {
            jobs.iter()
                .rfind(|j| j.job_id.as_deref() == Some(id.as_str()))
                .is_some_and(|j| !j.is_finished())
        })
        .cloned()
        .collect()
}

/// What a round of cancels left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancelOutcome {
    /// The ids whose cancel failed: retried next round.
    pub failed: Vec<String>,
    /// Why, when only one id was cancelled (several are named in `failed`).
    pub error: Option<String>,
}

/// Cancels `ids` in one call, or one by one when that call fails, so that one bad id cannot
/// hold the others back. `cancel` is the command (the only effect; tests pass a fake).
pub fn cancel_with_fallback<E: std::fmt::Display>(
    ids: &[String],
    mut cancel: impl FnMut(&[String]) -> std::result::Result<(), E>,
) -> CancelOutcome {
    if ids.is_empty() {
        return CancelOutcome::default();
    }
    match cancel(ids) {
        Ok(()) => CancelOutcome::default(),
        Err(e) if ids.len() == 1 => CancelOutcome {
            failed: ids.to_vec(),
            error: Some(e.to_string()),
        },
        Err(_) => CancelOutcome {
            failed: ids
                .iter()
                .filter(|id| cancel(std::slice::from_ref(*id)).is_err())
                .cloned()
                .collect(),
            error: None,
        },
    }
}

// ---- adapt --off ------------------------------------------------------------------------

/// `adapt --off`: a fixed target of the jobs counted at the last tick (none before the
/// first), in workers; and that count.
pub fn adapt_off(last: Option<&Tick>, processes: usize) -> (Target, usize) {
    let counted = last.map_or(0, |t| t.counted_jobs);
    (Target::fixed_jobs(counted, processes), counted)
}

// ---- Program demand ----------------------------------------------------------------------

/// The threads program tasks want now, for the scaler's [`Load::program_cpus`]: the cpus of
/// every queued task ready to run (held ones wait for others, not for room), plus one per
/// processing task while any submission is unfinished — those tasks may be programs, and
/// retiring a worker under a running program would kill it.
///
/// [`Load::program_cpus`]: crate::jobqueue::scaler::Load::program_cpus
pub fn program_cpus(queued: &[QueuedDemand], processing: u64, unfinished_submissions: bool) -> u64 {
    let ready = queued
        .iter()
        .fold(0u64, |sum, d| sum.saturating_add(d.cpus_queued()));
    if unfinished_submissions {
        ready.saturating_add(processing)
    } else {
        ready
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn program_demand_counts_ready_cpus_and_busy_threads() {
        use super::program_cpus;
        use crate::protocol::messages::QueuedDemand;
        let demand = |cpus, tasks, held| QueuedDemand {
            cpus,
            resources: vec![],
            tasks,
            held,
        };
        let q = [demand(1, 10, 5), demand(4, 3, 0)];
        assert_eq!(program_cpus(&q, 0, true), 22);
        assert_eq!(program_cpus(&q, 6, true), 28);
        // No submission unfinished: processing tasks are arrays', counted by their work.
        assert_eq!(program_cpus(&[], 6, false), 0);
        assert_eq!(program_cpus(&[], 0, true), 0);
    }

    use super::*;
    use proptest::prelude::*;

    /// PBS: its ids carry server names a job's environment may spell differently.
    fn pbs() -> &'static dyn BatchSystem {
        crate::jobqueue::system(crate::config::SystemKind::Pbs)
    }

    fn job(seq: u64, id: Option<&str>, state: LedgerState) -> JobRecord {
        JobRecord {
            seq,
            name: format!("rdask-t-{seq}"),
            job_id: id.map(str::to_string),
            state,
            recorded_at: 0.0,
            submitted_at: None,
            started_at: None,
            workers_seen_at: None,
            ended_at: None,
            end_reason: None,
            detail: None,
        }
    }

    fn worker(id: WorkerId, name: &str, job: Option<&str>) -> WorkerStatusReport {
        WorkerStatusReport {
            id,
            name: name.into(),
            address: String::new(),
            host: String::new(),
            job_id: job.map(str::to_string),
            nthreads: 1,
            memory_limit: 0,
            memory: 0,
            state: WorkerState::Running,
            processing: 0,
            results: 0,
            held_bytes: 0,
            spilled_bytes: 0,
            cpu_permille: 0,
        }
    }

    #[test]
    fn workers_prove_a_pending_or_lost_job_runs_and_nothing_else() {
        use LedgerState::*;
        for s in [
            Submitting,
            NotSubmitted,
            Pending,
            Running,
            Completed,
            Failed,
            Cancelled,
            Gone,
        ] {
            assert_eq!(state_with_workers(s, false), s);
        }
        assert_eq!(state_with_workers(Pending, true), Running);
        assert_eq!(state_with_workers(Gone, true), Running);
        assert_eq!(state_with_workers(Running, true), Running);
        // A job we know ended (or never existed) is not revived by a stale worker report.
        assert_eq!(state_with_workers(Cancelled, true), Cancelled);
        assert_eq!(state_with_workers(NotSubmitted, true), NotSubmitted);
    }

    #[test]
    fn a_worker_maps_to_its_job_by_id_then_by_number() {
        let jobs = vec![
            job(0, Some("12.server"), LedgerState::Running),
            job(1, Some("13.server"), LedgerState::Running),
        ];
        assert_eq!(
            ledger_id(&jobs, "12.server", pbs()).as_deref(),
            Some("12.server")
        );
        // PBS: the job's environment spells the server differently.
        assert_eq!(
            ledger_id(&jobs, "13.server.example.org", pbs()).as_deref(),
            Some("13.server")
        );
        assert_eq!(ledger_id(&jobs, "14.server", pbs()), None);
        let workers = vec![
            worker(1, "w-0", Some("12")),
            worker(2, "w-0", Some("13.server")),
            worker(3, "x", None),
            worker(4, "y", Some("99")),
        ];
        let by_job = workers_by_job(&jobs, &workers, pbs());
        assert_eq!(by_job.len(), 2);
        assert_eq!(by_job["12.server"][0].name, "w-0");
        // Same name in two jobs: retiring job 13's w-0 retires worker 2 only.
        let names = vec!["w-0".to_string()];
        assert_eq!(
            workers_to_retire(&jobs, &workers, "13.server", &names, pbs()),
            vec![2]
        );
        assert_eq!(
            workers_to_retire(&jobs, &workers, "12.server", &names, pbs()),
            vec![1]
        );
        assert!(workers_to_retire(&jobs, &workers, "12.server", &[], pbs()).is_empty());
    }

    #[test]
    fn a_recycled_id_belongs_to_the_latest_job() {
        let jobs = vec![
            job(0, Some("500"), LedgerState::Gone),
            job(1, Some("500"), LedgerState::Running),
        ];
        // The ledger's own lookup picks the latest record of an id: the mapping agrees.
        assert_eq!(ledger_id(&jobs, "500", pbs()).as_deref(), Some("500"));
        assert_eq!(
            still_to_cancel(&jobs, &BTreeSet::from(["500".to_string()])),
            vec!["500"]
        );
        let jobs = vec![
            job(0, Some("500"), LedgerState::Running),
            job(1, Some("500"), LedgerState::Gone),
        ];
        assert!(still_to_cancel(&jobs, &BTreeSet::from(["500".to_string()])).is_empty());
    }

    #[test]
    fn submissions_in_flight_are_not_uncertain() {
        let jobs = vec![
            job(0, None, LedgerState::Submitting),
            job(1, None, LedgerState::Submitting),
            job(2, Some("7"), LedgerState::Pending),
            job(3, None, LedgerState::NotSubmitted),
        ];
        assert_eq!(
            uncertain(&jobs, &BTreeSet::from([1])),
            vec![(0, "rdask-t-0".to_string())]
        );
        assert_eq!(uncertain(&jobs, &BTreeSet::from([0, 1])), vec![]);
    }

    #[test]
    fn an_uncertain_submission_is_given_up_only_when_cancelled_after_settling() {
        let settle = settle_time(2);
        assert_eq!(settle, Duration::from_secs(9));
        assert_eq!(settle_time(0), Duration::from_secs(7));
        let early = Duration::from_secs(3);
        assert_eq!(
            judge_uncertain(&ByName::Cancelled, early, settle),
            Uncertain::Wait
        );
        assert_eq!(
            judge_uncertain(&ByName::Cancelled, settle, settle),
            Uncertain::GiveUp
        );
        assert_eq!(
            judge_uncertain(&ByName::Unsupported, settle * 10, settle),
            Uncertain::AskUser
        );
        assert_eq!(
            judge_uncertain(&ByName::Failed("no".into()), settle * 10, settle),
            Uncertain::Retry("no".into())
        );
    }

    #[test]
    fn the_uncertain_clock_counts_from_the_first_sight_or_the_failed_submit() {
        let t0 = Instant::now();
        let mut since = UncertainSince::default();
        let a = vec![(0, "a".to_string())];
        assert_eq!(since.observe(&a, t0)[&0], Duration::ZERO);
        assert_eq!(
            since.observe(&a, t0 + Duration::from_secs(4))[&0],
            Duration::from_secs(4)
        );
        // Resolved, then (a new daemon-life event) uncertain again: counts afresh.
        assert!(since.observe(&[], t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(
            since.observe(&a, t0 + Duration::from_secs(6))[&0],
            Duration::ZERO
        );
        since.start(1, t0 + Duration::from_secs(10));
        let both = vec![(0, "a".to_string()), (1, "b".to_string())];
        let waited = since.observe(&both, t0 + Duration::from_secs(12));
        assert_eq!(waited[&0], Duration::from_secs(6));
        assert_eq!(waited[&1], Duration::from_secs(2));
    }

    #[test]
    fn a_failed_cancel_of_several_falls_back_to_one_by_one() {
        let ids: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let mut calls = Vec::new();
        let out = cancel_with_fallback(&ids, |batch| {
            calls.push(batch.to_vec());
            if batch.len() > 1 || batch[0] == "2" {
                Err("refused")
            } else {
                Ok(())
            }
        });
        assert_eq!(out.failed, vec!["2"]);
        assert_eq!(out.error, None);
        assert_eq!(calls.len(), 4);
        let out = cancel_with_fallback(&ids[..1], |_| Err("down"));
        assert_eq!(out.failed, vec!["1"]);
        assert_eq!(out.error.as_deref(), Some("down"));
        let out = cancel_with_fallback(&[], |_| -> std::result::Result<(), &str> {
            panic!("nothing to cancel runs no command")
        });
        assert_eq!(out, CancelOutcome::default());
    }

    #[test]
    fn adapt_off_keeps_the_jobs_counted_at_the_last_tick() {
        let tick = Tick {
            decisions: Vec::new(),
            wanted_jobs: 5,
            target_jobs: 5,
            counted_jobs: 3,
            pending_jobs: 1,
            blocked: None,
        };
        assert_eq!(adapt_off(Some(&tick), 2), (Target::Fixed { workers: 6 }, 3));
        assert_eq!(adapt_off(None, 2), (Target::Fixed { workers: 0 }, 0));
    }

    proptest! {
        /// The mapping never puts a worker in a job with another number, finds every worker
        /// whose job is in the ledger, and agrees with the running rule: every mapped job is
        /// a job of the ledger.
        #[test]
        fn workers_map_only_to_jobs_with_their_number(
            ledger_ids in proptest::collection::vec((0u32..20, proptest::option::of(0u8..3)), 0..12),
            reported in proptest::collection::vec((0u32..25, proptest::option::of(0u8..3)), 0..12),
        ) {
            let spell = |n: u32, server: Option<u8>| match server {
                Some(s) => format!("{n}.srv{s}"),
                None => n.to_string(),
            };
            let jobs: Vec<JobRecord> = ledger_ids
                .iter()
                .enumerate()
                .map(|(i, (n, s))| job(i as u64, Some(&spell(*n, *s)), LedgerState::Running))
                .collect();
            let workers: Vec<WorkerStatusReport> = reported
                .iter()
                .enumerate()
                .map(|(i, (n, s))| worker(i as u64, &format!("w{i}"), Some(&spell(*n, *s))))
                .collect();
            let by_job = workers_by_job(&jobs, &workers, pbs());
            let mapped: usize = by_job.values().map(Vec::len).sum();
            let expected = reported
                .iter()
                .filter(|(n, _)| ledger_ids.iter().any(|(m, _)| m == n))
                .count();
            prop_assert_eq!(mapped, expected);
            for (id, ws) in &by_job {
                prop_assert!(jobs.iter().any(|j| j.job_id.as_deref() == Some(id)));
                for w in ws {
                    let r = workers.iter().find(|r| r.name == w.name).unwrap();
                    let reported = r.job_id.as_deref().unwrap();
                    prop_assert_eq!(
                        pbs().canonical_id(reported),
                        pbs().canonical_id(id)
                    );
                    // An exact id always wins over a mere number match.
                    if jobs.iter().any(|j| j.job_id.as_deref() == Some(reported)) {
                        prop_assert_eq!(reported, id.as_str());
                    }
                }
            }
        }

        /// Cancels: every id whose cancel works alone is cancelled, whatever the others do;
        /// only ids that fail alone are retried; a working batch call runs once.
        #[test]
        fn one_bad_id_never_holds_the_others_back(
            bad in proptest::collection::vec(any::<bool>(), 0..10),
        ) {
            let ids: Vec<String> = (0..bad.len()).map(|i| i.to_string()).collect();
            let is_bad = |id: &String| bad[id.parse::<usize>().unwrap()];
            let mut calls = 0;
            let out = cancel_with_fallback(&ids, |batch| {
                calls += 1;
                if batch.iter().any(is_bad) { Err("bad id") } else { Ok(()) }
            });
            let expected: Vec<String> = ids.iter().filter(|id| is_bad(id)).cloned().collect();
            prop_assert_eq!(&out.failed, &expected);
            if expected.is_empty() {
                prop_assert_eq!(calls, usize::from(!ids.is_empty()));
            }
        }

        /// Uncertain submissions: never given up before they settled, nor without a
        /// successful cancel by name; in-flight ones are never judged at all.
        #[test]
        fn uncertain_submissions_are_never_given_up_early(
            states in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..10),
            waited_s in proptest::collection::vec(0u64..40, 10),
            outcome in 0u8..3,
            timeout in 0u64..15,
        ) {
            let jobs: Vec<JobRecord> = states
                .iter()
                .enumerate()
                .map(|(i, (submitting, _))| {
                    let s = if *submitting { LedgerState::Submitting } else { LedgerState::Pending };
                    job(i as u64, None, s)
                })
                .collect();
            let in_flight: BTreeSet<u64> = states
                .iter()
                .enumerate()
                .filter(|(_, (_, f))| *f)
                .map(|(i, _)| i as u64)
                .collect();
            let settle = settle_time(timeout);
            let by_name = match outcome {
                0 => ByName::Cancelled,
                1 => ByName::Unsupported,
                _ => ByName::Failed("x".into()),
            };
            for (seq, _) in uncertain(&jobs, &in_flight) {
                prop_assert!(!in_flight.contains(&seq));
                prop_assert_eq!(jobs[seq as usize].state, LedgerState::Submitting);
                let waited = Duration::from_secs(waited_s[seq as usize]);
                let verdict = judge_uncertain(&by_name, waited, settle);
                if verdict == Uncertain::GiveUp {
                    prop_assert!(waited >= settle);
                    prop_assert_eq!(&by_name, &ByName::Cancelled);
                }
            }
        }
    }
}
