//! The supervisor (Dask's "nanny"): `worker --nworkers P` starts P worker processes, restarts
//! one that crashes or exits for a memory restart, and ends them all when the batch system
//! cancels the job (SIGTERM) — so a job's workers come and go together.

use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// Restarts allowed per worker within `RESTART_WINDOW` before the supervisor gives up on it.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

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
    let mut restarts: Vec<Vec<Instant>> = vec![Vec::new(); n as usize];
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
        match code {
            Some(0) => {} // closed by the scheduler: done
            // 1: the scheduler stayed unreachable past the death timeout; 2: invalid input
            // (a bad secret or flag). Both would hit every sibling too.
            Some(c @ (1 | 2)) => {
                // A fatal error (bad secret, scheduler gone past the death timeout): the
                // others will meet the same fate; end them and report it.
                status = c;
                stop_all(&mut children).await;
                return status;
            }
            // Anything else is a crash (a panic, a signal, a memory restart): start a fresh one.
            _ => {
                let now = Instant::now();
                let window = &mut restarts[i];
                window.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                if window.len() >= MAX_RESTARTS {
                    eprintln!("error: worker process {i} died {MAX_RESTARTS} times within a minute; giving up on it");
                    status = 1;
                    continue;
                }
                window.push(now);
                eprintln!("worker process {i} ended ({exit:?}); restarting it");
                tokio::time::sleep(Duration::from_millis(200 * window.len() as u64)).await;
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
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
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
