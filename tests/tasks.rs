//! Task arrays of the user's own programs, end to end through the real binary: `submit`,
//! `tasks`, `wait`, `cancel` on named clusters (on `local`, which needs no batch system, and
//! on the real SLURM and Grid Engine: growing with `adapt` and shrinking after, a worker job
//! cancelled mid-submission), and `submit --local N`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A named cluster under a private `RDASK_HOME`, taken down by force when dropped.
struct Cluster {
    home: tempfile::TempDir,
    name: String,
    system: &'static str,
    /// Where commands run (relative paths of the tasks start here).
    work: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--force"]);
    }
}

impl Cluster {
    /// `up` on `system` with `up_extra` (`--scale 2`, `--adapt 0:4`), one core per job.
    fn up(system: &'static str, name: &str, up_extra: &[&str]) -> Cluster {
        // Under /tmp: batch jobs on this host read the secret from here, and a Unix socket
        // path must stay short.
        let home = tempfile::Builder::new()
            .prefix("rdask-tasks-")
            .tempdir_in("/tmp")
            .unwrap();
        let work = home.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let c = Cluster {
            home,
            name: name.to_string(),
            system,
            work,
        };
        let mut args = vec![
            "up",
            "--system",
            system,
            "--cores",
            "1",
            "--memory",
            "500MiB",
            "--walltime",
            "00:10:00",
            "--interval",
            "0.5",
            "--poll-interval",
            "1",
            "--death-timeout",
            "20",
        ];
        match system {
            "slurm" => args.extend(["--queue", "debug"]),
            "sge" => args.extend(["--queue", "all.q"]),
            _ => {}
        }
        args.extend(up_extra);
        c.ok(&args);
        c
    }

    fn command(&self) -> Command {
        let mut c = bin();
        c.env("RDASK_HOME", self.home.path())
            .env("RDASK_CLUSTER", &self.name)
            .current_dir(&self.work);
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "{}: `{}` failed ({:?}): {}{}\ndaemon log:\n{}",
            self.system,
            args.join(" "),
            o.status.code(),
            stdout(&o),
            stderr(&o),
            self.daemon_log()
        );
        stdout(&o)
    }

    fn dir(&self) -> PathBuf {
        self.home.path().join("clusters").join(&self.name)
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("logs/daemon.log")).unwrap_or_default()
    }

    /// `submit ARGS` without --wait: the submission's id.
    fn submit(&self, args: &[&str]) -> String {
        let mut a = vec!["submit"];
        a.extend(args);
        let id = self.ok(&a).trim().to_string();
        assert!(id.parse::<u64>().is_ok(), "submit printed `{id}`");
        id
    }

    /// `tasks ID --json`, optionally with `--state`.
    fn tasks(&self, id: &str, state: Option<&str>) -> Value {
        let mut a = vec!["tasks", id, "--json"];
        if let Some(s) = state {
            a.extend(["--state", s]);
        }
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn submission(&self, id: &str) -> Value {
        self.tasks(id, Some("succeeded"))["submissions"][0].clone()
    }

    fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("submission {id} {state}"), timeout, || {
            let s = self.submission(id);
            (s["state"] == state).then_some(s)
        })
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    fn workers(&self) -> usize {
        self.status()["workers"].as_array().unwrap().len()
    }

    /// How many submissions the journal holds (read as `tasks` reads it).
    fn submissions(&self) -> usize {
        let v: Value = serde_json::from_str(&self.ok(&["tasks", "--json"])).unwrap();
        v["submissions"].as_array().unwrap().len()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(tasks: &Value) -> Vec<u64> {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_u64().unwrap())
        .collect()
}

// ---- bad input ----------------------------------------------------------------------------

