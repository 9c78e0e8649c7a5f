//! The task journal: every submission of programs a named cluster accepted, and what became of
//! each of its tasks, kept next to the job ledger (`tasks.jsonl` in the cluster's directory).
//!
//! Why it exists: a submission lives on the cluster, not in the shell that submitted it, so
//! `tasks` must still answer after that shell is gone and after the tasks ended; and the
//! scheduler forgets a task once it is done. The daemon journals each submission before it
//! hands it to the scheduler, and each task's end as the outcomes stream back; `tasks` (through
//! the daemon while it lives, or from the file once it is gone) reduces the entries to views.
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
//! The reducer ([`Book`]) is pure: entries in, the views `tasks` prints out. Task states that
//! are not journaled (waiting) are implied: a task of a submission with no entry of its own
//! waits.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format version written in the header; journals from a newer version are refused.
pub const JOURNAL_VERSION: u32 = 1;

/// Lines of a failed task's stderr kept in the journal (and shown by `tasks`).
pub const STDERR_TAIL_LINES: usize = 5;

/// The ids of a submission's tasks: `start, start+step, ...` up to `end` inclusive. Arrays
/// (`--array 1-1000:5`) and numbered inputs (`--each-line`, `--each-file`: 0..n) are both
/// ranges, so 100,000 tasks cost three numbers here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIds {
    pub start: u64,
    pub end: u64,
    pub step: u64,
}

impl TaskIds {
    pub fn len(&self) -> u64 {
        if self.end < self.start || self.step == 0 {
            0
        } else {
            (self.end - self.start) / self.step + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, task: u64) -> bool {
        self.step != 0
            && task >= self.start
            && task <= self.end
            && (task - self.start).is_multiple_of(self.step)
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> {
        let step = self.step.max(1);
        let n = self.len();
        let start = self.start;
        (0..n).map(move |i| start + i * step)
    }
}

/// A submission as the daemon accepted it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmissionEntry {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    /// PROGRAM and ARGS, placeholders unexpanded.
    pub program: Vec<String>,
    pub tasks: TaskIds,
    pub cpus: u32,
    #[serde(default)]
    pub after: Vec<u64>,
    /// Seconds (Unix time, the daemon's clock).
    pub submitted_at: f64,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    /// Exit status 0.
    Succeeded,
    /// A non-zero exit, a signal, or a program that could not start.
    Failed,
    /// Killed at its `--time-limit`.
    TimedOut,
    /// Killed or dropped by `cancel`, or never started because a submission it waits for
    /// (`--after`) did not succeed.
    Cancelled,
    /// Its worker was lost more often than `--max-retries` allowed.
    Lost,
}

/// A task's state, as `tasks --state` filters it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Waiting,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
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
            TaskState::TimedOut => "timed_out",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        TaskState::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, TaskState::Waiting | TaskState::Running)
    }
}

impl From<TaskEnd> for TaskState {
    fn from(end: TaskEnd) -> TaskState {
        match end {
            TaskEnd::Succeeded => TaskState::Succeeded,
            TaskEnd::Failed => TaskState::Failed,
            TaskEnd::TimedOut => TaskState::TimedOut,
            TaskEnd::Cancelled => TaskState::Cancelled,
            TaskEnd::Lost => TaskState::Lost,
        }
    }
}

/// One task's end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub submission: u64,
    pub task: u64,
    pub end: TaskEnd,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub started_at: Option<f64>,
    pub ended_at: f64,
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// Runs started (1 unless its worker was lost or it was retried).
    #[serde(default)]
    pub attempts: u32,
    /// The last lines of stderr of a task that did not succeed, or why it could not start.
    #[serde(default)]
    pub detail: Option<String>,
}

/// One line of the journal after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Accepted by the daemon, about to go to the scheduler.
    Submitted(SubmissionEntry),
    /// The scheduler refused it (its reason): none of its tasks run.
    Refused {
        submission: u64,
        reason: String,
        at: f64,
    },
    /// A task started on a worker.
    Started {
        submission: u64,
        task: u64,
        at: f64,
        #[serde(default)]
        worker: Option<String>,
    },
    Ended(TaskEntry),
    /// `cancel` asked for these tasks (all of them when `tasks` is None).
    CancelRequested {
        submission: u64,
        #[serde(default)]
        tasks: Option<TaskIds>,
        at: f64,
    },
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
    pub id: u64,
    pub name: Option<String>,
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
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub worker: Option<String>,
    pub host: Option<String>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    /// Seconds it ran (its last attempt), once it ended.
    pub duration: Option<f64>,
    pub attempts: u32,
    pub detail: Option<String>,
}

/// What the journal knows about one task that has an entry (others wait).
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Running { at: f64, worker: Option<String> },
    Ended(TaskEntry),
}

