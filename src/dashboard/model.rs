//! What the dashboard shows, aggregated from the scheduler's observations: sans-IO.
//!
//! [`Aggregator::observe`] folds in one observation; [`Aggregator::delta`] returns what
//! changed since the last delta (worker rows that changed, task-stream bars new or extended,
//! counters, progress, the cluster panel if it changed, new log lines) and
//! [`Aggregator::full`] everything, for a page that just connected. Pages receive the full
//! picture once, then deltas, so 500 workers and 100,000 tasks cost them what changes, not
//! what exists: tasks are never sent one by one but as bars, and consecutive tasks of one
//! kind in one lane are one bar that grows (a thread running 10,000 tiny tasks a second is
//! one bar, not 10,000).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::lanes::Lanes;
use crate::ids::{TaskId, WorkerId};
use crate::protocol::messages::{StatusReport, TaskCountsReport, WorkerState};
use crate::scheduler::observe::Observation;
use crate::scheduler::server::KEY_BITS;

/// How much task stream a page shows (and a new page receives).
pub const STREAM_WINDOW_MS: f64 = 60_000.0;
/// Tasks of one kind in one lane closer than this are drawn as one bar: at a minute across
/// ~1,000 pixels a pixel is 60 ms, so nothing visible is lost.
pub const MERGE_GAP_MS: f64 = 20.0;
/// Log lines a page receives on connecting.
pub const LOG_LINES: usize = 500;
/// Graphs (submissions) shown with a progress bar, newest last.
const GRAPHS_SHOWN: usize = 20;
/// Memory points kept for the report (one a second: 2 hours).
const MEMORY_POINTS: usize = 7200;

/// One worker's row on the Workers page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRow {
    pub id: WorkerId,
    pub name: String,
    pub host: String,
    pub job_id: Option<String>,
    pub nthreads: u32,
    pub memory: u64,
    pub memory_limit: u64,
    /// Bytes of results it holds (as the scheduler counts them).
    pub held_bytes: u64,
    pub results: u64,
    pub processing: u64,
    pub state: &'static str,
    /// Bytes of its results spilled to disk (its last heartbeat).
    pub spilled_bytes: u64,
    /// Its process's CPU use over the last heartbeat interval, in cores (1.0 = one core).
    pub cpu: f64,
}

/// One bar of the task stream: tasks of one kind run back to back on one thread.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bar {
    pub id: u64,
    pub worker: WorkerId,
    pub lane: usize,
    pub start: f64,
    pub end: f64,
    #[serde(serialize_with = "as_str")]
    pub kind: Arc<str>,
    pub tasks: u64,
    pub failed: bool,
}

fn as_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transfer {
    pub worker: WorkerId,
    pub at: f64,
    pub nbytes: u64,
}

/// A submission's progress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphProgress {
    pub client: u64,
    pub tasks: u64,
    pub done: u64,
    pub erred: u64,
}

/// The Cluster page: what the daemon (or a local cluster) says about its jobs. The dashboard
/// knows nothing of batch systems; whoever runs it fills this in.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterPanel {
    pub name: String,
    pub system: String,
    /// The target, described ("4 workers", "adaptive 1..8").
    pub target: String,
    pub target_workers: u64,
    pub workers: u64,
    pub jobs_by_state: BTreeMap<String, u64>,
    pub jobs: Vec<JobRow>,
    /// Latest scaling decisions with their reasons, newest last.
    pub decisions: Vec<String>,
    /// Jobs that failed, with the end of their output.
    pub failed: Vec<JobRow>,
    pub submit_failures: u64,
    /// Why submissions are paused, if they are.
    pub paused: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JobRow {
    pub job_id: Option<String>,
    pub name: String,
    pub state: String,
    pub pending_reason: Option<String>,
    pub age_s: f64,
    pub workers: u64,
    /// Why it ended, with the end of its output (for failed jobs).
    pub detail: Option<String>,
}

/// Totals for the header line and /metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    pub tasks: TaskCountsReport,
    pub finished: u64,
    pub failed: u64,
    pub transferred_bytes: u64,
    pub transfers: u64,
    pub workers: u64,
    pub threads: u64,
    pub memory: u64,
    pub memory_limit: u64,
    pub loop_lag_us: u64,
}

