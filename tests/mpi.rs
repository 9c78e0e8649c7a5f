//! The MPI-style runner under a real OpenMPI `mpirun` and a real SLURM `srun`: an HDF5 block
//! algorithm checked against NumPy, and the ending rules (driver failure, a killed worker, a
//! killed rank 0) — every rank ends, with the right status, within its deadline.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{real_system_enabled, stderr, stdout, wait_for};

fn rdask() -> &'static str {
    env!("CARGO_BIN_EXE_rdask-jobqueue")
}

fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// A 600 x 500 float64 dataset (chunks 128 x 128, ragged edges) written by h5py.
fn make_input(dir: &Path) -> String {
    let file = dir.join("in.h5");
    let out = Command::new(python())
        .args([
            "-c",
            "import h5py, numpy as np, sys\n\
             x = np.random.default_rng(5).normal(size=(600, 500))\n\
             h5py.File(sys.argv[1], 'w').create_dataset('x', data=x, chunks=(128, 128))",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    file.display().to_string()
}

/// NumPy's value of `expr` (over x) against the dataset stored at `out:/r`.
fn check_stored(input: &str, output: &str, expr: &str) {
    let out = Command::new(python())
        .args([
            "-c",
            "import h5py, numpy as np, sys\n\
             x = h5py.File(sys.argv[1])['x'][()]\n\
             got = h5py.File(sys.argv[2])['r'][()]\n\
             want = eval(sys.argv[3])\n\
             assert got.shape == want.shape, (got.shape, want.shape)\n\
             assert np.allclose(got, want, rtol=1e-10, atol=1e-10), np.max(np.abs(got - want))\n\
             print('matches numpy')",
            input,
            output,
            expr,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

fn mpirun(np: usize, dir: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .current_dir(dir)
        .arg(rdask())
        .arg("mpi");
    c
}

#[test]
fn mpirun_computes_a_block_algorithm_that_matches_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let input = make_input(dir.path());
    let output = dir.path().join("out.h5").display().to_string();
    let expr = "(x + 1).T.dot(x) - x.mean(axis=0)";
    let started = Instant::now();
    let o = mpirun(4, dir.path())
        .args(["array", expr, "--input", &format!("x={input}:/x")])
        .args([
            "--chunks",
            "128,128",
            "--output",
            &format!("{output}:/r"),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // With the `mpi` feature the ranks come from the MPI library, else from OpenMPI's variables.
    let source = if cfg!(feature = "mpi") {
        "4 ranks from MPI"
    } else {
        "4 ranks from OpenMPI"
    };
    assert!(stderr(&o).contains(source), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    check_stored(&input, &output, expr);
}

#[test]
fn too_few_ranks_or_singletons_are_refused_on_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let o = mpirun(2, dir.path())
        .args(["array", "ones((3,)).sum()"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o).matches("needs at least 3 ranks").count(),
        2,
        "{}",
        stderr(&o)
    );
    // What a rank started by the wrong launcher sees: no launcher variables, a world of 1.
    let alone = Command::new(rdask())
        .args(["mpi", "array", "ones((3,)).sum()"])
        .env_remove("OMPI_COMM_WORLD_RANK")
        .env_remove("SLURM_PROCID")
        .env_remove("PMI_RANK")
        .env_remove("PMIX_RANK")
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(2));
    assert!(stderr(&alone).contains("world of 1"), "{}", stderr(&alone));
}

#[test]
fn a_failing_driver_ends_every_rank_quickly_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // Fails on the workers (an integer to a negative power), after the cluster is up.
    let o = mpirun(4, dir.path())
        .args(["array", "arange(100, chunks=(10,)) ** -1", "--quiet"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("negative integer powers"),
        "{}",
        stderr(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// Every rank, not only the driver, ends with the driver's status. A shell around each rank
/// reports it (and keeps mpirun from aborting the others on the first non-zero exit).
#[test]
fn every_rank_exits_with_the_drivers_status() {
    let dir = tempfile::tempdir().unwrap();
    let rank = format!(
        "{} mpi run -- sh -c 'sleep 0.5; exit 3' 2>/dev/null; echo \"rank $OMPI_COMM_WORLD_RANK exit $?\"",
        rdask()
    );
    let o = Command::new("mpirun")
        .args(["--oversubscribe", "-np", "4", "sh", "-c", &rank])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let mut lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "rank 0 exit 3",
            "rank 1 exit 3",
            "rank 2 exit 3",
            "rank 3 exit 3"
        ],
        "{}",
        stderr(&o)
    );
}

/// The pids of this launch's worker processes (children of worker ranks), by name.
fn worker_processes(dir: &Path) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("{} worker --scheduler-file", rdask())])
        .output()
        .unwrap();
    let mut pids: Vec<u32> = stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // Only this test's: their working directory is ours.
    pids.retain(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == dir));
    pids
}

/// A launch whose driver runs for a minute (a program that never finishes on its own).
fn spawn_slow_run(dir: &Path, death_timeout: &str) -> Child {
    mpirun(4, dir)
        .args(["--death-timeout", death_timeout, "run", "--", "sleep", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid of the rank with this OMPI_COMM_WORLD_RANK among the processes matching `pattern`.
fn rank_pid(pattern: &str, rank: usize) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes())
            })
        })
}