#[derive(Clone, Debug, PartialEq)]
struct Submission {
    entry: SubmissionEntry,
    refused: Option<String>,
    tasks: BTreeMap<u64, Known>,
    counts: Counts,
    last_end: Option<f64>,
}

/// The journal reduced: every submission and the tasks with an entry. Pure: fed entries in
/// order (from the file, or as the daemon appends them), it answers `tasks`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Book {
    submissions: BTreeMap<u64, Submission>,
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
    /// and a start after the task's end, are ignored: the journal is a history, and replaying
    /// it must never fail.
    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Submitted(s) => {
                let counts = Counts {
                    waiting: s.tasks.len(),
                    ..Counts::default()
                };
                self.submissions.insert(
                    s.id,
                    Submission {
                        entry: s.clone(),
                        refused: None,
                        tasks: BTreeMap::new(),
                        counts,
                        last_end: None,
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
            Entry::Started {
                submission,
                task,
                at,
                worker,
            } => {
                let Some(s) = self.submissions.get_mut(submission) else {
                    return;
                };
                if !s.entry.tasks.contains(*task) {
                    return;
                }
                match s.tasks.get(task) {
                    Some(Known::Ended(_)) => {}
                    Some(Known::Running { .. }) => {
                        // Started again elsewhere (its worker was lost).
                        s.tasks.insert(
                            *task,
                            Known::Running {
                                at: *at,
                                worker: worker.clone(),
                            },
                        );
                    }
                    None => {
                        s.counts.waiting -= 1;
                        s.counts.running += 1;
                        s.tasks.insert(
                            *task,
                            Known::Running {
                                at: *at,
                                worker: worker.clone(),
                            },
                        );
                    }
                }
            }
            Entry::Ended(t) => {
                let Some(s) = self.submissions.get_mut(&t.submission) else {
                    return;
                };
                if !s.entry.tasks.contains(t.task) {
                    return;
                }
                match s.tasks.get(&t.task) {
                    // The first end counts: a task ends once.
                    Some(Known::Ended(_)) => return,
                    Some(Known::Running { .. }) => s.counts.running -= 1,
                    None => s.counts.waiting -= 1,
                }
                *count_of(&mut s.counts, t.end.into()) += 1;
                s.last_end = Some(s.last_end.map_or(t.ended_at, |e| e.max(t.ended_at)));
                s.tasks.insert(t.task, Known::Ended(t.clone()));
            }
            // A request, not a fact: the tasks' ends say what it did.
            Entry::CancelRequested { .. } => {}
        }
    }

    pub fn contains(&self, submission: u64) -> bool {
        self.submissions.contains_key(&submission)
    }

    /// The submission's entry as it was accepted.
    pub fn entry(&self, submission: u64) -> Option<&SubmissionEntry> {
        self.submissions.get(&submission).map(|s| &s.entry)
    }

    /// The highest id used so far (ids are assigned by the daemon, from 1).
    pub fn last_id(&self) -> u64 {
        self.submissions.keys().next_back().copied().unwrap_or(0)
    }

    pub fn submission(&self, id: u64) -> Option<SubmissionView> {
        let s = self.submissions.get(&id)?;
        let state = if s.refused.is_some() {
            SubmissionState::Refused
        } else if s.counts.waiting + s.counts.running > 0 {
            if s.counts.running + s.counts.finished() > 0 {
                SubmissionState::Running
            } else {
                SubmissionState::Waiting
            }
        } else if s.counts.unsuccessful() > 0 {
            SubmissionState::Failed
        } else {
            SubmissionState::Succeeded
        };
        Some(SubmissionView {
            id,
            name: s.entry.name.clone(),
            program: s.entry.program.clone(),
            state,
            counts: s.counts.clone(),
            submitted_at: s.entry.submitted_at,
            ended_at: state.is_finished().then_some(s.last_end).flatten(),
            refused: s.refused.clone(),
        })
    }

    /// Every submission, oldest first.
    pub fn submissions(&self) -> Vec<SubmissionView> {
        self.submissions
            .keys()
            .filter_map(|&id| self.submission(id))
            .collect()
    }

    /// The tasks of `submission` in `states` (all states when empty), in task order; None
    /// for an unknown submission. Waiting tasks are listed from the submission's ids, so
    /// asking for them walks the whole range.
    pub fn tasks(&self, submission: u64, states: &[TaskState]) -> Option<Vec<TaskView>> {
        let s = self.submissions.get(&submission)?;
        let wanted = |st: TaskState| states.is_empty() || states.contains(&st);
        let mut out = Vec::new();
        if s.refused.is_some() {
            return Some(out);
        }
        let view = |task: u64, known: Option<&Known>| match known {
            None => TaskView {
                task,
                state: TaskState::Waiting,
                exit_code: None,
                signal: None,
                worker: None,
                host: None,
                started_at: None,
                ended_at: None,
                duration: None,
                attempts: 0,
                detail: None,
            },
            Some(Known::Running { at, worker }) => TaskView {
                task,
                state: TaskState::Running,
                exit_code: None,
                signal: None,
                worker: worker.clone(),
                host: None,
                started_at: Some(*at),
                ended_at: None,
                duration: None,
                attempts: 0,
                detail: None,
            },
            Some(Known::Ended(t)) => TaskView {
                task,
                state: t.end.into(),
                exit_code: t.exit_code,
                signal: t.signal,
                worker: t.worker.clone(),
                host: t.host.clone(),
                started_at: t.started_at,
                ended_at: Some(t.ended_at),
                duration: t.started_at.map(|st| (t.ended_at - st).max(0.0)),
                attempts: t.attempts,
                detail: t.detail.clone(),
            },
        };
        if wanted(TaskState::Waiting) {
            for task in s.entry.tasks.iter() {
                let known = s.tasks.get(&task);
                let v = view(task, known);
                if wanted(v.state) {
                    out.push(v);
                }
            }
        } else {
            for (&task, known) in &s.tasks {
                let v = view(task, Some(known));
                if wanted(v.state) {
                    out.push(v);
                }
            }
        }
        Some(out)
    }
}

