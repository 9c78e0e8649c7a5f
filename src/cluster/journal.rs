//! The task journal: every submission of programs a named cluster accepted, and what became of
//! each of its tasks, kept next to the job ledger (`tasks.jsonl` in the cluster's directory).
//!
//! Why it exists: a submission lives on the cluster, not in the shell that submitted it, so
//! `tasks` must still answer after that shell is gone and after the tasks ended; and the
//! scheduler forgets a task once it is done. The daemon journals each submission before it
//! hands it to the scheduler, and each task's start and end as they stream back; `tasks`
//! (through the daemon while it lives, or from the file once it is gone) reduces the entries
//! to views.
//!
//! # Format (version 1)
//! - Line 1, the *header*: `{"version": 1, "cluster": NAME}`.
//! - Every further line, one [`Entry`] as JSON (`{"kind": "submitted", ...}`).
//! - Entries are appended in batches (one `write` and one `fdatasync` per batch: a submission
//!   of 100,000 tasks must not cost 100,000 syncs), never rewritten: the journal is a history.
//! - A line counts once its newline is on disk. A last line without one is a crash mid-append
//!   (or a reader racing the writer): readers drop it, and the writer cuts it off before its
//!   first append. A *complete* line that does not parse is refused with its line number.
//!
//! One writer: the cluster's daemon (the rule the ledger has too). Readers never lock.
//!
//! The reducer ([`Book`]) is pure: entries in, the views `tasks` prints out. A task without
//! an entry of its own waits: 100,000 queued tasks cost the journal one line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task_array::{SubmissionId, TaskArraySpec, TaskEnd, TaskOutcome, TaskStarted};

/// The format version written in the header; journals from a newer version are refused.
pub const JOURNAL_VERSION: u32 = 1;

/// A task's state, as `tasks --state` filters it: the task arrays' ends ([`TaskEnd`])
/// grouped into the few words people filter by, plus the two states before an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Waiting,
    Running,
    Succeeded,
    /// A non-zero exit, a signal, or a program that could not start.
    Failed,
    /// Killed at its `--time-limit`.
    TimedOut,
    /// Cancelled, or never run because a submission it waited for (`--after`) failed.
    Cancelled,
    /// Its worker was lost more often than `--max-retries` allowed.
    Lost,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Waiting,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::TimedOut,
        TaskState::Cancelled,
        TaskState::Lost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::TimedOut => "timed-out",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        TaskState::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn of(end: &TaskEnd) -> TaskState {
        match end {
            TaskEnd::Succeeded => TaskState::Succeeded,
            TaskEnd::Failed { .. } | TaskEnd::Signalled { .. } | TaskEnd::CouldNotStart { .. } => {
                TaskState::Failed
            }
            TaskEnd::TimedOut => TaskState::TimedOut,
            TaskEnd::Cancelled | TaskEnd::DependencyFailed => TaskState::Cancelled,
            TaskEnd::Lost => TaskState::Lost,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, TaskState::Waiting | TaskState::Running)
    }
}

/// One line of the journal after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Accepted by the daemon, about to go to the scheduler. `at`: Unix seconds.
    Submitted { spec: Box<TaskArraySpec>, at: f64 },
    /// The scheduler refused it (its reason): none of its tasks run.
    Refused {
        submission: SubmissionId,
        reason: String,
        at: f64,
    },
    /// A task was handed to a worker.
    Started { task: TaskStarted, at: f64 },
    /// A task ended (each task once).
    Ended { outcome: TaskOutcome },
    /// `cancel` asked for these tasks (ids `first..=last`; all when None).
    CancelRequested {
        submission: SubmissionId,
        #[serde(default)]
        tasks: Option<(u64, u64)>,
        at: f64,
    },
    /// The daemon that ran it is gone (the cluster went down, or died) before every task
    /// ended: its unfinished tasks are lost. Written by the next daemon of the cluster, or by
    /// this one on `down`.
    Abandoned { submission: SubmissionId, at: f64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
    cluster: String,
}

// ---------------------------------------------------------------------------------------
// The reducer.

/// Counts of a submission's tasks per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub waiting: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub lost: u64,
}

