//! OAR: `oarsub -S script` (-S makes oarsub read the `#OAR` lines), `oarstat -J`, `oardel`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, is_number, BatchSystem, Invocation, JobState, Output, Site};
use crate::config::{JobConfig, SystemKind};

pub struct Oar;

impl BatchSystem for Oar {
    fn kind(&self) -> SystemKind {
        SystemKind::Oar
    }

    fn directive_prefix(&self) -> &'static str {
        "#OAR"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("oar.sh.j2", include_str!("../../templates/oar.sh.j2"))
    }

    /// dask-jobqueue's OARJob header. The resources must stay on one `-l` line, else OAR takes
    /// them as alternatives of a moldable job.
    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        let mut h = vec![format!("#OAR -n {}", cfg.job_name)];
        if let Some(q) = &cfg.queue {
            h.push(format!("#OAR -q {q}"));
        }
        if let Some(a) = &cfg.account {
            h.push(format!("#OAR --project {a}"));
        }
        let resources = cfg
            .resource_spec
            .clone()
            .unwrap_or_else(|| format!("/nodes=1/core={}", cfg.job_cpu.unwrap_or(cfg.cores)));
        h.push(format!(
            "#OAR -l {resources},walltime={}",
            self.format_walltime(cfg.walltime)
        ));
        if let Some(dir) = &cfg.log_directory {
            let (dir, name) = (dir.display(), &cfg.job_name);
            h.push(format!("#OAR -O {dir}/{name}-%jobid%.out"));
            h.push(format!("#OAR -E {dir}/{name}-%jobid%.err"));
        }
        // The memory property's name is site-specific, so it is only asked for when named.
        if let Some(property) = &cfg.memory_per_core_property_name {
            let memory = cfg.requested_memory();
            let mib = memory.oar_mib_per_core(cfg.job_cpu.unwrap_or(cfg.cores));
            h.push(format!("#OAR -p {property}>={mib}"));
        }
        h
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["oarsub".to_string()];
        argv.extend(extra.iter().cloned());
        argv.push("-S".into());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    fn parse_job_id(&self, out: &Output) -> Option<String> {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("OAR_JOB_ID="))
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["oardel".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        // oardel calls an unknown (purged) id another user's job.
        let harmless = [
            "does not exist",
            "already killed",
            "not in a killable state",
            "not the right user",
        ];
        let mut complaints = out
            .stderr
            .lines()
            .filter(|l| l.contains("Cannot frag"))
            .peekable();
        complaints.peek().is_some() && complaints.all(|l| harmless.iter().any(|h| l.contains(h)))
    }

    fn status(&self, ids: &[String]) -> Invocation {
        // -f: only the full view carries exit_code (OAR 2.5).
        let mut argv = vec!["oarstat".to_string(), "-f".into(), "-J".into()];
        for id in ids {
            argv.push("-j".into());
            argv.push(id.clone());
        }
        Invocation::new(argv)
    }

    /// Reads `{"1234": {"state": "Running", "exit_code": null, ...}}`.
    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.stdout.trim().is_empty() {
            return if out.code == Some(0) {
                Ok(fill_gone(ids, BTreeMap::new()))
            } else {
                Err("oarstat failed".into())
            };
        }
        let doc: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("oarstat JSON: {e}"))?;
        let mut seen = BTreeMap::new();
        for (id, job) in doc.as_object().into_iter().flatten() {
            let state = job.get("state").and_then(|s| s.as_str()).unwrap_or("");
            let exit = job.get("exit_code").and_then(|e| e.as_i64());
            seen.insert(id.clone(), state_of(state, exit));
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["OAR_JOB_ID", "OAR_JOBID"]
    }

    fn is_job_id(&self, id: &str) -> bool {
        is_number(id)
    }

    fn job_id_forms(&self) -> &'static str {
        "a number such as 123"
    }
}

fn state_of(state: &str, exit: Option<i64>) -> JobState {
    match state {
        "Waiting" | "Hold" | "toLaunch" | "toAckReservation" | "Launching" => JobState::Pending,
        "Running" | "Finishing" | "Suspended" | "Resuming" => JobState::Running,
        "Terminated" => match exit {
            Some(0) | None => JobState::Completed,
            Some(_) => JobState::Failed,
        },
        "Error" | "toError" => JobState::Failed,
        _ => JobState::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_json_states() {
        let sub = Output {
            code: Some(0),
            stdout: "[ADMISSION RULE] Set default walltime\nOAR_JOB_ID=1234\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Oar.parse_job_id(&sub).as_deref(), Some("1234"));
        let ids: Vec<String> = ["1", "2", "3", "4"].map(String::from).to_vec();
        let out = Output {
            code: Some(0),
            stdout: r#"{"1":{"state":"Waiting"},"2":{"state":"Running"},"3":{"state":"Error","exit_code":null}}"#.into(),
            stderr: String::new(),
        };
        let s = Oar.parse_states(&out, &ids).unwrap();
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
    fn every_oar_state_has_its_place() {
        use JobState::*;
        for s in [
            "Waiting",
            "Hold",
            "toLaunch",
            "toAckReservation",
            "Launching",
        ] {
            assert_eq!(state_of(s, None), Pending, "{s}");
        }
        for s in ["Running", "Finishing", "Suspended", "Resuming"] {
            assert_eq!(state_of(s, None), Running, "{s}");
        }
        assert_eq!(state_of("Terminated", Some(0)), Completed);
        assert_eq!(state_of("Terminated", None), Completed);
        assert_eq!(state_of("Terminated", Some(1)), Failed);
        assert_eq!(state_of("Error", None), Failed);
        assert_eq!(state_of("toError", None), Failed);
        assert_eq!(state_of("Unknown", None), Gone);
    }
}
