//! Job scripts are final in form: a worker job submitted through each batch system starts a
//! worker that joins a real scheduler, reports its batch job id, computes, and leaves when
//! the batch system cancels the job.

mod common;
use common::*;

use std::time::Duration;

use rdask::graph::TaskSpec;
use rdask::Client;

fn deploy(system: &str, standin: Option<&str>, queue: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let s = spawn_scheduler(dir.path());
    s.secret.save(&secret_file).unwrap();
    let mut cmd = bin();
    cmd.current_dir(dir.path())
        .env("RDASK_STANDIN_STATE", dir.path().join("standin"))
        .args([
            "jobs",
            "submit",
            "--system",
            system,
            "--scheduler",
            &s.address,
        ])
        .arg("--secret-file")
        .arg(&secret_file)
        .args([
            "--cores",
            "2",
            "--processes",
            "2",
            "--memory",
            "1GiB",
            "--death-timeout",
            "10",
        ])
        .arg("--log-directory")
        .arg(dir.path())
        .arg("--script-dir")
        .arg(dir.path().join("scripts"));
    if let Some(q) = queue {
        cmd.args(["--queue", q]);
    }
    if let Some(d) = standin {
        let path = format!(
            "{}:{}",
            repo().join("tests/standins").join(d).display(),
            std::env::var("PATH").unwrap()
        );
        cmd.env("PATH", path);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{system}: submit: {}", stderr(&out));
    let job_id = stdout(&out).trim().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&s.address, &s.secret).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        // Two worker processes (--processes 2), each reporting the job it runs in.
        loop {
            let status = client.status().await.unwrap();
            let ours = status
                .workers
                .iter()
                .filter(|w| w.job_id.as_deref() == Some(job_id.as_str()))
                .count();
            if ours == 2 {
                assert!(
                    status
                        .workers
                        .iter()
                        .all(|w| w.nthreads == 1 && w.memory_limit == 512 << 20),
                    "{:?}",
                    status.workers
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{system}: job {job_id}'s workers never joined: {:?}",
                status.workers
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a = client.new_key();
        let b = client.new_key();
        let c = client.new_key();
        let tasks = vec![
            TaskSpec::new(a, "sum-u64", 20u64.to_le_bytes().to_vec(), vec![]),
            TaskSpec::new(b, "sum-u64", 22u64.to_le_bytes().to_vec(), vec![]),
            TaskSpec::new(c, "sum-u64", vec![], vec![a, b]),
        ];
        let out = client.compute(tasks, &[c]).await.unwrap();
        assert_eq!(
            u64::from_le_bytes(out[0][..8].try_into().unwrap()),
            42,
            "{system}"
        );
    });

    // Cancelling the job ends its workers.
    let mut cancel = bin();
    cancel
        .current_dir(dir.path())
        .env("RDASK_STANDIN_STATE", dir.path().join("standin"))
        .args(["jobs", "cancel", "--system", system, &job_id]);
    if let Some(d) = standin {
        let path = format!(
            "{}:{}",
            repo().join("tests/standins").join(d).display(),
            std::env::var("PATH").unwrap()
        );
        cancel.env("PATH", path);
    }
    let out = run(&mut cancel);
    assert!(out.status.success(), "{system}: cancel: {}", stderr(&out));
    rt.block_on(async {
        let client = Client::connect(&s.address, &s.secret).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !client.status().await.unwrap().workers.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{system}: workers outlived their cancelled job"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_local_job_runs_workers_that_join_and_leave() {
    deploy("local", None, None);
}

#[test]
fn a_slurm_job_runs_workers_that_join_and_leave() {
    if real_system_enabled("slurm") {
        deploy("slurm", None, Some("debug"));
    }
}

#[test]
fn an_sge_job_runs_workers_that_join_and_leave() {
    if real_system_enabled("sge") {
        deploy("sge", None, Some("all.q"));
    }
}

#[test]
fn a_pbs_job_runs_workers_that_join_and_leave() {
    deploy("pbs", Some("pbs"), Some("workq"));
}
