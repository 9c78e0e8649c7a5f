//! The option set and its layered loading.
//!
//! Layers, later wins: built-in defaults < the user file (top-level keys, then the table of the
//! chosen system such as `[slurm]`) < environment `RDASK_<KEY>` < command-line flags. Each
//! value remembers where it came from, so `config show` can answer "why is my queue `debug`?".
//!
//! Values are checked where they enter, so an error can name its source ("RDASK_MEMORY",
//! "/home/u/.config/rdask/jobqueue.toml [slurm]", "--memory") and what is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::error::{Error, Result};
use crate::units::{self, ByteSize, LsfUnit, SizeAsWritten, Walltime};

/// `config import`: dask-jobqueue's jobqueue.yaml into this file format.
pub mod import;

/// The accepted range of every number a user gives: job options here (checked where a value
/// enters, whatever its source), and the same constants for `worker` and `mpi` flags. Values
/// outside are typos or overflows, and refusing them keeps the arithmetic on them (per-process
/// memory, lifetimes, deadlines) far from any edge. docs/configuration.md#bounds lists them.
pub mod limits {
    /// Cores of one job (`cores`, `job_cpu`).
    pub const MAX_CORES: u32 = 4096;
    /// Worker processes of one job (`processes`, `worker --nworkers`).
    pub const MAX_PROCESSES: u32 = 1024;
    /// Threads of one worker process (`worker --nthreads`, `mpi --nthreads`).
    pub const MAX_THREADS: u32 = 1024;
    /// The least memory one worker process may be given: below it a worker spends its limit
    /// on its own runtime and pauses or restarts at once.
    pub const MIN_WORKER_MEMORY: u64 = 64 << 20;
    /// The most memory one job (or one worker) may ask for: 64 TiB.
    pub const MAX_MEMORY: u64 = 64 << 40;
    /// HTCondor's disk request: 1 MiB to 1 PiB.
    pub const MIN_DISK: u64 = 1 << 20;
    pub const MAX_DISK: u64 = 1 << 50;
    /// Death timeouts, lifetime margins and staggers, waits: at most a day.
    pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;
    /// A batch-system command (sbatch, qstat, ...) may run at most an hour.
    pub const MAX_COMMAND_TIMEOUT_SECONDS: u64 = 3_600;
    /// A configuration file or a job-script template is at most 1 MiB.
    pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

    /// A worker's memory limit: 0 (none), or [`MIN_WORKER_MEMORY`] to [`MAX_MEMORY`].
    pub fn check_worker_memory(bytes: u64) -> Result<(), String> {
        use crate::units::ByteSize;
        if bytes == 0 || (MIN_WORKER_MEMORY..=MAX_MEMORY).contains(&bytes) {
            return Ok(());
        }
        Err(format!(
            "{} is out of range: use 0 (no limit) or {} to {}",
            ByteSize(bytes).human(),
            ByteSize(MIN_WORKER_MEMORY).human(),
            ByteSize(MAX_MEMORY).human()
        ))
    }

    /// Threads of one worker process: 1 to [`MAX_THREADS`].
    pub fn check_threads(n: u64) -> Result<(), String> {
        if (1..=u64::from(MAX_THREADS)).contains(&n) {
            Ok(())
        } else {
            Err(format!("{n} is out of range: use 1 to {MAX_THREADS}"))
        }
    }
}

/// The batch systems we write job scripts for, plus `local` (processes on this machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    Slurm,
    Pbs,
    Sge,
    Lsf,
    Oar,
    Htcondor,
    Moab,
    Local,
}

impl SystemKind {
    pub const ALL: [SystemKind; 8] = [
        SystemKind::Slurm,
        SystemKind::Pbs,
        SystemKind::Sge,
        SystemKind::Lsf,
        SystemKind::Oar,
        SystemKind::Htcondor,
        SystemKind::Moab,
        SystemKind::Local,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Slurm => "slurm",
            SystemKind::Pbs => "pbs",
            SystemKind::Sge => "sge",
            SystemKind::Lsf => "lsf",
            SystemKind::Oar => "oar",
            SystemKind::Htcondor => "htcondor",
            SystemKind::Moab => "moab",
            SystemKind::Local => "local",
        }
    }

    fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for SystemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SystemKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown batch system '{s}': use one of {}",
                    SystemKind::names()
                )
            })
    }
}

/// The merged, checked configuration of the worker jobs one cluster submits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    pub system: SystemKind,
    pub cores: u32,
    pub memory: ByteSize,
    pub processes: u32,
    pub queue: Option<String>,
    pub account: Option<String>,
    pub walltime: Walltime,
    pub job_cpu: Option<u32>,
    pub job_mem: Option<SizeAsWritten>,
    pub resource_spec: Option<String>,
    pub job_extra_directive: Vec<String>,
    pub job_directives_skip: Vec<String>,
    pub prologue: Vec<String>,
    pub epilogue: Vec<String>,
    pub log_directory: Option<PathBuf>,
    pub local_directory: Option<String>,
    pub interface: Option<String>,
    /// The Python interpreter the workers run Python tasks with (the worker's `--python`).
    pub python: Option<String>,
    pub job_name: String,
    pub shebang: String,
    pub template: Option<PathBuf>,
    pub worker_extra_arg: Vec<String>,
    pub death_timeout: u64,
    pub lifetime_margin: u64,
    pub lifetime_stagger: u64,
    pub submit_command_extra: Vec<String>,
    pub cancel_command_extra: Vec<String>,
    pub lsf_units: Option<LsfUnit>,
    pub disk: Option<ByteSize>,
    pub memory_per_core_property_name: Option<String>,
    pub worker_command: Option<String>,
    pub command_timeout: u64,
    /// A scale-up of several jobs is one job array where the system has them (false: one
    /// submission per job, the old path).
    pub job_arrays: bool,
    pub slurm_native: SlurmNative,
}

/// Whether a cluster's daemon talks to SLURM through libslurm rather than sbatch, squeue and
/// scancel (only in a binary built with the `slurm-native` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlurmNative {
    /// The library when this binary has it and its checks pass; the commands otherwise.
    #[default]
    Auto,
    /// The library, with a warning when it cannot be used (then the commands).
    True,
    /// The commands.
    False,
}

