//! Submit -> running -> state -> cancel -> finished round trips through `rdask-jobqueue jobs`,
//! against the real SLURM and Grid Engine that tests/run.sh starts, and against the stand-in
//! commands in tests/standins/ for PBS, Moab, LSF, OAR and HTCondor (they cannot be installed
//! here; see tests/standins/README.md). Every system goes through the same code path.
//!
//! The job's command is replaced through the prologue: it records its environment in a marker
//! file, then `exec sleep`s, so the worker command after it never runs.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct System {
    name: &'static str,
    /// Directory to put first on PATH (the stand-ins), if any.
    standin: Option<&'static str>,
    queue: Option<&'static str>,
    /// The environment variable through which the job learns its id.
    id_var: &'static str,
}

fn cmd(sys: &System, state: &Path) -> Command {
    let mut c = bin();
    c.env("RDASK_SYSTEM", sys.name)
        .env("RDASK_STANDIN_STATE", state)
        .env("RDASK_COMMAND_TIMEOUT", "60");
    if let Some(dir) = sys.standin {
        // Never fall through to a real tool of the same name (Grid Engine's qsub for PBS).
        let standins = repo().join("tests/standins").join(dir);
        assert!(
            standins.is_dir(),
            "stand-in directory {} is missing",
            standins.display()
        );
        let path = format!(
            "{}:{}",
            repo().join("tests/standins").join(dir).display(),
            std::env::var("PATH").unwrap()
        );
        c.env("PATH", path);
    }
    c.current_dir(state);
    c
}

