//! `job-script --mpi --ranks N`: a batch script that runs the MPI-style runner in one
//! allocation, from the same configuration as the worker job scripts. In this mode `cores`
//! and `memory` are per rank (each worker rank gets them), `--ranks` counts all ranks
//! (scheduler, driver and workers). The scripts in launchers/ are commented versions of these.

use std::path::Path;

use crate::config::{worker_memory_limit, JobConfig};
use crate::error::{Error, Result};

use super::command::{shell_quote, shell_quote_expanding};
use super::{system, Site};

/// The script for `ranks` ranks whose driver runs `driver` (words after `mpi`).
pub fn render(cfg: &JobConfig, ranks: u32, driver: &[String], own_binary: &Path) -> Result<String> {
    if ranks < 3 {
        return Err(Error::invalid(format!(
            "--ranks {ranks}: the MPI-style runner needs at least 3 ranks (scheduler, driver, one worker)"
        )));
    }
    let sys = system(cfg.system);
    let cores = cfg.cores.max(1);
    // One worker per rank, so the rank's whole memory is its limit (the one rule).
    let limit = worker_memory_limit(cfg.memory, 1).exact();
    let Some(job) = sys.mpi_job(cfg, ranks, &Site::discover(cfg)) else {
        return Err(Error::invalid(format!(
            "--mpi: {} has no MPI launcher we support; use slurm, pbs, moab, sge, lsf or local",
            cfg.system.name()
        )));
    };
    let launcher = job.launcher;
    let sched_file = match sys.launch_job_id_variable() {
        Some(var) => format!("rdask-scheduler-${var}.json"),
        None => "rdask-scheduler-local.json".to_string(),
    };
    let mut header = job.header;
    let prefix = sys.directive_prefix();
    header.extend(
        cfg.job_extra_directive
            .iter()
            .map(|d| format!("{prefix} {d}")),
    );
    let setup = job.setup;
    let driver = if driver.is_empty() {
        "array 'x.mean(axis=0)' --input x=data.h5:/x --output result.h5:/mean0 --overwrite --quiet"
            .to_string()
    } else {
        driver
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut command = format!(
        "{launcher} {} mpi --scheduler-file \"$PWD/{sched_file}\" --nthreads {cores} --memory-limit {limit} --death-timeout {}",
        shell_quote(&own_binary.display().to_string()),
        cfg.death_timeout
    );
    if let Some(i) = &cfg.interface {
        command.push_str(&format!(" --interface {}", shell_quote(i)));
    }
    if let Some(d) = &cfg.local_directory {
        command.push_str(&format!(" --local-directory {}", shell_quote_expanding(d)));
    }
    command.push_str(&format!(" \\\n    {driver}"));
    let mut out = vec![cfg.shebang.clone()];
    out.extend(header);
    out.push(String::new());
    out.push(format!(
        "# {ranks} ranks: rank 0 the scheduler, rank 1 the driver, {} worker ranks of {cores} threads.",
        ranks - 2
    ));
    out.extend(setup);
    out.extend(cfg.prologue.iter().cloned());
    out.push(command);
    out.extend(cfg.epilogue.iter().cloned());
    Ok(out.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SystemKind;

    fn cfg(system: SystemKind) -> JobConfig {
        JobConfig {
            system,
            cores: 4,
            memory: "16GiB".parse().unwrap(),
            queue: Some("debug".into()),
            lsf_units: Some(crate::units::LsfUnit::MB),
            job_extra_directive: vec!["extra".into()],
            ..JobConfig::default()
        }
    }

    const BIN: &str = "/opt/rdask-jobqueue";

    /// The header (the lines between the shebang and the blank line) and the launch line.
    fn parts(system: SystemKind, ranks: u32) -> (Vec<String>, String) {
        let s = render(&cfg(system), ranks, &[], Path::new(BIN)).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        let blank = lines.iter().position(|l| l.is_empty()).unwrap();
        let launch = lines
            .iter()
            .find(|l| l.contains(" mpi --scheduler-file"))
            .unwrap();
        (
            lines[1..blank].iter().map(|l| l.to_string()).collect(),
            launch.to_string(),
        )
    }

    fn launch(launcher: &str, file: &str) -> String {
        format!(
            "{launcher} {BIN} mpi --scheduler-file \"$PWD/{file}\" --nthreads 4 \
             --memory-limit 16GiB --death-timeout 60 \\"
        )
    }

    #[test]
    fn slurm_runs_one_task_per_rank_with_memory_per_cpu() {
        let (header, line) = parts(SystemKind::Slurm, 8);
        assert_eq!(
            header,
            [
                "#SBATCH -J rdask-worker",
                "#SBATCH -p debug",
                "#SBATCH --ntasks=8",
                "#SBATCH --cpus-per-task=4",
                "#SBATCH --mem-per-cpu=4G",
                "#SBATCH -t 00:30:00",
                "#SBATCH extra",
            ]
        );
        assert_eq!(
            line,
            launch(
                "srun --kill-on-bad-exit=1",
                "rdask-scheduler-$SLURM_JOB_ID.json"
            )
        );
    }

    #[test]
    fn pbs_and_moab_ask_one_chunk_per_rank_and_start_where_submitted() {
        for kind in [SystemKind::Pbs, SystemKind::Moab] {
            let (header, line) = parts(kind, 8);
            assert_eq!(
                header,
                [
                    "#PBS -N rdask-worker",
                    "#PBS -q debug",
                    "#PBS -l select=8:ncpus=4:mpiprocs=1:mem=16GB",
                    "#PBS -l walltime=00:30:00",
                    "#PBS extra",
                ],
                "{kind}"
            );
            assert_eq!(
                line,
                launch("mpirun -np 8", "rdask-scheduler-$PBS_JOBID.json")
            );
            let s = render(&cfg(kind), 8, &[], Path::new(BIN)).unwrap();
            assert!(s.contains("\ncd \"$PBS_O_WORKDIR\"\n"), "{s}");
        }
    }

    #[test]
    fn grid_engine_takes_one_slot_per_rank() {
        let (header, line) = parts(SystemKind::Sge, 6);
        assert_eq!(
            header,
            [
                "#$ -N rdask-worker",
                "#$ -q debug",
                "#$ -pe mpi 6",
                "#$ -l h_rt=00:30:00",
                "#$ -cwd",
                "#$ -j y",
                "#$ extra",
            ]
        );
        assert_eq!(
            line,
            launch("mpirun -np \"$NSLOTS\"", "rdask-scheduler-$JOB_ID.json")
        );
    }

    #[test]
    fn lsf_asks_all_slots_in_ranks_of_cores_in_the_sites_unit() {
        let (header, line) = parts(SystemKind::Lsf, 4);
        assert_eq!(
            header,
            [
                "#BSUB -J rdask-worker",
                "#BSUB -q debug",
                "#BSUB -n 16",
                "#BSUB -R \"span[ptile=4]\"",
                "#BSUB -M 17180",
                "#BSUB -W 00:30",
                "#BSUB extra",
            ]
        );
        assert_eq!(
            line,
            launch("mpirun -np 4", "rdask-scheduler-$LSB_JOBID.json")
        );
    }

    #[test]
    fn local_runs_mpirun_with_no_directives() {
        let (header, line) = parts(SystemKind::Local, 3);
        // Extra directives take the system's prefix, as in worker job scripts.
        assert_eq!(header, ["#LOCAL extra"]);
        assert_eq!(line, launch("mpirun -np 3", "rdask-scheduler-local.json"));
    }

    #[test]
    fn systems_without_a_launcher_and_too_few_ranks_are_refused() {
        for kind in [SystemKind::Htcondor, SystemKind::Oar] {
            let err = render(&cfg(kind), 4, &[], Path::new(BIN)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("no MPI launcher"), "{err}");
        }
        let err = render(&cfg(SystemKind::Slurm), 2, &[], Path::new(BIN)).unwrap_err();
        assert!(err.to_string().contains("at least 3 ranks"), "{err}");
    }

    #[test]
    fn the_driver_is_quoted_word_by_word() {
        let driver = vec![
            "array".to_string(),
            "x.sum()".into(),
            "--input".into(),
            "x=a b.h5:/x".into(),
        ];
        let s = render(&cfg(SystemKind::Slurm), 8, &driver, Path::new(BIN)).unwrap();
        assert!(s.contains("array 'x.sum()' --input 'x=a b.h5:/x'"), "{s}");
    }

    /// One memory rule: a worker rank's limit is what a worker job's single worker process
    /// gets from the same memory (it was 90% here, in MiB, and all of it there).
    #[test]
    fn a_worker_ranks_limit_is_the_worker_jobs_rule() {
        let c = JobConfig {
            processes: 1,
            ..cfg(SystemKind::Slurm)
        };
        let s = render(&c, 3, &[], Path::new(BIN)).unwrap();
        let job = crate::jobqueue::script::worker_command(
            &c,
            &crate::jobqueue::script::Target {
                scheduler_address: "tcp://h:1".into(),
                secret_file: None,
            },
            Path::new(BIN),
        );
        let limit = |text: &str| {
            text.split("--memory-limit ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
                .unwrap()
        };
        assert_eq!(limit(&s), limit(&job));
        assert_eq!(limit(&s), c.memory.exact());
    }
}