impl SlurmNative {
    fn parse(text: &str) -> std::result::Result<SlurmNative, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(SlurmNative::Auto),
            "true" | "yes" | "on" | "1" => Ok(SlurmNative::True),
            "false" | "no" | "off" | "0" => Ok(SlurmNative::False),
            _ => Err(format!("'{text}' is not auto, true or false")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SlurmNative::Auto => "auto",
            SlurmNative::True => "true",
            SlurmNative::False => "false",
        }
    }
}

/// The one memory rule: the `--memory-limit` of each of `processes` worker processes sharing
/// `memory`, the memory a batch job (or an MPI rank) is granted, is an equal share of all of
/// it, as dask-jobqueue gives. No headroom is held back: a worker holds itself under its
/// limit (it spills at 60%, pauses at 80% and restarts at 95%), so the grant is never
/// reached by the worker's own data. Worker job scripts and the MPI runner's script
/// (`job-script --mpi`, one worker per rank) both take their limit from here.
pub fn worker_memory_limit(memory: ByteSize, processes: u32) -> ByteSize {
    ByteSize(memory.0 / u64::from(processes.max(1)))
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            system: SystemKind::Local,
            cores: 1,
            memory: ByteSize(4 << 30),
            processes: 1,
            queue: None,
            account: None,
            walltime: Walltime(30 * 60),
            job_cpu: None,
            job_mem: None,
            resource_spec: None,
            job_extra_directive: Vec::new(),
            job_directives_skip: Vec::new(),
            prologue: Vec::new(),
            epilogue: Vec::new(),
            log_directory: None,
            local_directory: None,
            interface: None,
            python: None,
            job_name: "rdask-worker".into(),
            shebang: "#!/usr/bin/env bash".into(),
            template: None,
            worker_extra_arg: Vec::new(),
            death_timeout: 60,
            lifetime_margin: 120,
            lifetime_stagger: 60,
            submit_command_extra: Vec::new(),
            cancel_command_extra: Vec::new(),
            lsf_units: None,
            disk: None,
            memory_per_core_property_name: None,
            worker_command: None,
            command_timeout: 60,
            job_arrays: true,
            slurm_native: SlurmNative::Auto,
        }
    }
}

impl JobConfig {
    /// Worker threads in each of the job's processes.
    pub fn threads_per_process(&self) -> u32 {
        (self.cores / self.processes.max(1)).max(1)
    }

    /// The memory a job asks for in bytes: `job_mem` when given, else `memory`. For systems
    /// that want a bare number; the others take `job_mem` as written
    /// ([`crate::jobqueue::BatchSystem::memory_request`]).
    pub fn requested_memory(&self) -> ByteSize {
        self.job_mem.as_ref().map_or(self.memory, |m| m.bytes)
    }

    /// The memory limit of each worker process of a worker job (see [`worker_memory_limit`]).
    pub fn memory_per_process(&self) -> ByteSize {
        worker_memory_limit(self.memory, self.processes)
    }

    /// The worker's `--lifetime` and `--lifetime-stagger`, in seconds, or None when workers
    /// should run until the batch system stops them (`lifetime_margin = 0`).
    ///
    /// Why: a job killed at its walltime takes its workers' results with it, and its running
    /// tasks die mid-way (dask-jobqueue #122, #416). Workers that retire first hand their
    /// results to the others. The margin is capped at a quarter of the walltime, so short test
    /// jobs still do most of their work, and the stagger at half the margin, so the last
    /// worker to leave still has half the margin to copy its results.
    pub fn worker_lifetime(&self) -> Option<(u64, u64)> {
        let walltime = self.walltime.seconds();
        if self.lifetime_margin == 0 || walltime == 0 {
            return None;
        }
        let margin = self.lifetime_margin.min(walltime / 4).max(1);
        let stagger = self.lifetime_stagger.min(margin / 2);
        Some((walltime.saturating_sub(margin), stagger))
    }

    /// Checks that need several keys at once.
    fn check_consistency(&self) -> Result<()> {
        if self.processes > self.cores {
            return Err(Error::invalid(format!(
                "--processes {} with --cores {}: every worker process needs at least one core, \
                 so processes must not exceed cores (raise --cores or lower --processes)",
                self.processes, self.cores
            )));
        }
        let per_process = self.memory_per_process();
        if per_process.0 < limits::MIN_WORKER_MEMORY {
            return Err(Error::invalid(format!(
                "--memory {} with --processes {} gives each worker process {}; a worker needs at least {} (raise --memory or lower --processes)",
                self.memory.human(),
                self.processes,
                per_process.human(),
                ByteSize(limits::MIN_WORKER_MEMORY).human()
            )));
        }
        Ok(())
    }
}

/// The kind of value a key holds, which decides how it is checked and read from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number of at least 1.
    Count,
    /// Seconds: a number, or a duration such as "90s".
    Seconds,
    Size,
    /// A size kept as written (a request passed to the batch system), checked as a size.
    SizeAsWritten,
    Walltime,
    System,
    LsfUnit,
    /// auto, true or false (also yes/no, on/off, a TOML boolean).
    Switch,
    Path,
    /// A list of strings (repeatable flag; a TOML array; newline-separated in the environment).
    Lines,
    /// true or false (also yes/no, 1/0 as text, from the environment).
    Bool,
}

/// One configuration key: its name (TOML key; the flag is the same in kebab-case; the
/// environment variable is RDASK_ + upper case), its kind and what it means.
#[derive(Debug)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

macro_rules! keys {
    ($( $name:literal : $kind:ident => $help:literal ),* $(,)?) => {
        pub const KEYS: &[KeySpec] = &[ $( KeySpec { name: $name, kind: Kind::$kind, help: $help } ),* ];
    };
}

