//! A worker: registers with the scheduler, runs the tasks it is given on a thread pool,
//! fetches missing inputs from peers, serves its results, and keeps its memory under its
//! limit with Dask's thresholds (see [`MemoryPolicy`]).
//!
//! The task bookkeeping is a state machine without IO ([`state::WorkerState`]): events in,
//! instructions and messages out. One event loop is its shell and the only caller; the
//! executor threads, the fetch and spill tasks and the scheduler reader only send it events.
//! Messages to the scheduler are batched: everything that happened in one turn of the loop
//! goes out in one flush.

pub mod command_line;
pub mod executor;
pub mod peer;
pub mod programs;
pub mod state;
pub mod store;
pub mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::error::{Error, Result};
use crate::ids::{TaskId, WorkerId};
use crate::kernels::Registry;
use crate::protocol::messages::{ProgramEnded, Registration, SchedulerToWorker, WorkerToScheduler};
use crate::protocol::{self, Role, Secret};
use crate::sys;
use executor::{Done, Executor, Job, Outcome};
use peer::{PeerPool, Writer};
use state::{CannotStart, Instruction, Pressure, WorkerState};
use store::{Discard, Store};

/// How a worker is started.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub scheduler: String,
    pub secret: Secret,
    pub nthreads: u32,
    /// Bytes; 0 means no limit.
    pub memory_limit: u64,
    pub name: Option<String>,
    /// Exit when the scheduler has been unreachable this long.
    pub death_timeout: Duration,
    /// Scratch space for spilled results.
    pub local_directory: PathBuf,
    /// Network interface to listen and advertise on (default: the address the scheduler
    /// connection leaves from).
    pub interface: Option<String>,
    /// The batch job we run in (default: read from the environment).
    pub job_id: Option<String>,
    pub memory: MemoryPolicy,
    /// When to ask the scheduler to retire us (`--lifetime`): before the job's walltime, so
    /// that our results move to other workers instead of dying with the job.
    pub retire_at: Option<Instant>,
    /// Resources offered to program tasks (`--resources GPU=1`), advertised at registration.
    pub resources: Vec<(String, f64)>,
}

impl WorkerOptions {
    /// The bounds of `worker`'s own flags (docs/configuration.md#bounds-and-refused-values),
    /// for programs that build options themselves: refused (exit 2) before any thread starts.
    pub fn check(&self) -> Result<()> {
        use crate::config::limits;
        limits::check_threads(u64::from(self.nthreads))
            .map_err(|why| Error::invalid(format!("worker threads: {why}")))?;
        limits::check_worker_memory(self.memory_limit)
            .map_err(|why| Error::invalid(format!("worker memory limit: {why}")))
    }

    pub fn new(scheduler: impl Into<String>, secret: Secret) -> Self {
        WorkerOptions {
            scheduler: scheduler.into(),
            secret,
            nthreads: 1,
            memory_limit: 0,
            name: None,
            death_timeout: Duration::from_secs(60),
            local_directory: std::env::temp_dir(),
            interface: None,
            job_id: crate::jobqueue::batch_job_id(),
            memory: MemoryPolicy::default(),
            retire_at: None,
            resources: Vec::new(),
        }
    }
}

/// Dask's memory thresholds, as fractions of the memory limit.
#[derive(Clone, Copy, Debug)]
pub struct MemoryPolicy {
    /// Spill results to disk, least recently used first, above this much *managed* memory.
    pub target: f64,
    /// Spill as well when the process's RSS passes this (memory the store does not see).
    pub spill: f64,
    /// Stop starting tasks while RSS is above this; the scheduler sends no new work.
    pub pause: f64,
    /// Exit for a restart (status 75, the supervisor restarts) above this.
    pub terminate: f64,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy {
            target: 0.6,
            spill: 0.7,
            pause: 0.8,
            terminate: 0.95,
        }
    }
}

/// Why a worker stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The scheduler told it to (retired, or the cluster shut down).
    Closed,
    /// The scheduler was unreachable for the death timeout.
    SchedulerGone(String),
    /// Memory passed the terminate threshold; the supervisor restarts it.
    MemoryRestart,
}

