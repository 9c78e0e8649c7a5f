//! The cluster daemon (`rdask-jobqueue cluster-daemon --name N`, started detached by `up`):
//! the scheduler in-process, a control socket, and the deployer loop.
//!
//! The deployer is a thin loop on the main thread; the scaling policy is the [`Scaler`]'s,
//! every other decision is a pure function of [`super::deployer`], and every job is the
//! [`Ledger`]'s. Each turn it starts a poll of the batch states of all unfinished jobs in
//! one call (every `poll_interval`), asks the scheduler for its workers (each reporting its
//! batch job id) and load, builds an [`Observation`] and carries out the [`Decision`]s:
//! - Submit: record the job (`begin_submit`) *before* running the submit command and its id
//!   (`submitted`) *after*, so `down --force` can always find it.
//! - Cancel: record our reason, then cancel (failed cancels are retried each turn).
//! - Retire: retire the job's workers through the scheduler (their unique results are copied
//!   to survivors first), and only then cancel the job.
//!
//! Batch commands (submit, poll, cancel) may hang up to their timeout (60 s by default), so
//! they run on threads of their own and report back as messages: the loop never waits for
//! one, and `status` is answered while `sbatch` hangs. At most one poll and one cancel round
//! run at a time; a submission in flight is `submitting` in the ledger (so the scaler counts
//! it) but not yet uncertain (so nothing cancels it by name).
//!
//! Control requests, command outcomes and finished retirements arrive on one channel, so the
//! loop is the only writer of the ledger (the rule the ledger states) and needs no locks.
//! Async work (the scheduler, the socket, retirements) runs on a tokio runtime beside it.
//! Every timeout is measured on the monotonic clock ([`Instant`]); the wall clock is only
//! for what the ledger keeps and `status` shows.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::control::{ClusterStatus, JobView, Reply, Request, WorkerView};
use super::deployer::{self, ByName, CancelOutcome, Uncertain, UncertainSince};
use super::{now, ClusterDir, ClusterRecord};
mod tasks;

use self::tasks::forward_task_events;
use super::journal::{Book, Journal};
use crate::client::{Client, TaskEvent};
use crate::dashboard::{self, Dashboard, DashboardOptions};
use crate::error::{Error, Result};
use crate::jobqueue::ledger::{EndReason, Ledger, LedgerState};
use crate::jobqueue::scaler::{
    Decision, JobObservation, Load, Observation, Scaler, Target, Tick, WorkerObservation,
};
use crate::jobqueue::{script, JobQueue, JobState, SubmitFailure};
use crate::protocol::messages::StatusReport;
use crate::scheduler::server::{self, SchedulerHandle, SchedulerOptions, Stopped};

/// What reaches the deployer loop.
enum Msg {
    Control(Request, tokio::sync::oneshot::Sender<Reply>),
    /// A retirement finished (or failed): the job can be cancelled now.
    Retired {
        job_id: String,
        error: Option<String>,
    },
    /// SIGTERM or SIGINT: shut down as `down` would.
    Signal,
    /// Submit commands came back: `(seq, name, outcome)` each.
    Submitted(Vec<SubmitOutcome>),
    /// An array's submit command came back.
    SubmittedArray(ArrayOutcome),
    /// A poll came back: uncertain entries cancelled by name, then the batch states.
    Polled(Polled),
    /// A round of cancels came back.
    Cancelled {
        ids: Vec<String>,
        outcome: CancelOutcome,
    },
    /// `down`'s cancels and wait are done: their outcome and the ledger they wrote.
    Finished(Box<(Result<String>, Ledger)>),
    /// Task arrays' events from the scheduler (tasks started and ended, arrays refused),
    /// coalesced: each batch is one journal append.
    TaskEvents(Vec<TaskEvent>),
}

type SubmitOutcome = (u64, String, std::result::Result<String, SubmitFailure>);

/// An array submission: its elements' ledger seqs, its name, and its elements' ids.
struct ArrayOutcome {
    seqs: Vec<u64>,
    name: String,
    outcome: std::result::Result<Vec<String>, SubmitFailure>,
}

/// What a poll thread found.
struct Polled {
    /// Uncertain entries `(seq, name)` and what cancelling each by name did.
    by_name: Vec<(u64, String, ByName)>,
    /// The batch states of the unfinished jobs, and why the pending ones wait.
    states: Result<(BTreeMap<String, JobState>, BTreeMap<String, String>)>,
}

/// How long retiring one job's workers may take before the job is cancelled anyway.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(300);
/// Submit commands run at once, at most: enough to hide their latency, few enough not to
/// flood a busy controller.
const PARALLEL_SUBMITS: usize = 16;
/// How long `down` waits for cancelled jobs to be seen finished.
const DOWN_WAIT: Duration = Duration::from_secs(60);
/// Lines of a dead job's output shown in `status` and the log.
const JOB_OUTPUT_LINES: usize = 5;
/// Task events journaled in one append at most (one sync each).
const TASK_EVENTS_PER_APPEND: usize = 4096;
/// The longest control request read: a `submit --each-line` carries its lines.
const MAX_REQUEST_BYTES: u64 = 256 << 20;

