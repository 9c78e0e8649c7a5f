//! The scheduler's tokio layer: sockets -> events -> [`State`] -> commands -> sockets.
//!
//! One core task owns the state machine. Connection tasks decode frames into core messages;
//! per-connection writer tasks encode and send. The core drains every message already
//! waiting before it asks the state machine for commands, so a burst of completions becomes
//! one batch of assignments per worker and one flush per connection.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::observe::{Kinds, Observation, Observer, TaskDone};
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
            config: Config {
                max_graph_tasks: state::default_max_graph_tasks(crate::sys::total_memory()),
                ..Config::default()
            },
        }
    }
}

/// How a scheduler ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Shut down on request, with the exit status the request carried, if any.
    Shutdown(Option<i32>),
    /// The core failed (a bug in the scheduler): why. Nobody asked it to stop, so whoever
    /// runs it must not take this for a request to end the cluster.
    Failed(String),
}

/// Where a cluster's scheduler listens when the user did not say: on the network its workers
/// use, not on every interface of the login node.
///
/// `workers_interface` is the jobs' `interface` option (the network workers listen and dial
/// on): when this host has it, its address. Otherwise the contact host — `contact` when given,
/// else this host's name, which is what the published address names — resolved here: its
/// first address that belongs to this host and is not loopback. A loopback address only when
/// the user named it as the contact (workers on this host); a host name that resolves only to
/// loopback here (Debian's `127.0.1.1` line) says nothing about the network other nodes
/// reach us on, and neither does a contact address that is not ours (NAT), so then: every
/// interface (None), as `--scheduler-interface all` asks explicitly.
pub fn default_listen_address(
    contact: Option<&str>,
    workers_interface: Option<&str>,
) -> Option<std::net::IpAddr> {
    if let Some(ip) = workers_interface.and_then(|i| crate::sys::interface_address(i).ok()) {
        return Some(ip);
    }
    let host = contact.map_or_else(crate::sys::hostname, str::to_string);
    let resolved: Vec<std::net::IpAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default();
    let is_ours = |ip: &std::net::IpAddr| std::net::TcpListener::bind((*ip, 0)).is_ok();
    choose_listen_address(&resolved, contact.is_some(), is_ours)
}

/// The decision of [`default_listen_address`], without the lookups: `resolved` are the contact
/// host's addresses, `is_ours` whether this host can listen on one.
pub fn choose_listen_address(
    resolved: &[std::net::IpAddr],
    contact_given: bool,
    is_ours: impl Fn(&std::net::IpAddr) -> bool,
) -> Option<std::net::IpAddr> {
    let ours = || {
        resolved
            .iter()
            .filter(|ip| !ip.is_unspecified() && is_ours(ip))
    };
    ours()
        .find(|ip| !ip.is_loopback())
        .or_else(|| ours().find(|ip| contact_given && ip.is_loopback()))
        .copied()
}

/// A running scheduler.
pub struct SchedulerHandle {
    /// "tcp://host:port" for workers and clients.
    pub address: String,
    pub local_addr: SocketAddr,
    core: mpsc::UnboundedSender<CoreMsg>,
    /// None while serving; then how it ended.
    stopped: watch::Receiver<Option<Stopped>>,
    tasks: Vec<AbortHandle>,
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
    /// A core that failed gives None (and [`SchedulerHandle::failure`] says why).
    pub async fn stopped(&self) -> Option<i32> {
        match self.ended().await {
            Stopped::Shutdown(status) => status,
            Stopped::Failed(_) => None,
        }
    }

    /// Waits until the scheduler has stopped, as [`SchedulerHandle::stopped`], and says how.
    pub async fn ended(&self) -> Stopped {
        let mut rx = self.stopped.clone();
        let how = loop {
            if let Some(how) = rx.borrow().clone() {
                break how;
            }
            if rx.changed().await.is_err() {
                return Stopped::Failed("the scheduler's supervisor is gone".into());
            }
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.counters.writers.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        how
    }

    /// Observations of the core from now on (finished tasks, transfers, a status snapshot
    /// each second), for the dashboard. One observer at a time: a new one replaces the last.
    pub fn observe(&self) -> mpsc::UnboundedReceiver<Observation> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.core.send(CoreMsg::Observe(tx));
        rx
    }

