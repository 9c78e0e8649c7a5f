//! rdask: Dask's model — collections become task graphs, a scheduler runs graphs on workers —
//! in Rust, for batch-scheduled HPC clusters.
//!
//! Data flows one way: configuration ([`config`]) -> job scripts and batch jobs
//! ([`jobqueue`]) -> worker ranks <-> scheduler <- client <- array expressions.
//! See docs/architecture.md for the map.

pub mod cli;
pub mod config;
pub mod error;
pub mod graph;
pub mod jobqueue;
pub mod paths;
pub mod scheduler;
pub mod units;

pub use error::{Error, Result};
