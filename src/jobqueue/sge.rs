//! Grid Engine (SGE, Son of Grid Engine, OGS): `qsub -terse`, `qstat`, `qdel`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    fill_gone, indices, is_number, BatchSystem, Invocation, JobState, MpiJob, Output, Site,
};
use crate::config::{JobConfig, SystemKind};

pub struct Sge;

impl BatchSystem for Sge {
    fn kind(&self) -> SystemKind {
        SystemKind::Sge
    }

    fn directive_prefix(&self) -> &'static str {
        "#$"
    }

    /// dask-jobqueue's SGEJob header. Memory is not turned into a request: sites differ
    /// (h_vmem, mem_free, m_mem_free), so users state it in `resource_spec`.
    fn template(&self) -> (&'static str, &'static str) {
        ("sge.sh.j2", include_str!("../../templates/sge.sh.j2"))
    }

    /// Grid Engine counts slots: one rank per slot of the `mpi` parallel environment, with
    /// `cores` threads each only if the environment grants that many cores per slot.
    fn mpi_job(&self, cfg: &JobConfig, ranks: u32, _site: &Site) -> Option<MpiJob> {
        let mut header = vec![format!("#$ -N {}", cfg.job_name)];
        if let Some(q) = &cfg.queue {
            header.push(format!("#$ -q {q}"));
        }
        if let Some(a) = &cfg.account {
            header.push(format!("#$ -P {a}"));
        }
        header.push(format!("#$ -pe mpi {ranks}"));
        header.push(format!("#$ -l h_rt={}", self.format_walltime(cfg.walltime)));
        header.push("#$ -cwd".into());
        header.push("#$ -j y".into());
        Some(MpiJob {
            header,
            setup: Vec::new(),
            launcher: "mpirun -np \"$NSLOTS\"".into(),
        })
    }

    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        let mut h = vec![format!("#$ -N {}", cfg.job_name)];
        if let Some(q) = &cfg.queue {
            h.push(format!("#$ -q {q}"));
        }
        if let Some(a) = &cfg.account {
            h.push(format!("#$ -P {a}"));
        }
        if let Some(spec) = &cfg.resource_spec {
            h.push(format!("#$ -l {spec}"));
        }
        h.push(format!("#$ -l h_rt={}", self.format_walltime(cfg.walltime)));
        if let Some(dir) = &cfg.log_directory {
            h.push(format!("#$ -e {}/", dir.display()));
            h.push(format!("#$ -o {}/", dir.display()));
        }
        h.push("#$ -cwd".into());
        h.push("#$ -j y".into());
        h
    }

    /// `-terse` prints just the id; `-w e` rejects a request no queue can ever satisfy instead
    /// of leaving it pending forever.
    fn submit(&self, script: &Path, extra: &[String]) -> Invocation {
        let mut argv = vec!["qsub".to_string(), "-terse".into(), "-w".into(), "e".into()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Invocation::new(argv)
    }

    fn parse_job_id(&self, out: &Output) -> Option<String> {
        let line = out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        // Array jobs print "ID.1-10:1".
        let id = line.split('.').next()?;
        id.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| id.to_string())
    }

    /// Tasks 1..count (Grid Engine numbers tasks from 1); `qdel 123.4` cancels one.
    fn submit_array(
        &self,
        script: &Path,
        _name: &str,
        count: usize,
        extra: &[String],
    ) -> Option<Invocation> {
        if count == 0 {
            return None;
        }
        let mut argv = vec![
            "qsub".to_string(),
            "-terse".into(),
            "-w".into(),
            "e".into(),
            "-t".into(),
            format!("1-{count}"),
        ];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Some(Invocation::new(argv))
    }

    /// `-terse` prints `123.1-4:1`; the tasks are `123.1` .. `123.{count}`.
    fn parse_array_ids(&self, out: &Output, count: usize) -> Option<Vec<String>> {
        let id = self.parse_job_id(out)?;
        Some((1..=count).map(|k| format!("{id}.{k}")).collect())
    }

    fn cancel(&self, ids: &[String], extra: &[String]) -> Invocation {
        let mut argv = vec!["qdel".to_string()];
        argv.extend(extra.iter().cloned());
        argv.extend(ids.iter().cloned());
        Invocation::new(argv)
    }

    fn cancel_failure_is_harmless(&self, out: &Output) -> bool {
        let text = format!("{}{}", out.stdout, out.stderr);
        let mut complaints = text
            .lines()
            .filter(|l| l.starts_with("denied") || l.contains("does not exist"))
            .peekable();
        complaints.peek().is_some() && complaints.all(|l| l.contains("does not exist"))
    }

    /// `qstat -g d` lists this user's pending and running jobs, one line per array task
    /// (plain `qstat` compresses pending tasks into `9-12:1`); finished jobs leave it.
    fn status(&self, _ids: &[String]) -> Invocation {
        Invocation::new(["qstat", "-g", "d"])
    }

    fn parse_states(
        &self,
        out: &Output,
        ids: &[String],
    ) -> Result<BTreeMap<String, JobState>, String> {
        if out.code != Some(0) {
            return Err("qstat failed".into());
        }
        let mut seen = BTreeMap::new();
        for line in out.stdout.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            // job-ID prior name user state submit/start-at queue slots ja-task-ID; a job not
            // yet placed has no queue, a plain job no task column.
            if words.len() < 8 || !is_number(words[0]) {
                continue;
            }
            let state = state_of(words[4]);
            let task_column = if words[7].contains('@') { 9 } else { 8 };
            let keys = match words.get(task_column) {
                None => vec![words[0].to_string()],
                // Still compressed by an older qstat: `9-12:1`, `1,2`.
                Some(tasks) => indices::expand(tasks)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| format!("{}.{t}", words[0]))
                    .collect(),
            };
            for key in keys {
                if ids.contains(&key) {
                    seen.insert(key, state);
                }
            }
        }
        Ok(fill_gone(ids, seen))
    }

    fn job_id_variables(&self) -> &'static [&'static str] {
        &["JOB_ID"]
    }

    fn launch_job_id_variable(&self) -> Option<&'static str> {
        Some("JOB_ID")
    }

    /// A task of an array is `JOB_ID.SGE_TASK_ID`; other jobs have the task id `undefined`.
    fn job_id_from_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let job = env("JOB_ID").filter(|j| !j.is_empty())?;
        match env("SGE_TASK_ID").filter(|t| is_number(t)) {
            Some(task) => Some(format!("{job}.{task}")),
            None => Some(job),
        }
    }

    /// Grid Engine ids carry no server name: `123.4` is task 4 of job 123, a job of its own
    /// to the ledger, not another spelling of 123.
    fn canonical_id<'a>(&self, id: &'a str) -> &'a str {
        id
    }

    /// `123`, or one task of an array job `123.4`.
    fn is_job_id(&self, id: &str) -> bool {
        match id.split_once('.') {
            Some((job, task)) => is_number(job) && is_number(task),
            None => is_number(id),
        }
    }

    fn job_id_forms(&self) -> &'static str {
        "a number such as 123, or 123.4 (array task)"
    }

    /// `qdel` takes job names as well as ids.
    /// `-w v`: would the job run in an empty cluster (queue, PE, resources)? Queues nothing.
    fn dry_run(&self, script: &Path, extra: &[String]) -> Option<Invocation> {
        let mut argv = vec!["qsub".to_string(), "-w".into(), "v".into()];
        argv.extend(extra.iter().cloned());
        argv.push(script.display().to_string());
        Some(Invocation::new(argv))
    }

    fn cancel_by_name(&self, name: &str, _script: &Path, extra: &[String]) -> Option<Invocation> {
        Some(self.cancel(&[name.to_string()], extra))
    }
}

