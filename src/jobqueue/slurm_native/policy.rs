//! Whether the native path may be used: pure decisions, so each trap is unit-tested without a
//! SLURM installation.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where libslurm looks for its configuration when `SLURM_CONF` is unset (Debian's build;
/// the path is compiled into the library).
pub const DEFAULT_SLURM_CONF: &str = "/etc/slurm/slurm.conf";

/// Why the daemon talks to SLURM through its commands instead of libslurm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `slurm_native = false`.
    Disabled,
    /// The binary was built without the `slurm-native` feature.
    NotBuilt,
    /// No readable slurm.conf: libslurm would stall about a minute, then `fatal()` (exit the
    /// whole daemon), so it is never called.
    NoConfig { path: PathBuf, why: String },
    /// The runtime libslurm is another release than the headers the bindings came from: the
    /// structures' layouts differ, so reading them would be undefined behaviour.
    ApiMismatch { runtime: i64, built: i64 },
    /// A library call did not return within its deadline (its thread is left behind).
    Stalled { call: &'static str, seconds: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Disabled => f.write_str("slurm_native = false"),
            Refusal::NotBuilt => f.write_str(
                "this binary was built without the slurm-native feature \
                 (cargo build --features slurm-native, with libslurm-dev installed)",
            ),
            Refusal::NoConfig { path, why } => write!(
                f,
                "SLURM's configuration {} is not readable ({why}); libslurm would stall and \
                 exit without it: set SLURM_CONF to the cluster's slurm.conf",
                path.display()
            ),
            Refusal::ApiMismatch { runtime, built } => write!(
                f,
                "libslurm at run time has API {} but this binary was built against API {}: \
                 rebuild on this site (the bindings are generated from its headers)",
                api_text(*runtime),
                api_text(*built)
            ),
            Refusal::Stalled { call, seconds } => {
                write!(f, "libslurm's {call} did not return within {seconds} s")
            }
        }
    }
}

/// `SLURM_VERSION_NUM(a, b, c)` as "a.b.c".
pub fn api_text(v: i64) -> String {
    format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

/// The configuration file libslurm will read: `$SLURM_CONF`, else the compiled-in default.
pub fn config_path(slurm_conf_env: Option<&str>) -> PathBuf {
    match slurm_conf_env {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SLURM_CONF),
    }
}

/// Refuses the native path unless `path` can be opened for reading: the check that keeps
/// libslurm from ever reaching its stall-then-exit on a missing configuration.
pub fn check_config(path: &Path) -> Result<(), Refusal> {
    match std::fs::File::open(path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(()),
        Ok(_) => Err(Refusal::NoConfig {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        }),
        Err(e) => Err(Refusal::NoConfig {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

/// Compares `slurm_api_version()` of the loaded library with the API the bindings were built
/// against. The API's first number (libslurm's soname, one per SLURM release) is what the
/// structures' layout follows; the others are revisions within it.
pub fn check_api(runtime: i64, built: i64) -> Result<(), Refusal> {
    if built > 0 && runtime >> 16 == built >> 16 {
        Ok(())
    } else {
        Err(Refusal::ApiMismatch { runtime, built })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_conf_overrides_the_default_path() {
        assert_eq!(config_path(None), PathBuf::from(DEFAULT_SLURM_CONF));
        assert_eq!(config_path(Some("")), PathBuf::from(DEFAULT_SLURM_CONF));
        assert_eq!(
            config_path(Some("/opt/s.conf")),
            PathBuf::from("/opt/s.conf")
        );
    }

    #[test]
    fn a_missing_or_unreadable_configuration_refuses_the_native_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("slurm.conf");
        let err = check_config(&missing).unwrap_err();
        assert!(matches!(&err, Refusal::NoConfig { path, .. } if *path == missing));
        assert!(err.to_string().contains("set SLURM_CONF"), "{err}");
        // A directory opens but is no configuration.
        assert!(check_config(dir.path()).is_err());
        std::fs::write(&missing, "ClusterName=x\n").unwrap();
        assert_eq!(check_config(&missing), Ok(()));
    }

    #[test]
    fn only_the_same_release_of_libslurm_is_used() {
        let v = |a: i64, b: i64, c: i64| (a << 16) + (b << 8) + c;
        assert_eq!(check_api(v(38, 0, 0), v(38, 0, 0)), Ok(()));
        // Revisions of one release share the layout.
        assert_eq!(check_api(v(38, 1, 2), v(38, 0, 0)), Ok(()));
        let err = check_api(v(39, 0, 0), v(38, 0, 0)).unwrap_err();
        assert_eq!(
            err,
            Refusal::ApiMismatch {
                runtime: v(39, 0, 0),
                built: v(38, 0, 0)
            }
        );
        assert!(err.to_string().contains("API 39.0.0"), "{err}");
        assert!(err.to_string().contains("API 38.0.0"), "{err}");
        // A build that could not read its library's API number never trusts the runtime one.
        assert!(check_api(v(38, 0, 0), 0).is_err());
    }
}