keys! {
    "system": System => "batch system: slurm, pbs, sge, lsf, oar, htcondor, moab, local",
    "cores": Count => "cores per job, shared by its worker processes",
    "memory": Size => "memory per job (28GB decimal, 2GiB binary)",
    "processes": Count => "worker processes per job; each gets cores/processes threads",
    "queue": Text => "queue or partition",
    "account": Text => "account or project to charge (-A, -P or --project)",
    "walltime": Walltime => "wall-clock limit of each job",
    "job_cpu": Count => "cores to request when it differs from cores",
    "job_mem": SizeAsWritten => "memory to request when it differs from memory (passed as written: 100G)",
    "resource_spec": Text => "raw resource request (PBS -l, SGE -l, OAR -l)",
    "job_extra_directive": Lines => "extra header directives, never skipped",
    "job_directives_skip": Lines => "drop generated directives containing these strings",
    "prologue": Lines => "shell lines run before the worker starts",
    "epilogue": Lines => "shell lines run after the worker ends",
    "log_directory": Path => "directory for the jobs' stdout/stderr",
    "local_directory": Text => "worker scratch directory (spill files)",
    "interface": Text => "network interface workers listen and connect on",
    "python": Text => "Python interpreter of the workers' Python tasks: an absolute path or a program name on the nodes' PATH",
    "job_name": Text => "batch job name",
    "shebang": Text => "first line of the job script",
    "template": Path => "a job-script template of your own (minijinja)",
    "worker_extra_arg": Lines => "extra arguments for the worker command",
    "death_timeout": Seconds => "seconds a worker waits for an unreachable scheduler",
    "lifetime_margin": Seconds => "workers retire this long before the walltime (at most a quarter of it; 0: never)",
    "lifetime_stagger": Seconds => "workers of a job retire up to this much apart (at most half the margin)",
    "submit_command_extra": Lines => "extra arguments for the submit command",
    "cancel_command_extra": Lines => "extra arguments for the cancel command",
    "lsf_units": LsfUnit => "LSF memory unit (LSF_UNIT_FOR_LIMITS); read from lsf.conf when unset",
    "disk": Size => "HTCondor disk request",
    "memory_per_core_property_name": Text => "OAR resource property for memory per core (site-specific; none by default)",
    "worker_command": Text => "command that starts a worker (default: this binary's `worker`)",
    "command_timeout": Seconds => "timeout for each batch-system command (sbatch, qstat, ...)",
    "job_arrays": Bool => "a scale-up of several jobs is one job array (false: one submission per job)",
    "slurm_native": Switch => "SLURM through libslurm instead of sbatch/squeue/scancel: auto, true, false (needs the slurm-native build)",
}

/// Older names still accepted, mapped to the key they mean.
const ALIASES: &[(&str, &str)] = &[("project", "account")];

pub fn key(name: &str) -> Option<&'static KeySpec> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| *real);
    KEYS.iter().find(|k| k.name == name)
}

fn key_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    Detected(String),
    File {
        path: PathBuf,
        table: Option<SystemKind>,
    },
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Detected(why) => write!(f, "detected: {why}"),
            Source::File { path, table: None } => write!(f, "file {}", path.display()),
            Source::File {
                path,
                table: Some(t),
            } => write!(f, "file {} [{t}]", path.display()),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Values from one source, already checked.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub values: Vec<(&'static str, Value, Source)>,
}

impl Layer {
    /// Adds a value from the command line (already typed by clap).
    pub fn flag(&mut self, name: &str, value: Value) {
        let spec = key(name).unwrap_or_else(|| panic!("flag for unknown config key {name}"));
        let flag = format!("--{}", spec.name.replace('_', "-"));
        self.values.push((spec.name, value, Source::Flag(flag)));
    }

    fn get(&self, name: &str) -> Option<&(&'static str, Value, Source)> {
        self.values.iter().rev().find(|(k, _, _)| *k == name)
    }
}

/// The range a numeric key accepts, inclusive (seconds, bytes or a count), see [`limits`].
fn range_of(name: &str) -> Option<(u64, u64)> {
    use limits::*;
    Some(match name {
        "cores" | "job_cpu" => (1, u64::from(MAX_CORES)),
        "processes" => (1, u64::from(MAX_PROCESSES)),
        "memory" | "job_mem" => (MIN_WORKER_MEMORY, MAX_MEMORY),
        "disk" => (MIN_DISK, MAX_DISK),
        "death_timeout" => (1, MAX_TIMEOUT_SECONDS),
        "lifetime_margin" | "lifetime_stagger" => (0, MAX_TIMEOUT_SECONDS),
        "command_timeout" => (1, MAX_COMMAND_TIMEOUT_SECONDS),
        _ => return None,
    })
}

/// Refuses `n` outside the key's range, saying the range in the key's own unit.
fn check_range(spec: &KeySpec, n: u64) -> std::result::Result<(), String> {
    let Some((lo, hi)) = range_of(spec.name) else {
        return Ok(());
    };
    if (lo..=hi).contains(&n) {
        return Ok(());
    }
    let show = |v: u64| match spec.kind {
        Kind::Size | Kind::SizeAsWritten => ByteSize(v).human(),
        Kind::Seconds => format!("{v} s"),
        _ => v.to_string(),
    };
    Err(format!(
        "{} is out of range: use {} to {}",
        show(n),
        show(lo),
        show(hi)
    ))
}

/// Refuses text with a control character (a newline above all). Such values end up on a line
/// of the job script — a directive, the worker command — where a newline would start a new
/// shell line that the batch system runs. `allow_tab`: prologue and epilogue lines are the
/// user's own shell, where a tab is only whitespace.
pub fn check_one_line(text: &str, allow_tab: bool) -> std::result::Result<(), String> {
    let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !(allow_tab && c == '\t'))
    else {
        return Ok(());
    };
    let what = match c {
        '\n' => "a newline".to_string(),
        '\r' => "a carriage return".to_string(),
        '\t' => "a tab".to_string(),
        '\0' => "a NUL byte".to_string(),
        c => format!("the control character U+{:04X}", u32::from(c)),
    };
    Err(format!(
        "contains {what}: values written into a job script must be a single line without \
         control characters (give several lines as separate values)"
    ))
}

/// Checks that apply to one key only.
fn check_key_text(spec: &KeySpec, text: &str) -> std::result::Result<(), String> {
    check_one_line(text, matches!(spec.name, "prologue" | "epilogue"))?;
    match spec.name {
        "shebang" if !text.starts_with("#!") => Err(format!(
            "'{text}' is not a shebang line: it must start with #! (e.g. #!/usr/bin/env bash)"
        )),
        // The name is also the prefix of the script's file name: no '/' to climb out of it.
        "job_name"
            if text.is_empty()
                || text.starts_with('-')
                || text.contains(|c: char| c.is_whitespace() || c == '/') =>
        {
            Err(format!(
                "'{text}' is not a job name: give a non-empty name without spaces or '/' \
                 that does not start with '-'"
            ))
        }
        "python" => check_python(text),
        _ => Ok(()),
    }
}