pub fn run(name: &str) -> Result<i32> {
    // Everything the daemon creates (socket, scripts' siblings) is the owner's only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = ClusterDir::new(name)?;
    let mut rec = dir.require_record()?;
    let secret = dir.secret()?;
    let _lock = hold_lock(&dir)?;
    let ledger = Ledger::open(&dir.ledger_path(), name)?;
    if ledger.is_closed() {
        return Err(Error::runtime(format!("cluster `{name}` is closed")));
    }
    // The journal outlives each `up` (the ids go on, so the tasks' output directories never
    // collide); submissions an earlier daemon left unfinished are lost with it.
    let (journal, entries) = Journal::open(&dir.journal_path(), name)?;
    let book = Book::from_entries(&entries);
    drop(entries);
    let rt = crate::rt::runtime()?;
    let bind_ip: std::net::IpAddr = rec
        .bind_host
        .parse()
        .map_err(|_| Error::invalid(format!("bind address {}", rec.bind_host)))?;
    let mut opts = SchedulerOptions::new((bind_ip, rec.port).into(), secret.clone());
    opts.contact_host = rec.contact_address.clone();
    if let Some(n) = rec.max_graph_tasks {
        opts.config.max_graph_tasks = n as usize;
    }
    let handle = rt.block_on(server::start(opts))?;
    // Debug builds (the test suite's) can stand a bug in the scheduler's core, to show that
    // the daemon keeps the cluster's jobs and stays reachable when it fails.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("RDASK_DEBUG_FAIL_SCHEDULER_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let _guard = rt.enter();
        handle.inject_panic_after(Duration::from_millis(ms));
    }
    // Our own client dials loopback when the scheduler listens everywhere.
    let local = if handle.local_addr.ip().is_unspecified() {
        format!("tcp://127.0.0.1:{}", handle.local_addr.port())
    } else {
        format!("tcp://{}", handle.local_addr)
    };
    let client = Arc::new(rt.block_on(Client::connect(&local, &secret))?);
    // The dashboard is a view: if it cannot listen the cluster still runs (the log says why).
    let mut dash_opts = DashboardOptions::beside(&handle, &secret);
    dash_opts.log_file = Some(dir.daemon_log());
    if let Some(port) = rec.dashboard_port {
        dash_opts.bind.set_port(port);
    }
    dash_opts.metrics_token = rec.metrics_token.clone();
    let dash = match rt.block_on(dashboard::start(&handle, dash_opts)) {
        Ok(d) => {
            tracing::info!("dashboard at {}", d.url);
            Some(d)
        }
        Err(e) => {
            tracing::warn!("no dashboard: {e}");
            None
        }
    };

    let (tx, rx) = mpsc::channel::<Msg>();
    // Subscribed before any submission can be made: no event of ours is missed.
    rt.spawn(forward_task_events(client.task_events(), tx.clone()));
    let socket = dir.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener = {
        let _guard = rt.enter();
        UnixListener::bind(&socket)
            .map_err(Error::io(format!("listening on {}", socket.display())))?
    };
    let replying = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.spawn(serve_control(listener, tx.clone(), replying.clone()));
    let sig_tx = tx.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = sig_tx.send(Msg::Signal);
    });

    // Published last: `up` waits for the address and pid, then pings the socket.
    rec.address = Some(handle.address.clone());
    rec.pid = Some(std::process::id());
    rec.dashboard = dash.as_ref().map(|d| d.url.clone());
    dir.write_record(&rec)?;
    tracing::info!(
        "cluster `{name}`: scheduler at {}, control socket {}",
        handle.address,
        socket.display()
    );

    let scaler = Scaler::new(rec.scaler.clone())?;
    let mut d = Deployer {
        queue: JobQueue::with_native(&rec.config),
        own_binary: std::env::current_exe().map_err(Error::io("finding this program"))?,
        dir,
        rec,
        ledger,
        scaler,
        in_flight: BTreeSet::new(),
        polling: false,
        cancelling: false,
        uncertain_since: UncertainSince::default(),
        target: Target::Fixed { workers: 0 },
        client,
        scheduler: &handle,
        scheduler_failed: false,
        rt: &rt,
        tx,
        last_poll: None,
        last_tick: None,
        last_status: None,
        pending_reasons: BTreeMap::new(),
        to_cancel: BTreeSet::new(),
        just_ended: Vec::new(),
        submit_failures: 0,
        submit_successes: 0,
        errors: VecDeque::new(),
        journal,
        book,
        dashboard: dash.as_ref(),
        decisions: VecDeque::new(),
    };
    d.abandon_unfinished("an earlier daemon of this cluster ended first");
    let code = d.main_loop(rx);
    handle.shutdown();
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(3), handle.stopped()).await;
        // The last reply (to `down`) must reach its caller before the runtime goes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while replying.load(std::sync::atomic::Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let _ = std::fs::remove_file(&socket);
    Ok(code)
}

/// What the daemon does once its connection to the scheduler is lost.
#[derive(Debug, PartialEq, Eq)]
enum AfterLoss {
    /// Someone shut the scheduler down: its workers are gone, so the jobs go too.
    EndCluster,
    /// The scheduler failed (its own bug): no reason to cancel anyone's jobs; why.
    KeepJobs(String),
}

/// Decides by how the scheduler ended (None: it did not say within the wait).
fn after_scheduler_lost(how: Option<&Stopped>) -> AfterLoss {
    match how {
        Some(Stopped::Failed(why)) => AfterLoss::KeepJobs(why.clone()),
        Some(Stopped::Shutdown(_)) | None => AfterLoss::EndCluster,
    }
}

