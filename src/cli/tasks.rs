//! `submit`, `tasks`, `wait`, `cancel`: task arrays of the user's own programs on a named
//! cluster (or, with `submit --local N`, on an embedded local cluster).
//!
//! A group of tasks is a *submission* (never a "job": `jobs` is the batch jobs command).
//! Everything the user typed is checked here, before anything is queued (exit 2): the array,
//! the `--each-line` file, the `--each-file` glob, `--env`, `--time-limit`, `--resources`;
//! the daemon checks what only it knows (`--after` ids, `--cpus` against its workers). The
//! program is looked up on this node's PATH only to warn: it may exist on compute nodes only.
//! Nothing goes through a shell: PROGRAM and ARGS become the task's argv as they are.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use rdask::cluster::control::{self, Reply, Request, TasksView};
use rdask::cluster::journal::{self, Book, SubmissionView, TaskState, TaskView};
use rdask::cluster::lifecycle::name_flag;
use rdask::cluster::{ClusterDir, DEFAULT_NAME};
use rdask::error::{Error, Result};
use rdask::task_array::{
    parse_resources, Items, OutputPattern, SubmissionId, TaskArraySpec, TaskOutcome,
};

/// How long one control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `wait` asks the daemon: each ask is one small JSON line over the Unix socket.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Failed tasks listed in full after `--wait` (the rest: `tasks ID --state failed`).
const FAILURES_SHOWN: usize = 10;

#[derive(Args, Debug)]
#[command(
    after_help = "Placeholders in PROGRAM, ARGS, --env values, --cwd, --stdout and \
    --stderr: {task} (the task's id), {line} (--each-line), {file} (--each-file), \
    {submission}. Every task also gets RDASK_TASK_ID, RDASK_SUBMISSION_ID and RDASK_CPUS.\n\n\
    Examples:\n  \
    rdask-jobqueue submit --array 1-1000 -- ./simulate --seed {task}\n  \
    rdask-jobqueue submit --each-line params.txt --cpus 4 --wait -- ./fit {line}\n  \
    rdask-jobqueue submit --each-file 'data/*.csv' --stdout 'out/{task}.txt' -- wc -l {file}\n  \
    rdask-jobqueue submit --array 1-10 --after 3 --time-limit 10m -- sh -c 'echo {task} > out/{task}'\n  \
    rdask-jobqueue submit --local 4 --array 1-100 -- sleep 0.1\n  \
    rdask-jobqueue submit --local 4 --array 1-100 --report perf.html -- sleep 0.1"
)]
pub struct SubmitArgs {
    /// The cluster to run on [default: $RDASK_CLUSTER, then `default`]
    #[arg(long, short = 'n', value_name = "NAME")]
    pub cluster: Option<String>,
    /// Run on an embedded local cluster of N one-thread workers instead (implies --wait)
    #[arg(long, value_name = "N", conflicts_with = "cluster")]
    pub local: Option<usize>,
    /// One task per id FIRST..=LAST (every STEP-th): {task} is the id
    #[arg(long, value_name = "FIRST-LAST[:STEP]", group = "items")]
    pub array: Option<String>,
    /// One task per line of FILE (read now, on this node): {line} is the line, {task} 0, 1, ...
    #[arg(long, value_name = "FILE", group = "items")]
    pub each_line: Option<PathBuf>,
    /// One task per file matching GLOB (expanded now, sorted): {file} is its path
    #[arg(long, value_name = "GLOB", group = "items")]
    pub each_file: Option<String>,
    /// Worker threads each task reserves (the scheduler never overbooks a worker)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,
    /// Runs of a task whose worker was lost (job killed, walltime, scancel) before it is lost
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub max_retries: u32,
    /// Also run again a task that exited non-zero (up to --max-retries)
    #[arg(long)]
    pub retry_failed: bool,
    /// Kill a task (its whole process group) after this long: 90s, 10m, 1h30m
    #[arg(long, value_name = "DURATION")]
    pub time_limit: Option<String>,
    /// Where each task's stdout goes (`none` drops it) [default: one file per task under the
    /// cluster's directory, tasks/<submission>/<task>.out]
    #[arg(long, value_name = "PATTERN")]
    pub stdout: Option<String>,
    /// Where each task's stderr goes (`none` drops it) [default: .../<task>.err]
    #[arg(long, value_name = "PATTERN")]
    pub stderr: Option<String>,
    /// The tasks' working directory [default: the current one]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Set K=V in every task's environment (repeat it)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// A name for the submission (shown by `tasks`)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Start only once submission ID has finished with every task succeeded (repeat it)
    #[arg(long = "after", value_name = "ID")]
    pub after: Vec<u64>,
    /// Worker resources each task holds while it runs: GPU=1,MEM=64e9
    #[arg(long, value_name = "K=V,...")]
    pub resources: Option<String>,
    /// Wait for every task to end, with progress; exit 1 if any did not succeed
    #[arg(long)]
    pub wait: bool,
    /// Print JSON (the submission's id and size; with --wait its final state)
    #[arg(long)]
    pub json: bool,
    /// With --local: write a self-contained HTML performance report here once every task
    /// ended (task stream, time per program)
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// The program and its arguments (after `--`), run without a shell
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<String>,
}