    /// Why the core failed, if it did (a bug); None while it serves or after a shutdown.
    pub fn failure(&self) -> Option<String> {
        match &*self.stopped.borrow() {
            Some(Stopped::Failed(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Makes the core panic after `delay`, standing for a bug in it, so that tests can show
    /// that its supervisor and whoever runs it survive one. Debug builds only (the test
    /// suite's binaries); a release build has no way to do this.
    #[cfg(any(test, debug_assertions))]
    pub fn inject_panic_after(&self, delay: Duration) {
        let core = self.core.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = core.send(CoreMsg::Panic);
        });
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
    /// A client sent a message over the frame limit; its body was skipped unread.
    Oversized {
        id: ClientId,
        size: usize,
        limit: usize,
    },
    Shutdown {
        exit_status: Option<i32>,
    },
    /// Send observations there from now on (see [`SchedulerHandle::observe`]).
    Observe(Observer),
    /// Stands for a bug in the core, to test that it is supervised.
    #[cfg(any(test, debug_assertions))]
    Panic,
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
    let max_graph_tasks = opts.config.max_graph_tasks as u64;
    let core = Core {
        max_graph_tasks,
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
        observer: None,
        kinds: Kinds::default(),
        loop_lag_us: 0,
        last_snapshot: Instant::now(),
    };
    let core_task = tokio::spawn(core.run(core_rx));
    let core_abort = core_task.abort_handle();
    let accept_task = tokio::spawn(accept_loop(
        listener,
        opts.secret.clone(),
        core_tx.clone(),
        counters.clone(),
    ));
    let accept_abort = accept_task.abort_handle();
    // The supervisor: a core that panics (a bug) is reported as a failure with its message,
    // never as a shutdown, and the port closes (clients and workers are told by a refused
    // connection rather than by a handshake that leads nowhere).
    let supervisor = tokio::spawn(async move {
        let how = match core_task.await {
            Ok(status) => Stopped::Shutdown(status),
            Err(e) if e.is_cancelled() => Stopped::Shutdown(None),
            Err(e) => {
                let why = panic_message(e.into_panic());
                tracing::error!("the scheduler's core failed: {why}");
                Stopped::Failed(why)
            }
        };
        accept_abort.abort();
        let _ = stopped_tx.send(Some(how));
    });
    tracing::info!("scheduler listening on {address}");
    Ok(SchedulerHandle {
        address,
        local_addr,
        core: core_tx,
        stopped: stopped_rx,
        tasks: vec![
            core_abort,
            accept_task.abort_handle(),
            supervisor.abort_handle(),
        ],
        counters,
    })
}

/// Connections still in their handshake, at most. Each holds its buffers (128 KiB) and a
/// task until it proves itself or times out; anyone who can reach the port can open them, so
/// their number must not be up to the caller: past the cap a new connection is closed at once
/// (a worker retries until its death timeout), so 2,000 idle sockets cost the
/// scheduler 256 handshakes' worth of memory, not 2,000.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// After a burst of at least this many handshakes at once has drained, free heap is handed
/// back to the system (their buffers would otherwise stay resident).
const TRIM_AFTER_PENDING: usize = 32;

/// Refused connections are logged one by one up to this many per minute, then summed up:
/// someone opening connections in a loop must not fill the disk with our log.
const WARNINGS_PER_MINUTE: u32 = 10;

async fn accept_loop(
    listener: TcpListener,
    secret: Secret,
    core: mpsc::UnboundedSender<CoreMsg>,
    counters: Arc<Counters>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    let surge = Arc::new(AtomicBool::new(false));
    let warnings = Arc::new(Mutex::new(RateLimit::new(
        WARNINGS_PER_MINUTE,
        Duration::from_secs(60),
    )));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now_pending = pending.load(Ordering::Acquire);
        if now_pending >= MAX_PENDING_HANDSHAKES {
            drop(stream);
            warn_limited(
                &warnings,
                format!(
                    "refused a connection from {from}: {MAX_PENDING_HANDSHAKES} connections \
                     are still in their handshake"
                ),
            );
            continue;
        }
        pending.fetch_add(1, Ordering::AcqRel);
        if now_pending + 1 >= TRIM_AFTER_PENDING {
            surge.store(true, Ordering::Release);
        }
        let (secret, core, counters) = (secret.clone(), core.clone(), counters.clone());
        let (pending, surge, warnings) = (pending.clone(), surge.clone(), warnings.clone());
        tokio::spawn(async move {
            let accepted = protocol::accept(stream, &secret, HANDSHAKE_TIMEOUT).await;
            // The last of a burst gives the burst's buffers back.
            if pending.fetch_sub(1, Ordering::AcqRel) == 1 && surge.swap(false, Ordering::AcqRel) {
                crate::sys::release_free_memory();
            }
            match accepted {
                Ok((role, reader, writer)) => {
                    if let Err(e) = serve(role, reader, writer, core, counters).await {
                        tracing::debug!("connection from {from} ended: {e}");
                    }
                }
                // A failed handshake concerns this peer only; the scheduler serves on.
                Err(e) => warn_limited(&warnings, format!("refused a connection from {from}: {e}")),
            }
        });
    }
}

fn warn_limited(limit: &Mutex<RateLimit>, line: String) {
    let verdict = limit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(Instant::now());
    match verdict {
        Admit::Log { suppressed: 0 } => tracing::warn!("{line}"),
        Admit::LogLast => tracing::warn!(
            "{line} (more such warnings this minute are counted, and the count is logged \
             with the next one)"
        ),
        Admit::Log { suppressed } => tracing::warn!(
            "{line} (and {suppressed} more such warnings in the last minute, not logged one by one)"
        ),
        Admit::Suppress => {}
    }
}

/// What to do with one more warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// Log it, with how many were held back since the last one logged.
    Log {
        suppressed: u64,
    },
    /// Log it, saying that the next ones in this window will not be.
    LogLast,
    Suppress,
}

/// At most `per_window` lines per window; the first line of a later window reports how many
/// were held back. Sans-IO (the caller passes the time), so it is tested without waiting.
#[derive(Debug)]
struct RateLimit {
    per_window: u32,
    window: Duration,
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    fn new(per_window: u32, window: Duration) -> Self {
        RateLimit {
            per_window,
            window,
            started: None,
            logged: 0,
            suppressed: 0,
        }
    }