/// Every bad input: exit 2, a message naming the problem and the fix, nothing queued.
#[test]
fn bad_input_is_refused_before_anything_is_queued() {
    let c = Cluster::up("local", "bad", &["--scale", "0"]);
    std::fs::write(c.work.join("empty.txt"), "").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--array", "5-1", "--", "true"], "empty"),
        (&["--array", "1-10:0", "--", "true"], "step is 0"),
        (
            &["--each-line", "missing.txt", "--", "echo", "{line}"],
            "cannot read",
        ),
        (
            &["--each-line", "empty.txt", "--", "echo", "{line}"],
            "empty",
        ),
        (
            &["--each-file", "nothing/*.csv", "--", "wc", "{file}"],
            "no file matches",
        ),
        (&["--cpus", "2", "--", "true"], "--cpus 2"),
        (&["--cpus", "0", "--", "true"], "--cpus"),
        (&["--env", "NOVALUE", "--", "true"], "--env"),
        (&["--after", "9", "--", "true"], "no submission 9"),
        (&["--time-limit", "soon", "--", "true"], "--time-limit"),
        (&["--resources", "GPU", "--", "true"], "--resources"),
        (&["--", "cat", "{line}"], "--each-line"),
        (
            &["--array", "1-2", "--each-line", "x", "--", "true"],
            "cannot be used",
        ),
    ];
    for (args, why) in cases {
        let mut a = vec!["submit"];
        a.extend(*args);
        let o = c.cmd(&a);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(c.submissions(), 0, "nothing was queued");
    // Unknown ids for the other commands.
    for args in [&["tasks", "7"][..], &["cancel", "7"], &["wait", "7"]] {
        let o = c.cmd(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no submission 7"), "{}", stderr(&o));
    }
    let o = c.cmd(&["tasks", "--state", "soon", "1"]);
    assert_eq!(o.status.code(), Some(2));
    // A program missing here is only a warning (it may exist on the compute nodes); with no
    // workers and a target of none, the submission waits, and says so.
    let o = c.cmd(&["submit", "--", "./not-here-yet", "{task}"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not found on this node"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("no workers"), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(c.submission(&id)["state"], "waiting");
    c.ok(&["cancel", &id]);
    c.wait_state(&id, "failed", Duration::from_secs(20));
    // No cluster at all.
    let o = run(bin().env("RDASK_HOME", c.home.path()).args([
        "submit",
        "--cluster",
        "nope",
        "--",
        "true",
    ]));
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

// ---- semantics on a local-system cluster --------------------------------------------------

/// Inputs, placeholders, output patterns and default output files, the environment, and
/// `tasks` from the journal after the submitting shell has exited and after `down`.
#[test]
fn inputs_outputs_and_the_journal() {
    let c = Cluster::up("local", "io", &["--scale", "2"]);
    let w = &c.work;
    std::fs::write(w.join("params.txt"), "alpha\nbeta gamma\n\ndelta\n").unwrap();
    std::fs::create_dir(w.join("in")).unwrap();
    for (f, text) in [("a.dat", "1"), ("b.dat", "22"), ("c.txt", "333")] {
        std::fs::write(w.join("in").join(f), text).unwrap();
    }
    // --each-line with a stdout pattern: one task per line, empty lines included.
    let id = c.submit(&[
        "--each-line",
        "params.txt",
        "--stdout",
        "lines/{task}.txt",
        "--stderr",
        "none",
        "--",
        "printf",
        "%s|%s",
        "{line}",
        "{task}",
    ]);
    let done = c.wait_state(&id, "succeeded", Duration::from_secs(60));
    assert_eq!(done["counts"]["succeeded"], 4);
    for (task, line) in ["alpha", "beta gamma", "", "delta"].iter().enumerate() {
        assert_eq!(
            read(&w.join(format!("lines/{task}.txt"))),
            format!("{line}|{task}")
        );
    }
    // --each-file: {file} is each matching path, sorted; the environment is set.
    let o = c.cmd(&[
        "submit",
        "--each-file",
        "in/*.dat",
        "--env",
        "GREETING=hi-{task}",
        "--wait",
        "--",
        "sh",
        "-c",
        "wc -c < {file} > {file}.n; echo $GREETING $RDASK_TASK_ID $RDASK_SUBMISSION_ID $RDASK_CPUS",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(read(&w.join("in/a.dat.n")).trim(), "1");
    assert_eq!(read(&w.join("in/b.dat.n")).trim(), "2");
    assert!(!w.join("in/c.txt.n").exists());
    // Default output: one file per task under the cluster's directory.
    let files_id = (id.parse::<u64>().unwrap() + 1).to_string();
    let out = c.dir().join("tasks").join(&files_id);
    assert_eq!(
        read(&out.join("0.out")).trim(),
        format!("hi-0 0 {files_id} 1")
    );
    assert_eq!(read(&out.join("1.err")), "");
    // `tasks` lists both, with per-task worker, host and duration.
    let all: Value = serde_json::from_str(&c.ok(&["tasks", "--json"])).unwrap();
    assert_eq!(all["submissions"].as_array().unwrap().len(), 2);
    let t = c.tasks(&id, None);
    assert_eq!(ids(&t), vec![0, 1, 2, 3]);
    for task in t["tasks"].as_array().unwrap() {
        assert_eq!(task["state"], "succeeded");
        assert_eq!(task["exit_code"], 0);
        assert!(task["worker"].as_str().is_some_and(|w| !w.is_empty()));
        assert!(task["duration"].as_f64().is_some());
    }
    let table = c.ok(&["tasks"]);
    assert!(
        table.contains("printf") && table.contains("succeeded"),
        "{table}"
    );
    // After `down`, the journal still answers.
    c.ok(&["down"]);
    let t = c.tasks(&id, Some("succeeded"));
    assert_eq!(ids(&t), vec![0, 1, 2, 3]);
}

/// Exit codes of `--wait` and `wait`, failures with their stderr, `--time-limit`, `cancel`
/// (all, and a range), `--after`, and `kill -9` of one task's process.
#[test]
fn failures_time_limits_cancel_after_and_signals() {
    let c = Cluster::up("local", "sem", &["--scale", "2"]);
    let w = &c.work;
    // Odd tasks exit 1 with a message: --wait exits 1 and names them.
    let o = c.cmd(&[
        "submit",
        "--array",
        "1-4",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo bad {task} >&2; exit $(( {task} % 2 ))",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("bad 3"), "{}", stdout(&o));
    let failed = c.tasks("1", Some("failed"));
    assert_eq!(ids(&failed), vec![1, 3]);
    assert_eq!(failed["tasks"][0]["exit_code"], 1);
    assert!(failed["tasks"][0]["stderr_tail"]
        .as_str()
        .unwrap()
        .contains("bad 1"));
    // All succeed: exit 0, and `wait` on it later too.
    let o = c.cmd(&["submit", "--array", "1-3", "--wait", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(c.cmd(&["wait", "2"]).status.code(), Some(0));
    assert_eq!(c.cmd(&["wait", "1"]).status.code(), Some(1));
    // --time-limit kills the task and its children.
    let started = Instant::now();
    let o = c.cmd(&[
        "submit",
        "--time-limit",
        "1s",
        "--wait",
        "--",
        "sh",
        "-c",
        "sleep 30 & echo $! > child.pid; wait",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    let timed = c.tasks("3", Some("timed-out"));
    assert_eq!(ids(&timed), vec![0]);
    let child = read(&w.join("child.pid")).trim().to_string();
    wait_for("the task's child killed", Duration::from_secs(10), || {
        // Gone, or a zombie (this sandbox's PID 1 reaps no orphans).
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |stat| stat.contains(") Z"))
            .then_some(())
    });
    // cancel --tasks: the range only; then cancel: the rest.
    let id = c.submit(&["--array", "1-6", "--", "sleep", "30"]);
    wait_for("2 tasks running", Duration::from_secs(30), || {
        (c.submission(&id)["counts"]["running"] == 2).then_some(())
    });
    c.ok(&["cancel", &id, "--tasks", "5-6"]);
    wait_for("tasks 5-6 cancelled", Duration::from_secs(20), || {
        let t = c.tasks(&id, Some("cancelled"));
        (ids(&t) == vec![5, 6]).then_some(())
    });
    c.ok(&["cancel", &id]);
    let o = c.cmd(&["wait", &id]);
    assert_eq!(o.status.code(), Some(1));
    let s = c.submission(&id);
    assert_eq!(s["counts"]["cancelled"], 6, "{s}");
    // --after: B starts once A succeeded.
    let a = c.submit(&[
        "--array",
        "1-2",
        "--",
        "sh",
        "-c",
        "sleep 1; echo a > a{task}",
    ]);
    let b = c.submit(&["--after", &a, "--", "sh", "-c", "test -e a1 && test -e a2"]);
    assert_eq!(c.cmd(&["wait", &b]).status.code(), Some(0));
    // --after a failed one is refused.
    let o = c.cmd(&["submit", "--after", "1", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("never start"), "{}", stderr(&o));
    // kill -9 of one task's process: that task fails with its signal, the others run.
    let id = c.submit(&[
        "--array",
        "1-3",
        "--",
        "sh",
        "-c",
        "echo $$ > pid{task}; if [ {task} = 2 ]; then sleep 60; fi",
    ]);
    let pid = wait_for("task 2's pid", Duration::from_secs(30), || {
        std::fs::read_to_string(w.join("pid2"))
            .ok()
            .filter(|p| p.ends_with('\n'))
    });
    let o = Command::new("kill")
        .args(["-9", pid.trim()])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(c.cmd(&["wait", &id]).status.code(), Some(1));
    let t = c.tasks(&id, None);
    let states: Vec<&str> = t["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["succeeded", "failed", "succeeded"]);
    assert_eq!(t["tasks"][1]["signal"], 9);
}

/// `submit --local N`: an embedded cluster, waited for.
#[test]
fn submit_local_runs_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(bin()
        .env("RDASK_HOME", dir.path())
        .current_dir(dir.path())
        .args([
            "submit", "--local", "2", "--array", "1-20", "--stdout", "o/{task}", "--", "echo",
            "{task}",
        ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("20 task(s): 20 succeeded"),
        "{}",
        stdout(&o)
    );
    for t in 1..=20 {
        assert_eq!(
            read(&dir.path().join(format!("o/{t}"))).trim(),
            t.to_string()
        );
    }
    let o = run(bin()
        .env("RDASK_HOME", dir.path())
        .current_dir(dir.path())
        .args([
            "submit",
            "--local",
            "2",
            "--array",
            "1-4",
            "--",
            "sh",
            "-c",
            "exit {task}",
        ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("4 did not"), "{}", stdout(&o));
}

// ---- real batch systems -------------------------------------------------------------------

/// `up --adapt 0:4`, 200 tasks: the cluster grows, every output is right, it shrinks back.
fn grows_and_shrinks(system: &'static str) {
    let c = Cluster::up(system, "grow", &["--adapt", "0:4"]);
    std::fs::create_dir(c.work.join("out")).unwrap();
    let id = c.submit(&[
        "--array",
        "1-200",
        "--",
        "sh",
        "-c",
        "echo {task} > out/{task}; sleep 0.2",
    ]);
    let most = wait_for("the cluster to grow", Duration::from_secs(180), || {
        let n = c.workers();
        (n >= 2).then_some(n)
    });
    assert!(most >= 2);
    let o = c.cmd(&["wait", &id]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for t in 1..=200 {
        assert_eq!(read(&c.work.join(format!("out/{t}"))).trim(), t.to_string());
    }
    let t = c.tasks(&id, None);
    let hosts: BTreeSet<&str> = t["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["worker"].as_str())
        .collect();
    assert!(
        hosts.len() >= 2,
        "the tasks ran on one worker only: {hosts:?}"
    );
    wait_for(
        "the cluster to shrink to none",
        Duration::from_secs(120),
        || {
            let s = c.status();
            (s["workers"].as_array().unwrap().is_empty()
                && s["jobs"].as_array().unwrap().is_empty())
            .then_some(())
        },
    );
}

#[test]
fn a_slurm_cluster_grows_for_a_submission_and_shrinks_after() {
    if real_system_enabled("slurm") {
        grows_and_shrinks("slurm");
    }
}

#[test]
fn an_sge_cluster_grows_for_a_submission_and_shrinks_after() {
    if real_system_enabled("sge") {
        grows_and_shrinks("sge");
    }
}

/// A worker job cancelled behind the cluster's back mid-submission: every task still ends
/// succeeded, and none ran twice to completion (each appends to its own file).
fn survives_a_cancelled_worker_job(system: &'static str) {
    let c = Cluster::up(system, "kill", &["--scale", "2"]);
    std::fs::create_dir(c.work.join("runs")).unwrap();
    wait_for("2 workers", Duration::from_secs(120), || {
        (c.workers() == 2).then_some(())
    });
    let id = c.submit(&[
        "--array",
        "1-30",
        "--",
        "sh",
        "-c",
        "echo start >> runs/{task}; sleep 0.5; echo done >> runs/{task}",
    ]);
    wait_for("some tasks done", Duration::from_secs(60), || {
        let s = c.submission(&id);
        (s["counts"]["succeeded"].as_u64() >= Some(4)).then_some(())
    });
    let job = c.status()["workers"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = if system == "slurm" { "scancel" } else { "qdel" };
    let o = Command::new(cancel).arg(&job).output().unwrap();
    assert!(o.status.success(), "{cancel} {job}: {}", stderr(&o));
    let o = c.cmd(&["wait", &id]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Each task ended once in the record, succeeded.
    let s = c.submission(&id);
    assert_eq!(s["counts"]["succeeded"], 30, "{s}");
    // And ran to completion once: the task running on the killed job was killed with it and
    // ran again elsewhere. The one exception the system cannot rule out is a program that
    // finished in the very instant its job was killed (qdel sends SIGKILL), before its worker
    // could report it: at most one here (one thread per job).
    let mut twice = Vec::new();
    for t in 1..=30 {
        let runs = read(&c.work.join(format!("runs/{t}")));
        let done = runs.lines().filter(|l| *l == "done").count();
        assert!(done >= 1, "task {t} never ran to completion: {runs:?}");
        if done > 1 {
            twice.push((t, runs));
        }
    }
    assert!(twice.len() <= 1, "tasks ran to completion twice: {twice:?}");
}

#[test]
fn a_cancelled_slurm_worker_job_loses_no_task() {
    if real_system_enabled("slurm") {
        survives_a_cancelled_worker_job("slurm");
    }
}

#[test]
fn a_deleted_sge_worker_job_loses_no_task() {
    if real_system_enabled("sge") {
        survives_a_cancelled_worker_job("sge");
    }
}
