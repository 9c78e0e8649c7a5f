//! The control messages each kind of connection speaks, after the handshake. They travel as
//! postcard-encoded control frames; array chunks and other results travel only as data
//! frames, between workers and from workers to clients, never through the scheduler.

use serde::{Deserialize, Serialize};

use crate::graph::TaskSpec;
use crate::ids::{ClientId, TaskId, WorkerId};
use crate::task_array::{SubmissionId, TaskArraySpec, TaskEnd, TaskOutcome, TaskStarted};

/// A worker's first message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// What else it offers tasks (`--resources GPU=1`), by name and amount.
    pub resources: Vec<(String, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedTask {
    pub task: TaskId,
    pub nbytes: u64,
    pub duration_us: u64,
}

/// A program task (a task array's) ended on a worker. Its result is this record, never data
/// kept in the worker's store, so results of 100,000 tasks do not pile up anywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramEnded {
    pub task: TaskId,
    /// `Cancelled` only when the scheduler released it while it ran.
    pub end: TaskEnd,
    /// Unix seconds.
    pub start: f64,
    pub finish: f64,
    pub stderr_tail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        /// Bytes of results this worker holds spilled to disk.
        spilled: u64,
        /// Process CPU use since the last heartbeat, thousandths of one core.
        cpu_permille: u32,
    },
    /// Retire me gracefully (my lifetime is up: the job's walltime is near): copy my unique
    /// results to others, then close me.
    RetireMe,
    /// Program tasks that ended (batched), with how.
    ProgramsEnded(Vec<ProgramEnded>),
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// A whole task array in one description; the scheduler expands it as it places tasks.
    SubmitTaskArray(Box<TaskArraySpec>),
    /// Cancel a submission's tasks: all, or those with ids in `first..=last`.
    CancelTasks {
        submission: SubmissionId,
        tasks: Option<(u64, u64)>,
    },
}

impl ClientToScheduler {
    /// How many ids the message lists (keys or workers; a graph's tasks are counted apart):
    /// the scheduler answers per id, so a request's size is bounded like a graph's.
    pub fn ids_listed(&self) -> usize {
        match self {
            ClientToScheduler::Submit { wanted, .. } => wanted.len(),
            ClientToScheduler::Release(keys)
            | ClientToScheduler::WhoHas(keys)
            | ClientToScheduler::Replicate { keys, .. } => keys.len(),
            ClientToScheduler::Retire(workers) => workers.len(),
            ClientToScheduler::Status
            | ClientToScheduler::Shutdown { .. }
            | ClientToScheduler::SubmitTaskArray(_)
            | ClientToScheduler::CancelTasks { .. } => 0,
        }
    }

    /// Why the message lists too many ids for a scheduler whose limit is `limit`, if it does:
    /// the one wording of the client's own check and the scheduler's.
    pub fn too_many_ids(&self, limit: u64) -> Option<String> {
        let n = self.ids_listed();
        (n as u64 > limit).then(|| {
            format!(
                "a request listing {n} keys or workers is over this scheduler's limit of \
                 {limit} per message; send it in parts"
            )
        })
    }
}

/// What a worker is doing, as the scheduler reports it. An enum on the wire (not a word to
/// compare): the deployer decides by it (a job whose workers all retire is ending).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Takes tasks.
    Running,
    /// Over its pause threshold: takes no new tasks until its memory falls.
    Paused,
    /// Handing its results over before it closes.
    Retiring,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Running => "running",
            WorkerState::Paused => "paused",
            WorkerState::Retiring => "retiring",
        })
    }
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
    pub state: WorkerState,
    pub processing: u64,
    pub results: u64,
    pub held_bytes: u64,
    /// From the worker's last heartbeat: results spilled to disk, and CPU use in
    /// thousandths of one core.
    pub spilled_bytes: u64,
    pub cpu_permille: u32,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Program tasks (task arrays) waiting for room, by what each needs: adaptive scaling
    /// grows the cluster for them.
    pub queued_programs: Vec<QueuedDemand>,
}

/// Queued program tasks that need the same per-task room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedDemand {
    /// Cpus each task reserves.
    pub cpus: u32,
    /// Resources each task holds (sorted by name).
    pub resources: Vec<(String, f64)>,
    /// Tasks ready to run (not held by `after`).
    pub tasks: u64,
    /// Tasks held until submissions they wait for finish.
    pub held: u64,
}