/// `--cluster NAME` for `tasks`, `wait` and `cancel`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArg {
    /// The cluster's name
    #[arg(long, short = 'n', alias = "name", default_value = DEFAULT_NAME, env = "RDASK_CLUSTER", value_name = "NAME")]
    pub cluster: String,
}

#[derive(Args, Debug)]
#[command(
    after_help = "States: waiting, running, succeeded, failed (non-zero exit, signal, \
    could not start), timed-out, cancelled, lost (its workers were lost too often).\n\n\
    Examples:\n  \
    rdask-jobqueue tasks                       # every submission\n  \
    rdask-jobqueue tasks 3                     # the tasks of submission 3\n  \
    rdask-jobqueue tasks 3 --state failed      # its failures, with the end of their stderr\n  \
    rdask-jobqueue tasks 3 --json | jq '.tasks | length'"
)]
pub struct TasksArgs {
    /// A submission's id: list its tasks
    pub id: Option<u64>,
    /// Only tasks in these states (repeat it, or comma-separate)
    #[arg(long, value_name = "STATE", value_delimiter = ',', requires = "id")]
    pub state: Vec<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every task succeeded, 1 otherwise.\n\n\
    Examples:\n  \
    rdask-jobqueue wait 3\n  \
    id=$(rdask-jobqueue submit --array 1-100 -- ./run {task}) && rdask-jobqueue wait $id"
)]
pub struct WaitArgs {
    /// The submission's id
    pub id: u64,
    /// Print the final state as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Queued tasks end cancelled at once; running ones are killed (their \
    whole process group).\n\n\
    Examples:\n  \
    rdask-jobqueue cancel 3\n  \
    rdask-jobqueue cancel 3 --tasks 10-20"
)]
pub struct CancelArgs {
    /// The submission's id
    pub id: u64,
    /// Only the tasks with ids FIRST..=LAST (one id: just that task)
    #[arg(long, value_name = "FIRST-LAST")]
    pub tasks: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

// ---- Parsing (pure) ---------------------------------------------------------------------

/// `FIRST-LAST[:STEP]` or a single `ID`.
pub fn parse_array(text: &str) -> Result<Items> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "--array {text}: {why}; write FIRST-LAST or FIRST-LAST:STEP, e.g. 1-1000 or 0-99:5"
        ))
    };
    let (range, step) = match text.trim().split_once(':') {
        Some((r, s)) => (
            r,
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("the step `{s}` is not a whole number")))?,
        ),
        None => (text.trim(), 1),
    };
    let num = |s: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            bad(&format!(
                "`{s}` is not a task id (a whole number, 0 or more)"
            ))
        })
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let id = num(range)?;
            (id, id)
        }
    };
    if step == 0 {
        return Err(bad("the step is 0"));
    }
    if end < start {
        return Err(bad(&format!(
            "the range is empty (its last id {end} is below its first {start})"
        )));
    }
    Ok(Items::Range { start, end, step })
}

/// `FIRST-LAST` or `ID` for `cancel --tasks`.
pub fn parse_task_range(text: &str) -> Result<(u64, u64)> {
    match parse_array(text) {
        Ok(Items::Range {
            start,
            end,
            step: 1,
            ..
        }) => Ok((start, end)),
        _ => Err(Error::invalid(format!(
            "--tasks {text}: write FIRST-LAST (e.g. 3-7) or one task id"
        ))),
    }
}

/// `K=V` for `--env`.
pub fn parse_env(text: &str) -> Result<(String, String)> {
    let bad = || {
        Error::invalid(format!(
            "--env {text}: write NAME=VALUE with a NAME of letters, digits and '_' \
             (e.g. --env OMP_NUM_THREADS=4)"
        ))
    };
    let (k, v) = text.split_once('=').ok_or_else(bad)?;
    let valid = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad());
    }
    Ok((k.to_string(), v.to_string()))
}

/// `none`, or a path pattern made absolute against `cwd` (a relative path would otherwise
/// mean the worker's directory, on another node).
pub fn output_pattern(text: &str, cwd: &Path) -> OutputPattern {
    if text == "none" {
        return OutputPattern::Discard;
    }
    OutputPattern::File(absolute(text, cwd))
}

fn absolute(path: &str, cwd: &Path) -> String {
    if Path::new(path).is_absolute() {
        path.to_string()
    } else {
        cwd.join(path).to_string_lossy().into_owned()
    }
}

