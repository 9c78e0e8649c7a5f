//! The cluster daemon (`rdask-jobqueue cluster-daemon --name N`, started detached by `up`):
//! the scheduler in-process, a control socket, and the deployer loop.
//!
//! The deployer is a thin loop on the main thread; every decision is the [`Scaler`]'s and
//! every job is the [`Ledger`]'s. Each turn it polls the batch states of all unfinished jobs
//! in one call (every `poll_interval`), asks the scheduler for its workers (each reporting its
//! batch job id) and load, builds an [`Observation`] and carries out the [`Decision`]s:
//! - Submit: record the job (`begin_submit`) *before* running the submit command and its id
//!   (`submitted`) *after*, so `down --force` can always find it.
//! - Cancel: record our reason, then cancel (failed cancels are retried each turn).
//! - Retire: retire the job's workers through the scheduler (their unique results are copied
//!   to survivors first), and only then cancel the job.
//!
//! Control requests and finished retirements arrive on one channel, so the loop is the only
//! writer of the ledger (the rule the ledger states) and needs no locks. Async work (the
//! scheduler, the socket, retirements) runs on a tokio runtime beside it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::control::{ClusterStatus, JobView, Reply, Request, WorkerView};
use super::{cancel_by_name, now, write_script, ClusterDir, ClusterRecord};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::jobqueue::ledger::{EndReason, Ledger, LedgerState};
use crate::jobqueue::scaler::{
    Decision, JobObservation, Load, Observation, Scaler, Target, Tick, WorkerObservation,
};
use crate::jobqueue::{script, JobQueue, JobState};
use crate::protocol::messages::StatusReport;
use crate::scheduler::server::{self, SchedulerOptions};

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
}

/// How long retiring one job's workers may take before the job is cancelled anyway.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `down` waits for cancelled jobs to be seen finished.
const DOWN_WAIT: Duration = Duration::from_secs(60);

pub fn run(name: &str) -> Result<i32> {
    // Everything the daemon creates (socket, scripts' siblings) is the owner's only.
    unsafe { libc::umask(0o077) };
    let dir = ClusterDir::new(name)?;
    let mut rec = dir.require_record()?;
    let secret = dir.secret()?;
    let ledger = Ledger::open(&dir.ledger_path(), name)?;
    if ledger.is_closed() {
        return Err(Error::runtime(format!("cluster `{name}` is closed")));
    }
    let rt = crate::cli::runtime::runtime()?;
    let bind_ip: std::net::IpAddr = rec
        .bind_host
        .parse()
        .map_err(|_| Error::invalid(format!("bind address {}", rec.bind_host)))?;
    let mut opts = SchedulerOptions::new((bind_ip, rec.port).into(), secret.clone());
    opts.contact_host = rec.contact_address.clone();
    let handle = rt.block_on(server::start(opts))?;
    // Our own client dials loopback when the scheduler listens everywhere.
    let local = if handle.local_addr.ip().is_unspecified() {
        format!("tcp://127.0.0.1:{}", handle.local_addr.port())
    } else {
        format!("tcp://{}", handle.local_addr)
    };
    let client = Arc::new(rt.block_on(Client::connect(&local, &secret))?);

    let (tx, rx) = mpsc::channel::<Msg>();
    let socket = dir.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener = {
        let _guard = rt.enter();
        UnixListener::bind(&socket)
            .map_err(Error::io(format!("listening on {}", socket.display())))?
    };
    rt.spawn(serve_control(listener, tx.clone()));
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
    dir.write_record(&rec)?;
    tracing::info!(
        "cluster `{name}`: scheduler at {}, control socket {}",
        handle.address,
        socket.display()
    );

    let scaler = Scaler::new(rec.scaler.clone())?;
    let mut d = Deployer {
        queue: JobQueue::new(&rec.config),
        own_binary: std::env::current_exe().map_err(Error::io("finding this program"))?,
        dir,
        rec,
        ledger,
        scaler,
        target: Target::Fixed { workers: 0 },
        client,
        rt: &rt,
        tx,
        last_poll: None,
        last_tick: None,
        last_status: None,
        pending_reasons: BTreeMap::new(),
        to_cancel: BTreeSet::new(),
        submit_failures: 0,
        submit_successes: 0,
        errors: VecDeque::new(),
    };
    let code = d.main_loop(rx);
    handle.shutdown();
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(3), handle.stopped()).await;
    });
    let _ = std::fs::remove_file(&socket);
    Ok(code)
}

