//! `job-script --name NAME` prints exactly the script `up --name NAME` submits: compared
//! with the script the cluster's daemon wrote and submitted (`jobs/rdask-NAME-SEQ-job.sh`),
//! on `local`, through the stand-in commands of PBS, LSF, OAR, HTCondor and Moab
//! (tests/standins: not the real systems), and, when the test command enables it, on the
//! real SLURM.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

/// Commands under a private `RDASK_HOME`; the cluster is forced down when dropped.
struct Home {
    dir: tempfile::TempDir,
    name: &'static str,
    /// Extra environment for every command (a stand-in's PATH), so also for the daemon.
    env: Vec<(String, String)>,
}

impl Home {
    fn new(name: &'static str) -> Home {
        // Under /tmp: batch jobs read the secret from here; socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("rdask-jsn-")
            .tempdir_in("/tmp")
            .unwrap();
        Home {
            dir,
            name,
            env: Vec::new(),
        }
    }

    /// Commands of the stand-in for `system` first on PATH, its state under this home.
    fn with_standin(mut self, system: &str) -> Home {
        let path = format!(
            "{}:{}",
            repo().join("tests/standins").join(system).display(),
            std::env::var("PATH").unwrap()
        );
        let state = self.dir.path().join("standin").display().to_string();
        self.env.push(("PATH".into(), path));
        self.env.push(("RDASK_STANDIN_STATE".into(), state));
        self
    }

    fn command(&self) -> Command {
        let mut c = bin();
        c.env("RDASK_HOME", self.dir.path())
            .current_dir(self.dir.path());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "`{}` failed ({:?}): {}{}",
            args.join(" "),
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        (stdout(&o), stderr(&o))
    }

    /// Where the daemon writes the script of job `seq` (HTCondor's is a `.sub`).
    fn submitted_script(&self, system: &str, seq: u64) -> std::path::PathBuf {
        let kind: rdask::config::SystemKind = system.parse().unwrap();
        let file = rdask::jobqueue::system(kind).script_file_name();
        self.dir
            .path()
            .join("clusters")
            .join(self.name)
            .join("jobs")
            .join(format!("rdask-{}-{seq}-{file}", self.name))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--force", "--name", self.name]);
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn the_script_shown_is_the_script_submitted(system: &str, options: &[&str]) {
    the_script_shown_is_the_script_submitted_in(Home::new("jsn"), system, options)
}

fn the_script_shown_is_the_script_submitted_in(home: Home, system: &str, options: &[&str]) {
    let name = ["--name", home.name];
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .chain(name.iter())
            .chain(["--system", system].iter())
            .chain(options.iter())
            .map(|s| s.to_string())
            .collect()
    };

    // Before `up`: the first job's script, with the address still unknown.
    let before = with(&["job-script"]);
    let (planned, note) = home.ok(&args(&before));
    assert!(note.contains("not running"), "{note}");
    assert!(planned.contains("rdask-jsn-0"), "{planned}");
    let secret = home.dir.path().join("clusters/jsn/secret");
    assert!(planned.contains(&secret.display().to_string()), "{planned}");

    let up = with(&["up"]);
    let (said, _) = home.ok(&args(&up));
    let address = said
        .split_whitespace()
        .skip_while(|w| *w != "at")
        .nth(1)
        .expect("up names the scheduler's address")
        .to_string();

    // Running: the next job's script, which is the planned one with the real address.
    let (shown, _) = home.ok(&["job-script", "--name", home.name]);
    assert_eq!(shown, planned.replace("tcp://SCHEDULER:8786", &address));

    // The daemon submits exactly that.
    home.ok(&[
        "scale",
        "1",
        "--wait",
        "--wait-timeout",
        "120",
        "--name",
        home.name,
    ]);
    let submitted = std::fs::read_to_string(home.submitted_script(system, 0)).unwrap();
    assert_eq!(submitted, shown);

    // The next one is the same under the next name; options cannot change a running cluster.
    let (next, _) = home.ok(&["job-script", "--name", home.name]);
    assert_eq!(next, shown.replace("rdask-jsn-0", "rdask-jsn-1"));
    let o = home.run(&["job-script", "--name", home.name, "--cores", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is running"), "{}", stderr(&o));
    home.ok(&["down", "--name", home.name]);
    assert!(Path::new(&home.submitted_script(system, 0)).exists());
}

#[test]
fn job_script_with_a_name_is_what_up_submits_locally() {
    the_script_shown_is_the_script_submitted(
        "local",
        &[
            "--cores",
            "1",
            "--memory",
            "256MiB",
            "--walltime",
            "00:05:00",
        ],
    );
}

/// Not the real systems: their stand-in commands, which queue and run the jobs locally. The
/// daemon drives them through the same code as SLURM.
#[test]
fn job_script_with_a_name_is_what_up_submits_through_the_standins() {
    for system in ["pbs", "lsf", "oar", "htcondor", "moab"] {
        the_script_shown_is_the_script_submitted_in(
            Home::new("jsn").with_standin(system),
            system,
            &[
                "--cores",
                "1",
                "--memory",
                "256MiB",
                "--walltime",
                "00:05:00",
            ],
        );
    }
}

#[test]
fn job_script_with_a_name_is_what_up_submits_on_slurm() {
    if real_system_enabled("slurm") {
        the_script_shown_is_the_script_submitted(
            "slurm",
            &[
                "--queue",
                "debug",
                "--cores",
                "1",
                "--memory",
                "400MiB",
                "--walltime",
                "00:05:00",
            ],
        );
    }
}

#[test]
fn job_script_with_a_name_is_what_up_submits_on_grid_engine() {
    if real_system_enabled("sge") {
        let queue = std::env::var("RDASK_TEST_SGE_QUEUE").unwrap_or_else(|_| "all.q".into());
        the_script_shown_is_the_script_submitted(
            "sge",
            &[
                "--queue",
                &queue,
                "--cores",
                "1",
                "--memory",
                "400MiB",
                "--walltime",
                "00:05:00",
            ],
        );
    }
}

#[test]
fn bad_names_and_flags_are_refused() {
    let home = Home::new("jsn");
    let o = home.run(&["job-script", "--name", "../x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cluster name"), "{}", stderr(&o));
    let o = home.run(&["job-script", "--name", "x", "--secret-file", "/tmp/s"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = home.run(&["job-script", "--name", "x", "--mpi", "--ranks", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
