//! `rdask-jobqueue info FILE`: what an HDF5 or netCDF-4 file holds (docs/arrays.md).

use std::io::Write;

use clap::Args;

use rdask::array::info;
use rdask::error::{Error, Result};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    rdask-jobqueue info data.h5\n  \
    rdask-jobqueue info era5.nc            # netCDF-4 files are HDF5 files\n  \
    rdask-jobqueue info data.h5 --json | jq '.root.members[].path'\n\n\
    Each dataset: shape, element type, chunks (or contiguous), filters with their levels,\n\
    and its size in memory against its size on disk.")]
pub struct InfoArgs {
    /// The HDF5 (.h5, .hdf5) or netCDF-4 (.nc) file
    pub file: String,
    /// Print JSON instead of the tree
    #[arg(long)]
    pub json: bool,
}

pub fn info(a: InfoArgs) -> Result<i32> {
    // Everything that goes wrong here is about the file the user named: exit 2.
    let root = info::inspect(&a.file).map_err(Error::invalid)?;
    let out = if a.json {
        format!("{}\n", info::json(&a.file, &root))
    } else {
        info::text(&a.file, &root)
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing to stdout")(e))
        }
        _ => Ok(0),
    }
}