fn count_of(c: &mut Counts, state: TaskState) -> &mut u64 {
    match state {
        TaskState::Waiting => &mut c.waiting,
        TaskState::Running => &mut c.running,
        TaskState::Succeeded => &mut c.succeeded,
        TaskState::Failed => &mut c.failed,
        TaskState::TimedOut => &mut c.timed_out,
        TaskState::Cancelled => &mut c.cancelled,
        TaskState::Lost => &mut c.lost,
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

    fn submitted(id: u64, start: u64, end: u64) -> Entry {
        Entry::Submitted(SubmissionEntry {
            id,
            name: Some(format!("s{id}")),
            program: vec!["echo".into(), "{task}".into()],
            tasks: TaskIds {
                start,
                end,
                step: 1,
            },
            cpus: 1,
            after: vec![],
            submitted_at: 10.0,
        })
    }

    fn ended(submission: u64, task: u64, end: TaskEnd) -> Entry {
        Entry::Ended(TaskEntry {
            submission,
            task,
            end,
            exit_code: match end {
                TaskEnd::Succeeded => Some(0),
                TaskEnd::Failed => Some(3),
                _ => None,
            },
            signal: None,
            started_at: Some(11.0),
            ended_at: 12.5,
            worker: Some("w1".into()),
            host: Some("node1".into()),
            attempts: 1,
            detail: (end == TaskEnd::Failed).then(|| "boom".to_string()),
        })
    }

    #[test]
    fn task_ids_count_step_and_contain() {
        let ids = TaskIds {
            start: 1,
            end: 10,
            step: 3,
        };
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![1, 4, 7, 10]);
        assert_eq!(ids.len(), 4);
        assert!(ids.contains(7) && !ids.contains(8) && !ids.contains(13) && !ids.contains(0));
        let empty = TaskIds {
            start: 5,
            end: 4,
            step: 1,
        };
        assert!(empty.is_empty());
        assert_eq!(empty.iter().count(), 0);
    }

    #[test]
    fn the_reducer_counts_states_and_submission_states() {
        let mut book = Book::from_entries(&[submitted(1, 1, 4)]);
        let v = book.submission(1).unwrap();
        assert_eq!(v.state, SubmissionState::Waiting);
        assert_eq!(v.counts.waiting, 4);
        book.apply(&Entry::Started {
            submission: 1,
            task: 2,
            at: 11.0,
            worker: Some("w1".into()),
        });
        book.apply(&ended(1, 1, TaskEnd::Succeeded));
        let v = book.submission(1).unwrap();
        assert_eq!(v.state, SubmissionState::Running);
        assert_eq!(
            (v.counts.waiting, v.counts.running, v.counts.succeeded),
            (2, 1, 1)
        );
        book.apply(&ended(1, 2, TaskEnd::Failed));
        book.apply(&ended(1, 3, TaskEnd::Succeeded));
        book.apply(&ended(1, 4, TaskEnd::TimedOut));
        let v = book.submission(1).unwrap();
        assert_eq!(v.state, SubmissionState::Failed);
        assert_eq!(v.counts.total(), 4);
        assert_eq!(v.counts.unsuccessful(), 2);
        assert_eq!(v.ended_at, Some(12.5));
        let failed = book.tasks(1, &[TaskState::Failed]).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].task, 2);
        assert_eq!(failed[0].exit_code, Some(3));
        assert_eq!(failed[0].detail.as_deref(), Some("boom"));
        assert_eq!(failed[0].duration, Some(1.5));
        assert!(book.tasks(9, &[]).is_none());
    }

    #[test]
    fn a_task_ends_once_and_foreign_entries_are_ignored() {
        let mut book = Book::from_entries(&[submitted(1, 0, 1)]);
        book.apply(&ended(1, 0, TaskEnd::Succeeded));
        // A second end (a duplicate report) and a late start change nothing.
        book.apply(&ended(1, 0, TaskEnd::Failed));
        book.apply(&Entry::Started {
            submission: 1,
            task: 0,
            at: 20.0,
            worker: None,
        });
        // Out of range, unknown submission.
        book.apply(&ended(1, 7, TaskEnd::Failed));
        book.apply(&ended(2, 0, TaskEnd::Failed));
        let v = book.submission(1).unwrap();
        assert_eq!(
            (v.counts.succeeded, v.counts.failed, v.counts.waiting),
            (1, 0, 1)
        );
        assert!(!book.contains(2));
        book.apply(&ended(1, 1, TaskEnd::Succeeded));
        assert_eq!(
            book.submission(1).unwrap().state,
            SubmissionState::Succeeded
        );
    }

    #[test]
    fn waiting_tasks_are_listed_from_the_range() {
        let mut book = Book::from_entries(&[submitted(3, 1, 5)]);
        book.apply(&ended(3, 2, TaskEnd::Succeeded));
        let all = book.tasks(3, &[]).unwrap();
        assert_eq!(
            all.iter().map(|t| t.task).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let waiting = book.tasks(3, &[TaskState::Waiting]).unwrap();
        assert_eq!(waiting.len(), 4);
        assert_eq!(book.last_id(), 3);
    }

    #[test]
    fn a_refused_submission_has_no_tasks() {
        let mut book = Book::from_entries(&[submitted(1, 1, 3)]);
        book.apply(&Entry::Refused {
            submission: 1,
            reason: "unknown --after 9".into(),
            at: 11.0,
        });
        let v = book.submission(1).unwrap();
        assert_eq!(v.state, SubmissionState::Refused);
        assert!(book.tasks(1, &[]).unwrap().is_empty());
    }

    #[test]
    fn states_parse_by_name() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.name()), Some(s));
        }
        assert_eq!(TaskState::parse("timed-out"), Some(TaskState::TimedOut));
        assert_eq!(TaskState::parse("nope"), None);
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
        let read1 = read(&path, "c").unwrap();
        assert_eq!(read1.entries, batch);
        assert!(!read1.torn);
        // A crash mid-append leaves half a line.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"ended\",\"submis");
        std::fs::write(&path, &text).unwrap();
        let r = read(&path, "c").unwrap();
        assert!(r.torn);
        assert_eq!(r.entries, batch);
        // The writer cuts it off and appends on a fresh line.
        let (mut j, old) = Journal::open(&path, "c").unwrap();
        assert_eq!(old, batch);
        j.append(&[ended(1, 2, TaskEnd::Failed)]).unwrap();
        let r = read(&path, "c").unwrap();
        assert!(!r.torn);
        assert_eq!(r.entries.len(), 3);
        let book = Book::from_entries(&r.entries);
        assert_eq!(book.submission(1).unwrap().state, SubmissionState::Failed);
    }

    #[test]
    fn damage_a_newer_version_and_a_foreign_cluster_are_refused() {
        let p = Path::new("/x/tasks.jsonl");
        let head = "{\"version\":1,\"cluster\":\"c\"}\n";
        let bad = format!("{head}not json\n");
        let e = parse(p, "c", &bad).unwrap_err().to_string();
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
        /// Whatever order ends and starts arrive in, the counts add up to the submission's
        /// size and each task is counted once.
        #[test]
        fn counts_always_add_up(events in proptest::collection::vec((0u64..12, 0u8..7), 0..60)) {
            let mut book = Book::from_entries(&[submitted(1, 0, 9)]);
            let mut ended_tasks = std::collections::BTreeSet::new();
            for (task, kind) in events {
                let e = match kind {
                    0 | 1 => Entry::Started { submission: 1, task, at: 1.0, worker: None },
                    2 => ended(1, task, TaskEnd::Succeeded),
                    3 => ended(1, task, TaskEnd::Failed),
                    4 => ended(1, task, TaskEnd::Lost),
                    5 => ended(1, task, TaskEnd::Cancelled),
                    _ => ended(1, task, TaskEnd::TimedOut),
                };
                if kind >= 2 && task < 10 {
                    ended_tasks.insert(task);
                }
                book.apply(&e);
                let c = book.submission(1).unwrap().counts;
                proptest::prop_assert_eq!(c.total(), 10);
                proptest::prop_assert_eq!(c.finished(), ended_tasks.len() as u64);
                proptest::prop_assert_eq!(book.tasks(1, &[]).unwrap().len(), 10);
            }
        }
    }
}
