//! The client: submits graphs, waits for results, and gathers them straight from the workers
//! that hold them (peer-to-peer, never through the scheduler).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::error::{Error, Result};
use crate::graph::{IdSet, TaskSpec};
use crate::ids::{TaskId, WorkerId};
use crate::protocol::messages::{ClientToScheduler, Holder, SchedulerToClient, StatusReport};
use crate::protocol::{self, Role, Secret};
use crate::task_array::{SubmissionId, TaskArraySpec, TaskOutcome, TaskStarted};
use crate::worker::peer::PeerPool;

/// Each key with the workers holding it.
pub type Locations = Vec<(TaskId, Vec<Holder>)>;

/// What a client hears about its task arrays ([`Client::task_events`]), in batches.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskEvent {
    /// Tasks handed to a worker (a retry is started again, with its attempt number).
    Started(Vec<TaskStarted>),
    /// Tasks that ended: each task of a submission ends exactly once.
    Ended(Vec<TaskOutcome>),
    /// The scheduler refused the array; none of it runs.
    Rejected {
        submission: SubmissionId,
        reason: String,
    },
}

/// A caller of [`Client::wait`]: the keys it still misses, and how to wake it.
struct Waiter {
    missing: IdSet<TaskId>,
    wake: Option<oneshot::Sender<()>>,
}

