//! The live dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by tests/env/install.sh) driven over chromedriver's WebDriver
//! HTTP API with a few lines of JSON over a plain TCP client, against named clusters on the
//! local batch system while an array computation runs. Also `/metrics`, read by a small
//! Prometheus text-format parser, and the token rule.
//!
//! `RDASK_DASHBOARD_SCREENSHOTS=docs/img` saves a screenshot of each page there (the ones in
//! docs/observability.md).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, stderr, stdout, wait_for};
use serde_json::{json, Value};

// ----- a tiny HTTP/1.1 client -----------------------------------------------------------

struct Response {
    status: u16,
    headers: String,
    body: String,
}

fn http(method: &str, url: &str, body: Option<&Value>, auth: Option<&str>) -> Response {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(hostport).unwrap_or_else(|e| panic!("{url}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if let Some(t) = auth {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then exactly the body its headers announce (chromedriver keeps the
    // connection open whatever we ask).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{url}: closed before the headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end - 4]).into_owned();
    let lower = head.to_ascii_lowercase();
    let length = lower.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap())
    });
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if chunked { dechunk(&text) } else { text };
    Response {
        status,
        headers: head.to_string(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

// ----- WebDriver ------------------------------------------------------------------------

struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
                None,
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    fn start() -> Browser {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromedriver is missing: tests/env/install.sh installs chromium-driver");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        // Built before the session exists: a failure from here on still ends chromedriver
        // (its Drop), and chromedriver's end ends the browser.
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        wait_for("chromedriver", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", b._profile.path().display())]
            }
        }}});
        let r = http("POST", &format!("{}/session", b.base), Some(&caps), None);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {}", r.body))
            .to_string();
        b
    }

    fn call(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}/{what}", self.base, self.session);
        let r = http(method, &url, body.as_ref(), None);
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body));
        assert_eq!(r.status, 200, "{what}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls a script until it returns something truthy.
    fn wait_js(&self, what: &str, script: &str, timeout: Duration) -> Value {
        wait_for(what, timeout, || {
            let v = self.js(script);
            let truthy = !(v.is_null() || v == json!(false) || v == json!(0) || v == json!(""));
            truthy.then_some(v)
        })
    }

    /// The browser console's entries since the last call.
    fn console(&self) -> Vec<Value> {
        self.call("POST", "se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", "screenshot", None);
        std::fs::write(path, base64(b64.as_str().unwrap())).unwrap();
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|c| **c == b'=').count();
        let n = chunk.iter().fold(0u32, |acc, c| {
            (acc << 6) | if *c == b'=' { 0 } else { val(*c) }
        });
        let n = n << (6 * (4 - chunk.len()));
        let b = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&b[..3 - pad]);
    }
    out
}

// ----- Prometheus' text format ----------------------------------------------------------

/// Samples by name and sorted labels; checks every line is a comment or a valid sample and
/// every sample's family was declared with `# TYPE`.
fn parse_prometheus(text: &str) -> BTreeMap<(String, String), f64> {
    let mut declared = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            declared.push(p.next().unwrap().to_string());
            let kind = p.next().unwrap();
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info"
                ]
                .contains(&kind),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# UNIT "),
                "{line}"
            );
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').expect(line);
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect(line)),
            None => (name_labels, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let mut pairs: Vec<&str> = if labels.is_empty() {
            Vec::new()
        } else {
            labels.split(',').collect()
        };
        for p in &pairs {
            let (k, v) = p.split_once('=').expect(line);
            assert!(
                !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                "{line}"
            );
        }
        pairs.sort();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{line}")),
        };
        assert!(
            declared.iter().any(|d| name.starts_with(d.as_str())),
            "{name} has no # TYPE"
        );
        samples.insert((name.to_string(), pairs.join(",")), value);
    }
    samples
}

// ----- clusters -------------------------------------------------------------------------

