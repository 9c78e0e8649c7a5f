//! `scheduler`: the runtime's scheduler process. (`worker` is the worker layer's own
//! command line: `rdask::worker::command_line`.)

use std::path::PathBuf;

use clap::Args;

use rdask::error::{Error, Result};
use rdask::protocol::{SchedulerFile, Secret};
use rdask::scheduler::server::{self, SchedulerOptions};
pub use rdask::worker::command_line::{worker, WorkerArgs};

#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Address to listen on [default: all interfaces]
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8786)]
    pub port: u16,
    /// Listen on this network interface's address (e.g. ib0)
    #[arg(long, value_name = "IFACE", conflicts_with = "host")]
    pub interface: Option<String>,
    /// Host name or address workers and clients should dial (NAT, proxies)
    #[arg(long, value_name = "HOST")]
    pub contact_address: Option<String>,
    /// Write {"address": ..., "secret": ...} here (mode 0600) for workers and clients
    #[arg(long, value_name = "FILE")]
    pub scheduler_file: Option<PathBuf>,
    /// The cluster secret (hex, mode 0600), created if missing; default: $RDASK_SECRET, else
    /// a new one, written to the scheduler file or to $RDASK_HOME/scheduler-PORT.secret
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Most tasks one graph submission may carry [default: a tenth of this machine's memory
    /// at 1 KiB per task]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_graph_tasks: Option<u64>,
}

pub fn scheduler(a: SchedulerArgs) -> Result<i32> {
    // Whether the secret was made here and lives in no file yet: it is then written to one.
    let mut made_here = false;
    let secret = match (&a.secret_file, std::env::var(rdask::protocol::SECRET_ENV)) {
        // A new cluster's secret file is created on first use (mode 0600).
        (Some(f), _) if !f.exists() => {
            let s = Secret::generate()?;
            s.save(f)?;
            s
        }
        (Some(f), _) => Secret::load(f)?,
        (None, Ok(hex)) => Secret::from_hex(&hex)?,
        (None, Err(_)) => {
            made_here = true;
            Secret::generate()?
        }
    };
    let ip = match (&a.interface, &a.host) {
        (Some(iface), _) => rdask::sys::interface_address(iface).map_err(Error::invalid)?,
        (None, Some(h)) => h
            .parse()
            .map_err(|_| Error::invalid(format!("--host {h}: not an IP address")))?,
        (None, None) => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let mut opts = SchedulerOptions::new((ip, a.port).into(), secret.clone());
    opts.contact_host = a.contact_address.clone();
    if let Some(n) = a.max_graph_tasks {
        opts.config.max_graph_tasks = n as usize;
    }
    rdask::rt::runtime()?.block_on(async move {
        let handle = server::start(opts).await?;
        println!("scheduler at {}", handle.address);
        if let Some(file) = &a.scheduler_file {
            let text = serde_json::to_string_pretty(&SchedulerFile {
                address: handle.address.clone(),
                secret: secret.to_hex(),
            })
            .expect("serialises");
            rdask::files::write_private(file, &text)?;
            println!(
                "scheduler file: {} (workers: rdask-jobqueue worker --scheduler-file {0})",
                file.display()
            );
        } else if made_here {
            // Nobody else knows a secret made here: without a file, no worker could join.
            let file = made_secret_file(&handle.address);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
            }
            secret.save(&file)?;
            println!(
                "secret file: {} (mode 0600; workers: rdask-jobqueue worker {} --secret-file {0})",
                file.display(),
                handle.address
            );
        } else {
            println!(
                "start workers with the same secret: rdask-jobqueue worker {} (with {} or \
                 --secret-file)",
                handle.address,
                rdask::protocol::SECRET_ENV
            );
        }
        tokio::select! {
            _ = handle.stopped() => {}
            _ = tokio::signal::ctrl_c() => handle.shutdown(),
        }
        match handle.failure() {
            Some(why) => Err(Error::runtime(format!("the scheduler failed: {why}"))),
            None => Ok(0),
        }
    })
}

/// Where a scheduler started without a secret keeps the one it made:
/// `$RDASK_HOME/scheduler-PORT.secret` (one per port, so two schedulers never share one).
fn made_secret_file(address: &str) -> PathBuf {
    let port = address.rsplit(':').next().unwrap_or("0");
    rdask::paths::rdask_home().join(format!("scheduler-{port}.secret"))
}
