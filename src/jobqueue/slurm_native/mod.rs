//! SLURM through libslurm (cargo feature `slurm-native`): submit, job states, pending reasons
//! and cancel without running sbatch, squeue and scancel.
//!
//! The decisions are pure and always built (`policy`: may the library be used; `directives`:
//! a script's `#SBATCH` lines as a job description; `states`: job records as squeue shows
//! them). The library itself (`native`, its bindings in `ffi`) exists only with the feature;
//! without it [`Handle`] cannot be made and every queue uses the commands.
//! `JobQueue::with_native` decides, and falls back to the commands whenever this path refuses.

pub mod directives;
pub mod policy;
pub mod states;

#[cfg(feature = "slurm-native")]
mod ffi;
#[cfg(feature = "slurm-native")]
mod native;

use std::time::Duration;

use crate::config::SlurmNative;
use crate::jobqueue::JobState;
pub use policy::Refusal;

/// How a native call failed.
#[derive(Debug)]
pub enum NativeError {
    /// The library may not be used (any more): do it with the commands instead.
    Unavailable(Refusal),
    /// Certainly no job was queued.
    Refused(String),
    /// A job may have been queued (the answer was lost, or the call missed its deadline).
    Uncertain(String),
    /// The controller answered with an error (or could not be reached) for a query or cancel.
    Failed(String),
}

/// An open native path (a handle to the process's one libslurm thread).
#[derive(Clone)]
pub struct Handle {
    #[cfg(feature = "slurm-native")]
    inner: std::sync::Arc<native::Native>,
    #[cfg(not(feature = "slurm-native"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("slurm_native::Handle")
    }
}

/// Opens the native path as `choice` asks, each library call bounded by `timeout`.
pub fn open(choice: SlurmNative, timeout: Duration) -> Result<Handle, Refusal> {
    if choice == SlurmNative::False {
        return Err(Refusal::Disabled);
    }
    #[cfg(feature = "slurm-native")]
    {
        native::shared(timeout).map(|inner| Handle { inner })
    }
    #[cfg(not(feature = "slurm-native"))]
    {
        let _ = timeout;
        Err(Refusal::NotBuilt)
    }
}

#[cfg(feature = "slurm-native")]
impl Handle {
    /// "libslurm API 38.0.0", for the daemon's log and `status`.
    pub fn describe(&self) -> String {
        format!("libslurm API {}", policy::api_text(self.inner.runtime_api))
    }

    pub fn submit(
        &self,
        script: &str,
        script_path: &str,
        req: &directives::Request,
    ) -> Result<String, NativeError> {
        self.inner.submit(script, script_path, req)
    }

    pub fn states(&self, ids: &[String]) -> Result<Vec<(String, JobState)>, NativeError> {
        self.inner.states(ids)
    }

    pub fn pending_reasons(&self, ids: &[String]) -> Result<Vec<(String, String)>, NativeError> {
        self.inner.pending_reasons(ids)
    }

    pub fn cancel(&self, ids: &[String]) -> Result<(), NativeError> {
        self.inner.cancel(ids)
    }
}

#[cfg(not(feature = "slurm-native"))]
impl Handle {
    pub fn describe(&self) -> String {
        match self.inner {}
    }

    pub fn submit(
        &self,
        _script: &str,
        _script_path: &str,
        _req: &directives::Request,
    ) -> Result<String, NativeError> {
        match self.inner {}
    }

    pub fn states(&self, _ids: &[String]) -> Result<Vec<(String, JobState)>, NativeError> {
        match self.inner {}
    }

    pub fn pending_reasons(&self, _ids: &[String]) -> Result<Vec<(String, String)>, NativeError> {
        match self.inner {}
    }

    pub fn cancel(&self, _ids: &[String]) -> Result<(), NativeError> {
        match self.inner {}
    }
}