impl Counts {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.lost
    }

    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.timed_out + self.cancelled + self.lost
    }

    pub fn total(&self) -> u64 {
        self.waiting + self.running + self.finished()
    }

    fn of(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Waiting => &mut self.waiting,
            TaskState::Running => &mut self.running,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
            TaskState::TimedOut => &mut self.timed_out,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Lost => &mut self.lost,
        }
    }
}

/// A submission's overall state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionState {
    /// No task has started yet.
    Waiting,
    /// Some tasks started, some are unfinished.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Every task ended, at least one without success.
    Failed,
    /// The scheduler refused it.
    Refused,
}

impl SubmissionState {
    pub fn name(self) -> &'static str {
        match self {
            SubmissionState::Waiting => "waiting",
            SubmissionState::Running => "running",
            SubmissionState::Succeeded => "succeeded",
            SubmissionState::Failed => "failed",
            SubmissionState::Refused => "refused",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            SubmissionState::Succeeded | SubmissionState::Failed | SubmissionState::Refused
        )
    }
}

/// One submission as `tasks` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmissionView {
    pub id: SubmissionId,
    pub name: String,
    /// PROGRAM and ARGS, placeholders unexpanded.
    pub program: Vec<String>,
    pub state: SubmissionState,
    pub counts: Counts,
    pub submitted_at: f64,
    /// When its last task ended (once all did).
    pub ended_at: Option<f64>,
    pub refused: Option<String>,
}

/// One task as `tasks ID` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub task: u64,
    pub state: TaskState,
    /// How it ended, in words (`failed (exit 3)`, `signalled (9)`).
    pub end: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub worker: Option<String>,
    pub host: Option<String>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    /// Seconds its last run took, once it ended.
    pub duration: Option<f64>,
    pub attempts: u32,
    /// The end of stderr of a task that did not succeed, or why it could not start.
    pub stderr_tail: Option<String>,
}

impl TaskView {
    fn waiting(task: u64) -> TaskView {
        TaskView {
            task,
            state: TaskState::Waiting,
            end: None,
            exit_code: None,
            signal: None,
            worker: None,
            host: None,
            started_at: None,
            ended_at: None,
            duration: None,
            attempts: 0,
            stderr_tail: None,
        }
    }

    fn of(task: u64, known: &Known) -> TaskView {
        match known {
            Known::Running(started, at) => TaskView {
                state: TaskState::Running,
                worker: Some(started.worker.clone()),
                host: Some(started.host.clone()),
                started_at: Some(*at),
                attempts: started.attempt,
                ..TaskView::waiting(task)
            },
            Known::Ended(o) => {
                let ran = o.attempt > 0;
                let detail = match &o.state {
                    TaskEnd::CouldNotStart { why } => Some(why.clone()),
                    _ if o.stderr_tail.is_empty() => None,
                    _ => Some(o.stderr_tail.clone()),
                };
                TaskView {
                    task,
                    state: TaskState::of(&o.state),
                    end: Some(o.state.to_string()),
                    exit_code: match o.state {
                        TaskEnd::Succeeded => Some(0),
                        TaskEnd::Failed { code } => Some(code),
                        _ => None,
                    },
                    signal: match o.state {
                        TaskEnd::Signalled { signal } => Some(signal),
                        _ => None,
                    },
                    worker: ran.then(|| o.worker.clone()),
                    host: ran.then(|| o.host.clone()),
                    started_at: ran.then_some(o.start),
                    ended_at: Some(o.end),
                    duration: ran.then(|| (o.end - o.start).max(0.0)),
                    attempts: o.attempt,
                    stderr_tail: detail,
                }
            }
        }
    }
}

/// What `tasks` shows: the submissions (all, or the one asked for) and, for one, its tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TasksView {
    pub submissions: Vec<SubmissionView>,
    #[serde(default)]
    pub tasks: Option<Vec<TaskView>>,
}

/// What the journal knows about one task that has an entry (the others wait).
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Running(TaskStarted, f64),
    Ended(TaskOutcome),
}

#[derive(Clone, Debug, PartialEq)]
struct Submission {
    spec: TaskArraySpec,
    at: f64,
    refused: Option<String>,
    /// By task position (not id), so every lookup is the spec's own arithmetic.
    tasks: BTreeMap<u64, Known>,
    counts: Counts,
    last_end: Option<f64>,
    /// Its daemon went before its tasks ended: the unfinished ones are lost.
    abandoned: bool,
}

