//! Named clusters end to end, on a real SLURM and a real Grid Engine (and on `local`, which
//! needs no batch system): `up`, `scale`, a computation, a scale-down that keeps every result,
//! `adapt` out and back to zero, a worker job cancelled from outside mid-computation, `down`
//! leaving no job behind, `down --force` after the daemon was killed, and bad input.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdask::graph::{TaskId, TaskSpec};
use rdask::protocol::Secret;
use rdask::Client;
use serde_json::Value;

/// One system as the tests drive it.
struct System {
    name: &'static str,
    /// Flags every `up` of this system gets.
    up_flags: &'static [&'static str],
    /// The directory under tests/standins/ whose commands stand in for the real ones.
    standin: Option<&'static str>,
    /// What joins an array's id and an element's index (`123_4`, `123.4`), where a scale-up
    /// of several jobs is one array.
    array_separator: Option<char>,
    /// Environment every command (and so the daemon) gets.
    env: &'static [(&'static str, &'static str)],
}

/// SLURM through its commands, even in a build with `slurm-native` (whose default, auto,
/// would take the library).
const SLURM: System = System {
    name: "slurm",
    up_flags: &["--queue", "debug"],
    standin: None,
    array_separator: Some('_'),
    env: &[("RDASK_SLURM_NATIVE", "false")],
};
/// SLURM through libslurm (a build with `slurm-native`).
#[cfg(feature = "slurm-native")]
const SLURM_NATIVE: System = System {
    name: "slurm",
    up_flags: &["--queue", "debug"],
    standin: None,
    array_separator: Some('_'),
    env: &[("RDASK_SLURM_NATIVE", "true")],
};
const SGE: System = System {
    name: "sge",
    up_flags: &["--queue", "all.q"],
    standin: None,
    array_separator: Some('.'),
    env: &[],
};
const LOCAL: System = System {
    name: "local",
    up_flags: &[],
    standin: None,
    array_separator: None,
    env: &[],
};
/// Not PBS: the stand-in commands of tests/standins/pbs (see its README).
const PBS_STANDIN: System = System {
    name: "pbs",
    up_flags: &["--queue", "workq"],
    standin: Some("pbs"),
    array_separator: Some('['),
    env: &[],
};

/// A cluster under a private `RDASK_HOME`; dropped, it is taken down by force so a failing
/// test leaves no job in the queue.
struct Cluster {
    home: tempfile::TempDir,
    name: String,
    system: &'static System,
    /// Extra environment for every command (and so for the daemon `up` starts).
    env: Vec<(String, String)>,
}

/// A ledger read as `down --force` reads it (the file is a log of JSON lines), as JSON:
/// `closed` and every job record; empty when there is no file yet.
fn read_ledger(path: &std::path::Path, cluster: &str) -> Value {
    let l = rdask::jobqueue::ledger::Ledger::open(path, cluster).unwrap();
    serde_json::json!({"jobs": l.jobs(), "closed": l.is_closed()})
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--force"]);
    }
}

impl Cluster {
    fn new(system: &'static System, name: &str) -> Cluster {
        // Under /tmp: the batch jobs (run by slurmd and sge_execd on this host) read the
        // secret from here, and a Unix socket path must stay short.
        let home = tempfile::Builder::new()
            .prefix("rdask-home-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut env: Vec<(String, String)> = system
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(dir) = system.standin {
            let path = format!(
                "{}:{}",
                repo().join("tests/standins").join(dir).display(),
                std::env::var("PATH").unwrap()
            );
            env.push(("PATH".to_string(), path));
            let state = home.path().join("standin").display().to_string();
            env.push(("RDASK_STANDIN_STATE".to_string(), state));
        }
        Cluster {
            home,
            name: name.to_string(),
            system,
            env,
        }
    }

    fn command(&self) -> Command {
        let mut c = bin();
        c.env("RDASK_HOME", self.home.path())
            .env("RDASK_CLUSTER", &self.name)
            .current_dir(self.home.path());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "{}: `{}` failed ({:?}): {}{}\ndaemon log:\n{}",
            self.system.name,
            args.join(" "),
            o.status.code(),
            stdout(&o),
            stderr(&o),
            self.daemon_log()
        );
        stdout(&o)
    }

    fn up(&self, extra: &[&str]) -> String {
        let args = self.up_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&args)
    }

    /// The arguments of `up` with this test's defaults and the system's flags.
    fn up_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "up",
            "--system",
            self.system.name,
            "--cores",
            "1",
            "--memory",
            "500MiB",
        ];
        if !extra.contains(&"--walltime") {
            args.extend(["--walltime", "00:10:00"]);
        }
        args.extend([
            "--interval",
            "0.5",
            "--poll-interval",
            "1",
            "--death-timeout",
            "20",
        ]);
        args.extend(self.system.up_flags);
        args.extend(extra);
        args.into_iter().map(str::to_string).collect()
    }

    fn dir(&self) -> PathBuf {
        self.home.path().join("clusters").join(&self.name)
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("logs/daemon.log")).unwrap_or_default()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// The ledger as the daemon wrote it (empty before the first job).
    fn ledger(&self) -> Value {
        read_ledger(&self.dir().join("ledger.json"), &self.name)
    }

    fn record(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("cluster.json")).unwrap())
            .unwrap()
    }

    /// A library client, connected as `rdask::cluster::connect_named` does (from the cluster's files).
    async fn client(&self) -> Client {
        let address = self.record()["address"].as_str().unwrap().to_string();
        let secret = Secret::load(&self.dir().join("secret")).unwrap();
        Client::connect(&address, &secret).await.unwrap()
    }

    /// The ids among `ids` the batch system still shows alive.
    fn alive(&self, ids: &BTreeSet<String>) -> Vec<String> {
        if self.system.standin.is_none() {
            return alive_in_queue(self.system.name, ids);
        }
        if ids.is_empty() {
            return Vec::new();
        }
        // The stand-ins' outputs are read with our own parser (tests/standins/selftest.sh
        // checks those outputs against the real tools' documented ones).
        let mut args = vec!["jobs", "status", "--json", "--system", self.system.name];
        args.extend(ids.iter().map(String::as_str));
        let states: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        ids.iter()
            .filter(|id| {
                matches!(
                    states[id.as_str()].as_str(),
                    Some("pending") | Some("running")
                )
            })
            .cloned()
            .collect()
    }

    /// Cancels a job as its owner would, behind the cluster's back.
    fn cancel_outside(&self, id: &str) {
        if self.system.standin.is_none() {
            return cancel_outside(self.system.name, id);
        }
        let o = run(Command::new("qdel")
            .arg(id)
            .envs(self.env.iter().map(|(k, v)| (k, v))));
        assert!(o.status.success(), "qdel {id}: {}", stderr(&o));
    }

    /// Every job id the ledger ever recorded.
    fn ledger_ids(&self) -> BTreeSet<String> {
        self.ledger()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["job_id"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until the status shows `n` connected workers, each mapped to a distinct running
    /// job of the ledger; returns their job ids.
    fn wait_for_workers(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_for(
            &format!("{n} workers, each in its own running job"),
            timeout,
            || {
                let s = self.status();
                let workers = s["workers"].as_array().unwrap();
                let running: BTreeSet<&str> = s["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|j| j["state"] == "running")
                    .filter_map(|j| j["job_id"].as_str())
                    .collect();
                let ids: Vec<String> = workers
                    .iter()
                    .filter_map(|w| w["job_id"].as_str().map(str::to_string))
                    .collect();
                let distinct: BTreeSet<&String> = ids.iter().collect();
                (workers.len() == n
                    && ids.len() == n
                    && distinct.len() == n
                    && ids.iter().all(|id| running.contains(id.as_str())))
                .then_some(ids)
            },
        )
    }
}

/// The ids among `ids` that the batch system still shows alive (pending, running, ending).
/// Array elements one per line (`squeue -r`, `qstat -g d`), as `123_4` and `123.4`.
fn alive_in_queue(system: &str, ids: &BTreeSet<String>) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    let out = match system {
        "slurm" => Command::new("squeue")
            .args(["--noheader", "--array", "--states=all", "--format=%i %T"])
            .output()
            .unwrap(),
        "sge" => Command::new("qstat").args(["-g", "d"]).output().unwrap(),
        _ => return local_alive(ids),
    };
    let text = stdout(&out);
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let id = match system {
                "slurm" => {
                    let state = w.get(1).copied().unwrap_or("");
                    if !matches!(state, "PENDING" | "RUNNING" | "COMPLETING" | "CONFIGURING") {
                        return None;
                    }
                    w.first()?.to_string()
                }
                // qstat lists only jobs that are not finished; a task's number is the last
                // column (after the queue, when it has one, and the slots).
                _ => {
                    let task_column = if w.get(7)?.contains('@') { 9 } else { 8 };
                    match w.get(task_column) {
                        Some(task) => format!("{}.{task}", w[0]),
                        None => w[0].to_string(),
                    }
                }
            };
            ids.contains(&id).then_some(id)
        })
        .collect()
}

