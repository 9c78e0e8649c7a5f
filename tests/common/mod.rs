//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rdask-jobqueue"));
    // Tests never read the developer's own configuration.
    c.env_remove("RDASK_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent");
    for (k, _) in std::env::vars() {
        if k.starts_with("RDASK_") && k != "RDASK_LOG" {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running rdask-jobqueue")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(name: &str) -> PathBuf {
    repo().join("tests").join("data").join(name)
}

/// Polls `check` until it returns Some or the deadline passes; never sleeps blindly.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a real batch system's tests must run: the test command (tests/run.sh) sets
/// RDASK_TEST_<SYSTEM>=1 after starting it. Without it, a developer's plain `cargo test`
/// reports the test as not run instead of failing for lack of a daemon.
pub fn real_system_enabled(system: &str) -> bool {
    let var = format!("RDASK_TEST_{}", system.to_ascii_uppercase());
    if std::env::var(&var).as_deref() == Ok("1") {
        return true;
    }
    eprintln!("NOT RUN: set {var}=1 (tests/run.sh does, after starting {system})");
    false
}

/// A `rdask-jobqueue scheduler` process on loopback, killed when dropped.
pub struct SchedulerProcess {
    pub child: std::process::Child,
    pub address: String,
    pub secret: rdask::protocol::Secret,
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a scheduler that writes its address and secret to `dir/scheduler.json`.
pub fn spawn_scheduler(dir: &Path) -> SchedulerProcess {
    let file = dir.join("scheduler.json");
    let child = Command::new(env!("CARGO_BIN_EXE_rdask-jobqueue"))
        .args([
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--scheduler-file",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting a scheduler");
    wait_for("the scheduler file", Duration::from_secs(20), || {
        file.exists().then_some(())
    });
    let sf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let secret = rdask::protocol::Secret::from_hex(sf["secret"].as_str().unwrap()).unwrap();
    SchedulerProcess {
        child,
        address: sf["address"].as_str().unwrap().to_string(),
        secret,
    }
}