/// Grid Engine state letters: q queued, w waiting, h hold, r running, t transferring,
/// R restarted, s/S/T suspended, d deletion, E error.
/// `d` marks a job being deleted: while it still runs (`dr`, `dt`) its processes are alive,
/// so it is running until it vanishes (as SLURM's COMPLETING is), which is what lets `down`
/// promise that nothing of ours is left; a deleted job that never ran is cancelled.
fn state_of(state: &str) -> JobState {
    let running = ['r', 't', 's', 'S', 'T'].iter().any(|c| state.contains(*c));
    if state.contains('E') {
        JobState::Failed
    } else if state.contains('d') && !running {
        JobState::Cancelled
    } else if state.contains('r')
        || state.contains('t')
        || state.contains('s')
        || state.contains('S')
        || state.contains('T')
    {
        JobState::Running
    } else if state.contains('q') || state.contains('w') || state.contains('h') {
        JobState::Pending
    } else {
        JobState::Gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_qstat_table() {
        let stdout = "\
job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID
-----------------------------------------------------------------------------------------------------------------
      7 0.55500 rdask-work root         r     11/22/2026 04:00:01 all.q@vm                           1
      8 0.00000 rdask-work root         qw    11/22/2026 04:00:02                                    1
      9 0.00000 rdask-work root         Eqw   11/22/2026 04:00:02                                    1
     10 0.55500 rdask-work root         dr    11/22/2026 04:00:01 all.q@vm                           1
     11 0.55500 other      root         r     11/22/2026 04:00:01 all.q@vm                           1
";
        let ids: Vec<String> = ["7", "8", "9", "10", "12"].map(String::from).to_vec();
        let s = Sge
            .parse_states(
                &Output {
                    code: Some(0),
                    stdout: stdout.into(),
                    stderr: String::new(),
                },
                &ids,
            )
            .unwrap();
        assert_eq!(s["7"], JobState::Running);
        assert_eq!(s["8"], JobState::Pending);
        assert_eq!(s["9"], JobState::Failed);
        assert_eq!(s["10"], JobState::Running);
        assert_eq!(s["12"], JobState::Gone);
        assert!(!s.contains_key("11"));
    }

    /// Captured on the test environment's Grid Engine 8.1.9: `qsub -terse -t 1-12` printed
    /// `407.1-12:1`; `qstat -g d` one line per task; `qdel 407.2 409.3` cancels two tasks,
    /// and an unknown task is `job "407" task "99" does not exist`.
    #[test]
    fn arrays_are_submitted_once_and_polled_per_task() {
        let inv = Sge
            .submit_array(Path::new("/c/job.sh"), "rdask-c-3", 12, &[])
            .unwrap();
        assert_eq!(
            inv.argv,
            ["qsub", "-terse", "-w", "e", "-t", "1-12", "/c/job.sh"]
        );
        let terse = Output {
            code: Some(0),
            stdout: "407.1-12:1\n".into(),
            stderr: String::new(),
        };
        let ids = Sge.parse_array_ids(&terse, 3).unwrap();
        assert_eq!(ids, ["407.1", "407.2", "407.3"]);
        let stdout = "\
job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID 
-----------------------------------------------------------------------------------------------------------------
    407 0.75000 arrcap     root         r     12/06/2026 08:29:59 all.q@vm                           1 1
    407 0.75000 arrcap     root         qw    12/06/2026 08:29:59                                    1 9
    407 0.75000 arrcap     root         dr    12/06/2026 08:29:59 all.q@vm                           1 2
    408 0.25000 arrcap     root         qw    12/06/2026 08:30:00                                    1        
    409 0.00000 arrcap     root         hqw   12/06/2026 08:30:00                                    1 1,2
    410 0.00000 arrcap     root         qw    12/06/2026 08:30:00                                    1 5-7:2
";
        let ids: Vec<String> = [
            "407.1", "407.2", "407.3", "407.9", "408", "409.2", "410.7", "410.6",
        ]
        .map(String::from)
        .to_vec();
        let out = Output {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        };
        let s = Sge.parse_states(&out, &ids).unwrap();
        use JobState::*;
        assert_eq!(
            ids.iter().map(|i| s[i]).collect::<Vec<_>>(),
            [Running, Running, Gone, Pending, Pending, Pending, Pending, Gone]
        );
        let unknown_task = Output {
            code: Some(1),
            stdout: String::new(),
            stderr: "job \"407\" task \"99\" does not exist\n".into(),
        };
        assert!(Sge.cancel_failure_is_harmless(&unknown_task));
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let task = env(&[("JOB_ID", "407"), ("SGE_TASK_ID", "4")]);
        assert_eq!(Sge.job_id_from_env(&task).as_deref(), Some("407.4"));
        let plain = env(&[("JOB_ID", "408"), ("SGE_TASK_ID", "undefined")]);
        assert_eq!(Sge.job_id_from_env(&plain).as_deref(), Some("408"));
        assert_ne!(Sge.canonical_id("407.4"), Sge.canonical_id("407.5"));
    }

    #[test]
    fn reads_terse_ids_and_harmless_cancels() {
        let ok = Output {
            code: Some(0),
            stdout: "42\n".into(),
            stderr: String::new(),
        };
        assert_eq!(Sge.parse_job_id(&ok).as_deref(), Some("42"));
        let gone = Output {
            code: Some(1),
            stdout: String::new(),
            stderr: "denied: job \"999\" does not exist\n".into(),
        };
        assert!(Sge.cancel_failure_is_harmless(&gone));
        let other = Output {
            code: Some(1),
            stdout: String::new(),
            stderr: "error: commlib error\n".into(),
        };
        assert!(!Sge.cancel_failure_is_harmless(&other));
    }

    /// qstat's state letters: an error wins, a deletion counts only once it stops running.
    #[test]
    fn every_state_letter_has_its_place() {
        use JobState::*;
        let table = [
            ("qw", Pending),
            ("hqw", Pending),
            ("r", Running),
            ("t", Running),
            ("Rr", Running),
            ("s", Running),
            ("S", Running),
            ("T", Running),
            ("dr", Running),
            ("d", Cancelled),
            ("dqw", Cancelled),
            ("Eqw", Failed),
            ("", Gone),
        ];
        for (letters, state) in table {
            assert_eq!(state_of(letters), state, "{letters}");
        }
    }
}