/// The lines of an `--each-line` file: every line (an empty line is a task with an empty
/// `{line}`), the final newline ending the last one.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!(
            "--each-line {}: cannot read it ({e}); give a text file with one input per line",
            path.display()
        ))
    })?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return Err(Error::invalid(format!(
            "--each-line {}: the file is empty, so there is nothing to run",
            path.display()
        )));
    }
    Ok(lines)
}

/// The files matching an `--each-file` glob (relative to `cwd`), sorted.
pub fn glob_files(pattern: &str, cwd: &Path) -> Result<Vec<String>> {
    let full = absolute(pattern, cwd);
    let paths = glob::glob(&full)
        .map_err(|e| Error::invalid(format!("--each-file {pattern}: not a valid pattern ({e})")))?;
    let mut files: Vec<String> = paths
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "--each-file {pattern}: no file matches it (looked in {}); check the pattern and \
             quote it so the shell does not expand it",
            cwd.display()
        )));
    }
    Ok(files)
}

/// Whether `program` can be found from here: a path that exists and is executable, or a
/// name on PATH. A placeholder in it cannot be judged (true).
pub fn program_found(program: &str, path_var: Option<&std::ffi::OsStr>, cwd: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('{') {
        return true;
    }
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(&cwd.join(program));
    }
    path_var
        .map(|p| std::env::split_paths(p).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false)
}