impl Waiter {
    fn wake(&mut self) {
        if let Some(tx) = self.wake.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Each arriving key is struck off the waiters that miss it, and a waiter is woken only
    /// when it misses nothing more: a graph of 100,000 wanted keys must not cost 100,000
    /// rescans of them.
    waiters: Vec<Waiter>,
    ready: HashMap<TaskId, (u64, Vec<Holder>)>,
    erred: HashMap<TaskId, String>,
    rejected: VecDeque<String>,
    retired: Vec<WorkerId>,
    status: VecDeque<oneshot::Sender<StatusReport>>,
    who_has: VecDeque<oneshot::Sender<Locations>>,
    closed: Option<String>,
    /// The scheduler said it is stopping, with this exit status.
    shutting_down: Option<Option<i32>>,
    /// Subscribers to task-array events; each gets every event.
    task_events: Vec<mpsc::UnboundedSender<TaskEvent>>,
}

impl Inner {
    fn publish(&mut self, event: TaskEvent) {
        if let [only] = &self.task_events[..] {
            if only.send(event).is_err() {
                self.task_events.clear();
            }
            return;
        }
        self.task_events.retain(|tx| tx.send(event.clone()).is_ok());
    }
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A connection to a scheduler.
pub struct Client {
    /// Encoded control frames: each message is encoded by the caller, where a message too
    /// big to send is an error the caller sees (not a connection the writer drops).
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    key_base: u64,
    /// The scheduler's per-submission task limit, from its welcome.
    max_graph_tasks: u64,
    next_key: AtomicU64,
    pool: PeerPool,
    progress: watch::Receiver<u64>,
    pub address: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    /// Connects and authenticates with the cluster's secret.
    pub async fn connect(address: &str, secret: &Secret) -> Result<Client> {
        let (mut reader, mut writer) = protocol::connect(address, secret, Role::Client)
            .await
            .map_err(|e| {
                Error::runtime(format!("cannot connect to the scheduler at {address}: {e}"))
            })?;
        let first = reader
            .read_frame()
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::runtime("the scheduler closed the connection"))?;
        let SchedulerToClient::Welcome {
            key_base,
            max_graph_tasks,
            ..
        } = first.decode().map_err(Error::from)?
        else {
            return Err(Error::runtime("the scheduler did not welcome this client"));
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let (progress_tx, progress) = watch::channel(0u64);
        let reader_shared = shared.clone();
        let reader_task = tokio::spawn(async move {
            let why = loop {
                let msg = match reader.read_frame().await {
                    Ok(Some(frame)) => match frame.decode::<SchedulerToClient>() {
                        Ok(m) => m,
                        Err(e) => break e.to_string(),
                    },
                    Ok(None) => break "the scheduler closed the connection".to_string(),
                    Err(e) => break e.to_string(),
                };
                let mut inner = reader_shared.inner.lock().expect("client state");
                match msg {
                    SchedulerToClient::Welcome { .. } => {}
                    SchedulerToClient::KeyReady {
                        key,
                        nbytes,
                        holders,
                    } => {
                        inner.erred.remove(&key);
                        inner.ready.insert(key, (nbytes, holders));
                        for w in &mut inner.waiters {
                            if w.missing.remove(&key) && w.missing.is_empty() {
                                w.wake();
                            }
                        }
                    }
                    SchedulerToClient::KeyErred { key, error } => {
                        inner.erred.insert(key, error);
                        for w in inner
                            .waiters
                            .iter_mut()
                            .filter(|w| w.missing.contains(&key))
                        {
                            w.wake();
                        }
                    }
                    SchedulerToClient::GraphRejected { reason } => {
                        inner.rejected.push_back(reason);
                        inner.waiters.iter_mut().for_each(Waiter::wake);
                    }
                    SchedulerToClient::WhoHas(list) => {
                        if let Some(tx) = inner.who_has.pop_front() {
                            let _ = tx.send(list);
                        }
                    }
                    SchedulerToClient::Progress { finished } => {
                        let _ = progress_tx.send(finished);
                    }
                    SchedulerToClient::Status(report) => {
                        if let Some(tx) = inner.status.pop_front() {
                            let _ = tx.send(*report);
                        }
                    }
                    SchedulerToClient::WorkerRetired(w) => {
                        inner.retired.push(w);
                        drop(inner);
                        reader_shared.changed.notify_waiters();
                    }
                    SchedulerToClient::ShuttingDown { exit_status } => {
                        inner.shutting_down = Some(exit_status);
                    }
                    SchedulerToClient::TasksStarted(started) => {
                        inner.publish(TaskEvent::Started(started));
                    }
                    SchedulerToClient::TaskOutcomes(outcomes) => {
                        inner.publish(TaskEvent::Ended(outcomes));
                    }
                    SchedulerToClient::TaskArrayRejected { submission, reason } => {
                        inner.publish(TaskEvent::Rejected { submission, reason });
                    }
                }
            };
            let mut inner = reader_shared.inner.lock().expect("client state");
            inner.closed = Some(why);
            inner.waiters.iter_mut().for_each(Waiter::wake);
            // Pending status requests will never be answered: fail them now.
            inner.status.clear();
            // Subscribers see their stream end.
            inner.task_events.clear();
            drop(inner);
            reader_shared.changed.notify_waiters();
        });
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_task = tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if writer.write_encoded(&frame).await.is_err() {
                    return;
                }
                while let Ok(more) = out_rx.try_recv() {
                    if writer.write_encoded(&more).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    return;
                }
            }
        });
        Ok(Client {
            out,
            shared,
            key_base,
            max_graph_tasks,
            next_key: AtomicU64::new(0),
            pool: PeerPool::new(secret.clone()),
            progress,
            address: address.to_string(),
            tasks: vec![reader_task, writer_task],
        })
    }

    /// A fresh key in this client's range.
    pub fn new_key(&self) -> TaskId {
        TaskId(self.key_base | self.next_key.fetch_add(1, Ordering::Relaxed))
    }

    fn send(&self, msg: ClientToScheduler) -> Result<()> {
        if let Some(reason) = msg.too_many_ids(self.max_graph_tasks) {
            return Err(Error::invalid(reason));
        }
        let frame = protocol::encode_control(&msg).map_err(|e| match e {
            protocol::ProtocolError::Oversized { size, limit } => Error::invalid(format!(
                "a message of {} MiB is over the limit of {} MiB per message; submit the \
                 graph in parts",
                size >> 20,
                limit >> 20
            )),
            other => Error::from(other),
        })?;
        self.out
            .send(frame)
            .map_err(|_| Error::runtime("the connection to the scheduler is closed"))
    }

    /// The most tasks one [`Client::submit`] may carry (the scheduler's limit).
    pub fn max_graph_tasks(&self) -> u64 {
        self.max_graph_tasks
    }

    /// Submits a graph in one batch; `wanted` are the results this client will ask for.
    /// A graph over the scheduler's task limit is refused here, before anything is sent.
    pub fn submit(&self, tasks: Vec<TaskSpec>, wanted: &[TaskId]) -> Result<()> {
        if tasks.len() as u64 > self.max_graph_tasks {
            return Err(Error::invalid(crate::graph::too_many_tasks(
                tasks.len(),
                self.max_graph_tasks as usize,
            )));
        }
        self.send(ClientToScheduler::Submit {
            tasks,
            wanted: wanted.to_vec(),
        })
    }

    /// Finished tasks of this client so far, updated about every 100 ms (for progress bars).
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }

    /// Waits until every key is in memory; fails on the first error.
    pub async fn wait(&self, keys: &[TaskId]) -> Result<()> {
        loop {
            let woken = {
                let mut inner = self.shared.inner.lock().expect("client state");
                inner.waiters.retain(|w| w.wake.is_some());
                if let Some(reason) = inner.rejected.pop_front() {
                    return Err(Error::invalid(format!(
                        "the scheduler rejected the graph: {reason}"
                    )));
                }
                if let Some((k, e)) = keys.iter().find_map(|k| inner.erred.get(k).map(|e| (k, e))) {
                    return Err(Error::runtime(format!("task {k} failed: {e}")));
                }
                let missing: IdSet<TaskId> = keys
                    .iter()
                    .filter(|k| !inner.ready.contains_key(k))
                    .copied()
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                if let Some(why) = &inner.closed {
                    return Err(Error::runtime(format!("lost the scheduler: {why}")));
                }
                let (tx, rx) = oneshot::channel();
                inner.waiters.push(Waiter {
                    missing,
                    wake: Some(tx),
                });
                rx
            };
            let _ = woken.await;
        }
    }

    /// Waits for the keys and fetches their results from the workers holding them. If a
    /// holder vanishes meanwhile, waits for the recomputed result and fetches again.
    pub async fn gather(&self, keys: &[TaskId]) -> Result<Vec<Bytes>> {
        let mut results: HashMap<TaskId, Bytes> = HashMap::new();
        for attempt in 0.. {
            let todo: Vec<TaskId> = keys
                .iter()
                .filter(|k| !results.contains_key(k))
                .copied()
                .collect();
            if todo.is_empty() {
                break;
            }
            self.wait(&todo).await?;
            let mut by_holder: HashMap<String, Vec<TaskId>> = HashMap::new();
            {
                let inner = self.shared.inner.lock().expect("client state");
                for k in &todo {
                    if let Some((_, holders)) = inner.ready.get(k) {
                        if let Some(h) = holders.get(attempt % holders.len().max(1)) {
                            by_holder.entry(h.address.clone()).or_default().push(*k);
                        }
                    }
                }
            }
            for (addr, ks) in by_holder {
                if let Ok(answers) = self.pool.get(&addr, &ks).await {
                    for (k, data) in answers {
                        if let Some(d) = data {
                            results.insert(k, d);
                        }
                    }
                }
            }
            let failed: Vec<TaskId> = todo
                .iter()
                .filter(|k| !results.contains_key(k))
                .copied()
                .collect();
            if failed.is_empty() {
                continue;
            }
            if attempt >= 20 {
                return Err(Error::runtime(format!(
                    "could not fetch {} results from any worker",
                    failed.len()
                )));
            }
            // Ask where they are now; keys held nowhere are being recomputed.
            let answer = self.who_has(&failed).await?;
            {
                let mut inner = self.shared.inner.lock().expect("client state");
                for (k, holders) in answer {
                    if holders.is_empty() {
                        inner.ready.remove(&k);
                    } else if let Some(entry) = inner.ready.get_mut(&k) {
                        entry.1 = holders;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
        }
        Ok(keys
            .iter()
            .map(|k| results.remove(k).expect("gathered"))
            .collect())
    }

    /// The workers holding each result now.
    pub async fn who_has(&self, keys: &[TaskId]) -> Result<Vec<(TaskId, Vec<Holder>)>> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .inner
            .lock()
            .expect("client state")
            .who_has
            .push_back(tx);
        self.send(ClientToScheduler::WhoHas(keys.to_vec()))?;
        rx.await
            .map_err(|_| Error::runtime("lost the scheduler before it answered"))
    }

    /// The scheduler may drop these results everywhere (and cancel them if still running).
    pub fn release(&self, keys: &[TaskId]) -> Result<()> {
        // Sent first: a release refused here (over the limit) leaves the results known.
        self.send(ClientToScheduler::Release(keys.to_vec()))?;
        let mut inner = self.shared.inner.lock().expect("client state");
        for k in keys {
            inner.ready.remove(k);
            inner.erred.remove(k);
        }
        Ok(())
    }

    /// Submits, gathers the wanted results, and releases them.
    pub async fn compute(&self, tasks: Vec<TaskSpec>, wanted: &[TaskId]) -> Result<Vec<Bytes>> {
        self.submit(tasks, wanted)?;
        let result = self.gather(wanted).await;
        self.release(wanted)?;
        result
    }

    pub async fn status(&self) -> Result<StatusReport> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.inner.lock().expect("client state");
            if let Some(why) = &inner.closed {
                return Err(Error::runtime(format!("lost the scheduler: {why}")));
            }
            inner.status.push_back(tx);
        }
        self.send(ClientToScheduler::Status)?;
        rx.await
            .map_err(|_| Error::runtime("lost the scheduler before it answered"))
    }

    /// Copies results to one more worker (peer-to-peer, from a current holder) and waits until
    /// the scheduler lists it as a holder of each.
    pub async fn replicate(&self, keys: &[TaskId], to: WorkerId) -> Result<()> {
        self.send(ClientToScheduler::Replicate {
            keys: keys.to_vec(),
            to,
        })?;
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let located = self.who_has(keys).await?;
            if located
                .iter()
                .all(|(_, holders)| holders.iter().any(|h| h.worker == to))
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::runtime(format!(
                    "worker {to} did not receive the results within 10 minutes"
                )));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Retires workers gracefully and waits until each has handed its results over and left.
    pub async fn retire(&self, workers: &[WorkerId]) -> Result<()> {
        self.send(ClientToScheduler::Retire(workers.to_vec()))?;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let inner = self.shared.inner.lock().expect("client state");
                if workers.iter().all(|w| inner.retired.contains(w)) {
                    return Ok(());
                }
                if let Some(why) = &inner.closed {
                    return Err(Error::runtime(format!("lost the scheduler: {why}")));
                }
            }
            changed.await;
        }
    }

    /// A stream of events about this client's task arrays: tasks started and ended. Subscribe
    /// before submitting (events before the subscription are not kept). The stream ends
    /// when the connection to the scheduler does.
    pub fn task_events(&self) -> mpsc::UnboundedReceiver<TaskEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.shared.inner.lock().expect("client state");
        if inner.closed.is_none() {
            inner.task_events.push(tx);
        }
        rx
    }

    /// Submits a task array as one message (the scheduler expands it). A description that
    /// cannot run is refused here, before anything is sent. Its outcomes reach
    /// [`Client::task_events`]; its id is the caller's (`spec.submission`) and must not be
    /// one the scheduler still runs.
    pub fn submit_task_array(&self, spec: TaskArraySpec) -> Result<()> {
        spec.check()?;
        self.send(ClientToScheduler::SubmitTaskArray(Box::new(spec)))
    }

    /// Cancels a submission's tasks: all of them, or those with ids in `first..=last`.
    /// Queued ones end `Cancelled` at once, running ones are killed (their process group).
    pub fn cancel_tasks(&self, submission: SubmissionId, tasks: Option<(u64, u64)>) -> Result<()> {
        if let Some((first, last)) = tasks {
            if first > last {
                return Err(Error::invalid(format!(
                    "the task range {first}-{last} is empty: write it as FIRST-LAST"
                )));
            }
        }
        self.send(ClientToScheduler::CancelTasks { submission, tasks })
    }

    /// Submits a task array and waits until every task of it has ended; the outcomes in
    /// task order. `on_event` sees each event of this submission as it arrives (progress).
    pub async fn run_task_array(
        &self,
        spec: TaskArraySpec,
        mut on_event: impl FnMut(&TaskEvent),
    ) -> Result<Vec<TaskOutcome>> {
        let submission = spec.submission;
        let total = spec.len();
        let mut events = self.task_events();
        self.submit_task_array(spec)?;
        let mut outcomes: Vec<TaskOutcome> = Vec::new();
        while (outcomes.len() as u64) < total {
            let Some(event) = events.recv().await else {
                let why = self
                    .shared
                    .inner
                    .lock()
                    .expect("client state")
                    .closed
                    .clone();
                return Err(Error::runtime(format!(
                    "lost the scheduler while submission {submission} ran: {}",
                    why.unwrap_or_else(|| "connection closed".into())
                )));
            };
            match &event {
                TaskEvent::Rejected {
                    submission: s,
                    reason,
                } if *s == submission => {
                    on_event(&event);
                    return Err(Error::invalid(format!(
                        "the scheduler refused submission {submission}: {reason}"
                    )));
                }
                TaskEvent::Ended(list) => {
                    let mine: Vec<TaskOutcome> = list
                        .iter()
                        .filter(|o| o.submission == submission)
                        .cloned()
                        .collect();
                    if !mine.is_empty() {
                        on_event(&TaskEvent::Ended(mine.clone()));
                        outcomes.extend(mine);
                    }
                }
                TaskEvent::Started(list) => {
                    let mine: Vec<TaskStarted> = list
                        .iter()
                        .filter(|o| o.submission == submission)
                        .cloned()
                        .collect();
                    if !mine.is_empty() {
                        on_event(&TaskEvent::Started(mine));
                    }
                }
                TaskEvent::Rejected { .. } => {}
            }
        }
        outcomes.sort_by_key(|o| o.task);
        Ok(outcomes)
    }

    /// Stops the scheduler and all its workers.
    pub fn shutdown(&self) -> Result<()> {
        self.shutdown_with_status(None)
    }

    /// Stops the scheduler and all its workers, telling every client the run's exit status.
    pub fn shutdown_with_status(&self, exit_status: Option<i32>) -> Result<()> {
        self.send(ClientToScheduler::Shutdown { exit_status })
    }

    /// Waits until the scheduler goes: `Some(status)` when it shut down in order (with the
    /// exit status its stopper gave, if any), `None` when the connection was lost.
    pub async fn ended(&self) -> Option<Option<i32>> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let inner = self.shared.inner.lock().expect("client state");
                if inner.closed.is_some() {
                    return inner.shutting_down;
                }
            }
            changed.await;
        }
    }
}
