//! The job options as command-line flags: one flag per configuration key, same name in
//! kebab-case. Values are typed here (clap reports bad ones with exit code 2) and become the
//! top layer of the configuration.

use std::path::PathBuf;

use clap::Args;
use toml::Value;

use rdask::config::{self, Env, Layer, Loaded, SystemKind};
use rdask::error::Result;
use rdask::units::{ByteSize, LsfUnit, SizeAsWritten};

/// Checks a walltime but keeps its text: its meaning can depend on the system (LSF's HH:MM).
fn walltime_text(s: &str) -> std::result::Result<String, String> {
    config::check_walltime_text(s).map(|_| s.to_string())
}

#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Job options (also: config file keys and RDASK_<KEY> variables)")]
pub struct JobArgs {
    /// Configuration file [default: $RDASK_CONFIG, else ~/.config/rdask/jobqueue.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Batch system: slurm, pbs, sge, lsf, oar, htcondor, moab, local [default: detected from PATH]
    #[arg(long, value_name = "SYSTEM")]
    pub system: Option<SystemKind>,
    /// Cores per job [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cores: Option<u32>,
    /// Memory per job: 28GB (decimal) or 2GiB (binary) [default: 4GiB]
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ByteSize>,
    /// Worker processes per job; each gets cores/processes threads [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub processes: Option<u32>,
    /// Queue or partition
    #[arg(long, short = 'q', value_name = "NAME")]
    pub queue: Option<String>,
    /// Account or project to charge (-A, -P or --project as each system spells it)
    #[arg(long, visible_alias = "project", value_name = "NAME")]
    pub account: Option<String>,
    /// Wall-clock limit: HH:MM:SS, MM:SS (HH:MM for LSF), D-HH:MM:SS, 90m, 1h30m [default: 00:30:00]
    #[arg(long, value_name = "TIME", value_parser = walltime_text)]
    pub walltime: Option<String>,
    /// Cores to request, when it differs from --cores
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub job_cpu: Option<u32>,
    /// Memory to request, when it differs from --memory: passed as written where the system
    /// reads that spelling (SLURM 100G or 120GB, PBS 100gb), else converted like --memory
    #[arg(long, value_name = "SIZE")]
    pub job_mem: Option<SizeAsWritten>,
    /// Raw resource request (PBS -l, SGE -l, OAR -l), replacing the generated one
    #[arg(long, value_name = "SPEC")]
    pub resource_spec: Option<String>,
    /// Extra header directive, without its prefix (repeatable; never skipped)
    #[arg(long, value_name = "DIRECTIVE", allow_hyphen_values = true)]
    pub job_extra_directive: Vec<String>,
    /// Drop generated directives containing this text (repeatable)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub job_directives_skip: Vec<String>,
    /// Shell line run before the worker starts (repeatable)
    #[arg(long, value_name = "LINE", allow_hyphen_values = true)]
    pub prologue: Vec<String>,
    /// Shell line run after the worker ends (repeatable)
    #[arg(long, value_name = "LINE", allow_hyphen_values = true)]
    pub epilogue: Vec<String>,
    /// Directory for the jobs' stdout/stderr
    #[arg(long, value_name = "DIR")]
    pub log_directory: Option<PathBuf>,
    /// Worker scratch directory for spilled data; $VARS expand in the job
    #[arg(long, value_name = "DIR")]
    pub local_directory: Option<String>,
    /// Network interface workers listen and connect on (e.g. ib0)
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Python interpreter for the workers' Python tasks: an absolute path or a program name on the nodes' PATH [default: the submitter's, else python3]
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<String>,
    /// Batch job name [default: rdask-worker]
    #[arg(long, value_name = "NAME")]
    pub job_name: Option<String>,
    /// First line of the job script [default: #!/usr/bin/env bash]
    #[arg(long, value_name = "LINE")]
    pub shebang: Option<String>,
    /// Render this template (minijinja) instead of the built-in one
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Extra argument for the worker command (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub worker_extra_arg: Vec<String>,
    /// Seconds a worker waits for an unreachable scheduler before exiting [default: 60]
    #[arg(long, value_name = "SECONDS", value_parser = rdask::units::seconds_arg)]
    pub death_timeout: Option<u64>,
    /// Workers retire (handing their results to others) this long before the walltime; 0: never [default: 120, at most walltime/4]
    #[arg(long, value_name = "SECONDS", value_parser = rdask::units::seconds_arg)]
    pub lifetime_margin: Option<u64>,
    /// A job's workers retire up to this far apart [default: 60, at most half the margin]
    #[arg(long, value_name = "SECONDS", value_parser = rdask::units::seconds_arg)]
    pub lifetime_stagger: Option<u64>,
    /// Extra argument for the submit command (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub submit_command_extra: Vec<String>,
    /// Extra argument for the cancel command (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub cancel_command_extra: Vec<String>,
    /// LSF memory unit (LSF_UNIT_FOR_LIMITS) [default: read from lsf.conf, else KB]
    #[arg(long, value_name = "UNIT")]
    pub lsf_units: Option<LsfUnit>,
    /// HTCondor disk request
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<ByteSize>,
    /// OAR property for memory per core (site-specific)
    #[arg(long, value_name = "NAME")]
    pub memory_per_core_property_name: Option<String>,
    /// Command that starts a worker [default: this binary's `worker`]
    #[arg(long, value_name = "COMMAND")]
    pub worker_command: Option<String>,
    /// Timeout for each batch-system command [default: 60]
    #[arg(long, value_name = "SECONDS", value_parser = rdask::units::seconds_arg)]
    pub command_timeout: Option<u64>,
    /// A scale-up of several jobs is one job array: true or false [default: true]
    #[arg(long, value_name = "BOOL")]
    pub job_arrays: Option<bool>,
    /// SLURM through libslurm: auto, true or false [default: auto; needs the slurm-native build]
    #[arg(long, value_name = "auto|true|false")]
    pub slurm_native: Option<String>,
}

impl JobArgs {
    /// The flags that were given, as the top configuration layer.
    pub fn layer(&self) -> Layer {
        let mut l = Layer::default();
        let text = |s: &str| Value::String(s.to_string());
        let lines = |v: &[String]| Value::Array(v.iter().map(|s| text(s)).collect());
        let mut put = |name: &str, v: Option<Value>| {
            if let Some(v) = v {
                l.flag(name, v);
            }
        };
        put("system", self.system.map(|s| text(s.name())));
        put("cores", self.cores.map(|n| Value::Integer(n.into())));
        put("memory", self.memory.map(|m| text(&m.exact())));
        put(
            "processes",
            self.processes.map(|n| Value::Integer(n.into())),
        );
        put("queue", self.queue.as_deref().map(text));
        put("account", self.account.as_deref().map(text));
        put("walltime", self.walltime.as_deref().map(text));
        put("job_cpu", self.job_cpu.map(|n| Value::Integer(n.into())));
        put("job_mem", self.job_mem.as_ref().map(|m| text(&m.text)));
        put("resource_spec", self.resource_spec.as_deref().map(text));
        for (name, v) in [
            ("job_extra_directive", &self.job_extra_directive),
            ("job_directives_skip", &self.job_directives_skip),
            ("prologue", &self.prologue),
            ("epilogue", &self.epilogue),
            ("worker_extra_arg", &self.worker_extra_arg),
            ("submit_command_extra", &self.submit_command_extra),
            ("cancel_command_extra", &self.cancel_command_extra),
        ] {
            put(name, (!v.is_empty()).then(|| lines(v)));
        }
        put(
            "log_directory",
            self.log_directory
                .as_ref()
                .map(|p| text(&p.display().to_string())),
        );
        put("local_directory", self.local_directory.as_deref().map(text));
        put("interface", self.interface.as_deref().map(text));
        put("python", self.python.as_deref().map(text));
        put("job_name", self.job_name.as_deref().map(text));
        put("shebang", self.shebang.as_deref().map(text));
        put(
            "template",
            self.template
                .as_ref()
                .map(|p| text(&p.display().to_string())),
        );
        let seconds = |v: Option<u64>| v.map(|s| Value::Integer(s as i64));
        put("death_timeout", seconds(self.death_timeout));
        put("lifetime_margin", seconds(self.lifetime_margin));
        put("lifetime_stagger", seconds(self.lifetime_stagger));
        put("lsf_units", self.lsf_units.map(|u| text(&format!("{u:?}"))));
        put("disk", self.disk.map(|m| text(&m.exact())));
        put(
            "memory_per_core_property_name",
            self.memory_per_core_property_name.as_deref().map(text),
        );
        put("worker_command", self.worker_command.as_deref().map(text));
        put(
            "command_timeout",
            self.command_timeout.map(|s| Value::Integer(s as i64)),
        );
        put("job_arrays", self.job_arrays.map(Value::Boolean));
        put("slurm_native", self.slurm_native.as_deref().map(text));
        l
    }

    /// Loads the merged configuration with these flags on top.
    pub fn load(&self) -> Result<Loaded> {
        config::load(self.config.as_deref(), &self.layer(), &Env::from_process())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Command, FromArgMatches};

    #[test]
    fn every_config_key_has_a_flag_of_the_same_name() {
        let cmd = JobArgs::augment_args(Command::new("t"));
        let flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for spec in config::KEYS {
            let flag = spec.name.replace('_', "-");
            assert!(
                flags.contains(&flag),
                "config key {} has no --{flag}",
                spec.name
            );
        }
    }

    #[test]
    fn every_flag_reaches_the_configuration() {
        let argv = [
            "t",
            "--system",
            "lsf",
            "--cores",
            "4",
            "--memory",
            "8GB",
            "--processes",
            "2",
            "--queue",
            "q",
            "--project",
            "p",
            "--walltime",
            "1h",
            "--job-cpu",
            "5",
            "--job-mem",
            "9GB",
            "--resource-spec",
            "r",
            "--job-extra-directive",
            "-x",
            "--job-directives-skip",
            "-y",
            "--prologue",
            "a",
            "--epilogue",
            "b",
            "--log-directory",
            "/l",
            "--local-directory",
            "/d",
            "--interface",
            "ib0",
            "--python",
            "/opt/venv/bin/python",
            "--job-name",
            "n",
            "--shebang",
            "#!/bin/sh",
            "--template",
            "/t",
            "--worker-extra-arg",
            "--foo",
            "--death-timeout",
            "2m",
            "--lifetime-margin",
            "3m",
            "--lifetime-stagger",
            "30",
            "--submit-command-extra",
            "-s",
            "--cancel-command-extra",
            "-c",
            "--lsf-units",
            "MB",
            "--disk",
            "1GB",
            "--memory-per-core-property-name",
            "memcore",
            "--worker-command",
            "w",
            "--command-timeout",
            "5",
            "--job-arrays",
            "false",
            "--slurm-native",
            "false",
        ];
        let cmd = JobArgs::augment_args(Command::new("t"));
        let args = JobArgs::from_arg_matches(&cmd.get_matches_from(argv)).unwrap();
        let layer = args.layer();
        let names: Vec<&str> = layer.values.iter().map(|(k, _, _)| *k).collect();
        for spec in config::KEYS {
            assert!(
                names.contains(&spec.name),
                "--{} did not reach the configuration",
                spec.name
            );
        }
        let loaded = config::load(None, &layer, &Env::default()).unwrap();
        assert_eq!(loaded.config.death_timeout, 120);
        assert_eq!(loaded.config.lifetime_margin, 180);
        assert_eq!(loaded.config.lifetime_stagger, 30);
        assert_eq!(loaded.config.account.as_deref(), Some("p"));
        assert!(!loaded.config.job_arrays);
        assert_eq!(
            loaded.config.python.as_deref(),
            Some("/opt/venv/bin/python")
        );
        assert_eq!(loaded.config.slurm_native, config::SlurmNative::False);
    }
}