    fn admit(&mut self, now: Instant) -> Admit {
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= self.window)
        {
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged + 1 == self.per_window && self.suppressed == 0 {
            self.logged += 1;
            Admit::LogLast
        } else if self.logged < self.per_window {
            self.logged += 1;
            Admit::Log {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Admit::Suppress
        }
    }
}

/// The message a panic carried (a `&str` or a `String`, as `panic!` makes them).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a panic without a message".into(),
        },
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
            let why = forward(
                &mut reader,
                &counters,
                |msg| {
                    let _ = core.send(CoreMsg::FromWorker { id, msg });
                },
                |_, _| false,
            )
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
            let result = forward(
                &mut reader,
                &counters,
                |msg| {
                    let _ = core.send(CoreMsg::FromClient { id, msg });
                },
                // A client that sent too much is told so and stays connected.
                |size, limit| {
                    let _ = core.send(CoreMsg::Oversized { id, size, limit });
                    true
                },
            )
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
/// peer closes (Ok) or misbehaves (Err, with the reason). Counts the bytes received. A frame
/// over the limit goes to `oversized(size, limit)`: true skips its body (unread, so nothing
/// is allocated for it) and goes on, false ends the connection.
async fn forward<T: serde::de::DeserializeOwned>(
    reader: &mut protocol::FrameReader<tokio::net::tcp::OwnedReadHalf>,
    counters: &Counters,
    mut deliver: impl FnMut(T),
    mut oversized: impl FnMut(usize, usize) -> bool,
) -> std::result::Result<(), String> {
    loop {
        match reader.read_frame().await {
            Err(protocol::ProtocolError::Oversized { size, limit }) if oversized(size, limit) => {
                reader.skip_body(size).await.map_err(|e| e.to_string())?;
                counters
                    .received
                    .fetch_add((size + protocol::HEADER_LEN) as u64, Ordering::Relaxed);
            }
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
    /// Told to each client in its welcome, so it refuses a graph over the limit itself.
    max_graph_tasks: u64,
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
    /// Who watches (the dashboard); None: nothing is observed, nothing costs.
    observer: Option<Observer>,
    kinds: Kinds,
    /// The worst lateness of the 100 ms tick since the last snapshot.
    loop_lag_us: u64,
    last_snapshot: Instant,
}

impl Core {
    /// Serves until a shutdown; returns the exit status it carried.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<CoreMsg>) -> Option<i32> {
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
                            return self.exit_status;
                        }
                    }
                }
                due = tick.tick() => {
                    // How late the tick ran: how long any message may wait for the loop.
                    let lag = due.elapsed().as_micros() as u64;
                    self.loop_lag_us = self.loop_lag_us.max(lag);
                    self.observe_snapshot();
                    self.expire_silent_workers();
                    if self.state.compact() {
                        crate::sys::release_free_memory();
                    }
                }
            }
            self.route();
            self.send_progress(false);
        }
        self.close_everything();
        self.exit_status
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
                    resources: reg.resources,
                };
                tracing::info!(
                    "worker {id} ({}{}) joined from {}",
                    info.name,
                    info.job_id
                        .as_deref()
                        .map(|j| format!(", job {j}"))
                        .unwrap_or_default(),
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
                            // Only connected clients: a report of made-up keys must not grow
                            // the table (it is dropped when the client goes).
                            let client = f.task.0 >> KEY_BITS;
                            if self.clients.contains_key(&client) {
                                *self.finished_by_client.entry(client).or_default() += 1;
                                self.progress_dirty.insert(client);
                            }
                        }
                        self.finished_total += done.len() as u64;
                        if self.observer.is_some() {
                            self.observe_done(id, &done);
                        }
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
                        if let Some(obs) = &self.observer {
                            let kind = self.kinds.get(self.state.kernel_of(task).unwrap_or("?"));
                            let at = Instant::now();
                            let _ = obs.send(Observation::TaskFailed {
                                worker: id,
                                task,
                                kind,
                                at,
                            });
                        }
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
                        if let Some(obs) = &self.observer {
                            let at = Instant::now();
                            for (_, nbytes) in &list {
                                let nbytes = *nbytes;
                                let _ = obs.send(Observation::Transfer {
                                    worker: id,
                                    nbytes,
                                    at,
                                });
                            }
                        }
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
                        spilled,
                        cpu_permille,
                    } => Event::Heartbeat {
                        worker: id,
                        memory,
                        paused,
                        executing,
                        spilled,
                        cpu_permille,
                    },
                    WorkerToScheduler::ProgramsEnded(ended) => {
                        self.finished_total += ended.len() as u64;
                        self.observe_programs(id, &ended);
                        Event::ProgramsEnded { worker: id, ended }
                    }
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
                    max_graph_tasks: self.max_graph_tasks,
                }));
                self.clients.insert(id, out);
                let _ = reply.send(id);
            }
            // Each listed id costs an answer (a location, a retirement): a request may list
            // no more of them than a graph may have tasks.
            CoreMsg::FromClient { id, msg } if msg.ids_listed() as u64 > self.max_graph_tasks => {
                let reason = msg.too_many_ids(self.max_graph_tasks).unwrap_or_default();
                self.to_client(id, SchedulerToClient::GraphRejected { reason });
            }
            CoreMsg::FromClient { id, msg } => match msg {
                ClientToScheduler::Submit { tasks, wanted } => {
                    if let Some(obs) = &self.observer {
                        let n = tasks.len();
                        let _ = obs.send(Observation::GraphSubmitted {
                            client: id,
                            tasks: n,
                        });
                    }
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
                ClientToScheduler::SubmitTaskArray(spec) => {
                    tracing::info!(
                        "submission {} from client {id}: {} tasks of {}",
                        spec.submission,
                        spec.len(),
                        spec.argv.first().map(String::as_str).unwrap_or("")
                    );
                    self.state
                        .handle(Event::TaskArraySubmitted { client: id, spec });
                }
                ClientToScheduler::CancelTasks { submission, tasks } => {
                    self.state.handle(Event::CancelTasks { submission, tasks });
                }
                ClientToScheduler::Shutdown { exit_status } => {
                    tracing::info!("shutdown requested by client {id}");
                    self.exit_status = exit_status;
                    return false;
                }
            },
            CoreMsg::ClientDisconnected { id } => {
                self.clients.remove(&id);
                self.finished_by_client.remove(&id);
                self.progress_dirty.remove(&id);
                self.state.handle(Event::ClientGone { client: id });
            }
            CoreMsg::Oversized { id, size, limit } => {
                tracing::warn!("client {id} sent a message of {size} bytes (limit {limit})");
                let reason = format!(
                    "a message of {} MiB is over the scheduler's limit of {} MiB per message; \
                     submit the graph in parts",
                    size >> 20,
                    limit >> 20
                );
                self.to_client(id, SchedulerToClient::GraphRejected { reason });
            }
            #[cfg(any(test, debug_assertions))]
            CoreMsg::Panic => panic!("injected fault"),
            CoreMsg::Shutdown { exit_status } => {
                self.exit_status = exit_status.or(self.exit_status);
                return false;
            }
            CoreMsg::Observe(observer) => {
                self.observer = Some(observer);
                // The observer starts from a full picture, not after a second.
                self.last_snapshot = Instant::now() - Duration::from_secs(1);
                self.observe_snapshot();
            }
        }
        true
    }

    /// Tells the observer which tasks a worker finished, before the state machine may
    /// forget them (the kind is the task's kernel).
    fn observe_done(&mut self, worker: WorkerId, done: &[FinishedTask]) {
        let Some(obs) = &self.observer else {
            return;
        };
        let tasks = done
            .iter()
            .map(|f| TaskDone {
                task: f.task,
                kind: self.kinds.get(self.state.kernel_of(f.task).unwrap_or("?")),
                duration_us: f.duration_us,
                nbytes: f.nbytes,
            })
            .collect();
        let at = Instant::now();
        if obs
            .send(Observation::TasksDone { worker, at, tasks })
            .is_err()
        {
            self.observer = None;
        }
    }

    /// Tells the observer which program tasks (task arrays) a worker ended: successes join
    /// the task stream as kind "program", failures as failures; cancelled ones are neither.
    fn observe_programs(&mut self, worker: WorkerId, ended: &[ProgramEnded]) {
        let Some(obs) = &self.observer else {
            return;
        };
        let kind = self.kinds.get("program");
        let at = Instant::now();
        let mut tasks = Vec::new();
        for e in ended {
            match e.end {
                crate::task_array::TaskEnd::Succeeded => tasks.push(TaskDone {
                    task: e.task,
                    kind: kind.clone(),
                    duration_us: ((e.finish - e.start).max(0.0) * 1e6) as u64,
                    nbytes: 0,
                }),
                crate::task_array::TaskEnd::Cancelled => {}
                _ => {
                    let _ = obs.send(Observation::TaskFailed {
                        worker,
                        task: e.task,
                        kind: kind.clone(),
                        at,
                    });
                }
            }
        }
        if !tasks.is_empty()
            && obs
                .send(Observation::TasksDone { worker, at, tasks })
                .is_err()
        {
            self.observer = None;
        }
    }

    /// Once a second, while observed: the status report and the loop's worst lag.
    fn observe_snapshot(&mut self) {
        if self.observer.is_none() || self.last_snapshot.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_snapshot = Instant::now();
        let status = Box::new(self.status());
        let loop_lag_us = std::mem::take(&mut self.loop_lag_us);
        let gone = self.observer.as_ref().is_some_and(|o| {
            o.send(Observation::Snapshot {
                status,
                loop_lag_us,
            })
            .is_err()
        });
        if gone {
            self.observer = None;
        }
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
                "worker {id} sent nothing for {:.1} s; declaring it lost",
                self.heartbeat_timeout.as_secs_f64()
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
                Command::TasksStarted { client, started } => {
                    self.to_client(client, SchedulerToClient::TasksStarted(started));
                }
                Command::TaskOutcomes { client, outcomes } => {
                    self.to_client(client, SchedulerToClient::TaskOutcomes(outcomes));
                }
                Command::TaskArrayRejected {
                    client,
                    submission,
                    reason,
                } => {
                    tracing::warn!("submission {submission} refused: {reason}");
                    self.to_client(
                        client,
                        SchedulerToClient::TaskArrayRejected { submission, reason },
                    );
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
                let (spilled_bytes, cpu_permille) = self.state.worker_usage(id)?;
                Some(WorkerStatusReport {
                    id,
                    name: info.name.clone(),
                    address: info.address.clone(),
                    host: info.host.clone(),
                    job_id: info.job_id.clone(),
                    nthreads: info.nthreads,
                    memory_limit: info.memory_limit,
                    memory,
                    state: match status {
                        super::state::WorkerStatus::Running => WorkerState::Running,
                        super::state::WorkerStatus::Paused => WorkerState::Paused,
                        super::state::WorkerStatus::Retiring => WorkerState::Retiring,
                    },
                    processing: processing as u64,
                    results: results as u64,
                    held_bytes,
                    spilled_bytes,
                    cpu_permille,
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
            queued_programs: self.state.queued_programs(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TaskSpec;

    fn opts() -> SchedulerOptions {
        SchedulerOptions::new("127.0.0.1:0".parse().unwrap(), Secret::generate().unwrap())
    }

    #[tokio::test]
    async fn a_failing_core_is_reported_as_a_failure_not_a_shutdown() {
        let o = opts();
        let secret = o.secret.clone();
        let handle = start(o).await.unwrap();
        let client = crate::Client::connect(&handle.address, &secret)
            .await
            .unwrap();
        assert_eq!(handle.failure(), None);
        handle.inject_panic_after(Duration::ZERO);
        let how = tokio::time::timeout(Duration::from_secs(10), handle.ended())
            .await
            .unwrap();
        assert_eq!(how, Stopped::Failed("injected fault".into()));
        assert_eq!(handle.failure().as_deref(), Some("injected fault"));
        // Its clients learn that the connection is gone, not that it was shut down.
        assert_eq!(client.ended().await, None);
        // And the port is closed rather than left to handshakes that lead nowhere.
        let refused = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if tokio::net::TcpStream::connect(handle.local_addr)
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(refused.is_ok(), "the port still accepts connections");
    }

    #[tokio::test]
    async fn a_shutdown_is_reported_as_one() {
        let handle = start(opts()).await.unwrap();
        handle.shutdown_with_status(Some(3));
        assert_eq!(handle.ended().await, Stopped::Shutdown(Some(3)));
        assert_eq!(handle.failure(), None);
    }

    #[test]
    fn a_cluster_listens_on_its_workers_network_only() {
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        let ours = |list: &'static [&'static str]| {
            move |a: &std::net::IpAddr| {
                list.iter()
                    .any(|s| s.parse::<std::net::IpAddr>().unwrap() == *a)
            }
        };
        // The host name resolves to its cluster address: that one.
        assert_eq!(
            choose_listen_address(&[ip("10.1.2.3")], false, ours(&["10.1.2.3", "127.0.0.1"])),
            Some(ip("10.1.2.3"))
        );
        // Loopback first (Debian's /etc/hosts), then the real address: the real one.
        assert_eq!(
            choose_listen_address(
                &[ip("127.0.1.1"), ip("10.1.2.3")],
                false,
                ours(&["10.1.2.3", "127.0.1.1"])
            ),
            Some(ip("10.1.2.3"))
        );
        // Only loopback for our own name: nothing known about the network; everywhere.
        assert_eq!(
            choose_listen_address(&[ip("127.0.1.1")], false, ours(&["127.0.1.1"])),
            None
        );
        // A loopback contact the user gave: workers are on this host; loopback only.
        assert_eq!(
            choose_listen_address(&[ip("127.0.0.1")], true, ours(&["127.0.0.1"])),
            Some(ip("127.0.0.1"))
        );
        // A contact address that is not ours (NAT, a proxy): everywhere.
        assert_eq!(
            choose_listen_address(&[ip("203.0.113.9")], true, ours(&["10.1.2.3"])),
            None
        );
        assert_eq!(choose_listen_address(&[], true, ours(&["10.1.2.3"])), None);
    }

    #[test]
    fn warnings_are_limited_per_window_and_summed_up_after() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(3, Duration::from_secs(60));
        let verdicts: Vec<Admit> = (0..1000)
            .map(|i| limit.admit(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v != Admit::Suppress).count(),
            3
        );
        assert_eq!(verdicts[2], Admit::LogLast);
        assert_eq!(
            limit.admit(t0 + Duration::from_secs(61)),
            Admit::Log { suppressed: 997 }
        );
        assert_eq!(
            limit.admit(t0 + Duration::from_secs(62)),
            Admit::Log { suppressed: 0 }
        );
    }

    #[tokio::test]
    async fn a_client_over_the_limits_gets_a_reason_and_stays_connected() {
        let mut o = opts();
        o.config.max_graph_tasks = 5;
        let secret = o.secret.clone();
        let handle = start(o).await.unwrap();
        let client = crate::Client::connect(&handle.address, &secret)
            .await
            .unwrap();
        assert_eq!(client.max_graph_tasks(), 5);
        let key = |i| crate::ids::TaskId(client.new_key().0 + i);
        let graph = |n: u64| -> Vec<TaskSpec> {
            (0..n)
                .map(|i| TaskSpec::new(key(i), "noop", vec![], vec![]))
                .collect()
        };
        // The client refuses it before sending, naming the limit.
        let err = client.submit(graph(6), &[]).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("limit of 5 tasks"), "{err}");

        // One that reaches the scheduler anyway (another client, or one that did not check)
        // is refused with the reason; so is a frame over the frame limit, whose body the
        // scheduler skips unread. The connection serves on after both.
        let (mut reader, mut writer) = protocol::connect(&handle.address, &secret, Role::Client)
            .await
            .unwrap();
        let SchedulerToClient::Welcome { .. } = reader.read_control().await.unwrap() else {
            panic!("no welcome");
        };
        writer
            .write_control(&ClientToScheduler::Submit {
                tasks: graph(6),
                wanted: vec![],
            })
            .await
            .unwrap();
        writer.flush().await.unwrap();
        match reader.read_control().await.unwrap() {
            SchedulerToClient::GraphRejected { reason } => {
                assert!(
                    reason.contains("6 tasks") && reason.contains("limit of 5"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A request that lists more ids than that (each would get an answer) is refused too.
        let keys: Vec<_> = graph(6).into_iter().map(|t| t.id).collect();
        writer
            .write_control(&ClientToScheduler::WhoHas(keys))
            .await
            .unwrap();
        writer.flush().await.unwrap();
        match reader.read_control().await.unwrap() {
            SchedulerToClient::GraphRejected { reason } => {
                assert!(
                    reason.contains("listing 6") && reason.contains("limit of 5"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Our client refuses to send it.
        let keys: Vec<_> = graph(6).into_iter().map(|t| t.id).collect();
        let err = client.release(&keys).unwrap_err();
        assert!(
            matches!(err, Error::Invalid(_)) && err.to_string().contains("listing 6"),
            "{err}"
        );
        let size = protocol::MAX_CONTROL_FRAME + 1;
        let header = protocol::encode_header(Kind::Control, size).unwrap();
        writer.write_raw(&header).await.unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len());
            writer.write_raw(&zeros[..n]).await.unwrap();
            left -= n;
        }
        writer
            .write_control(&ClientToScheduler::Status)
            .await
            .unwrap();
        writer.flush().await.unwrap();
        match reader.read_control().await.unwrap() {
            SchedulerToClient::GraphRejected { reason } => {
                assert!(reason.contains("limit of 256 MiB"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reader.read_control().await.unwrap(),
            SchedulerToClient::Status(_)
        ));
    }
}