/// The whole description from the command line, checked. `cwd` is where relative paths
/// start; `default_output` the directory pattern of the default per-task files (None: drop).
pub fn build_spec(
    a: &SubmitArgs,
    cwd: &Path,
    default_output: Option<&str>,
) -> Result<TaskArraySpec> {
    let items = if let Some(r) = &a.array {
        parse_array(r)?
    } else if let Some(f) = &a.each_line {
        Items::Lines(read_lines(&cwd.join(f))?)
    } else if let Some(g) = &a.each_file {
        Items::Files(glob_files(g, cwd)?)
    } else {
        // One task, id 0.
        Items::Range {
            start: 0,
            end: 0,
            step: 1,
        }
    };
    let mut spec = TaskArraySpec::new(SubmissionId(0), items, a.program.clone());
    spec.name = a.name.clone().unwrap_or_else(|| {
        Path::new(&a.program[0])
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    spec.cpus = a.cpus;
    spec.max_retries = a.max_retries;
    spec.retry_failed = a.retry_failed;
    spec.env = a.env.iter().map(|e| parse_env(e)).collect::<Result<_>>()?;
    spec.cwd = Some(match &a.cwd {
        Some(d) => absolute(d, cwd),
        None => cwd.to_string_lossy().into_owned(),
    });
    spec.time_limit = match &a.time_limit {
        None => None,
        Some(t) => Some(Duration::from_secs(
            rdask::units::parse_seconds(t)
                .map_err(|e| Error::invalid(format!("--time-limit: {}", e.0)))?,
        )),
    };
    if let Some(r) = &a.resources {
        spec.resources =
            parse_resources(r).map_err(|why| Error::invalid(format!("--resources: {why}")))?;
    }
    spec.after = a.after.iter().map(|&id| SubmissionId(id)).collect();
    let default = |ext: &str| match default_output {
        Some(dir) => OutputPattern::File(format!("{dir}/{{task}}.{ext}")),
        None => OutputPattern::Discard,
    };
    spec.stdout = a
        .stdout
        .as_deref()
        .map_or_else(|| default("out"), |p| output_pattern(p, cwd));
    spec.stderr = a
        .stderr
        .as_deref()
        .map_or_else(|| default("err"), |p| output_pattern(p, cwd));
    spec.check()?;
    Ok(spec)
}

// ---- Commands ---------------------------------------------------------------------------

pub fn submit(a: SubmitArgs) -> Result<i32> {
    if a.cpus == 0 {
        return Err(Error::invalid("--cpus must be at least 1"));
    }
    let cwd = std::env::current_dir().map_err(Error::io("reading the current directory"))?;
    if let Some(path) = &a.report {
        super::array::check_report_path(path)?;
        if a.local.is_none() {
            return Err(Error::invalid(
                "--report needs the embedded local cluster (its scheduler runs in this \
                 process): add --local N, or watch a named cluster live on its dashboard \
                 (`rdask-jobqueue status` prints the URL)",
            ));
        }
    }
    if let Some(n) = a.local {
        return submit_local(&a, n, &cwd);
    }
    let name = a
        .cluster
        .clone()
        .or_else(|| {
            std::env::var("RDASK_CLUSTER")
                .ok()
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    let dir = ClusterDir::new(&name)?;
    // Every input is checked before the daemon is asked anything.
    let pattern = dir.root.join("tasks").join("{submission}");
    let spec = build_spec(&a, &cwd, Some(&pattern.to_string_lossy()))?;
    warn_if_missing(&spec.argv[0], &cwd);
    dir.require_live()?;
    if let Some(url) = rdask::cluster::dashboard_url(&name) {
        eprintln!("{}", rdask::dashboard::announce(&url));
    }
    let reply = control::request(
        &dir,
        &Request::Submit {
            spec: Box::new(spec),
        },
        REQUEST_TIMEOUT,
    )?;
    let Reply::Submitted {
        submission,
        tasks,
        warning,
    } = reply
    else {
        return Err(unexpected(&reply));
    };
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    if !a.wait {
        if a.json {
            println!(
                "{}",
                serde_json::json!({"submission": submission.0, "tasks": tasks, "cluster": name})
            );
        } else {
            // The id alone on stdout, so `id=$(rdask-jobqueue submit ...)` works.
            println!("{submission}");
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "submission {submission}: {tasks} task(s) on cluster `{name}`; \
                     `rdask-jobqueue tasks {submission}{}` shows them",
                    name_flag(&name)
                );
            }
        }
        return Ok(0);
    }
    eprintln!("submission {submission}: {tasks} task(s) on cluster `{name}`");
    follow(&dir, submission, a.json)
}

fn warn_if_missing(program: &str, cwd: &Path) {
    if !program_found(program, std::env::var_os("PATH").as_deref(), cwd) {
        eprintln!(
            "warning: `{program}` is not found on this node (not on PATH, or not executable); \
             submitting anyway, as it may exist on the compute nodes"
        );
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::runtime(format!("the daemon answered unexpectedly: {reply:?}"))
}

/// `wait` and `submit --wait`: polls the daemon (one small request per [`WAIT_POLL`]) and
/// shows progress until every task ended. Polling the control socket rather than holding a
/// stream keeps the daemon's one-request-per-connection protocol, and lets any shell (and
/// any number of them) follow a submission, including one that started before it.
fn follow(dir: &ClusterDir, id: SubmissionId, json: bool) -> Result<i32> {
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut last_line = String::new();
    let mut last_print = Instant::now();
    let view = loop {
        let v = match submission_view(dir, id) {
            Ok(v) => v,
            Err(e) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                // The daemon may have gone (down): the journal still says how it ended.
                if dir.live_daemon().is_none() {
                    let book = offline_book(dir)?;
                    break book.submission(id).ok_or(e)?;
                }
                return Err(e);
            }
        };
        let c = &v.counts;
        let msg = format!(
            "{} running, {} waiting, {} failed",
            c.running,
            c.waiting,
            c.unsuccessful()
        );
        if terminal {
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(c.total());
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} tasks  {msg}  {elapsed}",
                    )
                    .expect("a valid template"),
                );
                b
            });
            b.set_position(c.finished());
            b.set_message(msg);
        } else {
            let line = format!("{}/{} tasks done; {msg}", c.finished(), c.total());
            if line != last_line && last_print.elapsed() >= Duration::from_secs(1)
                || v.state.is_finished()
            {
                eprintln!("{line}");
                last_line = line;
                last_print = Instant::now();
            }
        }
        if v.state.is_finished() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            break v;
        }
        std::thread::sleep(WAIT_POLL);
    };
    let failures = if view.counts.unsuccessful() > 0 {
        failed_tasks(dir, id)?
    } else {
        Vec::new()
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&TasksView {
                submissions: vec![view.clone()],
                tasks: Some(failures),
            })
            .expect("a view serialises")
        );
    } else {
        print!("{}", render_summary(&view));
        for t in failures.iter().take(FAILURES_SHOWN) {
            print!("{}", render_failure(t));
        }
        if failures.len() > FAILURES_SHOWN {
            println!(
                "... and {} more: `rdask-jobqueue tasks {id} --state failed,timed-out,cancelled,lost{}`",
                failures.len() - FAILURES_SHOWN,
                name_flag(&dir.name)
            );
        }
    }
    Ok(if view.state == journal::SubmissionState::Succeeded {
        0
    } else {
        1
    })
}

const UNSUCCESSFUL: [TaskState; 4] = [
    TaskState::Failed,
    TaskState::TimedOut,
    TaskState::Cancelled,
    TaskState::Lost,
];

fn failed_tasks(dir: &ClusterDir, id: SubmissionId) -> Result<Vec<TaskView>> {
    Ok(tasks_of(dir, Some(id), Some(&UNSUCCESSFUL))?
        .tasks
        .unwrap_or_default())
}

fn submission_view(dir: &ClusterDir, id: SubmissionId) -> Result<SubmissionView> {
    let v = tasks_of(dir, Some(id), None)?;
    v.submissions
        .into_iter()
        .next()
        .ok_or_else(|| Error::runtime(format!("the daemon did not list submission {id}")))
}