/// Takes the cluster's daemon lock for as long as the returned file lives, and writes our pid
/// into it: the lock is how every command finds the live daemon ([`ClusterDir::live_daemon`]).
fn hold_lock(dir: &ClusterDir) -> Result<std::fs::File> {
    use std::io::{Seek, Write};
    let path = dir.lock_path();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    // A command checking liveness holds a shared lock for an instant: wait that out, but not
    // another daemon.
    let deadline = Instant::now() + Duration::from_secs(2);
    while file.try_lock().is_err() {
        if Instant::now() > deadline {
            return Err(Error::runtime(format!(
                "another daemon of cluster `{}` holds {}",
                dir.name,
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    written.map_err(Error::io(format!(
        "writing our pid into {}",
        path.display()
    )))?;
    Ok(file)
}

/// Accepts control connections: one JSON request line, one JSON reply line.
/// `replying` counts the connections whose reply is not written yet.
async fn serve_control(
    listener: UnixListener,
    tx: mpsc::Sender<Msg>,
    replying: Arc<std::sync::atomic::AtomicUsize>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let tx = tx.clone();
        let replying = replying.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            // A request is one short line; a longer one is not ours to buffer.
            // A request is one line: short, or a submission with its lines or files.
            let read = tokio::io::AsyncReadExt::take(read, MAX_REQUEST_BYTES);
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            replying.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let _written = Decrement(replying);
            let reply = match serde_json::from_str::<Request>(line.trim()) {
                Err(e) => Reply::Error {
                    message: format!("bad request: {e}"),
                    invalid: true,
                },
                Ok(req) => {
                    let (rtx, rrx) = tokio::sync::oneshot::channel();
                    if tx.send(Msg::Control(req, rtx)).is_err() {
                        return;
                    }
                    match rrx.await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            let mut text = serde_json::to_string(&reply).expect("a reply serialises");
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
            let _ = write.flush().await;
        });
    }
}

/// Counts down when a control connection's reply is written (or abandoned).
struct Decrement(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct Deployer<'a> {
    dir: ClusterDir,
    rec: ClusterRecord,
    ledger: Ledger,
    scaler: Scaler,
    target: Target,
    queue: JobQueue,
    own_binary: PathBuf,
    client: Arc<Client>,
    scheduler: &'a SchedulerHandle,
    /// The scheduler's core failed (a bug): the jobs are left alone until `down`.
    scheduler_failed: bool,
    rt: &'a tokio::runtime::Runtime,
    tx: mpsc::Sender<Msg>,
    last_poll: Option<Instant>,
    last_tick: Option<Tick>,
    last_status: Option<StatusReport>,
    /// Why pending jobs wait, from the last poll.
    pending_reasons: BTreeMap<String, String>,
    /// Jobs we decided to cancel whose cancel command has not succeeded yet.
    to_cancel: BTreeSet<String>,
    /// Submissions (ledger seqs) whose submit command is running.
    in_flight: BTreeSet<u64>,
    /// A poll is running.
    polling: bool,
    /// A round of cancels is running.
    cancelling: bool,
    /// Since when each uncertain submission has been uncertain (monotonic).
    uncertain_since: UncertainSince,
    /// Jobs seen finished since the last tick: the scaler judges each once (a job that died
    /// before its workers connected counts towards the back-off and the pause).
    just_ended: Vec<String>,
    submit_failures: u32,
    submit_successes: u32,
    errors: VecDeque<String>,
    /// Submissions of programs and their tasks' ends: this loop is its only writer.
    journal: Journal,
    /// The journal reduced (what `tasks` shows).
    book: Book,
    dashboard: Option<&'a Dashboard>,
    /// The latest scaling decisions with their reasons, for the dashboard, newest last.
    decisions: VecDeque<String>,
}

impl Deployer<'_> {
    fn main_loop(&mut self, rx: mpsc::Receiver<Msg>) -> i32 {
        let mut interval_now = Duration::from_secs_f64(self.rec.interval.clamp(0.05, 86_400.0));
        loop {
            // After a scheduler failure there is nothing to observe: status and down are
            // still served, and the jobs are left alone until someone decides.
            let observed = if self.scheduler_failed {
                Ok(())
            } else {
                self.tick()
            };
            if let Err(e) = observed {
                // Our own bug (a failed scheduler core) is no reason to cancel the jobs.
                if self.client_lost() && !self.scheduler_failure() {
                    // Someone shut the scheduler down: its workers are gone, so are our jobs.
                    self.note(format!(
                        "the scheduler stopped ({e}); shutting the cluster down"
                    ));
                    return match self.shutdown(&rx) {
                        Ok(_) => 0,
                        Err(_) => 1,
                    };
                }
                self.note(e.to_string());
            }
            let next = Instant::now() + interval_now;
            // Serve requests until the next tick; a new target ticks at once.
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                let msg = match rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return 1,
                };
                match msg {
                    Msg::Control(Request::Ping, reply) => {
                        let _ = reply.send(Reply::Ok {
                            message: "pong".into(),
                        });
                    }
                    Msg::Control(Request::Scale { target, interval }, reply) => {
                        if let Err(e) = target.validate() {
                            let _ = reply.send(Reply::Error {
                                message: e.to_string(),
                                invalid: true,
                            });
                            continue;
                        }
                        tracing::info!("target: {}", target.describe(self.processes()));
                        // Asking again is how a paused cluster resumes (docs/clusters.md).
                        if let Some(p) = self.scaler.failures().paused.clone() {
                            tracing::info!("submissions resumed (they were paused: {})", p.reason);
                        }
                        self.scaler.resume();
                        self.target = target;
                        if let Some(i) = interval.filter(|i| i.is_finite() && *i > 0.0) {
                            self.rec.interval = i.clamp(0.05, 86_400.0);
                            interval_now = Duration::from_secs_f64(self.rec.interval);
                        }
                        let _ = reply.send(Reply::Ok {
                            message: "target set".into(),
                        });
                        break;
                    }
                    Msg::Control(Request::AdaptOff, reply) => {
                        let (target, counted) =
                            deployer::adapt_off(self.last_tick.as_ref(), self.processes());
                        self.target = target;
                        let _ = reply.send(Reply::Ok {
                            message: format!("adapt off; keeping {counted} jobs"),
                        });
                        break;
                    }
                    Msg::Control(Request::Status, reply) => {
                        // Fresh from the scheduler (microseconds): `scale --wait` polls it.
                        if let Ok(s) = self.scheduler_status() {
                            self.note_workers(&s);
                            self.last_status = Some(s);
                        }
                        let _ = reply.send(self.status());
                    }
                    Msg::Control(Request::Down, reply) => {
                        let result = self.shutdown(&rx);
                        let ok = result.is_ok();
                        let _ = reply.send(match result {
                            Ok(m) => Reply::Ok { message: m },
                            Err(e) => Reply::Error {
                                message: e.to_string(),
                                invalid: false,
                            },
                        });
                        return if ok { 0 } else { 1 };
                    }
                    Msg::Signal => {
                        tracing::info!("signal: shutting down");
                        return match self.shutdown(&rx) {
                            Ok(_) => 0,
                            Err(_) => 1,
                        };
                    }
                    Msg::Retired { job_id, error } => {
                        if let Some(e) = error {
                            self.note(format!("retiring the workers of job {job_id}: {e}"));
                        }
                        self.to_cancel.insert(job_id);
                        self.flush_cancels();
                    }
                    Msg::Control(Request::Submit { spec }, reply) => {
                        let _ = reply.send(self.submit_tasks(*spec));
                    }
                    Msg::Control(Request::Tasks { submission, states }, reply) => {
                        let _ = reply.send(self.tasks_view(submission, states.as_deref()));
                    }
                    Msg::Control(Request::CancelTasks { submission, tasks }, reply) => {
                        let _ = reply.send(self.cancel_tasks(submission, tasks));
                    }
                    Msg::TaskEvents(batch) => self.on_task_events(batch),
                    Msg::Submitted(outcomes) => self.on_submitted(outcomes),
                    Msg::SubmittedArray(array) => self.on_submitted_array(array),
                    Msg::Polled(polled) => self.on_polled(polled),
                    Msg::Cancelled { ids, outcome } => self.on_cancelled(ids, outcome),
                    // Only sent while going down, which never returns to this loop.
                    Msg::Finished(_) => {}
                }
            }
        }
    }

    fn processes(&self) -> usize {
        self.rec.scaler.processes.max(1)
    }

    fn note(&mut self, e: String) {
        tracing::warn!("{e}");
        self.errors.push_back(e);
        while self.errors.len() > 10 {
            self.errors.pop_front();
        }
    }

    /// Whether the scheduler ended by failing rather than by a shutdown; notes why once.
    /// Its end is waited for a moment: the lost connection is seen before the supervisor
    /// has reported how the core ended.
    fn scheduler_failure(&mut self) -> bool {
        let how = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), self.scheduler.ended()).await
        });
        let AfterLoss::KeepJobs(why) = after_scheduler_lost(how.ok().as_ref()) else {
            return false;
        };
        self.scheduler_failed = true;
        tracing::error!("the scheduler failed: {why}");
        self.note(format!(
            "the scheduler failed ({why}); its jobs are left running: `down` cancels them"
        ));
        true
    }

    fn client_lost(&self) -> bool {
        self.rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), self.client.status()).await
            })
            .map(|r| r.is_err())
            .unwrap_or(false)
    }

    fn scheduler_status(&self) -> Result<StatusReport> {
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), self.client.status())
                .await
                .map_err(|_| Error::runtime("the scheduler did not answer within 10 s"))?
        })
    }

    /// Starts a poll on a thread of its own: whatever may be queued under the name of an
    /// uncertain submission is cancelled by name, then every unfinished job's state is asked
    /// for in one call. Its outcome comes back as [`Msg::Polled`].
    fn start_poll(&mut self) {
        if self.polling {
            return;
        }
        self.polling = true;
        self.last_poll = Some(Instant::now());
        let uncertain: Vec<(u64, String, PathBuf)> =
            deployer::uncertain(self.ledger.jobs(), &self.in_flight)
                .into_iter()
                .map(|(seq, name)| {
                    let script = self.dir.job_script(self.rec.config.system, &name);
                    (seq, name, script)
                })
                .collect();
        let ids = self.ledger.unfinished_ids();
        let queue = self.queue.clone();
        let tx = self.tx.clone();
        self.polling = self.background("poll", move || {
            // The elements of an array share its name: one cancel answers for all of them.
            let mut done_by_name: BTreeMap<String, ByName> = BTreeMap::new();
            let by_name = uncertain
                .into_iter()
                .map(|(seq, name, script)| {
                    let done = done_by_name
                        .entry(name.clone())
                        .or_insert_with(|| match queue.cancel_by_name(&name, &script) {
                            Ok(true) => ByName::Cancelled,
                            Ok(false) => ByName::Unsupported,
                            Err(e) => ByName::Failed(e.to_string()),
                        })
                        .clone();
                    (seq, name, done)
                })
                .collect();
            let states = if ids.is_empty() {
                Ok(Default::default())
            } else {
                queue.states(&ids).map(|states| {
                    let pending: Vec<String> = states
                        .iter()
                        .filter(|(_, s)| **s == JobState::Pending)
                        .map(|(id, _)| id.clone())
                        .collect();
                    let reasons = queue.pending_reasons(&pending);
                    (states, reasons)
                })
            };
            let _ = tx.send(Msg::Polled(Polled { by_name, states }));
        });
    }

    /// Runs `work` (batch commands) on a thread of its own, off the loop. False (noted) if
    /// no thread could start: `work` never runs and its outcome never comes.
    fn background(&mut self, what: &str, work: impl FnOnce() + Send + 'static) -> bool {
        let spawned = std::thread::Builder::new()
            .name(format!("rdask-{what}"))
            .spawn(work);
        if let Err(e) = &spawned {
            self.note(format!("starting a thread for the {what}: {e}"));
        }
        spawned.is_ok()
    }

    /// A poll came back: uncertain submissions judged, then the batch states recorded.
    fn on_polled(&mut self, polled: Polled) {
        self.polling = false;
        self.resolve_uncertain(polled.by_name);
        let (states, reasons) = match polled.states {
            Ok(v) => v,
            Err(e) => {
                self.note(format!("polling job states: {e}"));
                return;
            }
        };
        self.pending_reasons = reasons;
        let changed = match self.ledger.update_states(&states, now()) {
            Ok(c) => c,
            Err(e) => {
                self.note(format!("polling job states: {e}"));
                return;
            }
        };
        for id in changed {
            let Some(j) = self.ledger.job(&id) else {
                continue;
            };
            tracing::info!("job {id}: {}", j.state);
            if j.is_finished() {
                self.just_ended.push(id.clone());
                self.explain_end(&id);
            }
        }
    }

    /// A job that ended before any of its workers connected, not by our scale-down or
    /// shutdown: find out why, as far as its batch state and the end of its output tell,
    /// and put it in the ledger (for `status`) and the log.
    fn explain_end(&mut self, id: &str) {
        let Some(j) = self.ledger.job(id) else {
            return;
        };
        if j.workers_seen_at.is_some()
            || matches!(
                j.end_reason,
                Some(EndReason::ScaledDown | EndReason::Shutdown)
            )
        {
            return;
        }
        let state = j.state;
        let name = j.name.clone();
        // The first line stands alone (`status` lists ended jobs one line each); the end of
        // the job's output follows.
        let mut detail = format!("ended ({state}) before any of its workers connected");
        match super::job_output_tail(&self.dir, &self.rec, id, &name, JOB_OUTPUT_LINES) {
            Some((file, tail)) => {
                let last = tail.lines().last().unwrap_or_default().to_string();
                detail.push_str(&format!(": {last}\n{} ends with:\n{tail}", file.display()));
            }
            None => detail.push_str("; it wrote no output"),
        }
        tracing::warn!("job {id} ({name}) {detail}");
        if let Err(e) = self.ledger.set_detail(id, &detail) {
            self.note(format!("recording why job {id} ended: {e}"));
        }
    }

    /// Submissions whose outcome is unknown (the command timed out, or lost its controller
    /// mid-way) stay `submitting`: the job may exist under its name. Each poll cancels by name
    /// whatever may be there; once the controller has had time to register anything it
    /// accepted late, the entry is closed as not submitted, and the scaler submits afresh.
    /// Where the system cannot cancel by name the entry stays, shown in `status`, until
    /// `down --force --forget-unconfirmed` after a look at the queue.
    fn resolve_uncertain(&mut self, by_name: Vec<(u64, String, ByName)>) {
        let settle = deployer::settle_time(self.rec.config.command_timeout);
        let now_mono = Instant::now();
        let uncertain = deployer::uncertain(self.ledger.jobs(), &self.in_flight);
        let waited = self.uncertain_since.observe(&uncertain, now_mono);
        for (seq, name, done) in by_name {
            // Resolved meanwhile (only a poll resolves them, but stay safe).
            let Some(waited) = waited.get(&seq) else {
                continue;
            };
            match deployer::judge_uncertain(&done, *waited, settle) {
                Uncertain::GiveUp => {
                    let why = "its submission was never confirmed; cancelled by name";
                    if let Err(e) = self.ledger.submit_failed(seq, why, now()) {
                        self.note(format!("job {name}: {e}"));
                    }
                }
                Uncertain::Wait => {}
                Uncertain::AskUser => self.note(format!(
                    "job {name}: its submission was never confirmed and {} cannot cancel by name; \
                     look for it in the queue, cancel it by hand, then `rdask-jobqueue down --force \
                     --forget-unconfirmed --name {}`",
                    self.rec.system, self.dir.name
                )),
                Uncertain::Retry(e) => self.note(format!("cancelling job {name} by name: {e}")),
            }
        }
    }

    /// The scheduler's workers grouped by the ledger's id of the job each one reports.
    fn workers_by_job(&self, status: &StatusReport) -> BTreeMap<String, Vec<WorkerObservation>> {
        deployer::workers_by_job(self.ledger.jobs(), &status.workers, self.queue.system())
    }

    /// What the scheduler's workers say about our jobs: each job's workers, and the ledger
    /// updated with it (first worker seen; a job with workers runs, whatever the last poll
    /// said, even one the batch system had lost from view).
    fn note_workers(&mut self, status: &StatusReport) -> BTreeMap<String, Vec<WorkerObservation>> {
        let t = now();
        let by_job = self.workers_by_job(status);
        for id in by_job.keys() {
            let result = self.ledger.workers_seen(id, t).and_then(|_| {
                let Some(state) = self.ledger.job(id).map(|j| j.state) else {
                    return Ok(());
                };
                let proven = deployer::state_with_workers(state, true);
                match proven.batch_state() {
                    Some(s) if proven != state => self.ledger.set_state(id, s, t).map(|_| ()),
                    _ => Ok(()),
                }
            });
            if let Err(e) = result {
                self.note(format!("recording the workers of job {id}: {e}"));
            }
        }
        by_job
    }

    fn tick(&mut self) -> Result<()> {
        let poll_due = self
            .last_poll
            .is_none_or(|t| t.elapsed().as_secs_f64() >= self.rec.poll_interval);
        if poll_due {
            self.start_poll();
        }
        let status = self.scheduler_status()?;
        let mut by_job = self.note_workers(&status);
        let mut jobs = Vec::new();
        let mut submitting = 0;
        for j in self.ledger.unfinished() {
            let Some(id) = j.job_id.as_deref() else {
                submitting += 1;
                continue;
            };
            jobs.push(JobObservation {
                job_id: id.to_string(),
                state: j.state.batch_state().unwrap_or(JobState::Pending),
                submitted_at: j.submitted_at.unwrap_or(j.recorded_at),
                started_at: j.started_at,
                workers_seen_at: j.workers_seen_at,
                workers: by_job.remove(id).unwrap_or_default(),
            });
        }
        // Jobs that ended since the last tick, once, with their final state.
        for id in std::mem::take(&mut self.just_ended) {
            let Some(j) = self.ledger.job(&id) else {
                continue;
            };
            let Some(state) = j.state.batch_state().filter(|s| s.is_finished()) else {
                continue;
            };
            jobs.push(JobObservation {
                job_id: id.clone(),
                state,
                submitted_at: j.submitted_at.unwrap_or(j.recorded_at),
                started_at: j.started_at,
                workers_seen_at: j.workers_seen_at,
                workers: Vec::new(),
            });
        }
        let c = &status.tasks;
        let obs = Observation {
            now: now(),
            target: self.target.clone(),
            jobs,
            submitting,
            load: Load {
                queued_tasks: (c.waiting + c.queued) as usize,
                processing_tasks: c.processing as usize,
                work_seconds: status.pending_work_us as f64 / 1e6,
                program_cpus: deployer::program_cpus(
                    &status.queued_programs,
                    c.processing,
                    !self.book.unfinished().is_empty(),
                ),
            },
            submit_failures: std::mem::take(&mut self.submit_failures),
            submit_successes: std::mem::take(&mut self.submit_successes),
        };
        let was_paused = self.scaler.failures().paused.is_some();
        let tick = self.scaler.tick(&obs);
        self.last_status = Some(status);
        if let (false, Some(p)) = (was_paused, &self.scaler.failures().paused) {
            let flag = if self.dir.name == super::DEFAULT_NAME {
                String::new()
            } else {
                format!(" --name {}", self.dir.name)
            };
            self.note(format!(
                "submissions paused: {}; fix the cause (`rdask-jobqueue status{flag}` shows the \
                 last job's output), then `rdask-jobqueue scale K{flag}` or `adapt` resumes",
                p.reason
            ));
        }
        // The scaler counts every decision as carried out: none may be dropped on an error.
        for decision in tick.decisions.clone() {
            tracing::info!("decision: {decision}");
            match decision {
                Decision::Submit { jobs } => {
                    self.submit(jobs);
                    // See the new jobs' states soon.
                    self.last_poll = None;
                }
                Decision::Cancel { job_id, reason } => {
                    self.to_cancel.insert(job_id.clone());
                    if let Err(e) = self.ledger.set_end_reason(&job_id, reason.into()) {
                        self.note(format!("recording why job {job_id} ends: {e}"));
                    }
                }
                Decision::Retire { job_id, workers } => {
                    if let Err(e) = self.ledger.set_end_reason(&job_id, EndReason::ScaledDown) {
                        self.note(format!("recording why job {job_id} ends: {e}"));
                    }
                    self.retire(job_id, workers);
                }
            }
        }
        for decision in &tick.decisions {
            let line = super::panel::decision_line(decision, &tick, now());
            self.decisions.push_back(line);
            if self.decisions.len() > super::panel::DECISIONS_SHOWN {
                self.decisions.pop_front();
            }
        }
        self.last_tick = Some(tick);
        self.flush_cancels();
        self.publish_panel();
        Ok(())
    }

    /// `n` jobs: recorded (one ledger write), written, and submitted off the loop
    /// ([`submit_all`]); each is recorded again with its id or its failure when the commands
    /// come back ([`Msg::Submitted`]). Failures count for the scaler's back-off and show in
    /// `status`. Several jobs are one array where the system has them and the configuration
    /// does not say `job_arrays = false` ([`Deployer::submit_array`]).
    fn submit(&mut self, n: usize) {
        if n > 1 && self.rec.config.job_arrays && self.queue.has_arrays() {
            return self.submit_array(n);
        }
        let named = match self.ledger.begin_submits(n, now()) {
            Ok(v) => v,
            Err(e) => {
                // Not recorded, so not submitted: nothing may run that the ledger does not know.
                self.submit_failures += 1;
                self.note(format!("recording {n} new job(s): {e}; nothing submitted"));
                return;
            }
        };
        let scripts: Vec<(u64, String, std::result::Result<PathBuf, Error>)> = named
            .into_iter()
            .map(|(seq, name)| {
                let written = self.write_script(&name);
                (seq, name, written)
            })
            .collect();
        let seqs: Vec<(u64, String)> = scripts.iter().map(|(s, n, _)| (*s, n.clone())).collect();
        self.in_flight.extend(seqs.iter().map(|(seq, _)| *seq));
        let queue = self.queue.clone();
        let tx = self.tx.clone();
        let started = self.background("submit", move || {
            let _ = tx.send(Msg::Submitted(submit_all(&queue, scripts)));
        });
        if !started {
            // No command ran: certainly not submitted.
            let failed = seqs
                .into_iter()
                .map(|(seq, name)| {
                    let why = Error::runtime("no thread could start to submit it");
                    (seq, name, Err(SubmitFailure::Refused(why)))
                })
                .collect();
            self.on_submitted(failed);
        }
    }

    /// The job script of the job (or array) `name`, written where `down --force` finds it.
    fn write_script(&self, name: &str) -> std::result::Result<PathBuf, Error> {
        // The one rendering of a cluster's job, also what `job-script --name` prints.
        let path = self.dir.job_script(self.rec.config.system, name);
        let address = self.rec.address.clone().unwrap_or_default();
        super::lifecycle::job_script_named(
            &self.rec.config,
            &address,
            &self.dir,
            name,
            &self.own_binary,
        )
        .and_then(|text| script::write_executable(&path, &text))
        .map(|()| path)
    }

    /// `n` jobs as one array: its elements recorded (one ledger write, one name), one script,
    /// one submit command off the loop; the elements' ids are recorded when it comes back
    /// ([`Msg::SubmittedArray`]). To the scaler and the ledger each element is a job: it is
    /// polled, retired, cancelled and replaced on its own.
    fn submit_array(&mut self, n: usize) {
        let (name, seqs) = match self.ledger.begin_array(n, now()) {
            Ok(v) => v,
            Err(e) => {
                self.submit_failures += 1;
                self.note(format!(
                    "recording an array of {n} jobs: {e}; nothing submitted"
                ));
                return;
            }
        };
        let written = self.write_script(&name);
        self.in_flight.extend(seqs.iter().copied());
        let queue = self.queue.clone();
        let tx = self.tx.clone();
        let (thread_seqs, thread_name) = (seqs.clone(), name.clone());
        let started = self.background("submit", move || {
            let outcome = match written {
                Ok(path) => queue.submit_array(&path, &thread_name, n),
                Err(e) => Err(SubmitFailure::Refused(e)),
            };
            let _ = tx.send(Msg::SubmittedArray(ArrayOutcome {
                seqs: thread_seqs,
                name: thread_name,
                outcome,
            }));
        });
        if !started {
            let why = Error::runtime("no thread could start to submit it");
            self.on_submitted_array(ArrayOutcome {
                seqs,
                name,
                outcome: Err(SubmitFailure::Refused(why)),
            });
        }
    }

    /// An array's submit command came back: its elements recorded with their ids (one
    /// write), or as failed, or left `submitting` to be cancelled by name. One command, so
    /// one success or one failure for the scaler's back-off.
    fn on_submitted_array(&mut self, array: ArrayOutcome) {
        let ArrayOutcome {
            seqs,
            name,
            outcome,
        } = array;
        for seq in &seqs {
            self.in_flight.remove(seq);
        }
        let ok = outcome.is_ok();
        self.submit_failures += u32::from(!ok);
        self.submit_successes += u32::from(ok);
        let t = now();
        let recorded = match outcome {
            Ok(ids) => {
                tracing::info!(
                    "submitted {name} as an array of {} jobs: {}",
                    ids.len(),
                    ids.join(" ")
                );
                let pairs: Vec<(u64, String)> = seqs.iter().copied().zip(ids).collect();
                self.ledger.submitted_all(&pairs, t)
            }
            Err(SubmitFailure::Refused(e)) => {
                self.note(format!(
                    "submitting {name} (an array of {}): {e}",
                    seqs.len()
                ));
                seqs.iter()
                    .try_for_each(|seq| self.ledger.submit_failed(*seq, &e.to_string(), t))
            }
            Err(SubmitFailure::Uncertain(e)) => {
                let mono = Instant::now();
                for seq in &seqs {
                    self.uncertain_since.start(*seq, mono);
                }
                self.note(format!(
                    "submitting {name} (an array of {}): {e}; it may be queued anyway: it will \
                     be cancelled by name",
                    seqs.len()
                ));
                Ok(())
            }
        };
        if let Err(e) = recorded {
            self.note(format!("recording the array {name}: {e}"));
        }
        // See the new jobs' states soon.
        self.last_poll = None;
    }

    /// Submit commands came back: each job recorded with its id or its failure.
    fn on_submitted(&mut self, outcomes: Vec<SubmitOutcome>) {
        for (seq, name, outcome) in outcomes {
            self.in_flight.remove(&seq);
            let ok = outcome.is_ok();
            self.submit_failures += u32::from(!ok);
            self.submit_successes += u32::from(ok);
            let recorded = match outcome {
                Ok(id) => {
                    tracing::info!("submitted {name} as job {id}");
                    self.ledger.submitted(seq, &id, now())
                }
                Err(SubmitFailure::Refused(e)) => {
                    self.note(format!("submitting {name}: {e}"));
                    self.ledger.submit_failed(seq, &e.to_string(), now())
                }
                // It may be queued: it stays `submitting` until resolved by name, counting
                // from now to settle.
                Err(SubmitFailure::Uncertain(e)) => {
                    self.uncertain_since.start(seq, Instant::now());
                    self.note(format!(
                        "submitting {name}: {e}; it may be queued anyway: it will be cancelled by name"
                    ));
                    Ok(())
                }
            };
            if let Err(e) = recorded {
                self.note(format!("recording job {name}: {e}"));
            }
        }
        // See the new jobs' states soon.
        self.last_poll = None;
    }

    /// Retires the workers (their unique results move to survivors), then the job is
    /// cancelled when the retirement reports back.
    fn retire(&mut self, job_id: String, workers: Vec<String>) {
        let ids: Vec<_> = self
            .last_status
            .as_ref()
            .map(|s| {
                deployer::workers_to_retire(
                    self.ledger.jobs(),
                    &s.workers,
                    &job_id,
                    &workers,
                    self.queue.system(),
                )
            })
            .unwrap_or_default();
        if ids.is_empty() {
            // Gone since the observation: nothing to hand over.
            self.to_cancel.insert(job_id);
            return;
        }
        let client = self.client.clone();
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            let error = match tokio::time::timeout(RETIRE_TIMEOUT, client.retire(&ids)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("not done after {} s", RETIRE_TIMEOUT.as_secs())),
            };
            let _ = tx.send(Msg::Retired { job_id, error });
        });
    }

    /// Cancels every job we decided to end that is not seen finished yet, on a thread of its
    /// own: in one call, or one by one when the call fails ([`deployer::cancel_with_fallback`]).
    /// One round at a time; what is decided meanwhile goes in the next.
    fn flush_cancels(&mut self) {
        let ids = deployer::still_to_cancel(self.ledger.jobs(), &self.to_cancel);
        self.to_cancel = ids.iter().cloned().collect();
        if ids.is_empty() || self.cancelling {
            return;
        }
        self.cancelling = true;
        let queue = self.queue.clone();
        let tx = self.tx.clone();
        self.cancelling = self.background("cancel", move || {
            let outcome = deployer::cancel_with_fallback(&ids, |batch| queue.cancel(batch));
            let _ = tx.send(Msg::Cancelled { ids, outcome });
        });
    }

    /// A round of cancels came back: the failed ones stay to be retried next turn.
    fn on_cancelled(&mut self, ids: Vec<String>, outcome: CancelOutcome) {
        self.cancelling = false;
        let done: Vec<&String> = ids
            .iter()
            .filter(|id| !outcome.failed.contains(id))
            .collect();
        if !done.is_empty() {
            tracing::info!(
                "cancelled jobs {}",
                done.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.last_poll = None;
        }
        for id in done {
            self.to_cancel.remove(id);
        }
        match outcome.error {
            Some(e) => self.note(format!("cancelling {}: {e} (retrying)", ids[0])),
            None if !outcome.failed.is_empty() => self.note(format!(
                "cancelling {} failed (retrying)",
                outcome.failed.join(" ")
            )),
            None => {}
        }
    }

    /// Waits for the submit commands still running (each ends by its timeout at the latest)
    /// and records their outcome: a job they queue must be in the ledger before the ledger
    /// is cancelled and closed.
    fn await_submissions(&mut self, rx: &mpsc::Receiver<Msg>) {
        let timeout = Duration::from_secs(self.rec.config.command_timeout.max(1));
        let deadline = Instant::now() + timeout + Duration::from_secs(5);
        while !self.in_flight.is_empty() {
            match self.recv_going_down(rx, Some(deadline)) {
                Some(Msg::Submitted(outcomes)) => self.on_submitted(outcomes),
                Some(Msg::SubmittedArray(array)) => self.on_submitted_array(array),
                Some(_) => {}
                // Still running past its own timeout: `down` cancels by name what it left.
                None => break,
            }
        }
    }

    /// While the cluster goes down: answers `status` (other requests are told the cluster
    /// is going down) and returns the next message of any other kind; None at `deadline`
    /// or once every sender is gone.
    fn recv_going_down(
        &mut self,
        rx: &mpsc::Receiver<Msg>,
        deadline: Option<Instant>,
    ) -> Option<Msg> {
        loop {
            let msg = match deadline {
                Some(d) => rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .ok()?,
                None => rx.recv().ok()?,
            };
            match msg {
                Msg::Control(Request::Status, reply) => {
                    let _ = reply.send(self.status());
                }
                Msg::Control(Request::Tasks { submission, states }, reply) => {
                    let _ = reply.send(self.tasks_view(submission, states.as_deref()));
                }
                Msg::TaskEvents(batch) => self.on_task_events(batch),
                Msg::Control(_, reply) => {
                    let _ = reply.send(Reply::Error {
                        message: "the cluster is going down".into(),
                        invalid: false,
                    });
                }
                other => return Some(other),
            }
        }
    }

    /// [`finish_jobs`] (cancels, then up to [`DOWN_WAIT`] of polls) on a thread of its own,
    /// with a copy of the ledger that comes back when it is done: meanwhile `status` is
    /// answered (with the jobs as they were when `down` began).
    fn finish_off_loop(&mut self, rx: &mpsc::Receiver<Msg>) -> Result<String> {
        let rec = self.rec.clone();
        let mut ledger = self.ledger.clone();
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("rdask-down".into())
            .spawn(move || {
                let result = finish_jobs(&rec, &mut ledger, false);
                let _ = tx.send(Msg::Finished(Box::new((result, ledger))));
            });
        if spawned.is_err() {
            return finish_jobs(&self.rec, &mut self.ledger, false);
        }
        loop {
            match self.recv_going_down(rx, None) {
                Some(Msg::Finished(done)) => {
                    let (result, ledger) = *done;
                    self.ledger = ledger;
                    return result;
                }
                Some(_) => {}
                // Cannot happen while we hold a sender; say so rather than hang.
                None => return Err(Error::runtime("the shutdown thread was lost")),
            }
        }
    }

    fn status(&self) -> Reply {
        let Some(s) = self.last_status.clone() else {
            return Reply::Error {
                message: "the daemon is starting; try again".into(),
                invalid: false,
            };
        };
        let t = now();
        // The same job mapping as the scaler's (ids normalised), not a second rule.
        let by_job = self.workers_by_job(&s);
        let workers_of = |id: &Option<String>| -> Vec<String> {
            id.as_ref()
                .and_then(|id| by_job.get(id))
                .map(|ws| ws.iter().map(|w| w.name.clone()).collect())
                .unwrap_or_default()
        };
        let reason = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| self.pending_reasons.get(id))
                .cloned()
        };
        let jobs = self
            .ledger
            .unfinished()
            .map(|j| {
                let reason = (j.state == LedgerState::Pending)
                    .then(|| reason(&j.job_id))
                    .flatten();
                JobView::of(j, workers_of(&j.job_id), reason, t)
            })
            .collect();
        let ended: Vec<JobView> = self
            .ledger
            .jobs()
            .iter()
            .filter(|j| j.is_finished())
            .map(|j| JobView::of(j, Vec::new(), None, t))
            .collect();
        let ended_jobs = ended[ended.len().saturating_sub(20)..].to_vec();
        let tick = self.last_tick.as_ref();
        Reply::Status(Box::new(ClusterStatus {
            name: self.dir.name.clone(),
            address: self.rec.address.clone().unwrap_or_default(),
            system: self.rec.system.name().to_string(),
            batch_path: self.queue.path(),
            pid: std::process::id(),
            target: self.target.clone(),
            processes: self.processes(),
            workers: s
                .workers
                .iter()
                .map(|w| WorkerView {
                    name: w.name.clone(),
                    job_id: w.job_id.clone(),
                    address: w.address.clone(),
                    host: w.host.clone(),
                    nthreads: w.nthreads,
                    memory: w.memory,
                    memory_limit: w.memory_limit,
                    state: w.state,
                    processing: w.processing,
                    results: w.results,
                    held_bytes: w.held_bytes,
                })
                .collect(),
            jobs,
            ended_jobs,
            tasks: s.tasks.clone(),
            wanted_jobs: tick.map_or(0, |t| t.wanted_jobs),
            counted_jobs: tick.map_or(0, |t| t.counted_jobs),
            blocked: tick.and_then(|t| t.blocked),
            failures: self.scaler.failures().clone(),
            errors: self.errors.iter().cloned().collect(),
            dashboard: self.rec.dashboard.clone(),
        }))
    }

    /// What the dashboard's Cluster page shows: the `status` reply, as a panel.
    fn publish_panel(&self) {
        let Some(d) = self.dashboard else {
            return;
        };
        if let Reply::Status(s) = self.status() {
            d.set_cluster(super::panel::of(&s, &self.decisions));
        }
    }

    /// `down`: workers first (closed by the scheduler, so they exit cleanly), then every
    /// unfinished job cancelled, then the ledger closed once the batch system shows them
    /// finished. If a cancel fails the ledger stays open for `down --force` to finish.
    fn shutdown(&mut self, rx: &mpsc::Receiver<Msg>) -> Result<String> {
        let _ = self.client.shutdown();
        self.await_submissions(rx);
        let result = self.finish_off_loop(rx);
        self.abandon_unfinished("the cluster went down first");
        if result.is_ok() {
            self.rec.closed_at = Some(now());
            self.dir.write_record(&self.rec)?;
        }
        result
    }
}

