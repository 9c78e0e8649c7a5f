//! The `#SBATCH` lines of a job script read into the fields of libslurm's job description.
//! `sbatch` reads them itself; `slurm_submit_batch_job` does not (it takes the script as an
//! opaque text), so the native path must. Only the directives our headers write are read; a
//! script with any other (a user's `job_extra_directive`, a template of their own) is
//! submitted by `sbatch`, which knows them all, rather than half-understood here.

/// What a script's directives ask for, in libslurm's units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub name: Option<String>,
    pub std_out: Option<String>,
    pub std_err: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub ntasks: Option<u32>,
    pub nodes: Option<u32>,
    pub cpus_per_task: Option<u16>,
    /// `--mem`, in MiB per node.
    pub mem_per_node_mb: Option<u64>,
    /// `--mem-per-cpu`, in MiB.
    pub mem_per_cpu_mb: Option<u64>,
    /// `-t`, in minutes (SLURM rounds seconds up to the next minute).
    pub time_minutes: Option<u32>,
}

/// Reads the directives of `script` as sbatch does: `#SBATCH` lines up to the first line that
/// is neither blank nor a comment. `Err` names the first directive this reader does not know.
pub fn read(script: &str) -> Result<Request, String> {
    let mut req = Request::default();
    for line in script.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            break;
        }
        let Some(rest) = line.strip_prefix("#SBATCH") else {
            continue;
        };
        let words = shell_words::split(rest).map_err(|_| line.to_string())?;
        let (opt, value) = match words.as_slice() {
            [opt] => match opt.split_once('=') {
                Some((o, v)) => (o.to_string(), v.to_string()),
                None => return Err(line.to_string()),
            },
            [opt, value] if !opt.contains('=') => (opt.clone(), value.clone()),
            _ => return Err(line.to_string()),
        };
        apply(&mut req, &opt, &value).ok_or_else(|| line.to_string())?;
    }
    Ok(req)
}

fn apply(req: &mut Request, opt: &str, value: &str) -> Option<()> {
    let text = || Some(value.to_string());
    match opt {
        "-J" | "--job-name" => req.name = text(),
        "-o" | "--output" => req.std_out = text(),
        "-e" | "--error" => req.std_err = text(),
        "-p" | "--partition" => req.partition = text(),
        "-A" | "--account" => req.account = text(),
        "-n" | "--ntasks" => req.ntasks = Some(value.parse().ok()?),
        // "-N 1" only: a range of node counts is sbatch's to read.
        "-N" | "--nodes" => req.nodes = Some(value.parse().ok()?),
        "-c" | "--cpus-per-task" => req.cpus_per_task = Some(value.parse().ok()?),
        "--mem" => req.mem_per_node_mb = Some(megabytes(value)?),
        "--mem-per-cpu" => req.mem_per_cpu_mb = Some(megabytes(value)?),
        "-t" | "--time" => req.time_minutes = Some(minutes(value)?),
        _ => return None,
    }
    Some(())
}

/// sbatch's memory sizes: a number with an optional K, M, G or T (binary; M by default).
fn megabytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (num, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "M"),
    };
    let n: u64 = num.parse().ok()?;
    match unit.to_ascii_uppercase().trim_end_matches('B') {
        "K" => Some(n.div_ceil(1024)),
        "M" => Some(n),
        "G" => n.checked_mul(1024),
        "T" => n.checked_mul(1024 * 1024),
        _ => None,
    }
}

/// SLURM's time forms: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S"; seconds round up.
fn minutes(text: &str) -> Option<u32> {
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, Some(r)),
        None => (0, None),
    };
    let fields: Vec<u64> = rest
        .unwrap_or(text)
        .split(':')
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, s) = match (rest.is_some(), fields.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, *s),
        (_, [h, m, s]) => (*h, *m, *s),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        _ => return None,
    };
    let total = days * 1440 + h * 60 + m + s.div_ceil(60);
    u32::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobConfig;
    use crate::jobqueue::{slurm::Slurm, BatchSystem, Site};
    use crate::units::{ByteSize, Walltime};

    #[test]
    fn our_own_header_is_read_whole() {
        let cfg = JobConfig {
            queue: Some("debug".into()),
            account: Some("proj1".into()),
            log_directory: Some("/tmp/logs".into()),
            cores: 4,
            memory: ByteSize(6 << 30),
            walltime: Walltime(3600 + 61),
            job_name: "rdask-x-7".into(),
            ..JobConfig::default()
        };
        let header = Slurm.header_lines(&cfg, &Site::discover(&cfg));
        let script = format!(
            "#!/usr/bin/env bash\n\n{}\n\necho go\n#SBATCH --bogus\n",
            header.join("\n")
        );
        let req = read(&script).unwrap();
        assert_eq!(
            req,
            Request {
                name: Some("rdask-x-7".into()),
                std_out: Some("/tmp/logs/rdask-x-7-%J.out".into()),
                std_err: Some("/tmp/logs/rdask-x-7-%J.err".into()),
                partition: Some("debug".into()),
                account: Some("proj1".into()),
                ntasks: Some(1),
                nodes: Some(1),
                cpus_per_task: Some(4),
                mem_per_node_mb: Some(6 * 1024),
                mem_per_cpu_mb: None,
                time_minutes: Some(62),
            }
        );
    }

    #[test]
    fn a_directive_we_do_not_know_leaves_the_script_to_sbatch() {
        let script = "#!/bin/sh\n#SBATCH -J a\n#SBATCH --gres=gpu:1\nrun\n";
        assert_eq!(read(script), Err("#SBATCH --gres=gpu:1".into()));
        assert!(read("#!/bin/sh\n#SBATCH -N 1-4\n").is_err());
        assert!(read("#!/bin/sh\n#SBATCH -J a b\n").is_err());
        assert!(read("#!/bin/sh\n#SBATCH --mem=3X\n").is_err());
        // Comments and blank lines do not end the header; other comments are not directives.
        let req = read("#!/bin/sh\n# note\n\n#SBATCH --job-name=a\n").unwrap();
        assert_eq!(req.name.as_deref(), Some("a"));
    }

    #[test]
    fn sizes_and_times_read_as_sbatch_reads_them() {
        assert_eq!(megabytes("100"), Some(100));
        assert_eq!(megabytes("94G"), Some(94 * 1024));
        assert_eq!(megabytes("1025K"), Some(2));
        assert_eq!(megabytes("2T"), Some(2 << 20));
        assert_eq!(megabytes("5GB"), Some(5 * 1024));
        assert_eq!(minutes("30"), Some(30));
        assert_eq!(minutes("30:01"), Some(31));
        assert_eq!(minutes("01:00:00"), Some(60));
        assert_eq!(minutes("2-00:30:00"), Some(2 * 1440 + 30));
        assert_eq!(minutes("1-2"), Some(1440 + 120));
        assert_eq!(minutes("UNLIMITED"), None);
    }
}