/// From the daemon while it lives, else from the journal it left.
fn tasks_of(
    dir: &ClusterDir,
    submission: Option<SubmissionId>,
    states: Option<&[TaskState]>,
) -> Result<TasksView> {
    if dir.live_daemon().is_some() {
        let reply = control::request(
            dir,
            &Request::Tasks {
                submission,
                states: states.map(<[TaskState]>::to_vec),
            },
            REQUEST_TIMEOUT,
        )?;
        return match reply {
            Reply::Tasks(v) => Ok(*v),
            other => Err(unexpected(&other)),
        };
    }
    offline_book(dir)?.view(submission, states, &dir.name)
}

fn offline_book(dir: &ClusterDir) -> Result<Book> {
    if !dir.root.exists() {
        return Err(Error::invalid(format!(
            "there is no cluster `{}` (`rdask-jobqueue list` shows them)",
            dir.name
        )));
    }
    let read = journal::read(&dir.journal_path(), &dir.name)?;
    Ok(Book::from_entries(&read.entries))
}

pub fn tasks(a: TasksArgs) -> Result<i32> {
    let dir = ClusterDir::new(&a.cluster.cluster)?;
    let states: Vec<TaskState> = a
        .state
        .iter()
        .map(|s| {
            TaskState::parse(s).ok_or_else(|| {
                Error::invalid(format!(
                    "--state {s}: not a task state; use one of {}",
                    TaskState::ALL.map(TaskState::name).join(", ")
                ))
            })
        })
        .collect::<Result<_>>()?;
    let id = a.id.map(SubmissionId);
    let view = tasks_of(&dir, id, id.map(|_| states.as_slice()))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("a view serialises")
        );
        return Ok(0);
    }
    match &view.tasks {
        None => print!("{}", render_submissions(&view.submissions)),
        Some(tasks) => {
            for s in &view.submissions {
                print!("{}", render_summary(s));
            }
            print!("{}", render_tasks(tasks));
        }
    }
    Ok(0)
}

pub fn wait(a: WaitArgs) -> Result<i32> {
    let dir = ClusterDir::new(&a.cluster.cluster)?;
    follow(&dir, SubmissionId(a.id), a.json)
}

pub fn cancel(a: CancelArgs) -> Result<i32> {
    let dir = ClusterDir::new(&a.cluster.cluster)?;
    let tasks = a.tasks.as_deref().map(parse_task_range).transpose()?;
    dir.require_live()?;
    let reply = control::request(
        &dir,
        &Request::CancelTasks {
            submission: SubmissionId(a.id),
            tasks,
        },
        REQUEST_TIMEOUT,
    )?;
    match reply {
        Reply::Ok { message } => {
            println!("{message}");
            Ok(0)
        }
        other => Err(unexpected(&other)),
    }
}

// ---- `--local N` --------------------------------------------------------------------------

fn submit_local(a: &SubmitArgs, workers: usize, cwd: &Path) -> Result<i32> {
    use rdask::local::{LocalCluster, LocalClusterOptions};
    if workers == 0 {
        return Err(Error::invalid("--local must be at least 1"));
    }
    // No cluster directory: the default files go under $RDASK_HOME/local, one directory
    // per run.
    let stamp = format!("{}-{}", rdask::cluster::now() as u64, std::process::id());
    let out_dir = rdask::cluster::home()
        .join("local")
        .join("tasks")
        .join(stamp);
    let mut spec = build_spec(a, cwd, Some(&out_dir.to_string_lossy()))?;
    spec.submission = SubmissionId(1);
    if spec.cpus > 1 {
        return Err(Error::invalid(format!(
            "--cpus {}: the workers of --local have 1 thread each, so no task could start",
            spec.cpus
        )));
    }
    if !spec.after.is_empty() {
        return Err(Error::invalid(
            "--after names submissions of a named cluster; --local runs one submission alone",
        ));
    }
    warn_if_missing(&spec.argv[0], cwd);
    let rt = rdask::rt::runtime()?;
    let json = a.json;
    let command = a.program.join(" ");
    let tasks = spec.len();
    rt.block_on(async move {
        let began = Instant::now();
        let cluster = LocalCluster::start(LocalClusterOptions {
            workers,
            threads_per_worker: 1,
            record: a.report.is_some(),
            ..LocalClusterOptions::default()
        })
        .await?;
        if let Some(url) = cluster.dashboard_url() {
            eprintln!("{}", rdask::dashboard::announce(url));
        }
        let client = cluster.client().await?;
        let connected = began.elapsed().as_secs_f64();
        let ran = run_and_report(&client, spec, json).await;
        if let Some(path) = &a.report {
            let info = rdask::dashboard::report::RunInfo {
                title: format!("rdask-jobqueue submit: {command}"),
                expression: command,
                timings: vec![
                    ("start the local cluster".into(), connected),
                    (
                        "run the tasks".into(),
                        began.elapsed().as_secs_f64() - connected,
                    ),
                ],
                notes: vec![
                    format!("{tasks} task(s)"),
                    format!("local cluster: {workers} worker(s) x 1 thread"),
                ],
            };
            if let Err(e) = write_report(&cluster, path, &info).await {
                eprintln!("error: {e}");
            }
        }
        drop(client);
        cluster.close().await;
        ran
    })
}