/// The interpreter runs on the compute nodes, in whatever directory the job starts in: a
/// relative path such as `venv/bin/python` would name a different file there (or none), so
/// only an absolute path or a bare program name (looked up on the node's PATH) is taken.
fn check_python(text: &str) -> std::result::Result<(), String> {
    let fix = "give an absolute path (/opt/venv/bin/python) or a program name on the \
               nodes' PATH (python3)";
    if text.trim().is_empty() {
        return Err(format!("is empty: {fix}"));
    }
    if text.starts_with('-') {
        return Err(format!("'{text}' starts with '-', like an option: {fix}"));
    }
    // Written into the worker command quoted, so the shell expands neither.
    if text.starts_with(['$', '~']) {
        return Err(format!(
            "'{text}' starts with '{}', which is not expanded in the worker command: {fix}",
            &text[..1]
        ));
    }
    if text.contains('/') && !text.starts_with('/') {
        return Err(format!(
            "'{text}' is a relative path, which would be resolved in the job's directory \
             on the compute node: {fix}"
        ));
    }
    if text.ends_with('/') {
        return Err(format!(
            "'{text}' is a directory, not an interpreter: {fix}"
        ));
    }
    Ok(())
}

/// Checks a value against its key's kind and normalises it (a single string for a list key
/// becomes a one-element list; a size given as a number stays bytes).
fn check(spec: &KeySpec, value: Value) -> std::result::Result<Value, String> {
    let text = |v: &Value| -> std::result::Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Integer(i) => Ok(i.to_string()),
            Value::Float(x) => Ok(x.to_string()),
            other => Err(format!("expected a string, got {}", other.type_str())),
        }
    };
    match spec.kind {
        Kind::Text | Kind::Path => match value {
            Value::String(ref s) => {
                check_key_text(spec, s)?;
                Ok(value)
            }
            other => Err(format!("expected a string, got {}", other.type_str())),
        },
        Kind::Count => {
            let n = match &value {
                Value::Integer(i) => *i,
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("expected a whole number, got '{s}'"))?,
                other => return Err(format!("expected a whole number, got {}", other.type_str())),
            };
            if n < 1 {
                return Err(format!("expected a whole number of at least 1, got {n}"));
            }
            check_range(spec, n as u64)?;
            Ok(Value::Integer(n))
        }
        Kind::Seconds => {
            let seconds = match &value {
                Value::Integer(i) if *i >= 0 => *i as u64,
                Value::Integer(i) => return Err(format!("expected seconds >= 0, got {i}")),
                Value::String(s) => units::parse_seconds(s).map_err(|e| e.0)?,
                other => return Err(format!("expected seconds, got {}", other.type_str())),
            };
            check_range(spec, seconds)?;
            Ok(Value::Integer(seconds as i64))
        }
        Kind::Size => {
            let size: ByteSize = match &value {
                Value::Integer(i) if *i >= 0 => ByteSize(*i as u64),
                _ => text(&value)?.parse().map_err(|e: units::UnitError| e.0)?,
            };
            check_range(spec, size.0)?;
            Ok(Value::String(size.exact()))
        }
        Kind::SizeAsWritten => {
            let t = text(&value)?;
            let size: SizeAsWritten = t.parse().map_err(|e: units::UnitError| e.0)?;
            check_one_line(&size.text, false)?;
            check_range(spec, size.bytes.0)?;
            Ok(Value::String(size.text))
        }
        Kind::Walltime => {
            // Checked here, but kept as written: "00:30" means HH:MM to LSF (see `load`).
            let t = text(&value)?;
            check_walltime_text(&t)?;
            Ok(Value::String(t))
        }
        Kind::System => {
            let s: SystemKind = text(&value)?.parse()?;
            Ok(Value::String(s.name().into()))
        }
        Kind::Switch => {
            let choice = match &value {
                Value::Boolean(true) => SlurmNative::True,
                Value::Boolean(false) => SlurmNative::False,
                _ => SlurmNative::parse(&text(&value)?)?,
            };
            Ok(Value::String(choice.name().into()))
        }
        Kind::LsfUnit => {
            let u: LsfUnit = text(&value)?.parse().map_err(|e: units::UnitError| e.0)?;
            Ok(Value::String(format!("{u:?}")))
        }
        Kind::Bool => match &value {
            Value::Boolean(_) => Ok(value),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Boolean(true)),
                "false" | "no" | "0" => Ok(Value::Boolean(false)),
                _ => Err(format!("expected true or false, got '{s}'")),
            },
            other => Err(format!("expected true or false, got {}", other.type_str())),
        },
        Kind::Lines => match value {
            Value::String(ref s) => {
                check_key_text(spec, s)?;
                Ok(Value::Array(vec![value]))
            }
            Value::Array(items) => {
                for item in &items {
                    let Some(s) = item.as_str() else {
                        return Err(format!(
                            "expected a list of strings, found {} in it",
                            item.type_str()
                        ));
                    };
                    check_key_text(spec, s)?;
                }
                Ok(Value::Array(items))
            }
            other => Err(format!(
                "expected a list of strings, got {}",
                other.type_str()
            )),
        },
    }
}

/// A walltime is valid if it reads as one in general or as LSF's H:M; which reading applies
/// is decided once the system is known (see `load`).
pub fn check_walltime_text(t: &str) -> std::result::Result<(), String> {
    match (t.parse::<Walltime>(), Walltime::parse_lsf_hhmm(t)) {
        (Ok(_), _) | (_, Some(Ok(_))) => Ok(()),
        (Err(e), _) => Err(e.0),
    }
}

/// Reads a value of the given key from the environment's text.
fn from_env_text(spec: &KeySpec, text: &str) -> Value {
    match spec.kind {
        Kind::Lines => Value::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Value::String(l.to_string()))
                .collect(),
        ),
        _ => Value::String(text.to_string()),
    }
}

/// The configuration file: top-level keys and one table per system.
struct ConfigFile {
    top: Layer,
    tables: BTreeMap<SystemKind, Layer>,
}

