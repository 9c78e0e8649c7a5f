//! SLURM: `sbatch --parsable`, `squeue`, `scancel`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, is_number, BatchSystem, Invocation, JobState, MpiJob, Output, Site};
use crate::config::{JobConfig, SystemKind};
use crate::units::{ByteSize, Walltime};

pub struct Slurm;

impl BatchSystem for Slurm {
    fn kind(&self) -> SystemKind {
        SystemKind::Slurm
    }

    fn directive_prefix(&self) -> &'static str {
        "#SBATCH"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("slurm.sh.j2", include_str!("../../templates/slurm.sh.j2"))
    }

    fn format_memory(&self, memory: ByteSize, _site: &Site) -> String {
        memory.slurm()
    }

    fn format_walltime(&self, walltime: Walltime) -> String {
        walltime.slurm()
    }

    /// dask-jobqueue's SLURMJob header: one task on one node with all the job's cores.
    fn header_lines(&self, cfg: &JobConfig, site: &Site) -> Vec<String> {
        let mut h = vec![format!("#SBATCH -J {}", cfg.job_name)];
        if let Some(dir) = &cfg.log_directory {
            let (dir, name) = (dir.display(), &cfg.job_name);
            h.push(format!("#SBATCH -e {dir}/{name}-%J.err"));
            h.push(format!("#SBATCH -o {dir}/{name}-%J.out"));
        }
        if let Some(q) = &cfg.queue {
            h.push(format!("#SBATCH -p {q}"));
        }
        if let Some(a) = &cfg.account {
            h.push(format!("#SBATCH -A {a}"));
        }
        h.push("#SBATCH -n 1".into());
        h.push("#SBATCH -N 1".into());
        h.push(format!(
            "#SBATCH --cpus-per-task={}",
            cfg.job_cpu.unwrap_or(cfg.cores)
        ));
        h.push(format!(
            "#SBATCH --mem={}",
            self.format_memory(cfg.job_mem.unwrap_or(cfg.memory), site)
        ));
        h.push(format!("#SBATCH -t {}", self.format_walltime(cfg.walltime)));
        h
    }

    /// One task per rank with `cores` CPUs each; memory per CPU, so it follows the ranks to
    /// whichever nodes SLURM spreads them over.
    fn mpi_job(&self, cfg: &JobConfig, ranks: u32, site: &Site) -> Option<MpiJob> {
        let cores = cfg.cores.max(1);
        let mut header = vec![format!("#SBATCH -J {}", cfg.job_name)];
        if let Some(q) = &cfg.queue {
            header.push(format!("#SBATCH -p {q}"));
        }
        if let Some(a) = &cfg.account {
            header.push(format!("#SBATCH -A {a}"));
        }
        header.push(format!("#SBATCH --ntasks={ranks}"));
        header.push(format!("#SBATCH --cpus-per-task={cores}"));
        let per_cpu = ByteSize(cfg.memory.bytes().div_ceil(u64::from(cores)));
        header.push(format!(
            "#SBATCH --mem-per-cpu={}",
            self.format_memory(per_cpu, site)
        ));
        header.push(format!("#SBATCH -t {}", self.format_walltime(cfg.walltime)));
        Some(MpiJob {
            header,
            setup: Vec::new(),
            launcher: "srun --kill-on-bad-exit=1".into(),
        })
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["sbatch".to_string(), "--parsable".into()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    /// `--parsable` prints "ID" or "ID;CLUSTER".
    fn parse_job_id(&self, out: &Output) -> Option<String> {
        let line = out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        let id = line.split(';').next()?.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_'))
            .then(|| id.to_string())
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["scancel".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        let all_gone = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| {
                l.contains("Invalid job id specified")
                    || l.contains("Job/step already completing or completed")
            });
        all_gone && !out.stderr.trim().is_empty()
    }

    fn status(&self, ids: &[String]) -> Invocation {
        Invocation::new([
            "squeue".to_string(),
            "--noheader".into(),
            "--states=all".into(),
            "--format=%i %T".into(),
            format!("--jobs={}", ids.join(",")),
        ])
    }

    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.code != Some(0) {
            // squeue fails when *every* id is unknown (purged after MinJobAge).
            if out.stderr.contains("Invalid job id specified") {
                return Ok(fill_gone(ids, BTreeMap::new()));
            }
            return Err("squeue failed".into());
        }
        let mut seen = BTreeMap::new();
        for line in out.stdout.lines() {
            let mut words = line.split_whitespace();
            let (Some(id), Some(state)) = (words.next(), words.next()) else {
                continue;
            };
            seen.insert(id.to_string(), state_of(state));
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["SLURM_JOB_ID", "SLURM_JOBID"]
    }

    fn launch_job_id_variable(&self) -> Option<&'static str> {
        Some("SLURM_JOB_ID")
    }

    /// Checks partition, account, limits and the directives; queues nothing.
    fn dry_run(&self, script: &Path, extra: &[String]) -> Option<Invocation> {
        let mut argv = vec!["sbatch".to_string(), "--test-only".into()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Some(Invocation::new(argv))
    }

    /// `123`, an array task `123_4`, a heterogeneous component `123+1`, each with an optional
    /// step: `123.batch`, `123.0`.
    fn is_job_id(&self, id: &str) -> bool {
        let (job, step) = match id.split_once('.') {
            Some((job, step)) => (job, Some(step)),
            None => (id, None),
        };
        let job_ok = match job.split_once(['_', '+']) {
            Some((a, b)) => is_number(a) && is_number(b),
            None => is_number(job),
        };
        job_ok
            && step.is_none_or(|s| is_number(s) || matches!(s, "batch" | "extern" | "interactive"))
    }

    fn job_id_forms(&self) -> &'static str {
        "a number such as 123, 123_4 (array task) or 123.batch (step)"
    }

    /// Only this user's jobs of that name: run as root (or an operator), `scancel --name`
    /// alone would cancel every user's.
    fn cancel_by_name(&self, name: &str, _script: &Path, extra: &[String]) -> Option<Invocation> {
        let mut argv = vec!["scancel".to_string()];
        argv.extend(extra.iter().cloned());
        let uid = nix::unistd::getuid();
        argv.push(format!("--user={uid}"));
        argv.push(format!("--name={name}"));
        Some(Invocation::new(argv))
    }

    fn pending_reasons(&self, ids: &[String]) -> Option<Invocation> {
        Some(Invocation::new([
            "squeue".to_string(),
            "--noheader".into(),
            "--states=PENDING".into(),
            "--format=%i %r".into(),
            format!("--jobs={}", ids.join(",")),
        ]))
    }

    /// "1234 Resources", "1235 QOSMaxJobsPerUserLimit"; "None" means no reason yet.
    fn parse_pending_reasons(&self, out: &Output) -> BTreeMap<String, String> {
        out.stdout
            .lines()
            .filter_map(|l| {
                let (id, why) = l.trim().split_once(' ')?;
                let why = why.trim();
                (!why.is_empty() && why != "None").then(|| (id.to_string(), why.to_string()))
            })
            .collect()
    }
}

