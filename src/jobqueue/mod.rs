//! The deployer's batch-system layer: nothing here knows about tasks.
//!
//! Each system is described by a [`BatchSystem`]: the directive lines it wants, the command
//! lines that submit, cancel and query jobs, and the parsing of those commands' output. These
//! descriptions are pure (no IO), so every system is tested from captured outputs. [`JobQueue`]
//! runs them through [`command::run`], which applies a timeout and turns failures into errors
//! that show the command, its exit status and its stderr.

pub mod command;
pub mod htcondor;
pub mod indices;
pub mod job_env;
pub use job_env::batch_job_id;
pub mod ledger;
pub mod local;
pub mod lsf;
pub mod moab;
pub mod mpi_script;
pub mod oar;
pub mod pbs;
pub mod pools;
pub mod scaler;
pub mod script;
pub mod sge;
pub mod slurm;
pub mod slurm_native;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{JobConfig, SystemKind};
use crate::error::{CommandFailure, CommandStatus, Error, Result};
use crate::units::{ByteSize, LsfUnit, SizeAsWritten, Walltime};

/// A batch job's state, the same for every system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Queued, held, or starting.
    Pending,
    /// Running (or suspended while it holds its allocation).
    Running,
    /// Finished with exit status 0.
    Completed,
    /// Finished with an error, or stuck in an error state.
    Failed,
    /// Cancelled by a user or an administrator.
    Cancelled,
    /// The batch system no longer knows the job: it finished and was purged from its view.
    Gone,
}

impl JobState {
    /// True when the job will never run again.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Gone => "gone",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A command to run: its argv, and a file to feed on stdin (LSF's `bsub < script`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub stdin: Option<PathBuf>,
}

impl Invocation {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Invocation {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }
}

/// What a finished command printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Facts about the site that header generation needs and the configuration may not hold.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// LSF's `LSF_UNIT_FOR_LIMITS`, from the configuration or lsf.conf.
    pub lsf_unit: LsfUnit,
}

impl Site {
    /// Reads what the configuration leaves open from the site's files.
    pub fn discover(cfg: &JobConfig) -> Site {
        Site {
            lsf_unit: cfg.lsf_units.unwrap_or_else(lsf::detect_unit),
        }
    }
}

/// What the MPI-style runner's batch script needs from a system (`job-script --mpi`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MpiJob {
    /// The directive lines: all ranks in one allocation, `cores` and `memory` per rank.
    pub header: Vec<String>,
    /// Shell lines before the launch (PBS starts jobs in $HOME: `cd "$PBS_O_WORKDIR"`).
    pub setup: Vec<String>,
    /// The command that starts every rank ("srun --kill-on-bad-exit=1", "mpirun -np 8").
    pub launcher: String,
}

/// How one batch system is spoken to and written for: the one place that knows a system's
/// directives, formats, commands, ids and states. Pure: argv in, text out; [`JobQueue`] does
/// the IO (the exceptions say so: LSF's lsf.conf, HTCondor's job ad, local's /proc).
pub trait BatchSystem: Sync {
    fn kind(&self) -> SystemKind;

    /// The prefix of header directive lines ("#SBATCH"), prepended to extra directives.
    /// Empty for HTCondor, whose extra directives are whole `Key = Value` lines.
    fn directive_prefix(&self) -> &'static str;

