//! The live web dashboard and `/metrics`, served by the scheduler's process
//! (docs/observability.md).
//!
//! The scheduler's core only emits observations ([`crate::scheduler::observe`]); here one
//! task folds them into an [`model::Aggregator`] (sans-IO: what a page shows and what changed)
//! and, twice a second, broadcasts the delta to every open page over server-sent events. The
//! HTTP side ([`http`]) serves the page (all assets embedded), the events and `/metrics`,
//! each behind a token derived from the cluster's secret ([`token`]).
//!
//! Files: `model.rs` the aggregation, `lanes.rs` task-stream lanes, `metrics.rs` the
//! Prometheus text, `http.rs` routes and the token check, `logtail.rs` the daemon log's tail,
//! `report.rs` the self-contained HTML performance report, `assets/` the page.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::error::{Error, Result};
use crate::protocol::Secret;
use crate::scheduler::observe::Observation;
use crate::scheduler::server::SchedulerHandle;

pub mod http;
pub mod lanes;
pub mod logtail;
pub mod metrics;
pub mod model;
pub mod report;
pub mod token;

pub use model::{ClusterPanel, JobRow};

/// How often pages get a delta (the issue asks for at most a second of latency).
pub const DELTA_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct DashboardOptions {
    /// Where to listen: the scheduler's address, port 0 (the system picks) unless configured.
    pub bind: SocketAddr,
    /// The host the URL names (the scheduler's contact host).
    pub host: String,
    pub token: String,
    /// A separate token for `/metrics` (a scraper need not open the dashboard).
    pub metrics_token: Option<String>,
    /// A log whose tail the Logs page shows (the daemon's).
    pub log_file: Option<PathBuf>,
    /// Keep the whole task stream for a performance report, not only the last minute.
    pub record: bool,
}

impl DashboardOptions {
    /// Beside a scheduler: on its address (any port), named as its contact host.
    pub fn beside(scheduler: &SchedulerHandle, secret: &Secret) -> DashboardOptions {
        let host = scheduler
            .address
            .trim_start_matches("tcp://")
            .rsplit_once(':')
            .map_or_else(|| "localhost".to_string(), |(h, _)| h.to_string());
        DashboardOptions {
            bind: SocketAddr::new(scheduler.local_addr.ip(), 0),
            host,
            token: token::derive(secret),
            metrics_token: None,
            log_file: None,
            record: false,
        }
    }
}

/// What the HTTP handlers and the aggregating task share.
pub struct Shared {
    pub(crate) agg: Mutex<model::Aggregator>,
    pub(crate) hist: metrics::Histograms,
    pub(crate) deltas: broadcast::Sender<Arc<str>>,
    pub(crate) token: String,
    pub(crate) metrics_token: Option<String>,
}

impl Shared {
    fn full_json(&self) -> String {
        let agg = self.agg.lock().expect("the aggregator's lock");
        serde_json::to_string(&agg.full(agg.now_ms())).expect("the picture serialises")
    }
}

/// A running dashboard; dropped, it stops serving.
pub struct Dashboard {
    /// `http://host:port/?token=...`
    pub url: String,
    pub local_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The URL of a dashboard at `host:port` with `token`.
pub fn url(host: &str, port: u16, token: &str) -> String {
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    format!("http://{host}:{port}/?token={token}")
}

/// Starts serving beside `scheduler` (attaching to its observations). Needs a tokio runtime.
pub async fn start(scheduler: &SchedulerHandle, opts: DashboardOptions) -> Result<Dashboard> {
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|e| {
            Error::runtime(format!(
            "the dashboard cannot listen on {}: {e} (is the port in use? port 0 picks a free one)",
            opts.bind
        ))
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(Error::io("reading the dashboard's address"))?;
    let epoch = Instant::now();
    let agg = if opts.record {
        model::Aggregator::recording(epoch)
    } else {
        model::Aggregator::new(epoch)
    };
    let (deltas, _) = broadcast::channel(64);
    let shared = Arc::new(Shared {
        agg: Mutex::new(agg),
        hist: metrics::Histograms::default(),
        deltas,
        token: opts.token.clone(),
        metrics_token: opts.metrics_token.clone(),
    });
    let observations = scheduler.observe();
    let aggregate = tokio::spawn(aggregate(
        shared.clone(),
        observations,
        opts.log_file.map(logtail::LogTail::new),
    ));
    let app = http::router(shared.clone());
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the dashboard stopped serving: {e}");
        }
    });
    let url = url(&opts.host, local_addr.port(), &opts.token);
    Ok(Dashboard {
        url,
        local_addr,
        shared,
        tasks: vec![aggregate.abort_handle(), serve.abort_handle()],
    })
}

/// Every [`DELTA_INTERVAL`]: folds in the observations that arrived meanwhile (in one go, so
/// a busy scheduler wakes this task twice a second, not once per report), reads the log's
/// new lines and broadcasts what changed.
async fn aggregate(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Observation>,
    mut log: Option<logtail::LogTail>,
) {
    let mut tick = tokio::time::interval(DELTA_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let lines = log.as_mut().map(|l| l.read_new()).unwrap_or_default();
            let json = {
                let mut agg = shared.agg.lock().expect("the aggregator's lock");
                loop {
                    match rx.try_recv() {
                        Ok(obs) => agg.observe(obs),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        // The scheduler is gone: nothing more will come.
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                agg.add_log_lines(lines);
                shared.hist.absorb(&mut agg);
                let now = agg.now_ms();
                let delta = agg.delta(now);
                // Nobody watching: the delta is only consumed (the markers move on).
                (shared.deltas.receiver_count() > 0)
                    .then(|| serde_json::to_string(&delta).expect("a delta serialises"))
            };
            if let Some(json) = json {
                let _ = shared.deltas.send(Arc::from(json));
            }
        }
    }
}

impl Dashboard {
    /// The Cluster page's facts, from whoever runs the jobs.
    pub fn set_cluster(&self, panel: ClusterPanel) {
        self.shared
            .agg
            .lock()
            .expect("the aggregator's lock")
            .set_cluster(panel);
    }

    /// A self-contained HTML performance report of what ran since the dashboard started.
    pub fn report(&self, info: &report::RunInfo) -> String {
        let agg = self.shared.agg.lock().expect("the aggregator's lock");
        report::render(&agg, info)
    }
}

/// The line `up`, `array` and `submit` print so people find the dashboard.
pub fn announce(url: &str) -> String {
    format!("dashboard: {url}")
}
