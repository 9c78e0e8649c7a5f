//! The scheduler as a shared service: nothing a client or a stranger sends may break it or
//! make it grow without bound. Each test starts the real binary on loopback.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rdask::graph::TaskSpec;
use rdask::protocol::Secret;
use rdask::Client;

struct Scheduler {
    child: Child,
    address: String,
    secret: Secret,
    file: std::path::PathBuf,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scheduler {
    fn rss(&self) -> u64 {
        rdask::sys::rss_of(&self.child.id().to_string())
    }
}

/// A scheduler on loopback with `args`, its log (stderr) in `dir/scheduler.log`.
fn scheduler(dir: &Path, args: &[&str]) -> Scheduler {
    let file = dir.join("scheduler.json");
    let log = std::fs::File::create(dir.join("scheduler.log")).unwrap();
    let child = common::bin()
        .args(["scheduler", "--host", "127.0.0.1", "--port", "0"])
        .arg("--scheduler-file")
        .arg(&file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    common::wait_for("the scheduler file", Duration::from_secs(20), || {
        file.exists().then_some(())
    });
    let sf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    Scheduler {
        child,
        address: sf["address"].as_str().unwrap().to_string(),
        secret: Secret::from_hex(sf["secret"].as_str().unwrap()).unwrap(),
        file,
    }
}

const MIB: u64 = 1 << 20;

/// A graph over `--max-graph-tasks` is refused by the client before anything is sent: exit
/// 2, and the message names the limit and how to raise it. The scheduler serves on.
#[test]
fn a_graph_over_the_task_limit_is_refused_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), &["--max-graph-tasks", "50"]);
    let out = common::run(
        common::bin()
            .args(["array", "--chunks", "1", "--scheduler-file"])
            .arg(&s.file)
            .arg("ones(1000).sum()"),
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("limit of 50 tasks") && err.contains("--max-graph-tasks"),
        "{err}"
    );
    // Nothing reached the scheduler, which serves on and tells every client its limit.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&s.address, &s.secret).await.unwrap();
        assert_eq!(client.max_graph_tasks(), 50);
        client.status().await.unwrap();
    });
}

