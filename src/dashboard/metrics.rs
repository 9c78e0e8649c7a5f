//! `/metrics` in Prometheus' text format (prometheus-client): a pure function of the
//! aggregator's state plus two histograms that accumulate. Every name is in
//! docs/observability.md.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::model::Aggregator;

type Labels = Vec<(String, String)>;

/// The histograms: they keep every observation since the dashboard started.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Task run times, 100 µs to ~100 s.
    task_duration: Histogram,
    /// The scheduler event loop's worst delay each second, 10 µs to ~10 s.
    loop_lag: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            task_duration: Histogram::new(exponential_buckets(1e-4, 4.0, 11)),
            loop_lag: Histogram::new(exponential_buckets(1e-5, 4.0, 11)),
        }
    }
}

impl Histograms {
    /// Moves what the aggregator saw since the last call into the histograms.
    pub fn absorb(&self, agg: &mut Aggregator) {
        for d in agg.durations.drain(..) {
            self.task_duration.observe(d);
        }
        for l in agg.lags.drain(..) {
            self.loop_lag.observe(l);
        }
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The text exposition of everything the dashboard knows now.
pub fn render(agg: &Aggregator, hist: &Histograms) -> String {
    let mut r = Registry::with_prefix("rdask");
    let c = agg.counters();
    let by_state: Family<Labels, Gauge> = Family::default();
    for (state, n) in [
        ("released", c.tasks.released),
        ("waiting", c.tasks.waiting),
        ("queued", c.tasks.queued),
        ("processing", c.tasks.processing),
        ("memory", c.tasks.memory),
        ("erred", c.tasks.erred),
    ] {
        by_state
            .get_or_create(&labels(&[("state", state)]))
            .set(n as i64);
    }
    r.register("tasks", "Tasks the scheduler knows, by state", by_state);
    counter(
        &mut r,
        "tasks_finished",
        "Tasks finished since the scheduler started",
        c.finished,
    );
    counter(
        &mut r,
        "tasks_failed",
        "Task failures reported by workers",
        c.failed,
    );
    r.register(
        "task_duration_seconds",
        "Run time of finished tasks",
        hist.task_duration.clone(),
    );
    gauge(&mut r, "workers", "Connected workers", c.workers as i64);
    gauge(
        &mut r,
        "worker_threads",
        "Threads of all connected workers",
        c.threads as i64,
    );
    let used: Family<Labels, Gauge> = Family::default();
    let limit: Family<Labels, Gauge> = Family::default();
    let held: Family<Labels, Gauge> = Family::default();
    let processing: Family<Labels, Gauge> = Family::default();
    let spilled: Family<Labels, Gauge> = Family::default();
    let cpu: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    for w in agg.workers() {
        let l = labels(&[("worker", &w.name), ("host", &w.host)]);
        used.get_or_create(&l).set(w.memory as i64);
        limit.get_or_create(&l).set(w.memory_limit as i64);
        held.get_or_create(&l).set(w.held_bytes as i64);
        processing.get_or_create(&l).set(w.processing as i64);
        spilled.get_or_create(&l).set(w.spilled_bytes as i64);
        cpu.get_or_create(&l).set(w.cpu);
    }
    r.register("worker_memory_bytes", "Memory a worker uses (RSS)", used);
    r.register(
        "worker_memory_limit_bytes",
        "A worker's memory limit",
        limit,
    );
    r.register(
        "worker_held_bytes",
        "Bytes of results a worker holds, in memory or spilled",
        held,
    );
    r.register(
        "worker_processing_tasks",
        "Tasks assigned to a worker",
        processing,
    );
    r.register(
        "worker_spilled_bytes",
        "Bytes of results a worker has spilled to disk",
        spilled,
    );
    r.register(
        "worker_cpu_ratio",
        "A worker process's CPU use over its last heartbeat interval (1 = one core busy)",
        cpu,
    );
    counter(
        &mut r,
        "transferred_bytes",
        "Bytes of results copied between workers",
        c.transferred_bytes,
    );
    r.register(
        "event_loop_lag_seconds",
        "Worst delay of the scheduler event loop's 100 ms tick, per second",
        hist.loop_lag.clone(),
    );
    if let Some(p) = agg.cluster() {
        let jobs: Family<Labels, Gauge> = Family::default();
        for (state, n) in &p.jobs_by_state {
            jobs.get_or_create(&labels(&[("state", state)]))
                .set(*n as i64);
        }
        r.register("jobs", "Batch jobs of the cluster, by state", jobs);
        gauge(
            &mut r,
            "target_workers",
            "Workers the target asks for",
            p.target_workers as i64,
        );
        counter(
            &mut r,
            "submit_failures",
            "Failed submissions and jobs that ended before a worker connected",
            p.submit_failures,
        );
    }
    let mut out = String::new();
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{StatusReport, WorkerState, WorkerStatusReport};
    use crate::scheduler::observe::Observation;
    use std::time::Instant;

    /// A worker's heartbeat figures (spilled bytes, CPU per mille) reach `/metrics` as
    /// bytes and as a ratio of one core.
    #[test]
    fn spilled_bytes_and_cpu_ratio_are_exported_per_worker() {
        let mut agg = Aggregator::new(Instant::now());
        agg.observe(Observation::Snapshot {
            status: Box::new(StatusReport {
                address: "tcp://h:1".into(),
                workers: vec![WorkerStatusReport {
                    id: 1,
                    name: "w1".into(),
                    address: String::new(),
                    host: "h".into(),
                    job_id: None,
                    nthreads: 2,
                    memory_limit: 1000,
                    memory: 10,
                    state: WorkerState::Running,
                    processing: 0,
                    results: 0,
                    held_bytes: 0,
                    spilled_bytes: 4096,
                    cpu_permille: 1500,
                }],
                tasks: Default::default(),
                finished_total: 0,
                bytes_received: 0,
                bytes_sent: 0,
                pending_work_us: 0,
                clients: 0,
                queued_programs: Vec::new(),
            }),
            loop_lag_us: 0,
        });
        let text = render(&agg, &Histograms::default());
        let labels = "{worker=\"w1\",host=\"h\"}";
        assert!(
            text.contains(&format!("rdask_worker_spilled_bytes{labels} 4096\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("rdask_worker_cpu_ratio{labels} 1.5\n")),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rdask_worker_cpu_ratio gauge"),
            "{text}"
        );
    }
}