/// Whether a process runs (a zombie has ended: this sandbox's PID 1 reaps no orphans).
fn process_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Local jobs are process groups: alive while their leader is.
fn local_alive(ids: &BTreeSet<String>) -> Vec<String> {
    ids.iter().filter(|id| process_alive(id)).cloned().collect()
}

fn cancel_outside(system: &str, id: &str) {
    let group = format!("-{id}");
    let argv: Vec<&str> = match system {
        "slurm" => vec!["scancel", id],
        "sge" => vec!["qdel", id],
        // A local job is a process group; a batch system's cancel sends SIGTERM to it.
        _ => vec!["kill", "-TERM", "--", &group],
    };
    let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(o.status.success(), "{argv:?}: {}", stderr(&o));
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// 40 results of 256 KiB each, spread over the workers, kept by the client.
fn held_results(client: &Client) -> Vec<(TaskId, u8)> {
    let mut tasks = Vec::new();
    let mut keys = Vec::new();
    for i in 0..40u8 {
        let k = client.new_key();
        let mut args = (256u64 << 10).to_le_bytes().to_vec();
        args.push(i);
        tasks.push(TaskSpec::new(k, "bytes", args, vec![]));
        keys.push((k, i));
    }
    let wanted: Vec<TaskId> = keys.iter().map(|(k, _)| *k).collect();
    client.submit(tasks, &wanted).unwrap();
    keys
}

/// The whole life of a cluster on one system.
fn lifecycle(system: &'static System) {
    let c = Cluster::new(system, "life");
    let up = c.up(&[]);
    assert!(up.contains("is up: scheduler at tcp://"), "{up}");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // scale 4: four workers, each mapped to its own job.
    let scaled = c.ok(&["scale", "4", "--wait", "--wait-timeout", "120"]);
    assert!(scaled.contains("4 worker(s) connected"), "{scaled}");
    let first_jobs = c.wait_for_workers(4, Duration::from_secs(30));
    if let Some(sep) = system.array_separator {
        // One submission: the four jobs are the elements of one array, one name for all.
        let arrays: BTreeSet<&str> = first_jobs
            .iter()
            .map(|id| id.split_once(sep).expect("an array element").0)
            .collect();
        assert_eq!(arrays.len(), 1, "{first_jobs:?}");
        let ledger = c.ledger();
        let names: BTreeSet<&str> = ledger["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["name"].as_str())
            .collect();
        assert_eq!(names.len(), 1, "{ledger:#}");
    }

    // A computation whose results stay on the workers.
    let client = rt.block_on(c.client());
    let keys = held_results(&client);
    let wanted: Vec<TaskId> = keys.iter().map(|(k, _)| *k).collect();
    rt.block_on(client.wait(&wanted)).unwrap();
    let holders: BTreeSet<_> = rt
        .block_on(client.who_has(&wanted))
        .unwrap()
        .into_iter()
        .flat_map(|(_, h)| h.into_iter().map(|h| h.worker))
        .collect();
    assert!(
        holders.len() > 1,
        "the results should be spread: {holders:?}"
    );

    // scale 1: three jobs go (their workers retired first), every result stays.
    c.ok(&["scale", "1"]);
    c.wait_for_workers(1, Duration::from_secs(60));
    let ledger = c.ledger();
    let scaled_down = ledger["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["end_reason"] == "scaled_down")
        .count();
    assert_eq!(scaled_down, 3, "{ledger:#}");
    let data = rt.block_on(client.gather(&wanted)).unwrap();
    for ((_, fill), bytes) in keys.iter().zip(&data) {
        assert_eq!(bytes.len(), 256 << 10);
        assert!(bytes.iter().all(|b| b == fill), "result {fill} corrupted");
    }
    client.release(&wanted).unwrap();
    wait_for(
        "no job of the three left in the queue",
        Duration::from_secs(60),
        || {
            let gone: BTreeSet<String> = first_jobs.iter().cloned().collect();
            (c.alive(&gone).len() == 1).then_some(())
        },
    );

    // adapt 0:4 with queued work: out to 4 workers, then back to 0 when idle.
    c.ok(&["adapt", "--minimum", "0", "--maximum", "4"]);
    let sleeps: Vec<TaskSpec> = (0..24)
        .map(|_| {
            TaskSpec::new(
                client.new_key(),
                "sleep",
                1_000_000u64.to_le_bytes().to_vec(),
                vec![],
            )
        })
        .collect();
    let sleep_keys: Vec<TaskId> = sleeps.iter().map(|t| t.id).collect();
    client.submit(sleeps, &sleep_keys).unwrap();
    let peak = wait_for(
        "adapt to scale out to 4 workers",
        Duration::from_secs(120),
        || {
            let n = c.status()["workers"].as_array().unwrap().len();
            (n == 4).then_some(n)
        },
    );
    assert_eq!(peak, 4);
    rt.block_on(client.wait(&sleep_keys)).unwrap();
    client.release(&sleep_keys).unwrap();
    wait_for(
        "adapt to scale back to 0 when idle",
        Duration::from_secs(60),
        || {
            let s = c.status();
            (s["workers"].as_array().unwrap().is_empty()
                && s["jobs"].as_array().unwrap().is_empty())
            .then_some(())
        },
    );

    // A worker job cancelled from outside mid-computation: right result, job replaced.
    c.ok(&["scale", "2", "--wait", "--wait-timeout", "120"]);
    let before = c.wait_for_workers(2, Duration::from_secs(30));
    let mut tasks = Vec::new();
    let mut leaves = Vec::new();
    for i in 0..120u64 {
        let k = client.new_key();
        let mut args = i.to_le_bytes().to_vec();
        args.extend(100_000u64.to_le_bytes()); // 0.1 s of work each
        tasks.push(TaskSpec::new(k, "sum-u64", args, vec![]));
        leaves.push(k);
    }
    let root = client.new_key();
    tasks.push(TaskSpec::new(root, "sum-u64", vec![], leaves.clone()));
    let mut progress = client.progress();
    client.submit(tasks, &[root]).unwrap();
    rt.block_on(async {
        while *progress.borrow() < 20 {
            progress.changed().await.unwrap();
        }
    });
    c.cancel_outside(&before[0]);
    let out = rt.block_on(client.gather(&[root])).unwrap();
    assert_eq!(u64_of(&out[0]), (0..120).sum::<u64>());
    let after = c.wait_for_workers(2, Duration::from_secs(120));
    assert!(
        !after.contains(&before[0]),
        "the cancelled job {} still counts: {after:?}",
        before[0]
    );
    let ledger = c.ledger();
    let cancelled = ledger["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == before[0].as_str())
        .unwrap()
        .clone();
    assert!(
        matches!(
            cancelled["end_reason"].as_str(),
            Some("cancelled_outside") | Some("workers_lost") | Some("vanished") | Some("failed")
        ),
        "{cancelled:#}"
    );
    drop(client);

    // down: nothing of ours left in the queue, the daemon gone, the ledger closed.
    let pid = c.record()["pid"].as_u64().unwrap();
    let down = c.ok(&["down"]);
    assert!(down.contains("ledger closed"), "{down}");
    let ours = c.ledger_ids();
    assert!(ours.len() >= 8, "{ours:?}");
    assert_eq!(c.alive(&ours), Vec::<String>::new());
    assert!(!process_alive(&pid.to_string()), "the daemon still runs");
    assert_eq!(c.ledger()["closed"], true);
    assert!(c.record()["closed_at"].is_number());
}

/// `kill -9` of the daemon, then `down --force` cancels its jobs from the ledger.
fn forced_down(system: &'static System) {
    let c = Cluster::new(system, "crashed");
    c.up(&["--scale", "2", "--wait", "--wait-timeout", "120"]);
    c.wait_for_workers(2, Duration::from_secs(30));
    let pid = c.record()["pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("the daemon to die", Duration::from_secs(10), || {
        (!process_alive(&pid)).then_some(())
    });
    let ours = c.ledger_ids();
    assert_eq!(ours.len(), 2);
    // Without --force, down refuses and says what to do.
    let o = c.cmd(&["down"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let forced = c.ok(&["down", "--force"]);
    assert!(forced.contains("2 job(s) cancelled"), "{forced}");
    assert_eq!(alive_in_queue(system.name, &ours), Vec::<String>::new());
    assert_eq!(c.ledger()["closed"], true);
}

#[test]
fn a_slurm_cluster_lives_from_up_to_down() {
    if real_system_enabled("slurm") {
        lifecycle(&SLURM);
    }
}

/// The same life with the daemon on libslurm: submit, states, cancel (scale-down, `down`)
/// through the library; `status` and the daemon's log say so.
#[cfg(feature = "slurm-native")]
#[test]
fn a_slurm_cluster_lives_from_up_to_down_through_libslurm() {
    if real_system_enabled("slurm") {
        lifecycle(&SLURM_NATIVE);
    }
}

/// The path in use is the daemon's to say, in `status` and its log.
#[cfg(feature = "slurm-native")]
#[test]
fn status_says_which_path_the_daemon_takes_to_slurm() {
    if !real_system_enabled("slurm") {
        return;
    }
    for (system, path) in [
        (&SLURM_NATIVE, "via libslurm API "),
        (&SLURM, "via commands"),
    ] {
        let c = Cluster::new(system, "path");
        c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
        let status = c.ok(&["status"]);
        assert!(status.contains(path), "{status}");
        assert!(c.status()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["state"] == "running"));
        c.ok(&["down"]);
        assert_eq!(
            alive_in_queue("slurm", &c.ledger_ids()),
            Vec::<String>::new()
        );
    }
    let c = Cluster::new(&SLURM_NATIVE, "pathlog");
    c.up(&[]);
    assert!(
        c.daemon_log().contains("SLURM through libslurm API"),
        "{}",
        c.daemon_log()
    );
    c.ok(&["down"]);
}

/// The trap of a missing slurm.conf: libslurm would stall about a minute and then exit the
/// daemon. Here the daemon's SLURM_CONF names no file (the commands, through wrappers, still
/// find the real one): the daemon says why it takes the commands, at once, and works.
#[cfg(feature = "slurm-native")]
#[test]
fn without_a_readable_slurm_conf_the_daemon_falls_back_to_the_commands() {
    use std::os::unix::fs::PermissionsExt;
    if !real_system_enabled("slurm") {
        return;
    }
    let mut c = Cluster::new(&SLURM_NATIVE, "noconf");
    let bin_dir = c.home.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    for cmd in ["sbatch", "squeue", "scancel"] {
        let path = bin_dir.join(cmd);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nunset SLURM_CONF\nexec /usr/bin/{cmd} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    c.env.push(("PATH".into(), path));
    let missing = c.home.path().join("no-such-slurm.conf");
    c.env
        .push(("SLURM_CONF".into(), missing.display().to_string()));
    let started = Instant::now();
    c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
    // Far below libslurm's stall (about 60 s) plus a worker's start.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    let log = c.daemon_log();
    assert!(
        log.contains(
            "SLURM through sbatch/squeue/scancel: slurm_native = true, but SLURM's configuration"
        ) && log.contains("no-such-slurm.conf"),
        "{log}"
    );
    assert!(c.ok(&["status"]).contains("via commands"));
    c.ok(&["down"]);
    assert_eq!(
        alive_in_queue("slurm", &c.ledger_ids()),
        Vec::<String>::new()
    );
}

#[test]
fn an_sge_cluster_lives_from_up_to_down() {
    if real_system_enabled("sge") {
        lifecycle(&SGE);
    }
}

#[test]
fn a_local_cluster_lives_from_up_to_down() {
    lifecycle(&LOCAL);
}

/// The same life through the PBS stand-in commands (not a real PBS: none can be installed
/// here), which really run the jobs: the daemon drives a third system through the same code.
#[test]
fn a_cluster_on_the_pbs_standin_lives_from_up_to_down() {
    lifecycle(&PBS_STANDIN);
}

#[test]
fn down_force_after_the_daemon_was_killed_leaves_no_slurm_job() {
    if real_system_enabled("slurm") {
        forced_down(&SLURM);
    }
}

#[cfg(feature = "slurm-native")]
#[test]
fn down_force_after_a_libslurm_daemon_was_killed_leaves_no_slurm_job() {
    if real_system_enabled("slurm") {
        forced_down(&SLURM_NATIVE);
    }
}

#[test]
fn down_force_after_the_daemon_was_killed_leaves_no_sge_job() {
    if real_system_enabled("sge") {
        forced_down(&SGE);
    }
}

/// Bad input: exit 2, a message naming the problem, nothing submitted.
#[test]
fn bad_input_is_refused_and_submits_nothing() {
    let system = if std::env::var("RDASK_TEST_SLURM").as_deref() == Ok("1") {
        &SLURM
    } else {
        &LOCAL
    };
    let c = Cluster::new(system, "strict");
    c.up(&[]);
    let refused = |args: &[&str], says: &str| {
        let o = c.cmd(args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "`{}`: {}{}",
            args.join(" "),
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(says),
            "`{}` should say {says:?}: {}",
            args.join(" "),
            stderr(&o)
        );
    };
    refused(&["scale", "-1"], "0 or more");
    refused(
        &["adapt", "--minimum", "5", "--maximum", "2"],
        "above the maximum",
    );
    refused(&["status", "--name", "nope"], "no cluster named `nope`");
    refused(&["scale", "3", "--name", "nope"], "known: strict");
    refused(&["up", "--system", system.name], "already up");
    refused(
        &["up", "--name", "1bad", "--system", "local"],
        "cluster name `1bad`",
    );
    refused(
        &[
            "up", "--name", "other", "--system", "local", "--scale", "2", "--adapt", "1:2",
        ],
        "cannot be used with",
    );
    // The cluster that was up is untouched and never submitted anything.
    let s = c.status();
    assert_eq!(s["jobs"].as_array().unwrap().len(), 0, "{s:#}");
    assert!(c.ledger_ids().is_empty());
    assert!(!c.home.path().join("clusters/other/cluster.json").exists());
    c.ok(&["down"]);
}

/// `logs`, `list` and `status` in text, for a person.
#[test]
fn status_list_and_logs_read_well() {
    let c = Cluster::new(&LOCAL, "show");
    c.up(&["--scale", "1", "--wait"]);
    let ids = c.wait_for_workers(1, Duration::from_secs(30));
    let status = c.ok(&["status"]);
    for part in [
        "cluster show: scheduler tcp://",
        "jobs (1):",
        "workers (1):",
        "tasks: ",
    ] {
        assert!(status.contains(part), "{part:?} missing:\n{status}");
    }
    assert!(status.contains(&ids[0]), "{status}");
    let list = c.ok(&["list"]);
    assert!(list.contains("show") && list.contains(" up"), "{list}");
    let log = c.ok(&["logs"]);
    assert!(log.contains("submitted rdask-show-0 as job"), "{log}");
    let job_log = c.ok(&["logs", "--job", &ids[0]]);
    assert!(job_log.contains("registered as worker"), "{job_log}");
    c.ok(&["down"]);
    let list = c.ok(&["list", "--json"]);
    let v: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["state"], "down", "{v:#}");
    // A second `down` is harmless.
    assert!(c.ok(&["down"]).contains("already down"));
}

/// Workers retire before their job's walltime: their results move to the others first.
#[test]
fn workers_drain_before_the_walltime_and_are_replaced() {
    let c = Cluster::new(&LOCAL, "short");
    // Walltime 40 s, margin 10 s, stagger 0: each worker retires at 30 s.
    c.up(&[
        "--walltime",
        "00:00:40",
        "--lifetime-margin",
        "10",
        "--lifetime-stagger",
        "0",
    ]);
    // The first job; then a second one, 15 s younger, which outlives the first.
    c.ok(&["scale", "1", "--wait"]);
    let started = Instant::now();
    let first = c.wait_for_workers(1, Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(c.client());
    let keys = held_results(&client);
    let wanted: Vec<TaskId> = keys.iter().map(|(k, _)| *k).collect();
    rt.block_on(client.wait(&wanted)).unwrap();
    while started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    c.ok(&["scale", "2", "--wait"]);
    // The first job's worker retires at ~30 s and its job completes; the target still
    // wants 2 workers, so it is replaced.
    wait_for(
        "the first job to end by itself",
        Duration::from_secs(40),
        || {
            let l = c.ledger();
            let j = l["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["job_id"] == first[0].as_str())
                .cloned()
                .unwrap();
            // Ended by itself: local jobs are simply gone once their processes exit.
            matches!(
                j["end_reason"].as_str(),
                Some("completed") | Some("vanished")
            )
            .then_some(())
        },
    );
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "retired too early"
    );
    let data = rt.block_on(client.gather(&wanted)).unwrap();
    for ((_, fill), bytes) in keys.iter().zip(&data) {
        assert!(bytes.iter().all(|b| b == fill));
    }
    let after = c.wait_for_workers(2, Duration::from_secs(30));
    assert!(!after.contains(&first[0]));
    assert!(c
        .daemon_log()
        .contains("asked to retire (lifetime reached)"));
    drop(client);
    c.ok(&["down"]);
}

/// A job whose workers never connect is cancelled after the startup timeout, shown in
/// `status`, and replaced while the target wants it.
#[test]
fn a_job_whose_workers_never_connect_is_cancelled_and_replaced() {
    let c = Cluster::new(&LOCAL, "mute");
    // The job runs, but what it runs is not a worker.
    c.up(&[
        "--worker-command",
        "sleep 600; true",
        "--startup-timeout",
        "2",
        "--scale",
        "1",
    ]);
    let first = wait_for("a first job", Duration::from_secs(20), || {
        let l = c.ledger();
        l["jobs"][0]["job_id"].as_str().map(str::to_string)
    });
    wait_for(
        "the startup timeout to cancel it and a new job",
        Duration::from_secs(30),
        || {
            let l = c.ledger();
            let jobs = l["jobs"].as_array().unwrap();
            let cancelled = jobs
                .iter()
                .any(|j| j["job_id"] == first.as_str() && j["end_reason"] == "startup_timeout");
            (cancelled && jobs.len() >= 2).then_some(())
        },
    );
    let status = c.ok(&["status"]);
    assert!(status.contains("startup timeout"), "{status}");
    c.ok(&["down"]);
    assert_eq!(local_alive(&c.ledger_ids()), Vec::<String>::new());
}

/// The address workers dial can be set (NAT, proxies): it is what the job scripts carry.
#[test]
fn the_contact_address_is_what_workers_dial() {
    let c = Cluster::new(&LOCAL, "natted");
    c.up(&["--contact-address", "127.0.0.1", "--scale", "1", "--wait"]);
    let address = c.record()["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
    let script = std::fs::read_dir(c.dir().join("jobs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("job.sh"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(script.contains(&format!("worker {address} ")), "{script}");
    c.wait_for_workers(1, Duration::from_secs(30));
    c.ok(&["down"]);
}

/// examples/adaptive-in-batch.sh as a SLURM batch job: `up --adapt` inside the job, array
/// computations that scale it out by submitting more jobs, `down` at the end.
#[test]
fn the_adaptive_batch_example_runs_on_slurm() {
    if !real_system_enabled("slurm") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rdask-adapt-")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let input = d.join("in.h5");
    let made =
        Command::new(std::env::var("RDASK_TEST_PYTHON").unwrap_or("/usr/bin/python3".into()))
            .args([
                "-c",
                "import h5py, numpy as np, sys\n\
             x = np.random.default_rng(3).normal(size=(700, 700))\n\
             h5py.File(sys.argv[1], 'w').create_dataset('x', data=x, chunks=(100, 100))",
            ])
            .arg(&input)
            .output()
            .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let home = d.join("home");
    let env = format!(
        "ALL,RDASK={},RDASK_HOME={},NAME=adaptive,QUEUE=debug,CORES=1,PROCESSES=1,MEMORY=400MiB,WALLTIME=00:10:00,ADAPT=1:3",
        env!("CARGO_BIN_EXE_rdask-jobqueue"),
        home.display()
    );
    let o = Command::new("sbatch")
        .args(["--parsable", "--wait", "--partition=debug", "--mem=500M"])
        .arg(format!("--export={env}"))
        .arg(format!("--output={}/job.out", d.display()))
        .arg(format!("--chdir={}", d.display()))
        .arg(repo().join("examples/adaptive-in-batch.sh"))
        .arg(format!("{}:/x", input.display()))
        .arg(format!("{}/out.h5:/centred", d.display()))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(d.join("job.out")).unwrap_or_default();
    assert!(
        o.status.success(),
        "{}{}\njob output:\n{log}",
        stdout(&o),
        stderr(&o)
    );
    assert!(log.contains("cluster `adaptive` is up"), "{log}");
    assert!(log.contains("ledger closed"), "{log}");
    let check =
        Command::new(std::env::var("RDASK_TEST_PYTHON").unwrap_or("/usr/bin/python3".into()))
            .args([
                "-c",
                "import h5py, numpy as np, sys\n\
             x = h5py.File(sys.argv[1])['x'][()]\n\
             got = h5py.File(sys.argv[2])['centred'][()]\n\
             assert np.allclose(got, (x + x.T) - x.mean(axis=0)), 'differs'\n\
             std = float(sys.argv[3])\n\
             assert abs(std - x.std()) < 1e-9 * abs(x.std()), (std, x.std())",
            ])
            .arg(&input)
            .arg(d.join("out.h5"))
            .arg(
                log.lines()
                    .find(|l| l.trim().parse::<f64>().is_ok())
                    .expect("the printed std")
                    .trim(),
            )
            .output()
            .unwrap();
    assert!(
        check.status.success(),
        "{}{}\n{log}",
        stdout(&check),
        stderr(&check)
    );
    // Every worker job the daemon submitted from inside the job has ended.
    let ledger = read_ledger(&home.join("clusters/adaptive/ledger.json"), "adaptive");
    assert_eq!(ledger["closed"], true);
    let ids: BTreeSet<String> = ledger["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_string))
        .collect();
    assert!(!ids.is_empty());
    assert_eq!(alive_in_queue("slurm", &ids), Vec::<String>::new());
}

/// A submission whose reply is lost — `sbatch` queued the job, then the command timed out —
/// never leaves a job running that the ledger does not know: the daemon cancels it by name,
/// closes its entry once the controller has settled, and submits afresh.
#[test]
fn a_submission_that_times_out_is_cancelled_by_name_and_redone() {
    if !real_system_enabled("slurm") {
        return;
    }
    let mut c = Cluster::new(&SLURM, "slow");
    // An sbatch that queues the first job and then hangs past the command timeout (`up`'s
    // dry run, `--test-only`, passes through).
    let bin_dir = c.home.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let sbatch = bin_dir.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/sh\ncase \"$*\" in *--test-only*) exec /usr/bin/sbatch \"$@\";; esac\nif [ ! -e \"$0.once\" ]; then : > \"$0.once\"; /usr/bin/sbatch \"$@\" >/dev/null; exec sleep 30; fi\nexec /usr/bin/sbatch \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    c.env.push(("PATH".into(), path));
    c.up(&["--command-timeout", "2", "--scale", "1"]);
    let ids = c.wait_for_workers(1, Duration::from_secs(90));
    let ledger = c.ledger();
    let first = &ledger["jobs"][0];
    assert_eq!(first["name"], "rdask-slow-0", "{ledger:#}");
    assert_eq!(first["state"], "not_submitted", "{ledger:#}");
    assert!(
        first["detail"]
            .as_str()
            .unwrap_or("")
            .contains("cancelled by name"),
        "{ledger:#}"
    );
    // The job the lost reply had queued is not running.
    let queue = Command::new("squeue")
        .args(["--noheader", "--name=rdask-slow-0", "--format=%i %T"])
        .output()
        .unwrap();
    assert!(
        !stdout(&queue).contains("RUNNING") && !stdout(&queue).contains("PENDING"),
        "{}",
        stdout(&queue)
    );
    assert!(!ids.is_empty());
    c.ok(&["down"]);
    assert_eq!(
        alive_in_queue("slurm", &c.ledger_ids()),
        Vec::<String>::new()
    );
}

/// `job_arrays = false` keeps the old path: a scale-up of several jobs is one submission per
/// job, each under its own name, with plain ids; `down` leaves none of them.
#[test]
fn without_job_arrays_a_scale_up_goes_job_by_job() {
    if !real_system_enabled("slurm") {
        return;
    }
    let c = Cluster::new(&SLURM, "perjob");
    c.up(&[
        "--job-arrays",
        "false",
        "--scale",
        "3",
        "--wait",
        "--wait-timeout",
        "120",
    ]);
    let ids = c.wait_for_workers(3, Duration::from_secs(30));
    assert!(
        ids.iter().all(|id| id.bytes().all(|b| b.is_ascii_digit())),
        "{ids:?}"
    );
    let ledger = c.ledger();
    let names: BTreeSet<&str> = ledger["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{ledger:#}");
    c.ok(&["down"]);
    assert_eq!(
        alive_in_queue("slurm", &c.ledger_ids()),
        Vec::<String>::new()
    );
}

/// An array whose submit command queued it and then timed out: every element stays
/// `submitting`, the array is cancelled by its one name (once per poll, not per element),
/// its elements are closed as not submitted once the controller has settled, and a fresh
/// array takes their place.
#[test]
fn an_array_whose_submission_times_out_is_cancelled_by_name_and_redone() {
    if !real_system_enabled("slurm") {
        return;
    }
    let mut c = Cluster::new(&SLURM, "slowarr");
    let bin_dir = c.home.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let sbatch = bin_dir.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/sh\ncase \"$*\" in *--test-only*) exec /usr/bin/sbatch \"$@\";; esac\nif [ ! -e \"$0.once\" ]; then : > \"$0.once\"; /usr/bin/sbatch \"$@\" >/dev/null; exec sleep 30; fi\nexec /usr/bin/sbatch \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    c.env.push(("PATH".into(), path));
    c.up(&["--command-timeout", "2", "--scale", "3"]);
    let ids = c.wait_for_workers(3, Duration::from_secs(120));
    let ledger = c.ledger();
    let jobs = ledger["jobs"].as_array().unwrap();
    for first in &jobs[..3] {
        assert_eq!(first["name"], "rdask-slowarr-0", "{ledger:#}");
        assert_eq!(first["state"], "not_submitted", "{ledger:#}");
        assert!(
            first["detail"]
                .as_str()
                .unwrap_or("")
                .contains("cancelled by name"),
            "{ledger:#}"
        );
    }
    // The redone array: one name, three elements, the workers' jobs.
    assert!(
        jobs[3..].iter().all(|j| j["name"] == "rdask-slowarr-3"),
        "{ledger:#}"
    );
    assert!(ids.iter().all(|id| id.contains('_')), "{ids:?}");
    let queue = Command::new("squeue")
        .args([
            "--noheader",
            "--array",
            "--name=rdask-slowarr-0",
            "--format=%i %T",
        ])
        .output()
        .unwrap();
    assert!(
        !stdout(&queue).contains("RUNNING") && !stdout(&queue).contains("PENDING"),
        "{}",
        stdout(&queue)
    );
    c.ok(&["down"]);
    assert_eq!(
        alive_in_queue("slurm", &c.ledger_ids()),
        Vec::<String>::new()
    );
}

/// Batch commands run off the daemon's loop: while `sbatch` hangs (here up to its 20 s
/// timeout), `status` still answers (the bound is generous: a liveness check, not a speed
/// claim), and `down` afterwards waits for the submission, cancels by name whatever it may
/// have queued and leaves nothing in the queue.
#[test]
fn status_answers_while_sbatch_hangs() {
    if !real_system_enabled("slurm") {
        return;
    }
    let mut c = Cluster::new(&SLURM, "hang");
    // An sbatch that says it started, then hangs without submitting (`up`'s dry run,
    // `--test-only`, passes through).
    let bin_dir = c.home.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let sbatch = bin_dir.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/sh\ncase \"$*\" in *--test-only*) exec /usr/bin/sbatch \"$@\";; esac\n: > \"$0.started\"\nexec sleep 120\n",
    )
    .unwrap();
    // And a slow scancel: `down` cancels by name what the hanging sbatch may have queued.
    let scancel = bin_dir.join("scancel");
    std::fs::write(
        &scancel,
        "#!/bin/sh\n: > \"$0.started\"\nsleep 15\nexec /usr/bin/scancel \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for fake in [&sbatch, &scancel] {
        std::fs::set_permissions(fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    c.env.push(("PATH".into(), path));
    c.up(&["--command-timeout", "20", "--scale", "1"]);
    let started = bin_dir.join("sbatch.started");
    let waiting = Instant::now();
    while !started.exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "sbatch never ran\n{}",
            c.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        let asked = Instant::now();
        let status = c.status();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "`status` took {:?} while sbatch hung\n{}",
            asked.elapsed(),
            c.daemon_log()
        );
        // Answered while the submission is still out: no outcome recorded yet.
        let job = &status["jobs"][0];
        assert_eq!(job["name"], "rdask-hang-0", "{status:#}");
        assert_eq!(job["state"], "submitting", "{status:#}");
        let errors = status["errors"].to_string();
        assert!(!errors.contains("rdask-hang-0"), "{status:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // `down` waits for the hanging submission (it may queue a job); `status` still answers.
    let down = c
        .command()
        .arg("down")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    let status = c.status();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "`status` took {:?} while `down` waited for sbatch\n{}",
        asked.elapsed(),
        c.daemon_log()
    );
    assert_eq!(status["jobs"][0]["state"], "submitting", "{status:#}");
    // Then `down` cancels by name (scancel hangs a while): `status` still answers.
    let cancelling = bin_dir.join("scancel.started");
    let waiting = Instant::now();
    while !cancelling.exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "down never cancelled by name\n{}",
            c.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    c.status();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "`status` took {:?} while `down` cancelled\n{}",
        asked.elapsed(),
        c.daemon_log()
    );
    let o = down.wait_with_output().unwrap();
    assert!(o.status.success(), "{}{}", stderr(&o), c.daemon_log());
    let ledger = c.ledger();
    assert_eq!(ledger["closed"], true, "{ledger:#}");
    assert_eq!(ledger["jobs"][0]["state"], "not_submitted", "{ledger:#}");
    let queue = Command::new("squeue")
        .args(["--noheader", "--name=rdask-hang-0", "--format=%i %T"])
        .output()
        .unwrap();
    assert_eq!(stdout(&queue).trim(), "", "{}", c.daemon_log());
}

/// A worker command that dies at once (a bad `--worker-command`, interface, argument or
/// memory all look like this): no storm of jobs. The daemon backs off after each job that
/// ended before a worker connected and pauses after 3 in a row; `up --wait` stops at the
/// pause (exit 1) showing the batch state and the end of the job's output; `status` and the
/// log say the same; `scale` resumes.
fn dying_workers_pause_the_cluster(system: &'static System) {
    let c = Cluster::new(system, "stormy");
    let mut args = c.up_args(&[
        "--worker-command",
        "echo rdask-test-boom >&2; exit 3; true",
        "--scale",
        "2",
        "--wait",
        "--wait-timeout",
        "300",
    ]);
    args.retain(|a| a != "--wait-timeout" && a != "300");
    args.extend(["--wait-timeout".to_string(), "300".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let o = c.cmd(&args);
    let log = c.daemon_log();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}\n{log}",
        stdout(&o),
        stderr(&o)
    );
    // Stopped at the pause, long before the wait timeout.
    assert!(started.elapsed() < Duration::from_secs(200), "{log}");
    let err = stderr(&o);
    for says in [
        "PAUSED",
        "before any of its workers connected",
        "rdask-test-boom",
        "scale K",
    ] {
        assert!(
            err.contains(says),
            "`up --wait` should say {says:?}:\n{err}\n{log}"
        );
    }
    // 2 jobs at first, then at most 2 replacements (3 failures in a row pause), however
    // long we look.
    std::thread::sleep(Duration::from_secs(5));
    let jobs = c.ledger_ids();
    assert!((3..=4).contains(&jobs.len()), "{jobs:?}\n{log}");
    let s = c.status();
    assert!(s["failures"]["paused"].is_object(), "{s:#}");
    assert!(
        s["failures"]["start_consecutive"].as_u64().unwrap() >= 3,
        "{s:#}"
    );
    let text = c.ok(&["status"]);
    for says in [
        "submissions PAUSED since",
        "before any of its workers connected: rdask-test-boom",
        "rdask-test-boom",
    ] {
        assert!(text.contains(says), "`status` should say {says:?}:\n{text}");
    }
    let log = c.daemon_log();
    assert!(log.contains("submissions paused: "), "{log}");
    assert!(log.contains("rdask-test-boom"), "{log}");
    // People's words in the log, no Rust dumps.
    for dump in ["Some(", "Submit {", "Fixed {", "Backoff {"] {
        assert!(!log.contains(dump), "{dump:?} in the daemon log:\n{log}");
    }
    assert_eq!(c.ledger_ids().len(), jobs.len(), "submitted while paused");
    // `scale` resumes: a new job is submitted at once.
    c.ok(&["scale", "1"]);
    wait_for("a job after resuming", Duration::from_secs(30), || {
        (c.ledger_ids().len() > jobs.len()).then_some(())
    });
    assert!(c.daemon_log().contains("submissions resumed"));
    c.ok(&["down"]);
    assert_eq!(c.alive(&c.ledger_ids()), Vec::<String>::new());
}

#[test]
fn dying_slurm_workers_pause_the_cluster_instead_of_a_job_storm() {
    if real_system_enabled("slurm") {
        dying_workers_pause_the_cluster(&SLURM);
    }
}

#[test]
fn dying_sge_workers_pause_the_cluster_instead_of_a_job_storm() {
    if real_system_enabled("sge") {
        dying_workers_pause_the_cluster(&SGE);
    }
}

#[test]
fn dying_local_workers_pause_the_cluster_instead_of_a_job_storm() {
    dying_workers_pause_the_cluster(&LOCAL);
}

/// Two `up` of one name at once: exactly one wins; the loser exits 2 and leaves the winner's
/// record, secret and daemon alone, so the cluster stays visible, usable and stoppable (on
/// SLURM its workers authenticate with the winner's secret).
fn racing_ups_leave_one_cluster(system: &'static System) {
    let c = Cluster::new(system, "racy");
    let args = c.up_args(&[]);
    let children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            c.command()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .collect();
    let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
    let explain = || {
        outputs
            .iter()
            .map(|o| format!("{:?}: {}{}", o.status.code(), stdout(o), stderr(o)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{}",
        explain()
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(2)).count(),
        2,
        "{}",
        explain()
    );
    for o in outputs.iter().filter(|o| o.status.code() == Some(2)) {
        let err = stderr(o);
        assert!(
            err.contains("already up") || err.contains("is starting cluster"),
            "{err}"
        );
    }
    // The winner's record stands: open, with the pid of the daemon that holds the lock.
    let rec = c.record();
    assert!(rec["closed_at"].is_null(), "{rec:#}");
    let lock = std::fs::read_to_string(c.dir().join("daemon.lock")).unwrap();
    assert_eq!(rec["pid"].as_u64().unwrap().to_string(), lock.trim());
    assert!(c.ok(&["list"]).contains(" up"));
    // Its workers authenticate with the secret on disk.
    c.ok(&["scale", "1", "--wait", "--wait-timeout", "120"]);
    c.wait_for_workers(1, Duration::from_secs(60));
    c.ok(&["down"]);
    assert!(!process_alive(lock.trim()));
    assert_eq!(c.alive(&c.ledger_ids()), Vec::<String>::new());
}

#[test]
fn racing_ups_leave_one_slurm_cluster() {
    if real_system_enabled("slurm") {
        racing_ups_leave_one_cluster(&SLURM);
    }
}

#[test]
fn racing_ups_leave_one_sge_cluster() {
    if real_system_enabled("sge") {
        racing_ups_leave_one_cluster(&SGE);
    }
}

#[test]
fn racing_ups_leave_one_local_cluster() {
    racing_ups_leave_one_cluster(&LOCAL);
}

/// `RDASK_HOME` spelt with a trailing slash, through a symlink, or relative: every spelling
/// sees the live daemon; `down --force` through another spelling stops it first, then
/// cancels its jobs, and nothing keeps submitting.
fn every_spelling_of_the_home_is_one_home(system: &'static System) {
    let c = Cluster::new(system, "spelt");
    c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
    let pid = c.record()["pid"].as_u64().unwrap().to_string();
    let home = c.home.path().to_path_buf();
    let link = tempfile::Builder::new()
        .prefix("rdask-link-")
        .tempdir_in("/tmp")
        .unwrap();
    let linked = link.path().join("home");
    std::os::unix::fs::symlink(&home, &linked).unwrap();
    let parent = home.parent().unwrap().to_path_buf();
    let relative = home.file_name().unwrap().to_string_lossy().into_owned();
    let spellings: Vec<(String, PathBuf)> = vec![
        (format!("{}/", home.display()), parent.clone()),
        (format!("{}/./", home.display()), parent.clone()),
        (linked.display().to_string(), parent.clone()),
        (relative, parent),
    ];
    let with = |home: &str, cwd: &PathBuf, args: &[&str]| {
        let mut cmd = c.command();
        cmd.env("RDASK_HOME", home).current_dir(cwd).args(args);
        run(&mut cmd)
    };
    for (spelt, cwd) in &spellings {
        let o = with(spelt, cwd, &["status", "--json"]);
        assert!(o.status.success(), "{spelt}: {}", stderr(&o));
        let o = with(spelt, cwd, &["list"]);
        assert!(stdout(&o).contains(" up"), "{spelt}: {}", stdout(&o));
    }
    let ours = c.ledger_ids();
    assert_eq!(ours.len(), 1);
    let o = with(&linked.display().to_string(), &home, &["down", "--force"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!said.contains("not running"), "{said}");
    assert!(!process_alive(&pid), "the daemon still runs: {said}");
    assert_eq!(c.alive(&ours), Vec::<String>::new());
    // Nothing was submitted after the cancel.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.ledger_ids(), ours);
}

#[test]
fn every_spelling_of_the_home_is_one_home_on_slurm() {
    if real_system_enabled("slurm") {
        every_spelling_of_the_home_is_one_home(&SLURM);
    }
}

#[test]
fn every_spelling_of_the_home_is_one_home_locally() {
    every_spelling_of_the_home_is_one_home(&LOCAL);
}

/// A deleted ledger after the daemon died: `down --force` does not claim "0 jobs" and exit
/// 0; it says the ledger is missing, cancels the jobs by name (exit 1), and none is left.
/// A corrupt record with the daemon alive: `status` refuses (exit 1), `down` still reaches
/// the daemon and stops everything.
fn lost_files_never_hide_jobs(system: &'static System) {
    for (name, corrupt) in [("lossy", false), ("mangled", true)] {
        let c = Cluster::new(system, name);
        c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
        let pid = c.record()["pid"].as_u64().unwrap().to_string();
        let ours = c.ledger_ids();
        assert_eq!(ours.len(), 1);
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        wait_for("the daemon to die", Duration::from_secs(10), || {
            (!process_alive(&pid)).then_some(())
        });
        let ledger = c.dir().join("ledger.json");
        if corrupt {
            std::fs::write(&ledger, "{\"version\": 1, \"jobs\": [").unwrap();
        } else {
            std::fs::remove_file(&ledger).unwrap();
        }
        let o = c.cmd(&["down", "--force"]);
        assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
        let err = stderr(&o);
        let says = if corrupt { "corrupt" } else { "missing" };
        assert!(err.contains("ledger") && err.contains(says), "{err}");
        let job = format!("rdask-{name}-0");
        assert!(
            err.contains("cancelled by name") && err.contains(&job),
            "{err}"
        );
        wait_for("the job to end", Duration::from_secs(60), || {
            c.alive(&ours).is_empty().then_some(())
        });
        // Nothing is replaced blindly: a new `up` refuses while the ledger is unreadable.
        if corrupt {
            let args = c.up_args(&[]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = c.cmd(&args);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
        }
    }

    let c = Cluster::new(system, "garbled");
    c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
    let pid = c.record()["pid"].as_u64().unwrap().to_string();
    let ours = c.ledger_ids();
    std::fs::write(c.dir().join("cluster.json"), "{ not json").unwrap();
    let o = c.cmd(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a cluster record"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("`rdask-jobqueue down`"),
        "{}",
        stderr(&o)
    );
    let o = c.cmd(&["list"]);
    assert!(o.status.success());
    c.ok(&["down"]);
    assert!(!process_alive(&pid));
    assert_eq!(c.alive(&ours), Vec::<String>::new());
    // The daemon rewrote its record as it closed.
    assert!(c.record()["closed_at"].is_number());
}

#[test]
fn lost_files_never_hide_slurm_jobs() {
    if real_system_enabled("slurm") {
        lost_files_never_hide_jobs(&SLURM);
    }
}

#[test]
fn lost_files_never_hide_sge_jobs() {
    if real_system_enabled("sge") {
        lost_files_never_hide_jobs(&SGE);
    }
}

#[test]
fn lost_files_never_hide_local_jobs() {
    lost_files_never_hide_jobs(&LOCAL);
}

/// Every combination of `up`'s starting flags: none, --scale, --adapt, each with --wait
/// (--wait alone is refused before anything starts); never a panic.
#[test]
fn every_combination_of_up_flags_works() {
    let c = Cluster::new(&LOCAL, "combos");
    for (flags, workers) in [
        (vec![], 0),
        (vec!["--scale", "1"], 1),
        (vec!["--scale", "1", "--wait"], 1),
        (vec!["--adapt", "1:2"], 1),
        (vec!["--adapt", "1:2", "--wait"], 1),
        (vec!["--adapt", "0:2", "--wait"], 0),
        (
            vec!["--scale", "2", "--jobs", "--wait", "--processes", "1"],
            2,
        ),
        (vec!["--adapt", "1:2", "--jobs", "--wait"], 1),
    ] {
        let out = c.up(&flags);
        assert!(out.contains("is up"), "{flags:?}: {out}");
        if flags.contains(&"--wait") {
            assert!(out.contains("worker(s) connected"), "{flags:?}: {out}");
            let s = c.status();
            assert!(
                s["workers"].as_array().unwrap().len() >= workers,
                "{flags:?}: {s:#}"
            );
        }
        c.ok(&["down"]);
    }
    let o = c.cmd(&["up", "--system", "local", "--wait"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--scale"), "{}", stderr(&o));
}

/// `up` checks the job script before it writes or starts anything: a queue or partition the
/// batch system refuses (its dry run), arguments the worker's own parser refuses, and a
/// template that does not render all fail at once with exit 2, however long --wait would
/// have waited, and leave no cluster behind.
fn up_checks_the_job_script_first(system: &'static System) {
    let c = Cluster::new(system, "checked");
    let refused = |extra: &[&str], replace_queue: Option<&str>, says: &[&str]| {
        let mut args = c.up_args(extra);
        if let Some(q) = replace_queue {
            let i = args.iter().position(|a| a == "--queue").unwrap();
            args[i + 1] = q.to_string();
        }
        args.extend(["--scale", "1", "--wait", "--wait-timeout", "300"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let o = c.cmd(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        for s in says {
            assert!(
                stderr(&o).contains(s),
                "{args:?} should say {s:?}: {}",
                stderr(&o)
            );
        }
        assert!(!c.dir().join("cluster.json").exists(), "{args:?}");
        assert!(!c.dir().join("daemon.lock").exists(), "{args:?}");
    };
    match system.name {
        "slurm" => refused(
            &[],
            Some("no-such-partition"),
            &["slurm refuses", "partition"],
        ),
        "sge" => refused(&[], Some("no-such.q"), &["sge refuses", "no-such.q"]),
        _ => {}
    }
    refused(
        &["--worker-extra-arg", "--no-such-flag"],
        None,
        &["workers would refuse", "--no-such-flag"],
    );
    let template = c.home.path().join("bad.j2");
    std::fs::write(&template, "#!/bin/sh\n{{ no_such_variable }}\n").unwrap();
    refused(
        &["--template", template.to_str().unwrap()],
        None,
        &["cannot be rendered"],
    );
    // And a good script still starts.
    c.up(&[]);
    c.ok(&["down"]);
}

#[test]
fn up_checks_the_slurm_job_script_first() {
    if real_system_enabled("slurm") {
        up_checks_the_job_script_first(&SLURM);
    }
}

#[test]
fn up_checks_the_sge_job_script_first() {
    if real_system_enabled("sge") {
        up_checks_the_job_script_first(&SGE);
    }
}

#[test]
fn up_checks_the_local_job_script_first() {
    up_checks_the_job_script_first(&LOCAL);
}

/// A bug in the scheduler's core must not end the cluster: the daemon logs why, keeps its
/// jobs (no cancel because of its own failure), and still answers `status` and `down`. The
/// bug is stood in for by a debug-build fault (`RDASK_DEBUG_FAIL_SCHEDULER_AFTER_MS`: the
/// core panics that long after it started), which release builds do not have.
#[test]
fn a_failing_scheduler_core_keeps_the_jobs_and_the_daemon_reachable() {
    let mut c = Cluster::new(&LOCAL, "faulty");
    c.env
        .push(("RDASK_DEBUG_FAIL_SCHEDULER_AFTER_MS".into(), "6000".into()));
    c.up(&["--scale", "1", "--wait", "--wait-timeout", "120"]);
    let pid = c.record()["pid"].as_u64().unwrap().to_string();
    let ours = c.ledger_ids();
    assert_eq!(ours.len(), 1);
    wait_for(
        "the daemon to see its scheduler fail",
        Duration::from_secs(60),
        || {
            c.daemon_log()
                .contains("the scheduler failed")
                .then_some(())
        },
    );
    // Give the deployer loop a few turns: a daemon that read the loss as a shutdown would
    // now cancel the job and exit.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        process_alive(&pid),
        "the daemon exited:\n{}",
        c.daemon_log()
    );
    for job in c.ledger()["jobs"].as_array().unwrap() {
        assert!(
            job["end_reason"].is_null(),
            "a job was ended because the scheduler failed: {job:#}"
        );
    }
    assert_eq!(c.alive(&ours).len(), 1, "the worker job was cancelled");
    let status = c.ok(&["status"]);
    assert!(
        status.contains("recent problems") && status.contains("injected fault"),
        "{status}"
    );
    let down = c.ok(&["down"]);
    wait_for(
        "the daemon to exit after down",
        Duration::from_secs(20),
        || (!process_alive(&pid)).then_some(()),
    );
    assert!(c.alive(&ours).is_empty(), "{down}\n{}", c.daemon_log());
}
