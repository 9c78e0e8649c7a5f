//! Task arrays: one program run over many inputs (an index range, the lines of a file, a list
//! of files), described once and expanded where the tasks are placed.
//!
//! A leaf module: the description ([`TaskArraySpec`]), what one task runs ([`ProgramTask`]) and
//! how a task ended ([`TaskOutcome`]) are shared by the protocol, the scheduler, the worker,
//! the client and the cluster's journal, none of which may depend on another for them.
//!
//! The array travels as this one description: 100,000 tasks cost one message and one spec on
//! the scheduler, which generates a task's arguments only when it assigns it
//! ([`TaskArraySpec::task`]). Placeholders are substituted as whole strings into argv elements
//! and paths — nothing here, or anywhere after, passes through a shell.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A submission: one task array, numbered by whoever submits it (the cluster daemon, from
/// its journal; a library user, by [`SubmissionId`]s of its own choosing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubmissionId(pub u64);

impl std::fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the tasks of an array range over. Lines and files are read and globbed on the login
/// node (by the CLI) so every task sees the same list; a range is never expanded here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Items {
    /// Task ids `start, start+step, …` up to and including `end`.
    Range { start: u64, end: u64, step: u64 },
    /// One task per line: `{line}`; task ids are 0, 1, ….
    Lines(Vec<String>),
    /// One task per file: `{file}`; task ids are 0, 1, ….
    Files(Vec<String>),
}

/// Where a task's stdout or stderr goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputPattern {
    /// A path, with placeholders; its parent directories are created.
    File(String),
    /// /dev/null.
    Discard,
}

/// The whole description of a task array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskArraySpec {
    pub submission: SubmissionId,
    pub name: String,
    pub items: Items,
    /// The program and its arguments, with placeholders.
    pub argv: Vec<String>,
    /// Added to the worker's environment (values may hold placeholders).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Worker threads each task reserves while it runs.
    pub cpus: u32,
    /// Worker resources each task holds while it runs (`GPU=1`).
    pub resources: Vec<(String, f64)>,
    /// Runs of a task lost with its worker, before it ends `Lost`.
    pub max_retries: u32,
    /// Also re-run a task that exited non-zero (up to `max_retries`).
    pub retry_failed: bool,
    /// Kill a task (its process group) after this long.
    pub time_limit: Option<Duration>,
    pub stdout: OutputPattern,
    pub stderr: OutputPattern,
    /// Start only once each of these submissions has finished with every task succeeded.
    pub after: Vec<SubmissionId>,
}

/// Most tasks one submission may hold. The scheduler keeps a queued task as an index (no
/// bytes of its own), so the bound is about outcomes and journals, not scheduler memory.
pub const MAX_TASKS: u64 = 10_000_000;

/// Kernel name the worker runs a [`ProgramTask`] under.
pub const PROGRAM_KERNEL: &str = "program";

/// One task, ready to run: placeholders substituted, environment complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramTask {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdout: OutputPattern,
    pub stderr: OutputPattern,
    pub time_limit: Option<Duration>,
}

impl ProgramTask {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a program task encodes")
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("program: bad arguments: {e}"))
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    Succeeded,
    /// Exited non-zero.
    Failed {
        code: i32,
    },
    /// Killed by a signal (not ours).
    Signalled {
        signal: i32,
    },
    /// Killed at its time limit.
    TimedOut,
    Cancelled,
    /// Its workers were lost more than `max_retries` times.
    Lost,
    /// A submission named in `after` did not succeed.
    DependencyFailed,
    /// The program could not be started (not found, not executable, bad cwd, output file).
    CouldNotStart {
        why: String,
    },
}

impl TaskEnd {
    pub fn succeeded(&self) -> bool {
        matches!(self, TaskEnd::Succeeded)
    }

    /// A short word for tables and filters.
    pub fn word(&self) -> &'static str {
        match self {
            TaskEnd::Succeeded => "succeeded",
            TaskEnd::Failed { .. } => "failed",
            TaskEnd::Signalled { .. } => "signalled",
            TaskEnd::TimedOut => "timed-out",
            TaskEnd::Cancelled => "cancelled",
            TaskEnd::Lost => "lost",
            TaskEnd::DependencyFailed => "dependency-failed",
            TaskEnd::CouldNotStart { .. } => "could-not-start",
        }
    }
}