/// What a page receives: everything on connecting, then what changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delta {
    /// Milliseconds on the dashboard's clock (bars and transfers are on it).
    pub now: f64,
    pub full: bool,
    pub counters: Counters,
    pub workers: Vec<WorkerRow>,
    pub workers_gone: Vec<WorkerId>,
    pub bars: Vec<Bar>,
    pub transfers: Vec<Transfer>,
    pub graphs: Vec<GraphProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterPanel>,
    pub logs: Vec<String>,
}

/// Per kind of task: how many ran and for how long (the report's "time per kind").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindTotals {
    pub tasks: u64,
    pub total_us: u64,
    pub nbytes: u64,
}

pub struct Aggregator {
    epoch: Instant,
    /// Keep every bar and transfer (not only the last minute): a report is being recorded.
    record_all: bool,
    counters: Counters,
    workers: BTreeMap<WorkerId, WorkerRow>,
    sent_workers: BTreeMap<WorkerId, WorkerRow>,
    lanes: HashMap<WorkerId, Lanes>,
    /// The bar still growing in each lane.
    open: HashMap<(WorkerId, usize), usize>,
    bars: VecDeque<Bar>,
    /// Ids of bars new or grown since the last delta.
    changed_bars: Vec<u64>,
    next_bar: u64,
    transfers: VecDeque<Transfer>,
    sent_transfers: usize,
    graphs: BTreeMap<u64, GraphProgress>,
    graphs_changed: bool,
    cluster: Option<ClusterPanel>,
    cluster_changed: bool,
    logs: VecDeque<String>,
    new_logs: Vec<String>,
    kinds: BTreeMap<Arc<str>, KindTotals>,
    memory: VecDeque<(f64, u64, u64)>,
    /// Durations of finished tasks not yet put in the metrics' histogram (seconds).
    pub(super) durations: Vec<f64>,
    pub(super) lags: Vec<f64>,
}

impl Aggregator {
    pub fn new(epoch: Instant) -> Aggregator {
        Aggregator {
            epoch,
            record_all: false,
            counters: Counters::default(),
            workers: BTreeMap::new(),
            sent_workers: BTreeMap::new(),
            lanes: HashMap::new(),
            open: HashMap::new(),
            bars: VecDeque::new(),
            changed_bars: Vec::new(),
            next_bar: 0,
            transfers: VecDeque::new(),
            sent_transfers: 0,
            graphs: BTreeMap::new(),
            graphs_changed: false,
            cluster: None,
            cluster_changed: false,
            logs: VecDeque::new(),
            new_logs: Vec::new(),
            kinds: BTreeMap::new(),
            memory: VecDeque::new(),
            durations: Vec::new(),
            lags: Vec::new(),
        }
    }