/// `--report`'s HTML, written atomically once the dashboard has folded the last tasks in.
async fn write_report(
    cluster: &rdask::local::LocalCluster,
    path: &Path,
    info: &rdask::dashboard::report::RunInfo,
) -> Result<()> {
    tokio::time::sleep(rdask::dashboard::DELTA_INTERVAL + Duration::from_millis(300)).await;
    let html = cluster
        .report(info)
        .ok_or_else(|| Error::runtime("the local cluster has no dashboard to report from"))?;
    rdask::files::write_atomic(path, html.as_bytes(), 0o644)?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// `mpi submit`: rank 1 (the driver) runs the submission on the launch's own scheduler and
/// worker ranks, and waits for it; its exit status ends every rank.
pub fn submit_in_mpi(a: SubmitArgs, scheduler_file: &Path, launch_id: &str) -> Result<i32> {
    if a.cluster.is_some() || a.local.is_some() {
        return Err(Error::invalid(
            "mpi submit runs on the ranks of this allocation: drop --cluster and --local",
        ));
    }
    if !a.after.is_empty() {
        return Err(Error::invalid(
            "--after names submissions of a named cluster; mpi submit runs one submission",
        ));
    }
    let cwd = std::env::current_dir().map_err(Error::io("reading the current directory"))?;
    let out_dir = rdask::cluster::home()
        .join("mpi")
        .join("tasks")
        .join(launch_id);
    let mut spec = build_spec(&a, &cwd, Some(&out_dir.to_string_lossy()))?;
    spec.submission = SubmissionId(1);
    warn_if_missing(&spec.argv[0], &cwd);
    let (address, secret) = rdask::protocol::SchedulerFile::load(scheduler_file)?;
    rdask::rt::runtime()?.block_on(async move {
        let client = rdask::client::Client::connect(&address, &secret).await?;
        // The worker ranks join as they start: the check waits for the first.
        let deadline = Instant::now() + Duration::from_secs(60);
        let largest = loop {
            let s = client.status().await?;
            if let Some(n) = s.workers.iter().map(|w| w.nthreads).max() {
                break n;
            }
            if Instant::now() > deadline {
                return Err(Error::runtime(
                    "no worker rank joined within 60 s: launch at least 3 ranks (0 the \
                     scheduler, 1 this driver, 2.. workers)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if spec.cpus > largest {
            return Err(Error::invalid(format!(
                "--cpus {}: the worker ranks have {largest} thread(s) each (mpi --nthreads), \
                 so no task could start",
                spec.cpus
            )));
        }
        run_and_report(&client, spec, a.json).await
    })
}

/// Runs `spec` through `client` to its end with progress, then prints the outcome; exit
/// status 1 if any task did not succeed.
async fn run_and_report(
    client: &rdask::client::Client,
    spec: TaskArraySpec,
    json: bool,
) -> Result<i32> {
    let total = spec.len();
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {elapsed}")
                .expect("a valid template"),
        );
        b
    });
    let mut done = 0u64;
    let mut last_print = Instant::now();
    let outcomes = client
        .run_task_array(spec, |event| {
            if let rdask::client::TaskEvent::Ended(list) = event {
                done += list.len() as u64;
                match &bar {
                    Some(b) => b.set_position(done),
                    None if last_print.elapsed() >= Duration::from_secs(1) => {
                        eprintln!("{done}/{total} tasks done");
                        last_print = Instant::now();
                    }
                    None => {}
                }
            }
        })
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    report_local(&outcomes?, elapsed, json)
}

fn report_local(outcomes: &[TaskOutcome], elapsed: f64, json: bool) -> Result<i32> {
    let failed: Vec<&TaskOutcome> = outcomes.iter().filter(|o| !o.state.succeeded()).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "tasks": outcomes.len(),
                "succeeded": outcomes.len() - failed.len(),
                "failed": failed.len(),
                "seconds": elapsed,
                "failures": failed,
            })
        );
    } else {
        println!(
            "{} task(s): {} succeeded, {} did not, in {elapsed:.2} s",
            outcomes.len(),
            outcomes.len() - failed.len(),
            failed.len()
        );
        for o in failed.iter().take(FAILURES_SHOWN) {
            println!("  task {}: {}", o.task, o.state);
            for line in last_lines(&o.stderr_tail, 5) {
                println!("    | {line}");
            }
        }
    }
    Ok(i32::from(!failed.is_empty()))
}

// ---- Rendering ----------------------------------------------------------------------------

fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 3600.0 {
        format!("{:.0}s", s)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// The list of submissions.
pub fn render_submissions(subs: &[SubmissionView]) -> String {
    use std::fmt::Write;
    if subs.is_empty() {
        return "no submissions\n".into();
    }
    let mut o = format!(
        "{:>4}  {:<16} {:<10} {:>7} {:>7} {:>7} {:>7} {:>7}  PROGRAM\n",
        "ID", "NAME", "STATE", "TASKS", "DONE", "FAILED", "RUNNING", "WAITING"
    );
    for s in subs {
        let c = &s.counts;
        let _ = writeln!(
            o,
            "{:>4}  {:<16} {:<10} {:>7} {:>7} {:>7} {:>7} {:>7}  {}",
            s.id.0,
            s.name,
            s.state.name(),
            c.total(),
            c.finished(),
            c.unsuccessful(),
            c.running,
            c.waiting,
            shell_words::join(&s.program)
        );
    }
    o
}

/// One submission in a line or two.
pub fn render_summary(s: &SubmissionView) -> String {
    let c = &s.counts;
    let mut o = format!(
        "submission {} ({}): {} — {} task(s): {} succeeded",
        s.id.0,
        s.name,
        s.state.name(),
        c.total(),
        c.succeeded
    );
    for (n, word) in [
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.cancelled, "cancelled"),
        (c.lost, "lost"),
        (c.running, "running"),
        (c.waiting, "waiting"),
    ] {
        if n > 0 {
            o.push_str(&format!(", {n} {word}"));
        }
    }
    if let Some(end) = s.ended_at {
        o.push_str(&format!(" (in {})", seconds(end - s.submitted_at)));
    }
    o.push('\n');
    if let Some(why) = &s.refused {
        o.push_str(&format!("refused: {why}\n"));
    }
    o
}

fn render_failure(t: &TaskView) -> String {
    let mut o = format!(
        "  task {}: {}{}\n",
        t.task,
        t.end.as_deref().unwrap_or(t.state.name()),
        t.host
            .as_deref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default()
    );
    if let Some(tail) = &t.stderr_tail {
        for line in last_lines(tail, 5) {
            o.push_str(&format!("    | {line}\n"));
        }
    }
    o
}

