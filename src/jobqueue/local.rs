//! `local`: "jobs" are detached process groups on this machine, the embedded default when no
//! batch system is there. Submitting starts the script under `setsid` (so cancelling can kill
//! the whole group, as a batch system kills a job) and prints its pid, which is the job id.
//! The job learns its id from `RDASK_LOCAL_JOB_ID`.
//!
//! A pid is not a safe handle: `kill -- -1` ends every process of the user, and any pid may
//! be someone else's. So the launcher marks each job's leader with `RDASK_LOCAL_JOB_ID=<its
//! own pid>` and `RDASK_LOCAL_JOB_SCRIPT=<its script>` in its environment, and cancelling
//! touches only processes that carry those marks.
//!
//! Only pending-free states exist: a local job runs at once, and when its process has ended
//! it is gone (its exit status belongs to whoever reaps it).

use std::collections::BTreeMap;
use std::path::Path;

use super::{fill_gone, BatchSystem, Invocation, JobState, MpiJob, Output, Site};
use crate::config::{JobConfig, SystemKind};

pub struct Local;

/// Starts `bash SCRIPT` detached, logging to SCRIPT.log beside the script, its environment
/// marked with its own pid and its script.
const SUBMIT: &str = r#"log=$1; RDASK_LOCAL_JOB_SCRIPT=$2; export RDASK_LOCAL_JOB_SCRIPT; shift 2
setsid sh -c 'RDASK_LOCAL_JOB_ID=$$; export RDASK_LOCAL_JOB_ID; exec "$@"' sh "$@" </dev/null >"$log" 2>&1 &
echo $!"#;

/// Kills the process group of every process whose environment carries both marks for the
/// script in $1: its own pid as RDASK_LOCAL_JOB_ID and exactly this script. Only this
/// user's processes can be read, and only a job started for this very script matches.
/// (`kill -TERM -PGID` without `--`: dash's built-in kill refuses `--`.)
const CANCEL_BY_SCRIPT: &str = r#"for e in /proc/[0-9]*/environ; do
  p=${e#/proc/}; p=${p%/environ}
  grep -qzxF "RDASK_LOCAL_JOB_SCRIPT=$1" "$e" 2>/dev/null &&
    grep -qzxF "RDASK_LOCAL_JOB_ID=$p" "$e" 2>/dev/null &&
    kill -TERM "-$p" 2>/dev/null
done; true"#;

impl BatchSystem for Local {
    fn kind(&self) -> SystemKind {
        SystemKind::Local
    }

    fn directive_prefix(&self) -> &'static str {
        "#LOCAL"
    }

    fn template(&self) -> (&'static str, &'static str) {
        ("local.sh.j2", include_str!("../../templates/local.sh.j2"))
    }

    /// No batch system: `mpirun` starts every rank on this machine.
    fn mpi_job(&self, _cfg: &JobConfig, ranks: u32, _site: &Site) -> Option<MpiJob> {
        Some(MpiJob {
            header: Vec::new(),
            setup: Vec::new(),
            launcher: format!("mpirun -np {ranks}"),
        })
    }

    /// A local job has no batch directives; the lines only document what it was given.
    fn header_lines(&self, cfg: &JobConfig, _site: &Site) -> Vec<String> {
        vec![format!(
            "#LOCAL name={} cores={} memory={} walltime={}",
            cfg.job_name,
            cfg.job_cpu.unwrap_or(cfg.cores),
            cfg.job_mem
                .as_ref()
                .map_or_else(|| cfg.memory.exact(), |m| m.text.clone()),
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
            script.display().to_string(),
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

    /// Only the processes our launcher started, never a pid someone typed.
    fn cancellable(&self, ids: &[String]) -> crate::error::Result<Vec<String>> {
        live_jobs(ids)
    }

    /// A process id above 1 (0 and -1 would address our own group or every process).
    fn is_job_id(&self, id: &str) -> bool {
        super::is_number(id) && id.parse::<i32>().is_ok_and(|pid| pid > 1)
    }

    fn job_id_forms(&self) -> &'static str {
        "the process id (above 1) that `jobs submit --system local` printed"
    }

    /// The job started for exactly this script (see [`CANCEL_BY_SCRIPT`]): another cluster's
    /// job of the same name, in another home, is never touched.
    fn cancel_by_name(&self, _name: &str, script: &Path, _extra: &[String]) -> Option<Invocation> {
        Some(Invocation::new([
            "sh".to_string(),
            "-c".into(),
            CANCEL_BY_SCRIPT.into(),
            "sh".into(),
            script.display().to_string(),
        ]))
    }
}

/// What /proc says about a local job id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// No such process, or it has ended (a zombie): nothing to cancel.
    Gone,
    /// A job our launcher started: its environment holds `RDASK_LOCAL_JOB_ID=<pid>`.
    OurJob,
    /// Any other process, or one we may not inspect.
    Foreign,
}

/// Reads a process's state from its `/proc/PID/stat` and `/proc/PID/environ` texts (None when
/// they could not be read). Pure, so it is tested without processes.
pub fn classify(pid: &str, stat: Option<&str>, environ: Option<&[u8]>) -> Process {
    let Some(stat) = stat else {
        return Process::Gone;
    };
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X")) {
        return Process::Gone;
    }
    let marker = format!("RDASK_LOCAL_JOB_ID={pid}");
    let has_marker =
        environ.is_some_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()));
    if has_marker {
        Process::OurJob
    } else {
        Process::Foreign
    }
}