fn state_of(sys: &System, state: &Path, id: &str) -> String {
    let out = run(cmd(sys, state).args(["jobs", "status", "--json", id]));
    assert!(out.status.success(), "status: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("status --json is JSON");
    v[id]
        .as_str()
        .unwrap_or_else(|| panic!("no state for {id}: {v}"))
        .to_string()
}

fn submit(
    sys: &System,
    state: &Path,
    marker: &Path,
    scripts: &Path,
    queue: Option<&str>,
) -> std::process::Output {
    let mut c = cmd(sys, state);
    c.args([
        "jobs",
        "submit",
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--cores",
        "1",
        "--memory",
        "100MB",
    ])
    .args(["--walltime", "00:10:00", "--job-name", "rdask-test"])
    .arg("--log-directory")
    .arg(state)
    .arg("--script-dir")
    .arg(scripts)
    .arg("--prologue")
    .arg(format!("env > {}.tmp && mv {0}.tmp {0}", marker.display()))
    .args(["--prologue", "exec sleep 600"]);
    if let Some(q) = queue {
        c.args(["--queue", q]);
    }
    run(&mut c)
}

fn round_trip(sys: System) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let scripts = state.join("scripts");
    let marker: PathBuf = state.join("marker");

    // Submit and see it run.
    let out = submit(&sys, &state, &marker, &scripts, sys.queue);
    assert!(
        out.status.success(),
        "{}: submit failed: {}",
        sys.name,
        stderr(&out)
    );
    let id = stdout(&out).trim().to_string();
    assert!(!id.is_empty(), "{}: no job id printed", sys.name);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let env = loop {
        if let Ok(env) = std::fs::read_to_string(&marker) {
            break env;
        }
        if std::time::Instant::now() > deadline {
            // Say what the batch system saw, to tell a slow start from a broken one.
            let script = format!(
                "ls -lR {0}; tail -n 30 {0}/*.out {0}/*.err {0}/jobs/*/* 2>/dev/null",
                state.display()
            );
            let listing = Command::new("sh").arg("-c").arg(script).output().unwrap();
            panic!(
                "{} job {id} never started; state:\n{}",
                sys.name,
                String::from_utf8_lossy(&listing.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let job_id_line = env
        .lines()
        .find(|l| l.starts_with(&format!("{}=", sys.id_var)));
    assert!(
        job_id_line.is_some(),
        "{}: the job has no {} in its environment:\n{env}",
        sys.name,
        sys.id_var
    );
    assert_eq!(state_of(&sys, &state, &id), "running", "{}", sys.name);

    // Cancel it and see it end.
    let out = run(cmd(&sys, &state).args(["jobs", "cancel", &id]));
    assert!(
        out.status.success(),
        "{}: cancel failed: {}",
        sys.name,
        stderr(&out)
    );
    let last = wait_for(
        &format!("{} job {id} to end", sys.name),
        Duration::from_secs(60),
        || {
            let s = state_of(&sys, &state, &id);
            (s != "running" && s != "pending").then_some(s)
        },
    );
    assert!(
        ["cancelled", "gone", "failed"].contains(&last.as_str()),
        "{}: ended as {last}",
        sys.name
    );
    // Cancelling a finished job again is not an error.
    let out = run(cmd(&sys, &state).args(["jobs", "cancel", &id]));
    assert!(
        out.status.success(),
        "{}: second cancel: {}",
        sys.name,
        stderr(&out)
    );

    // A queue that does not exist: a clear error naming the command, exit 1, nothing left.
    if sys.name != "htcondor" && sys.name != "local" {
        let before: Vec<_> = std::fs::read_dir(&scripts).unwrap().collect();
        let out = submit(
            &sys,
            &state,
            &state.join("never"),
            &scripts,
            Some("nosuchqueue"),
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: bad queue accepted: {err}",
            sys.name
        );
        assert!(
            err.contains("failed") && err.contains("nosuchqueue"),
            "{}: unclear error: {err}",
            sys.name
        );
        // Read from the command's typed exit status: a refusal, not a maybe-queued job.
        assert!(
            err.contains("rejected the job to queue nosuchqueue")
                && !err.contains("may have been submitted"),
            "{}: not worded as a rejection: {err}",
            sys.name
        );
        let after: Vec<_> = std::fs::read_dir(&scripts).unwrap().collect();
        assert_eq!(
            before.len(),
            after.len(),
            "{}: a rejected submit left its script behind",
            sys.name
        );
        assert!(!state.join("never").exists());
    }
}

#[test]
fn slurm_round_trip() {
    if real_system_enabled("slurm") {
        round_trip(System {
            name: "slurm",
            standin: None,
            queue: Some("debug"),
            id_var: "SLURM_JOB_ID",
        });
    }
}

#[test]
fn sge_round_trip() {
    if real_system_enabled("sge") {
        let queue = std::env::var("RDASK_TEST_SGE_QUEUE").unwrap_or_else(|_| "all.q".into());
        let queue: &'static str = Box::leak(queue.into_boxed_str());
        round_trip(System {
            name: "sge",
            standin: None,
            queue: Some(queue),
            id_var: "JOB_ID",
        });
    }
}

#[test]
fn local_round_trip() {
    round_trip(System {
        name: "local",
        standin: None,
        queue: None,
        id_var: "RDASK_LOCAL_JOB_ID",
    });
}

#[test]
fn pbs_standin_round_trip() {
    round_trip(System {
        name: "pbs",
        standin: Some("pbs"),
        queue: Some("workq"),
        id_var: "PBS_JOBID",
    });
}

#[test]
fn moab_standin_round_trip() {
    round_trip(System {
        name: "moab",
        standin: Some("moab"),
        queue: Some("batch"),
        id_var: "PBS_JOBID",
    });
}

#[test]
fn lsf_standin_round_trip() {
    round_trip(System {
        name: "lsf",
        standin: Some("lsf"),
        queue: Some("normal"),
        id_var: "LSB_JOBID",
    });
}

#[test]
fn oar_standin_round_trip() {
    round_trip(System {
        name: "oar",
        standin: Some("oar"),
        queue: Some("default"),
        id_var: "OAR_JOB_ID",
    });
}

#[test]
fn htcondor_standin_round_trip() {
    round_trip(System {
        name: "htcondor",
        standin: Some("htcondor"),
        queue: None,
        id_var: "_CONDOR_JOB_AD",
    });
}

/// Job ids are checked per system before any command runs: `jobs cancel --system local 1`
/// ran `kill -TERM -- -1` (every process of the user), and `jobs cancel --system slurm --
/// --name=X` passed an option to scancel. Fake tools first on PATH record any call.
#[test]
fn job_ids_are_checked_before_any_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let tools = [
        "scancel",
        "squeue",
        "qdel",
        "qstat",
        "bkill",
        "bjobs",
        "oardel",
        "oarstat",
        "condor_rm",
        "condor_q",
        "canceljob",
        "showq",
        "kill",
        "ps",
        "sh",
    ];
    for tool in tools {
        let path = dir.path().join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {tool} \"$@\" >> {}\n", calls.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let cases: &[(&str, &[&str])] = &[
        ("local", &["1"]),
        ("local", &["0"]),
        ("local", &["--", "-1"]),
        ("slurm", &["--", "--name=rdask-worker"]),
        ("slurm", &["123", "--", "-u"]),
        ("pbs", &["123.server", "x"]),
        ("sge", &["--", "-u"]),
        ("lsf", &["123[x]"]),
        ("oar", &["12.3"]),
        ("htcondor", &["--", "-all"]),
        ("moab", &["--", "-x"]),
    ];
    for (system, ids) in cases {
        for sub in ["cancel", "status"] {
            let out = run(bin()
                .env("PATH", &path)
                .args(["jobs", sub, "--system", system])
                .args(*ids));
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{sub} {system} {ids:?}: {err}");
            assert!(
                err.contains(&format!("is not a {system} job id")),
                "{sub} {system} {ids:?}: {err}"
            );
        }
    }
    assert!(
        !calls.exists(),
        "a command ran: {}",
        std::fs::read_to_string(&calls).unwrap_or_default()
    );
}

/// A local id must be a job our local launcher started: a process of ours that it did not
/// start is refused (exit 2) and keeps running.
#[test]
fn local_cancel_refuses_processes_it_did_not_start() {
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let out = run(bin().args(["jobs", "cancel", "--system", "local", &pid]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&pid) && err.contains("not a local job"),
        "{err}"
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the process was killed"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

/// A newline in a job option never reaches a real sbatch/qsub: refused with exit 2, no
/// script left, no job of that name queued.
fn injected_option_never_reaches(system: &str, queue: &str) {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    let marker = dir.path().join("pwned");
    let name = format!("rdask-inject-{}", std::process::id());
    let evil = format!("--comment=x\ntouch {}", marker.display());
    let out = run(bin()
        .current_dir(dir.path())
        .args(["jobs", "submit", "--system", system, "--queue", queue])
        .args(["--scheduler", "tcp://127.0.0.1:9", "--job-name", &name])
        .args(["--memory", "100MB", "--walltime", "00:05:00"])
        .arg("--script-dir")
        .arg(&scripts)
        .arg(format!("--job-extra-directive={evil}")));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{system}: {err}");
    assert!(
        err.contains("--job-extra-directive") && err.contains("a newline"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{system}: a job id was printed");
    assert!(!scripts.exists(), "{system}: a script was written");
    let listed = match system {
        "slurm" => Command::new("squeue")
            .args(["-h", "-o", "%i", "--name", &name])
            .output(),
        _ => Command::new("qstat").args(["-j", &name]).output(),
    }
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.trim().is_empty() || listed.contains("do not exist"),
        "{system}: a job named {name} is queued: {listed}"
    );
    assert!(!marker.exists());
}

#[test]
fn slurm_never_sees_an_injected_option() {
    if real_system_enabled("slurm") {
        injected_option_never_reaches("slurm", "debug");
    }
}

#[test]
fn sge_never_sees_an_injected_option() {
    if real_system_enabled("sge") {
        let queue = std::env::var("RDASK_TEST_SGE_QUEUE").unwrap_or_else(|_| "all.q".into());
        injected_option_never_reaches("sge", &queue);
    }
}
