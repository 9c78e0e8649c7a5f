//! The cluster daemon as a process: `up` starts it detached and watches it until it serves;
//! `down --force` signals it and waits for it to let go of its lock. (Whether a daemon is
//! alive is its lock's to say, [`ClusterDir::live_daemon`]; pids only address signals.)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::control::{self, Request};
use super::{ClusterDir, ClusterRecord};
use crate::error::{Error, Result};

/// How long a new daemon may take to publish its address and answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `cluster-daemon` (this program) detached: its own session (no terminal, survives
/// the shell and its hang-up), stdin from /dev/null, stdout and stderr appended to the
/// daemon's log. Returns its pid.
pub fn spawn(dir: &ClusterDir) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.daemon_log())
        .map_err(Error::io(format!("opening {}", dir.daemon_log().display())))?;
    let err = log
        .try_clone()
        .map_err(Error::io("duplicating the log file"))?;
    let exe = std::env::current_exe().map_err(Error::io("finding this program"))?;
    let mut cmd = std::process::Command::new(exe);
    // Started inside a batch job, the daemon must not hand that job's context to the jobs it
    // submits: sbatch reads SLURM_* variables such as SLURM_MEM_PER_CPU as defaults (then
    // `--mem` conflicts with them). SLURM_CONF says where SLURM is, and stays.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("SLURM_") && k != "SLURM_CONF" {
            cmd.env_remove(&*k);
        }
    }
    cmd.args(["cluster-daemon", "--name", &dir.name])
        .env("RDASK_HOME", super::home())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it makes one setsid(2) system call (nix's wrapper neither allocates
    // nor takes a lock) and touches no memory shared with the parent. std has no safe way to
    // start a new session (`process_group` only makes a group, which keeps the terminal).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(Error::io("starting the cluster daemon"))?;
    Ok(child.id())
}

/// Waits until the daemon `pid` published its address and answers on its socket; kills it
/// and returns the end of its log when it dies first or takes too long.
pub fn wait_until_serving(dir: &ClusterDir, pid: u32) -> Result<ClusterRecord> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(rec) = dir.read_record()? {
            if rec.pid == Some(pid)
                && rec.address.is_some()
                && control::request(dir, &Request::Ping, Duration::from_secs(2)).is_ok()
            {
                return Ok(rec);
            }
        }
        if !child_running(pid) || Instant::now() > deadline {
            let log = tail(&dir.daemon_log(), 15);
            signal_pid(pid, Signal::SIGKILL);
            return Err(Error::runtime(format!(
                "the cluster daemon did not start{}; its log ({}):\n{log}",
                if child_running(pid) {
                    " within 30 s"
                } else {
                    ""
                },
                dir.daemon_log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid`, started by this process, still runs. Our own child until `up` exits: reap
/// it if it ended, so it does not linger as a zombie (a zombie's /proc entry would say it
/// runs). A pid that is not our child is looked up in /proc.
fn child_running(pid: u32) -> bool {
    match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(_) => false,
        // ECHILD: not our child (or already reaped by someone else).
        Err(_) => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// Sends `sig` to `pid`; true if it was delivered.
pub fn signal_pid(pid: u32, sig: Signal) -> bool {
    signal::kill(Pid::from_raw(pid as i32), sig).is_ok()
}

/// Waits until the cluster's daemon has let go of its lock and its process is gone; true if
/// it did. The kernel releases the lock as it closes the exiting daemon's files, a moment
/// before the process ends, so the pid is waited for too (`down` returns with it gone).
pub fn wait_for_exit(dir: &ClusterDir, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pid = None;
    while let Some(live) = dir.live_daemon() {
        pid = live.pid.or(pid);
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while pid.is_some_and(crate::sys::process_running) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Stops the daemon `pid` that holds `dir`'s lock: SIGTERM, then SIGKILL if it still holds
/// the lock 10 s later. An error when it survives both (then nothing else may touch the
/// ledger it writes).
pub fn stop(dir: &ClusterDir, pid: u32) -> Result<()> {
    signal_pid(pid, Signal::SIGTERM);
    if wait_for_exit(dir, Duration::from_secs(10)) {
        return Ok(());
    }
    signal_pid(pid, Signal::SIGKILL);
    if wait_for_exit(dir, Duration::from_secs(5)) {
        return Ok(());
    }
    Err(Error::runtime(format!(
        "cluster `{}`'s daemon (pid {pid}) did not stop; nothing was cancelled",
        dir.name
    )))
}

/// The last `lines` lines of a text file (all of it for 0; nothing if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = if lines == 0 {
        0
    } else {
        all.len().saturating_sub(lines)
    };
    all[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_child_is_reaped_and_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child_running(pid) {
            assert!(Instant::now() < deadline, "`true` never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reaped by child_running: nothing is left for wait to collect.
        assert!(child.try_wait().is_err());
    }

    #[test]
    fn a_signal_stops_a_running_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child_running(pid));
        assert!(signal_pid(pid, Signal::SIGTERM));
        let deadline = Instant::now() + Duration::from_secs(10);
        while child_running(pid) {
            assert!(Instant::now() < deadline, "sleep survived SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
        // child_running reaped it: nothing is left to wait for.
        assert!(child.wait().is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&f, 2), "b\nc");
        assert_eq!(tail(&f, 0), "a\nb\nc");
        assert_eq!(tail(&d.path().join("none"), 2), "");
    }
}