/// The tasks of one submission: a table, then the end of stderr of those that failed.
pub fn render_tasks(tasks: &[TaskView]) -> String {
    use std::fmt::Write;
    let mut o = format!(
        "{:>8}  {:<10} {:>5} {:<20} {:<16} {:>9} {:>3}\n",
        "TASK", "STATE", "EXIT", "WORKER", "HOST", "DURATION", "RUN"
    );
    for t in tasks {
        let exit = match (t.exit_code, t.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("sig{s}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:>8}  {:<10} {:>5} {:<20} {:<16} {:>9} {:>3}",
            t.task,
            t.state.name(),
            exit,
            t.worker.as_deref().unwrap_or("-"),
            t.host.as_deref().unwrap_or("-"),
            t.duration.map_or("-".into(), seconds),
            t.attempts
        );
    }
    let failed: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| UNSUCCESSFUL.contains(&t.state))
        .collect();
    if !failed.is_empty() {
        o.push('\n');
        for t in failed {
            o.push_str(&render_failure(t));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: SubmitArgs,
    }

    fn args(extra: &[&str]) -> SubmitArgs {
        let mut argv = vec!["submit"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn arrays_parse_with_steps_and_single_ids() {
        assert_eq!(
            parse_array("1-1000").unwrap(),
            Items::Range {
                start: 1,
                end: 1000,
                step: 1
            }
        );
        assert_eq!(
            parse_array("0-99:5").unwrap(),
            Items::Range {
                start: 0,
                end: 99,
                step: 5
            }
        );
        assert_eq!(parse_array("7").unwrap().len(), 1);
        for bad in ["5-1", "1-10:0", "a-b", "-3", "1-", ""] {
            let e = parse_array(bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad}");
        }
        assert!(parse_array("5-1")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert_eq!(parse_task_range("3-7").unwrap(), (3, 7));
        assert_eq!(parse_task_range("4").unwrap(), (4, 4));
        assert!(parse_task_range("3-7:2").is_err());
    }

    #[test]
    fn env_needs_a_name_and_an_equals_sign() {
        assert_eq!(
            parse_env("A_1=x=y").unwrap(),
            ("A_1".to_string(), "x=y".to_string())
        );
        assert_eq!(parse_env("EMPTY=").unwrap().1, "");
        for bad in ["NOEQ", "=v", "1A=v", "A-B=v", "A B=v"] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_spec_takes_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let a = args(&[
            "--array",
            "1-10:3",
            "--cpus",
            "2",
            "--max-retries",
            "5",
            "--retry-failed",
            "--time-limit",
            "1m30s",
            "--stdout",
            "out/{task}.txt",
            "--stderr",
            "none",
            "--cwd",
            "work",
            "--env",
            "A=1",
            "--env",
            "B={task}",
            "--name",
            "sim",
            "--after",
            "2",
            "--resources",
            "GPU=1",
            "--",
            "./sim",
            "--seed",
            "{task}",
        ]);
        let s = build_spec(&a, dir.path(), Some("/d/{submission}")).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!((s.cpus, s.max_retries, s.retry_failed), (2, 5, true));
        assert_eq!(s.time_limit, Some(Duration::from_secs(90)));
        let out = dir.path().join("out/{task}.txt");
        assert_eq!(s.stdout, OutputPattern::File(out.to_string_lossy().into()));
        assert_eq!(s.stderr, OutputPattern::Discard);
        let work = dir.path().join("work");
        assert_eq!(s.cwd.as_deref(), Some(&*work.to_string_lossy()));
        assert_eq!(s.env.len(), 2);
        assert_eq!(s.name, "sim");
        assert_eq!(s.after, vec![SubmissionId(2)]);
        assert_eq!(s.resources, vec![("GPU".to_string(), 1.0)]);
        assert_eq!(s.argv, ["./sim", "--seed", "{task}"]);
        // Defaults: per-task files in the given directory, the current directory, 1 cpu.
        let s = build_spec(&args(&["--", "true"]), dir.path(), Some("/d/{submission}")).unwrap();
        assert_eq!(
            s.stdout,
            OutputPattern::File("/d/{submission}/{task}.out".into())
        );
        assert_eq!(
            s.stderr,
            OutputPattern::File("/d/{submission}/{task}.err".into())
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.name, "true");
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let err = |extra: &[&str]| build_spec(&args(extra), p, None).unwrap_err();
        let missing = err(&["--each-line", "nope.txt", "--", "cat", "{line}"]);
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::write(p.join("empty.txt"), "").unwrap();
        assert!(err(&["--each-line", "empty.txt", "--", "cat", "{line}"])
            .to_string()
            .contains("empty"));
        assert!(err(&["--each-file", "*.none", "--", "wc", "{file}"])
            .to_string()
            .contains("no file matches"));
        assert!(err(&["--env", "X", "--", "true"])
            .to_string()
            .contains("--env"));
        assert!(err(&["--time-limit", "soon", "--", "true"])
            .to_string()
            .contains("--time-limit"));
        assert!(err(&["--resources", "GPU", "--", "true"])
            .to_string()
            .contains("--resources"));
        assert!(err(&["--array", "3-1", "--", "true"])
            .to_string()
            .contains("empty"));
        // {line} without --each-line (the spec's own check).
        assert!(matches!(err(&["--", "cat", "{line}"]), Error::Invalid(_)));
        // Two sources of items at once: clap refuses.
        assert!(
            Cli::try_parse_from(["s", "--array", "1-2", "--each-file", "x", "--", "t"]).is_err()
        );
    }

    #[test]
    fn lines_and_files_become_items() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("l.txt"), "a b\n\nc\n").unwrap();
        let s = build_spec(
            &args(&["--each-line", "l.txt", "--", "echo", "{line}"]),
            p,
            None,
        )
        .unwrap();
        assert_eq!(
            s.items,
            Items::Lines(vec!["a b".into(), "".into(), "c".into()])
        );
        std::fs::create_dir(p.join("d")).unwrap();
        for f in ["b.csv", "a.csv", "c.txt"] {
            std::fs::write(p.join("d").join(f), "x").unwrap();
        }
        let s = build_spec(
            &args(&["--each-file", "d/*.csv", "--", "wc", "{file}"]),
            p,
            None,
        )
        .unwrap();
        let Items::Files(files) = s.items else {
            panic!("files expected")
        };
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("d/a.csv") && files[1].ends_with("d/b.csv"));
    }

    #[test]
    fn programs_are_looked_up_like_a_shell_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::OsString::from("/bin:/usr/bin");
        assert!(program_found("sh", Some(&path), dir.path()));
        assert!(!program_found(
            "no-such-program-xyz",
            Some(&path),
            dir.path()
        ));
        assert!(!program_found("./missing", Some(&path), dir.path()));
        assert!(program_found("{line}", Some(&path), dir.path()));
        assert!(program_found("/bin/sh", None, dir.path()));
    }

    #[test]
    fn tables_show_states_exits_and_stderr_tails() {
        let view = |task, state, exit: Option<i32>, tail: Option<&str>| TaskView {
            task,
            state,
            end: Some(state.name().to_string()),
            exit_code: exit,
            signal: None,
            worker: Some("w".into()),
            host: Some("node1".into()),
            started_at: Some(1.0),
            ended_at: Some(2.0),
            duration: Some(1.0),
            attempts: 1,
            stderr_tail: tail.map(str::to_string),
        };
        let text = render_tasks(&[
            view(1, TaskState::Succeeded, Some(0), None),
            view(2, TaskState::Failed, Some(3), Some("line1\nno such file\n")),
        ]);
        assert!(text.contains("succeeded"));
        assert!(text.contains("    | no such file"), "{text}");
        assert!(text.contains("task 2: failed on node1"), "{text}");
    }
}