impl std::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskEnd::Failed { code } => write!(f, "failed (exit {code})"),
            TaskEnd::Signalled { signal } => write!(f, "signalled ({signal})"),
            TaskEnd::CouldNotStart { why } => write!(f, "could not start: {why}"),
            other => f.write_str(other.word()),
        }
    }
}

/// The record of one ended task. Times are Unix seconds (0 when it never ran).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub submission: SubmissionId,
    /// The task's id (`{task}`).
    pub task: u64,
    pub state: TaskEnd,
    /// Runs so far, this one included (0 when it never ran).
    pub attempt: u32,
    pub start: f64,
    pub end: f64,
    /// The worker's name and host of the last run (empty when it never ran).
    pub worker: String,
    pub host: String,
    /// The last bytes of stderr of a failed run (when stderr went to a file).
    pub stderr_tail: String,
}

/// A task was handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub submission: SubmissionId,
    pub task: u64,
    pub attempt: u32,
    pub worker: String,
    pub host: String,
}

/// Bytes of stderr kept for a failed task.
pub const STDERR_TAIL: usize = 2048;

const PLACEHOLDERS: [&str; 4] = ["{task}", "{line}", "{file}", "{submission}"];

impl Items {
    /// Number of tasks.
    pub fn len(&self) -> u64 {
        match self {
            Items::Range { start, end, step } => {
                if *step == 0 || end < start {
                    0
                } else {
                    ((end - start) / step).saturating_add(1)
                }
            }
            Items::Lines(v) | Items::Files(v) => v.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the task at `position` (0-based).
    pub fn id(&self, position: u64) -> u64 {
        match self {
            Items::Range { start, step, .. } => start + position * step,
            _ => position,
        }
    }

    /// The position of task `id`, if it is one of this array's.
    pub fn position(&self, id: u64) -> Option<u64> {
        let p = match self {
            Items::Range { start, step, .. } => {
                if id < *start || *step == 0 || !(id - start).is_multiple_of(*step) {
                    return None;
                }
                (id - start) / step
            }
            _ => id,
        };
        (p < self.len()).then_some(p)
    }

    /// Positions of the ids in `first..=last` as one range of positions (half open).
    pub fn positions(&self, first: u64, last: u64) -> (u64, u64) {
        let len = self.len();
        match self {
            Items::Range { start, step, .. } => {
                if last < *start || first > last {
                    return (0, 0);
                }
                let lo = first.saturating_sub(*start).div_ceil(*step);
                let hi = ((last - start) / step).saturating_add(1).min(len);
                (lo.min(hi), hi)
            }
            _ => {
                if first > last {
                    return (0, 0);
                }
                (first.min(len), last.saturating_add(1).min(len))
            }
        }
    }
}

impl TaskArraySpec {
    /// A spec with the defaults of `submit`: ids 1..=n, 1 cpu, 3 retries, output discarded.
    pub fn new(submission: SubmissionId, items: Items, argv: Vec<String>) -> Self {
        TaskArraySpec {
            submission,
            name: String::new(),
            items,
            argv,
            env: vec![],
            cwd: None,
            cpus: 1,
            resources: vec![],
            max_retries: 3,
            retry_failed: false,
            time_limit: None,
            stdout: OutputPattern::Discard,
            stderr: OutputPattern::Discard,
            after: vec![],
        }
    }

    pub fn len(&self) -> u64 {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Refuses a description that cannot run, with what is wrong and how to fix it.
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid(msg));
        match &self.items {
            Items::Range { start, end, step } => {
                if *step == 0 {
                    return bad("the array's step is 0; use a step of 1 or more".into());
                }
                if end < start {
                    return bad(format!(
                        "the array {start}-{end} is empty (its end is below its start); \
                         write it as FIRST-LAST"
                    ));
                }
            }
            Items::Lines(l) if l.is_empty() => {
                return bad("the file of lines has no lines: nothing to run".into())
            }
            Items::Files(f) if f.is_empty() => {
                return bad("no files to run over: the list of files is empty".into())
            }
            _ => {}
        }
        if self.len() > MAX_TASKS {
            return bad(format!(
                "{} tasks are over the limit of {MAX_TASKS} per submission; split them into \
                 several submissions",
                self.len()
            ));
        }
        if self.argv.first().is_none_or(|p| p.is_empty()) {
            return bad("no program given: put it after `--`".into());
        }
        if self.cpus == 0 {
            return bad("a task needs at least 1 cpu (--cpus 1 or more)".into());
        }
        for (name, amount) in &self.resources {
            if name.is_empty() || name.contains(['=', ',']) {
                return bad(format!(
                    "resource name '{name}' is not valid: use NAME=AMOUNT, e.g. GPU=1"
                ));
            }
            if !amount.is_finite() || *amount <= 0.0 {
                return bad(format!(
                    "resource {name}={amount}: the amount must be a positive number"
                ));
            }
        }
        for (key, _) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return bad(format!(
                    "environment variable name '{key}' is not valid: use --env NAME=VALUE"
                ));
            }
        }
        if self.time_limit.is_some_and(|t| t.is_zero()) {
            return bad("the time limit is 0: give a positive duration".into());
        }
        if self.after.contains(&self.submission) {
            return bad(format!(
                "submission {} cannot wait for itself (--after)",
                self.submission
            ));
        }
        // A placeholder with nothing to stand for is a mistake, not a literal.
        let (needs, what) = match self.items {
            Items::Range { .. } => (["{line}", "{file}"], "an array range"),
            Items::Lines(_) => (["{file}", "{file}"], "--each-line"),
            Items::Files(_) => (["{line}", "{line}"], "--each-file"),
        };
        for text in self.texts() {
            for p in needs {
                if text.contains(p) {
                    return bad(format!(
                        "{p} has no value for {what}: use {{line}} with --each-line and \
                         {{file}} with --each-file"
                    ));
                }
            }
            if text.contains('\0') {
                return bad(format!("'{text}' contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// Every string placeholders are substituted in.
    fn texts(&self) -> impl Iterator<Item = &String> {
        fn pattern(p: &OutputPattern) -> Option<&String> {
            match p {
                OutputPattern::File(f) => Some(f),
                OutputPattern::Discard => None,
            }
        }
        self.argv
            .iter()
            .chain(self.env.iter().map(|(_, v)| v))
            .chain(self.cwd.iter())
            .chain(pattern(&self.stdout))
            .chain(pattern(&self.stderr))
    }

    /// The task at `position` (0-based), placeholders substituted. `position < len()`.
    pub fn task(&self, position: u64) -> ProgramTask {
        let id = self.items.id(position);
        let item = match &self.items {
            Items::Lines(v) | Items::Files(v) => v.get(position as usize).map(String::as_str),
            Items::Range { .. } => None,
        };
        let values = Values {
            task: id.to_string(),
            item,
            submission: self.submission.0.to_string(),
        };
        let pattern = |p: &OutputPattern| match p {
            OutputPattern::File(f) => OutputPattern::File(values.fill(f)),
            OutputPattern::Discard => OutputPattern::Discard,
        };
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), values.fill(v)))
            .collect();
        env.push(("RDASK_TASK_ID".into(), values.task.clone()));
        env.push(("RDASK_SUBMISSION_ID".into(), values.submission.clone()));
        env.push(("RDASK_CPUS".into(), self.cpus.to_string()));
        ProgramTask {
            argv: self.argv.iter().map(|a| values.fill(a)).collect(),
            env,
            cwd: self.cwd.as_deref().map(|c| values.fill(c)),
            stdout: pattern(&self.stdout),
            stderr: pattern(&self.stderr),
            time_limit: self.time_limit,
        }
    }
}

/// Parses `NAME=AMOUNT,...` (`GPU=1,MEM=64e9`): the one reading of resources, for workers'
/// `--resources` and task arrays'. Names are unique; amounts positive numbers.
pub fn parse_resources(text: &str) -> std::result::Result<Vec<(String, f64)>, String> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, amount)) = part.split_once('=') else {
            return Err(format!("'{part}' is not NAME=AMOUNT (e.g. GPU=1)"));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "'{name}' is not a resource name: use letters, digits, '_', '-' or '.'"
            ));
        }
        let amount: f64 = match amount.trim().parse() {
            Ok(a) if f64::is_finite(a) && a > 0.0 => a,
            _ => {
                return Err(format!(
                    "resource {name}: '{}' is not a positive number",
                    amount.trim()
                ))
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("resource {name} is given twice"));
        }
        out.push((name.to_string(), amount));
    }
    if out.is_empty() {
        return Err("no resources given: use NAME=AMOUNT,... (e.g. GPU=1)".into());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The inverse of [`parse_resources`].
pub fn format_resources(resources: &[(String, f64)]) -> String {
    resources
        .iter()
        .map(|(n, a)| format!("{n}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

struct Values<'a> {
    task: String,
    item: Option<&'a str>,
    submission: String,
}

impl Values<'_> {
    /// Substitutes the known placeholders (and nothing else: `awk '{print $1}'` stays as it
    /// is) in one pass, so a value holding `{task}` is not substituted again.
    fn fill(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut rest = text;
        'scan: while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            for p in PLACEHOLDERS {
                if let Some(after) = rest.strip_prefix(p) {
                    let value = match p {
                        "{task}" => self.task.as_str(),
                        "{submission}" => self.submission.as_str(),
                        _ => self.item.unwrap_or(""),
                    };
                    out.push_str(value);
                    rest = after;
                    continue 'scan;
                }
            }
            out.push('{');
            rest = &rest[1..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(items: Items, argv: &[&str]) -> TaskArraySpec {
        TaskArraySpec::new(
            SubmissionId(7),
            items,
            argv.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn range(start: u64, end: u64, step: u64) -> Items {
        Items::Range { start, end, step }
    }

    #[test]
    fn more_tasks_than_the_limit_are_refused_and_the_limit_itself_is_not() {
        assert!(spec(range(1, MAX_TASKS, 1), &["true"]).check().is_ok());
        let err = spec(range(1, MAX_TASKS + 1, 1), &["true"])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        let huge = spec(range(0, u64::MAX - 1, 1), &["true"])
            .check()
            .unwrap_err();
        assert!(huge.to_string().contains("over the limit"), "{huge}");
    }

    #[test]
    fn placeholders_are_substituted_as_whole_strings_never_through_a_shell() {
        let mut s = spec(
            range(1, 10, 3),
            &[
                "sh",
                "-c",
                "echo {task} > out/{task}; awk '{print $1}'",
                "{submission}",
            ],
        );
        s.stdout = OutputPattern::File("logs/{submission}/{task}.out".into());
        s.cwd = Some("/w/{task}".into());
        s.env = vec![("X".into(), "v{task}".into())];
        s.cpus = 2;
        let t = s.task(2);
        assert_eq!(
            t.argv,
            ["sh", "-c", "echo 7 > out/7; awk '{print $1}'", "7"]
        );
        assert_eq!(t.stdout, OutputPattern::File("logs/7/7.out".into()));
        assert_eq!(t.stderr, OutputPattern::Discard);
        assert_eq!(t.cwd.as_deref(), Some("/w/7"));
        assert_eq!(
            t.env,
            [
                ("X".to_string(), "v7".to_string()),
                ("RDASK_TASK_ID".into(), "7".into()),
                ("RDASK_SUBMISSION_ID".into(), "7".into()),
                ("RDASK_CPUS".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn a_line_holding_a_placeholder_is_not_substituted_again() {
        let s = spec(
            Items::Lines(vec!["a {task} $(rm -rf /)".into(), "b".into()]),
            &["echo", "{line}", "#{task}"],
        );
        assert_eq!(s.task(0).argv, ["echo", "a {task} $(rm -rf /)", "#0"]);
        assert_eq!(s.task(1).argv, ["echo", "b", "#1"]);
        let f = spec(Items::Files(vec!["x y.txt".into()]), &["wc", "{file}"]);
        assert_eq!(f.task(0).argv, ["wc", "x y.txt"]);
    }

    #[test]
    fn ids_and_positions_of_ranges() {
        let r = range(1, 10, 3); // 1 4 7 10
        assert_eq!(r.len(), 4);
        assert_eq!((0..4).map(|p| r.id(p)).collect::<Vec<_>>(), [1, 4, 7, 10]);
        assert_eq!(r.position(7), Some(2));
        assert_eq!(r.position(8), None);
        assert_eq!(r.position(13), None);
        assert_eq!(r.position(0), None);
        assert_eq!(r.positions(3, 7), (1, 3));
        assert_eq!(r.positions(0, 100), (0, 4));
        assert_eq!(r.positions(11, 20), (4, 4));
        assert_eq!(range(5, 5, 1).len(), 1);
        assert_eq!(range(0, u64::MAX, 1).len(), u64::MAX);
        let l = Items::Lines(vec!["a".into(), "b".into()]);
        assert_eq!(l.positions(1, 9), (1, 2));
        assert_eq!(l.position(2), None);
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_fix() {
        let err = |s: TaskArraySpec| {
            let e = s.check().unwrap_err();
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        };
        assert!(err(spec(range(5, 1, 1), &["true"])).contains("empty"));
        assert!(err(spec(range(1, 5, 0), &["true"])).contains("step"));
        assert!(err(spec(range(0, u64::MAX, 1), &["true"])).contains("split"));
        assert!(err(spec(Items::Lines(vec![]), &["true"])).contains("no lines"));
        assert!(err(spec(Items::Files(vec![]), &["true"])).contains("empty"));
        assert!(err(spec(range(1, 2, 1), &[])).contains("--"));
        let mut s = spec(range(1, 2, 1), &["true"]);
        s.cpus = 0;
        assert!(err(s).contains("--cpus"));
        let mut s = spec(range(1, 2, 1), &["true"]);
        s.resources = vec![("GPU".into(), f64::NAN)];
        assert!(err(s).contains("positive"));
        let mut s = spec(range(1, 2, 1), &["true"]);
        s.env = vec![("A=B".into(), "x".into())];
        assert!(err(s).contains("--env"));
        assert!(err(spec(range(1, 2, 1), &["cat", "{line}"])).contains("--each-line"));
        assert!(
            err(spec(Items::Lines(vec!["a".into()]), &["cat", "{file}"])).contains("--each-file")
        );
        let mut s = spec(range(1, 2, 1), &["true"]);
        s.after = vec![SubmissionId(7)];
        assert!(err(s).contains("itself"));
        let mut s = spec(range(1, 2, 1), &["true"]);
        s.time_limit = Some(Duration::ZERO);
        assert!(err(s).contains("positive"));
        assert!(spec(range(1, 2, 1), &["echo", "{task}", "{x}"])
            .check()
            .is_ok());
    }

    #[test]
    fn resources_parse_and_print_back() {
        let r = parse_resources("MEM=64e9, GPU=1").unwrap();
        assert_eq!(r, [("GPU".to_string(), 1.0), ("MEM".to_string(), 64e9)]);
        assert_eq!(parse_resources(&format_resources(&r)).unwrap(), r);
        assert!(parse_resources("GPU").unwrap_err().contains("NAME=AMOUNT"));
        assert!(parse_resources("GPU=0").unwrap_err().contains("positive"));
        assert!(parse_resources("GPU=1,GPU=2")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_resources("G P=1").unwrap_err().contains("name"));
        assert!(parse_resources("").unwrap_err().contains("no resources"));
    }

    proptest! {
        /// Every position maps to an id within the range and back, and `positions` of an
        /// id range covers exactly the ids inside it.
        #[test]
        fn positions_and_ids_agree(start in 0u64..1000, n in 1u64..200, step in 1u64..20,
                                   a in 0u64..5000, b in 0u64..5000) {
            let end = start + (n - 1) * step;
            let r = range(start, end, step);
            prop_assert_eq!(r.len(), n);
            for p in 0..n {
                prop_assert_eq!(r.position(r.id(p)), Some(p));
            }
            let (lo, hi) = r.positions(a, b);
            let inside: Vec<u64> = (0..n).filter(|p| (a..=b).contains(&r.id(*p))).collect();
            prop_assert_eq!((lo..hi).collect::<Vec<_>>(), inside);
        }

        /// Text without a known placeholder comes out unchanged.
        #[test]
        fn other_text_is_left_alone(text in "[a-z{}$ ]{0,40}") {
            let s = spec(range(1, 1, 1), &["x"]);
            let v = Values { task: "1".into(), item: None, submission: "7".into() };
            let known = PLACEHOLDERS.iter().any(|p| text.contains(p));
            let filled = v.fill(&text);
            if !known {
                prop_assert_eq!(filled, text);
            }
            prop_assert!(s.check().is_ok());
        }
    }
}
