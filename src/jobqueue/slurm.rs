//! SLURM: `sbatch --parsable`, `squeue`, `scancel`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    fill_gone, indices, is_number, BatchSystem, Invocation, JobState, MpiJob, Output, Site,
};
use crate::config::{JobConfig, SystemKind};
use crate::units::{ByteSize, SizeAsWritten, Walltime};

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

    /// sbatch reads `--mem=100G` and `--mem=120GB` (a whole number and K, M, G or T, binary;
    /// what follows the letter is ignored), so those go as written; `20GiB` or `1.5G` it
    /// refuses, and a bare number means MB to it but bytes to us: those are converted.
    fn format_job_mem(&self, request: &SizeAsWritten, site: &Site) -> String {
        if reads_as_mem(&request.text) {
            request.text.clone()
        } else {
            self.format_memory(request.bytes, site)
        }
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
        h.push(format!("#SBATCH --mem={}", self.memory_request(cfg, site)));
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

    /// Elements 0..count-1; each is cancelled alone as `ID_INDEX`.
    fn submit_array(
        &self,
        script: &Path,
        _name: &str,
        count: usize,
        extra: &[String],
    ) -> Option<Invocation> {
        let mut argv = vec![
            "sbatch".to_string(),
            "--parsable".into(),
            format!("--array=0-{}", count.checked_sub(1)?),
        ];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Some(Invocation::new(argv))
    }

    /// `--parsable` prints the array's id; its elements are `ID_0` .. `ID_{count-1}`.
    fn parse_array_ids(&self, out: &Output, count: usize) -> Option<Vec<String>> {
        let id = self.parse_job_id(out)?;
        is_number(&id).then(|| (0..count).map(|k| format!("{id}_{k}")).collect())
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
            // Pending elements of an array come compressed on one line: `123_[5-63]`.
            match indices::slurm_elements(id) {
                Some(elements) => {
                    for e in elements {
                        seen.insert(e, state_of(state));
                    }
                }
                None => {
                    seen.insert(id.to_string(), state_of(state));
                }
            }
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["SLURM_JOB_ID", "SLURM_JOBID"]
    }

    /// An array element is `ARRAY_INDEX` (its own SLURM_JOB_ID is another number, which
    /// neither squeue's `%i` nor the ledger uses); any other job its SLURM_JOB_ID.
    fn job_id_from_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let array = env("SLURM_ARRAY_JOB_ID").filter(|a| is_number(a));
        let index = env("SLURM_ARRAY_TASK_ID").filter(|i| is_number(i));
        if let (Some(array), Some(index)) = (array, index) {
            return Some(format!("{array}_{index}"));
        }
        self.job_id_variables()
            .iter()
            .filter_map(|var| env(var))
            .find(|v| !v.is_empty())
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
            .flat_map(|(id, why)| {
                let ids = indices::slurm_elements(&id).unwrap_or_else(|| vec![id]);
                ids.into_iter().map(move |id| (id, why.clone()))
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

/// Whether sbatch reads `text` as `--mem` the way the user means it: digits, then K, M, G or
/// T, optionally followed by B (sbatch ignores it).
fn reads_as_mem(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let unit = text[digits..].to_ascii_uppercase();
    digits > 0
        && matches!(
            unit.as_str(),
            "K" | "M" | "G" | "T" | "KB" | "MB" | "GB" | "TB"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What sbatch 22.05 was seen to accept (`--test-only`) goes as written; what it refused
    /// (`1.5G`, `20GiB`, `100 GB`) or reads in another unit (a bare number: MB) does not.
    #[test]
    fn job_mem_goes_as_written_only_in_a_spelling_sbatch_reads_alike() {
        for ok in ["100G", "120GB", "512m", "64Mb", "2T", "900K"] {
            assert!(reads_as_mem(ok), "{ok}");
        }
        for converted in ["1.5G", "20GiB", "100 GB", "4000", "G", "", "12XB", "-1G"] {
            assert!(!reads_as_mem(converted), "{converted:?}");
        }
        let site = Site {
            lsf_unit: crate::units::LsfUnit::KB,
        };
        let request = |t: &str| t.parse::<SizeAsWritten>().unwrap();
        assert_eq!(Slurm.format_job_mem(&request("100G"), &site), "100G");
        assert_eq!(Slurm.format_job_mem(&request("20GiB"), &site), "20G");
        // 4000000000 bytes, not 4000000000 MB.
        assert_eq!(Slurm.format_job_mem(&request("4000000000"), &site), "4G");
    }

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

    /// Captured on the test environment's SLURM 22.05: `sbatch --parsable --array=0-5`
    /// printed `825`; squeue listed started elements singly and pending ones compressed;
    /// the elements' environment named the array and the index.
    #[test]
    fn arrays_are_submitted_once_and_polled_per_element() {
        let inv = Slurm
            .submit_array(Path::new("/c/job.sh"), "rdask-c-3", 6, &["--qos=x".into()])
            .unwrap();
        assert_eq!(
            inv.argv,
            [
                "sbatch",
                "--parsable",
                "--array=0-5",
                "--qos=x",
                "/c/job.sh"
            ]
        );
        let ids = Slurm.parse_array_ids(&out(0, "825\n", ""), 3).unwrap();
        assert_eq!(ids, ["825_0", "825_1", "825_2"]);
        assert!(ids.iter().all(|id| Slurm.is_job_id(id)));
        assert_eq!(Slurm.parse_array_ids(&out(0, "oops\n", ""), 3), None);

        let ids: Vec<String> = [
            "825_0", "825_1", "825_5", "826_0", "826_1", "826_2", "826_3",
        ]
        .map(String::from)
        .to_vec();
        let squeue = "826_[0-1,3] PENDING\n825_0 RUNNING\n825_1 CANCELLED\n825_5 RUNNING\n";
        let s = Slurm.parse_states(&out(0, squeue, ""), &ids).unwrap();
        use JobState::*;
        assert_eq!(
            ids.iter().map(|i| s[i]).collect::<Vec<_>>(),
            [Running, Cancelled, Running, Pending, Pending, Gone, Pending]
        );
        let r = Slurm.parse_pending_reasons(&out(0, "826_[0-1,3] JobHeldUser\n", ""));
        assert_eq!(r.len(), 3);
        assert_eq!(r["826_3"], "JobHeldUser");

        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let element = env(&[
            ("SLURM_JOB_ID", "827"),
            ("SLURM_ARRAY_JOB_ID", "825"),
            ("SLURM_ARRAY_TASK_ID", "0"),
        ]);
        assert_eq!(Slurm.job_id_from_env(&element).as_deref(), Some("825_0"));
        let plain = env(&[("SLURM_JOB_ID", "830")]);
        assert_eq!(Slurm.job_id_from_env(&plain).as_deref(), Some("830"));
        assert_eq!(Slurm.canonical_id("825_0"), "825_0");
        assert_ne!(Slurm.canonical_id("825_0"), Slurm.canonical_id("825_1"));
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