    /// The file name a job script is written under (HTCondor takes a submit description).
    fn script_file_name(&self) -> &'static str {
        "job.sh"
    }

    /// The built-in template, as shipped in templates/: its file name and its text.
    fn template(&self) -> (&'static str, &'static str);

    /// A memory request as this system's directives spell it (the template's
    /// `memory_request`, and the header's). Exact bytes where the system has no unit of its own.
    fn format_memory(&self, memory: ByteSize, _site: &Site) -> String {
        memory.exact()
    }

    /// An explicit memory request (`job_mem`) as the directive gets it: as the user wrote it
    /// where this system reads that spelling (SLURM `100G`, PBS `100gb`), as dask-jobqueue
    /// passes it; else converted from its bytes like `memory` (LSF's bare number in
    /// `LSF_UNIT_FOR_LIMITS`, as dask-jobqueue converts its `mem`; HTCondor's MiB).
    fn format_job_mem(&self, request: &SizeAsWritten, site: &Site) -> String {
        self.format_memory(request.bytes, site)
    }

    /// The memory a job asks for, as its directive spells it (the template's
    /// `memory_request`): `job_mem` ([`BatchSystem::format_job_mem`]), else `memory`.
    fn memory_request(&self, cfg: &JobConfig, site: &Site) -> String {
        match &cfg.job_mem {
            Some(request) => self.format_job_mem(request, site),
            None => self.format_memory(cfg.memory, site),
        }
    }

    /// A walltime as this system's directives spell it (the template's `walltime`).
    fn format_walltime(&self, walltime: Walltime) -> String {
        walltime.hhmmss()
    }

    /// The directive lines generated from the configuration, in dask-jobqueue's order, before
    /// `job_directives_skip` filters them. Extra directives are added by the caller.
    fn header_lines(&self, cfg: &JobConfig, site: &Site) -> Vec<String>;

    /// The MPI-style runner's header and launcher for `ranks` ranks of `cfg.cores` cores and
    /// `cfg.memory` each; None where we support no MPI launcher on this system.
    fn mpi_job(&self, _cfg: &JobConfig, _ranks: u32, _site: &Site) -> Option<MpiJob> {
        None
    }

    /// The command that submits the script at `script` (an absolute path).
    fn submit(&self, script: &Path, extra: &[String]) -> Invocation;

    /// Finds the job id in the submit command's output.
    fn parse_job_id(&self, out: &Output) -> Option<String>;

    /// The command that submits `count` (2 or more) copies of the script at `script` as one
    /// job array named `name` (`sbatch --array=0-N`, `qsub -t 1-N`, ...): a scale-up costs
    /// one submission instead of `count`. None where arrays are not used on this system; a
    /// scale-up then submits one job per element.
    fn submit_array(
        &self,
        _script: &Path,
        _name: &str,
        _count: usize,
        _extra: &[String],
    ) -> Option<Invocation> {
        None
    }

    /// The ids of the `count` elements of an array, in order, from its submit command's
    /// output, spelt as the status and cancel commands and the elements' own environment
    /// spell them (`123_4`, `123.4`, `123[4]`): each element is a job of its own to the
    /// ledger and the scaler. None when the output cannot be read.
    fn parse_array_ids(&self, _out: &Output, _count: usize) -> Option<Vec<String>> {
        None
    }

    /// Whether a submit command that exited badly may still have queued the job: it lost
    /// its controller mid-way ("Socket timed out on send/recv operation" can come after the
    /// job was queued). Otherwise the system refused it and there is no job.
    fn submit_may_have_queued(&self, out: &Output) -> bool {
        let said = format!("{} {}", out.stderr, out.stdout).to_ascii_lowercase();
        said.contains("timed out") || said.contains("timeout")
    }

    /// The command that cancels the given jobs.
    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation;

    /// Whether a failed cancel only complained about ids that are already gone; cancelling a
    /// finished job is then not an error.
    fn cancel_failure_is_harmless(&self, out: &Output) -> bool;

    /// The command that asks the states of many jobs in one call.
    fn status(&self, ids: &[String]) -> Invocation;

    /// Reads the states of `ids` from the status command's output. Ids the output does not
    /// mention are [`JobState::Gone`]. `Err` when the output cannot be read at all.
    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> std::result::Result<BTreeMap<String, JobState>, String>;

    /// Environment variables (in order) whose value is the id of the job a process runs in.
    fn job_id_variables(&self) -> &'static [&'static str];

    /// The id of the job this process runs in, from its environment (`env` looks a variable
    /// up): the first non-empty of [`BatchSystem::job_id_variables`].
    fn job_id_from_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        self.job_id_variables()
            .iter()
            .filter_map(|var| env(var))
            .find(|v| !v.is_empty())
    }

    /// The job-id variable that every process of a job sees, the job script's shell and each
    /// rank a launcher starts on any node: it names the MPI script's scheduler file and is
    /// part of the MPI runner's launch id. None where the MPI runner has no such variable.
    fn launch_job_id_variable(&self) -> Option<&'static str> {
        None
    }

    /// The part of a job id that names the job whatever the spelling: a worker reports the id
    /// its environment holds, a status command prints another, the submit command a third
    /// (PBS: "1234.server" vs "1234.server.domain"; Moab: "Moab.1234" vs "1234.torque").
    /// By default the part before the first dot.
    fn canonical_id<'a>(&self, id: &'a str) -> &'a str {
        id_number(id)
    }

    /// The ids among `ids` that a cancel should signal; an error when one must not be touched.
    /// Batch systems check ownership themselves, so all of them; local jobs are processes,
    /// and only those our launcher started qualify (see [`local::live_jobs`], which reads
    /// /proc).
    fn cancellable(&self, ids: &[String]) -> Result<Vec<String>> {
        Ok(ids.to_vec())
    }

    /// Whether `id` has the shape of one of this system's job ids. Ids go as arguments to
    /// scancel, qdel, kill, ...: anything else (`--name=x`, `-1`) must never reach them.
    fn is_job_id(&self, id: &str) -> bool;

    /// The accepted shapes, for the error message ("123, 123_4 or 123.batch").
    fn job_id_forms(&self) -> &'static str;

    /// The command that cancels every job named `name` (jobs whose id was never read: the
    /// submit command timed out, or the daemon died between recording a job and reading its
    /// id). None where the system has no such command here; `down --force
    /// --forget-unconfirmed` is then the way out. Cluster job names are unique
    /// (`rdask-CLUSTER-SEQ`), so this cancels nothing else. `script` is the job's script
    /// (absolute), for systems that find their jobs by it (local).
    fn cancel_by_name(&self, _name: &str, _script: &Path, _extra: &[String]) -> Option<Invocation> {
        None
    }

    /// The command that checks a job script without queueing it (SLURM's `sbatch
    /// --test-only`, Grid Engine's `qsub -w v`), so `up` refuses a bad partition or queue at
    /// once instead of after its `--wait`. None where the system has none.
    fn dry_run(&self, _script: &Path, _extra: &[String]) -> Option<Invocation> {
        None
    }

    /// The command that tells why pending jobs wait, where the system says so in one call
    /// (SLURM's reason column). None elsewhere.
    fn pending_reasons(&self, _ids: &[String]) -> Option<Invocation> {
        None
    }

    /// Reads "id -> reason" from the output of [`BatchSystem::pending_reasons`].
    fn parse_pending_reasons(&self, _out: &Output) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// The description of a system.
