//! `down`: asking the daemon to close the cluster, and when it is dead or does not answer
//! (`--force`), stopping it and closing the cluster from its ledger. What to do is decided
//! by [`plan`] from what was found (pure, tested); [`down`] carries it out.

use std::time::Duration;

use super::lifecycle::name_flag;
use super::{control, process, ClusterDir, ClusterRecord};
use crate::error::{Error, Result};
use crate::jobqueue::ledger::Ledger;

/// How long `down` waits for the daemon: its workers, the cancels, the batch system's view.
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `down --force` gives the daemon before it stops it.
const FORCED_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster's record as `down` found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Read; whether it says the cluster was closed.
    Read {
        closed: bool,
    },
    Missing,
    /// There but unreadable: why.
    Unreadable(String),
}

/// What `down` found: the record, whether a daemon holds the lock, whether any job trace
/// (a ledger, a job script) is left, and whether `--force` was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub record: RecordState,
    pub daemon_live: bool,
    pub traces: bool,
    pub force: bool,
}

/// What `down` does about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No record, no daemon, no job: there is no cluster of this name.
    NoSuchCluster,
    /// Closed and its daemon gone: nothing to do.
    AlreadyDown,
    /// Ask the live daemon to close the cluster, waiting this long; with `force`, stop it
    /// and clean up from the ledger when it does not.
    AskDaemon { timeout: Duration },
    /// The daemon is dead and `--force` was not given: an error that says so (and what is
    /// wrong with the record, if anything).
    DaemonDead,
    /// The daemon is dead and `--force` was given: close the cluster from its ledger.
    CleanUp,
}

/// Decides what `down` does. A missing or corrupt record never hides a live daemon (found
/// through its lock whatever the record says), nor jobs a dead one left.
pub fn plan(found: &Found) -> Plan {
    match (&found.record, found.daemon_live) {
        (RecordState::Missing, false) if !found.traces => Plan::NoSuchCluster,
        (RecordState::Read { closed: true }, false) if !found.force => Plan::AlreadyDown,
        (_, true) => Plan::AskDaemon {
            timeout: if found.force {
                FORCED_TIMEOUT
            } else {
                DOWN_TIMEOUT
            },
        },
        (_, false) if found.force => Plan::CleanUp,
        (_, false) => Plan::DaemonDead,
    }
}

/// How `down` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyDown,
    /// The daemon closed the cluster; its message.
    DaemonClosed(String),
    /// Closed from the ledger, the daemon dead or stopped; what was done.
    ClosedFromLedger(String),
}