#[test]
fn a_killed_worker_is_survived_and_the_result_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let input = make_input(&dir);
    let output = dir.join("out.h5").display().to_string();
    // Enough chunks that the run is still going when a worker dies.
    let mut child = mpirun(4, &dir)
        .args([
            "array",
            "(x * 2 - x.T.T).sum(axis=0)",
            "--input",
            &format!("x={input}:/x"),
        ])
        .args([
            "--chunks",
            "4,4",
            "--output",
            &format!("{output}:/r"),
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let workers = wait_for("two worker processes", Duration::from_secs(20), || {
        let w = worker_processes(&dir);
        (w.len() == 2).then_some(w)
    });
    let _ = Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the worker was killed: make it longer"
    );
    let o = child_output(&mut child, Duration::from_secs(60));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    check_stored(&input, &output, "(x * 2 - x.T.T).sum(axis=0)");
}

fn child_output(child: &mut Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mpirun still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    std::process::Output {
        status: child.wait().unwrap(),
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
    }
}

#[test]
fn when_rank_0_dies_the_others_exit_after_the_death_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let mut child = spawn_slow_run(&dir, "3");
    let pattern = format!("{} mpi --death-timeout 3 run", rdask());
    let rank0 = wait_for("rank 0 and two workers", Duration::from_secs(20), || {
        let workers = worker_processes(&dir).len();
        rank_pid(&pattern, 0).filter(|_| workers == 2)
    });
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-9", &rank0.to_string()])
        .status();
    let o = child_output(&mut child, Duration::from_secs(3 + 15));
    assert_ne!(o.status.code(), Some(0));
    assert!(
        killed.elapsed() < Duration::from_secs(3 + 10),
        "took {:?}",
        killed.elapsed()
    );
}

#[test]
fn srun_in_a_slurm_batch_job_runs_the_launcher() {
    if real_system_enabled("slurm") {
        srun_launcher(rdask());
    }
}

/// The binary built without the `mpi` feature finds its ranks in srun's environment.
#[test]
fn without_the_mpi_feature_srun_ranks_come_from_the_environment() {
    if !real_system_enabled("slurm") {
        return;
    }
    // tests/run.sh builds it; a plain `cargo test` without --all-features is one already.
    let bin = match std::env::var("RDASK_TEST_NO_MPI_BIN") {
        Ok(b) => b,
        Err(_) if !cfg!(feature = "mpi") => rdask().to_string(),
        Err(_) => {
            eprintln!("NOT RUN: set RDASK_TEST_NO_MPI_BIN to a binary built without --features mpi (tests/run.sh does)");
            return;
        }
    };
    let log = srun_launcher(&bin);
    assert!(!log.contains("from MPI"), "{log}");
}