/// 3 M one-chunk tasks grew the daemon by 1.9 GB and it kept 1.7 GB after the graph was
/// gone. Now a released graph's room goes back to the system: measured on the process.
#[test]
fn the_scheduler_gives_memory_back_after_a_graph_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n: u64 = 400_000;
    rt.block_on(async {
        let client = Client::connect(&s.address, &s.secret).await.unwrap();
        // Settle, then measure.
        client.status().await.unwrap();
        let before = s.rss();
        let keys: Vec<_> = (0..n).map(|_| client.new_key()).collect();
        let tasks: Vec<TaskSpec> = keys
            .iter()
            .map(|k| TaskSpec::new(*k, "noop", vec![1, 2, 3, 4], vec![]))
            .collect();
        client.submit(tasks, &keys).unwrap();
        // No workers: every task stays queued on the scheduler.
        let deadline = Instant::now() + Duration::from_secs(120);
        while client.status().await.unwrap().tasks.queued < n {
            assert!(Instant::now() < deadline, "the graph never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let during = s.rss();
        client.release(&keys).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.status().await.unwrap().tasks != Default::default() {
            assert!(Instant::now() < deadline, "the graph was never forgotten");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The core compacts on its 100 ms tick; give it a few.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = s.rss();
        while after > before + (during - before) / 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = s.rss();
        }
        eprintln!(
            "scheduler RSS: before {} MiB, with {n} tasks {} MiB, after {} MiB",
            before / MIB,
            during / MIB,
            after / MIB
        );
        assert!(
            during > before + 100 * MIB,
            "the graph did not show (before {before}, during {during})"
        );
        assert!(
            after < before + (during - before) / 4,
            "kept {} MiB of {} MiB after the graph was released",
            (after.saturating_sub(before)) / MIB,
            (during - before) / MIB
        );
    });
}

/// 2,000 idle unauthenticated sockets, held and dropped three times, grew the daemon from
/// 16 to 536 MB for good, with one log line each. Now pending handshakes are capped, memory
/// comes back once they are gone, and the log gets a bounded number of lines.
#[test]
fn idle_strangers_cost_bounded_memory_and_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), &[]);
    let addr = s.address.trim_start_matches("tcp://").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(Client::connect(&s.address, &s.secret)).unwrap();
    rt.block_on(client.status()).unwrap();
    let before = s.rss();
    let mut peak = before;
    for _round in 0..3 {
        let mut sockets = Vec::new();
        for _ in 0..2000 {
            // Some are refused at once (over the cap): that is the point.
            if let Ok(sock) = std::net::TcpStream::connect(&addr) {
                sockets.push(sock);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(s.rss());
        drop(sockets);
        std::thread::sleep(Duration::from_millis(500));
    }
    // The scheduler still serves its real clients.
    rt.block_on(client.status()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = s.rss();
    while after > before + 16 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = s.rss();
    }
    eprintln!(
        "scheduler RSS: before {} MiB, peak {} MiB, after {} MiB",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(
        peak < before + 100 * MIB,
        "grew by {} MiB",
        (peak - before) / MIB
    );
    assert!(
        after < before + 16 * MIB,
        "kept {} MiB",
        (after - before) / MIB
    );
    let log = std::fs::read_to_string(dir.path().join("scheduler.log")).unwrap();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused a connection"))
        .count();
    assert!(
        lines > 0 && lines <= 20,
        "{lines} warning lines for 6,000 connections"
    );
    assert!(
        log.contains("are counted"),
        "the log does not say lines were held back"
    );
}

/// A named cluster's scheduler listens on the network its workers use, not on every
/// interface: here the contact address given (loopback), so the machine's other address
/// refuses connections to it. `--scheduler-interface all` asks for every interface.
#[test]
fn a_cluster_listens_on_the_contact_address_only() {
    let home = tempfile::Builder::new()
        .prefix("rdask-home-")
        .tempdir_in("/tmp")
        .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = common::bin();
        c.env("RDASK_HOME", home.path()).args(args);
        common::run(&mut c)
    };
    let up = |name: &str, extra: &[&str]| {
        let mut args = vec!["up", "--name", name, "--system", "local", "--cores", "1"];
        args.extend(["--memory", "500MiB", "--walltime", "00:10:00"]);
        args.extend(extra);
        let o = cmd(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(home.path().join("clusters").join(name).join("cluster.json"))
                .unwrap(),
        )
        .unwrap();
        let address = rec["address"].as_str().unwrap().to_string();
        let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        (
            rec["bind_host"].as_str().unwrap().to_string(),
            address,
            port,
        )
    };
    // Another address of this machine, to dial the port on: the one its default route
    // leaves from (a UDP connect sends nothing). None without a network; then only the
    // record is checked.
    let other = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").and_then(|()| u.local_addr()))
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());

    let (bind, address, port) = up("lo", &["--contact-address", "127.0.0.1"]);
    assert_eq!(bind, "127.0.0.1");
    assert_eq!(address, format!("tcp://127.0.0.1:{port}"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    if let Some(ip) = other {
        assert!(
            std::net::TcpStream::connect((ip, port)).is_err(),
            "the scheduler answers on {ip} too"
        );
    }
    let o = cmd(&["down", "--name", "lo"]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let (bind, _, port) = up(
        "all",
        &[
            "--contact-address",
            "127.0.0.1",
            "--scheduler-interface",
            "all",
        ],
    );
    assert_eq!(bind, "0.0.0.0");
    if let Some(ip) = other {
        assert!(std::net::TcpStream::connect((ip, port)).is_ok());
    }
    let o = cmd(&["down", "--name", "all"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

/// A valid graph listed dependents first panicked the scheduler's core (and a named cluster's
/// daemon then cancelled every job). Now it runs; bad graphs get a reason, to their sender
/// only, and the scheduler process serves on.
#[test]
fn graphs_in_any_order_run_and_bad_ones_are_refused_to_their_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = scheduler(dir.path(), &[]);
    let worker = common::bin()
        .args([
            "worker",
            "--no-nanny",
            "--nthreads",
            "1",
            "--scheduler-file",
        ])
        .arg(&s.file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _worker = Kill(worker);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&s.address, &s.secret).await.unwrap();
        let other = Client::connect(&s.address, &s.secret).await.unwrap();
        // A sum tree over 0..100, its tasks listed root first.
        let leaves: Vec<_> = (0..100u64).map(|_| client.new_key()).collect();
        let mut tasks: Vec<TaskSpec> = leaves
            .iter()
            .zip(0u64..)
            .map(|(k, i)| TaskSpec::new(*k, "sum-u64", i.to_le_bytes().to_vec(), vec![]))
            .collect();
        let (inner, root) = rdask::graph::reduction_tree(leaves, 2, "sum-u64", || client.new_key());
        tasks.extend(inner);
        tasks.reverse();
        let out = tokio::time::timeout(Duration::from_secs(60), client.compute(tasks, &[root]))
            .await
            .expect("the graph did not finish")
            .unwrap();
        assert_eq!(u64::from_le_bytes(out[0][..8].try_into().unwrap()), 4950);

        // A cycle and a duplicate key: refused with the reason, to that client only.
        let (a, b) = (other.new_key(), other.new_key());
        let cycle = vec![
            TaskSpec::new(a, "sum-u64", vec![], vec![b]),
            TaskSpec::new(b, "sum-u64", vec![], vec![a]),
        ];
        other.submit(cycle, &[a]).unwrap();
        let err = other.wait(&[a]).await.unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
        let c = other.new_key();
        let twice = vec![
            TaskSpec::new(c, "sum-u64", vec![], vec![]),
            TaskSpec::new(c, "sum-u64", vec![], vec![]),
        ];
        other.submit(twice, &[c]).unwrap();
        let err = other.wait(&[c]).await.unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");

        // The first client never heard of it, and the scheduler still runs graphs.
        let k = client.new_key();
        let out = client
            .compute(
                vec![TaskSpec::new(
                    k,
                    "sum-u64",
                    7u64.to_le_bytes().to_vec(),
                    vec![],
                )],
                &[k],
            )
            .await
            .unwrap();
        assert_eq!(u64::from_le_bytes(out[0][..8].try_into().unwrap()), 7);
    });
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "the scheduler exited"
    );
}
