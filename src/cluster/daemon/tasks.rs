//! The daemon's side of task arrays: `submit`, `tasks` and `cancel` requests, and the events
//! the scheduler streams back, journaled.
//!
//! The decisions are pure functions ([`admit`]: which submission may go, with what id and
//! which `after`); the methods only journal and talk to the scheduler through the daemon's
//! own [`Client`](crate::client::Client). Events reach the deployer loop on its channel (a
//! tokio task forwards them, coalesced), so the journal has one writer, and a burst of
//! outcomes costs one append per batch, never a wait on the loop.

use tokio::sync::mpsc::UnboundedReceiver;

use super::{now, Deployer, Msg, Reply, TASK_EVENTS_PER_APPEND};
use crate::client::TaskEvent;
use crate::cluster::journal::{Book, Entry, SubmissionState, TaskState};
use crate::error::{Error, Result};
use crate::jobqueue::scaler::Target;
use crate::task_array::{SubmissionId, TaskArraySpec};

/// Forwards the client's task events to the loop, coalescing what has arrived meanwhile.
pub(super) async fn forward_task_events(
    mut rx: UnboundedReceiver<TaskEvent>,
    tx: std::sync::mpsc::Sender<Msg>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < TASK_EVENTS_PER_APPEND {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if tx.send(Msg::TaskEvents(batch)).is_err() {
            return;
        }
    }
}

/// Whether `spec` may run on this cluster, and as what: its id is the journal's next,
/// submissions it waits for that already succeeded are dropped from `after` (the scheduler
/// may have forgotten them), and every refusal is the user's to fix (exit 2).
/// `largest_worker` is the most threads a worker of this cluster has.
pub(super) fn admit(
    book: &Book,
    mut spec: TaskArraySpec,
    largest_worker: u32,
    cluster: &str,
) -> Result<TaskArraySpec> {
    spec.submission = book.next_id();
    spec.check()?;
    if spec.cpus > largest_worker {
        return Err(Error::invalid(format!(
            "--cpus {}: the workers of cluster `{cluster}` have {largest_worker} thread(s) \
             each, so no task could ever start; ask for at most {largest_worker}, or start \
             the cluster with more cores per process",
            spec.cpus
        )));
    }
    let mut after = Vec::new();
    for &a in &spec.after {
        let Some(v) = book.submission(a) else {
            return Err(Error::invalid(format!(
                "--after {a}: cluster `{cluster}` has no submission {a} (`rdask-jobqueue \
                 tasks` lists them)"
            )));
        };
        match v.state {
            SubmissionState::Succeeded => {}
            SubmissionState::Waiting | SubmissionState::Running => after.push(a),
            SubmissionState::Failed | SubmissionState::Refused => {
                return Err(Error::invalid(format!(
                    "--after {a}: submission {a} has {} ({} of its tasks did not succeed), so \
                     this one would never start",
                    v.state.name(),
                    v.counts.unsuccessful()
                )))
            }
        }
    }
    after.sort();
    after.dedup();
    spec.after = after;
    Ok(spec)
}

/// Why a submission accepted now will not run soon, if so: nothing to run it on.
pub(super) fn idle_warning(target: &Target, workers: usize, cluster: &str) -> Option<String> {
    let wants_none = match target {
        Target::Fixed { workers } => *workers == 0,
        Target::Adaptive { maximum, .. } => *maximum == 0,
    };
    (workers == 0 && wants_none).then(|| {
        let flag = crate::cluster::lifecycle::name_flag(cluster);
        format!(
            "cluster `{cluster}` has no workers and wants none: its tasks wait until \
             `rdask-jobqueue scale N{flag}` or `rdask-jobqueue adapt --maximum N{flag}`"
        )
    })
}

fn invalid(e: Error) -> Reply {
    Reply::Error {
        invalid: matches!(e, Error::Invalid(_)),
        message: e.to_string(),
    }
}