/// Accepts control connections: one JSON request line, one JSON reply line.
async fn serve_control(listener: UnixListener, tx: mpsc::Sender<Msg>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
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

struct Deployer<'a> {
    dir: ClusterDir,
    rec: ClusterRecord,
    ledger: Ledger,
    scaler: Scaler,
    target: Target,
    queue: JobQueue,
    own_binary: PathBuf,
    client: Arc<Client>,
    rt: &'a tokio::runtime::Runtime,
    tx: mpsc::Sender<Msg>,
    last_poll: Option<Instant>,
    last_tick: Option<Tick>,
    last_status: Option<StatusReport>,
    /// Why pending jobs wait, from the last poll.
    pending_reasons: BTreeMap<String, String>,
    /// Jobs we decided to cancel whose cancel command has not succeeded yet.
    to_cancel: BTreeSet<String>,
    submit_failures: u32,
    submit_successes: u32,
    errors: VecDeque<String>,
}

impl Deployer<'_> {
    fn main_loop(&mut self, rx: mpsc::Receiver<Msg>) -> i32 {
        let mut interval_now = Duration::from_secs_f64(self.rec.interval.max(0.05));
        loop {
            if let Err(e) = self.tick() {
                if self.client_lost() {
                    // Someone shut the scheduler down: its workers are gone, so are our jobs.
                    self.note(format!(
                        "the scheduler stopped ({e}); shutting the cluster down"
                    ));
                    return match self.shutdown() {
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
                        tracing::info!("target: {target:?}");
                        self.target = target;
                        if let Some(i) = interval {
                            self.rec.interval = i;
                            interval_now = Duration::from_secs_f64(i.max(0.05));
                        }
                        let _ = reply.send(Reply::Ok {
                            message: "target set".into(),
                        });
                        break;
                    }
                    Msg::Control(Request::AdaptOff, reply) => {
                        let counted = self.last_tick.as_ref().map_or(0, |t| t.counted_jobs);
                        self.target = Target::fixed_jobs(counted, self.processes());
                        let _ = reply.send(Reply::Ok {
                            message: format!("adapt off; keeping {counted} jobs"),
                        });
                        break;
                    }
                    Msg::Control(Request::Status, reply) => {
                        // Fresh from the scheduler (microseconds): `scale --wait` polls it.
                        if let Ok(s) = self.scheduler_status() {
                            self.last_status = Some(s);
                        }
                        let _ = reply.send(self.status());
                    }
                    Msg::Control(Request::Down, reply) => {
                        let result = self.shutdown();
                        let ok = result.is_ok();
                        let _ = reply.send(match result {
                            Ok(m) => Reply::Ok { message: m },
                            Err(e) => Reply::Error {
                                message: e.to_string(),
                                invalid: false,
                            },
                        });
                        // Let the socket task write the reply before the runtime stops.
                        std::thread::sleep(Duration::from_millis(200));
                        return if ok { 0 } else { 1 };
                    }
                    Msg::Signal => {
                        tracing::info!("signal: shutting down");
                        return match self.shutdown() {
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

    /// Asks the batch system for every unfinished job's state, in one call.
    fn poll_states(&mut self) -> Result<()> {
        let ids = self.ledger.unfinished_ids();
        self.last_poll = Some(Instant::now());
        if ids.is_empty() {
            return Ok(());
        }
        let states = self.queue.states(&ids)?;
        let pending: Vec<String> = states
            .iter()
            .filter(|(_, s)| **s == JobState::Pending)
            .map(|(id, _)| id.clone())
            .collect();
        self.pending_reasons = self.queue.pending_reasons(&pending);
        let changed = self.ledger.update_states(&states, now())?;
        for id in changed {
            if let Some(j) = self.ledger.job(&id) {
                tracing::info!("job {id}: {}", j.state);
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<()> {
        let poll_due = self
            .last_poll
            .is_none_or(|t| t.elapsed().as_secs_f64() >= self.rec.poll_interval);
        if poll_due {
            if let Err(e) = self.poll_states() {
                self.note(format!("polling job states: {e}"));
            }
        }
        let status = self.scheduler_status()?;
        let t = now();
        let mut by_job: BTreeMap<&str, Vec<WorkerObservation>> = BTreeMap::new();
        for w in &status.workers {
            if let Some(id) = w.job_id.as_deref() {
                by_job.entry(id).or_default().push(WorkerObservation {
                    name: w.name.clone(),
                    held_bytes: w.held_bytes,
                    retiring: w.state == "retiring",
                });
            }
        }
        for id in by_job.keys() {
            self.ledger.workers_seen(id, t)?;
            // Its workers prove it runs, before the next poll says so.
            let pending = self
                .ledger
                .job(id)
                .is_some_and(|j| j.state == LedgerState::Pending);
            if pending {
                self.ledger.set_state(id, JobState::Running, t)?;
            }
        }
        let mut jobs = Vec::new();
        let mut submitting = 0;
        for j in self.ledger.unfinished() {
            let Some(id) = j.job_id.as_deref() else {
                submitting += 1;
                continue;
            };
            let workers = by_job.remove(id).unwrap_or_default();
            let state = j.state.batch_state().unwrap_or(JobState::Pending);
            jobs.push(JobObservation {
                job_id: id.to_string(),
                state,
                submitted_at: j.submitted_at.unwrap_or(j.recorded_at),
                started_at: j.started_at,
                workers_seen_at: j.workers_seen_at,
                workers,
            });
        }
        let c = &status.tasks;
        let obs = Observation {
            now: t,
            target: self.target.clone(),
            jobs,
            submitting,
            load: Load {
                queued_tasks: (c.waiting + c.queued) as usize,
                processing_tasks: c.processing as usize,
                work_seconds: status.pending_work_us as f64 / 1e6,
            },
            submit_failures: std::mem::take(&mut self.submit_failures),
            submit_successes: std::mem::take(&mut self.submit_successes),
        };
        let tick = self.scaler.tick(&obs);
        self.last_status = Some(status);
        for decision in tick.decisions.clone() {
            tracing::info!("decision: {decision:?}");
            match decision {
                Decision::Submit { jobs } => {
                    for _ in 0..jobs {
                        self.submit_one()?;
                    }
                    // See the new jobs' states soon.
                    self.last_poll = None;
                }
                Decision::Cancel { job_id, reason } => {
                    self.ledger.set_end_reason(&job_id, reason.into())?;
                    self.to_cancel.insert(job_id);
                }
                Decision::Retire { job_id, workers } => {
                    self.ledger.set_end_reason(&job_id, EndReason::ScaledDown)?;
                    self.retire(job_id, workers);
                }
            }
        }
        self.last_tick = Some(tick);
        self.flush_cancels();
        Ok(())
    }

    /// One job: recorded, written, submitted, recorded again.
    fn submit_one(&mut self) -> Result<()> {
        let t = now();
        let (seq, name) = self.ledger.begin_submit(t)?;
        let mut cfg = self.rec.config.clone();
        cfg.job_name = name.clone();
        let target = script::Target {
            scheduler_address: self.rec.address.clone().unwrap_or_default(),
            secret_file: Some(self.dir.secret_path()),
        };
        let path = self.dir.scripts_dir().join(format!(
            "{name}-{}",
            crate::jobqueue::system(cfg.system).script_file_name()
        ));
        let written = script::render(&cfg, &target, &self.own_binary)
            .and_then(|text| write_script(&path, &text));
        if let Err(e) = written {
            self.ledger.submit_failed(seq, &e.to_string(), now())?;
            self.submit_failures += 1;
            self.note(format!("job {name}: {e}"));
            return Ok(());
        }
        match self.queue.submit(&path) {
            Ok(id) => {
                tracing::info!("submitted {name} as job {id}");
                self.ledger.submitted(seq, &id, now())?;
                self.submit_successes += 1;
            }
            // The command ran and refused, or never started: no job exists.
            Err(Error::Command(f))
                if f.status.starts_with("exit status") || f.status.starts_with("could not") =>
            {
                self.ledger.submit_failed(seq, &f.to_string(), now())?;
                self.submit_failures += 1;
                self.note(format!("submitting {name}: {f}"));
            }
            // Timed out or unreadable: it may be queued. Cancel it by name, so no job we
            // cannot see is left running, and only then say it was not submitted.
            Err(e) => {
                let detail = match cancel_by_name(&self.rec.config, std::slice::from_ref(&name)) {
                    Ok(()) => format!("{e}; cancelled by name in case it was queued"),
                    Err(c) => {
                        // Leave it `Submitting`: `down --force` will look for it by name.
                        self.note(format!("submitting {name}: {e}; cancel by name: {c}"));
                        self.submit_failures += 1;
                        return Ok(());
                    }
                };
                self.ledger.submit_failed(seq, &detail, now())?;
                self.submit_failures += 1;
                self.note(format!("submitting {name}: {detail}"));
            }
        }
        Ok(())
    }

    /// Retires the workers (their unique results move to survivors), then the job is
    /// cancelled when the retirement reports back.
    fn retire(&mut self, job_id: String, workers: Vec<String>) {
        let ids: Vec<_> = self
            .last_status
            .as_ref()
            .map(|s| {
                s.workers
                    .iter()
                    .filter(|w| workers.contains(&w.name))
                    .map(|w| w.id)
                    .collect()
            })
            .unwrap_or_default();
        let client = self.client.clone();
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            let error = match tokio::time::timeout(RETIRE_TIMEOUT, client.retire(&ids)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("not done after {RETIRE_TIMEOUT:?}")),
            };
            let _ = tx.send(Msg::Retired { job_id, error });
        });
    }

    /// Cancels, in one call, every job we decided to end that is not seen finished yet.
    fn flush_cancels(&mut self) {
        self.to_cancel
            .retain(|id| self.ledger.job(id).is_some_and(|j| !j.state.is_finished()));
        if self.to_cancel.is_empty() {
            return;
        }
        let ids: Vec<String> = self.to_cancel.iter().cloned().collect();
        match self.queue.cancel(&ids) {
            Ok(()) => {
                tracing::info!("cancelled jobs {}", ids.join(" "));
                self.to_cancel.clear();
                self.last_poll = None;
            }
            Err(e) => self.note(format!("cancelling {}: {e} (retrying)", ids.join(" "))),
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
        let workers_of = |id: &Option<String>| -> Vec<String> {
            s.workers
                .iter()
                .filter(|w| w.job_id.is_some() && &w.job_id == id)
                .map(|w| w.name.clone())
                .collect()
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
                    state: w.state.clone(),
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
            submit_failures: self.scaler.submit_failures(),
            errors: self.errors.iter().cloned().collect(),
        }))
    }

    /// `down`: workers first (closed by the scheduler, so they exit cleanly), then every
    /// unfinished job cancelled, then the ledger closed once the batch system shows them
    /// finished. If a cancel fails the ledger stays open for `down --force` to finish.
    fn shutdown(&mut self) -> Result<String> {
        let _ = self.client.shutdown();
        let result = finish_jobs(&self.rec, &mut self.ledger);
        if result.is_ok() {
            self.rec.closed_at = Some(now());
            self.dir.write_record(&self.rec)?;
        }
        result
    }
}

/// Cancels every unfinished job of the ledger (by id, and by name those still being
/// submitted), waits until the batch system shows them finished, and closes the ledger.
/// Used by the daemon's `down` and by `down --force` once the daemon is dead.
pub fn finish_jobs(rec: &ClusterRecord, ledger: &mut Ledger) -> Result<String> {
    let queue = JobQueue::new(&rec.config);
    let ids = ledger.unfinished_ids();
    for id in &ids {
        ledger.set_end_reason(id, EndReason::Shutdown)?;
    }
    let names = ledger.submitting_names();
    queue.cancel(&ids)?;
    if !names.is_empty() {
        cancel_by_name(&rec.config, &names)?;
        // Cancelled by name, whether or not the submit had happened: nothing of it runs.
        let seqs: Vec<u64> = ledger
            .jobs()
            .iter()
            .filter(|j| j.state == LedgerState::Submitting)
            .map(|j| j.seq)
            .collect();
        for seq in seqs {
            ledger.submit_failed(
                seq,
                "its id was never recorded; cancelled by name at shutdown",
                now(),
            )?;
        }
    }
    let deadline = Instant::now() + DOWN_WAIT;
    loop {
        let alive = ledger.unfinished_ids();
        if alive.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::runtime(format!(
                "jobs {} were cancelled but still show as alive after {DOWN_WAIT:?}; run \
                 `rdask-jobqueue down --force --name {}` again later",
                alive.join(" "),
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