/// Reads a small text file the user names (a config file, a template, a secret): only a
/// regular file (not /dev/zero, a FIFO or a directory), of at most `cap` bytes, so a wrong
/// path is an error at once instead of a read without end. `what` names the file's role.
pub fn read_small_file(path: &Path, what: &str, cap: u64) -> Result<String> {
    use std::io::Read;
    let invalid =
        |why: String| Error::invalid(format!("cannot read {what} {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let too_big = || invalid(format!("larger than {} bytes, the limit for a {what}", cap));
    if meta.len() > cap {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| invalid(e.to_string()))?;
    // Bounded again while reading: the file may grow between the two looks.
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let text = read_small_file(path, "config file", limits::MAX_CONFIG_FILE_BYTES)?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Error::invalid(format!(
            "config file {} is not valid TOML: {e}",
            path.display()
        ))
    })?;
    let mut file = ConfigFile {
        top: Layer::default(),
        tables: BTreeMap::new(),
    };
    for (name, value) in doc {
        if let Ok(system) = name.parse::<SystemKind>() {
            let Value::Table(table) = value else {
                return Err(Error::invalid(format!(
                    "config file {}: `{name}` must be a table ([{name}]) of options for that system",
                    path.display()
                )));
            };
            let source = Source::File {
                path: path.to_path_buf(),
                table: Some(system),
            };
            let layer = file.tables.entry(system).or_default();
            for (k, v) in table {
                if k == "system" {
                    return Err(Error::invalid(format!(
                        "config file {} [{name}]: `system` cannot be set inside a system's table; \
                         set it at the top level",
                        path.display()
                    )));
                }
                let spec = file_key(path, Some(&name), &k)?;
                layer.values.push((
                    spec.name,
                    checked_file_value(&format!("{} [{name}]", path.display()), &k, spec, v)?,
                    source.clone(),
                ));
            }
        } else {
            let spec = file_key(path, None, &name)?;
            let source = Source::File {
                path: path.to_path_buf(),
                table: None,
            };
            file.top.values.push((
                spec.name,
                checked_file_value(&path.display().to_string(), &name, spec, value)?,
                source,
            ));
        }
    }
    Ok(file)
}

fn file_key(path: &Path, table: Option<&str>, name: &str) -> Result<&'static KeySpec> {
    key(name).ok_or_else(|| {
        let place = table.map(|t| format!(" [{t}]")).unwrap_or_default();
        Error::invalid(format!(
            "config file {}{place}: unknown key `{name}`. Known keys: {}; tables: {}",
            path.display(),
            key_names(),
            SystemKind::names()
        ))
    })
}

fn checked_file_value(place: &str, name: &str, spec: &KeySpec, v: Value) -> Result<Value> {
    check(spec, v).map_err(|why| {
        Error::invalid(format!(
            "config file {place}: key `{name}`: {why} ({})",
            spec.help
        ))
    })
}

/// Flags arrive typed by clap, but the rules for what a value may hold (one line, a range)
/// are the same whatever its source: checked here, so the error names the flag.
fn checked_flags(flags: &Layer) -> Result<Layer> {
    let mut checked = Layer::default();
    for (name, value, source) in &flags.values {
        let spec = key(name).expect("flags are keys");
        let value = check(spec, value.clone())
            .map_err(|why| Error::invalid(format!("{source}: {why} ({})", spec.help)))?;
        checked.values.push((spec.name, value, source.clone()));
    }
    Ok(checked)
}

/// Where the user file is looked for, in order: `--config`, `$RDASK_CONFIG`,
/// `$XDG_CONFIG_HOME/rdask/jobqueue.toml`, `~/.config/rdask/jobqueue.toml`. An explicitly named
/// file must exist; the default locations are optional.
fn find_config_file(explicit: Option<&Path>, env: &Env) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = env.get("RDASK_CONFIG") {
        if !p.is_empty() {
            return Ok(Some(PathBuf::from(p)));
        }
    }
    Ok(default_config_path(env).filter(|p| p.is_file()))
}

/// The user file's default place, `$XDG_CONFIG_HOME/rdask/jobqueue.toml` or
/// `~/.config/rdask/jobqueue.toml`, whether it exists or not (`config import` writes there).
pub fn default_config_path(env: &Env) -> Option<PathBuf> {
    let base = match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) => Path::new(h).join(".config"),
        _ => return None,
    };
    Some(base.join("rdask").join("jobqueue.toml"))
}

/// The process environment, captured so that loading is a pure function in tests.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub vars: BTreeMap<String, String>,
    /// Directories searched for batch-system commands when detecting the system.
    pub path: Vec<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let path = vars
            .get("PATH")
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        Env { vars, path }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn has_command(&self, cmd: &str) -> bool {
        self.path.iter().any(|dir| dir.join(cmd).is_file())
    }

    fn layer(&self) -> Result<Layer> {
        let mut layer = Layer::default();
        let aliases = ALIASES
            .iter()
            .map(|(alias, real)| (*alias, key(real).expect("alias of a key")));
        for (name, spec) in KEYS.iter().map(|k| (k.name, k)).chain(aliases) {
            let var = format!("RDASK_{}", name.to_ascii_uppercase());
            // An empty variable is unset, as in a shell's `RDASK_QUEUE= cmd`.
            if let Some(text) = self.get(&var).filter(|t| !t.trim().is_empty()) {
                let value = check(spec, from_env_text(spec, text)).map_err(|why| {
                    Error::invalid(format!(
                        "environment {var}='{}': {why} ({})",
                        text.escape_debug(),
                        spec.help
                    ))
                })?;
                layer.values.push((spec.name, value, Source::Env(var)));
            }
        }
        Ok(layer)
    }
}

/// Which system the commands on PATH point to. SGE and PBS both have `qsub`, so their own
/// tools (`qconf`, `pbsnodes`) decide; Moab's `msub` wins over the PBS below it.
pub fn detect_system(env: &Env) -> (SystemKind, String) {
    const PROBES: &[(&str, SystemKind)] = &[
        ("sbatch", SystemKind::Slurm),
        ("msub", SystemKind::Moab),
        ("qconf", SystemKind::Sge),
        ("pbsnodes", SystemKind::Pbs),
        ("bsub", SystemKind::Lsf),
        ("oarsub", SystemKind::Oar),
        ("condor_submit", SystemKind::Htcondor),
        ("qsub", SystemKind::Pbs),
    ];
    for (cmd, kind) in PROBES {
        if env.has_command(cmd) {
            return (*kind, format!("`{cmd}` found on PATH"));
        }
    }
    (SystemKind::Local, "no batch system command on PATH".into())
}

/// The merged configuration and where each value came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: JobConfig,
    /// Key -> (normalised value, source), for every key that has a value.
    pub values: BTreeMap<&'static str, (Value, Source)>,
    pub file: Option<PathBuf>,
}

