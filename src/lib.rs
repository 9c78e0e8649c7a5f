//! rdask: Dask's model — collections become task graphs, a scheduler runs graphs on workers —
//! in Rust, for batch-scheduled HPC clusters.
//!
//! Data flows one way: configuration ([`config`]) -> job scripts and batch jobs
//! ([`jobqueue`]) -> worker ranks <-> scheduler <- client <- array expressions.
//! See docs/architecture.md for the map.

pub mod array;
pub mod client;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod files;
pub mod graph;
pub mod ids;
pub mod jobqueue;
pub mod kernels;
pub mod local;
pub mod mpi;
pub mod paths;
pub mod protocol;
pub mod rt;
pub mod scheduler;
pub mod sys;
pub mod task_array;
pub mod units;
pub mod worker;

pub use client::Client;
pub use error::{Error, Result};
pub use local::{LocalCluster, LocalClusterOptions};