/// Carries out `down` (with `force`: also when the daemon is dead or does not answer).
/// `warn` hears why a forced `down` goes on without the daemon, before it acts.
pub fn down(
    dir: &ClusterDir,
    force: bool,
    forget_unconfirmed: bool,
    mut warn: impl FnMut(String),
) -> Result<Outcome> {
    let (rec, record) = match dir.read_record() {
        Ok(Some(r)) => {
            let closed = r.closed_at.is_some();
            (Some(r), RecordState::Read { closed })
        }
        Ok(None) => (None, RecordState::Missing),
        Err(e) => (None, RecordState::Unreadable(e.to_string())),
    };
    let live = dir.live_daemon();
    let found = Found {
        record: record.clone(),
        daemon_live: live.is_some(),
        traces: dir.ledger_path().exists() || !dir.scripted_job_names().is_empty(),
        force,
    };
    let record_problem = match &record {
        RecordState::Read { .. } => None,
        RecordState::Missing => Some(format!(
            "its record {} is missing",
            dir.record_path().display()
        )),
        RecordState::Unreadable(why) => Some(why.clone()),
    };
    match plan(&found) {
        Plan::NoSuchCluster => {
            // Its error names the cluster and lists the known ones.
            dir.require_record()?;
            // The record appeared after we looked: another `up` is under way.
            return Err(Error::runtime(format!(
                "cluster `{}` was being started while `down` looked; run `down` again",
                dir.name
            )));
        }
        Plan::AlreadyDown => return Ok(Outcome::AlreadyDown),
        Plan::DaemonDead => {
            return Err(match record_problem {
                Some(problem) => Error::runtime(format!(
                    "cluster `{}`: {problem}; its daemon is not running; `rdask-jobqueue down \
                     --force{}` says which jobs may be alive",
                    dir.name,
                    name_flag(&dir.name)
                )),
                None => Error::runtime(format!(
                    "cluster `{}`'s daemon is not running; `rdask-jobqueue down --force{}` \
                     cancels its jobs from the ledger",
                    dir.name,
                    name_flag(&dir.name)
                )),
            })
        }
        Plan::AskDaemon { timeout } => {
            match control::request(dir, &control::Request::Down, timeout) {
                Ok(control::Reply::Ok { message }) => {
                    process::wait_for_exit(dir, Duration::from_secs(10));
                    // The daemon rewrote its record (a lost one included) as it closed.
                    return Ok(Outcome::DaemonClosed(message));
                }
                Ok(_) if !force => {
                    return Err(Error::runtime(
                        "the daemon gave an unexpected answer to `down`; `down --force` stops it",
                    ))
                }
                Err(e) if !force => {
                    return Err(Error::runtime(format!(
                        "{e}; `rdask-jobqueue down --force{}` stops the daemon and cancels the \
                         jobs from the ledger",
                        name_flag(&dir.name)
                    )))
                }
                Ok(_) => warn("unexpected answer; stopping the daemon".to_string()),
                Err(e) => warn(format!(
                    "{e}; stopping the daemon and cleaning up from the ledger"
                )),
            }
            // Forced: the daemon did not finish the job; stop it so only we write the ledger.
            let Some(pid) = live.and_then(|l| l.pid) else {
                return Err(Error::runtime(format!(
                    "cluster `{}`'s daemon holds {} but its pid cannot be read; stop it by \
                     hand (`fuser {0}`), then run `down --force` again",
                    dir.name,
                    dir.lock_path().display()
                )));
            };
            process::stop(dir, pid)?;
        }
        Plan::CleanUp => {}
    }
    // The daemon is gone: from here we are the ledger's only writer.
    let Some(rec) = rec else {
        return Err(lost_record(dir, record_problem));
    };
    close_from_ledger(dir, rec, forget_unconfirmed).map(Outcome::ClosedFromLedger)
}

/// Finishes every job the ledger holds and closes the record, the daemon gone.
fn close_from_ledger(
    dir: &ClusterDir,
    mut rec: ClusterRecord,
    forget_unconfirmed: bool,
) -> Result<String> {
    let ledger = if !dir.ledger_path().exists() && !dir.scripted_job_names().is_empty() {
        Err(Error::runtime(format!(
            "its job ledger {} is missing",
            dir.ledger_path().display()
        )))
    } else {
        Ledger::open(&dir.ledger_path(), &dir.name)
    };
    let mut ledger = match ledger {
        Ok(l) => l,
        Err(e) => return Err(cancel_without_ledger(dir, &rec, &e)),
    };
    let message = if ledger.is_closed() {
        format!("cluster `{}`: the ledger was already closed", dir.name)
    } else {
        super::daemon::finish_jobs(&rec, &mut ledger, forget_unconfirmed)?
    };
    rec.closed_at = rec.closed_at.or(Some(super::now()));
    dir.write_record(&rec)?;
    let _ = std::fs::remove_file(dir.socket_path());
    Ok(message)
}

/// `down --force` without a readable record, the daemon dead: without the record the batch
/// system of the jobs is unknown, so nothing can be cancelled; say which jobs there are.
fn lost_record(dir: &ClusterDir, problem: Option<String>) -> Error {
    let problem = problem.unwrap_or_default();
    let jobs = match Ledger::open(&dir.ledger_path(), &dir.name) {
        Ok(l) => l
            .unfinished()
            .map(|j| j.job_id.clone().unwrap_or_else(|| j.name.clone()))
            .collect::<Vec<_>>(),
        Err(_) => dir.scripted_job_names(),
    };
    Error::runtime(format!(
        "cluster `{}`: {problem}; without it the batch system of its jobs is unknown, so \
         nothing was cancelled. {}Cancel them with the batch system's own command (scancel, \
         qdel, ...), then restore the record or remove {}",
        dir.name,
        if jobs.is_empty() {
            "It lists no job that may be alive. ".to_string()
        } else {
            format!("Jobs that may be alive: {}. ", jobs.join(" "))
        },
        dir.root.display()
    ))
}