/// Loads the configuration: defaults < file < file's system table < environment < flags.
pub fn load(explicit_file: Option<&Path>, flags: &Layer, env: &Env) -> Result<Loaded> {
    let flags = &checked_flags(flags)?;
    let file_path = find_config_file(explicit_file, env)?;
    let file = file_path.as_deref().map(read_config_file).transpose()?;
    let env_layer = env.layer()?;

    // The system decides which table of the file applies, so it is resolved first.
    let (system, system_source) = [flags, &env_layer]
        .into_iter()
        .chain(file.as_ref().map(|f| &f.top))
        .find_map(|layer| layer.get("system"))
        .map(|(_, v, src)| {
            let kind: SystemKind = v.as_str().unwrap_or_default().parse().expect("checked");
            (kind, src.clone())
        })
        .unwrap_or_else(|| {
            let (kind, why) = detect_system(env);
            (kind, Source::Detected(why))
        });

    let mut values: BTreeMap<&'static str, (Value, Source)> = BTreeMap::new();
    let defaults = Value::try_from(JobConfig::default()).expect("defaults serialise");
    for (k, v) in defaults.as_table().expect("a table") {
        let spec = key(k).expect("every field is a key");
        values.insert(spec.name, (v.clone(), Source::Default));
    }
    let mut layers: Vec<&Layer> = Vec::new();
    if let Some(f) = &file {
        layers.push(&f.top);
        if let Some(t) = f.tables.get(&system) {
            layers.push(t);
        }
    }
    layers.push(&env_layer);
    layers.push(flags);
    for layer in layers {
        for (k, v, src) in &layer.values {
            values.insert(k, (v.clone(), src.clone()));
        }
    }
    values.insert(
        "system",
        (Value::String(system.name().into()), system_source),
    );

    // LSF writes walltimes as HH:MM, and dask-jobqueue's LSF users write "00:30" meaning half
    // an hour: for LSF, two fields are hours and minutes; elsewhere minutes and seconds.
    let (walltime_value, walltime_source) = &values["walltime"];
    let walltime_text = walltime_value.as_str().unwrap_or_default();
    let walltime = match Walltime::parse_lsf_hhmm(walltime_text) {
        Some(hhmm) if system == SystemKind::Lsf => hhmm,
        _ => walltime_text.parse::<Walltime>(),
    }
    .map_err(|e| Error::invalid(format!("{} (from {walltime_source})", e.0)))?;
    let mut table: toml::Table = values
        .iter()
        .map(|(k, (v, _))| (k.to_string(), v.clone()))
        .collect();
    table.insert("walltime".into(), Value::String(walltime.hhmmss()));
    let config: JobConfig = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::invalid(format!("configuration: {e}")))?;
    config.check_consistency()?;
    Ok(Loaded {
        config,
        values,
        file: file_path,
    })
}

impl Loaded {
    /// The merged configuration as TOML, each line commented with its source. The output is a
    /// valid config file.
    pub fn show(&self) -> String {
        let mut out = String::new();
        match &self.file {
            Some(p) => out.push_str(&format!("# config file: {}\n", p.display())),
            None => out.push_str("# config file: none found\n"),
        }
        for spec in KEYS {
            let line = match self.values.get(spec.name) {
                Some((value, _)) => format!("{} = {}", spec.name, value),
                None => format!("# {} (unset)", spec.name),
            };
            let source = self
                .values
                .get(spec.name)
                .map(|(_, s)| s.to_string())
                .unwrap_or_else(|| spec.help.to_string());
            out.push_str(&format!("{line:<44} # {source}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            path: vec![],
        }
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("jobqueue.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_apply_without_any_source() {
        let loaded = load(None, &Layer::default(), &env(&[])).unwrap();
        assert_eq!(loaded.config, JobConfig::default());
        assert!(matches!(loaded.values["system"].1, Source::Detected(_)));
        assert_eq!(loaded.values["cores"].1, Source::Default);
    }

    /// `job_arrays = false` forces one submission per job; it reads from TOML, the
    /// environment's text and flags, and anything else is refused naming the key.
    #[test]
    fn job_arrays_is_a_switch() {
        assert!(JobConfig::default().job_arrays);
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "job_arrays = false\n");
        let loaded = load(Some(&path), &Layer::default(), &env(&[])).unwrap();
        assert!(!loaded.config.job_arrays);
        for (text, want) in [("no", false), ("true", true), ("0", false)] {
            let e = env(&[("RDASK_JOB_ARRAYS", text)]);
            let loaded = load(None, &Layer::default(), &e).unwrap();
            assert_eq!(loaded.config.job_arrays, want, "{text}");
        }
        let err = load(
            None,
            &Layer::default(),
            &env(&[("RDASK_JOB_ARRAYS", "maybe")]),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("RDASK_JOB_ARRAYS"), "{err}");
        let path = write(&dir, "job_arrays = 3\n");
        let err = load(Some(&path), &Layer::default(), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("job_arrays"), "{err}");
    }

    #[test]
    fn layers_apply_in_order_and_remember_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "system = 'slurm'\ncores = 4\nqueue = 'top'\nproject = 'acct'\n\
             [slurm]\nqueue = 'debug'\nmemory = '8GB'\n[pbs]\nqueue = 'workq'\n",
        );
        let mut flags = Layer::default();
        flags.flag("cores", Value::Integer(8));
        let e = env(&[
            ("RDASK_MEMORY", "16GB"),
            ("RDASK_PROLOGUE", "module load x\nexport A=1"),
        ]);
        let loaded = load(Some(&path), &flags, &e).unwrap();
        let c = &loaded.config;
        assert_eq!(c.system, SystemKind::Slurm);
        assert_eq!(c.cores, 8);
        assert_eq!(c.queue.as_deref(), Some("debug"));
        assert_eq!(c.account.as_deref(), Some("acct"));
        assert_eq!(c.memory, ByteSize(16_000_000_000));
        assert_eq!(c.prologue, vec!["module load x", "export A=1"]);
        assert_eq!(loaded.values["cores"].1, Source::Flag("--cores".into()));
        assert_eq!(
            loaded.values["memory"].1,
            Source::Env("RDASK_MEMORY".into())
        );
        assert_eq!(
            loaded.values["queue"].1,
            Source::File {
                path: path.clone(),
                table: Some(SystemKind::Slurm)
            }
        );
        let shown = loaded.show();
        assert!(shown.contains("queue = \"debug\""), "{shown}");
        assert!(shown.contains("[slurm]"), "{shown}");
        assert!(shown.contains("flag --cores"), "{shown}");
        // What `show` prints is itself a valid config file.
        let reparsed = write(&dir, &shown);
        assert_eq!(
            load(Some(&reparsed), &Layer::default(), &env(&[]))
                .unwrap()
                .config,
            *c
        );
    }

