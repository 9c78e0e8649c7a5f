//! The scheduler's tokio layer: sockets -> events -> [`State`] -> commands -> sockets.
//!
//! One core task owns the state machine. Connection tasks decode frames into core messages;
//! per-connection writer tasks encode and send. The core drains every message already
//! waiting before it asks the state machine for commands, so a burst of completions becomes
//! one batch of assignments per worker and one flush per connection.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::state::{self, Assignment, Command, Config, DepLocation, Event, State, WorkerInfo};
use crate::error::{Error, Result};
use crate::ids::{ClientId, WorkerId};
use crate::protocol::messages::*;
use crate::protocol::{self, encode_control, FrameWriter, Kind, Role, Secret, HANDSHAKE_TIMEOUT};

/// Keys of client `c` are `c << KEY_BITS | n`.
pub const KEY_BITS: u32 = 40;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Where to listen, e.g. 0.0.0.0:8786 or 127.0.0.1:0.
    pub bind: SocketAddr,
    /// The host workers and clients should dial, when it differs from what we can see
    /// (NAT, a login node's public name). Default: the bind address, or this host's name
    /// when bound to all interfaces.
    pub contact_host: Option<String>,
    pub secret: Secret,
    /// How often workers send heartbeats.
    pub heartbeat: Duration,
    /// A worker silent for this long is declared lost (a dead node does not close sockets).
    pub heartbeat_timeout: Duration,
    pub config: Config,
}

impl SchedulerOptions {
    pub fn new(bind: SocketAddr, secret: Secret) -> Self {
        SchedulerOptions {
            bind,
            contact_host: None,
            secret,
            heartbeat: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(30),
            config: Config::default(),
        }
    }
}

