//! The `array` command never hangs, never loses or half-writes data (issue 11), through the
//! real binary: expressions starting with `-`, JSON for infinities and NaN, outputs that
//! would damage a file refused before anything runs, signals during `--output`, dead or
//! memory-starved local workers, and named clusters that have no workers.

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, run, stderr, stdout};

/// `array ARGS... --local N --quiet`.
fn array(args: &[&str], local: &str) -> Output {
    run(bin()
        .arg("array")
        .args(args)
        .args(["--local", local, "--quiet"]))
}

/// Files in `dir` whose name contains `part`.
fn files_with(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// Waits for `child` at most `timeout`; kills it and fails the test if it is still running.
fn wait_or_kill(child: &mut Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?} (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

#[test]
fn expressions_that_start_with_a_minus_are_expressions_and_options_still_work() {
    // Before: clap took `-arange(3)` for options (`unexpected argument '-a'`), exit 2.
    let o = array(&["-arange(3)"], "1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[ 0 -1 -2]");
    // Options before and after it keep their meaning.
    let o = run(bin().args([
        "array",
        "-q",
        "-arange(3).sum()",
        "--local",
        "1",
        "--format",
        "json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["data"], serde_json::json!(-3));
    let o = array(&["-2 * arange(2)"], "1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[ 0 -2]");
}

#[test]
fn json_output_tells_inf_minus_inf_and_nan_apart() {
    // Before: [null, null, null].
    let o = run(bin().args([
        "array",
        "(arange(4) - 1) / 0.0",
        "--local",
        "1",
        "--quiet",
        "--format",
        "json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["data"], serde_json::json!(["-inf", "nan", "inf", "inf"]));
    assert_eq!(v["dtype"], "float64");
}

#[test]
fn outputs_that_would_damage_a_file_or_repeated_inputs_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.h5").display().to_string();
    // A file with a group /grp holding /grp/a, and a dataset /x.
    let o = array(&["ones(3)", "-o", &format!("{f}:/grp/a")], "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = array(&["arange(2)", "-o", &format!("{f}:/x")], "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(&f).unwrap();
    let x = format!("x={f}:/x");
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Before: the whole group /grp (and /grp/a) was deleted and replaced.
        (
            vec![
                "zeros(2)".into(),
                "-o".into(),
                format!("{f}:/grp"),
                "--overwrite".into(),
            ],
            "is a group, not a dataset",
        ),
        (
            vec!["zeros(2)".into(), "-o".into(), format!("{f}:/grp")],
            "is a group, not a dataset",
        ),
        // Before: computed, then failed writing (exit 1).
        (
            vec!["zeros(2)".into(), "-o".into(), format!("{f}:/x/y")],
            "is not a group, so /x/y cannot be created",
        ),
        (
            vec!["zeros(2)".into(), "-o".into(), format!("{f}:/")],
            "root group",
        ),
        (
            vec![
                "zeros(2)".into(),
                "-o".into(),
                format!("{f}:/"),
                "--overwrite".into(),
            ],
            "root group",
        ),
        // Before: the second silently replaced the first.
        (
            vec![
                "x * 2".into(),
                "-i".into(),
                x.clone(),
                "-i".into(),
                x.clone(),
            ],
            "given twice",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = array(&a, "1");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{args:?}: wanted '{want}' in: {}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty(), "{args:?} printed {}", stdout(&o));
    }
    assert_eq!(std::fs::read(&f).unwrap(), before, "the file changed");
    assert!(files_with(dir.path(), "rdask-tmp").is_empty());
    // The group and its dataset are intact; a dataset is still replaced with --overwrite.
    let o = array(&["a.sum()", "-i", &format!("a={f}:/grp/a")], "1");
    assert_eq!(stdout(&o).trim(), "3.0", "{}", stderr(&o));
    let o = array(
        &["zeros(2) + 7", "-o", &format!("{f}:/x"), "--overwrite"],
        "1",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = array(&["x.sum()", "-i", &x], "1");
    assert_eq!(stdout(&o).trim(), "14.0", "{}", stderr(&o));
}

/// Process ids whose parent is `pid` (the local workers of a driver).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started (or one of its children).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// `array ARGS...` started in the background, its output captured.
fn spawn_array(args: &[&str]) -> Child {
    bin()
        .arg("array")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `driver` has `n` worker processes, then gives them `settle` to register.
fn wait_for_workers(driver: &mut Child, n: usize, settle: Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while children_of(driver.id()).len() < n {
        assert!(driver.try_wait().unwrap().is_none(), "the run ended early");
        if Instant::now() > deadline {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("the local workers never started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(settle);
}

#[test]
fn sigterm_or_sigint_during_output_removes_the_temporary_file() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.h5").display().to_string();
        let mut driver = spawn_array(&[
            "random((6000, 6000), chunks=(500, 500)) * 2",
            "--local",
            "2",
            "--quiet",
            "-o",
            &format!("{out}:/y"),
        ]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while files_with(dir.path(), "rdask-tmp").is_empty() {
            assert!(driver.try_wait().unwrap().is_none(), "the run ended early");
            if Instant::now() > deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("no temporary file appeared");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Before: the process died of the signal with FILE.rdask-tmp-PID (and its .lock)
        // left behind.
        kill(driver.id() as i32, signal);
        let o = wait_or_kill(&mut driver, Duration::from_secs(60), "the signalled run");
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains("was not written"), "{}", stderr(&o));
        assert!(
            files_with(dir.path(), "out.h5").is_empty(),
            "left behind: {:?}",
            files_with(dir.path(), "out.h5")
        );
    }
}

#[test]
fn killed_local_workers_are_restarted_and_the_run_completes() {
    // Large enough to be still running when the workers are killed: chunk generation got
    // fast enough that a 6000² array was done within the settle time.
    let mut driver = spawn_array(&[
        "random((40000, 40000), chunks=(1000, 1000)).mean()",
        "--local",
        "2",
        "--quiet",
    ]);
    wait_for_workers(&mut driver, 2, Duration::from_millis(500));
    // Before: with both workers gone the driver waited forever.
    let victims = children_of(driver.id());
    assert_eq!(victims.len(), 2, "{victims:?}");
    for pid in victims {
        kill(pid, libc::SIGKILL);
    }
    let o = wait_or_kill(
        &mut driver,
        Duration::from_secs(300),
        "the run after the kill",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mean: f64 = stdout(&o).trim().parse().unwrap();
    assert!((mean - 0.5).abs() < 1e-3, "mean of uniform values: {mean}");
    assert!(
        stderr(&o).contains("restarting it"),
        "the kill did not hit a running computation: {}",
        stderr(&o)
    );
}

#[test]
fn workers_killed_again_and_again_end_the_run_with_the_reason() {
    let mut driver = spawn_array(&[
        "random((40000, 40000), chunks=(1000, 1000)).mean()",
        "--local",
        "2",
        "--quiet",
    ]);
    wait_for_workers(&mut driver, 2, Duration::from_secs(1));
    // Every worker (and every restarted one) dies at once, as a task that crashes any worker
    // would make it: the run must end with a reason, not wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    while driver.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("the run still waits after 120 s");
        }
        for pid in children_of(driver.id()) {
            kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = wait_or_kill(&mut driver, Duration::from_secs(1), "the run");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("workers died while running this task")
            || err.contains("no local worker is left"),
        "{err}"
    );
}

#[test]
fn a_memory_limit_too_small_for_a_chunk_ends_the_run_naming_the_limit_and_the_chunk() {
    // One 122 MiB chunk, workers of 100 MiB. Before: each worker exited for a memory restart,
    // nobody restarted them, and the driver waited forever.
    let mut driver = spawn_array(&[
        "random((4000, 4000), chunks=(4000, 4000)).sum()",
        "--local",
        "2",
        "--memory-limit",
        "100MiB",
        "--quiet",
    ]);
    let o = wait_or_kill(&mut driver, Duration::from_secs(180), "the starved run");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "memory limit of 100.0 MiB",
        "122.1 MiB",
        "[4000, 4000] float64",
    ] {
        assert!(err.contains(want), "wanted '{want}' in: {err}");
    }
}

/// A named cluster on the `local` system under a private `RDASK_HOME`, taken down when
/// dropped.
struct NamedCluster {
    home: tempfile::TempDir,
    name: &'static str,
}

impl NamedCluster {
    fn up(name: &'static str) -> NamedCluster {
        // Under /tmp: a Unix socket's path must stay short.
        let home = tempfile::Builder::new()
            .prefix("rdask-home-")
            .tempdir_in("/tmp")
            .unwrap();
        let c = NamedCluster { home, name };
        let o = c.cmd(&[
            "up",
            "--system",
            "local",
            "--name",
            name,
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
        ]);
        assert!(o.status.success(), "up: {}", stderr(&o));
        c
    }

    fn command(&self) -> std::process::Command {
        let mut c = bin();
        c.env("RDASK_HOME", self.home.path())
            .current_dir(self.home.path());
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }
}

impl Drop for NamedCluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--force", "--name", self.name]);
    }
}

#[test]
fn a_named_cluster_without_workers_is_refused_at_once_and_rdask_cluster_is_honoured() {
    let c = NamedCluster::up("arraycli");
    let expr = "arange(4).sum()";
    let want = "cluster arraycli has no workers and a target of 0: run \
                `rdask-jobqueue scale N --name arraycli`";
    // Before: waited forever for workers.
    let started = Instant::now();
    let mut driver = c
        .command()
        .args(["array", expr, "--cluster", "arraycli", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_or_kill(&mut driver, Duration::from_secs(30), "array --cluster");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(want), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Before: RDASK_CLUSTER was ignored and the run went to a local cluster of its own.
    let o = run(c
        .command()
        .env("RDASK_CLUSTER", "arraycli")
        .args(["array", expr, "--quiet"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(want), "{}", stderr(&o));
    // A flag that chooses another place wins over the variable.
    let o = run(c
        .command()
        .env("RDASK_CLUSTER", "arraycli")
        .args(["array", expr, "--quiet", "--local", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "6");
    // With a worker, the variable's cluster computes it.
    let o = c.cmd(&[
        "scale",
        "1",
        "--name",
        "arraycli",
        "--wait",
        "--wait-timeout",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(c
        .command()
        .env("RDASK_CLUSTER", "arraycli")
        .args(["array", expr, "--quiet"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "6");
}

/// The give-up path on its own: workers that die each time they are started are restarted
/// 5 times within the minute, then `lost` reports that none is left (the driver ends the run
/// with it) instead of leaving a client waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_gives_up_on_workers_that_keep_dying_and_says_so() {
    let cluster = rdask::LocalCluster::start(rdask::LocalClusterOptions {
        workers: 2,
        worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
        death_timeout: Duration::from_secs(5),
        ..rdask::LocalClusterOptions::default()
    })
    .await
    .unwrap();
    let killer = async {
        loop {
            for pid in cluster.worker_pids() {
                kill(pid as i32, libc::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let why = tokio::select! {
        why = cluster.lost() => why,
        _ = killer => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("lost() never resolved"),
    };
    assert!(
        why.contains("no local worker is left")
            && why.contains("worker 0 was killed by signal 9 after 5 restarts within 60 s")
            && why.contains("worker 1 was killed by signal 9 after 5 restarts"),
        "{why}"
    );
    cluster.close().await;
}
