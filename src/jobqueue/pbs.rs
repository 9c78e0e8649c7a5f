//! PBS Pro / OpenPBS: `qsub`, `qstat -x -f -F json`, `qdel`. Moab reuses the header.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    fill_gone, is_number_with_index, is_server_name, BatchSystem, Invocation, JobState, MpiJob,
    Output, Site,
};
use crate::config::{JobConfig, SystemKind};
use crate::units::ByteSize;

pub struct Pbs;

/// dask-jobqueue's PBSJob header, shared with Moab (which reads `#PBS` lines too).
pub fn pbs_header(cfg: &JobConfig) -> Vec<String> {
    let mut h = vec![format!("#PBS -N {}", cfg.job_name)];
    if let Some(q) = &cfg.queue {
        h.push(format!("#PBS -q {q}"));
    }
    if let Some(a) = &cfg.account {
        h.push(format!("#PBS -A {a}"));
    }
    let resources = match &cfg.resource_spec {
        Some(spec) => spec.clone(),
        None => format!(
            "select=1:ncpus={}:mem={}",
            cfg.job_cpu.unwrap_or(cfg.cores),
            pbs_memory_request(cfg)
        ),
    };
    h.push(format!("#PBS -l {resources}"));
    h.push(format!("#PBS -l walltime={}", cfg.walltime.hhmmss()));
    if let Some(dir) = &cfg.log_directory {
        h.push(format!("#PBS -e {}/", dir.display()));
        h.push(format!("#PBS -o {}/", dir.display()));
    }
    h
}

/// The `mem=` of a job: `job_mem` as written when PBS reads that spelling (`100gb`,
/// `512mb`, bytes), else converted like `memory`.
pub(crate) fn pbs_memory_request(cfg: &JobConfig) -> String {
    match &cfg.job_mem {
        Some(request) if pbs_reads_as_size(&request.text) => request.text.clone(),
        Some(request) => pbs_memory(request.bytes),
        None => pbs_memory(cfg.memory),
    }
}

/// PBS's size spelling: a whole number, then b, kb, mb, gb, tb or pb (any case, binary
/// units) or nothing (bytes, as ours).
fn pbs_reads_as_size(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let unit = text[digits..].to_ascii_lowercase();
    digits > 0 && matches!(unit.as_str(), "" | "b" | "kb" | "mb" | "gb" | "tb" | "pb")
}

/// PBS's (and Torque's, so Moab's) memory request: a whole number of the largest fitting unit.
pub(crate) fn pbs_memory(memory: ByteSize) -> String {
    memory.pbs()
}

/// The MPI runner's PBS header (also Moab's, which reads `#PBS` directives): one chunk per
/// rank. PBS starts the job in $HOME, so the script changes to where it was submitted.
pub(crate) fn pbs_mpi_job(cfg: &JobConfig, ranks: u32) -> MpiJob {
    let cores = cfg.cores.max(1);
    let mut header = vec![format!("#PBS -N {}", cfg.job_name)];
    if let Some(q) = &cfg.queue {
        header.push(format!("#PBS -q {q}"));
    }
    if let Some(a) = &cfg.account {
        header.push(format!("#PBS -A {a}"));
    }
    header.push(format!(
        "#PBS -l select={ranks}:ncpus={cores}:mpiprocs=1:mem={}",
        pbs_memory(cfg.memory)
    ));
    header.push(format!("#PBS -l walltime={}", cfg.walltime.hhmmss()));
    MpiJob {
        header,
        setup: vec!["cd \"$PBS_O_WORKDIR\"".into()],
        launcher: format!("mpirun -np {ranks}"),
    }
}

pub(crate) fn only_unknown_ids(stderr: &str) -> bool {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.all(|l| l.contains("Unknown Job Id") || l.contains("Job has finished"))
}

impl BatchSystem for Pbs {
    fn kind(&self) -> SystemKind {
        SystemKind::Pbs
    }

