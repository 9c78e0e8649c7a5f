//! Writing the files rdask keeps (cluster records, ledgers, secrets, scheduler files, job
//! scripts): one way, atomic. A reader — another command, a worker on a compute node, the
//! batch system — sees the old file or the new one, never a half-written one, and a crash
//! mid-way leaves at most a hidden temporary file beside it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically with permissions `mode`: a temporary file in the same
/// directory (so the rename cannot cross file systems), synced, renamed over `path`, and the
/// directory synced so the rename itself survives a crash of the machine.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        // Created with the final mode: a secret is never readable by others, not even for
        // the moment between creating and renaming.
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(Error::io(context()))?;
    tmp.write_all(bytes).map_err(Error::io(context()))?;
    // The umask may have narrowed the mode given at creation; executables need theirs whole.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(context()))?;
    tmp.as_file().sync_all().map_err(Error::io(context()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: context(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!(
            "syncing the directory {} after {}",
            dir.display(),
            context()
        )))
}

/// A file only its owner can read (secrets, records that name them), written atomically.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_whole_files_with_their_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        write_private(&secret, "abc\n").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "abc\n");
        assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o777, 0o600);
        let script = dir.path().join("job.sh");
        write_atomic(&script, b"#!/bin/sh\n", 0o755).unwrap();
        assert_eq!(std::fs::metadata(&script).unwrap().mode() & 0o777, 0o755);
        // Replacing keeps one file and no temporary beside it.
        write_private(&secret, "def\n").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "def\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let err = write_private(Path::new("/nonexistent-dir/x"), "1").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }
}