/// `down --force` when the ledger is missing or unreadable: the daemon is dead, so the job
/// scripts are the only list of jobs left. Cancels each by its name where the system can;
/// the cluster stays open (exit 1): what ran cannot be proven finished without the ledger.
fn cancel_without_ledger(dir: &ClusterDir, rec: &ClusterRecord, problem: &Error) -> Error {
    let queue = crate::jobqueue::JobQueue::new(&rec.config);
    let names = dir.scripted_job_names();
    let mut cancelled = Vec::new();
    let mut failed = Vec::new();
    let mut by_name = true;
    for name in &names {
        match queue.cancel_by_name(name, &dir.job_script(rec.config.system, name)) {
            Ok(true) => cancelled.push(name.as_str()),
            Ok(false) => {
                by_name = false;
                break;
            }
            Err(e) => failed.push(format!("{name} ({e})")),
        }
    }
    let done = if !by_name {
        format!(
            "{} cannot cancel jobs by name: look for jobs named rdask-{}-* in the queue and \
             cancel them by hand",
            rec.system, dir.name
        )
    } else if names.is_empty() {
        "no job script was found either".to_string()
    } else {
        let mut s = format!(
            "cancelled by name every job it wrote a script for: {}",
            cancelled.join(" ")
        );
        if !failed.is_empty() {
            s.push_str(&format!("; failed: {}", failed.join("; ")));
        }
        s
    };
    Error::runtime(format!(
        "cluster `{}`: {problem}; {done}. The cluster stays open: restore the ledger, or move \
         it away once the queue shows no rdask-{}-* job",
        dir.name, dir.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(record: RecordState, daemon_live: bool, traces: bool, force: bool) -> Found {
        Found {
            record,
            daemon_live,
            traces,
            force,
        }
    }

    #[test]
    fn a_live_daemon_is_asked_whatever_its_record_says() {
        for record in [
            RecordState::Read { closed: false },
            RecordState::Read { closed: true },
            RecordState::Missing,
            RecordState::Unreadable("bad json".into()),
        ] {
            assert_eq!(
                plan(&found(record.clone(), true, false, false)),
                Plan::AskDaemon {
                    timeout: DOWN_TIMEOUT
                },
                "{record:?}"
            );
            assert_eq!(
                plan(&found(record, true, true, true)),
                Plan::AskDaemon {
                    timeout: FORCED_TIMEOUT
                }
            );
        }
    }

    #[test]
    fn a_dead_daemon_needs_force_and_its_jobs_are_never_hidden() {
        let closed = RecordState::Read { closed: true };
        let open = RecordState::Read { closed: false };
        assert_eq!(
            plan(&found(closed.clone(), false, true, false)),
            Plan::AlreadyDown
        );
        assert_eq!(plan(&found(closed, false, true, true)), Plan::CleanUp);
        assert_eq!(
            plan(&found(open.clone(), false, true, false)),
            Plan::DaemonDead
        );
        assert_eq!(plan(&found(open, false, false, true)), Plan::CleanUp);
        // No record but a ledger or scripts left: not "no such cluster".
        assert_eq!(
            plan(&found(RecordState::Missing, false, true, false)),
            Plan::DaemonDead
        );
        assert_eq!(
            plan(&found(RecordState::Missing, false, true, true)),
            Plan::CleanUp
        );
        assert_eq!(
            plan(&found(RecordState::Missing, false, false, true)),
            Plan::NoSuchCluster
        );
        assert_eq!(
            plan(&found(
                RecordState::Unreadable("x".into()),
                false,
                false,
                false
            )),
            Plan::DaemonDead
        );
    }
}
