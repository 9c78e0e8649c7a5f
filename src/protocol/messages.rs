//! The control messages each kind of connection speaks, after the handshake. They travel as
//! postcard-encoded control frames; array chunks and other results travel only as data
//! frames, between workers and from workers to clients, never through the scheduler.

use serde::{Deserialize, Serialize};

use crate::graph::TaskSpec;
use crate::ids::{ClientId, TaskId, WorkerId};

/// A worker's first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub name: String,
    /// "host:port" where the worker serves its results to peers and clients.
    pub address: String,
    pub nthreads: u32,
    pub memory_limit: u64,
    pub host: String,
    pub pid: u32,
    /// The batch job the worker runs in, read from its environment.
    pub job_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedTask {
    pub task: TaskId,
    pub nbytes: u64,
    pub duration_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerToScheduler {
    Register(Registration),
    /// Tasks finished since the last message (batched).
    Finished(Vec<FinishedTask>),
    Failed {
        task: TaskId,
        error: String,
    },
    /// These inputs of `task` could not be fetched from the holders listed.
    Missing {
        task: TaskId,
        missing: Vec<(TaskId, Vec<WorkerId>)>,
    },
    /// Results this worker now holds copies of (fetched inputs, replications).
    Replicas(Vec<(TaskId, u64)>),
    Heartbeat {
        memory: u64,
        paused: bool,
        executing: Vec<TaskId>,
    },
    /// Retire me gracefully (my lifetime is up: the job's walltime is near): copy my unique
    /// results to others, then close me.
    RetireMe,
}

/// Where a task's input lives, as a worker needs to fetch it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDep {
    pub task: TaskId,
    pub nbytes: u64,
    pub holders: Vec<WorkerId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTask {
    pub task: TaskId,
    pub kernel: String,
    pub args: Vec<u8>,
    pub deps: Vec<WireDep>,
    pub priority: (u64, u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerToWorker {
    Welcome {
        worker: WorkerId,
        heartbeat_ms: u64,
    },
    /// Peers joined (id, address); the first one carries the whole directory.
    Peers(Vec<(WorkerId, String)>),
    PeerGone(WorkerId),
    Compute(Vec<WireTask>),
    /// Drop these results, or cancel these tasks if not yet run.
    Release(Vec<TaskId>),
    /// Fetch these results from their holders and keep them.
    Replicate(Vec<WireDep>),
    /// Exit now (retired, or the cluster is shutting down).
    Close,
}

/// A holder of a result, with the address to fetch it from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub worker: WorkerId,
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientToScheduler {
    Submit {
        tasks: Vec<TaskSpec>,
        wanted: Vec<TaskId>,
    },
    Release(Vec<TaskId>),
    /// Where are these results now (after a holder was lost, say)?
    WhoHas(Vec<TaskId>),
    Status,
    /// Retire these workers gracefully (their unique results are copied first).
    Retire(Vec<WorkerId>),
    /// Copy these results to this worker too (as Dask's `replicate`), e.g. to spread hot data.
    Replicate {
        keys: Vec<TaskId>,
        to: WorkerId,
    },
    /// Stop the scheduler and every worker; `exit_status` is passed on to every client (the
    /// MPI-style runner's ranks end with the driver's status).
    Shutdown {
        exit_status: Option<i32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatusReport {
    pub id: WorkerId,
    pub name: String,
    pub address: String,
    pub host: String,
    pub job_id: Option<String>,
    pub nthreads: u32,
    pub memory_limit: u64,
    pub memory: u64,
    pub state: String,
    pub processing: u64,
    pub results: u64,
    pub held_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCountsReport {
    pub released: u64,
    pub waiting: u64,
    pub queued: u64,
    pub processing: u64,
    pub memory: u64,
    pub erred: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub address: String,
    pub workers: Vec<WorkerStatusReport>,
    pub tasks: TaskCountsReport,
    /// Tasks finished since the scheduler started.
    pub finished_total: u64,
    /// Bytes the scheduler received and sent on all connections: control messages only,
    /// which shows that no result data passes through it.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Expected microseconds of work waiting, for adaptive scaling.
    pub pending_work_us: u64,
    /// Client connections open now.
    pub clients: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerToClient {
    Welcome {
        client: ClientId,
        key_base: u64,
        /// Most tasks one `Submit` may carry: the client refuses a bigger graph itself.
        max_graph_tasks: u64,
    },
    KeyReady {
        key: TaskId,
        nbytes: u64,
        holders: Vec<Holder>,
    },
    KeyErred {
        key: TaskId,
        error: String,
    },
    GraphRejected {
        reason: String,
    },
    WhoHas(Vec<(TaskId, Vec<Holder>)>),
    /// Tasks of this client finished so far (sent at most every 100 ms while work runs).
    Progress {
        finished: u64,
    },
    Status(Box<StatusReport>),
    WorkerRetired(WorkerId),
    /// The scheduler is stopping (the last message a client gets), with the exit status the
    /// client that stopped it gave.
    ShuttingDown {
        exit_status: Option<i32>,
    },
}

/// Worker-to-worker and client-to-worker requests for results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    Get(Vec<TaskId>),
}

/// Each requested key gets one of these; `Data` is followed by one data frame of `nbytes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Data { task: TaskId, nbytes: u64 },
    Missing { task: TaskId },
}