pub fn system(kind: SystemKind) -> &'static dyn BatchSystem {
    match kind {
        SystemKind::Slurm => &slurm::Slurm,
        SystemKind::Pbs => &pbs::Pbs,
        SystemKind::Sge => &sge::Sge,
        SystemKind::Lsf => &lsf::Lsf,
        SystemKind::Oar => &oar::Oar,
        SystemKind::Htcondor => &htcondor::Htcondor,
        SystemKind::Moab => &moab::Moab,
        SystemKind::Local => &local::Local,
    }
}

/// Every id in `ids` that a parser did not see is gone from the batch system's view.
pub(crate) fn fill_gone(
    ids: &[String],
    mut seen: BTreeMap<String, JobState>,
) -> BTreeMap<String, JobState> {
    for id in ids {
        seen.entry(id.clone()).or_insert(JobState::Gone);
    }
    seen
}

/// One or more ASCII digits.
pub(crate) fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A server name inside a job id ("pbs01.cluster"): starts with a letter or digit, then
/// letters, digits, '-', '_' and '.'.
pub(crate) fn is_server_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `123` or `123[4]` (or `123[]`, an array's parent): PBS's and LSF's ids before the server.
pub(crate) fn is_number_with_index(s: &str, empty_index: bool) -> bool {
    match s.split_once('[') {
        None => is_number(s),
        Some((n, rest)) => {
            let Some(index) = rest.strip_suffix(']') else {
                return false;
            };
            is_number(n) && (is_number(index) || (empty_index && index.is_empty()))
        }
    }
}

/// A job name as a cancel-by-name argument: never an option (no leading '-'), one word.
pub(crate) fn is_job_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The part of a job id before the first dot ("1234" of "1234.server"): PBS and Moab print
/// ids with server names that their status commands may spell differently.
pub(crate) fn id_number(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// What a failed submission says about whether a job exists. Decided once, where the submit
/// command's outcome is read ([`SubmitFailure::of_command`]); callers match on it.
#[derive(Debug)]
pub enum SubmitFailure {
    /// Certainly no job: the command never started, or it ran and refused the job.
    Refused(Error),
    /// Maybe a job: the command timed out, printed no id we can read, or failed while talking
    /// to the controller ("Socket timed out on send/recv" can come after the job was queued).
    Uncertain(Error),
}

impl SubmitFailure {
    /// Whether the failed submit command `failure` may have queued a job, from how it ended
    /// and, for one that exited badly, from what the system said (`may_have_queued`, its
    /// description's reading of the output).
    pub fn of_command(failure: CommandFailure, may_have_queued: bool) -> SubmitFailure {
        let certain_none = match failure.status {
            CommandStatus::CouldNotStart(_) => true,
            CommandStatus::Exited(_) => !may_have_queued,
            // Killed mid-way (by us at the deadline, or by someone): it may have got through.
            CommandStatus::TimedOut { .. } | CommandStatus::Signalled => false,
        };
        if certain_none {
            SubmitFailure::Refused(failure.into())
        } else {
            SubmitFailure::Uncertain(failure.into())
        }
    }

    /// The error, whichever it is.
    pub fn into_error(self) -> Error {
        match self {
            SubmitFailure::Refused(e) | SubmitFailure::Uncertain(e) => e,
        }
    }
}

/// Submits, cancels and queries jobs of one system through its commands.
#[derive(Clone, Debug)]
pub struct JobQueue {
    pub kind: SystemKind,
    timeout: Duration,
    submit_extra: Vec<String>,
    cancel_extra: Vec<String>,
    /// SLURM through libslurm, when the daemon opened it (see [`JobQueue::with_native`]).
    native: Option<slurm_native::Handle>,
}

impl JobQueue {
    pub fn new(cfg: &JobConfig) -> Self {
        JobQueue {
            kind: cfg.system,
            timeout: Duration::from_secs(cfg.command_timeout.max(1)),
            submit_extra: cfg.submit_command_extra.clone(),
            cancel_extra: cfg.cancel_command_extra.clone(),
            native: None,
        }
    }

    /// The daemon's queue (and `jobs status`'s): for SLURM, through libslurm when `slurm_native` allows and the
    /// library passes its checks (see [`slurm_native::policy`]); the commands otherwise. The
    /// log says which, and why not the library.
    pub fn with_native(cfg: &JobConfig) -> Self {
        let mut q = Self::new(cfg);
        if cfg.system != SystemKind::Slurm {
            return q;
        }
        match slurm_native::open(cfg.slurm_native, q.timeout) {
            Ok(handle) => {
                tracing::info!("SLURM through {}", handle.describe());
                q.native = Some(handle);
            }
            Err(why) if cfg.slurm_native == crate::config::SlurmNative::True => {
                tracing::warn!(
                    "SLURM through sbatch/squeue/scancel: slurm_native = true, but {why}"
                );
            }
            Err(why) => tracing::info!("SLURM through sbatch/squeue/scancel ({why})"),
        }
        q
    }

    /// Which path this queue talks to its batch system by, for `status` and logs.
    pub fn path(&self) -> String {
        match &self.native {
            Some(h) => h.describe(),
            None => "commands".into(),
        }
    }

    /// Submits through libslurm; `None` when this script or queue is the commands' to submit
    /// (no native path, extra sbatch arguments, or a directive only sbatch reads).
    fn submit_native(&self, script: &Path) -> Option<std::result::Result<String, SubmitFailure>> {
        let native = self.native.as_ref()?;
        if !self.submit_extra.is_empty() {
            return None;
        }
        let text = std::fs::read_to_string(script).ok()?;
        let req = match slurm_native::directives::read(&text) {
            Ok(req) => req,
            Err(line) => {
                tracing::debug!("`{line}` is sbatch's to read: submitting with sbatch");
                return None;
            }
        };
        use slurm_native::NativeError as E;
        match native.submit(&text, &script.display().to_string(), &req) {
            Ok(id) => Some(Ok(id)),
            Err(E::Unavailable(why)) => {
                tracing::debug!("submitting with sbatch: {why}");
                None
            }
            Err(E::Refused(why)) => Some(Err(SubmitFailure::Refused(Error::runtime(why)))),
            Err(E::Uncertain(why) | E::Failed(why)) => {
                Some(Err(SubmitFailure::Uncertain(Error::runtime(why))))
            }
        }
    }

    /// This queue's batch-system description (pure: formats, id forms, parsers).
    pub fn system(&self) -> &'static dyn BatchSystem {
        system(self.kind)
    }

    /// The part of `id` that names its job whatever the spelling (see
    /// [`BatchSystem::canonical_id`]): a worker's reported id and the ledger's compare by it.
    pub fn canonical_id<'a>(&self, id: &'a str) -> &'a str {
        self.system().canonical_id(id)
    }

    /// Refuses ids that are not this system's, before any command sees them.
    pub fn check_ids(&self, ids: &[String]) -> Result<()> {
        let sys = self.system();
        match ids.iter().find(|id| !sys.is_job_id(id)) {
            None => Ok(()),
            Some(bad) => Err(Error::invalid(format!(
                "'{}' is not a {} job id: expected {}",
                bad.escape_debug(),
                self.kind,
                sys.job_id_forms()
            ))),
        }
    }

    /// Submits the script file and returns the job id the batch system gave it; on failure,
    /// whether a job may exist anyway.
    pub fn submit(&self, script: &Path) -> std::result::Result<String, SubmitFailure> {
        let sys = self.system();
        // libslurm takes single jobs (arrays go to sbatch); nothing has run yet if the
        // path cannot be resolved, so that failure is a certain refusal.
        let absolute = std::path::absolute(script)
            .map_err(Error::io(format!("resolving {}", script.display())))
            .map_err(SubmitFailure::Refused)?;
        if let Some(outcome) = self.submit_native(&absolute) {
            return outcome;
        }
        self.run_submit(
            script,
            |script| Some(sys.submit(script, &self.submit_extra)),
            |out| sys.parse_job_id(out),
        )
    }

    /// Whether a scale-up of several jobs is one array submission on this system.
    pub fn has_arrays(&self) -> bool {
        self.system()
            .submit_array(Path::new("/job.sh"), "job", 2, &[])
            .is_some()
    }

    /// Submits `count` copies of the script as one array named `name` and returns its
    /// elements' ids (see [`BatchSystem::parse_array_ids`]); on failure, whether an array
    /// may exist anyway. Refused (nothing run) where the system has no arrays here.
    pub fn submit_array(
        &self,
        script: &Path,
        name: &str,
        count: usize,
    ) -> std::result::Result<Vec<String>, SubmitFailure> {
        let sys = self.system();
        if count < 2 || !is_job_name(name) {
            return Err(SubmitFailure::Refused(Error::runtime(format!(
                "not an array of {count} jobs named '{}'",
                name.escape_debug()
            ))));
        }
        self.run_submit(
            script,
            |script| sys.submit_array(script, name, count, &self.submit_extra),
            |out| {
                sys.parse_array_ids(out, count)
                    .filter(|ids| ids.len() == count && ids.iter().all(|id| sys.is_job_id(id)))
            },
        )
    }

    /// Runs a submit command (`invocation` of the absolute script path; None: this system
    /// has no such command, refused) and reads its output with `parse`; a failure says
    /// whether a job may exist anyway.
    fn run_submit<T>(
        &self,
        script: &Path,
        invocation: impl FnOnce(&Path) -> Option<Invocation>,
        parse: impl FnOnce(&Output) -> Option<T>,
    ) -> std::result::Result<T, SubmitFailure> {
        // Nothing has run yet: any failure here certainly queued nothing.
        let script = std::path::absolute(script)
            .map_err(Error::io(format!("resolving {}", script.display())))
            .map_err(SubmitFailure::Refused)?;
        let sys = self.system();
        let inv = invocation(&script).ok_or_else(|| {
            SubmitFailure::Refused(Error::runtime(format!(
                "{} job arrays are not submitted here (a scale-up goes job by job)",
                self.kind
            )))
        })?;
        let out = match command::run(&inv, self.timeout) {
            Ok(out) => out,
            Err(Error::Command(f)) => return Err(SubmitFailure::of_command(*f, false)),
            // Waiting for it failed: it ran, and may have queued the job.
            Err(e) => return Err(SubmitFailure::Uncertain(e)),
        };
        if out.code != Some(0) {
            let may_have_queued = sys.submit_may_have_queued(&out);
            return Err(SubmitFailure::of_command(
                command::failure(&inv, &out),
                may_have_queued,
            ));
        }
        parse(&out).ok_or_else(|| {
            SubmitFailure::Uncertain(Error::runtime(format!(
                "`{}` succeeded but printed no job id we can read: {:?}",
                inv.argv.join(" "),
                out.stdout.trim()
            )))
        })
    }

    /// Checks the script at `script` as a submission would, without queueing anything.
    /// `Ok(false)` when this system has no such check; the command's failure otherwise.
    pub fn dry_run(&self, script: &Path) -> Result<bool> {
        let script = std::path::absolute(script)
            .map_err(Error::io(format!("resolving {}", script.display())))?;
        let Some(inv) = self.system().dry_run(&script, &self.submit_extra) else {
            return Ok(false);
        };
        command::run_checked(&inv, self.timeout)?;
        Ok(true)
    }

    /// Cancels the jobs. Jobs that already finished are not an error. Ids are checked first;
    /// a local id must be a job our local launcher started (see [`local::live_jobs`]).
    pub fn cancel(&self, ids: &[String]) -> Result<()> {
        self.check_ids(ids)?;
        let ids = &self.system().cancellable(ids)?[..];
        if ids.is_empty() {
            return Ok(());
        }
        if let Some(native) = self
            .native
            .as_ref()
            .filter(|_| self.cancel_extra.is_empty())
        {
            match native.cancel(ids) {
                Ok(()) => return Ok(()),
                Err(slurm_native::NativeError::Unavailable(why)) => {
                    tracing::debug!("cancelling with scancel: {why}");
                }
                Err(e) => return Err(Error::runtime(native_error_text(e))),
            }
        }
        let inv = self.system().cancel(ids, &self.cancel_extra);
        let out = command::run(&inv, self.timeout)?;
        if out.code == Some(0) || self.system().cancel_failure_is_harmless(&out) {
            return Ok(());
        }
        Err(command::failure(&inv, &out).into())
    }

    /// Cancels the jobs named `name`, whose script is `script`. `Ok(false)` when this system
    /// cannot cancel by name.
    pub fn cancel_by_name(&self, name: &str, script: &Path) -> Result<bool> {
        if !is_job_name(name) {
            return Err(Error::invalid(format!(
                "'{}' is not a job name to cancel by (one word, not starting with '-')",
                name.escape_debug()
            )));
        }
        let script = std::path::absolute(script)
            .map_err(Error::io(format!("resolving {}", script.display())))?;
        let Some(inv) = self
            .system()
            .cancel_by_name(name, &script, &self.cancel_extra)
        else {
            return Ok(false);
        };
        let out = command::run(&inv, self.timeout)?;
        if out.code == Some(0) || self.system().cancel_failure_is_harmless(&out) {
            return Ok(true);
        }
        Err(command::failure(&inv, &out).into())
    }

    /// Why pending jobs wait, where the batch system says so (empty elsewhere, or when the
    /// command fails: a reason is a courtesy, never worth an error).
    pub fn pending_reasons(&self, ids: &[String]) -> BTreeMap<String, String> {
        let Some(inv) = (!ids.is_empty() && self.check_ids(ids).is_ok())
            .then(|| self.system().pending_reasons(ids))
            .flatten()
        else {
            return BTreeMap::new();
        };
        if let Some(native) = &self.native {
            if let Ok(reasons) = native.pending_reasons(ids) {
                return reasons.into_iter().collect();
            }
        }
        match command::run(&inv, self.timeout) {
            Ok(out) if out.code == Some(0) => self.system().parse_pending_reasons(&out),
            _ => BTreeMap::new(),
        }
    }

    /// The states of many jobs, asked in one call.
    pub fn states(&self, ids: &[String]) -> Result<BTreeMap<String, JobState>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.check_ids(ids)?;
        if let Some(native) = &self.native {
            match native.states(ids) {
                Ok(states) => return Ok(states.into_iter().collect()),
                Err(slurm_native::NativeError::Unavailable(why)) => {
                    tracing::debug!("job states with squeue: {why}");
                }
                Err(e) => {
                    let why = native_error_text(e);
                    return Err(Error::runtime(format!("cannot read job states: {why}")));
                }
            }
        }
        let inv = self.system().status(ids);
        let out = command::run(&inv, self.timeout)?;
        self.system().parse_states(&out, ids).map_err(|why| {
            let failure = command::failure(&inv, &out);
            Error::runtime(format!("cannot read job states: {why}; {failure}"))
        })
    }
}

