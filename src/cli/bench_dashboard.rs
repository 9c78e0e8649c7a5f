//! `bench dashboard`: what the live dashboard costs the scheduler (docs/benchmarks.md).
//!
//! Throughput: two local clusters in this process, one without a dashboard and one with it
//! open in headless Chromium and `/metrics` scraped every second; rounds of no-op tasks
//! alternate between them, and the medians are compared (the same run, the same machine
//! state). Memory: a cluster of `--memory-workers` workers, the process's RSS before the
//! dashboard is attached and after it served the browser and the scraper for a while.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use rdask::client::Client;
use rdask::dashboard::{self, DashboardOptions};
use rdask::error::{Error, Result};
use rdask::graph::TaskSpec;
use rdask::ids::TaskId;
use rdask::local::{LocalCluster, LocalClusterOptions};

#[derive(Args, Debug)]
pub struct DashboardBenchArgs {
    /// No-op tasks per round
    #[arg(long, default_value_t = 50_000)]
    pub tasks: u64,
    /// Rounds per side (alternating)
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Workers of the memory measurement
    #[arg(long, default_value_t = 64)]
    pub memory_workers: usize,
    /// The browser that opens the dashboard
    #[arg(long, default_value = "/usr/bin/chromium")]
    pub browser: String,
}

#[derive(Serialize, Debug)]
struct Report {
    tasks_per_round: u64,
    rounds: usize,
    without_tasks_per_s: Vec<f64>,
    with_tasks_per_s: Vec<f64>,
    median_without: f64,
    median_with: f64,
    ratio: f64,
    memory_workers: usize,
    rss_before_mb: f64,
    rss_after_mb: f64,
    dashboard_mb: f64,
    metrics_scrapes: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Headless Chromium showing `url`, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(program: &str, url: &str) -> Result<Browser> {
        let profile = tempfile::tempdir().map_err(Error::io("a browser profile"))?;
        let child = Command::new(program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("{url}#stream"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::runtime(format!("starting {program}: {e}")))?;
        Ok(Browser {
            child,
            _profile: profile,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `/metrics` every second on a thread until told to stop; returns the count.
fn scrape(
    addr: std::net::SocketAddr,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let req = format!(
                    "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Connection: close\r\n\r\n"
                );
                let mut body = Vec::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_end(&mut body).is_ok() {
                    n += 1;
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        n
    })
}

async fn noop_round(client: &Client, n: u64) -> Result<f64> {
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|_| TaskSpec::new(client.new_key(), "noop", vec![], vec![]))
        .collect();
    let wanted: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let started = Instant::now();
    client.compute(tasks, &wanted).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    client.release(&wanted)?;
    Ok(rate)
}

pub fn bench_dashboard(a: DashboardBenchArgs) -> Result<i32> {
    let r = rdask::rt::runtime()?.block_on(run(&a))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&r).expect("a report serialises")
    );
    eprintln!(
        "no-op throughput with the dashboard open and /metrics scraped: {:.0} tasks/s vs {:.0} \
         without ({:.1}%); dashboard memory with {} workers: {:.2} MB",
        r.median_with,
        r.median_without,
        r.ratio * 100.0,
        r.memory_workers,
        r.dashboard_mb
    );
    Ok(0)
}

async fn run(a: &DashboardBenchArgs) -> Result<Report> {
    let base = LocalClusterOptions {
        workers: 2,
        threads_per_worker: 1,
        ..LocalClusterOptions::default()
    };
    let plain = LocalCluster::start(LocalClusterOptions {
        dashboard: false,
        ..base.clone()
    })
    .await?;
    let watched = LocalCluster::start(base.clone()).await?;
    let url = watched
        .dashboard_url()
        .ok_or_else(|| Error::runtime("no dashboard"))?
        .to_string();
    eprintln!("dashboard: {url}");
    let (addr, token) = addr_and_token(&url)?;
    let _browser = Browser::open(&a.browser, &url)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = scrape(addr, token.clone(), stop.clone());
    let c_plain = plain.client().await?;
    let c_watched = watched.client().await?;
    // Warm-up: connections, the browser's first page.
    noop_round(&c_plain, a.tasks / 10).await?;
    noop_round(&c_watched, a.tasks / 10).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        // Alternate which goes first, so a drift of the machine favours neither.
        if round % 2 == 0 {
            without.push(noop_round(&c_plain, a.tasks).await?);
            with.push(noop_round(&c_watched, a.tasks).await?);
        } else {
            with.push(noop_round(&c_watched, a.tasks).await?);
            without.push(noop_round(&c_plain, a.tasks).await?);
        }
        eprintln!(
            "round {}: without {:.0} tasks/s, with {:.0} tasks/s",
            round + 1,
            without[round],
            with[round]
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.join().unwrap_or(0);
    drop(_browser);
    drop((c_plain, c_watched));
    plain.close().await;
    watched.close().await;

    // Memory: 64 workers, the dashboard attached after a first measurement.
    let big = LocalCluster::start(LocalClusterOptions {
        workers: a.memory_workers,
        dashboard: false,
        ..base
    })
    .await?;
    let client = big.client().await?;
    noop_round(&client, a.tasks / 10).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rdask::sys::release_free_memory();
    let before = rdask::sys::rss_bytes() as f64 / 1e6;
    let dash = dashboard::start(
        &big.scheduler,
        DashboardOptions::beside(&big.scheduler, &big.secret),
    )
    .await?;
    let browser = Browser::open(&a.browser, &dash.url)?;
    let (addr, token) = addr_and_token(&dash.url)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = scrape(addr, token, stop.clone());
    for _ in 0..3 {
        noop_round(&client, a.tasks / 10).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    rdask::sys::release_free_memory();
    let after = rdask::sys::rss_bytes() as f64 / 1e6;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scrapes + scraper.join().unwrap_or(0);
    drop(browser);
    drop(dash);
    drop(client);
    big.close().await;

    let (mw, mwo) = (median(&with), median(&without));
    Ok(Report {
        tasks_per_round: a.tasks,
        rounds: a.rounds,
        without_tasks_per_s: without,
        with_tasks_per_s: with,
        median_without: mwo,
        median_with: mw,
        ratio: mw / mwo,
        memory_workers: a.memory_workers,
        rss_before_mb: before,
        rss_after_mb: after,
        dashboard_mb: after - before,
        metrics_scrapes: scrapes,
    })
}

fn addr_and_token(url: &str) -> Result<(std::net::SocketAddr, String)> {
    let rest = url.trim_start_matches("http://");
    let (hostport, query) = rest
        .split_once('/')
        .ok_or_else(|| Error::runtime(format!("unexpected dashboard URL {url}")))?;
    let token = query.trim_start_matches("?token=").to_string();
    let addr = hostport
        .parse()
        .map_err(|e| Error::runtime(format!("dashboard address {hostport}: {e}")))?;
    Ok((addr, token))
}
