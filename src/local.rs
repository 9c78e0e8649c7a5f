//! `LocalCluster`: a scheduler in this process and N worker processes on this machine — the
//! embedded default every command falls back to when there is no batch system.
//!
//! The cluster supervises its workers as `worker --nworkers` does in a job script (the same
//! [`RestartPolicy`]): a worker that crashes, is killed or exits for a memory restart is
//! started again, a bounded number of times. A task that kills every worker it runs on is
//! then marked failed by the scheduler (after 3 deaths) and its error reaches the client;
//! and when no worker is left and none will be restarted, [`LocalCluster::lost`] says so, so
//! a driver never waits for workers that will not come.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::Client;
use crate::dashboard::{self, ClusterPanel, Dashboard, DashboardOptions};
use crate::error::{Error, Result};
use crate::protocol::{Secret, SECRET_ENV};
use crate::scheduler::server::{self, SchedulerHandle, SchedulerOptions};
use crate::units::ByteSize;
use crate::worker::supervisor::{OnExit, RestartPolicy, MAX_RESTARTS, RESTART_WINDOW};
use crate::worker::EXIT_RESTART;

#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    pub workers: usize,
    pub threads_per_worker: u32,
    /// Per worker, in bytes; 0 for no limit.
    pub memory_limit: u64,
    /// The `rdask-jobqueue` binary (or a program calling `rdask::worker::run_with`).
    pub worker_program: Option<PathBuf>,
    /// Where workers spill and log.
    pub local_directory: PathBuf,
    pub death_timeout: Duration,
    /// Extra arguments for every worker.
    pub worker_args: Vec<String>,
    /// Restart workers that crash (see the module's documentation); off, a dead worker
    /// stays dead (tests of the scheduler's own recovery want that).
    pub restart_workers: bool,
    /// Serve the live dashboard beside the scheduler ([`LocalCluster::dashboard_url`]).
    pub dashboard: bool,
    /// Keep the dashboard's whole task stream for [`LocalCluster::report`] (implies
    /// `dashboard`).
    pub record: bool,
}

impl Default for LocalClusterOptions {
    fn default() -> Self {
        LocalClusterOptions {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            threads_per_worker: 1,
            memory_limit: 0,
            worker_program: None,
            local_directory: std::env::temp_dir(),
            death_timeout: Duration::from_secs(10),
            worker_args: Vec::new(),
            restart_workers: true,
            dashboard: true,
            record: false,
        }
    }
}

impl LocalClusterOptions {
    /// The worker options every worker would refuse, refused here at once (exit 2) instead of
    /// as N workers failing to start: the bounds of `worker`'s own flags.
    pub fn check(&self) -> Result<()> {
        use crate::config::limits;
        // Zero workers is a scheduler alone (workers joining from elsewhere).
        if self.workers > limits::MAX_PROCESSES as usize {
            return Err(Error::invalid(format!(
                "{} local workers: use 0 to {}",
                self.workers,
                limits::MAX_PROCESSES
            )));
        }
        limits::check_threads(u64::from(self.threads_per_worker))
            .map_err(|why| Error::invalid(format!("threads per worker: {why}")))?;
        limits::check_worker_memory(self.memory_limit)
            .map_err(|why| Error::invalid(format!("memory limit per worker: {why}")))
    }
}

/// Finds the worker program: the option, `$RDASK_WORKER_PROGRAM`, this executable when it is
/// `rdask-jobqueue`, one beside it, or one on PATH.
pub fn worker_program(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RDASK_WORKER_PROGRAM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(Error::io("finding this executable"))?;
    if exe.file_name().is_some_and(|n| n == "rdask-jobqueue") {
        return Ok(exe);
    }
    let beside = exe.with_file_name("rdask-jobqueue");
    if beside.is_file() {
        return Ok(beside);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("rdask-jobqueue");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::invalid("cannot find the rdask-jobqueue program for workers: set RDASK_WORKER_PROGRAM or put it on PATH"))
}

/// How one worker process ended, in words.
fn describe_exit(status: ExitStatus, memory_limit: u64) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(EXIT_RESTART), _) => format!(
            "exited for a memory restart (its memory passed 95% of its {} limit)",
            ByteSize(memory_limit).human()
        ),
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended".to_string(),
    }
}

/// Starts worker process `i` of a local cluster.
struct Spawner {
    program: PathBuf,
    address: String,
    secret: Secret,
    opts: LocalClusterOptions,
}

impl Spawner {
    fn log_path(&self, i: usize) -> PathBuf {
        self.opts
            .local_directory
            .join(format!("rdask-local-worker-{}-{i}.log", std::process::id()))
    }