    fn directive_prefix(&self) -> &'static str {
        "#PBS"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("pbs.sh.j2", include_str!("../../templates/pbs.sh.j2"))
    }

    fn format_memory(&self, memory: ByteSize, _site: &Site) -> String {
        pbs_memory(memory)
    }

    fn memory_request(&self, cfg: &JobConfig, _site: &Site) -> String {
        pbs_memory_request(cfg)
    }

    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        pbs_header(cfg)
    }

    fn mpi_job(&self, cfg: &JobConfig, ranks: u32, _site: &Site) -> Option<MpiJob> {
        Some(pbs_mpi_job(cfg, ranks))
    }

    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["qsub".to_string()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    /// qsub prints "1234.server".
    fn parse_job_id(&self, out: &Output) -> Option<String> {
        let line = out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        line.chars()
            .next()?
            .is_ascii_digit()
            .then(|| line.to_string())
    }

    /// PBS Pro's `-J 1-N`: subjobs 1..N, each `ID[K].server`, cancelled alone.
    fn submit_array(
        &self,
        script: &Path,
        _name: &str,
        count: usize,
        extra: &[String],
    ) -> Option<Invocation> {
        if count < 2 {
            return None;
        }
        let mut argv = vec!["qsub".to_string(), "-J".into(), format!("1-{count}")];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Some(Invocation::new(argv))
    }

    /// qsub prints the array as `1234[].server`; its subjobs are `1234[K].server`, as their
    /// own `PBS_JOBID` spells them.
    fn parse_array_ids(&self, out: &Output, count: usize) -> Option<Vec<String>> {
        let id = self.parse_job_id(out)?;
        let (number, server) = id.split_once("[]")?;
        Some(
            (1..=count)
                .map(|k| format!("{number}[{k}]{server}"))
                .collect(),
        )
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["qdel".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        only_unknown_ids(&out.stderr)
    }

    fn status(&self, ids: &[String]) -> Invocation {
        let mut argv = vec![
            "qstat".to_string(),
            "-x".into(),
            "-f".into(),
            "-F".into(),
            "json".into(),
        ];
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    /// Reads `{"Jobs": {"ID": {"job_state": "R", "Exit_status": 0}}}`. qstat exits non-zero
    /// when some ids are unknown, but still prints the others.
    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.stdout.trim().is_empty() {
            if out.code == Some(0) || only_unknown_ids(&out.stderr) {
                return Ok(fill_gone(ids, BTreeMap::new()));
            }
            return Err("qstat printed nothing".into());
        }
        let doc: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("qstat JSON: {e}"))?;
        let mut seen = BTreeMap::new();
        if let Some(jobs) = doc.get("Jobs").and_then(|j| j.as_object()) {
            for (full_id, job) in jobs {
                let state = job.get("job_state").and_then(|s| s.as_str()).unwrap_or("");
                let exit = job.get("Exit_status").and_then(|e| e.as_i64());
                let state = state_of(state, exit);
                // Report under the id the caller used, which may lack the server's domain.
                let id = ids
                    .iter()
                    .find(|i| self.canonical_id(i) == self.canonical_id(full_id))
                    .cloned()
                    .unwrap_or_else(|| full_id.clone());
                seen.insert(id, state);
            }
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["PBS_JOBID"]
    }

    fn launch_job_id_variable(&self) -> Option<&'static str> {
        Some("PBS_JOBID")
    }

    /// `123`, `123.server`, array jobs `123[]` and tasks `123[4]`, with or without server.
    fn is_job_id(&self, id: &str) -> bool {
        is_pbs_job_id(id)
    }

    fn job_id_forms(&self) -> &'static str {
        "123, 123.server, 123[].server or 123[4].server"
    }
}

/// PBS states: Q queued, H held, W waiting, T transit, R running, E exiting, S/U suspended,
/// B array begun, F finished (with -x), X subjob finished.
fn state_of(state: &str, exit: Option<i64>) -> JobState {
    match state {
        "Q" | "H" | "W" | "T" | "M" => JobState::Pending,
        "R" | "E" | "S" | "U" | "B" => JobState::Running,
        "F" | "X" => match exit {
            Some(0) => JobState::Completed,
            // 256 + signal: killed by qdel (SIGTERM 271, SIGKILL 265); no exit status at all:
            // deleted while still queued.
            Some(code) if code > 256 => JobState::Cancelled,
            None => JobState::Cancelled,
            // Other codes are the job's own; negative ones are PBS's (e.g. -29 walltime).
            Some(_) => JobState::Failed,
        },
        _ => JobState::Gone,
    }
}