/// The journal reduced: every submission and the tasks with an entry. Pure: fed entries in
/// order (from the file, or as the daemon appends them), it answers `tasks`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Book {
    submissions: BTreeMap<SubmissionId, Submission>,
}

impl Book {
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Book {
        let mut book = Book::default();
        for e in entries {
            book.apply(e);
        }
        book
    }

    /// Takes in one entry. Entries about unknown submissions or tasks outside a submission,
    /// a second end, and a start after the end are ignored: the journal is a history, and
    /// replaying it must never fail.
    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Submitted { spec, at } => {
                let counts = Counts {
                    waiting: spec.len(),
                    ..Counts::default()
                };
                self.submissions.insert(
                    spec.submission,
                    Submission {
                        spec: (**spec).clone(),
                        at: *at,
                        refused: None,
                        tasks: BTreeMap::new(),
                        counts,
                        last_end: None,
                        abandoned: false,
                    },
                );
            }
            Entry::Refused {
                submission, reason, ..
            } => {
                if let Some(s) = self.submissions.get_mut(submission) {
                    s.refused = Some(reason.clone());
                }
            }
            Entry::Started { task, at } => {
                let Some(s) = self.submissions.get_mut(&task.submission) else {
                    return;
                };
                if s.abandoned {
                    return;
                }
                let Some(pos) = s.spec.items.position(task.task) else {
                    return;
                };
                match s.tasks.get(&pos) {
                    Some(Known::Ended(_)) => return,
                    // Started again elsewhere (its worker was lost).
                    Some(Known::Running(..)) => {}
                    None => {
                        s.counts.waiting -= 1;
                        s.counts.running += 1;
                    }
                }
                s.tasks.insert(pos, Known::Running(task.clone(), *at));
            }
            Entry::Ended { outcome: o } => {
                let Some(s) = self.submissions.get_mut(&o.submission) else {
                    return;
                };
                if s.abandoned {
                    return;
                }
                let Some(pos) = s.spec.items.position(o.task) else {
                    return;
                };
                match s.tasks.get(&pos) {
                    Some(Known::Ended(_)) => return,
                    Some(Known::Running(..)) => s.counts.running -= 1,
                    None => s.counts.waiting -= 1,
                }
                *s.counts.of(TaskState::of(&o.state)) += 1;
                s.last_end = Some(s.last_end.map_or(o.end, |e| e.max(o.end)));
                s.tasks.insert(pos, Known::Ended(o.clone()));
            }
            Entry::Abandoned { submission, at } => {
                let Some(s) = self.submissions.get_mut(submission) else {
                    return;
                };
                if s.abandoned {
                    return;
                }
                s.abandoned = true;
                let c = &mut s.counts;
                c.lost += c.waiting + c.running;
                if c.waiting + c.running > 0 {
                    s.last_end = Some(s.last_end.map_or(*at, |e| e.max(*at)));
                }
                c.waiting = 0;
                c.running = 0;
            }
            // A request, not a fact: the tasks' ends say what it did.
            Entry::CancelRequested { .. } => {}
        }
    }

    pub fn contains(&self, submission: SubmissionId) -> bool {
        self.submissions.contains_key(&submission)
    }

    /// The submission as it was accepted.
    pub fn spec(&self, submission: SubmissionId) -> Option<&TaskArraySpec> {
        self.submissions.get(&submission).map(|s| &s.spec)
    }

    /// The next free id (the daemon assigns them, from 1).
    pub fn next_id(&self) -> SubmissionId {
        SubmissionId(self.submissions.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn submission(&self, id: SubmissionId) -> Option<SubmissionView> {
        let s = self.submissions.get(&id)?;
        let c = &s.counts;
        let state = if s.refused.is_some() {
            SubmissionState::Refused
        } else if c.waiting + c.running > 0 {
            if c.running + c.finished() > 0 {
                SubmissionState::Running
            } else {
                SubmissionState::Waiting
            }
        } else if c.unsuccessful() > 0 {
            SubmissionState::Failed
        } else {
            SubmissionState::Succeeded
        };
        Some(SubmissionView {
            id,
            name: s.spec.name.clone(),
            program: s.spec.argv.clone(),
            state,
            counts: s.counts.clone(),
            submitted_at: s.at,
            ended_at: state.is_finished().then_some(s.last_end).flatten(),
            refused: s.refused.clone(),
        })
    }

    /// The answer to `tasks [ID] [--state ...]`: every submission, or one with its tasks in
    /// `states` (all when empty; no list when None). An unknown id is the user's mistake.
    pub fn view(
        &self,
        submission: Option<SubmissionId>,
        states: Option<&[TaskState]>,
        cluster: &str,
    ) -> Result<TasksView> {
        let Some(id) = submission else {
            return Ok(TasksView {
                submissions: self.submissions(),
                tasks: None,
            });
        };
        let Some(view) = self.submission(id) else {
            return Err(Error::invalid(format!(
                "cluster `{cluster}` has no submission {id} (`rdask-jobqueue tasks` lists them)"
            )));
        };
        Ok(TasksView {
            submissions: vec![view],
            tasks: states.map(|st| self.tasks(id, st).unwrap_or_default()),
        })
    }

    /// The submissions with unfinished tasks.
    pub fn unfinished(&self) -> Vec<SubmissionId> {
        self.submissions
            .iter()
            .filter(|(_, s)| {
                s.refused.is_none() && !s.abandoned && s.counts.waiting + s.counts.running > 0
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every submission, oldest first.
    pub fn submissions(&self) -> Vec<SubmissionView> {
        self.submissions
            .keys()
            .filter_map(|&id| self.submission(id))
            .collect()
    }

    /// The tasks of `submission` in `states` (all when empty), in task order; None for an
    /// unknown submission. Only a question that includes waiting tasks walks the whole range.
    pub fn tasks(&self, submission: SubmissionId, states: &[TaskState]) -> Option<Vec<TaskView>> {
        let s = self.submissions.get(&submission)?;
        let wanted = |st: TaskState| states.is_empty() || states.contains(&st);
        let items = &s.spec.items;
        let mut out = Vec::new();
        if s.refused.is_some() {
            return Some(out);
        }
        let view = |pos: u64, known: Option<&Known>| {
            let mut v = match known {
                None => TaskView::waiting(items.id(pos)),
                Some(k) => TaskView::of(items.id(pos), k),
            };
            if s.abandoned && !v.state.is_finished() {
                v.state = TaskState::Lost;
                v.end = Some("lost (its cluster's daemon ended first)".into());
            }
            v
        };
        // Waiting tasks have no entry (and abandoned ones became lost): only then is the
        // whole range walked.
        if wanted(TaskState::Waiting) || (s.abandoned && wanted(TaskState::Lost)) {
            for pos in 0..items.len() {
                let v = view(pos, s.tasks.get(&pos));
                if wanted(v.state) {
                    out.push(v);
                }
            }
        } else {
            for (&pos, known) in &s.tasks {
                let v = view(pos, Some(known));
                if wanted(v.state) {
                    out.push(v);
                }
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------------------
// The file.

/// The journal file, open for appending (the daemon's).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

/// What a journal file holds: its complete entries, and whether a torn last line was dropped.
#[derive(Debug)]
pub struct Read {
    pub entries: Vec<Entry>,
    pub torn: bool,
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::runtime(format!(
        "the task journal {} is corrupt ({why}); move it away to start a fresh one (the \
         records of past submissions go with it)",
        path.display()
    ))
}

/// Parses a journal's text: the header, then the entries; a last line without its newline is
/// dropped (`torn`).
pub fn parse(path: &Path, cluster: &str, text: &str) -> Result<Read> {
    if text.is_empty() {
        return Ok(Read {
            entries: Vec::new(),
            torn: false,
        });
    }
    let (complete, torn) = match text.rfind('\n') {
        Some(i) => (&text[..i], !text[i + 1..].is_empty()),
        None => ("", true),
    };
    let mut lines = complete
        .split('\n')
        .filter(|l| !complete.is_empty() || !l.is_empty());
    let Some(first) = lines.next() else {
        // Only a torn header: nothing was ever journaled.
        return Ok(Read {
            entries: Vec::new(),
            torn,
        });
    };
    let value: serde_json::Value =
        serde_json::from_str(first).map_err(|e| corrupt(path, &format!("line 1: {e}")))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v > u64::from(JOURNAL_VERSION) => {
            return Err(Error::runtime(format!(
                "the task journal {} has format version {v}, newer than this rdask-jobqueue \
                 understands ({JOURNAL_VERSION}); use the newer rdask-jobqueue that wrote it",
                path.display()
            )))
        }
        Some(_) => {}
        None => return Err(corrupt(path, "line 1: no format version")),
    }
    let header: Header =
        serde_json::from_value(value).map_err(|e| corrupt(path, &format!("line 1: {e}")))?;
    if header.cluster != cluster {
        return Err(Error::runtime(format!(
            "the task journal {} belongs to cluster `{}`, not `{cluster}`",
            path.display(),
            header.cluster
        )));
    }
    let mut entries = Vec::new();
    for (i, line) in lines.enumerate() {
        let entry: Entry = serde_json::from_str(line)
            .map_err(|e| corrupt(path, &format!("line {}: {e}", i + 2)))?;
        entries.push(entry);
    }
    Ok(Read { entries, torn })
}

/// Reads the journal at `path` (a missing file is an empty journal). For readers: it never
/// writes.
pub fn read(path: &Path, cluster: &str) -> Result<Read> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, cluster, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Read {
            entries: Vec::new(),
            torn: false,
        }),
        Err(e) => Err(Error::io(format!(
            "reading the task journal {}",
            path.display()
        ))(e)),
    }
}

impl Journal {
    /// Opens the journal of `cluster` for appending (created with its header if missing) and
    /// returns what it holds. A torn last line is cut off first, so the next append starts on
    /// a line of its own.
    pub fn open(path: &Path, cluster: &str) -> Result<(Journal, Vec<Entry>)> {
        let ctx = || format!("opening the task journal {}", path.display());
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(ctx())(e)),
        };
        let read = parse(path, cluster, &text)?;
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        if keep == 0 {
            // Nothing whole (a new file, or a torn header): start it with its header.
            let mut header = serde_json::to_vec(&Header {
                version: JOURNAL_VERSION,
                cluster: cluster.to_string(),
            })
            .expect("a header serialises");
            header.push(b'\n');
            crate::files::write_atomic(path, &header, 0o600)?;
        } else if read.torn {
            // Cut the torn tail, atomically, so the next append starts a line of its own.
            crate::files::write_atomic(path, &text.as_bytes()[..keep], 0o600)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(Error::io(ctx()))?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
            },
            read.entries,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entries` in one write and one sync: durable when it returns.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(entries.len() * 160);
        for e in entries {
            serde_json::to_writer(&mut bytes, e).expect("an entry serialises");
            bytes.push(b'\n');
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(Error::io(format!(
                "appending to the task journal {}",
                self.path.display()
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_array::Items;

    const S1: SubmissionId = SubmissionId(1);

    fn submitted(id: u64, start: u64, end: u64) -> Entry {
        let mut spec = TaskArraySpec::new(
            SubmissionId(id),
            Items::Range {
                start,
                end,
                step: 1,
            },
            vec!["echo".into(), "{task}".into()],
        );
        spec.name = format!("s{id}");
        Entry::Submitted {
            spec: Box::new(spec),
            at: 10.0,
        }
    }

    fn started(id: u64, task: u64) -> Entry {
        Entry::Started {
            task: TaskStarted {
                submission: SubmissionId(id),
                task,
                attempt: 1,
                worker: "w1".into(),
                host: "node1".into(),
            },
            at: 11.0,
        }
    }

    fn ended(id: u64, task: u64, state: TaskEnd) -> Entry {
        Entry::Ended {
            outcome: TaskOutcome {
                submission: SubmissionId(id),
                task,
                stderr_tail: if state.succeeded() {
                    String::new()
                } else {
                    "boom".into()
                },
                state,
                attempt: 1,
                start: 11.0,
                end: 12.5,
                worker: "w1".into(),
                host: "node1".into(),
            },
        }
    }

    #[test]
    fn the_reducer_counts_states_and_submission_states() {
        let mut book = Book::from_entries(&[submitted(1, 1, 4)]);
        let v = book.submission(S1).unwrap();
        assert_eq!(v.state, SubmissionState::Waiting);
        assert_eq!(v.counts.waiting, 4);
        book.apply(&started(1, 2));
        book.apply(&ended(1, 1, TaskEnd::Succeeded));
        let v = book.submission(S1).unwrap();
        assert_eq!(v.state, SubmissionState::Running);
        let c = &v.counts;
        assert_eq!((c.waiting, c.running, c.succeeded), (2, 1, 1));
        let running = book.tasks(S1, &[TaskState::Running]).unwrap();
        assert_eq!(running[0].task, 2);
        assert_eq!(running[0].worker.as_deref(), Some("w1"));
        book.apply(&ended(1, 2, TaskEnd::Failed { code: 3 }));
        book.apply(&ended(1, 3, TaskEnd::Signalled { signal: 9 }));
        book.apply(&ended(1, 4, TaskEnd::TimedOut));
        let v = book.submission(S1).unwrap();
        assert_eq!(v.state, SubmissionState::Failed);
        assert_eq!(v.counts.total(), 4);
        assert_eq!((v.counts.failed, v.counts.timed_out), (2, 1));
        assert_eq!(v.ended_at, Some(12.5));
        let failed = book.tasks(S1, &[TaskState::Failed]).unwrap();
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].task, 2);
        assert_eq!(failed[0].exit_code, Some(3));
        assert_eq!(failed[0].stderr_tail.as_deref(), Some("boom"));
        assert_eq!(failed[0].duration, Some(1.5));
        assert_eq!(failed[1].signal, Some(9));
        assert_eq!(failed[1].end.as_deref(), Some("signalled (9)"));
        assert!(book.tasks(SubmissionId(9), &[]).is_none());
    }

    #[test]
    fn a_task_ends_once_and_foreign_entries_are_ignored() {
        let mut book = Book::from_entries(&[submitted(1, 0, 1)]);
        book.apply(&ended(1, 0, TaskEnd::Succeeded));
        // A second end (a duplicate report) and a late start change nothing.
        book.apply(&ended(1, 0, TaskEnd::Failed { code: 1 }));
        book.apply(&started(1, 0));
        // Out of range, unknown submission.
        book.apply(&ended(1, 7, TaskEnd::Lost));
        book.apply(&ended(2, 0, TaskEnd::Lost));
        let c = book.submission(S1).unwrap().counts;
        assert_eq!((c.succeeded, c.failed, c.lost, c.waiting), (1, 0, 0, 1));
        assert!(!book.contains(SubmissionId(2)));
        book.apply(&ended(1, 1, TaskEnd::Succeeded));
        let v = book.submission(S1).unwrap();
        assert_eq!(v.state, SubmissionState::Succeeded);
        assert_eq!(book.next_id(), SubmissionId(2));
    }

    #[test]
    fn waiting_tasks_are_listed_from_the_spec() {
        let mut book = Book::from_entries(&[submitted(3, 1, 5)]);
        book.apply(&ended(3, 2, TaskEnd::Succeeded));
        let all = book.tasks(SubmissionId(3), &[]).unwrap();
        let ids: Vec<u64> = all.iter().map(|t| t.task).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let waiting = book.tasks(SubmissionId(3), &[TaskState::Waiting]).unwrap();
        assert_eq!(waiting.len(), 4);
        assert_eq!(book.next_id(), SubmissionId(4));
        assert_eq!(Book::default().next_id(), SubmissionId(1));
    }

    #[test]
    fn an_abandoned_submission_loses_its_unfinished_tasks() {
        let mut book = Book::from_entries(&[submitted(1, 1, 3)]);
        book.apply(&ended(1, 1, TaskEnd::Succeeded));
        book.apply(&started(1, 2));
        assert_eq!(book.unfinished(), vec![S1]);
        book.apply(&Entry::Abandoned {
            submission: S1,
            at: 20.0,
        });
        // Reports after it change nothing.
        book.apply(&ended(1, 3, TaskEnd::Succeeded));
        let v = book.submission(S1).unwrap();
        assert_eq!((v.counts.succeeded, v.counts.lost), (1, 2));
        assert_eq!(v.state, SubmissionState::Failed);
        assert_eq!(v.ended_at, Some(20.0));
        assert!(book.unfinished().is_empty());
        let lost = book.tasks(S1, &[TaskState::Lost]).unwrap();
        assert_eq!(lost.iter().map(|t| t.task).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn a_refused_submission_has_no_tasks() {
        let mut book = Book::from_entries(&[submitted(1, 1, 3)]);
        book.apply(&Entry::Refused {
            submission: S1,
            reason: "unknown --after 9".into(),
            at: 11.0,
        });
        let v = book.submission(S1).unwrap();
        assert_eq!(v.state, SubmissionState::Refused);
        assert!(book.tasks(S1, &[]).unwrap().is_empty());
    }

    #[test]
    fn ends_map_to_the_filter_words() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.name()), Some(s));
        }
        assert_eq!(TaskState::parse("timed_out"), Some(TaskState::TimedOut));
        assert_eq!(TaskState::parse("nope"), None);
        let why = "not found".to_string();
        assert_eq!(
            TaskState::of(&TaskEnd::CouldNotStart { why }),
            TaskState::Failed
        );
        assert_eq!(
            TaskState::of(&TaskEnd::DependencyFailed),
            TaskState::Cancelled
        );
    }

    #[test]
    fn the_file_round_trips_and_tolerates_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.jsonl");
        let (mut j, old) = Journal::open(&path, "c").unwrap();
        assert!(old.is_empty());
        let batch = vec![submitted(1, 1, 2), ended(1, 1, TaskEnd::Succeeded)];
        j.append(&batch).unwrap();
        drop(j);
        let r = read(&path, "c").unwrap();
        assert_eq!(r.entries, batch);
        assert!(!r.torn);
        // A crash mid-append leaves half a line.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"ended\",\"outc");
        std::fs::write(&path, &text).unwrap();
        let r = read(&path, "c").unwrap();
        assert!(r.torn);
        assert_eq!(r.entries, batch);
        // The writer cuts it off and appends on a fresh line.
        let (mut j, old) = Journal::open(&path, "c").unwrap();
        assert_eq!(old, batch);
        j.append(&[ended(1, 2, TaskEnd::Failed { code: 2 })])
            .unwrap();
        let r = read(&path, "c").unwrap();
        assert!(!r.torn);
        assert_eq!(r.entries.len(), 3);
        let book = Book::from_entries(&r.entries);
        assert_eq!(book.submission(S1).unwrap().state, SubmissionState::Failed);
    }

    #[test]
    fn damage_a_newer_version_and_a_foreign_cluster_are_refused() {
        let p = Path::new("/x/tasks.jsonl");
        let head = "{\"version\":1,\"cluster\":\"c\"}\n";
        let e = parse(p, "c", &format!("{head}not json\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse(p, "c", "{\"version\":9,\"cluster\":\"c\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 9"), "{e}");
        let e = parse(p, "d", head).unwrap_err().to_string();
        assert!(e.contains("belongs to cluster `c`"), "{e}");
        // A torn header alone is an empty journal.
        assert!(parse(p, "c", "{\"vers").unwrap().entries.is_empty());
    }

    proptest::proptest! {
        /// Whatever order starts and ends arrive in (duplicates, strangers), the counts add
        /// up to the submission's size and each task is counted once.
        #[test]
        fn counts_always_add_up(events in proptest::collection::vec((0u64..12, 0u8..7), 0..60)) {
            let mut book = Book::from_entries(&[submitted(1, 0, 9)]);
            let mut ended_tasks = std::collections::BTreeSet::new();
            for (task, kind) in events {
                let e = match kind {
                    0 | 1 => started(1, task),
                    2 => ended(1, task, TaskEnd::Succeeded),
                    3 => ended(1, task, TaskEnd::Failed { code: 1 }),
                    4 => ended(1, task, TaskEnd::Lost),
                    5 => ended(1, task, TaskEnd::Cancelled),
                    _ => ended(1, task, TaskEnd::TimedOut),
                };
                if kind >= 2 && task < 10 {
                    ended_tasks.insert(task);
                }
                book.apply(&e);
                let c = book.submission(S1).unwrap().counts;
                proptest::prop_assert_eq!(c.total(), 10);
                proptest::prop_assert_eq!(c.finished(), ended_tasks.len() as u64);
                proptest::prop_assert_eq!(book.tasks(S1, &[]).unwrap().len(), 10);
            }
        }
    }
}
