//! Program tasks (task arrays' tasks): each runs a program in a process group of its own,
//! with its output in files, and ends as a small record ([`ProgramEnded`]) sent to the
//! scheduler — never a result kept in the store, so 100,000 tasks leave nothing behind.
//!
//! Why here and not a kernel on the executor: a program task is a child process, not
//! computation, and what it needs — a time limit, a kill from the scheduler (cancel), the
//! kill of its whole process group — are events to wait for, not work for a thread. So each
//! runs as a small tokio task awaiting its child (tokio reaps children on SIGCHLD: no thread
//! and no polling per task), its deadline and its cancel signal at once. The scheduler never
//! sends more of them than the worker has free threads (a task reserves `cpus` of them), so
//! there is no queue here: a task starts when it arrives.
//!
//! Spawning: std's `Command` with `process_group(0)` and no `pre_exec` uses `posix_spawn`
//! (vfork-like: no copy of the worker's address space), which is what makes thousands of
//! tiny tasks cheap. A group is killed with SIGTERM, then SIGKILL after a grace period.
//! The worker kills the groups still running when it leaves (closed, scheduler lost, or
//! SIGTERM from the batch system); a SIGKILLed worker cannot, and its tasks' processes run
//! on — on a batch system the job's end kills them with the job.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use crate::ids::TaskId;
use crate::protocol::messages::ProgramEnded;
use crate::task_array::{OutputPattern, ProgramTask, TaskEnd, STDERR_TAIL};

/// How long a killed group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// Process groups of running program tasks, for killing them all when the worker leaves
/// (also from the SIGTERM handler, which has no access to the loop's state).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Set once the worker leaves (kill_all_groups): a task killed by a signal from then on died
/// with its job, and its end is not reported, so the scheduler sees the worker lost and runs
/// the task again elsewhere (as --max-retries allows), instead of a failure of the task.
static LEAVING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long the end of a task killed by a signal we did not send waits before it is reported:
/// a batch system's cancel (`scancel`) signals every process of the job at once, so the task
/// may die before this worker has handled its own SIGTERM.
const OUTSIDE_SIGNAL_GRACE: Duration = Duration::from_secs(1);

/// Kills every running program task's process group (SIGKILL: the worker is leaving).
pub fn kill_all_groups() {
    LEAVING.store(true, std::sync::atomic::Ordering::SeqCst);
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// The program tasks running on this worker.
#[derive(Default)]
pub struct Programs {
    cancel: HashMap<TaskId, oneshot::Sender<()>>,
}

/// Why a running task is being stopped by us.
enum Stop {
    TimeLimit,
    Cancelled,
}

impl Programs {
    /// Starts a program task; its end reaches `done`.
    pub fn start<T: From<ProgramEnded> + Send + 'static>(
        &mut self,
        task: TaskId,
        args: &[u8],
        done: UnboundedSender<T>,
    ) {
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.cancel.insert(task, cancel_tx);
        let program = ProgramTask::decode(args);
        tokio::spawn(async move {
            let start = crate::sys::unix_now();
            let (end, stderr_tail) = match program {
                Ok(p) => run(p, cancel_rx).await,
                Err(why) => (TaskEnd::CouldNotStart { why }, String::new()),
            };
            if matches!(end, TaskEnd::Signalled { .. }) {
                tokio::time::sleep(OUTSIDE_SIGNAL_GRACE).await;
                if LEAVING.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
            }
            let _ = done.send(T::from(ProgramEnded {
                task,
                end,
                start,
                finish: crate::sys::unix_now(),
                stderr_tail,
            }));
        });
    }

    /// The task's end was reported: forget it.
    pub fn ended(&mut self, task: TaskId) {
        self.cancel.remove(&task);
    }

    /// Kills the task's process group if it runs here; false when it is not ours.
    pub fn cancel(&mut self, task: TaskId) -> bool {
        match self.cancel.remove(&task) {
            Some(tx) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }

    /// Kills every running task (the scheduler forgot them: lost connection or closed).
    pub fn cancel_all(&mut self) {
        for (_, tx) in self.cancel.drain() {
            let _ = tx.send(());
        }
    }

    pub fn running(&self) -> usize {
        self.cancel.len()
    }
}

/// An output pattern as a file to write: relative paths are under the task's directory;
/// parent directories are created.
fn output(pattern: &OutputPattern, cwd: Option<&Path>, what: &str) -> Result<Stdio, String> {
    let OutputPattern::File(path) = pattern else {
        return Ok(Stdio::null());
    };
    let path = match cwd {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {} for {what}: {e}", parent.display()))?;
    }
    File::create(&path)
        .map(Stdio::from)
        .map_err(|e| format!("cannot create {what} file {}: {e}", path.display()))
}

/// The last [`STDERR_TAIL`] bytes of the stderr file, if stderr went to one.
fn stderr_tail(pattern: &OutputPattern, cwd: Option<&Path>) -> String {
    let OutputPattern::File(path) = pattern else {
        return String::new();
    };
    let path = match cwd {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    };
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(STDERR_TAIL as u64);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    // Cut at a character boundary rather than show a broken first character.
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.trim_start_matches('\u{fffd}').to_string()
}

fn end_of(status: ExitStatus) -> TaskEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => TaskEnd::Succeeded,
        (Some(code), _) => TaskEnd::Failed { code },
        (None, Some(signal)) => TaskEnd::Signalled { signal },
        (None, None) => TaskEnd::Failed { code: -1 },
    }
}

