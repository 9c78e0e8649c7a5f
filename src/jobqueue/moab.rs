//! Moab (over Torque): `#PBS` directives, `msub`, `showq --xml`, `canceljob`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, id_number, BatchSystem, Invocation, JobState, MpiJob, Output, Site};
use crate::config::{JobConfig, SystemKind};
use crate::units::ByteSize;

pub struct Moab;

impl BatchSystem for Moab {
    fn kind(&self) -> SystemKind {
        SystemKind::Moab
    }

    fn directive_prefix(&self) -> &'static str {
        "#PBS"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("moab.sh.j2", include_str!("../../templates/moab.sh.j2"))
    }

    fn format_memory(&self, memory: ByteSize, _site: &Site) -> String {
        super::pbs::pbs_memory(memory)
    }

    fn memory_request(&self, cfg: &JobConfig, _site: &Site) -> String {
        super::pbs::pbs_memory_request(cfg)
    }

    /// Moab over Torque reads `#PBS` directives: PBS's header.
    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        super::pbs::pbs_header(cfg)
    }

    fn mpi_job(&self, cfg: &JobConfig, ranks: u32, _site: &Site) -> Option<MpiJob> {
        Some(super::pbs::pbs_mpi_job(cfg, ranks))
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["msub".to_string()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    /// msub prints the id alone on a line, usually after a blank line.
    fn parse_job_id(&self, out: &Output) -> Option<String> {
        let line = out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        (!line.contains(' ') && line.chars().any(|c| c.is_ascii_digit())).then(|| line.to_string())
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["canceljob".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        let mut complaints = out
            .stderr
            .lines()
            .filter(|l| l.contains("ERROR"))
            .peekable();
        complaints.peek().is_some()
            && complaints
                .all(|l| l.contains("invalid job specified") || l.contains("cannot locate job"))
    }

    /// `showq --xml` lists active, eligible and blocked jobs; finished jobs leave it.
    fn status(&self, _ids: &[String]) -> Invocation {
        Invocation::new(["showq", "--xml"])
    }

    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.code != Some(0) {
            return Err("showq failed".into());
        }
        let mut seen = BTreeMap::new();
        for element in out.stdout.split("<job ").skip(1) {
            let element = &element[..element.find('>').unwrap_or(element.len())];
            let (Some(job), Some(state)) = (
                xml_attribute(element, "JobID"),
                xml_attribute(element, "State"),
            ) else {
                continue;
            };
            if let Some(id) = ids
                .iter()
                .find(|i| self.canonical_id(i) == self.canonical_id(job))
            {
                seen.insert(id.clone(), state_of(state));
            }
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["MOAB_JOBID", "PBS_JOBID"]
    }

    /// Torque's mother superior gives every task it starts PBS_JOBID; MOAB_JOBID only the
    /// job script's shell.
    fn launch_job_id_variable(&self) -> Option<&'static str> {
        Some("PBS_JOBID")
    }

    /// msub prints `Moab.1234`, Torque's PBS_JOBID says `1234.torque01`, showq `1234`:
    /// all are job 1234.
    fn canonical_id<'a>(&self, id: &'a str) -> &'a str {
        id_number(id.strip_prefix("Moab.").unwrap_or(id))
    }

    /// `Moab.123` as msub prints it, or a PBS id (`123`, `123.server`, `123[4]`).
    fn is_job_id(&self, id: &str) -> bool {
        super::pbs::is_pbs_job_id(id.strip_prefix("Moab.").unwrap_or(id))
    }

    fn job_id_forms(&self) -> &'static str {
        "Moab.123, 123 or 123.server"
    }
}

/// The value of `name="..."` inside one XML start tag.
fn xml_attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let mut from = 0;
    while let Some(pos) = tag[from..].find(&key) {
        let at = from + pos;
        // A whole attribute name, not the tail of another ("SubJobID").
        if at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace() {
            let rest = &tag[at + key.len()..];
            return Some(&rest[..rest.find('"')?]);
        }
        from = at + key.len();
    }
    None
}

fn state_of(state: &str) -> JobState {
    match state {
        "Idle" | "Hold" | "UserHold" | "SystemHold" | "BatchHold" | "Deferred" | "Staging"
        | "Blocked" | "NotQueued" => JobState::Pending,
        "Running" | "Starting" | "Suspended" => JobState::Running,
        "Completed" => JobState::Completed,
        "Removed" | "Vacated" => JobState::Cancelled,
        _ => JobState::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_msub_ids_and_showq_xml() {
        let sub = Output {
            code: Some(0),
            stdout: "\n1234\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Moab.parse_job_id(&sub).as_deref(), Some("1234"));
        let xml = r#"<Data><Object>queue</Object><queue count="1" option="active"><job AWDuration="3" JobID="1234" JobName="rdask-worker" State="Running"></job></queue><queue count="1" option="eligible"><job JobID="1235" State="Idle"></job></queue><queue count="0" option="blocked"></queue></Data>"#;
        let ids: Vec<String> = ["1234", "1235", "1236"].map(String::from).to_vec();
        let s = Moab
            .parse_states(
                &Output {
                    code: Some(0),
                    stdout: xml.into(),
                    stderr: String::new(),
                },
                &ids,
            )
            .unwrap();
        assert_eq!(
            s.values().copied().collect::<Vec<_>>(),
            [JobState::Running, JobState::Pending, JobState::Gone]
        );
    }

    #[test]
    fn every_showq_state_has_its_place() {
        use JobState::*;
        for s in [
            "Idle",
            "Hold",
            "UserHold",
            "SystemHold",
            "BatchHold",
            "Deferred",
            "Staging",
            "Blocked",
            "NotQueued",
        ] {
            assert_eq!(state_of(s), Pending, "{s}");
        }
        for s in ["Running", "Starting", "Suspended"] {
            assert_eq!(state_of(s), Running, "{s}");
        }
        assert_eq!(state_of("Completed"), Completed);
        assert_eq!(state_of("Removed"), Cancelled);
        assert_eq!(state_of("Vacated"), Cancelled);
        assert_eq!(state_of("Unknown"), Gone);
    }

    /// A showq id matches the ledger's whichever way it is spelt.
    #[test]
    fn showq_ids_match_every_spelling() {
        let xml = r#"<Data><queue option="active"><job JobID="Moab.77" State="Running"></job><job JobID="78" State="Idle"></job></queue></Data>"#;
        let ids: Vec<String> = ["77.torque01", "Moab.78"].map(String::from).to_vec();
        let s = Moab
            .parse_states(
                &Output {
                    code: Some(0),
                    stdout: xml.into(),
                    stderr: String::new(),
                },
                &ids,
            )
            .unwrap();
        assert_eq!(s["77.torque01"], JobState::Running);
        assert_eq!(s["Moab.78"], JobState::Pending);
    }
}