    /// For a performance report: keep the whole task stream, not the last minute.
    pub fn recording(epoch: Instant) -> Aggregator {
        Aggregator {
            record_all: true,
            ..Aggregator::new(epoch)
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64() * 1e3
    }

    pub fn observe(&mut self, obs: Observation) {
        match obs {
            Observation::Snapshot {
                status,
                loop_lag_us,
            } => self.snapshot(&status, loop_lag_us),
            Observation::TasksDone { worker, at, tasks } => {
                let end = self.ms(at);
                for t in tasks {
                    self.counters.finished += 1;
                    self.durations.push(t.duration_us as f64 / 1e6);
                    let k = self.kinds.entry(t.kind.clone()).or_default();
                    k.tasks += 1;
                    k.total_us += t.duration_us;
                    k.nbytes += t.nbytes;
                    self.graph_of(t.task).done += 1;
                    self.place(worker, end, t.duration_us as f64 / 1e3, t.kind, false);
                }
            }
            Observation::TaskFailed {
                worker,
                task,
                kind,
                at,
            } => {
                self.counters.failed += 1;
                self.graph_of(task).erred += 1;
                let end = self.ms(at);
                self.place(worker, end, 0.0, kind, true);
            }
            Observation::Transfer { worker, nbytes, at } => {
                self.counters.transferred_bytes += nbytes;
                self.counters.transfers += 1;
                let at = self.ms(at);
                self.transfers.push_back(Transfer { worker, at, nbytes });
            }
            Observation::GraphSubmitted { client, tasks } => {
                let g = self.graphs.entry(client).or_insert(GraphProgress {
                    client,
                    tasks: 0,
                    done: 0,
                    erred: 0,
                });
                g.tasks += tasks as u64;
                self.graphs_changed = true;
                while self.graphs.len() > GRAPHS_SHOWN {
                    self.graphs.pop_first();
                }
            }
        }
    }

    fn graph_of(&mut self, task: TaskId) -> &mut GraphProgress {
        let client = task.0 >> KEY_BITS;
        self.graphs_changed = true;
        self.graphs.entry(client).or_insert(GraphProgress {
            client,
            tasks: 0,
            done: 0,
            erred: 0,
        })
    }

    fn place(&mut self, worker: WorkerId, end: f64, duration: f64, kind: Arc<str>, failed: bool) {
        let threads = self.workers.get(&worker).map_or(1, |w| w.nthreads);
        let lanes = self
            .lanes
            .entry(worker)
            .or_insert_with(|| Lanes::new(threads));
        let (lane, start, end) = lanes.place(end, duration);
        // The open bar of this lane grows when the task is of its kind and follows closely.
        if let Some(&i) = self.open.get(&(worker, lane)) {
            let first = self.bars.front().map_or(0, |b| b.id);
            if let Some(b) = (i as u64)
                .checked_sub(first)
                .and_then(|k| self.bars.get_mut(k as usize))
            {
                if b.kind == kind && b.failed == failed && start <= b.end + MERGE_GAP_MS {
                    b.end = b.end.max(end);
                    b.tasks += 1;
                    if self.changed_bars.last() != Some(&b.id) {
                        self.changed_bars.push(b.id);
                    }
                    return;
                }
            }
        }
        let id = self.next_bar;
        self.next_bar += 1;
        self.bars.push_back(Bar {
            id,
            worker,
            lane,
            start,
            end,
            kind,
            tasks: 1,
            failed,
        });
        self.open.insert((worker, lane), id as usize);
        self.changed_bars.push(id);
    }

    fn snapshot(&mut self, s: &StatusReport, loop_lag_us: u64) {
        self.lags.push(loop_lag_us as f64 / 1e6);
        let mut rows = BTreeMap::new();
        for w in &s.workers {
            rows.insert(
                w.id,
                WorkerRow {
                    id: w.id,
                    name: w.name.clone(),
                    host: w.host.clone(),
                    job_id: w.job_id.clone(),
                    nthreads: w.nthreads,
                    memory: w.memory,
                    memory_limit: w.memory_limit,
                    held_bytes: w.held_bytes,
                    results: w.results,
                    processing: w.processing,
                    state: match w.state {
                        WorkerState::Running => "running",
                        WorkerState::Paused => "paused",
                        WorkerState::Retiring => "retiring",
                    },
                    spilled_bytes: w.spilled_bytes,
                    cpu: f64::from(w.cpu_permille) / 1000.0,
                },
            );
            self.lanes
                .entry(w.id)
                .or_insert_with(|| Lanes::new(w.nthreads))
                .resize(w.nthreads);
        }
        self.lanes.retain(|id, _| rows.contains_key(id));
        self.open.retain(|(id, _), _| rows.contains_key(id));
        self.workers = rows;
        let now = self.ms(Instant::now());
        let c = &mut self.counters;
        c.tasks = s.tasks.clone();
        // The scheduler's count is the truth; ours only runs ahead between snapshots.
        c.finished = c.finished.max(s.finished_total);
        c.workers = s.workers.len() as u64;
        c.threads = s.workers.iter().map(|w| w.nthreads as u64).sum();
        c.memory = s.workers.iter().map(|w| w.memory).sum();
        c.memory_limit = s.workers.iter().map(|w| w.memory_limit).sum();
        c.loop_lag_us = loop_lag_us;
        self.memory.push_back((now, c.memory, c.memory_limit));
        if self.memory.len() > MEMORY_POINTS {
            self.memory.pop_front();
        }
    }

    pub fn set_cluster(&mut self, panel: ClusterPanel) {
        if self.cluster.as_ref() != Some(&panel) {
            self.cluster = Some(panel);
            self.cluster_changed = true;
        }
    }

    pub fn add_log_lines(&mut self, lines: impl IntoIterator<Item = String>) {
        for l in lines {
            self.logs.push_back(l.clone());
            self.new_logs.push(l);
        }
        while self.logs.len() > LOG_LINES {
            self.logs.pop_front();
        }
        if self.new_logs.len() > LOG_LINES {
            let extra = self.new_logs.len() - LOG_LINES;
            self.new_logs.drain(..extra);
        }
    }

    /// Forgets bars and transfers older than the window (unless recording).
    fn trim(&mut self, now: f64) {
        if self.record_all {
            return;
        }
        let cut = now - STREAM_WINDOW_MS;
        while self.bars.front().is_some_and(|b| b.end < cut) {
            let b = self.bars.pop_front().expect("present");
            if self.open.get(&(b.worker, b.lane)) == Some(&(b.id as usize)) {
                self.open.remove(&(b.worker, b.lane));
            }
        }
        while self.transfers.front().is_some_and(|t| t.at < cut) {
            self.transfers.pop_front();
            self.sent_transfers = self.sent_transfers.saturating_sub(1);
        }
    }

    fn bar(&self, id: u64) -> Option<&Bar> {
        let first = self.bars.front()?.id;
        self.bars.get(id.checked_sub(first)? as usize)
    }

    pub fn now_ms(&self) -> f64 {
        self.ms(Instant::now())
    }

    /// What changed since the last delta; `now` in ms on the dashboard's clock.
    pub fn delta(&mut self, now: f64) -> Delta {
        self.trim(now);
        let mut workers = Vec::new();
        for (id, row) in &self.workers {
            if self.sent_workers.get(id) != Some(row) {
                workers.push(row.clone());
            }
        }
        let workers_gone = self
            .sent_workers
            .keys()
            .filter(|id| !self.workers.contains_key(id))
            .copied()
            .collect();
        self.sent_workers = self.workers.clone();
        let mut ids = std::mem::take(&mut self.changed_bars);
        ids.sort_unstable();
        ids.dedup();
        let bars = ids.iter().filter_map(|id| self.bar(*id).cloned()).collect();
        let transfers = self
            .transfers
            .iter()
            .skip(self.sent_transfers)
            .cloned()
            .collect();
        self.sent_transfers = self.transfers.len();
        let graphs = if std::mem::take(&mut self.graphs_changed) {
            self.graphs.values().cloned().collect()
        } else {
            Vec::new()
        };
        let cluster = std::mem::take(&mut self.cluster_changed)
            .then(|| self.cluster.clone())
            .flatten();
        Delta {
            now,
            full: false,
            counters: self.counters.clone(),
            workers,
            workers_gone,
            bars,
            transfers,
            graphs,
            cluster,
            logs: std::mem::take(&mut self.new_logs),
        }
    }

    /// Everything a page needs on connecting.
    pub fn full(&self, now: f64) -> Delta {
        let cut = now - STREAM_WINDOW_MS;
        Delta {
            now,
            full: true,
            counters: self.counters.clone(),
            workers: self.workers.values().cloned().collect(),
            workers_gone: Vec::new(),
            bars: self.bars.iter().filter(|b| b.end >= cut).cloned().collect(),
            transfers: self
                .transfers
                .iter()
                .filter(|t| t.at >= cut)
                .cloned()
                .collect(),
            graphs: self.graphs.values().cloned().collect(),
            cluster: self.cluster.clone(),
            logs: self.logs.iter().cloned().collect(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn workers(&self) -> impl Iterator<Item = &WorkerRow> {
        self.workers.values()
    }

    pub fn cluster(&self) -> Option<&ClusterPanel> {
        self.cluster.as_ref()
    }

    pub fn kinds(&self) -> &BTreeMap<Arc<str>, KindTotals> {
        &self.kinds
    }

    /// (ms, memory in use, memory limit) of all workers, once a second.
    pub fn memory_series(&self) -> impl Iterator<Item = &(f64, u64, u64)> {
        self.memory.iter()
    }

    pub fn all_bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter()
    }

    pub fn all_transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers.iter()
    }

    /// Threads of each worker seen (for drawing lanes).
    pub fn lanes_of(&self, worker: WorkerId) -> usize {
        self.lanes.get(&worker).map_or(1, Lanes::threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::WorkerStatusReport;
    use crate::scheduler::observe::TaskDone;
    use std::time::Duration;

    fn status(workers: &[(WorkerId, u64)], finished: u64) -> Box<StatusReport> {
        Box::new(StatusReport {
            address: "tcp://h:1".into(),
            workers: workers
                .iter()
                .map(|(id, memory)| WorkerStatusReport {
                    id: *id,
                    name: format!("w{id}"),
                    address: String::new(),
                    host: "h".into(),
                    job_id: Some("7".into()),
                    nthreads: 2,
                    memory_limit: 1000,
                    memory: *memory,
                    state: WorkerState::Running,
                    processing: 0,
                    results: 0,
                    held_bytes: 0,
                    spilled_bytes: 0,
                    cpu_permille: 0,
                })
                .collect(),
            tasks: TaskCountsReport::default(),
            finished_total: finished,
            bytes_received: 0,
            bytes_sent: 0,
            pending_work_us: 0,
            clients: 0,
            queued_programs: Vec::new(),
        })
    }

    fn done(epoch: Instant, worker: WorkerId, at_ms: u64, n: u64, kind: &str) -> Observation {
        Observation::TasksDone {
            worker,
            at: epoch + Duration::from_millis(at_ms),
            tasks: (0..n)
                .map(|i| TaskDone {
                    task: TaskId((1 << KEY_BITS) | i),
                    kind: kind.into(),
                    duration_us: 100,
                    nbytes: 8,
                })
                .collect(),
        }
    }

    #[test]
    fn only_changed_workers_are_sent_and_gone_ones_named() {
        let epoch = Instant::now();
        let mut a = Aggregator::new(epoch);
        a.observe(Observation::Snapshot {
            status: status(&[(1, 10), (2, 20)], 0),
            loop_lag_us: 5,
        });
        let d = a.delta(0.0);
        assert_eq!(d.workers.len(), 2);
        a.observe(Observation::Snapshot {
            status: status(&[(1, 10), (2, 25)], 0),
            loop_lag_us: 5,
        });
        let d = a.delta(1.0);
        assert_eq!(d.workers.iter().map(|w| w.id).collect::<Vec<_>>(), vec![2]);
        a.observe(Observation::Snapshot {
            status: status(&[(2, 25)], 0),
            loop_lag_us: 5,
        });
        let d = a.delta(2.0);
        assert!(d.workers.is_empty());
        assert_eq!(d.workers_gone, vec![1]);
        assert_eq!(a.full(2.0).workers.len(), 1);
    }

    #[test]
    fn many_small_tasks_become_one_growing_bar_per_lane() {
        let epoch = Instant::now();
        let mut a = Aggregator::new(epoch);
        a.observe(Observation::GraphSubmitted {
            client: 1,
            tasks: 3000,
        });
        for ms in 1..=1000u64 {
            a.observe(done(epoch, 1, ms, 3, "noop"));
        }
        let d = a.delta(1000.0);
        assert!(d.bars.len() <= 2, "{} bars", d.bars.len());
        assert_eq!(d.bars.iter().map(|b| b.tasks).sum::<u64>(), 3000);
        assert_eq!(d.counters.finished, 3000);
        assert_eq!(d.graphs[0].done, 3000);
        assert_eq!(d.graphs[0].tasks, 3000);
        // Another kind starts a new bar; the delta carries only what changed.
        a.observe(done(epoch, 1, 1001, 1, "other"));
        let d = a.delta(1001.0);
        assert_eq!(d.bars.len(), 1);
        assert_eq!(&*d.bars[0].kind, "other");
        assert!(a.delta(1002.0).bars.is_empty());
    }

    #[test]
    fn the_stream_keeps_a_minute_unless_recording() {
        let epoch = Instant::now();
        let mut a = Aggregator::new(epoch);
        let mut r = Aggregator::recording(epoch);
        for agg in [&mut a, &mut r] {
            agg.observe(done(epoch, 1, 10, 1, "a"));
            agg.observe(Observation::Transfer {
                worker: 1,
                nbytes: 5,
                at: epoch + Duration::from_millis(10),
            });
            agg.delta(100_000.0);
        }
        assert_eq!(a.all_bars().count(), 0);
        assert_eq!(a.all_transfers().count(), 0);
        assert_eq!(r.all_bars().count(), 1);
        assert_eq!(r.counters().transferred_bytes, 5);
    }

    #[test]
    fn the_cluster_panel_and_log_lines_are_sent_once() {
        let mut a = Aggregator::new(Instant::now());
        let p = ClusterPanel {
            name: "c".into(),
            ..ClusterPanel::default()
        };
        a.set_cluster(p.clone());
        a.add_log_lines(["one".to_string(), "two".to_string()]);
        let d = a.delta(0.0);
        assert_eq!(d.cluster.as_ref(), Some(&p));
        assert_eq!(d.logs, vec!["one", "two"]);
        a.set_cluster(p);
        let d = a.delta(1.0);
        assert!(d.cluster.is_none() && d.logs.is_empty());
        assert_eq!(a.full(1.0).logs.len(), 2);
    }
}