/// Runs the submit commands of `scripts` (each `(seq, name, written script)`), side by side
/// in groups of [`PARALLEL_SUBMITS`] (a submit command takes ~10 ms on an idle controller;
/// `scale 100` should not queue them one by one). Called off the deployer's loop.
fn submit_all(
    queue: &JobQueue,
    scripts: Vec<(u64, String, std::result::Result<PathBuf, Error>)>,
) -> Vec<SubmitOutcome> {
    let mut outcomes: Vec<SubmitOutcome> = Vec::with_capacity(scripts.len());
    let mut scripts = scripts.into_iter().peekable();
    while scripts.peek().is_some() {
        let batch: Vec<_> = scripts.by_ref().take(PARALLEL_SUBMITS).collect();
        outcomes.extend(std::thread::scope(|scope| {
            let running: Vec<_> = batch
                .into_iter()
                .map(|(seq, name, written)| {
                    let job = scope.spawn(move || match written {
                        Ok(path) => queue.submit(&path),
                        Err(e) => Err(SubmitFailure::Refused(e)),
                    });
                    (seq, name, job)
                })
                .collect();
            running
                .into_iter()
                .map(|(seq, name, job)| {
                    let outcome = job.join().unwrap_or_else(|_| {
                        Err(SubmitFailure::Uncertain(Error::runtime(
                            "the submitting thread panicked",
                        )))
                    });
                    (seq, name, outcome)
                })
                .collect::<Vec<_>>()
        }));
    }
    outcomes
}