impl Deployer<'_> {
    /// The most threads a worker of this cluster has: those connected, or what its job
    /// script gives each worker process (the cluster may have none yet).
    fn largest_worker(&self) -> u32 {
        let configured = u32::try_from(self.rec.scaler.threads_per_worker).unwrap_or(u32::MAX);
        self.last_status
            .iter()
            .flat_map(|s| s.workers.iter().map(|w| w.nthreads))
            .fold(configured, u32::max)
    }

    /// `submit`: admitted, journaled, then sent to the scheduler as one description.
    pub(super) fn submit_tasks(&mut self, spec: TaskArraySpec) -> Reply {
        let spec = match admit(&self.book, spec, self.largest_worker(), &self.dir.name) {
            Ok(s) => s,
            Err(e) => return invalid(e),
        };
        let id = spec.submission;
        let tasks = spec.len();
        let entry = Entry::Submitted {
            spec: Box::new(spec.clone()),
            at: now(),
        };
        // Journaled first: a task that runs is always one `tasks` knows.
        if let Err(e) = self.journal.append(std::slice::from_ref(&entry)) {
            return Reply::Error {
                message: format!("{e}; nothing was submitted"),
                invalid: false,
            };
        }
        self.book.apply(&entry);
        if let Err(e) = self.client.submit_task_array(spec) {
            self.journal_events(vec![Entry::Refused {
                submission: id,
                reason: e.to_string(),
                at: now(),
            }]);
            return invalid(e);
        }
        tracing::info!("submission {id}: {tasks} task(s)");
        let workers = self.last_status.as_ref().map_or(0, |s| s.workers.len());
        Reply::Submitted {
            submission: id,
            tasks,
            warning: idle_warning(&self.target, workers, &self.dir.name),
        }
    }

    /// `tasks` and `wait`: from the journal.
    pub(super) fn tasks_view(
        &self,
        submission: Option<SubmissionId>,
        states: Option<&[TaskState]>,
    ) -> Reply {
        match self.book.view(submission, states, &self.dir.name) {
            Ok(v) => Reply::Tasks(Box::new(v)),
            Err(e) => invalid(e),
        }
    }

    /// `cancel`: journaled as asked, then the scheduler ends the tasks (queued ones at once,
    /// running ones by killing their process group); their ends come back as events.
    pub(super) fn cancel_tasks(
        &mut self,
        submission: SubmissionId,
        tasks: Option<(u64, u64)>,
    ) -> Reply {
        let Some(v) = self.book.submission(submission) else {
            return invalid(Error::invalid(format!(
                "cluster `{}` has no submission {submission} (`rdask-jobqueue tasks` lists them)",
                self.dir.name
            )));
        };
        if v.state.is_finished() {
            return Reply::Ok {
                message: format!(
                    "submission {submission} has already ended ({}): nothing to cancel",
                    v.state.name()
                ),
            };
        }
        self.journal_events(vec![Entry::CancelRequested {
            submission,
            tasks,
            at: now(),
        }]);
        if let Err(e) = self.client.cancel_tasks(submission, tasks) {
            return invalid(e);
        }
        let which = match tasks {
            Some((a, b)) => format!("tasks {a}-{b} of submission {submission}"),
            None => format!("submission {submission}"),
        };
        Reply::Ok {
            message: format!("cancelling {which}"),
        }
    }

    /// Events from the scheduler: journaled in one append, then taken into the book.
    pub(super) fn on_task_events(&mut self, batch: Vec<TaskEvent>) {
        let at = now();
        let mut entries = Vec::new();
        for event in batch {
            match event {
                TaskEvent::Started(list) => {
                    entries.extend(list.into_iter().map(|task| Entry::Started { task, at }))
                }
                TaskEvent::Ended(list) => {
                    entries.extend(list.into_iter().map(|outcome| Entry::Ended { outcome }))
                }
                TaskEvent::Rejected { submission, reason } => {
                    tracing::warn!("submission {submission} refused: {reason}");
                    entries.push(Entry::Refused {
                        submission,
                        reason,
                        at,
                    });
                }
            }
        }
        self.journal_events(entries);
    }

    /// Appends and applies. A failed append is noted (and shown by `status`) but the book
    /// still takes the entries: `wait` and `tasks` would otherwise hang on outcomes the
    /// scheduler has already forgotten.
    fn journal_events(&mut self, entries: Vec<Entry>) {
        if let Err(e) = self.journal.append(&entries) {
            self.note(format!("journaling {} task event(s): {e}", entries.len()));
        }
        for e in &entries {
            self.book.apply(e);
        }
    }

    /// Marks every unfinished submission lost (`why` goes to the log): at start-up for an
    /// earlier daemon's, on `down` for ours.
    pub(super) fn abandon_unfinished(&mut self, why: &str) {
        let unfinished = self.book.unfinished();
        if unfinished.is_empty() {
            return;
        }
        let at = now();
        tracing::warn!(
            "submission(s) {} did not finish: {why}",
            unfinished
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let entries = unfinished
            .into_iter()
            .map(|submission| Entry::Abandoned { submission, at })
            .collect();
        self.journal_events(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_array::{Items, TaskEnd, TaskOutcome};

    fn spec(after: &[u64], cpus: u32) -> TaskArraySpec {
        let mut s = TaskArraySpec::new(
            SubmissionId(0),
            Items::Range {
                start: 1,
                end: 3,
                step: 1,
            },
            vec!["true".into()],
        );
        s.after = after.iter().map(|&a| SubmissionId(a)).collect();
        s.cpus = cpus;
        s
    }

    fn book_with(ends: &[(u64, TaskEnd)]) -> Book {
        let mut book = Book::default();
        for (i, (id, end)) in ends.iter().enumerate() {
            let mut s = spec(&[], 1);
            s.submission = SubmissionId(*id);
            s.items = Items::Range {
                start: 0,
                end: 0,
                step: 1,
            };
            book.apply(&Entry::Submitted {
                spec: Box::new(s),
                at: i as f64,
            });
            if *end != TaskEnd::Cancelled {
                book.apply(&Entry::Ended {
                    outcome: TaskOutcome {
                        submission: SubmissionId(*id),
                        task: 0,
                        state: end.clone(),
                        attempt: 1,
                        start: 1.0,
                        end: 2.0,
                        worker: "w".into(),
                        host: "h".into(),
                        stderr_tail: String::new(),
                    },
                });
            }
        }
        book
    }

    #[test]
    fn ids_come_from_the_journal_and_finished_afters_are_dropped() {
        // 1 succeeded, 2 still waits (no end), 3 failed.
        let book = book_with(&[
            (1, TaskEnd::Succeeded),
            (2, TaskEnd::Cancelled),
            (3, TaskEnd::Failed { code: 1 }),
        ]);
        let s = admit(&book, spec(&[1, 2, 2], 1), 4, "c").unwrap();
        assert_eq!(s.submission, SubmissionId(4));
        assert_eq!(s.after, vec![SubmissionId(2)]);
        let e = admit(&book, spec(&[3], 1), 4, "c").unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        assert!(e.to_string().contains("never start"), "{e}");
        let e = admit(&book, spec(&[9], 1), 4, "c").unwrap_err();
        assert!(e.to_string().contains("no submission 9"), "{e}");
    }

    #[test]
    fn cpus_above_the_largest_worker_are_refused() {
        let book = Book::default();
        assert!(admit(&book, spec(&[], 4), 4, "c").is_ok());
        let e = admit(&book, spec(&[], 5), 4, "c").unwrap_err();
        assert!(e.to_string().contains("--cpus 5"), "{e}");
        assert!(matches!(e, Error::Invalid(_)));
    }

    #[test]
    fn an_idle_cluster_is_named_in_a_warning() {
        let none = Target::Fixed { workers: 0 };
        assert!(idle_warning(&none, 0, "default")
            .unwrap()
            .contains("scale N"));
        assert!(idle_warning(&none, 1, "default").is_none());
        let adapt = Target::Adaptive {
            minimum: 0,
            maximum: 4,
            target_duration: 5.0,
            wait_count: 3,
        };
        assert!(idle_warning(&adapt, 0, "default").is_none());
    }
}
