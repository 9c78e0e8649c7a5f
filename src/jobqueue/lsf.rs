//! LSF: `bsub < script` (LSF reads `#BSUB` directives only from stdin), `bjobs`, `bkill`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    fill_gone, is_number_with_index, BatchSystem, Invocation, JobState, MpiJob, Output, Site,
};
use crate::config::{JobConfig, SystemKind};
use crate::units::{ByteSize, LsfUnit, Walltime};

pub struct Lsf;

/// The site's memory unit for `-M`: `LSF_UNIT_FOR_LIMITS` in `$LSF_ENVDIR/lsf.conf`, else
/// `/etc/lsf.conf`; KB when neither says.
pub fn detect_unit() -> LsfUnit {
    let dirs = ["LSF_ENVDIR", "LSF_CONFDIR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .chain(["/etc".to_string()]);
    for dir in dirs {
        if let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("lsf.conf")) {
            if let Some(unit) = unit_from_conf(&text) {
                return unit;
            }
        }
    }
    LsfUnit::KB
}

/// The last definition wins, as when lsf.conf is sourced.
fn unit_from_conf(text: &str) -> Option<LsfUnit> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().strip_prefix("LSF_UNIT_FOR_LIMITS"))
        .next_back()
        .and_then(|rest| rest.trim().strip_prefix('='))
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
}

impl BatchSystem for Lsf {
    fn kind(&self) -> SystemKind {
        SystemKind::Lsf
    }

    fn directive_prefix(&self) -> &'static str {
        "#BSUB"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("lsf.sh.j2", include_str!("../../templates/lsf.sh.j2"))
    }

    /// In the site's `LSF_UNIT_FOR_LIMITS`.
    fn format_memory(&self, memory: ByteSize, site: &Site) -> String {
        memory.lsf(site.lsf_unit)
    }

    /// `HH:MM`: LSF's -W takes no seconds.
    fn format_walltime(&self, walltime: Walltime) -> String {
        walltime.lsf()
    }

    /// `cores` slots per rank, all of a rank's on one host (`span[ptile=cores]`).
    fn mpi_job(&self, cfg: &JobConfig, ranks: u32, site: &Site) -> Option<MpiJob> {
        let cores = cfg.cores.max(1);
        let mut header = vec![format!("#BSUB -J {}", cfg.job_name)];
        if let Some(q) = &cfg.queue {
            header.push(format!("#BSUB -q {q}"));
        }
        if let Some(a) = &cfg.account {
            header.push(format!("#BSUB -P {a}"));
        }
        header.push(format!("#BSUB -n {}", ranks * cores));
        header.push(format!("#BSUB -R \"span[ptile={cores}]\""));
        header.push(format!("#BSUB -M {}", self.format_memory(cfg.memory, site)));
        header.push(format!("#BSUB -W {}", self.format_walltime(cfg.walltime)));
        Some(MpiJob {
            header,
            setup: Vec::new(),
            launcher: format!("mpirun -np {ranks}"),
        })
    }

    /// dask-jobqueue's LSFJob header.
    fn header_lines(&self, cfg: &JobConfig, site: &Site) -> Vec<String> {
        let mut h = vec![format!("#BSUB -J {}", cfg.job_name)];
        if let Some(dir) = &cfg.log_directory {
            let (dir, name) = (dir.display(), &cfg.job_name);
            h.push(format!("#BSUB -e {dir}/{name}-%J.err"));
            h.push(format!("#BSUB -o {dir}/{name}-%J.out"));
        }
        if let Some(q) = &cfg.queue {
            h.push(format!("#BSUB -q {q}"));
        }
        if let Some(a) = &cfg.account {
            h.push(format!("#BSUB -P \"{a}\""));
        }
        let ncpus = cfg.job_cpu.unwrap_or(cfg.cores);
        h.push(format!("#BSUB -n {ncpus}"));
        if ncpus > 1 {
            h.push("#BSUB -R \"span[hosts=1]\"".into());
        }
        h.push(format!("#BSUB -M {}", self.memory_request(cfg, site)));
        h.push(format!("#BSUB -W {}", self.format_walltime(cfg.walltime)));
        h
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["bsub".to_string()];
        argv.extend(extra.iter().cloned());
        let mut inv = Invocation::new(argv);
        inv.stdin = Some(script.to_path_buf());
        inv
    }

    /// "Job <1234> is submitted to queue <normal>."
    fn parse_job_id(&self, out: &Output) -> Option<String> {
        out.stdout.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("Job <")?;
            let id = &rest[..rest.find('>')?];
            id.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| id.to_string())
        })
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["bkill".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        let mut complaints = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .peekable();
        complaints.peek().is_some()
            && complaints.all(|l| {
                l.contains("No matching job found")
                    || l.contains("Job has already finished")
                    || l.contains("is not found")
            })
    }

    fn status(&self, ids: &[String]) -> Invocation {
        let mut argv = vec![
            "bjobs".to_string(),
            "-noheader".into(),
            "-o".into(),
            "jobid stat".into(),
        ];
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        let mut seen = BTreeMap::new();
        for line in out.stdout.lines() {
            let mut words = line.split_whitespace();
            let (Some(id), Some(stat)) = (words.next(), words.next()) else {
                continue;
            };
            if id.chars().all(|c| c.is_ascii_digit()) {
                seen.insert(id.to_string(), state_of(stat));
            }
        }
        let complaints_ok = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.contains("is not found"));
        if out.code != Some(0) && seen.is_empty() && !complaints_ok {
            return Err("bjobs failed".into());
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["LSB_JOBID"]
    }

    fn launch_job_id_variable(&self) -> Option<&'static str> {
        Some("LSB_JOBID")
    }

    /// `123`, or one element of a job array `123[4]`.
    fn is_job_id(&self, id: &str) -> bool {
        is_number_with_index(id, false)
    }

    fn job_id_forms(&self) -> &'static str {
        "a number such as 123, or 123[4] (array element)"
    }
}