    #[test]
    fn the_system_table_follows_the_chosen_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "queue = 'top'\n[pbs]\nqueue = 'workq'\n");
        let mut flags = Layer::default();
        flags.flag("system", Value::String("pbs".into()));
        let c = load(Some(&path), &flags, &env(&[])).unwrap().config;
        assert_eq!(c.queue.as_deref(), Some("workq"));
        let c = load(Some(&path), &Layer::default(), &env(&[]))
            .unwrap()
            .config;
        assert_eq!(c.queue.as_deref(), Some("top"));
    }

    #[test]
    fn config_file_errors_name_the_key_and_what_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let bad_key = write(&dir, "corez = 4\n");
        let err = load(Some(&bad_key), &Layer::default(), &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key `corez`") && msg.contains("cores"),
            "{msg}"
        );

        let bad_type = write(&dir, "cores = 'many'\n");
        let msg = load(Some(&bad_type), &Layer::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`cores`") && msg.contains("'many'"), "{msg}");

        let bad_table = write(&dir, "[slurm]\nsystem = 'pbs'\n");
        assert!(load(Some(&bad_table), &Layer::default(), &env(&[])).is_err());

        let bad_toml = write(&dir, "cores = \n");
        let msg = load(Some(&bad_toml), &Layer::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not valid TOML"), "{msg}");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let err = load(
            None,
            &Layer::default(),
            &env(&[("RDASK_WALLTIME", "25:61:00")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("RDASK_WALLTIME='25:61:00'"),
            "{err}"
        );
        let err = load(None, &Layer::default(), &env(&[("RDASK_SYSTEM", "foo")])).unwrap_err();
        assert!(
            err.to_string().contains("unknown batch system 'foo'"),
            "{err}"
        );
    }

    /// A newline in a value would become a shell line of the job script: refused from every
    /// source, naming where it came from.
    #[test]
    fn control_characters_are_refused_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        for key in [
            "queue",
            "account",
            "job_name",
            "shebang",
            "resource_spec",
            "log_directory",
            "local_directory",
            "interface",
            "worker_command",
        ] {
            let bad = "#!x\ntouch /tmp/pwned";
            let mut flags = Layer::default();
            flags.flag(key, Value::String(bad.into()));
            let err = load(None, &flags, &env(&[])).unwrap_err();
            let flag = format!("--{}", key.replace('_', "-"));
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains(&flag) && err.to_string().contains("a newline"),
                "{err}"
            );

            let var = format!("RDASK_{}", key.to_ascii_uppercase());
            let err = load(None, &Layer::default(), &env(&[(&var, bad)])).unwrap_err();
            assert!(err.to_string().contains(&var), "{err}");
            assert!(err.to_string().contains("a newline"), "{err}");

            let path = write(&dir, &format!("[slurm]\n{key} = \"#!x\\rid\"\n"));
            let mut system = Layer::default();
            system.flag("system", Value::String("slurm".into()));
            let err = load(Some(&path), &system, &env(&[])).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`"))
                    && err.to_string().contains("a carriage return"),
                "{err}"
            );
        }
        // List keys: each item is checked (a flag value or a TOML array item).
        for key in ["job_extra_directive", "worker_extra_arg", "prologue"] {
            let mut flags = Layer::default();
            flags.flag(
                key,
                Value::Array(vec![
                    Value::String("ok".into()),
                    Value::String("a\0b".into()),
                ]),
            );
            let err = load(None, &flags, &env(&[])).unwrap_err();
            assert!(err.to_string().contains("a NUL byte"), "{key}: {err}");
        }
        // The environment's list separator stays a separator; a tab in a prologue is fine.
        let loaded = load(
            None,
            &Layer::default(),
            &env(&[
                ("RDASK_JOB_EXTRA_DIRECTIVE", "--exclusive\n--gres=gpu:1"),
                ("RDASK_PROLOGUE", "if true; then\n\techo x\nfi"),
            ]),
        )
        .unwrap();
        assert_eq!(
            loaded.config.job_extra_directive,
            ["--exclusive", "--gres=gpu:1"]
        );
        assert_eq!(loaded.config.prologue[1], "\techo x");
    }

    #[test]
    fn shebangs_and_job_names_have_their_form() {
        for (key, bad) in [
            ("shebang", "/bin/bash"),
            ("job_name", "-x"),
            ("job_name", "two words"),
            ("job_name", "../../escape"),
        ] {
            let mut flags = Layer::default();
            flags.flag(key, Value::String(bad.into()));
            let err = load(None, &flags, &env(&[])).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused_with_the_range() {
        let cases: &[(&str, &str, &str)] = &[
            ("RDASK_CORES", "100000", "1 to 4096"),
            ("RDASK_PROCESSES", "5000", "1 to 1024"),
            ("RDASK_JOB_CPU", "9999999999", "1 to 4096"),
            ("RDASK_MEMORY", "1MB", "64.0 MiB to 64.0 TiB"),
            ("RDASK_MEMORY", "1PB", "64.0 MiB to 64.0 TiB"),
            ("RDASK_JOB_MEM", "10", "64.0 MiB"),
            ("RDASK_DISK", "1kB", "1.0 MiB"),
            ("RDASK_DEATH_TIMEOUT", "0", "1 s to 86400 s"),
            ("RDASK_DEATH_TIMEOUT", "99999999999999999999", "too large"),
            ("RDASK_DEATH_TIMEOUT", "9223372036854775808", "86400 s"),
            ("RDASK_LIFETIME_MARGIN", "2d", "0 s to 86400 s"),
            ("RDASK_COMMAND_TIMEOUT", "2h", "1 s to 3600 s"),
            ("RDASK_WALLTIME", "307445734561825861", "too large"),
            ("RDASK_WALLTIME", "00:00:01", "at least 10 s"),
        ];
        for (var, value, needle) in cases {
            let err = load(None, &Layer::default(), &env(&[(var, value)])).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains(var) && msg.contains(needle),
                "{var}={value}: {msg}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "cores = 100000\n");
        let msg = load(Some(&path), &Layer::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`cores`") && msg.contains("1 to 4096"),
            "{msg}"
        );
        let mut flags = Layer::default();
        flags.flag("death_timeout", Value::Integer(0));
        let msg = load(None, &flags, &env(&[])).unwrap_err().to_string();
        assert!(msg.contains("--death-timeout"), "{msg}");
        // The edges themselves are accepted.
        let ok = load(
            None,
            &Layer::default(),
            &env(&[
                ("RDASK_CORES", "4096"),
                ("RDASK_PROCESSES", "1024"),
                ("RDASK_MEMORY", "64TiB"),
                ("RDASK_LIFETIME_MARGIN", "0"),
                ("RDASK_WALLTIME", "365d"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.config.walltime.seconds(), 365 * 86_400);
    }

    #[test]
    fn each_worker_process_gets_at_least_64_mib() {
        let e = env(&[
            ("RDASK_MEMORY", "100MiB"),
            ("RDASK_CORES", "2"),
            ("RDASK_PROCESSES", "2"),
        ]);
        let err = load(None, &Layer::default(), &e).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("50.0 MiB") && err.to_string().contains("64.0 MiB"),
            "{err}"
        );
        let e = env(&[
            ("RDASK_MEMORY", "128MiB"),
            ("RDASK_CORES", "2"),
            ("RDASK_PROCESSES", "2"),
        ]);
        assert!(load(None, &Layer::default(), &e).is_ok());
    }

    #[test]
    fn config_files_must_be_small_regular_files() {
        let err = load(Some(Path::new("/dev/zero")), &Layer::default(), &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("/dev/zero") && err.to_string().contains("not a regular file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = load(Some(dir.path()), &Layer::default(), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let big = dir.path().join("big.toml");
        let line = "# padding\n".repeat(200_000);
        std::fs::write(&big, line).unwrap();
        let err = load(Some(&big), &Layer::default(), &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("big.toml") && err.to_string().contains("1048576 bytes"),
            "{err}"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = env(&[("RDASK_CONFIG", fifo.to_str().unwrap())]);
        let err = load(None, &Layer::default(), &e).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn more_processes_than_cores_is_refused() {
        let mut flags = Layer::default();
        flags.flag("processes", Value::Integer(3));
        flags.flag("cores", Value::Integer(2));
        let err = load(None, &flags, &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("--processes 3 with --cores 2"),
            "{err}"
        );
    }

    #[test]
    fn the_system_is_detected_from_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(&[]);
        e.path = vec![dir.path().to_path_buf()];
        assert_eq!(detect_system(&e).0, SystemKind::Local);
        std::fs::write(dir.path().join("qsub"), "").unwrap();
        assert_eq!(detect_system(&e).0, SystemKind::Pbs);
        std::fs::write(dir.path().join("qconf"), "").unwrap();
        assert_eq!(detect_system(&e).0, SystemKind::Sge);
        std::fs::write(dir.path().join("sbatch"), "").unwrap();
        assert_eq!(detect_system(&e).0, SystemKind::Slurm);
    }

    #[test]
    fn slurm_native_takes_a_switch_from_every_source() {
        let loaded = load(
            None,
            &Layer::default(),
            &env(&[("RDASK_SLURM_NATIVE", "off")]),
        )
        .unwrap();
        assert_eq!(loaded.config.slurm_native, SlurmNative::False);
        let dir = tempfile::tempdir().unwrap();
        let file = write(&dir, "slurm_native = true\n");
        let loaded = load(Some(&file), &Layer::default(), &env(&[])).unwrap();
        assert_eq!(loaded.config.slurm_native, SlurmNative::True);
        let err = load(
            None,
            &Layer::default(),
            &env(&[("RDASK_SLURM_NATIVE", "maybe")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("RDASK_SLURM_NATIVE") && err.contains("auto, true or false"),
            "{err}"
        );
    }

    #[test]
    fn python_is_an_absolute_path_or_a_program_name() {
        for good in [
            "python3",
            "/opt/venv/bin/python",
            "/opt/my env/bin/python3.12",
        ] {
            let loaded = load(None, &Layer::default(), &env(&[("RDASK_PYTHON", good)])).unwrap();
            assert_eq!(loaded.config.python.as_deref(), Some(good));
        }
        for (bad, why) in [
            ("venv/bin/python", "relative path"),
            ("./python", "relative path"),
            ("~/venv/bin/python", "not expanded"),
            ("$HOME/venv/bin/python", "not expanded"),
            ("-m", "starts with '-'"),
            ("/opt/venv/bin/", "directory"),
            ("/usr/bin/python3\u{1b}", "control character"),
        ] {
            let err = load(None, &Layer::default(), &env(&[("RDASK_PYTHON", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("RDASK_PYTHON") && err.contains(why) && err.contains("absolute path"),
                "{bad:?}: {err}"
            );
        }
        // An empty variable is unset; an empty flag is a mistake.
        let mut flags = Layer::default();
        flags.flag("python", Value::String(String::new()));
        let err = load(None, &flags, &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--python") && err.contains("is empty"),
            "{err}"
        );
    }

    #[test]
    fn every_key_is_a_field_of_the_configuration() {
        for spec in KEYS {
            let sample = match spec.kind {
                Kind::Text if spec.name == "shebang" => Value::String("#!/bin/sh".into()),
                Kind::Text | Kind::Path => Value::String("x".into()),
                Kind::Count | Kind::Seconds => Value::Integer(2),
                Kind::Size | Kind::SizeAsWritten => Value::String("1GiB".into()),
                Kind::Walltime => Value::String("01:00:00".into()),
                Kind::System => Value::String("slurm".into()),
                Kind::LsfUnit => Value::String("MB".into()),
                Kind::Switch => Value::Boolean(true),
                Kind::Lines => Value::Array(vec![Value::String("x".into())]),
                Kind::Bool => Value::Boolean(false),
            };
            let mut table = toml::Table::new();
            table.insert(spec.name.into(), check(spec, sample).unwrap());
            let parsed: std::result::Result<JobConfig, _> = Value::Table(table).try_into();
            assert!(
                parsed.is_ok(),
                "key {} does not fit JobConfig: {parsed:?}",
                spec.name
            );
        }
    }
}
