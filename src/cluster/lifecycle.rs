//! The policy of a cluster's start: what `up` checks before anything is written (the job
//! script, a running cluster of the same name, a dead one's jobs), the lock that lets one of
//! two racing `up` go on, the cluster's private directories, and the daemon's launch.
//! Printing what happened is the command line's.

use std::path::Path;

use super::{process, ClusterDir, ClusterRecord, DEFAULT_NAME};
use crate::config::JobConfig;
use crate::error::{Error, Result};
use crate::jobqueue::ledger::Ledger;
use crate::jobqueue::script;
use crate::protocol::Secret;

/// ` --name N`, unless N is the default: what messages add to the commands they suggest.
pub fn name_flag(name: &str) -> String {
    if name == DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

/// The jobs' log directory: the one configured, else the cluster's `logs/`; absolute, since
/// the jobs read it from compute nodes.
pub fn with_log_directory(mut cfg: JobConfig, dir: &ClusterDir) -> JobConfig {
    let l = cfg.log_directory.take().unwrap_or_else(|| dir.logs_dir());
    cfg.log_directory = Some(std::path::absolute(&l).unwrap_or(l));
    cfg
}

/// The script of cluster job number `seq`, as the daemon writes it to
/// `jobs/rdask-NAME-SEQ-job.sh` and submits it: the cluster's configuration `cfg` (with its
/// log directory, [`with_log_directory`]) under that job's name (`rdask-NAME-SEQ`: `up`
/// names every job so, to find one whose submission was never confirmed), workers
/// connecting to `address` with the cluster's secret. `job-script --name` prints it.
pub fn job_script(
    cfg: &JobConfig,
    address: &str,
    dir: &ClusterDir,
    seq: u64,
    own_binary: &Path,
) -> Result<String> {
    let name = crate::jobqueue::ledger::job_name(&dir.name, seq);
    job_script_named(cfg, address, dir, &name, own_binary)
}

/// The same script under a job name given whole (an array's elements share one name).
pub fn job_script_named(
    cfg: &JobConfig,
    address: &str,
    dir: &ClusterDir,
    job_name: &str,
    own_binary: &Path,
) -> Result<String> {
    let mut cfg = cfg.clone();
    cfg.job_name = job_name.to_string();
    let target = script::Target {
        scheduler_address: address.to_string(),
        secret_file: Some(dir.secret_path()),
    };
    script::render(&cfg, &target, own_binary)
}

/// The sequence number the cluster's next job gets: one past the highest its ledger holds
/// (0 for a cluster that never submitted one, as a fresh `up` starts).
pub fn next_job_seq(dir: &ClusterDir) -> Result<u64> {
    let ledger = Ledger::open(&dir.ledger_path(), &dir.name)?;
    Ok(ledger.jobs().iter().map(|j| j.seq + 1).max().unwrap_or(0))
}

/// The worker's own command line, to check the arguments a job script gives it.
#[derive(clap::Parser, Debug)]
#[command(name = "worker")]
struct WorkerCommandLine {
    #[command(flatten)]
    _args: crate::worker::command_line::WorkerArgs,
}

/// Renders one job script as the daemon will and checks it before anything is written or
/// started, so that what would kill every job fails `up` at once (exit 2) rather than after
/// its `--wait`: the template, the worker's arguments (by the worker's own parser), and where
/// the system has one, a dry-run submission (a bad partition, queue or resource request).
/// Ok(Some(warning)) when the check could not be finished but says nothing against the script.
pub fn check_job_script(cfg: &JobConfig, dir: &ClusterDir) -> Result<Option<String>> {
    use clap::Parser;
    let own_binary = std::env::current_exe().map_err(Error::io("finding this program"))?;
    // The scheduler's address is not known yet; any well-formed one checks the same.
    let address = "tcp://127.0.0.1:8786";
    let text = job_script(cfg, address, dir, 0, &own_binary)
        .map_err(|e| Error::invalid(format!("the job script cannot be rendered: {e}")))?;
    let mut cfg = cfg.clone();
    cfg.job_name = crate::jobqueue::ledger::job_name(&dir.name, 0);
    let target = script::Target {
        scheduler_address: address.into(),
        secret_file: Some(dir.secret_path()),
    };
    // The arguments after the worker command, as the job's shell splits them.
    let bare = JobConfig {
        worker_command: Some(String::new()),
        ..cfg.clone()
    };
    let line = script::worker_command(&bare, &target, &own_binary);
    let words = shell_words::split(line.trim()).map_err(|e| {
        Error::invalid(format!(
            "the worker command's arguments cannot be split as a shell would ({e}): {line}"
        ))
    })?;
    if let Err(e) =
        WorkerCommandLine::try_parse_from(std::iter::once("worker".to_string()).chain(words))
    {
        let why = e.to_string();
        let why = why.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(Error::invalid(format!(
            "the workers would refuse the arguments the job script gives them: {}; check \
             --worker-extra-arg and the options behind them (the worker command: {})",
            why.trim_start_matches("error: "),
            line.trim()
        )));
    }
    let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
    let file_name = crate::jobqueue::system(cfg.system).script_file_name();
    let path = scratch.path().join(format!("{}-{file_name}", cfg.job_name));
    script::write_executable(&path, &text)?;
    match crate::jobqueue::JobQueue::new(&cfg).dry_run(&path) {
        Ok(_) => Ok(None),
        // A slow controller says nothing about the script: the daemon will see.
        Err(Error::Command(f))
            if matches!(f.status, crate::error::CommandStatus::TimedOut { .. }) =>
        {
            Ok(Some(
                "the dry-run submission timed out; going on".to_string(),
            ))
        }
        Err(Error::Command(f)) => Err(Error::invalid(format!(
            "{} refuses the job script (`{}` {}): {}",
            cfg.system,
            f.command,
            f.status,
            [f.stderr.trim(), f.stdout.trim()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        Err(e) => Err(e),
    }
}

/// A cluster being started: its directory (created, private, spelt canonically) and its `up`
/// lock, held until this value is dropped, so that of two `up` of one name exactly one goes
/// on and the other leaves the winner's record, secret and daemon alone.
pub struct Starting {
    pub dir: ClusterDir,
    _lock: std::fs::File,
}

/// Makes room for cluster `name` to start: its directory, then (its path canonical now that
/// it exists) its `up` lock, before anything is written; refuses a live cluster of that name
/// or a dead one whose ledger lists jobs that may be alive (invalid input, exit 2); keeps a
/// finished one's ledger aside; creates the places the jobs use.
pub fn begin(name: &str) -> Result<Starting> {
    create_private_dir(&ClusterDir::new(name)?.root)?;
    let dir = ClusterDir::new(name)?;
    let lock = lock_for_up(&dir)?;
    make_room(&dir)?;
    // The cluster's own places, absolute: the jobs read them from compute nodes.
    for d in [&dir.logs_dir(), &dir.scripts_dir()] {
        create_private_dir(d)?;
    }
    Ok(Starting { dir, _lock: lock })
}

impl Starting {
    /// Writes a fresh secret and `rec`, starts the daemon and waits until it serves: its
    /// record as the daemon rewrote it (with its address) and its pid. If it does not start,
    /// the record is left closed (nothing was submitted).
    pub fn launch(self, rec: ClusterRecord) -> Result<(ClusterRecord, u32)> {
        let dir = &self.dir;
        Secret::generate()?.save(&dir.secret_path())?;
        dir.write_record(&rec)?;
        let pid = process::spawn(dir)?;
        match process::wait_until_serving(dir, pid) {
            Ok(r) => Ok((r, pid)),
            Err(e) => {
                let mut closed = rec;
                closed.closed_at = Some(super::now());
                let _ = dir.write_record(&closed);
                Err(e)
            }
        }
    }
}

/// Takes the cluster's `up` lock; another `up` of the same name holding it is invalid input
/// (exit 2), and nothing is written.
fn lock_for_up(dir: &ClusterDir) -> Result<std::fs::File> {
    let path = dir.up_lock_path();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    if file.try_lock().is_err() {
        return Err(Error::invalid(format!(
            "another `rdask-jobqueue up{}` is starting cluster `{}` right now; use it once it \
             is up, or choose another --name",
            name_flag(&dir.name),
            dir.name
        )));
    }
    Ok(file)
}

/// Refuses a live cluster of the same name; clears a finished one's record.
fn make_room(dir: &ClusterDir) -> Result<()> {
    if let Some(live) = dir.live_daemon() {
        let address = dir
            .read_record()
            .ok()
            .flatten()
            .and_then(|r| r.address)
            .unwrap_or_else(|| "?".into());
        return Err(Error::invalid(format!(
            "cluster `{}` is already up (daemon pid {}, scheduler {address}); use \
             `scale`/`adapt`/`status`, `down{}` first, or choose another --name",
            dir.name,
            live.pid.map_or("?".to_string(), |p| p.to_string()),
            name_flag(&dir.name)
        )));
    }
    // A record that cannot be read is an error here too: nothing is replaced blindly.
    let old = dir.read_record()?;
    // Dead (or closed, or its record lost): its ledger must show every job finished before
    // anything is replaced.
    let ledger = Ledger::open(&dir.ledger_path(), &dir.name)?;
    let alive = ledger.unfinished_ids();
    let submitting = ledger.submitting_names();
    if !alive.is_empty() || !submitting.is_empty() {
        return Err(Error::invalid(format!(
            "cluster `{}`'s daemon is dead but its ledger still lists jobs that may be alive \
             ({}); run `rdask-jobqueue down --force{}` first",
            dir.name,
            alive
                .iter()
                .chain(&submitting)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            name_flag(&dir.name)
        )));
    }
    // Keep the old ledger beside the new one, for the record.
    if dir.ledger_path().exists() {
        let stamp = old.map_or_else(super::now, |o| o.closed_at.unwrap_or(o.created_at)) as u64;
        let kept = dir.root.join(format!("ledger-{stamp}.json"));
        std::fs::rename(dir.ledger_path(), &kept).map_err(Error::io(format!(
            "keeping the old ledger as {}",
            kept.display()
        )))?;
    }
    Ok(())
}

/// Creates `d` (and its parents) with mode 0700, and sets 0700 on it if it existed.
fn create_private_dir(d: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(Error::io(format!("creating {}", d.display())))?;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("setting the mode of {}", d.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_needs_no_flag() {
        assert_eq!(name_flag(DEFAULT_NAME), "");
        assert_eq!(name_flag("big"), " --name big");
    }

    #[test]
    fn a_held_up_lock_refuses_a_second_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir {
            name: "c".into(),
            root: tmp.path().to_path_buf(),
        };
        let first = lock_for_up(&dir).unwrap();
        let err = lock_for_up(&dir).unwrap_err();
        assert!(err.to_string().contains("is starting cluster `c`"), "{err}");
        drop(first);
        lock_for_up(&dir).unwrap();
    }
}
