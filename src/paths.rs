//! Where rdask keeps its state on disk.

use std::path::PathBuf;

/// `$RDASK_HOME`, else `~/.rdask`: cluster records, job scripts, logs. On HPC systems the home
/// directory is shared with the compute nodes, which is what workers need to find secrets.
pub fn rdask_home() -> PathBuf {
    match std::env::var_os("RDASK_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            home.join(".rdask")
        }
    }
}