fn native_error_text(e: slurm_native::NativeError) -> String {
    use slurm_native::NativeError as E;
    match e {
        E::Unavailable(why) => why.to_string(),
        E::Refused(t) | E::Uncertain(t) | E::Failed(t) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CommandFailure;

    fn failed(status: CommandStatus, stderr: &str) -> CommandFailure {
        CommandFailure {
            command: "sbatch --parsable job.sh".into(),
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// Ids go as arguments to scancel, qdel, kill: an option or a pid like -1 must never get
    /// there. Every id a submit parser reads is accepted by its system.
    /// The library is only ever SLURM's, and `slurm_native = false` keeps the commands
    /// whatever the build (the native path itself: slurm_native's tests, tests/clusters.rs).
    #[test]
    fn only_slurm_queues_that_allow_it_take_the_library() {
        use crate::config::SlurmNative;
        let cfg = JobConfig {
            system: SystemKind::Slurm,
            slurm_native: SlurmNative::False,
            ..JobConfig::default()
        };
        assert_eq!(JobQueue::with_native(&cfg).path(), "commands");
        for system in [SystemKind::Sge, SystemKind::Pbs, SystemKind::Local] {
            let cfg = JobConfig {
                system,
                slurm_native: SlurmNative::True,
                ..JobConfig::default()
            };
            assert_eq!(JobQueue::with_native(&cfg).path(), "commands");
        }
        assert_eq!(JobQueue::new(&cfg).path(), "commands");
    }

    #[test]
    fn job_ids_have_their_systems_shape() {
        let accepted: &[(SystemKind, &[&str])] = &[
            (
                SystemKind::Slurm,
                &["123", "123_4", "123.batch", "123.0", "12+1"],
            ),
            (
                SystemKind::Pbs,
                &["123", "123.server", "123[4].pbs-1.x", "123[]", "9.a_b"],
            ),
            (
                SystemKind::Moab,
                &["Moab.123", "123", "123.server", "123[4]"],
            ),
            (SystemKind::Sge, &["123", "123.4"]),
            (SystemKind::Lsf, &["123", "123[4]"]),
            (SystemKind::Oar, &["123"]),
            (SystemKind::Htcondor, &["123", "123.0"]),
            (SystemKind::Local, &["2", "31337"]),
        ];
        let refused = [
            "", "-1", "--name=x", "-u", "1 2", "123\n", "x123", "123.", ".123", "123_", "123[",
            "123[x]", "123.-s", "1;rm", "$(x)",
        ];
        for (kind, good) in accepted {
            let sys = system(*kind);
            for id in *good {
                assert!(sys.is_job_id(id), "{kind}: {id} refused");
            }
            for id in refused {
                assert!(!sys.is_job_id(id), "{kind}: {id:?} accepted");
            }
        }
        assert!(!system(SystemKind::Local).is_job_id("1"));
        assert!(!system(SystemKind::Sge).is_job_id("123[4]"));
        assert!(!system(SystemKind::Oar).is_job_id("123.0"));

        let q = JobQueue::new(&JobConfig {
            system: SystemKind::Slurm,
            ..JobConfig::default()
        });
        let err = q.cancel(&["123".into(), "--name=x".into()]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("'--name=x' is not a slurm job id"),
            "{err}"
        );
        assert_eq!(q.states(&["-1".into()]).unwrap_err().exit_code(), 2);
        let err = q
            .cancel_by_name("--user=x", Path::new("/x/job.sh"))
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    /// The outcome of a failed submit is decided once, from how the command ended (typed)
    /// and what the system said, read by its description.
    #[test]
    fn only_certain_refusals_mean_no_job() {
        let slurm = system(SystemKind::Slurm);
        let refused = |status: CommandStatus, stderr: &str| {
            let out = Output {
                code: Some(1),
                stdout: String::new(),
                stderr: stderr.into(),
            };
            let may = slurm.submit_may_have_queued(&out);
            matches!(
                SubmitFailure::of_command(failed(status, stderr), may),
                SubmitFailure::Refused(_)
            )
        };
        assert!(refused(
            CommandStatus::Exited(1),
            "sbatch: error: invalid partition specified"
        ));
        assert!(refused(
            CommandStatus::CouldNotStart("No such file or directory".into()),
            ""
        ));
        // The controller may have queued it before the reply was lost.
        assert!(!refused(
            CommandStatus::Exited(1),
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
        ));
        assert!(!refused(CommandStatus::TimedOut { after_secs: 60 }, ""));
        assert!(!refused(CommandStatus::Signalled, ""));
    }

    /// `bsub < script` with a script that cannot be opened never started: no job, certainly
    /// (it was "maybe a job", and so kept `submitting` in a cluster's ledger).
    #[test]
    fn a_submit_whose_input_cannot_be_opened_queued_nothing() {
        let q = JobQueue::new(&JobConfig {
            system: SystemKind::Lsf,
            ..JobConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        match q.submit(&dir.path().join("no-such-job.sh")) {
            Err(SubmitFailure::Refused(Error::Command(f))) => {
                assert!(matches!(f.status, CommandStatus::CouldNotStart(_)), "{f}");
                assert!(f.to_string().contains("no-such-job.sh"), "{f}");
            }
            other => panic!("{other:?}"),
        }
        // A successful command that printed no id: a job may exist.
        let local = JobQueue::new(&JobConfig::default());
        let script = dir.path().join("job.sh");
        std::fs::write(&script, "true\n").unwrap();
        let mut inv = local.system().submit(&script, &[]);
        inv.argv = vec!["true".into()];
        let out = command::run(&inv, Duration::from_secs(5)).unwrap();
        assert_eq!(local.system().parse_job_id(&out), None);
    }

    /// Every system's spellings of one job compare equal by its canonical id, and other jobs'
    /// do not: a worker reporting `PBS_JOBID=1234.torque01` belongs to Moab's `Moab.1234`.
    #[test]
    fn canonical_ids_join_the_spellings_of_one_job() {
        let same: &[(SystemKind, &[&str])] = &[
            (SystemKind::Slurm, &["123", "123.batch", "123.0"]),
            (SystemKind::Pbs, &["123.srv", "123.srv.example.org", "123"]),
            (SystemKind::Moab, &["Moab.123", "123.torque01", "123"]),
            (SystemKind::Htcondor, &["123", "123.0"]),
            (SystemKind::Sge, &["123"]),
            (SystemKind::Lsf, &["123"]),
            (SystemKind::Oar, &["123"]),
            (SystemKind::Local, &["123"]),
        ];
        for (kind, spellings) in same {
            let sys = system(*kind);
            for id in *spellings {
                assert_eq!(sys.canonical_id(id), "123", "{kind}: {id}");
            }
            assert_ne!(sys.canonical_id("1234"), sys.canonical_id(spellings[0]));
        }
        // Array elements are jobs of their own, never another spelling of their array.
        assert_eq!(system(SystemKind::Lsf).canonical_id("123[4]"), "123[4]");
        assert_eq!(system(SystemKind::Sge).canonical_id("123.4"), "123.4");
        assert_eq!(system(SystemKind::Slurm).canonical_id("123_4"), "123_4");
        // The rule the daemon used for every system took Moab's own ids for job "Moab".
        assert_ne!(id_number("Moab.123"), id_number("123.torque01"));
    }

    /// Each system's formats and template, asked of its description (script.rs and
    /// mpi_script.rs matched on the system for them).
    #[test]
    fn each_system_formats_memory_and_walltime_its_own_way() {
        let site = Site {
            lsf_unit: LsfUnit::MB,
        };
        let mem: ByteSize = "16GiB".parse().unwrap();
        let wall = Walltime(36 * 3600 + 5 * 60 + 7);
        let table: &[(SystemKind, &str, &str, &str)] = &[
            (SystemKind::Slurm, "slurm.sh.j2", "16G", "1-12:05:07"),
            (SystemKind::Pbs, "pbs.sh.j2", "16GB", "36:05:07"),
            (SystemKind::Moab, "moab.sh.j2", "16GB", "36:05:07"),
            (SystemKind::Sge, "sge.sh.j2", "16GiB", "36:05:07"),
            (SystemKind::Lsf, "lsf.sh.j2", "17180", "36:06"),
            (SystemKind::Oar, "oar.sh.j2", "16GiB", "36:05:07"),
            (SystemKind::Htcondor, "htcondor.sub.j2", "16384", "36:05:07"),
            (SystemKind::Local, "local.sh.j2", "16GiB", "36:05:07"),
        ];
        for (kind, template, memory, walltime) in table {
            let sys = system(*kind);
            assert_eq!(sys.kind(), *kind);
            let (name, text) = sys.template();
            assert_eq!(name, *template, "{kind}");
            assert!(text.contains("{{ worker_command }}") || text.contains("htcondor_arguments"));
            assert_eq!(sys.format_memory(mem, &site), *memory, "{kind}");
            assert_eq!(sys.format_walltime(wall), *walltime, "{kind}");
        }
    }

    /// The MPI runner's launch id and scheduler-file name come from the variable each system
    /// sets on every rank; systems without an MPI launcher have none.
    #[test]
    fn launch_variables_belong_to_the_systems_with_an_mpi_launcher() {
        let cfg = JobConfig::default();
        let site = Site::discover(&cfg);
        for kind in SystemKind::ALL {
            let sys = system(kind);
            let mpi = sys.mpi_job(&cfg, 4, &site).is_some();
            let var = sys.launch_job_id_variable();
            match kind {
                SystemKind::Htcondor | SystemKind::Oar => assert!(!mpi && var.is_none()),
                // A local launch is named by its scheduler file alone.
                SystemKind::Local => assert!(mpi && var.is_none()),
                _ => {
                    assert!(mpi, "{kind}");
                    assert!(sys.job_id_variables().contains(&var.unwrap()), "{kind}");
                }
            }
        }
    }
}
