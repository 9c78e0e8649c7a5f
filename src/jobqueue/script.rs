//! Renders job scripts from templates/ (embedded in the binary) or a user's own template.
//!
//! Rust computes the parts that must be right — the directive lines dask-jobqueue users
//! expect, the skip filter, the worker command — and hands them to the template with every
//! option as a variable, so a site can rearrange or rewrite the header without patching us.
//! Templates render in strict mode: a misspelled variable is an error, never an empty string.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior, Value};

use super::command::{shell_quote, shell_quote_expanding};
use super::{system, Site};
use crate::config::{JobConfig, SystemKind};
use crate::error::{Error, Result};

/// The built-in template of each system, as shipped in templates/.
pub fn builtin_template(kind: SystemKind) -> (&'static str, &'static str) {
    system(kind).template()
}

/// Where the workers of a job connect to.
#[derive(Clone, Debug)]
pub struct Target {
    /// "tcp://host:port" of the scheduler.
    pub scheduler_address: String,
    /// The cluster's secret, on a filesystem the compute nodes share.
    pub secret_file: Option<PathBuf>,
}

/// The command a job runs to start its workers.
pub fn worker_command(cfg: &JobConfig, target: &Target, own_binary: &Path) -> String {
    let mut words: Vec<String> = Vec::new();
    let prefix = match &cfg.worker_command {
        Some(custom) => custom.clone(),
        None => format!("{} worker", shell_quote(&own_binary.display().to_string())),
    };
    words.push(shell_quote(&target.scheduler_address));
    words.extend(["--nthreads".into(), cfg.threads_per_process().to_string()]);
    words.extend(["--nworkers".into(), cfg.processes.to_string()]);
    words.extend(["--memory-limit".into(), cfg.memory_per_process().exact()]);
    words.extend(["--death-timeout".into(), cfg.death_timeout.to_string()]);
    if let Some((lifetime, stagger)) = cfg.worker_lifetime() {
        words.extend(["--lifetime".into(), lifetime.to_string()]);
        words.extend(["--lifetime-stagger".into(), stagger.to_string()]);
    }
    if let Some(secret) = &target.secret_file {
        words.extend([
            "--secret-file".into(),
            shell_quote(&secret.display().to_string()),
        ]);
    }
    if let Some(dir) = &cfg.local_directory {
        words.extend(["--local-directory".into(), shell_quote_expanding(dir)]);
    }
    if let Some(iface) = &cfg.interface {
        words.extend(["--interface".into(), shell_quote(iface)]);
    }
    if let Some(python) = &cfg.python {
        words.extend(["--python".into(), shell_quote(python)]);
    }
    words.extend(
        cfg.worker_extra_arg
            .iter()
            .map(|a| shell_quote_expanding(a)),
    );
    format!("{prefix} {}", words.join(" "))
}

/// Writes a job script and makes it executable (OAR and local jobs execute the file).
pub fn write_executable(path: &Path, text: &str) -> Result<()> {
    crate::files::write_atomic(path, text.as_bytes(), 0o755)
}

/// The generated directives after `job_directives_skip`, then the extra directives (which
/// are never skipped), each with the system's prefix.
pub fn header(cfg: &JobConfig, site: &Site) -> (Vec<String>, Vec<String>) {
    let sys = system(cfg.system);
    let generated = sys
        .header_lines(cfg, site)
        .into_iter()
        .filter(|line| {
            !cfg.job_directives_skip
                .iter()
                .any(|skip| line.contains(skip.as_str()))
        })
        .collect();
    let prefix = sys.directive_prefix();
    let extra = cfg
        .job_extra_directive
        .iter()
        .map(|d| {
            if prefix.is_empty() {
                d.clone()
            } else {
                format!("{prefix} {d}")
            }
        })
        .collect();
    (generated, extra)
}