/// Runs one program to its end, its time limit or its cancel.
async fn run(p: ProgramTask, cancel: oneshot::Receiver<()>) -> (TaskEnd, String) {
    let cwd = p.cwd.as_deref().map(Path::new);
    let could_not = |why: String| (TaskEnd::CouldNotStart { why }, String::new());
    let (Some(program), args) = (p.argv.first(), p.argv.get(1..).unwrap_or_default()) else {
        return could_not("no program given".into());
    };
    // Said plainly: a spawn error for a missing directory would name the program instead.
    if let Some(dir) = cwd.filter(|d| !d.is_dir()) {
        return could_not(format!(
            "the working directory {} does not exist on this host",
            dir.display()
        ));
    }
    let stdout = match output(&p.stdout, cwd, "stdout") {
        Ok(s) => s,
        Err(why) => return could_not(why),
    };
    let stderr = match output(&p.stderr, cwd, "stderr") {
        Ok(s) => s,
        Err(why) => return could_not(why),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return could_not(format!("cannot start {program}: {e}")),
    };
    // A process group's id is its leader's pid: the child's, since process_group(0).
    let pgid = child.id().map(|p| p as i32);
    if let Some(g) = pgid {
        GROUPS.lock().expect("groups").push(g);
    }
    let limit = async {
        match p.time_limit {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        status = child.wait() => {
            forget_group(pgid);
            let end = match status {
                Ok(s) => end_of(s),
                Err(e) => TaskEnd::CouldNotStart { why: format!("waiting for {program}: {e}") },
            };
            let tail = if end.succeeded() { String::new() } else { stderr_tail(&p.stderr, cwd) };
            return (end, tail);
        }
        _ = limit => Stop::TimeLimit,
        // A dropped sender (the worker is leaving) kills the task too.
        _ = cancel => Stop::Cancelled,
    };
    if let Some(g) = pgid {
        let _ = killpg(Pid::from_raw(g), Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
            let _ = child.wait().await;
        }
        // Children that outlived the leader's exit go too.
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
    forget_group(pgid);
    let tail = stderr_tail(&p.stderr, cwd);
    match stop {
        Stop::TimeLimit => (TaskEnd::TimedOut, tail),
        Stop::Cancelled => (TaskEnd::Cancelled, tail),
    }
}

fn forget_group(pgid: Option<i32>) {
    if let Some(g) = pgid {
        if let Ok(mut groups) = GROUPS.lock() {
            if let Some(i) = groups.iter().position(|x| *x == g) {
                groups.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_array::{Items, SubmissionId, TaskArraySpec};

    fn task(argv: &[&str]) -> ProgramTask {
        TaskArraySpec::new(
            SubmissionId(1),
            Items::Range {
                start: 1,
                end: 1,
                step: 1,
            },
            argv.iter().map(|s| s.to_string()).collect(),
        )
        .task(0)
    }

    async fn run_one(p: ProgramTask) -> (TaskEnd, String) {
        let (_tx, rx) = oneshot::channel();
        run(p, rx).await
    }

    #[tokio::test]
    async fn exit_codes_signals_and_missing_programs() {
        assert_eq!(run_one(task(&["true"])).await.0, TaskEnd::Succeeded);
        assert_eq!(
            run_one(task(&["sh", "-c", "exit 3"])).await.0,
            TaskEnd::Failed { code: 3 }
        );
        assert_eq!(
            run_one(task(&["sh", "-c", "kill -9 $$"])).await.0,
            TaskEnd::Signalled { signal: 9 }
        );
        match run_one(task(&["/no/such/program"])).await.0 {
            TaskEnd::CouldNotStart { why } => assert!(why.contains("/no/such/program"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut p = task(&["true"]);
        p.cwd = Some("/no/such/dir".into());
        match run_one(p).await.0 {
            TaskEnd::CouldNotStart { why } => {
                assert!(why.contains("working directory /no/such/dir"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn output_goes_to_files_with_parents_created_and_stderr_tail_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = task(&["sh", "-c", "echo out $RDASK_TASK_ID; echo oops >&2; exit 1"]);
        p.stdout = OutputPattern::File("a/b/1.out".into());
        p.stderr = OutputPattern::File("a/b/1.err".into());
        p.cwd = Some(dir.path().display().to_string());
        let (end, tail) = run_one(p).await;
        assert_eq!(end, TaskEnd::Failed { code: 1 });
        assert_eq!(tail, "oops\n");
        let out = std::fs::read_to_string(dir.path().join("a/b/1.out")).unwrap();
        assert_eq!(out, "out 1\n");
    }

    #[tokio::test]
    async fn a_time_limit_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        // A child in the background would write the marker after 2 s if it survived.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let mut p = task(&["sh", "-c", &script]);
        p.time_limit = Some(Duration::from_millis(300));
        let started = std::time::Instant::now();
        assert_eq!(run_one(p).await.0, TaskEnd::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the timed-out task survived");
    }

    #[tokio::test]
    async fn cancel_kills_a_running_task() {
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(run(task(&["sleep", "30"]), rx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(()).unwrap();
        let (end, _) = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(end, TaskEnd::Cancelled);
    }
}
