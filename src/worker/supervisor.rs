//! The supervisor (Dask's "nanny"): `worker --nworkers P` starts P worker processes, restarts
//! one that crashes or exits for a memory restart, and ends them all when the batch system
//! cancels the job (SIGTERM) — so a job's workers come and go together.

use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// Restarts allowed per worker within `RESTART_WINDOW` before the supervisor gives up on it.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// What to do when a supervised worker process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExit {
    /// Status 0: the scheduler closed it (retired, or the cluster shut down). Done.
    Done,
    /// Status 1 (the scheduler stayed unreachable past the death timeout) or 2 (invalid
    /// input: a bad secret or flag): every sibling would meet the same fate.
    Fatal(i32),
    /// A crash (a panic, a signal, a memory restart): start a fresh one after this pause.
    Restart(Duration),
    /// It crashed `MAX_RESTARTS` times within `RESTART_WINDOW`: restarting again would only
    /// crash again (a task or a memory limit that kills every worker).
    GiveUp,
}

/// The restart policy of a set of worker processes, shared by `worker --nworkers` and the
/// embedded `LocalCluster`: sans-IO, fed each process's end.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    restarts: Vec<Vec<Instant>>,
}

impl RestartPolicy {
    pub fn new(processes: usize) -> RestartPolicy {
        RestartPolicy {
            restarts: vec![Vec::new(); processes],
        }
    }

    /// Process `i` ended at `now` with exit `code` (None: killed by a signal).
    pub fn on_exit(&mut self, i: usize, code: Option<i32>, now: Instant) -> OnExit {
        match code {
            Some(0) => OnExit::Done,
            Some(c @ (1 | 2)) => OnExit::Fatal(c),
            _ => {
                let window = &mut self.restarts[i];
                window.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                if window.len() >= MAX_RESTARTS {
                    return OnExit::GiveUp;
                }
                window.push(now);
                // Back off a little more each time: a crash loop must not spin.
                OnExit::Restart(Duration::from_millis(200 * window.len() as u64))
            }
        }
    }
}

/// Runs `program args...` `n` times under supervision until they end, a signal, or `stop`
/// completes (then every process is stopped); returns the exit status to end with.
pub async fn supervise(
    program: std::path::PathBuf,
    args: Vec<String>,
    n: u32,
    stop: impl std::future::Future<Output = ()>,
) -> i32 {
    tokio::pin!(stop);
    let spawn = |i: u32| -> std::io::Result<Child> {
        Command::new(&program)
            .args(&args)
            .env("RDASK_WORKER_INDEX", i.to_string())
            .spawn()
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut children: Vec<Option<Child>> = Vec::new();
    let mut policy = RestartPolicy::new(n as usize);
    for i in 0..n {
        match spawn(i) {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                eprintln!("error: cannot start worker process: {e}");
                stop_all(&mut children).await;
                return 1;
            }
        }
    }
    let mut status = 0;
    loop {
        if children.iter().all(Option::is_none) {
            return status;
        }
        let (i, exit) = tokio::select! {
            _ = term.recv() => { stop_all(&mut children).await; return 0; }
            _ = int.recv() => { stop_all(&mut children).await; return 130; }
            _ = &mut stop => { stop_all(&mut children).await; return 0; }
            r = wait_any(&mut children) => r,
        };
        children[i] = None;
        let code = exit.as_ref().ok().and_then(|s| s.code());
        match policy.on_exit(i, code, Instant::now()) {
            OnExit::Done => {}
            OnExit::Fatal(c) => {
                // A fatal error (bad secret, scheduler gone past the death timeout): the
                // others will meet the same fate; end them and report it.
                status = c;
                stop_all(&mut children).await;
                return status;
            }
            OnExit::GiveUp => {
                eprintln!("error: worker process {i} died {MAX_RESTARTS} times within a minute; giving up on it");
                status = 1;
            }
            OnExit::Restart(pause) => {
                eprintln!("worker process {i} ended ({exit:?}); restarting it");
                tokio::time::sleep(pause).await;
                match spawn(i as u32) {
                    Ok(c) => children[i] = Some(c),
                    Err(e) => eprintln!("error: cannot restart worker process {i}: {e}"),
                }
            }
        }
    }
}

async fn wait_any(
    children: &mut [Option<Child>],
) -> (usize, std::io::Result<std::process::ExitStatus>) {
    loop {
        for (i, c) in children.iter_mut().enumerate() {
            if let Some(child) = c {
                if let Ok(Some(status)) = child.try_wait() {
                    return (i, Ok(status));
                }
            }
        }
        // Child exits are rare events; a short poll keeps this simple and portable.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM to every child, then SIGKILL to those still alive after a grace period.
async fn stop_all(children: &mut [Option<Child>]) {
    for c in children.iter().flatten() {
        if let Some(pid) = c.id() {
            // Our own unreaped child: its pid cannot have been recycled yet.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut().flatten() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_are_restarted_with_backoff_until_the_budget_is_spent() {
        let mut p = RestartPolicy::new(2);
        let t0 = Instant::now();
        for k in 1..=MAX_RESTARTS {
            let at = t0 + Duration::from_secs(k as u64);
            let want = OnExit::Restart(Duration::from_millis(200 * k as u64));
            assert_eq!(p.on_exit(0, Some(75), at), want, "restart {k}");
        }
        assert_eq!(
            p.on_exit(0, None, t0 + Duration::from_secs(10)),
            OnExit::GiveUp
        );
        // Each process has its own budget.
        assert_eq!(
            p.on_exit(1, None, t0),
            OnExit::Restart(Duration::from_millis(200))
        );
        // Restarts older than the window no longer count.
        let later = t0 + RESTART_WINDOW + Duration::from_secs(MAX_RESTARTS as u64 + 1);
        assert_eq!(
            p.on_exit(0, Some(101), later),
            OnExit::Restart(Duration::from_millis(200))
        );
    }

    #[test]
    fn a_closed_worker_is_done_and_a_fatal_status_ends_all() {
        let mut p = RestartPolicy::new(1);
        let now = Instant::now();
        assert_eq!(p.on_exit(0, Some(0), now), OnExit::Done);
        assert_eq!(p.on_exit(0, Some(1), now), OnExit::Fatal(1));
        assert_eq!(p.on_exit(0, Some(2), now), OnExit::Fatal(2));
    }
}