impl QueuedDemand {
    /// Cpus the ready tasks would take at once.
    pub fn cpus_queued(&self) -> u64 {
        self.tasks * u64::from(self.cpus)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Tasks of this client's arrays handed to workers (batched).
    TasksStarted(Vec<TaskStarted>),
    /// Tasks of this client's arrays that ended (batched); every task ends exactly once.
    TaskOutcomes(Vec<TaskOutcome>),
    /// A task array that was not accepted (nothing of it runs).
    TaskArrayRejected {
        submission: SubmissionId,
        reason: String,
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

#[cfg(test)]
mod tests {
    //! Golden bytes: every message, encoded, must stay exactly these bytes. A failure here
    //! means the wire format changed: if that is meant, bump `PROTOCOL_VERSION` (so peers of
    //! the two versions refuse each other with a clear error) and paste the new bytes, which
    //! the failure prints.

    use super::*;
    use crate::protocol::{decode_control, encode_control};
    use proptest::prelude::*;
    use std::fmt::Write;

    fn t(n: u64) -> TaskId {
        TaskId(n)
    }

    fn registration() -> Registration {
        Registration {
            name: "w".into(),
            address: "h:1".into(),
            nthreads: 2,
            memory_limit: 1 << 30,
            host: "h".into(),
            pid: 7,
            job_id: Some("42".into()),
            resources: vec![("GPU".into(), 1.0)],
        }
    }

    fn dep() -> WireDep {
        WireDep {
            task: t(5),
            nbytes: 300,
            holders: vec![1, 2],
        }
    }

    fn status() -> StatusReport {
        StatusReport {
            address: "tcp://h:1".into(),
            workers: vec![WorkerStatusReport {
                id: 1,
                name: "w".into(),
                address: "h:2".into(),
                host: "h".into(),
                job_id: None,
                nthreads: 1,
                memory_limit: 1000,
                memory: 10,
                state: WorkerState::Running,
                processing: 1,
                results: 2,
                held_bytes: 3,
                spilled_bytes: 4,
                cpu_permille: 1500,
            }],
            tasks: TaskCountsReport {
                released: 1,
                waiting: 2,
                queued: 3,
                processing: 4,
                memory: 5,
                erred: 6,
            },
            finished_total: 7,
            bytes_received: 8,
            bytes_sent: 9,
            pending_work_us: 10,
            clients: 1,
            queued_programs: vec![QueuedDemand {
                cpus: 2,
                resources: vec![],
                tasks: 3,
                held: 1,
            }],
        }
    }

    /// One sample of every message variant, encoded as a whole control frame (header too).
    fn samples() -> Vec<(&'static str, Vec<u8>)> {
        fn enc<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
            name: &'static str,
            msg: T,
        ) -> (&'static str, Vec<u8>) {
            let frame = encode_control(&msg).unwrap();
            // And back: what is written is what is read.
            let back: T = decode_control(&frame[crate::protocol::HEADER_LEN..]).unwrap();
            assert_eq!(back, msg, "{name}");
            (name, frame)
        }
        vec![
            enc("w.register", WorkerToScheduler::Register(registration())),
            enc(
                "w.finished",
                WorkerToScheduler::Finished(vec![FinishedTask {
                    task: t(1),
                    nbytes: 8,
                    duration_us: 130,
                }]),
            ),
            enc(
                "w.failed",
                WorkerToScheduler::Failed {
                    task: t(1),
                    error: "e".into(),
                },
            ),
            enc(
                "w.missing",
                WorkerToScheduler::Missing {
                    task: t(1),
                    missing: vec![(t(2), vec![3])],
                },
            ),
            enc("w.replicas", WorkerToScheduler::Replicas(vec![(t(1), 8)])),
            enc(
                "w.heartbeat",
                WorkerToScheduler::Heartbeat {
                    memory: 1000,
                    paused: true,
                    executing: vec![t(1)],
                    spilled: 4096,
                    cpu_permille: 950,
                },
            ),
            enc("w.retire_me", WorkerToScheduler::RetireMe),
            enc(
                "w.programs_ended",
                WorkerToScheduler::ProgramsEnded(vec![ProgramEnded {
                    task: t(1),
                    end: TaskEnd::Failed { code: 2 },
                    start: 1.5,
                    finish: 2.0,
                    stderr_tail: "e".into(),
                }]),
            ),
            enc(
                "s2w.welcome",
                SchedulerToWorker::Welcome {
                    worker: 3,
                    heartbeat_ms: 1000,
                },
            ),
            enc(
                "s2w.peers",
                SchedulerToWorker::Peers(vec![(1, "h:2".into())]),
            ),
            enc("s2w.peer_gone", SchedulerToWorker::PeerGone(1)),
            enc(
                "s2w.compute",
                SchedulerToWorker::Compute(vec![WireTask {
                    task: t(9),
                    kernel: "noop".into(),
                    args: vec![1, 2],
                    deps: vec![dep()],
                    priority: (1, 2),
                }]),
            ),
            enc("s2w.release", SchedulerToWorker::Release(vec![t(1), t(2)])),
            enc("s2w.replicate", SchedulerToWorker::Replicate(vec![dep()])),
            enc("s2w.close", SchedulerToWorker::Close),
            enc(
                "c.submit",
                ClientToScheduler::Submit {
                    tasks: vec![TaskSpec::new(t(2), "k", vec![0], vec![t(1)])],
                    wanted: vec![t(2)],
                },
            ),
            enc("c.release", ClientToScheduler::Release(vec![t(2)])),
            enc("c.who_has", ClientToScheduler::WhoHas(vec![t(2)])),
            enc("c.status", ClientToScheduler::Status),
            enc("c.retire", ClientToScheduler::Retire(vec![1])),
            enc(
                "c.replicate",
                ClientToScheduler::Replicate {
                    keys: vec![t(2)],
                    to: 1,
                },
            ),
            enc(
                "c.shutdown",
                ClientToScheduler::Shutdown {
                    exit_status: Some(3),
                },
            ),
            enc(
                "c.submit_task_array",
                ClientToScheduler::SubmitTaskArray(Box::new(
                    crate::task_array::TaskArraySpec::new(
                        SubmissionId(3),
                        crate::task_array::Items::Range {
                            start: 1,
                            end: 9,
                            step: 2,
                        },
                        vec!["echo".into(), "{task}".into()],
                    ),
                )),
            ),
            enc(
                "c.cancel_tasks",
                ClientToScheduler::CancelTasks {
                    submission: SubmissionId(3),
                    tasks: Some((3, 7)),
                },
            ),
            enc(
                "s2c.welcome",
                SchedulerToClient::Welcome {
                    client: 1,
                    key_base: 1 << 40,
                    max_graph_tasks: 2_000_000,
                },
            ),
            enc(
                "s2c.key_ready",
                SchedulerToClient::KeyReady {
                    key: t(2),
                    nbytes: 8,
                    holders: vec![Holder {
                        worker: 1,
                        address: "h:2".into(),
                    }],
                },
            ),
            enc(
                "s2c.key_erred",
                SchedulerToClient::KeyErred {
                    key: t(2),
                    error: "e".into(),
                },
            ),
            enc(
                "s2c.graph_rejected",
                SchedulerToClient::GraphRejected { reason: "r".into() },
            ),
            enc(
                "s2c.who_has",
                SchedulerToClient::WhoHas(vec![(t(2), vec![])]),
            ),
            enc(
                "s2c.progress",
                SchedulerToClient::Progress { finished: 300 },
            ),
            enc("s2c.status", SchedulerToClient::Status(Box::new(status()))),
            enc("s2c.worker_retired", SchedulerToClient::WorkerRetired(1)),
            enc(
                "s2c.shutting_down",
                SchedulerToClient::ShuttingDown { exit_status: None },
            ),
            enc(
                "s2c.tasks_started",
                SchedulerToClient::TasksStarted(vec![TaskStarted {
                    submission: SubmissionId(3),
                    task: 5,
                    attempt: 1,
                    worker: "w".into(),
                    host: "h".into(),
                }]),
            ),
            enc(
                "s2c.task_outcomes",
                SchedulerToClient::TaskOutcomes(vec![TaskOutcome {
                    submission: SubmissionId(3),
                    task: 5,
                    state: TaskEnd::Signalled { signal: 9 },
                    attempt: 1,
                    start: 1.0,
                    end: 2.5,
                    worker: "w".into(),
                    host: "h".into(),
                    stderr_tail: "t".into(),
                }]),
            ),
            enc(
                "s2c.task_array_rejected",
                SchedulerToClient::TaskArrayRejected {
                    submission: SubmissionId(3),
                    reason: "r".into(),
                },
            ),
            enc("peer.get", PeerRequest::Get(vec![t(1), t(2)])),
            enc(
                "peer.data",
                PeerResponse::Data {
                    task: t(1),
                    nbytes: 1 << 20,
                },
            ),
            enc("peer.missing", PeerResponse::Missing { task: t(1) }),
        ]
    }

    #[rustfmt::skip]
    const GOLDEN: &[(&str, &str)] = &[
        ("w.register", "210000000000017703683a31028080808004016807010234320103475055000000000000f03f"),
        ("w.finished", "0600000000010101088201"),
        ("w.failed", "040000000002010165"),
        ("w.missing", "0600000000030101020103"),
        ("w.replicas", "040000000004010108"),
        ("w.heartbeat", "0a0000000005e8070101018020b607"),
        ("w.retire_me", "010000000006"),
        ("w.programs_ended", "17000000000701010104000000000000f83f00000000000000400165"),
        ("s2w.welcome", "04000000000003e807"),
        ("s2w.peers", "070000000001010103683a32"),
        ("s2w.peer_gone", "02000000000201"),
        ("s2w.compute", "1400000000030109046e6f6f700201020105ac020201020102"),
        ("s2w.release", "040000000004020102"),
        ("s2w.replicate", "0800000000050105ac02020102"),
        ("s2w.close", "010000000006"),
        ("c.submit", "0b00000000000102016b010001010102"),
        ("c.release", "0300000000010102"),
        ("c.who_has", "0300000000020102"),
        ("c.status", "010000000003"),
        ("c.retire", "0300000000040101"),
        ("c.replicate", "040000000005010201"),
        ("c.shutdown", "0300000000060106"),
        ("c.submit_task_array", "1e000000000703000001090202046563686f067b7461736b7d00000100030000010100"),
        ("c.cancel_tasks", "05000000000803010307"),
        ("s2c.welcome", "0b00000000000180808080802080897a"),
        ("s2c.key_ready", "0900000000010208010103683a32"),
        ("s2c.key_erred", "040000000002020165"),
        ("s2c.graph_rejected", "0300000000030172"),
        ("s2c.who_has", "040000000004010200"),
        ("s2c.progress", "030000000005ac02"),
        ("s2c.status", "310000000006097463703a2f2f683a310101017703683a3201680001e8070a0001020304dc0b0102030405060708090a010102000301"),
        ("s2c.worker_retired", "02000000000701"),
        ("s2c.shutting_down", "02000000000800"),
        ("s2c.tasks_started", "0900000000090103050101770168"),
        ("s2c.task_outcomes", "1d000000000a010305021201000000000000f03f0000000000000440017701680174"),
        ("s2c.task_array_rejected", "04000000000b030172"),
        ("peer.get", "040000000000020102"),
        ("peer.data", "05000000000001808040"),
        ("peer.missing", "02000000000101"),
    ];

    #[test]
    fn every_message_encodes_to_its_golden_bytes() {
        let actual: Vec<(&str, String)> = samples()
            .into_iter()
            .map(|(name, bytes)| {
                let hex = bytes.iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
                (name, hex)
            })
            .collect();
        let table: String = actual
            .iter()
            .map(|(n, h)| format!("        (\"{n}\", \"{h}\"),\n"))
            .collect();
        let expected: Vec<(&str, String)> =
            GOLDEN.iter().map(|(n, h)| (*n, h.to_string())).collect();
        assert_eq!(
            actual, expected,
            "the wire format changed; if meant, bump PROTOCOL_VERSION and use:\n{table}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever bytes arrive in a control frame, decoding them is an error or a message,
        /// never a panic, for every message type any side reads.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_control::<WorkerToScheduler>(&body);
            let _ = decode_control::<SchedulerToWorker>(&body);
            let _ = decode_control::<ClientToScheduler>(&body);
            let _ = decode_control::<SchedulerToClient>(&body);
            let _ = decode_control::<PeerRequest>(&body);
            let _ = decode_control::<PeerResponse>(&body);
        }

        /// The same from valid messages with bytes flipped, cut or appended: inputs that get
        /// deep into the decoders (plausible lengths and tags) rather than failing at byte 1.
        #[test]
        fn decoding_damaged_messages_never_panics(
            pick in 0..40usize,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let samples = samples();
            let (_, frame) = &samples[pick % samples.len()];
            let mut body = frame[crate::protocol::HEADER_LEN..].to_vec();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            body.truncate(cut.index(body.len() + 1));
            body.extend(tail);
            let _ = decode_control::<WorkerToScheduler>(&body);
            let _ = decode_control::<SchedulerToWorker>(&body);
            let _ = decode_control::<ClientToScheduler>(&body);
            let _ = decode_control::<SchedulerToClient>(&body);
            let _ = decode_control::<PeerRequest>(&body);
            let _ = decode_control::<PeerResponse>(&body);
        }
    }
}
