//! How every process of ours runs: the tokio runtime (the commands, the cluster daemon, the
//! MPI ranks, workers: one builder, so they all get the same threads and drivers) and its
//! logging.

use crate::error::{Error, Result};

/// A multi-threaded runtime with IO and time enabled.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))
}

/// Logs go to stderr; `RDASK_LOG` (error, warn, info, debug, trace) overrides the level.
pub fn init_logging(default: &str) {
    let level = std::env::var("RDASK_LOG").unwrap_or_else(|_| default.to_string());
    let level: tracing::Level = level.parse().unwrap_or(tracing::Level::WARN);
    // Colours only on a terminal: daemon and job logs are files people grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