/// A PBS job id: `NUMBER[INDEX]` with an optional `.server` (Moab prints the same).
pub(crate) fn is_pbs_job_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((job, server)) => is_number_with_index(job, true) && is_server_name(server),
        None => is_number_with_index(id, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in's (tests/standins/pbs) forms, as PBS Pro documents them: `qsub -J 1-3`
    /// prints `1000[].pbsserver`; a subjob is `1000[2].pbsserver` to qstat, qdel and its
    /// own PBS_JOBID, and a job of its own to the ledger.
    #[test]
    fn arrays_are_submitted_once_and_their_subjobs_named_alone() {
        let inv = Pbs
            .submit_array(Path::new("/c/job.sh"), "rdask-c-3", 3, &[])
            .unwrap();
        assert_eq!(inv.argv, ["qsub", "-J", "1-3", "/c/job.sh"]);
        let printed = Output {
            code: Some(0),
            stdout: "1000[].pbsserver\n".into(),
            stderr: String::new(),
        };
        let ids = Pbs.parse_array_ids(&printed, 3).unwrap();
        assert_eq!(
            ids,
            [
                "1000[1].pbsserver",
                "1000[2].pbsserver",
                "1000[3].pbsserver"
            ]
        );
        assert!(ids.iter().all(|id| Pbs.is_job_id(id)));
        assert_ne!(Pbs.canonical_id(&ids[0]), Pbs.canonical_id(&ids[1]));
        assert_eq!(Pbs.canonical_id("1000[2].pbsserver.example.org"), "1000[2]");
        // A plain id is not an array.
        let plain = Output {
            stdout: "1004.pbsserver\n".into(),
            ..printed
        };
        assert_eq!(Pbs.parse_array_ids(&plain, 3), None);
    }

    #[test]
    fn job_mem_goes_as_written_only_in_pbs_size_spelling() {
        let cfg = |job_mem: &str| JobConfig {
            job_mem: Some(job_mem.parse().unwrap()),
            ..JobConfig::default()
        };
        assert_eq!(pbs_memory_request(&cfg("100gb")), "100gb");
        assert_eq!(pbs_memory_request(&cfg("64GB")), "64GB");
        assert_eq!(pbs_memory_request(&cfg("4000000000")), "4000000000");
        // Not PBS's spelling: converted as `memory` is.
        assert_eq!(pbs_memory_request(&cfg("20GiB")), "20GB");
        assert_eq!(pbs_memory_request(&cfg("1.5GB")), "1431MB");
        assert_eq!(pbs_memory_request(&JobConfig::default()), "4096MB");
    }

    #[test]
    fn reads_json_states_with_exit_codes() {
        let ids: Vec<String> = [
            "1000.pbsserver",
            "1001.pbsserver",
            "1002",
            "1003.pbsserver",
            "1004.pbsserver",
        ]
        .map(String::from)
        .to_vec();
        let stdout = r#"{"timestamp":1, "pbs_version":"19.1.3", "pbs_server":"pbsserver", "Jobs":{
            "1000.pbsserver":{"job_state":"Q"},
            "1001.pbsserver":{"job_state":"R"},
            "1002.pbsserver.example.org":{"job_state":"F","Exit_status":0},
            "1003.pbsserver":{"job_state":"F","Exit_status":271}}}"#;
        let out = Output {
            code: Some(153),
            stdout: stdout.into(),
            stderr: "qstat: Unknown Job Id 1004.pbsserver\n".into(),
        };
        let s = Pbs.parse_states(&out, &ids).unwrap();
        assert_eq!(s["1000.pbsserver"], JobState::Pending);
        assert_eq!(s["1001.pbsserver"], JobState::Running);
        assert_eq!(s["1002"], JobState::Completed);
        assert_eq!(s["1003.pbsserver"], JobState::Cancelled);
        assert_eq!(s["1004.pbsserver"], JobState::Gone);
    }

    #[test]
    fn reads_the_id_qsub_prints() {
        let out = Output {
            code: Some(0),
            stdout: "1234.pbsserver\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Pbs.parse_job_id(&out).as_deref(), Some("1234.pbsserver"));
    }

    /// Every job_state letter, and a finished job's exit status (PBS adds 256 to a signal's
    /// number: a killed job is cancelled).
    #[test]
    fn every_job_state_has_its_place() {
        use JobState::*;
        for s in ["Q", "H", "W", "T", "M"] {
            assert_eq!(state_of(s, None), Pending, "{s}");
        }
        for s in ["R", "E", "S", "U", "B"] {
            assert_eq!(state_of(s, None), Running, "{s}");
        }
        for s in ["F", "X"] {
            assert_eq!(state_of(s, Some(0)), Completed);
            assert_eq!(state_of(s, Some(1)), Failed);
            assert_eq!(state_of(s, Some(265)), Cancelled);
            assert_eq!(state_of(s, None), Cancelled);
        }
        assert_eq!(state_of("Z", None), Gone);
    }
}