/// squeue's state words (`%T`) as our states; the native path maps libslurm's through it too.
pub(crate) fn state_of(s: &str) -> JobState {
    match s {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => JobState::Pending,
        "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
        | "RESIZING" => JobState::Running,
        "COMPLETED" => JobState::Completed,
        "CANCELLED" | "PREEMPTED" | "REVOKED" => JobState::Cancelled,
        "FAILED" | "TIMEOUT" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "OUT_OF_MEMORY" => {
            JobState::Failed
        }
        _ => JobState::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reasons_are_read_and_none_is_no_reason() {
        let o = out(0, "12 Resources\n13 None\n14 QOSMaxJobsPerUserLimit\n", "");
        let r = Slurm.parse_pending_reasons(&o);
        assert_eq!(r.len(), 2);
        assert_eq!(r["12"], "Resources");
        assert_eq!(r["14"], "QOSMaxJobsPerUserLimit");
    }

    fn out(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn reads_ids_from_parsable_output() {
        assert_eq!(
            Slurm.parse_job_id(&out(0, "1234\n", "")).as_deref(),
            Some("1234")
        );
        assert_eq!(
            Slurm.parse_job_id(&out(0, "77;cluster2\n", "")).as_deref(),
            Some("77")
        );
        assert_eq!(
            Slurm.parse_job_id(&out(0, "Submitted batch job\n", "")),
            None
        );
    }

    #[test]
    fn reads_states_and_fills_in_gone_jobs() {
        let ids: Vec<String> = ["1", "2", "3", "4", "5"].map(String::from).to_vec();
        let o = out(0, "1 PENDING\n2 RUNNING\n3 CANCELLED\n4 TIMEOUT\n", "");
        let s = Slurm.parse_states(&o, &ids).unwrap();
        assert_eq!(
            s.values().copied().collect::<Vec<_>>(),
            [
                JobState::Pending,
                JobState::Running,
                JobState::Cancelled,
                JobState::Failed,
                JobState::Gone
            ]
        );
        let all_unknown = out(1, "", "slurm_load_jobs error: Invalid job id specified\n");
        assert!(Slurm
            .parse_states(&all_unknown, &ids)
            .unwrap()
            .values()
            .all(|s| *s == JobState::Gone));
        assert!(Slurm
            .parse_states(&out(1, "", "Unable to contact slurm controller"), &ids)
            .is_err());
    }

    /// Every state squeue prints maps to one of ours (docs/batch-systems.md#slurm).
    #[test]
    fn every_squeue_state_has_its_place() {
        use JobState::*;
        let table = [
            (
                Pending,
                &[
                    "PENDING",
                    "CONFIGURING",
                    "REQUEUED",
                    "REQUEUE_HOLD",
                    "REQUEUE_FED",
                    "RESV_DEL_HOLD",
                    "SPECIAL_EXIT",
                ][..],
            ),
            (
                Running,
                &[
                    "RUNNING",
                    "COMPLETING",
                    "SUSPENDED",
                    "STOPPED",
                    "SIGNALING",
                    "STAGE_OUT",
                    "RESIZING",
                ],
            ),
            (Completed, &["COMPLETED"]),
            (Cancelled, &["CANCELLED", "PREEMPTED", "REVOKED"]),
            (
                Failed,
                &[
                    "FAILED",
                    "TIMEOUT",
                    "NODE_FAIL",
                    "BOOT_FAIL",
                    "DEADLINE",
                    "OUT_OF_MEMORY",
                ],
            ),
            (Gone, &["", "SOMETHING_NEW"]),
        ];
        for (state, words) in table {
            for w in words {
                assert_eq!(state_of(w), state, "{w}");
            }
        }
    }
}