fn state_of(stat: &str) -> JobState {
    match stat {
        "PEND" | "PSUSP" | "WAIT" | "PROV" => JobState::Pending,
        "RUN" | "USUSP" | "SSUSP" => JobState::Running,
        "DONE" => JobState::Completed,
        "EXIT" => JobState::Failed,
        _ => JobState::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_submit_output_and_states() {
        let sub = Output {
            code: Some(0),
            stdout: "Job <1234> is submitted to queue <normal>.\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Lsf.parse_job_id(&sub).as_deref(), Some("1234"));
        let ids: Vec<String> = ["1", "2", "3", "4"].map(String::from).to_vec();
        let out = Output {
            code: Some(255),
            stdout: "1 PEND\n2 RUN\n3 EXIT\n".into(),
            stderr: "Job <4> is not found\n".into(),
        };
        let s = Lsf.parse_states(&out, &ids).unwrap();
        assert_eq!(
            s.values().copied().collect::<Vec<_>>(),
            [
                JobState::Pending,
                JobState::Running,
                JobState::Failed,
                JobState::Gone
            ]
        );
    }

    #[test]
    fn reads_the_unit_from_lsf_conf() {
        assert_eq!(
            unit_from_conf("# c\nLSF_UNIT_FOR_LIMITS=MB\n"),
            Some(LsfUnit::MB)
        );
        assert_eq!(
            unit_from_conf("LSF_UNIT_FOR_LIMITS = \"GB\"\n"),
            Some(LsfUnit::GB)
        );
        assert_eq!(unit_from_conf("#LSF_UNIT_FOR_LIMITS=MB\n"), None);
        assert_eq!(
            unit_from_conf("LSF_UNIT_FOR_LIMITS=KB\nLSF_UNIT_FOR_LIMITS=GB\n"),
            Some(LsfUnit::GB)
        );
    }

    #[test]
    fn every_bjobs_stat_has_its_place() {
        use JobState::*;
        let table = [
            ("PEND", Pending),
            ("PSUSP", Pending),
            ("WAIT", Pending),
            ("PROV", Pending),
            ("RUN", Running),
            ("USUSP", Running),
            ("SSUSP", Running),
            ("DONE", Completed),
            ("EXIT", Failed),
            ("ZOMBI", Gone),
            ("UNKWN", Gone),
        ];
        for (stat, state) in table {
            assert_eq!(state_of(stat), state, "{stat}");
        }
    }
}