struct Cluster {
    home: tempfile::TempDir,
    name: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--force"]).output();
    }
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        Cluster {
            home: tempfile::Builder::new()
                .prefix("rdask-dash-")
                .tempdir_in("/tmp")
                .unwrap(),
            name: name.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.env("RDASK_HOME", self.home.path())
            .env("RDASK_CLUSTER", &self.name)
            .current_dir(self.home.path())
            .args(args);
        c
    }

    fn up(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "up",
            "--system",
            "local",
            "--cores",
            "1",
            "--memory",
            "500MiB",
            "--walltime",
            "00:10:00",
            "--interval",
            "0.5",
            "--poll-interval",
            "1",
            "--death-timeout",
            "20",
        ];
        args.extend(extra);
        let o = self.cmd(&args).output().unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }

    fn status(&self) -> Value {
        let o = self.cmd(&["status", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    fn daemon_log(&self) -> String {
        let p = self
            .home
            .path()
            .join("clusters")
            .join(&self.name)
            .join("logs/daemon.log");
        std::fs::read_to_string(p).unwrap_or_default()
    }
}

fn origin(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    format!("http://{}", &rest[..rest.find('/').unwrap()])
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("RDASK_DASHBOARD_SCREENSHOTS").map(|d| common::repo().join(d))
}

/// The whole dashboard on a live cluster: the page and `/metrics` refuse a missing or wrong
/// token; the workers' rows appear; the completed-task counter rises between two reads
/// without a reload while an array computation runs; the task stream draws; the Logs page
/// shows the daemon's log; nothing is fetched from another host; the console stays clean.
/// A second cluster whose jobs fail at start shows their stderr on its Cluster page.
#[test]
fn the_dashboard_shows_a_live_cluster_in_a_real_browser() {
    let c = Cluster::new("dash");
    let scraper = "scraper-token-0123456789";
    let up = c.up(&[
        "--scale",
        "2",
        "--wait",
        "--wait-timeout",
        "120",
        "--metrics-token",
        scraper,
    ]);
    let url = c.status()["dashboard"]
        .as_str()
        .unwrap_or_else(|| panic!("no dashboard in status\n{}", c.daemon_log()))
        .to_string();
    assert!(up.contains(&format!("dashboard: {url}")), "{up}");
    let text = stdout(&c.cmd(&["status"]).output().unwrap());
    assert!(text.contains(&format!("dashboard: {url}")), "{text}");
    // `submit` to the cluster names its dashboard too.
    let o = c
        .cmd(&["submit", "--array", "1-2", "--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("dashboard: {url}")),
        "{}",
        stderr(&o)
    );
    // `status --watch` into a pipe: a plain status each second, no escape codes.
    let mut watch = c
        .cmd(&["status", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    let o = watch.wait_with_output().unwrap();
    let frames = stdout(&o);
    assert!(
        frames.matches("cluster dash: scheduler").count() >= 2,
        "{frames}"
    );
    assert!(
        frames.contains("\n----\n") && !frames.contains('\x1b'),
        "{frames}"
    );
    let origin = origin(&url);
    let token = url.split("token=").nth(1).unwrap().to_string();
    // The token is not the secret.
    let secret =
        std::fs::read_to_string(c.home.path().join("clusters/dash/secret")).unwrap_or_default();
    assert!(!secret.trim().is_empty() && !secret.contains(&token));

    // Without the token, or with a wrong one: 401 for the page, the events and /metrics.
    for path in [
        "/",
        "/events",
        "/metrics",
        "/?token=0000",
        "/metrics?token=x",
    ] {
        let r = http("GET", &format!("{origin}{path}"), None, None);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
    }
    // The scraper's token opens /metrics (as a header or in the URL) and nothing else.
    let m = http("GET", &format!("{origin}/metrics"), None, Some(scraper));
    assert_eq!(m.status, 200, "{}", m.body);
    let m = http(
        "GET",
        &format!("{origin}/metrics?token={scraper}"),
        None,
        None,
    );
    assert_eq!(m.status, 200, "{}", m.body);
    for path in ["/", "/events"] {
        let r = http(
            "GET",
            &format!("{origin}{path}?token={scraper}"),
            None,
            None,
        );
        assert_eq!(r.status, 401, "{path} with the metrics token: {}", r.body);
    }
    // With it: the page, with a policy that lets it load nothing from elsewhere.
    let page = http("GET", &url, None, None);
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        page.headers
    );
    assert!(page.body.contains("id=\"n-finished\""));
    // Read-only: nothing answers anything but GET.
    let r = http("POST", &format!("{origin}/?token={token}"), None, None);
    assert_eq!(r.status, 405, "{}", r.body);

    // An array computation runs meanwhile (a minute or so in a debug build).
    let array = c
        .cmd(&[
            "array",
            "random((16000, 16000), chunks=(400, 400), seed=1).std()",
            "--cluster",
            "dash",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let b = Browser::start();
    b.go(&format!("{url}#workers"));
    b.wait_js(
        "the workers' rows",
        "return document.querySelectorAll('#w-table tr.worker').length >= 2",
        Duration::from_secs(30),
    );
    let first = b.wait_js(
        "tasks completing",
        "const n = Number(document.getElementById('n-finished').textContent); \
         window.rdaskNoReload = true; return n > 0 ? n : 0",
        Duration::from_secs(120),
    );
    let second = b.wait_js(
        "the completed-task counter to rise",
        &format!(
            "const n = Number(document.getElementById('n-finished').textContent); \
             return window.rdaskNoReload === true && n > {first} ? n : 0"
        ),
        Duration::from_secs(60),
    );
    assert!(second.as_f64() > first.as_f64());
    // The spilled and CPU columns are filled (CPU as a percentage).
    b.wait_js(
        "the workers' CPU column",
        "return [...document.querySelectorAll('#w-table tr.worker')].some(r => \
         r.cells.length === 12 && r.cells[11].textContent.endsWith('%') \
         && r.cells[10].textContent !== '')",
        Duration::from_secs(30),
    );

    // /metrics meanwhile, with the token as a bearer header.
    let m = http("GET", &format!("{origin}/metrics"), None, Some(&token));
    assert_eq!(m.status, 200, "{}", m.body);
    let samples = parse_prometheus(&m.body);
    let get = |name: &str, labels: &str| samples.get(&(name.to_string(), labels.to_string()));
    assert_eq!(get("rdask_workers", ""), Some(&2.0), "{}", m.body);
    assert!(get("rdask_tasks_finished_total", "").is_some_and(|v| *v > 0.0));
    assert!(get("rdask_tasks", "state=\"processing\"").is_some());
    assert!(get("rdask_task_duration_seconds_count", "").is_some_and(|v| *v > 0.0));
    assert!(get("rdask_event_loop_lag_seconds_count", "").is_some());
    assert!(samples
        .keys()
        .any(|(n, l)| n == "rdask_worker_memory_bytes" && l.contains("worker=")));
    // Each worker's heartbeat figures: spilled bytes, and CPU use while it computes.
    assert!(samples
        .keys()
        .any(|(n, l)| n == "rdask_worker_spilled_bytes" && l.contains("worker=")));
    assert!(
        samples
            .iter()
            .any(|((n, _), v)| n == "rdask_worker_cpu_ratio" && *v > 0.0),
        "{}",
        m.body
    );
    assert!(get("rdask_target_workers", "").is_some_and(|v| *v == 2.0));
    assert!(samples.keys().any(|(n, _)| n == "rdask_jobs"));

    b.go(&format!("{url}#stream"));
    b.wait_js(
        "the task stream's bars",
        "return document.querySelectorAll('#legend span').length > 0",
        Duration::from_secs(30),
    );
    b.wait_js(
        "a progress bar",
        "return document.querySelectorAll('#graphs .graph').length > 0",
        Duration::from_secs(30),
    );
    if let Some(dir) = screenshots() {
        b.screenshot(&dir.join("dashboard-stream.png"));
        b.go(&format!("{url}#workers"));
        b.wait_js(
            "the workers' rows",
            "return document.querySelectorAll('#w-table tr.worker').length >= 2",
            Duration::from_secs(30),
        );
        b.screenshot(&dir.join("dashboard-workers.png"));
    }
    b.go(&format!("{url}#logs"));
    b.wait_js(
        "the daemon log",
        "return document.getElementById('logs').textContent.includes('dashboard at')",
        Duration::from_secs(30),
    );
    if let Some(dir) = screenshots() {
        b.screenshot(&dir.join("dashboard-logs.png"));
    }
    b.go(&format!("{url}#cluster"));
    b.wait_js(
        "the jobs",
        "return document.querySelectorAll('#c-jobs tbody tr').length >= 2",
        Duration::from_secs(30),
    );
    if let Some(dir) = screenshots() {
        b.screenshot(&dir.join("dashboard-cluster.png"));
    }

    // Nothing but this server was asked for anything.
    let resources = b.js("return performance.getEntriesByType('resource').concat(\
         performance.getEntriesByType('navigation')).map(e => e.name)");
    let resources = resources.as_array().unwrap();
    assert!(!resources.is_empty());
    for r in resources {
        let r = r.as_str().unwrap();
        assert!(r.starts_with(&format!("{origin}/")), "{r} is not {origin}");
    }
    let errors: Vec<Value> = b
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    let o = array.wait_with_output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(&format!("dashboard: {url}")),
        "{}",
        stderr(&o)
    );

    // A cluster whose jobs die at start: their stderr on the Cluster page.
    let f = Cluster::new("fails");
    f.up(&[
        "--worker-command",
        "echo rdask-test-boom >&2; exit 3; true",
        "--scale",
        "1",
    ]);
    let furl = f.status()["dashboard"].as_str().unwrap().to_string();
    b.go(&format!("{furl}#cluster"));
    let started = Instant::now();
    b.wait_js(
        "the failed job's stderr",
        "return document.getElementById('c-failed').textContent.includes('rdask-test-boom')",
        Duration::from_secs(120),
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    if let Some(dir) = screenshots() {
        b.screenshot(&dir.join("dashboard-failed-job.png"));
    }
    let errors: Vec<Value> = b
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// `array --report FILE.html` on the embedded local cluster: a self-contained HTML file with
/// the task stream, the kinds of task and the expression; written whole.
#[test]
fn array_writes_a_self_contained_performance_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("perf.html");
    let o = bin()
        .args([
            "array",
            "(random((2000, 2000), chunks=(250, 250), seed=3) + 1).sum()",
            "--local",
            "2",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("dashboard: http://127.0.0.1:"),
        "{}",
        stderr(&o)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for says in [
        "<svg class=\"stream\"",
        "Time per kind of task",
        "array.",
        "(random((2000, 2000), chunks=(250, 250), seed=3) + 1).sum()",
        "compute",
        " tasks finished, 0 failed",
    ] {
        assert!(html.contains(says), "{says}");
    }
    for not in ["src=", "href=", "url("] {
        assert!(!html.contains(not), "{not}");
    }
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // A report path that cannot be written is refused before anything runs (exit 2).
    let o = bin()
        .args(["array", "ones((4,)).sum()", "--local", "1", "--report"])
        .arg(dir.path().join("missing/perf.html"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

/// A metrics token that is too short or would break a URL is refused before anything
/// starts: exit 2, the reason and a fix, no cluster directory.
#[test]
fn up_refuses_a_bad_metrics_token() {
    let c = Cluster::new("badtoken");
    for (token, why) in [("short", "16 characters"), ("0123456789abcdef&x", "'&'")] {
        let o = c
            .cmd(&["up", "--system", "local", "--metrics-token", token])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        assert!(stderr(&o).contains("openssl rand"), "{}", stderr(&o));
        assert!(!c.home.path().join("clusters/badtoken").exists());
    }
}

/// `submit --local` prints its dashboard's URL at start; the browser there sees the task
/// array's tasks complete (the counter rises without a reload while it runs); `--report`
/// then writes the run's HTML report. `--report` without `--local` is refused (exit 2).
#[test]
fn a_running_task_array_shows_on_the_dashboard_and_in_its_report() {
    use std::io::BufRead;
    let c = Cluster::new("tasks");
    let report = c.home.path().join("tasks.html");
    let mut run = c
        .cmd(&["submit", "--local", "2", "--array", "1-200", "--report"])
        .arg(&report)
        .args(["--", "sleep", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(run.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("submit ended before printing the dashboard URL")
            .unwrap();
        if let Some(url) = line.strip_prefix("dashboard: ") {
            break url.to_string();
        }
    };
    let rest = std::thread::spawn(move || lines.map_while(|l| l.ok()).collect::<Vec<_>>());
    let b = Browser::start();
    b.go(&url);
    let first = b.wait_js(
        "the task array's tasks completing",
        "const n = Number(document.getElementById('n-finished').textContent); \
         window.rdaskNoReload = true; return n > 0 && n < 200 ? n : 0",
        Duration::from_secs(60),
    );
    let second = b.wait_js(
        "the completed-task counter to rise",
        &format!(
            "const n = Number(document.getElementById('n-finished').textContent); \
             return window.rdaskNoReload === true && n > {first} ? n : 0"
        ),
        Duration::from_secs(60),
    );
    assert!(second.as_f64() > first.as_f64());
    // The programs draw in the task stream as their own kind.
    b.go(&format!("{url}#stream"));
    b.wait_js(
        "the programs in the task stream",
        "return document.getElementById('legend').textContent.includes('program')",
        Duration::from_secs(30),
    );
    let o = run.wait_with_output().unwrap();
    let err = rest.join().unwrap().join("\n");
    assert!(o.status.success(), "{}{err}", stdout(&o));
    assert!(err.contains("report: "), "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    for says in [
        "<svg class=\"stream\"",
        "rdask-jobqueue submit: sleep 0.1",
        "run the tasks",
        "200 task(s)",
        "200 tasks finished, 0 failed",
        ">program</td>",
    ] {
        assert!(html.contains(says), "{says}");
    }

    let o = c
        .cmd(&["submit", "--array", "1-2", "--report"])
        .arg(c.home.path().join("x.html"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("add --local N"), "{}", stderr(&o));
    assert!(!c.home.path().join("x.html").exists());
}