/// How long a process may take between being started by the launcher and carrying its mark.
const MARK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The ids among `ids` that are live local jobs; an error names any live process that is not
/// one (someone else's, or not started by our launcher), and then nothing is cancelled.
pub fn live_jobs(ids: &[String]) -> crate::error::Result<Vec<String>> {
    let mut live = Vec::new();
    let look = |id: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok();
        let environ = std::fs::read(format!("/proc/{id}/environ")).ok();
        classify(id, stat.as_deref(), environ.as_deref())
    };
    for id in ids {
        let mut verdict = look(id);
        // A job the launcher has only just started carries its mark once its shell execs the
        // job script, moments after its pid was printed (/proc shows the environment of the
        // last exec): look again for a while before calling it someone else's.
        let deadline = std::time::Instant::now() + MARK_WAIT;
        while verdict == Process::Foreign && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            verdict = look(id);
        }
        match verdict {
            Process::Gone => {}
            Process::OurJob => live.push(id.clone()),
            Process::Foreign => {
                return Err(crate::error::Error::invalid(format!(
                    "process {id} is not a local job of rdask-jobqueue (its environment lacks \
                     RDASK_LOCAL_JOB_ID={id}, or it is not yours): nothing was cancelled"
                )))
            }
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobqueue::command;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    #[test]
    fn only_pids_above_one_are_job_ids() {
        for id in ["2", "1234", "4194304"] {
            assert!(Local.is_job_id(id), "{id}");
        }
        for id in [
            "1",
            "0",
            "-1",
            "",
            "+5",
            "12 3",
            "99999999999",
            "1234.x",
            "--",
            "-TERM",
        ] {
            assert!(!Local.is_job_id(id), "{id}");
        }
    }

    #[test]
    fn only_processes_with_our_marker_are_jobs() {
        let stat = "4242 (bash (x) y) S 1 4242 4242 0";
        let ours = b"PATH=/bin\0RDASK_LOCAL_JOB_ID=4242\0X=1\0";
        assert_eq!(classify("4242", Some(stat), Some(ours)), Process::OurJob);
        // Another job's mark (a child inherits its leader's) or a prefix is not ours.
        let inherited = b"RDASK_LOCAL_JOB_ID=4241\0";
        assert_eq!(
            classify("4242", Some(stat), Some(inherited)),
            Process::Foreign
        );
        let prefix = b"RDASK_LOCAL_JOB_ID=42420\0";
        assert_eq!(classify("4242", Some(stat), Some(prefix)), Process::Foreign);
        // Unreadable environment: someone else's process.
        assert_eq!(classify("4242", Some(stat), None), Process::Foreign);
        assert_eq!(classify("4242", None, None), Process::Gone);
        let zombie = "4242 (bash) Z 1 4242 4242 0";
        assert_eq!(classify("4242", Some(zombie), None), Process::Gone);
    }

    /// `jobs cancel --system local 1` ran `kill -TERM -- -1`: now a process we did not start
    /// is refused before any signal is sent.
    #[test]
    fn a_process_we_did_not_start_is_never_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let err = live_jobs(std::slice::from_ref(&pid)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(&pid), "{err}");
        let q = crate::jobqueue::JobQueue::new(&JobConfig::default());
        assert_eq!(
            q.cancel(std::slice::from_ref(&pid))
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(q.cancel(&["1".to_string()]).unwrap_err().exit_code(), 2);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process was signalled"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `down` right after a scale-up: the job's pid is printed before its shell execs the job
    /// script, and only then does /proc show its mark. Such a job is ours, not a stranger.
    #[test]
    fn a_job_still_getting_its_mark_is_ours() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3; exec env RDASK_LOCAL_JOB_ID=$$ sleep 300"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let ids = [pid];
        assert_eq!(live_jobs(&ids).unwrap(), ids);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Cancel by name matches the exact script: a job of the same name elsewhere (another
    /// home, another cluster) is left alone.
    #[test]
    fn cancel_by_name_ends_only_the_job_of_that_exact_script() {
        let t = Duration::from_secs(10);
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut ids = Vec::new();
        for d in &dirs {
            let script = d.path().join("rdask-c-1-job.sh");
            std::fs::write(&script, "sleep 300 & wait\n").unwrap();
            let out = command::run_checked(&Local.submit(&script, &[]), t).unwrap();
            ids.push(Local.parse_job_id(&out).unwrap());
        }
        let state = |id: &String| {
            let ids = std::slice::from_ref(id);
            Local
                .parse_states(&command::run(&Local.status(ids), t).unwrap(), ids)
                .unwrap()[id]
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while live_jobs(&ids).map(|l| l.len()).unwrap_or(0) < 2 {
            assert!(Instant::now() < deadline, "jobs never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = dirs[0].path().join("rdask-c-1-job.sh");
        let inv = Local.cancel_by_name("rdask-c-1", &first, &[]).unwrap();
        command::run_checked(&inv, t).unwrap();
        while state(&ids[0]) != JobState::Gone {
            assert!(Instant::now() < deadline, "the named job still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            state(&ids[1]),
            JobState::Running,
            "the other home's job was cancelled"
        );
        command::run_checked(&Local.cancel(&ids[1..], &[]), t).unwrap();
    }

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
