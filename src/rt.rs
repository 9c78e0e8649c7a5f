//! The tokio runtime every long-lived part runs on (the commands, the cluster daemon, the MPI
//! ranks): one builder, so they all get the same threads and drivers.

use crate::error::{Error, Result};

/// A multi-threaded runtime with IO and time enabled.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))
}