/// Cancels every unfinished job of the ledger (by id, and by name those still being
/// submitted), waits until the batch system shows them finished, and closes the ledger.
/// Used by the daemon's `down` and by `down --force` once the daemon is dead. With
/// `forget_unconfirmed`, jobs whose submission was never confirmed and that this system
/// cannot cancel by name are closed as not submitted (the user has checked the queue).
pub fn finish_jobs(
    rec: &ClusterRecord,
    ledger: &mut Ledger,
    forget_unconfirmed: bool,
) -> Result<String> {
    let queue = JobQueue::new(&rec.config);
    let ids = ledger.unfinished_ids();
    for id in &ids {
        ledger.set_end_reason(id, EndReason::Shutdown)?;
    }
    queue.cancel(&ids)?;
    let unconfirmed: Vec<(u64, String)> = ledger
        .jobs()
        .iter()
        .filter(|j| j.state == LedgerState::Submitting)
        .map(|j| (j.seq, j.name.clone()))
        .collect();
    let mut unknown = Vec::new();
    // The elements of an array share its name: cancelled by it once.
    let mut by_name: BTreeMap<String, bool> = BTreeMap::new();
    for (seq, name) in unconfirmed {
        let script = ClusterDir::new(&rec.name)?.job_script(rec.config.system, &name);
        let cancelled = match by_name.get(&name) {
            Some(done) => *done,
            None => {
                let done = queue.cancel_by_name(&name, &script)?;
                by_name.insert(name.clone(), done);
                done
            }
        };
        let why = if cancelled {
            "its submission was never confirmed; cancelled by name at shutdown"
        } else if forget_unconfirmed {
            "its submission was never confirmed; forgotten at shutdown (--forget-unconfirmed)"
        } else {
            if !unknown.contains(&name) {
                unknown.push(name);
            }
            continue;
        };
        ledger.submit_failed(seq, why, now())?;
    }
    if !unknown.is_empty() {
        return Err(Error::runtime(format!(
            "jobs {} may have been submitted (their ids were never read) and {} cannot cancel \
             jobs by name: look for them in the queue, cancel any you find, then run \
             `rdask-jobqueue down --force --forget-unconfirmed --name {}`",
            unknown.join(", "),
            rec.system,
            rec.name
        )));
    }
    let deadline = Instant::now() + DOWN_WAIT;
    loop {
        let alive = ledger.unfinished_ids();
        if alive.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::runtime(format!(
                "jobs {} were cancelled but still show as alive after {} s; run \
                 `rdask-jobqueue down --force --name {}` again later",
                alive.join(" "),
                DOWN_WAIT.as_secs(),
                rec.name
            )));
        }
        let states = queue.states(&alive)?;
        ledger.update_states(&states, now())?;
        if !ledger.unfinished_ids().is_empty() {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    ledger.close(now())?;
    Ok(format!(
        "cluster `{}`: {} job(s) cancelled, ledger closed",
        rec.name,
        ids.len()
    ))
}

#[cfg(test)]
mod scheduler_loss_tests {
    use super::*;

    #[test]
    fn only_a_requested_shutdown_ends_the_cluster() {
        assert_eq!(
            after_scheduler_lost(Some(&Stopped::Failed("boom".into()))),
            AfterLoss::KeepJobs("boom".into())
        );
        assert_eq!(
            after_scheduler_lost(Some(&Stopped::Shutdown(Some(0)))),
            AfterLoss::EndCluster
        );
        assert_eq!(after_scheduler_lost(None), AfterLoss::EndCluster);
    }
}