    fn spawn(&self, i: usize) -> Result<Child> {
        let log = self.log_path(i);
        // Appended: a restarted worker's log follows the crashed one's, which says why.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(Error::io(format!("creating {}", log.display())))?;
        let o = &self.opts;
        Command::new(&self.program)
            .arg("worker")
            .arg(&self.address)
            .args(["--nthreads", &o.threads_per_worker.to_string()])
            .args(["--memory-limit", &o.memory_limit.to_string()])
            .args(["--death-timeout", &o.death_timeout.as_secs().to_string()])
            .arg("--local-directory")
            .arg(&o.local_directory)
            .args(["--name", &format!("local-{i}")])
            .arg("--no-nanny")
            .args(&o.worker_args)
            .env(SECRET_ENV, self.secret.to_hex())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Their own process group: a terminal's Ctrl-C reaches only the driver, which
            // then stops its workers in order (instead of watching them die and restarting
            // them while it shuts down).
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::runtime(format!(
                    "cannot start worker {}: {e}",
                    self.program.display()
                ))
            })
    }
}

/// One worker process slot.
#[derive(Default)]
struct Slot {
    child: Option<Child>,
    /// When it is to be started again after a crash.
    restart_at: Option<Instant>,
    /// How it last ended.
    last_exit: Option<String>,
    restarts: usize,
}

/// The worker processes and what the monitor knows of them.
struct Workers {
    spawner: Spawner,
    slots: Vec<Slot>,
    policy: RestartPolicy,
    /// Set by `close` and `drop`: no more restarts.
    closing: bool,
    memory_restarts: usize,
}

impl Workers {
    /// Reaps ended workers and starts those due again; `Some(reason)` once none is left and
    /// none will be started again.
    fn tick(&mut self, now: Instant) -> Option<String> {
        let limit = self.spawner.opts.memory_limit;
        let restart = self.spawner.opts.restart_workers;
        for i in 0..self.slots.len() {
            let ended = match self.slots[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            let slot = &mut self.slots[i];
            slot.child = None;
            let how = describe_exit(ended, limit);
            if ended.code() == Some(EXIT_RESTART) {
                self.memory_restarts += 1;
            }
            let decision = if restart {
                self.policy.on_exit(i, ended.code(), now)
            } else {
                OnExit::Done
            };
            match decision {
                OnExit::Restart(pause) => {
                    tracing::warn!("local worker {i} {how}; restarting it");
                    slot.restart_at = Some(now + pause);
                    slot.restarts += 1;
                    slot.last_exit = Some(how);
                }
                OnExit::GiveUp => {
                    tracing::error!(
                        "local worker {i} {how}, its {MAX_RESTARTS}th end within {} s; \
                         not restarting it again",
                        RESTART_WINDOW.as_secs()
                    );
                    slot.last_exit = Some(format!(
                        "{how} after {MAX_RESTARTS} restarts within {} s",
                        RESTART_WINDOW.as_secs()
                    ));
                }
                OnExit::Done | OnExit::Fatal(_) => {
                    tracing::warn!("local worker {i} {how}");
                    slot.last_exit = Some(how);
                }
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_some_and(|t| t <= now) {
                self.slots[i].restart_at = None;
                match self.spawner.spawn(i) {
                    Ok(c) => self.slots[i].child = Some(c),
                    Err(e) => self.slots[i].last_exit = Some(format!("cannot be restarted: {e}")),
                }
            }
        }
        // A cluster started with no local workers gets its workers from elsewhere.
        let alive = self.slots.is_empty()
            || self
                .slots
                .iter()
                .any(|s| s.child.is_some() || s.restart_at.is_some());
        if alive {
            return None;
        }
        let how: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| format!("worker {i} {}", s.last_exit.as_deref().unwrap_or("ended")))
            .collect();
        Some(format!(
            "no local worker is left and none will be restarted: {} (logs: {})",
            how.join("; "),
            self.spawner
                .log_path(0)
                .with_file_name(format!("rdask-local-worker-{}-*.log", std::process::id()))
                .display()
        ))
    }

    /// SIGTERM to every worker (it removes its spill files), SIGKILL to those still there
    /// after `grace`.
    fn stop_all(&mut self, grace: Duration) {
        self.closing = true;
        for s in &mut self.slots {
            s.restart_at = None;
            if let Some(c) = &s.child {
                // Our own unreaped child: its pid cannot have been recycled yet.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let deadline = Instant::now() + grace;
        for s in &mut self.slots {
            if let Some(mut c) = s.child.take() {
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if c.try_wait().ok().flatten().is_none() {
                    let _ = c.kill();
                }
                let _ = c.wait();
            }
        }
    }
}

pub struct LocalCluster {
    pub scheduler: SchedulerHandle,
    pub secret: Secret,
    workers: Arc<Mutex<Workers>>,
    monitor: Option<tokio::task::JoinHandle<()>>,
    lost: watch::Receiver<Option<String>>,
    dashboard: Option<Dashboard>,
}

impl LocalCluster {
    /// Starts the scheduler and the workers, and returns once every worker has registered.
    pub async fn start(opts: LocalClusterOptions) -> Result<LocalCluster> {
        opts.check()?;
        let secret = Secret::generate()?;
        let sched_opts =
            SchedulerOptions::new("127.0.0.1:0".parse().expect("an address"), secret.clone());
        let scheduler = server::start(sched_opts).await?;
        let dashboard = if opts.dashboard || opts.record {
            let mut d = DashboardOptions::beside(&scheduler, &secret);
            d.record = opts.record;
            let dash = dashboard::start(&scheduler, d).await?;
            dash.set_cluster(ClusterPanel {
                name: "local".into(),
                system: "local (this process)".into(),
                target: format!("{} worker(s)", opts.workers),
                target_workers: opts.workers as u64,
                ..ClusterPanel::default()
            });
            Some(dash)
        } else {
            None
        };
        let program = worker_program(opts.worker_program.as_deref())?;
        std::fs::create_dir_all(&opts.local_directory).map_err(Error::io(format!(
            "creating {}",
            opts.local_directory.display()
        )))?;
        let n = opts.workers;
        let workers = Workers {
            spawner: Spawner {
                program,
                address: scheduler.address.clone(),
                secret: secret.clone(),
                opts,
            },
            slots: (0..n).map(|_| Slot::default()).collect(),
            policy: RestartPolicy::new(n),
            closing: false,
            memory_restarts: 0,
        };
        let (lost_tx, lost) = watch::channel(None);
        let mut cluster = LocalCluster {
            scheduler,
            secret,
            workers: Arc::new(Mutex::new(workers)),
            monitor: None,
            lost,
            dashboard,
        };
        {
            let mut w = cluster.workers();
            for i in 0..n {
                let child = w.spawner.spawn(i)?;
                w.slots[i].child = Some(child);
            }
        }
        cluster.wait_for_workers(n, Duration::from_secs(60)).await?;
        // Supervision starts once all are up: a worker that cannot even start is an error of
        // `start`, not something to restart.
        let workers = cluster.workers.clone();
        cluster.monitor = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut w = workers.lock().unwrap_or_else(|p| p.into_inner());
                if w.closing {
                    return;
                }
                if let Some(why) = w.tick(Instant::now()) {
                    let _ = lost_tx.send(Some(why));
                    return;
                }
            }
        }));
        Ok(cluster)
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn address(&self) -> &str {
        &self.scheduler.address
    }