/// Renders the job script exactly as it will be submitted.
pub fn render(cfg: &JobConfig, target: &Target, own_binary: &Path) -> Result<String> {
    let site = Site::discover(cfg);
    let (generated, extra) = header(cfg, &site);
    let command = worker_command(cfg, target, own_binary);
    let mut body: Vec<String> = cfg.prologue.clone();
    body.push(command.clone());
    body.extend(cfg.epilogue.iter().cloned());

    let opt = |v: &Option<String>| v.clone().map(Value::from).unwrap_or(Value::from(()));
    let path = |v: &Option<PathBuf>| {
        v.as_ref()
            .map(|p| Value::from(p.display().to_string()))
            .unwrap_or(Value::from(()))
    };
    let sys = system(cfg.system);
    let memory_request = sys.memory_request(cfg, &site);
    let walltime = sys.format_walltime(cfg.walltime);
    let ctx = minijinja::context! {
        system => cfg.system.name(),
        shebang => cfg.shebang.clone(),
        directive_prefix => sys.directive_prefix(),
        header => generated,
        extra_directives => extra,
        prologue => cfg.prologue.clone(),
        epilogue => cfg.epilogue.clone(),
        worker_command => command,
        htcondor_arguments => super::htcondor::sh_arguments(&body.join("; ")),
        job_name => cfg.job_name.clone(),
        queue => opt(&cfg.queue),
        account => opt(&cfg.account),
        cores => cfg.cores,
        processes => cfg.processes,
        threads_per_process => cfg.threads_per_process(),
        job_cpu => cfg.job_cpu.unwrap_or(cfg.cores),
        memory => cfg.memory.exact(),
        memory_bytes => cfg.memory.bytes(),
        memory_per_process => cfg.memory_per_process().exact(),
        memory_request => memory_request,
        walltime => walltime,
        walltime_seconds => cfg.walltime.seconds(),
        resource_spec => opt(&cfg.resource_spec),
        log_directory => path(&cfg.log_directory),
        local_directory => opt(&cfg.local_directory),
        interface => opt(&cfg.interface),
        python => opt(&cfg.python),
        death_timeout => cfg.death_timeout,
        scheduler_address => target.scheduler_address.clone(),
    };

    let (name, source) = match &cfg.template {
        Some(p) => {
            let text = crate::config::read_small_file(
                p,
                "template",
                crate::config::limits::MAX_CONFIG_FILE_BYTES,
            )?;
            (p.display().to_string(), text)
        }
        None => {
            let (name, text) = builtin_template(cfg.system);
            (format!("templates/{name}"), text.to_string())
        }
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("valid syntax config"),
    );
    // minijinja's message already names the template and the line.
    let explain = |e: minijinja::Error| {
        Error::invalid(format!(
            "template {name}: {e}; see docs/configuration.md#templates for the variables a template can use"
        ))
    };
    env.add_template_owned(name.clone(), source)
        .map_err(explain)?;
    env.get_template(&name)
        .and_then(|t| t.render(ctx))
        .map_err(explain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_drops_generated_lines_but_never_extra_directives() {
        let cfg = JobConfig {
            system: SystemKind::Slurm,
            job_directives_skip: vec!["--mem".into(), "-J".into()],
            job_extra_directive: vec!["--mem-per-cpu=2G".into(), "-J kept".into()],
            ..JobConfig::default()
        };
        let (generated, extra) = header(&cfg, &Site::discover(&cfg));
        assert!(
            generated
                .iter()
                .all(|l| !l.contains("--mem") && !l.contains("-J")),
            "{generated:?}"
        );
        assert_eq!(extra, ["#SBATCH --mem-per-cpu=2G", "#SBATCH -J kept"]);
    }

    #[test]
    fn the_worker_command_carries_per_process_resources() {
        let cfg = JobConfig {
            cores: 8,
            processes: 4,
            memory: "28GB".parse().unwrap(),
            local_directory: Some("/scratch/$USER".into()),
            walltime: crate::units::Walltime(3600),
            worker_extra_arg: vec!["--name".into(), "w-$SLURM_JOB_ID".into()],
            ..JobConfig::default()
        };
        let target = Target {
            scheduler_address: "tcp://10.0.0.1:8786".into(),
            secret_file: Some("/home/u/.rdask/clusters/default/secret".into()),
        };
        let cmd = worker_command(&cfg, &target, Path::new("/opt/rdask/bin/rdask-jobqueue"));
        assert_eq!(
            cmd,
            "/opt/rdask/bin/rdask-jobqueue worker tcp://10.0.0.1:8786 --nthreads 2 --nworkers 4 \
             --memory-limit 7000000000 --death-timeout 60 --lifetime 3480 --lifetime-stagger 60 \
             --secret-file /home/u/.rdask/clusters/default/secret \
             --local-directory \"/scratch/$USER\" --name \"w-$SLURM_JOB_ID\""
        );
    }
}
