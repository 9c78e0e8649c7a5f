//! `LocalCluster`: a scheduler in this process and N worker processes on this machine — the
//! embedded default every command falls back to when there is no batch system.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::protocol::{Secret, SECRET_ENV};
use crate::scheduler::server::{self, SchedulerHandle, SchedulerOptions};

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

pub struct LocalCluster {
    pub scheduler: SchedulerHandle,
    pub secret: Secret,
    workers: Vec<Child>,
}

impl LocalCluster {
    /// Starts the scheduler and the workers, and returns once every worker has registered.
    pub async fn start(opts: LocalClusterOptions) -> Result<LocalCluster> {
        opts.check()?;
        let secret = Secret::generate()?;
        let sched_opts =
            SchedulerOptions::new("127.0.0.1:0".parse().expect("an address"), secret.clone());
        let scheduler = server::start(sched_opts).await?;
        let program = worker_program(opts.worker_program.as_deref())?;
        let mut cluster = LocalCluster {
            scheduler,
            secret,
            workers: Vec::new(),
        };
        std::fs::create_dir_all(&opts.local_directory).map_err(Error::io(format!(
            "creating {}",
            opts.local_directory.display()
        )))?;
        for i in 0..opts.workers {
            let log = opts
                .local_directory
                .join(format!("rdask-local-worker-{}-{i}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)
                .map_err(Error::io(format!("creating {}", log.display())))?;
            let child = Command::new(&program)
                .arg("worker")
                .arg(&cluster.scheduler.address)
                .args(["--nthreads", &opts.threads_per_worker.to_string()])
                .args(["--memory-limit", &opts.memory_limit.to_string()])
                .args(["--death-timeout", &opts.death_timeout.as_secs().to_string()])
                .arg("--local-directory")
                .arg(&opts.local_directory)
                .args(["--name", &format!("local-{i}")])
                .arg("--no-nanny")
                .args(&opts.worker_args)
                .env(SECRET_ENV, cluster.secret.to_hex())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| {
                    Error::runtime(format!("cannot start worker {}: {e}", program.display()))
                })?;
            cluster.workers.push(child);
        }
        cluster
            .wait_for_workers(opts.workers, Duration::from_secs(60))
            .await?;
        Ok(cluster)
    }

    pub fn address(&self) -> &str {
        &self.scheduler.address
    }

    pub async fn client(&self) -> Result<Client> {
        Client::connect(&self.scheduler.address, &self.secret).await
    }

    /// Process ids of the worker processes, in start order.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(Child::id).collect()
    }

    async fn wait_for_workers(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            if client.status().await?.workers.len() >= n {
                return Ok(());
            }
            for child in &mut self.workers {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Error::runtime(format!("a local worker exited at start ({status}); see its log in the local directory")));
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
        self.scheduler.shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.workers {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.workers {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
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