/// Runs launchers/slurm.sbatch with `bin` as the runner; returns the job's output.
fn srun_launcher(bin: &str) -> String {
    // The batch job runs on this node; the files are in a directory slurmd can write.
    let dir = tempfile::Builder::new()
        .prefix("rdask-mpi-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let input = make_input(&dir);
    let output = dir.join("out.h5").display().to_string();
    let expr = "x.T.dot(x).sum(axis=1) / x.std()";
    let launcher = common::repo().join("launchers/slurm.sbatch");
    let env = format!("ALL,RDASK={bin},EXPR={expr},INPUT=x={input}:/x,OUTPUT={output}:/r,MEM=0");
    let o = Command::new("sbatch")
        .args([
            "--parsable",
            "--wait",
            "--partition=debug",
            "--ntasks=4",
            "--cpus-per-task=1",
        ])
        .args(["--mem-per-cpu=500M", "--time=00:05:00"])
        .arg(format!("--export={env}"))
        .arg(format!("--output={}/job.out", dir.display()))
        .arg(format!("--chdir={}", dir.display()))
        .arg(&launcher)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("job.out")).unwrap_or_default();
    assert!(
        o.status.success(),
        "sbatch: {}{}\njob output:\n{log}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        log.contains("4 ranks from SLURM (srun)") || log.contains("4 ranks from PMI"),
        "{log}"
    );
    check_stored(&input, &output, expr);
    log
}

/// `job-script --mpi` prints a script that SLURM runs as it is.
#[test]
fn a_generated_mpi_job_script_runs_on_slurm() {
    if !real_system_enabled("slurm") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rdask-mpi-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let input = make_input(&dir);
    let output = dir.join("out.h5").display().to_string();
    let expr = "x[::3].sum(axis=0) * 2";
    let o = Command::new(rdask())
        .args([
            "job-script",
            "--system",
            "slurm",
            "--queue",
            "debug",
            "--cores",
            "1",
        ])
        .args([
            "--memory",
            "500MiB",
            "--walltime",
            "00:05:00",
            "--mpi",
            "--ranks",
            "4",
            "--",
        ])
        .args(["array", expr, "--input", &format!("x={input}:/x")])
        .args(["--output", &format!("{output}:/r"), "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let script = dir.join("mpi.sbatch");
    std::fs::write(&script, stdout(&o)).unwrap();
    let s = Command::new("sbatch")
        .args(["--parsable", "--wait"])
        .arg(format!("--output={}/job.out", dir.display()))
        .arg(format!("--chdir={}", dir.display()))
        .arg(&script)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("job.out")).unwrap_or_default();
    assert!(
        s.status.success(),
        "{}{}\nscript:\n{}\njob output:\n{log}",
        stdout(&s),
        stderr(&s),
        stdout(&o)
    );
    check_stored(&input, &output, expr);
}

/// `mpi submit`: a task array over the worker ranks of one launch; the driver (rank 1) waits
/// for it, and the whole launch ends when its tasks do, with their status.
#[test]
fn mpi_submit_runs_a_task_array_over_the_ranks_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = mpirun(4, dir.path())
        .env("RDASK_HOME", dir.path())
        .args([
            "submit",
            "--array",
            "1-40",
            "--stdout",
            "o/{task}",
            "--",
            "sh",
            "-c",
            "echo {task} $RDASK_TASK_ID",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("40 task(s): 40 succeeded"),
        "{}",
        stdout(&o)
    );
    for t in 1..=40 {
        let text = std::fs::read_to_string(dir.path().join(format!("o/{t}"))).unwrap();
        assert_eq!(text.trim(), format!("{t} {t}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the launch outlived its tasks: {:?}",
        started.elapsed()
    );
    // A failing task: every rank exits non-zero.
    let o = mpirun(4, dir.path())
        .env("RDASK_HOME", dir.path())
        .args([
            "submit",
            "--array",
            "1-3",
            "--",
            "sh",
            "-c",
            "exit $(( {task} == 2 ))",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 did not"), "{}", stdout(&o));
}
