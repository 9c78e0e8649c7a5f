//! `local`: "jobs" are detached process groups on this machine, the embedded default when no
//! batch system is there. Submitting starts the script under `setsid` (so cancelling can kill
//! the whole group, as a batch system kills a job) and prints its pid, which is the job id.
//! The job learns its id from `RDASK_LOCAL_JOB_ID`.
//!
//! Only pending-free states exist: a local job runs at once, and when its process has ended
//! it is gone (its exit status belongs to whoever reaps it).

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, BatchSystem, Invocation, JobState, Output, Site};
use crate::config::{JobConfig, SystemKind};

pub struct Local;

/// Starts `bash SCRIPT` detached, logging to SCRIPT.log beside the script.
const SUBMIT: &str = r#"log=$1; shift
setsid sh -c 'RDASK_LOCAL_JOB_ID=$$; export RDASK_LOCAL_JOB_ID; exec "$@"' sh "$@" </dev/null >"$log" 2>&1 &
echo $!"#;

impl BatchSystem for Local {
    fn kind(&self) -> SystemKind {
        SystemKind::Local
    }

    fn directive_prefix(&self) -> &'static str {
        "#LOCAL"
    }

    /// A local job has no batch directives; the lines only document what it was given.
    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        vec![format!(
            "#LOCAL name={} cores={} memory={} walltime={}",
            cfg.job_name,
            cfg.job_cpu.unwrap_or(cfg.cores),
            cfg.job_mem.unwrap_or(cfg.memory).exact(),
            cfg.walltime.hhmmss()
        )]
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let log = format!("{}.log", script.display());
        let mut argv = vec![
            "sh".to_string(),
            "-c".into(),
            SUBMIT.into(),
            "sh".into(),
            log,
            "bash".into(),
        ];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    fn parse_job_id(&self, out: &Output) -> Option<String> {
        let id = out.stdout.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
    }

    /// SIGTERM to the job's whole process group.
    fn cancel(&self, ids: &[String], _extra: &[String]) -> Invocation {
        let mut argv = vec!["kill".to_string(), "-TERM".into(), "--".into()];
        argv.extend(ids.iter().map(|id| format!("-{id}")));
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        let mut complaints = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .peekable();
        complaints.peek().is_some() && complaints.all(|l| l.contains("No such process"))
    }

    fn status(&self, ids: &[String]) -> Invocation {
        Invocation::new([
            "ps".to_string(),
            "-o".into(),
            "pid=,stat=".into(),
            "-p".into(),
            ids.join(","),
        ])
    }

    /// `ps` exits 1 when none of the pids exists; zombies (stat Z) have ended.
    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        let mut seen = BTreeMap::new();
        for line in out.stdout.lines() {
            let mut words = line.split_whitespace();
            let (Some(pid), Some(stat)) = (words.next(), words.next()) else {
                continue;
            };
            if !stat.starts_with('Z') {
                seen.insert(pid.to_string(), JobState::Running);
            }
        }
        if out.code != Some(0) && !out.stderr.trim().is_empty() {
            return Err("ps failed".into());
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["RDASK_LOCAL_JOB_ID"]
    }

    /// A local job is `bash .../NAME-job.sh`, the leader of its process group: find it by its
    /// script and end the group. (The pattern's `[/]` keeps it from matching this very
    /// command line.)
    fn cancel_by_name(&self, name: &str, _extra: &[String]) -> Option<Invocation> {
        let pattern = format!(
            "[/]{}-{}",
            name,
            self.script_file_name().replace('.', "\\.")
        );
        Some(Invocation::new([
            "sh".to_string(),
            "-c".into(),
            r#"for p in $(pgrep -f -- "$1"); do kill -TERM -- "-$p" 2>/dev/null; done; true"#
                .into(),
            "sh".into(),
            pattern,
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobqueue::command;
    use std::time::{Duration, Instant};

    /// A real round trip: start a script detached, see it run, cancel its group, see it gone.
    #[test]
    fn local_jobs_run_detached_and_cancel_as_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let script = dir.path().join("job.sh");
        std::fs::write(
            &script,
            format!(
                "echo \"$RDASK_LOCAL_JOB_ID\" > {}\nsleep 300 & wait\n",
                marker.display()
            ),
        )
        .unwrap();
        let t = Duration::from_secs(10);
        let out = command::run_checked(&Local.submit(&script, &[]), t).unwrap();
        let id = Local.parse_job_id(&out).expect("pid");
        let ids = vec![id.clone()];
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&marker)
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "job never wrote its marker");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap().trim(),
            id,
            "job sees its own id"
        );
        let states = Local
            .parse_states(&command::run(&Local.status(&ids), t).unwrap(), &ids)
            .unwrap();
        assert_eq!(states[&id], JobState::Running);
        command::run_checked(&Local.cancel(&ids, &[]), t).unwrap();
        loop {
            let states = Local
                .parse_states(&command::run(&Local.status(&ids), t).unwrap(), &ids)
                .unwrap();
            if states[&id] == JobState::Gone {
                break;
            }
            assert!(Instant::now() < deadline, "cancelled job still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        let again = command::run(&Local.cancel(&ids, &[]), t).unwrap();
        assert!(
            again.code == Some(0) || Local.cancel_failure_is_harmless(&again),
            "{again:?}"
        );
    }
}