/// Exit status for a memory restart (EX_TEMPFAIL): the supervisor starts a fresh worker.
pub const EXIT_RESTART: i32 = 75;

enum Internal {
    FromScheduler(SchedulerToWorker),
    SchedulerLost(String),
    Done(Done),
    /// Inputs fetched from peers (or not found at any holder).
    Fetched {
        got: Vec<(TaskId, Bytes)>,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    },
    /// A spill was committed: tasks held back while it was written may start.
    Spilled,
    /// A program task (a task array's) ended.
    ProgramEnded(ProgramEnded),
}

impl From<Done> for Internal {
    fn from(d: Done) -> Self {
        Internal::Done(d)
    }
}

impl From<ProgramEnded> for Internal {
    fn from(e: ProgramEnded) -> Self {
        Internal::ProgramEnded(e)
    }
}

/// Runs a worker with the built-in kernels plus `registry`, as `rdask-jobqueue worker` does.
/// A program that embeds its own kernels calls this from its `main`.
pub fn run_with(registry: Registry) -> ! {
    command_line::worker_main(registry)
}

/// Runs the worker until it is closed, its scheduler stays unreachable past the death
/// timeout, or its memory forces a restart.
pub async fn run(opts: WorkerOptions, registry: Registry) -> Result<Exit> {
    opts.check()?;
    // Chunks of up to 32 MiB come from the heap and freed ones are kept for the next task:
    // fresh memory is the most expensive thing a task can ask for (a page fault per 4 KiB,
    // and on some VMs a trip to the hypervisor), and array tasks allocate a few chunks each.
    // What is kept is bounded by the trim threshold, and check_memory gives it all back
    // (malloc_trim) before it spills a single result, so RSS still answers to the limit.
    let keep = if opts.memory_limit > 0 {
        (opts.memory_limit / 4).clamp(32 << 20, 1 << 30)
    } else {
        256 << 20
    };
    // SAFETY: mallopt(3) takes no pointer and only sets two glibc allocator parameters (under
    // the allocator's lock); any value is valid for both, so it is sound at any time. Neither
    // std nor nix wraps it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, keep as libc::c_int);
    }
    // Received results are recycled up to the target fraction of the limit: the pool only
    // holds memory the worker would let its store use, and is the first to go under pressure.
    if opts.memory_limit > 0 {
        crate::protocol::hugebuf::set_pool_limit(
            (opts.memory.target * opts.memory_limit as f64) as usize,
        );
    }
    let bind_ip = match &opts.interface {
        Some(iface) => sys::interface_address(iface).map_err(Error::invalid)?,
        None => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let listener = TcpListener::bind((bind_ip, 0))
        .await
        .map_err(Error::io("binding the worker's peer port"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("reading the peer port"))?
        .port();
    let spill_dir = opts
        .local_directory
        .join(format!("rdask-worker-{}", std::process::id()));
    let store = Arc::new(Mutex::new(Store::new(spill_dir)));
    tokio::spawn(peer::serve(listener, opts.secret.clone(), store.clone()));
    // A batch system ends a job with SIGTERM: leave no spill files behind.
    let on_term = store.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::io("installing the SIGTERM handler"))?;
    tokio::spawn(async move {
        term.recv().await;
        // A batch system follows SIGTERM with SIGKILL: wait for spills being written only
        // briefly.
        programs::kill_all_groups();
        clear(&on_term, Duration::from_secs(2)).await;
        std::process::exit(143);
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Internal>();
    let executor = Executor::start(opts.nthreads, tx.clone());
    let pool = PeerPool::new(opts.secret.clone());

    let mut lost_since = Instant::now();
    let mut last_error = String::from("never connected");
    loop {
        if lost_since.elapsed() >= opts.death_timeout {
            clear(&store, SPILL_PATIENCE).await;
            return Ok(Exit::SchedulerGone(format!(
                "the scheduler at {} was unreachable for {} s ({last_error}); exiting",
                opts.scheduler,
                opts.death_timeout.as_secs()
            )));
        }
        let connected = protocol::connect(&opts.scheduler, &opts.secret, Role::Worker).await;
        let (reader, writer) = match connected {
            Ok(c) => c,
            Err(e @ protocol::ProtocolError::AuthenticationFailed)
            | Err(e @ protocol::ProtocolError::ServerNotAuthenticated) => {
                return Err(Error::invalid(format!(
                    "cannot join the scheduler at {}: {e} (wrong secret?)",
                    opts.scheduler
                )));
            }
            Err(e) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let advertise_ip = match &opts.interface {
            Some(_) => bind_ip,
            None => reader
                .get_ref()
                .local_addr()
                .map(|a| a.ip())
                .unwrap_or(bind_ip),
        };
        let mut session = Session {
            opts: &opts,
            registry: &registry,
            store: store.clone(),
            executor: &executor,
            pool: pool.clone(),
            tx: tx.clone(),
            directory: HashMap::new(),
            state: WorkerState::new(),
            programs: programs::Programs::default(),
            programs_ended: Vec::new(),
            cpu_sample: None,
        };
        let outcome = session
            .run(reader, writer, format!("{advertise_ip}:{port}"), &mut rx)
            .await;
        match outcome {
            Ok(exit) => {
                clear(&store, SPILL_PATIENCE).await;
                return Ok(exit);
            }
            Err(reason) => {
                tracing::warn!("lost the scheduler: {reason}; reconnecting");
                last_error = reason;
                lost_since = Instant::now();
                // The scheduler forgot this worker: its results and tasks are void.
                clear(&store, SPILL_PATIENCE).await;
            }
        }
    }
}

/// Forgets every result and deletes the spill files and directory, without holding the store
/// lock while deleting. Spills still being written are waited for (up to `patience`): their
/// commit deletes their files, and only then can the directory go.
async fn clear(store: &Mutex<Store>, patience: Duration) {
    let give_up = Instant::now() + patience;
    loop {
        let (discard, in_flight) = {
            let mut store = store.lock().expect("store");
            (store.clear(), store.spills_in_flight())
        };
        let _ = tokio::task::spawn_blocking(move || discard.delete()).await;
        if in_flight == 0 || Instant::now() >= give_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long leaving waits for spills being written, so their files do not outlive the worker.
const SPILL_PATIENCE: Duration = Duration::from_secs(30);

/// Deletes spill files off the event loop.
fn discard(files: Discard) {
    if !files.is_empty() {
        tokio::task::spawn_blocking(move || files.delete());
    }
}

/// Spills until at most `target` bytes of results stay in memory: picks the results under
/// the store lock, writes their files on a blocking thread without it, and commits under it
/// again (see `store.rs`). The results stay readable throughout. `done` hears when it is
/// committed.
fn spill(store: &Arc<Mutex<Store>>, target: u64, done: &UnboundedSender<Internal>) {
    let Some(batch) = store.lock().expect("store").start_spill(target) else {
        return;
    };
    let store = store.clone();
    let done = done.clone();
    tokio::task::spawn_blocking(move || {
        let written = batch.write();
        let report = store.lock().expect("store").finish_spill(written);
        report.discard.delete();
        for (task, e) in report.failed {
            tracing::error!("cannot spill the result of {task} to disk (kept in memory): {e}");
        }
        let _ = done.send(Internal::Spilled);
    });
}

/// The shell around [`WorkerState`]: owns the connection, the store, the executor and the
/// peer pool, feeds the state machine events and carries out its instructions.
struct Session<'a> {
    opts: &'a WorkerOptions,
    registry: &'a Registry,
    store: Arc<Mutex<Store>>,
    executor: &'a Executor,
    pool: PeerPool,
    tx: UnboundedSender<Internal>,
    directory: HashMap<WorkerId, String>,
    state: WorkerState,
    /// Program tasks running now (killed when the session ends: the scheduler that gave
    /// them forgets them).
    programs: programs::Programs,
    /// Program tasks ended since the last flush.
    programs_ended: Vec<ProgramEnded>,
    /// (wall, CPU) seconds at the last heartbeat: CPU use is reported per interval.
    cpu_sample: Option<(f64, f64)>,
}

impl Session<'_> {
    async fn run(
        &mut self,
        mut reader: peer::Reader,
        mut writer: Writer,
        address: String,
        rx: &mut UnboundedReceiver<Internal>,
    ) -> std::result::Result<Exit, String> {
        let name = self
            .opts
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", sys::hostname(), std::process::id()));
        let registration = Registration {
            name,
            address,
            nthreads: self.opts.nthreads,
            memory_limit: self.opts.memory_limit,
            host: sys::hostname(),
            pid: std::process::id(),
            job_id: self.opts.job_id.clone(),
            resources: self.opts.resources.clone(),
        };
        let lost = |e: protocol::ProtocolError| e.to_string();
        writer
            .write_control(&WorkerToScheduler::Register(registration))
            .await
            .map_err(lost)?;
        writer.flush().await.map_err(lost)?;
        let welcome = reader
            .read_frame()
            .await
            .map_err(lost)?
            .ok_or("closed before welcome")?;
        let SchedulerToWorker::Welcome {
            worker,
            heartbeat_ms,
        } = welcome.decode().map_err(lost)?
        else {
            return Err("expected a welcome".into());
        };
        tracing::info!("registered as worker {worker}");
        let tx = self.tx.clone();
        let reader_task = tokio::spawn(async move {
            loop {
                let msg = match reader.read_frame().await {
                    Ok(Some(frame)) => match frame.decode::<SchedulerToWorker>() {
                        Ok(m) => Internal::FromScheduler(m),
                        Err(e) => Internal::SchedulerLost(e.to_string()),
                    },
                    Ok(None) => {
                        Internal::SchedulerLost("the scheduler closed the connection".into())
                    }
                    Err(e) => Internal::SchedulerLost(e.to_string()),
                };
                let stop = matches!(msg, Internal::SchedulerLost(_));
                if tx.send(msg).is_err() || stop {
                    return;
                }
            }
        });
        let result = self
            .event_loop(&mut writer, rx, Duration::from_millis(heartbeat_ms.max(50)))
            .await;
        reader_task.abort();
        // The scheduler re-runs them elsewhere (lost) or no longer wants them (closed).
        self.programs.cancel_all();
        programs::kill_all_groups();
        result
    }

    async fn event_loop(
        &mut self,
        writer: &mut Writer,
        rx: &mut UnboundedReceiver<Internal>,
        heartbeat: Duration,
    ) -> std::result::Result<Exit, String> {
        let mut heartbeat = tokio::time::interval(heartbeat);
        let mut memory_check = tokio::time::interval(Duration::from_millis(100));
        // Asked once per session: a scheduler we reconnect to has forgotten the request.
        // One timer for the session, not one per turn of the loop.
        let retire_at = self.opts.retire_at.map(tokio::time::Instant::from_std);
        let mut retire_asked = retire_at.is_none();
        let retire = tokio::time::sleep_until(retire_at.unwrap_or_else(tokio::time::Instant::now));
        tokio::pin!(retire);
        loop {
            let mut exit = None;
            tokio::select! {
                _ = &mut retire, if !retire_asked => {
                    tracing::info!("lifetime reached: asking the scheduler to retire this worker");
                    self.state.send(WorkerToScheduler::RetireMe);
                    retire_asked = true;
                }
                ev = rx.recv() => {
                    let ev = ev.ok_or("internal channel closed")?;
                    exit = self.handle(ev)?;
                    // Take whatever else is already there, so it leaves in one batch.
                    for _ in 0..4096 {
                        let Ok(ev) = rx.try_recv() else { break };
                        if exit.is_none() {
                            exit = self.handle(ev)?;
                        }
                    }
                }
                _ = heartbeat.tick() => self.heartbeat(),
                _ = memory_check.tick() => {
                    if self.check_memory() {
                        return Ok(Exit::MemoryRestart);
                    }
                }
            }
            if let Some(exit) = exit {
                return Ok(exit);
            }
            self.feed_executor();
            self.flush(writer).await.map_err(|e| e.to_string())?;
        }
    }

    fn handle(&mut self, ev: Internal) -> std::result::Result<Option<Exit>, String> {
        let instruction = match ev {
            Internal::SchedulerLost(why) => return Err(why),
            Internal::FromScheduler(msg) => match msg {
                SchedulerToWorker::Welcome { .. } => None,
                SchedulerToWorker::Peers(peers) => {
                    self.directory.extend(peers);
                    None
                }
                SchedulerToWorker::PeerGone(id) => {
                    if let Some(addr) = self.directory.remove(&id) {
                        self.pool.forget(&addr);
                    }
                    None
                }
                SchedulerToWorker::Compute(mut tasks) => {
                    // Program tasks start at once: the scheduler sends one only when this
                    // worker has its cpus free.
                    tasks.retain(|t| {
                        let program = t.kernel == crate::task_array::PROGRAM_KERNEL;
                        if program {
                            self.programs.start(t.task, &t.args, self.tx.clone());
                        }
                        !program
                    });
                    let store = self.store.lock().expect("store");
                    self.state.compute(tasks, |id| store.contains(id))
                }
                SchedulerToWorker::Release(mut keys) => {
                    keys.retain(|k| !self.programs.cancel(*k));
                    Some(self.state.release(keys))
                }
                SchedulerToWorker::Replicate(deps) => self.state.replicate(deps),
                SchedulerToWorker::Close => return Ok(Some(Exit::Closed)),
            },
            Internal::Done(done) => {
                if let Outcome::InputUnreadable { input, error } = &done.outcome {
                    tracing::error!(
                        "cannot read back the spilled input {input} of {}: {error}",
                        done.task
                    );
                }
                self.state.done(done.task, done.outcome, done.duration_us)
            }
            // Nothing to record: the turn ends with feed_executor, which may now start tasks.
            Internal::Spilled => None,
            Internal::ProgramEnded(e) => {
                self.programs.ended(e.task);
                self.programs_ended.push(e);
                None
            }
            Internal::Fetched { got, missing } => self.state.fetched(got, missing),
        };
        if let Some(instruction) = instruction {
            self.carry_out(instruction);
        }
        Ok(None)
    }

    fn carry_out(&mut self, instruction: Instruction) {
        match instruction {
            Instruction::Fetch(wanted) => {
                let pool = self.pool.clone();
                let directory = self.directory.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let (got, missing) = peer::fetch(&pool, &directory, wanted).await;
                    let _ = tx.send(Internal::Fetched { got, missing });
                });
            }
            Instruction::Keep(results) => {
                let mut files = Discard::default();
                {
                    let mut store = self.store.lock().expect("store");
                    for (task, data) in results {
                        files.extend(store.put(task, data));
                    }
                }
                discard(files);
                // Spill at once past the target rather than at the next check: results can
                // arrive faster than the check runs.
                if let Some(target) = self.managed_target() {
                    spill(&self.store, target, &self.tx);
                }
            }
            Instruction::Forget(keys) => {
                let mut files = Discard::default();
                {
                    let mut store = self.store.lock().expect("store");
                    for k in keys {
                        files.extend(store.remove(k));
                    }
                }
                discard(files);
            }
        }
    }

    /// Starts what the state machine says may start.
    fn feed_executor(&mut self) {
        let backlog = self.spill_backlog();
        while let Some(start) = self.state.next_to_start(self.opts.nthreads, backlog) {
            let Some(kernel) = self.registry.get(&start.kernel).cloned() else {
                let error = format!(
                    "unknown kernel '{}' on this worker ({:?})",
                    start.kernel, self.registry
                );
                self.state
                    .cannot_start(start.task, CannotStart::UnknownKernel(error));
                continue;
            };
            // Only located here (a spilled input's file opened): the executor thread reads it.
            let mut inputs = Vec::with_capacity(start.deps.len());
            let mut lost = Vec::new();
            {
                let mut store = self.store.lock().expect("store");
                for d in start.deps {
                    match store.locate(d.task) {
                        Ok(Some(located)) => inputs.push((d.task, located)),
                        _ => lost.push((d.task, d.holders)),
                    }
                }
            }
            if !lost.is_empty() {
                self.state
                    .cannot_start(start.task, CannotStart::InputsLost(lost));
                continue;
            }
            self.executor.submit(Job {
                task: start.task,
                kernel,
                args: start.args,
                inputs,
            });
        }
    }

    /// True while results past the target are still being written to disk. Starting tasks
    /// then would pile new results on top faster than the disk takes them (spills no longer
    /// stall the loop, which used to be the brake), so they wait for the commit. Not a pause:
    /// the scheduler goes on sending work, and a failed write (nothing left in flight) does
    /// not hold tasks back.
    fn spill_backlog(&self) -> bool {
        let Some(target) = self.managed_target() else {
            return false;
        };
        let store = self.store.lock().expect("store");
        store.spilling() > 0 && store.in_memory() > target
    }

    /// Bytes of results the store may keep in memory; None without a memory limit.
    fn managed_target(&self) -> Option<u64> {
        (self.opts.memory_limit > 0)
            .then_some(self.opts.memory.target_bytes(self.opts.memory_limit))
    }

    fn heartbeat(&mut self) {
        let sample = sys::cpu_seconds().map(|cpu| (sys::steady_unix_now(), cpu));
        let cpu_permille = match (self.cpu_sample, sample) {
            (Some(before), Some(after)) => sys::cpu_permille(before, after),
            _ => 0,
        };
        self.cpu_sample = sample;
        let spilled = self.store.lock().expect("store").on_disk();
        self.state
            .heartbeat(sys::rss_bytes(), spilled, cpu_permille);
    }

    /// Applies the memory thresholds; true when the worker must restart.
    fn check_memory(&mut self) -> bool {
        let limit = self.opts.memory_limit;
        if limit == 0 {
            return false;
        }
        let policy = self.opts.memory;
        // Results already being written count as gone (see Store::start_spill).
        spill(&self.store, policy.target_bytes(limit), &self.tx);
        let mut rss = sys::rss_bytes();
        if policy.over_spill(limit, rss) {
            // Recycled receive buffers and freed heap are given back before any result is
            // spilled.
            crate::protocol::hugebuf::trim_pool();
            sys::release_free_memory();
            rss = sys::rss_bytes();
        }
        let in_memory = self.store.lock().expect("store").in_memory();
        if let Some(keep) = policy.rss_keep(limit, rss, in_memory) {
            spill(&self.store, keep, &self.tx);
        }
        let rss = sys::rss_bytes();
        let pressure = policy.pressure(limit, rss);
        let percent = 100.0 * rss as f64 / limit as f64;
        if self.state.set_paused(pressure != Pressure::Normal) {
            tracing::info!(
                "{} at {percent:.0}% of the memory limit",
                if self.state.paused() {
                    "pausing"
                } else {
                    "resuming"
                },
            );
            self.heartbeat();
        }
        if pressure == Pressure::Terminate {
            tracing::error!("memory at {percent:.0}% of the limit: restarting");
            return true;
        }
        false
    }

    async fn flush(
        &mut self,
        writer: &mut Writer,
    ) -> std::result::Result<(), protocol::ProtocolError> {
        if !self.programs_ended.is_empty() {
            let ended = std::mem::take(&mut self.programs_ended);
            self.state.send(WorkerToScheduler::ProgramsEnded(ended));
        }
        for msg in self.state.take_messages() {
            writer.write_control(&msg).await?;
        }
        writer.flush().await
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    /// A program building options itself gets the same bounds as `worker`'s flags, before
    /// any thread or connection: 100000 threads or a 1 MiB limit is exit 2, not a crash.
    #[tokio::test]
    async fn out_of_range_options_are_refused_before_anything_starts() {
        let secret = Secret::generate().unwrap();
        let mut opts = WorkerOptions::new("tcp://127.0.0.1:9", secret);
        opts.nthreads = 100_000;
        let err = run(opts.clone(), Registry::builtin()).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("1 to 1024"), "{err}");
        opts.nthreads = 2;
        opts.memory_limit = 1 << 20;
        let err = run(opts.clone(), Registry::builtin()).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("64.0 MiB"), "{err}");
        opts.memory_limit = 64 << 20;
        assert!(opts.check().is_ok());
    }
}