    /// The live dashboard's URL (with its token), unless it was turned off.
    pub fn dashboard_url(&self) -> Option<&str> {
        self.dashboard.as_ref().map(|d| d.url.as_str())
    }

    /// A self-contained HTML performance report of everything run so far (whole only with
    /// [`LocalClusterOptions::record`]; otherwise the last minute).
    pub fn report(&self, info: &crate::dashboard::report::RunInfo) -> Option<String> {
        self.dashboard.as_ref().map(|d| d.report(info))
    }

    pub async fn client(&self) -> Result<Client> {
        Client::connect(&self.scheduler.address, &self.secret).await
    }

    /// Process ids of the running worker processes, in worker order.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers()
            .slots
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    /// How many times a worker exited for a memory restart (its memory passed the limit).
    pub fn memory_restarts(&self) -> usize {
        self.workers().memory_restarts
    }

    /// The per-worker memory limit in bytes (0: none).
    pub fn memory_limit(&self) -> u64 {
        self.workers().spawner.opts.memory_limit
    }

    /// Resolves, with the reason, once no worker is left and none will be restarted: work
    /// still queued would wait forever. Never resolves while workers run.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            // The monitor stopped (the cluster is closing): nothing to report.
            None => std::future::pending().await,
        }
    }

    async fn wait_for_workers(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            if client.status().await?.workers.len() >= n {
                return Ok(());
            }
            {
                let mut w = self.workers();
                let limit = w.spawner.opts.memory_limit;
                for (i, slot) in w.slots.iter_mut().enumerate() {
                    let Some(child) = slot.child.as_mut() else {
                        continue;
                    };
                    if let Ok(Some(status)) = child.try_wait() {
                        let hint = if status.code() == Some(EXIT_RESTART) {
                            "; raise --memory-limit"
                        } else {
                            ""
                        };
                        return Err(Error::runtime(format!(
                            "local worker {i} {} at start{hint}; see its log in the local \
                             directory",
                            describe_exit(status, limit)
                        )));
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(Error::runtime(format!(
                    "only some of {n} local workers registered within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the workers and the scheduler.
    pub async fn close(mut self) {
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
        self.workers().closing = true;
        self.scheduler.shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let running = self.workers().slots.iter_mut().any(|s| {
                s.child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_none())
            });
            if !running || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
        self.workers().stop_all(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_options_out_of_range_are_refused_before_anything_starts() {
        let ok = LocalClusterOptions {
            workers: 2,
            memory_limit: 64 << 20,
            ..LocalClusterOptions::default()
        };
        assert!(ok.check().is_ok());
        for bad in [
            LocalClusterOptions {
                memory_limit: 1 << 20,
                ..ok.clone()
            },
            LocalClusterOptions {
                threads_per_worker: 100_000,
                ..ok.clone()
            },
            LocalClusterOptions {
                workers: 5000,
                ..ok.clone()
            },
        ] {
            assert_eq!(bad.check().unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
