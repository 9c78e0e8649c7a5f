//! HTCondor: a submit description (not a shell script) through `condor_submit`; `condor_q
//! -json`; `condor_rm`. The worker runs as `/bin/sh -c '...'` from the description's
//! `Arguments`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, is_number, BatchSystem, Invocation, JobState, Output, Site};
use crate::config::{JobConfig, SystemKind};
use crate::units::ByteSize;

pub struct Htcondor;

impl BatchSystem for Htcondor {
    fn kind(&self) -> SystemKind {
        SystemKind::Htcondor
    }

    fn directive_prefix(&self) -> &'static str {
        ""
    }

    fn script_file_name(&self) -> &'static str {
        "job.sub"
    }

    fn template(&self) -> (&'static str, &'static str) {
        (
            "htcondor.sub.j2",
            include_str!("../../templates/htcondor.sub.j2"),
        )
    }

    /// `RequestMemory` is a number of MiB, rounded down.
    fn format_memory(&self, memory: ByteSize, _site: &Site) -> String {
        memory.htcondor_mib().to_string()
    }

    /// The requests dask-jobqueue's HTCondorJob makes, as plain numbers: cpus, memory in MiB
    /// and disk in KiB, both rounded down as HTCondor's `floor()` expressions there do.
    fn header_lines(&self, cfg: &JobConfig, site: &Site) -> Vec<String> {
        let mut h = vec![
            "Universe = vanilla".to_string(),
            format!("JobBatchName = \"{}\"", cfg.job_name),
            "MY.JobId = \"$(ClusterId).$(ProcId)\"".into(),
            format!("RequestCpus = {}", cfg.job_cpu.unwrap_or(cfg.cores)),
            format!("RequestMemory = {}", self.memory_request(cfg, site)),
        ];
        if let Some(disk) = cfg.disk {
            h.push(format!("RequestDisk = {}", disk.htcondor_kib()));
        }
        if let Some(dir) = &cfg.log_directory {
            h.push(format!("LogDirectory = {}", dir.display()));
            h.push("Output = $(LogDirectory)/worker-$F(MY.JobId).out".into());
            h.push("Error = $(LogDirectory)/worker-$F(MY.JobId).err".into());
            h.push("Log = $(LogDirectory)/worker-$(ClusterId).log".into());
            h.push("Stream_Output = True".into());
            h.push("Stream_Error = True".into());
        }
        h
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["condor_submit".to_string()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    /// "1 job(s) submitted to cluster 1234."
    fn parse_job_id(&self, out: &Output) -> Option<String> {
        out.stdout.lines().find_map(|l| {
            let rest = l.split("submitted to cluster").nth(1)?;
            let id = rest.trim().trim_end_matches('.');
            (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
        })
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["condor_rm".to_string()];
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
            && complaints.all(|l| l.contains("Couldn't find") || l.contains("does not exist"))
    }

    fn status(&self, ids: &[String]) -> Invocation {
        let mut argv = vec![
            "condor_q".to_string(),
            "-json".into(),
            "-attributes".into(),
            "ClusterId,ProcId,JobStatus".into(),
        ];
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    /// Reads `[{"ClusterId": 1234, "ProcId": 0, "JobStatus": 2}]`; condor_q prints nothing
    /// when no job matches. Finished jobs leave the queue, so they are gone.
    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.code != Some(0) {
            return Err("condor_q failed".into());
        }
        if out.stdout.trim().is_empty() {
            return Ok(fill_gone(ids, BTreeMap::new()));
        }
        let ads: Vec<serde_json::Value> =
            serde_json::from_str(&out.stdout).map_err(|e| format!("condor_q JSON: {e}"))?;
        let mut seen = BTreeMap::new();
        for ad in ads {
            let Some(cluster) = ad.get("ClusterId").and_then(|c| c.as_i64()) else {
                continue;
            };
            let status = ad.get("JobStatus").and_then(|s| s.as_i64()).unwrap_or(0);
            let cluster = cluster.to_string();
            if let Some(id) = ids.iter().find(|i| self.canonical_id(i) == cluster) {
                seen.insert(id.clone(), state_of(status));
            }
        }
        Ok(fill_gone(ids, seen))
    }

    /// None holds the id itself: see [`BatchSystem::job_id_from_env`].
    fn job_id_variables(&self) -> &'static [&'static str] {
        &[]
    }

    /// `_CONDOR_JOB_AD` names a file holding the job's ad; the id is its `ClusterId`.
    fn job_id_from_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let path = env("_CONDOR_JOB_AD").filter(|p| !p.is_empty())?;
        cluster_id(&std::fs::read_to_string(path).ok()?)
    }

    /// A cluster `123`, or one process of it `123.0`.
    fn is_job_id(&self, id: &str) -> bool {
        match id.split_once('.') {
            Some((cluster, process)) => is_number(cluster) && is_number(process),
            None => is_number(id),
        }
    }

    fn job_id_forms(&self) -> &'static str {
        "a cluster number such as 123, or 123.0"
    }
}

/// The `ClusterId = 1234` line of a job ad.
fn cluster_id(ad: &str) -> Option<String> {
    ad.lines()
        .find_map(|l| l.trim().strip_prefix("ClusterId"))
        .map(|rest| rest.trim_start_matches([' ', '=']).trim().to_string())
        .filter(|id| is_number(id))
}

/// JobStatus codes: 1 idle, 2 running, 3 removed, 4 completed, 5 held, 6 transferring
/// output, 7 suspended.
fn state_of(status: i64) -> JobState {
    match status {
        1 | 5 => JobState::Pending,
        2 | 6 | 7 => JobState::Running,
        3 => JobState::Cancelled,
        4 => JobState::Completed,
        _ => JobState::Gone,
    }
}

/// HTCondor's new-style `Arguments = "..."` value for `/bin/sh -c SCRIPT`: the whole
/// string is double-quoted, the script single-quoted as one word; inside, a single quote is
/// written twice and a double quote twice.
pub fn sh_arguments(script: &str) -> String {
    let inner = script.replace('\'', "''").replace('"', "\"\"");
    format!("\"-c '{inner}'\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_submit_output_and_queue_states() {
        let sub = Output {
            code: Some(0),
            stdout: "Submitting job(s).\n1 job(s) submitted to cluster 1234.\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Htcondor.parse_job_id(&sub).as_deref(), Some("1234"));
        let ids: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let out = Output {
            code: Some(0),
            stdout: r#"[{"ClusterId":1,"ProcId":0,"JobStatus":1},{"ClusterId":2,"ProcId":0,"JobStatus":2}]"#.into(),
            stderr: String::new(),
        };
        let s = Htcondor.parse_states(&out, &ids).unwrap();
        assert_eq!(
            s.values().copied().collect::<Vec<_>>(),
            [JobState::Pending, JobState::Running, JobState::Gone]
        );
        let empty = Output {
            code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        };
        assert!(Htcondor
            .parse_states(&empty, &ids)
            .unwrap()
            .values()
            .all(|s| *s == JobState::Gone));
    }

    #[test]
    fn quotes_arguments_the_new_way() {
        assert_eq!(
            sh_arguments("echo it's \"x\""),
            r#""-c 'echo it''s ""x""'""#
        );
    }

    #[test]
    fn every_job_status_code_has_its_place() {
        use JobState::*;
        let table = [
            (1, Pending),
            (5, Pending),
            (2, Running),
            (6, Running),
            (7, Running),
            (3, Cancelled),
            (4, Completed),
            (0, Gone),
            (8, Gone),
        ];
        for (code, state) in table {
            assert_eq!(state_of(code), state, "{code}");
        }
    }
}