/// A running scheduler.
pub struct SchedulerHandle {
    /// "tcp://host:port" for workers and clients.
    pub address: String,
    pub local_addr: SocketAddr,
    core: mpsc::UnboundedSender<CoreMsg>,
    /// None while serving; then the exit status the shutdown request carried, if any.
    stopped: watch::Receiver<Option<Option<i32>>>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SchedulerHandle {
    /// Closes every worker and client and stops serving.
    pub fn shutdown(&self) {
        self.shutdown_with_status(None);
    }

    /// As [`SchedulerHandle::shutdown`], telling every client this exit status (as a
    /// client's `Shutdown { exit_status }` does).
    pub fn shutdown_with_status(&self, exit_status: Option<i32>) {
        let _ = self.core.send(CoreMsg::Shutdown { exit_status });
    }

    /// Waits until the scheduler has stopped (after a shutdown by a client or the handle)
    /// and its goodbyes are written: a process may exit right after without workers taking
    /// the lost connection for a failure (they would wait out their death timeout).
    /// Returns the exit status the client that shut it down passed along (the MPI-style
    /// runner's driver does), if any.
    pub async fn stopped(&self) -> Option<i32> {
        let mut rx = self.stopped.clone();
        let status = loop {
            if let Some(status) = *rx.borrow() {
                break status;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.counters.writers.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        status
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

enum Out<T> {
    Msg(T),
    Close,
}

type Outbox<T> = mpsc::UnboundedSender<Out<T>>;

enum CoreMsg {
    WorkerConnected {
        reg: Registration,
        out: Outbox<SchedulerToWorker>,
        reply: oneshot::Sender<WorkerId>,
    },
    FromWorker {
        id: WorkerId,
        msg: WorkerToScheduler,
    },
    WorkerDisconnected {
        id: WorkerId,
        why: String,
    },
    ClientConnected {
        out: Outbox<SchedulerToClient>,
        reply: oneshot::Sender<ClientId>,
    },
    FromClient {
        id: ClientId,
        msg: ClientToScheduler,
    },
    ClientDisconnected {
        id: ClientId,
    },
    Shutdown {
        exit_status: Option<i32>,
    },
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    /// Connection writers still running: after a shutdown, the Close messages are on the
    /// wire only once this is 0.
    writers: AtomicU64,
}

/// Binds and starts serving. Returns once the port is open.
pub async fn start(opts: SchedulerOptions) -> Result<SchedulerHandle> {
    let listener = TcpListener::bind(opts.bind).await.map_err(|e| {
        Error::runtime(format!(
            "cannot listen on {}: {e} (is the port in use? --port 0 picks a free one)",
            opts.bind
        ))
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(Error::io("reading the scheduler's address"))?;
    let host = match &opts.contact_host {
        Some(h) => h.clone(),
        None if local_addr.ip().is_unspecified() => crate::sys::hostname(),
        None => local_addr.ip().to_string(),
    };
    let address = format!("tcp://{host}:{}", local_addr.port());
    let (core_tx, core_rx) = mpsc::unbounded_channel();
    let (stopped_tx, stopped_rx) = watch::channel(None);
    let counters = Arc::new(Counters::default());
    let core = Core {
        state: State::new(opts.config.clone()),
        workers: HashMap::new(),
        clients: HashMap::new(),
        next_worker: 1,
        next_client: 1,
        finished_by_client: HashMap::new(),
        progress_dirty: HashSet::new(),
        last_progress: Instant::now(),
        finished_total: 0,
        counters: counters.clone(),
        address: address.clone(),
        heartbeat: opts.heartbeat,
        heartbeat_timeout: opts.heartbeat_timeout,
        exit_status: None,
    };
    let core_task = tokio::spawn(core.run(core_rx, stopped_tx));
    let accept_task = tokio::spawn(accept_loop(
        listener,
        opts.secret.clone(),
        core_tx.clone(),
        counters.clone(),
    ));
    tracing::info!("scheduler listening on {address}");
    Ok(SchedulerHandle {
        address,
        local_addr,
        core: core_tx,
        stopped: stopped_rx,
        tasks: vec![core_task, accept_task],
        counters,
    })
}

async fn accept_loop(
    listener: TcpListener,
    secret: Secret,
    core: mpsc::UnboundedSender<CoreMsg>,
    counters: Arc<Counters>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (secret, core, counters) = (secret.clone(), core.clone(), counters.clone());
        tokio::spawn(async move {
            match protocol::accept(stream, &secret, HANDSHAKE_TIMEOUT).await {
                Ok((role, reader, writer)) => {
                    if let Err(e) = serve(role, reader, writer, core, counters).await {
                        tracing::debug!("connection from {from} ended: {e}");
                    }
                }
                // A failed handshake concerns this peer only; the scheduler serves on.
                Err(e) => tracing::warn!("refused a connection from {from}: {e}"),
            }
        });
    }
}

async fn serve(
    role: Role,
    mut reader: protocol::FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    core: mpsc::UnboundedSender<CoreMsg>,
    counters: Arc<Counters>,
) -> std::result::Result<(), protocol::ProtocolError> {
    let count = |frame: &protocol::Frame| {
        counters.received.fetch_add(
            (frame.body.len() + protocol::HEADER_LEN) as u64,
            Ordering::Relaxed,
        );
    };
    match role {
        Role::Worker => {
            let first = reader
                .read_frame()
                .await?
                .ok_or(protocol::ProtocolError::Closed)?;
            count(&first);
            let WorkerToScheduler::Register(reg) = first.decode()? else {
                return Err(protocol::ProtocolError::Unexpected(
                    "a worker must register first".into(),
                ));
            };
            let (out, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_loop(rx, writer, counters.clone()));
            let (reply, id) = oneshot::channel();
            let _ = core.send(CoreMsg::WorkerConnected { reg, out, reply });
            let Ok(id) = id.await else { return Ok(()) };
            let why = forward(&mut reader, &counters, |msg| {
                let _ = core.send(CoreMsg::FromWorker { id, msg });
            })
            .await
            .err()
            .unwrap_or_else(|| "closed the connection".into());
            let _ = core.send(CoreMsg::WorkerDisconnected { id, why });
        }
        Role::Client => {
            let (out, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_loop(rx, writer, counters.clone()));
            let (reply, id) = oneshot::channel();
            let _ = core.send(CoreMsg::ClientConnected { out, reply });
            let Ok(id) = id.await else { return Ok(()) };
            let result = forward(&mut reader, &counters, |msg| {
                let _ = core.send(CoreMsg::FromClient { id, msg });
            })
            .await;
            let _ = core.send(CoreMsg::ClientDisconnected { id });
            result.map_err(protocol::ProtocolError::Unexpected)?;
        }
        Role::Peer => {
            return Err(protocol::ProtocolError::Unexpected(
                "a peer connection to the scheduler: results are fetched from workers".into(),
            ));
        }
    }
    Ok(())
}

/// Decodes the control messages of one connection and hands each to `deliver`, until the
/// peer closes (Ok) or misbehaves (Err, with the reason). Counts the bytes received.
async fn forward<T: serde::de::DeserializeOwned>(
    reader: &mut protocol::FrameReader<tokio::net::tcp::OwnedReadHalf>,
    counters: &Counters,
    mut deliver: impl FnMut(T),
) -> std::result::Result<(), String> {
    loop {
        match reader.read_frame().await {
            Ok(Some(frame)) if frame.kind == Kind::Control => {
                let size = (frame.body.len() + protocol::HEADER_LEN) as u64;
                counters.received.fetch_add(size, Ordering::Relaxed);
                deliver(frame.decode().map_err(|e| e.to_string())?);
            }
            Ok(Some(_)) => return Err("sent a data frame to the scheduler".into()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Writes everything queued for one connection, flushing once the queue is empty.
async fn write_loop<T: Serialize>(
    mut rx: mpsc::UnboundedReceiver<Out<T>>,
    mut w: FrameWriter<OwnedWriteHalf>,
    counters: Arc<Counters>,
) {
    /// Counts this writer as running until it returns, whichever way.
    struct Running(Arc<Counters>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.writers.fetch_sub(1, Ordering::Relaxed);
        }
    }
    counters.writers.fetch_add(1, Ordering::Relaxed);
    let _running = Running(counters.clone());
    let mut close = false;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Msg(msg) => {
                    let Ok(frame) = encode_control(&msg) else {
                        return;
                    };
                    counters
                        .sent
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                    if w.write_encoded(&frame).await.is_err() {
                        return;
                    }
                }
                Out::Close => close = true,
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() || close {
            let _ = w.shutdown().await;
            return;
        }
    }
}

struct WorkerConn {
    out: Outbox<SchedulerToWorker>,
    address: String,
    last_seen: Instant,
}

struct Core {
    state: State,
    workers: HashMap<WorkerId, WorkerConn>,
    clients: HashMap<ClientId, Outbox<SchedulerToClient>>,
    next_worker: WorkerId,
    next_client: ClientId,
    finished_by_client: HashMap<ClientId, u64>,
    progress_dirty: HashSet<ClientId>,
    last_progress: Instant,
    finished_total: u64,
    counters: Arc<Counters>,
    address: String,
    heartbeat: Duration,
    heartbeat_timeout: Duration,
    /// What the client that shut us down said the run's exit status is.
    exit_status: Option<i32>,
}

impl Core {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<CoreMsg>,
        stopped: watch::Sender<Option<Option<i32>>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    if !self.handle(msg) {
                        break;
                    }
                    for _ in 0..10_000 {
                        let Ok(msg) = rx.try_recv() else { break };
                        if !self.handle(msg) {
                            self.route();
                            self.close_everything();
                            let _ = stopped.send(Some(self.exit_status));
                            return;
                        }
                    }
                }
                _ = tick.tick() => self.expire_silent_workers(),
            }
            self.route();
            self.send_progress(false);
        }
        self.close_everything();
        let _ = stopped.send(Some(self.exit_status));
    }

    /// Applies one message; false when the scheduler must stop.
    fn handle(&mut self, msg: CoreMsg) -> bool {
        match msg {
            CoreMsg::WorkerConnected { reg, out, reply } => {
                let id = self.next_worker;
                self.next_worker += 1;
                let info = WorkerInfo {
                    name: reg.name,
                    address: reg.address.clone(),
                    nthreads: reg.nthreads,
                    memory_limit: reg.memory_limit,
                    host: reg.host,
                    job_id: reg.job_id,
                };
                tracing::info!(
                    "worker {id} ({}, job {:?}) joined from {}",
                    info.name,
                    info.job_id,
                    info.address
                );
                let directory: Vec<(WorkerId, String)> = self
                    .workers
                    .iter()
                    .map(|(w, c)| (*w, c.address.clone()))
                    .chain([(id, reg.address.clone())])
                    .collect();
                let _ = out.send(Out::Msg(SchedulerToWorker::Welcome {
                    worker: id,
                    heartbeat_ms: self.heartbeat.as_millis() as u64,
                }));
                let _ = out.send(Out::Msg(SchedulerToWorker::Peers(directory)));
                for c in self.workers.values() {
                    let _ = c.out.send(Out::Msg(SchedulerToWorker::Peers(vec![(
                        id,
                        reg.address.clone(),
                    )])));
                }
                self.workers.insert(
                    id,
                    WorkerConn {
                        out,
                        address: reg.address,
                        last_seen: Instant::now(),
                    },
                );
                self.state.handle(Event::WorkerJoined { worker: id, info });
                let _ = reply.send(id);
            }
            CoreMsg::FromWorker { id, msg } => {
                let Some(conn) = self.workers.get_mut(&id) else {
                    return true;
                };
                conn.last_seen = Instant::now();
                let event = match msg {
                    WorkerToScheduler::Register(_) => return true,
                    WorkerToScheduler::Finished(done) => {
                        for f in &done {
                            let client = f.task.0 >> KEY_BITS;
                            *self.finished_by_client.entry(client).or_default() += 1;
                            self.progress_dirty.insert(client);
                        }
                        self.finished_total += done.len() as u64;
                        let finished = done
                            .into_iter()
                            .map(|f| state::Finished {
                                task: f.task,
                                nbytes: f.nbytes,
                                duration_us: f.duration_us,
                            })
                            .collect();
                        Event::TasksFinished {
                            worker: id,
                            finished,
                        }
                    }
                    WorkerToScheduler::Failed { task, error } => {
                        let name = self
                            .state
                            .worker_info(id)
                            .map(|w| w.name.clone())
                            .unwrap_or_default();
                        Event::TaskFailed {
                            worker: id,
                            task,
                            error: format!("{error} (on worker {name})"),
                        }
                    }
                    WorkerToScheduler::Missing { task, missing } => Event::MissingData {
                        worker: id,
                        task,
                        missing,
                    },
                    WorkerToScheduler::Replicas(list) => {
                        for (task, nbytes) in list {
                            self.state.handle(Event::ReplicaAdded {
                                worker: id,
                                task,
                                nbytes,
                            });
                        }
                        return true;
                    }
                    WorkerToScheduler::Heartbeat {
                        memory,
                        paused,
                        executing,
                    } => Event::Heartbeat {
                        worker: id,
                        memory,
                        paused,
                        executing,
                    },
                    WorkerToScheduler::RetireMe => {
                        tracing::info!("worker {id} asked to retire (lifetime reached)");
                        Event::Retire {
                            workers: vec![id],
                            requester: None,
                        }
                    }
                };
                self.state.handle(event);
            }
            CoreMsg::WorkerDisconnected { id, why } => {
                if self.workers.contains_key(&id) {
                    tracing::warn!("worker {id} lost: {why}");
                    self.lose_worker(id);
                }
            }
            CoreMsg::ClientConnected { out, reply } => {
                let id = self.next_client;
                self.next_client += 1;
                let _ = out.send(Out::Msg(SchedulerToClient::Welcome {
                    client: id,
                    key_base: id << KEY_BITS,
                }));
                self.clients.insert(id, out);
                let _ = reply.send(id);
            }
            CoreMsg::FromClient { id, msg } => match msg {
                ClientToScheduler::Submit { tasks, wanted } => {
                    self.state.handle(Event::GraphSubmitted {
                        client: id,
                        tasks,
                        wanted,
                    });
                }
                ClientToScheduler::Release(keys) => {
                    self.state.handle(Event::Release { client: id, keys })
                }
                ClientToScheduler::WhoHas(keys) => {
                    let answer = keys
                        .into_iter()
                        .map(|k| (k, self.holders(self.state.holders(k))))
                        .collect();
                    self.to_client(id, SchedulerToClient::WhoHas(answer));
                }
                ClientToScheduler::Status => {
                    let report = self.status();
                    self.to_client(id, SchedulerToClient::Status(Box::new(report)));
                }
                ClientToScheduler::Replicate { keys, to } => {
                    self.state.handle(Event::Replicate { keys, to });
                }
                ClientToScheduler::Retire(workers) => {
                    self.state.handle(Event::Retire {
                        workers,
                        requester: Some(id),
                    });
                }
                ClientToScheduler::Shutdown { exit_status } => {
                    tracing::info!("shutdown requested by client {id}");
                    self.exit_status = exit_status;
                    return false;
                }
            },
            CoreMsg::ClientDisconnected { id } => {
                self.clients.remove(&id);
                self.state.handle(Event::ClientGone { client: id });
            }
            CoreMsg::Shutdown { exit_status } => {
                self.exit_status = exit_status.or(self.exit_status);
                return false;
            }
        }
        true
    }

    fn lose_worker(&mut self, id: WorkerId) {
        if let Some(conn) = self.workers.remove(&id) {
            let _ = conn.out.send(Out::Close);
        }
        self.state.handle(Event::WorkerLost { worker: id });
        for c in self.workers.values() {
            let _ = c.out.send(Out::Msg(SchedulerToWorker::PeerGone(id)));
        }
    }

    fn expire_silent_workers(&mut self) {
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, c)| c.last_seen.elapsed() > self.heartbeat_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            tracing::warn!(
                "worker {id} sent nothing for {:?}; declaring it lost",
                self.heartbeat_timeout
            );
            self.lose_worker(id);
        }
    }

    fn holders(&self, ids: &[WorkerId]) -> Vec<Holder> {
        ids.iter()
            .filter_map(|w| {
                self.workers.get(w).map(|c| Holder {
                    worker: *w,
                    address: c.address.clone(),
                })
            })
            .collect()
    }

    fn to_client(&self, id: ClientId, msg: SchedulerToClient) {
        if let Some(out) = self.clients.get(&id) {
            let _ = out.send(Out::Msg(msg));
        }
    }

    fn to_worker(&self, id: WorkerId, msg: SchedulerToWorker) {
        if let Some(c) = self.workers.get(&id) {
            let _ = c.out.send(Out::Msg(msg));
        }
    }

    /// Sends what the state machine decided.
    fn route(&mut self) {
        for cmd in self.state.take_commands() {
            match cmd {
                Command::Compute { worker, tasks } => {
                    let tasks = tasks.into_iter().map(wire_task).collect();
                    self.to_worker(worker, SchedulerToWorker::Compute(tasks));
                }
                Command::Release { worker, keys } => {
                    self.to_worker(worker, SchedulerToWorker::Release(keys))
                }
                Command::Replicate { worker, keys } => {
                    self.to_worker(
                        worker,
                        SchedulerToWorker::Replicate(keys.into_iter().map(wire_dep).collect()),
                    );
                }
                Command::Close { worker } => {
                    if let Some(conn) = self.workers.remove(&worker) {
                        let _ = conn.out.send(Out::Msg(SchedulerToWorker::Close));
                        let _ = conn.out.send(Out::Close);
                    }
                    for c in self.workers.values() {
                        let _ = c.out.send(Out::Msg(SchedulerToWorker::PeerGone(worker)));
                    }
                }
                Command::KeyReady {
                    client,
                    key,
                    nbytes,
                    holders,
                } => {
                    let holders = self.holders(&holders);
                    self.to_client(
                        client,
                        SchedulerToClient::KeyReady {
                            key,
                            nbytes,
                            holders,
                        },
                    );
                }
                Command::KeyErred { client, key, error } => {
                    self.to_client(client, SchedulerToClient::KeyErred { key, error })
                }
                Command::GraphRejected { client, reason } => {
                    self.to_client(client, SchedulerToClient::GraphRejected { reason });
                }
                Command::WorkerRetired { requester, worker } => {
                    self.to_client(requester, SchedulerToClient::WorkerRetired(worker));
                }
            }
        }
    }

    fn send_progress(&mut self, force: bool) {
        if self.progress_dirty.is_empty()
            || (!force && self.last_progress.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_progress = Instant::now();
        for client in std::mem::take(&mut self.progress_dirty) {
            let finished = self.finished_by_client.get(&client).copied().unwrap_or(0);
            self.to_client(client, SchedulerToClient::Progress { finished });
        }
    }

    fn status(&self) -> StatusReport {
        let mut workers: Vec<WorkerStatusReport> = self
            .state
            .worker_ids()
            .into_iter()
            .filter_map(|id| {
                let info = self.state.worker_info(id)?;
                let (status, processing, results, held_bytes, memory) =
                    self.state.worker_load(id)?;
                Some(WorkerStatusReport {
                    id,
                    name: info.name.clone(),
                    address: info.address.clone(),
                    host: info.host.clone(),
                    job_id: info.job_id.clone(),
                    nthreads: info.nthreads,
                    memory_limit: info.memory_limit,
                    memory,
                    state: format!("{status:?}").to_lowercase(),
                    processing: processing as u64,
                    results: results as u64,
                    held_bytes,
                })
            })
            .collect();
        workers.sort_by_key(|w| w.id);
        StatusReport {
            address: self.address.clone(),
            workers,
            tasks: self.state.counts().into(),
            finished_total: self.finished_total,
            bytes_received: self.counters.received.load(Ordering::Relaxed),
            bytes_sent: self.counters.sent.load(Ordering::Relaxed),
            pending_work_us: self.state.pending_work_us() as u64,
            clients: self.clients.len() as u64,
        }
    }

    fn close_everything(&mut self) {
        self.send_progress(true);
        for (_, c) in self.workers.drain() {
            let _ = c.out.send(Out::Msg(SchedulerToWorker::Close));
            let _ = c.out.send(Out::Close);
        }
        for (_, out) in self.clients.drain() {
            let _ = out.send(Out::Msg(SchedulerToClient::ShuttingDown {
                exit_status: self.exit_status,
            }));
            let _ = out.send(Out::Close);
        }
    }
}

fn wire_dep(d: DepLocation) -> WireDep {
    WireDep {
        task: d.task,
        nbytes: d.nbytes,
        holders: d.holders,
    }
}

fn wire_task(a: Assignment) -> WireTask {
    WireTask {
        task: a.task,
        kernel: a.kernel,
        args: a.args,
        deps: a.deps.into_iter().map(wire_dep).collect(),
        priority: a.priority,
    }
}
