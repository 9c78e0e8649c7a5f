//! `config import`: dask-jobqueue's own configuration examples (tests/data/dask-jobqueue,
//! with their origin in its README.md) imported through the binary, and the job scripts the
//! imported file renders compared with the directives dask-jobqueue writes for the same
//! YAML (recorded by tests/data/dask-jobqueue/record.py).

mod common;
use common::*;

use std::path::Path;

/// (example, systems compared, flags for sections that leave cores and memory unset; the
/// recording gave dask-jobqueue the same). Keep in step with EXAMPLES in record.py.
const EXAMPLES: &[(&str, &[&str], &[&str])] = &[
    (
        "jobqueue",
        &["slurm", "pbs", "sge", "lsf", "oar", "moab"],
        &["--cores", "2", "--memory", "6GB"],
    ),
    ("cheyenne", &["pbs", "slurm"], &[]),
    ("cori", &["slurm"], &[]),
    ("arm-stratus", &["pbs"], &[]),
    ("comet", &["slurm"], &[]),
    ("datarmor", &["pbs"], &[]),
    ("docs-pbs", &["pbs"], &[]),
    ("other-systems", &["sge", "lsf", "oar", "moab"], &[]),
];

/// Where our directives differ from dask-jobqueue's on purpose: (example.system, theirs,
/// ours). LSF: dask-jobqueue names the log files after the *worker* (`dummy-name` in its
/// `job_script()`, the cluster's worker name in a job), we after the job, as on every other
/// system (docs/configuration.md, "What differs").
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "other-systems.lsf",
        "#BSUB -e /scratch/logs/dummy-name-%J.err",
        "#BSUB -e /scratch/logs/dask-worker-%J.err",
    ),
    (
        "other-systems.lsf",
        "#BSUB -o /scratch/logs/dummy-name-%J.out",
        "#BSUB -o /scratch/logs/dask-worker-%J.out",
    ),
];

fn prefix(system: &str) -> &'static str {
    match system {
        "slurm" => "#SBATCH ",
        "pbs" | "moab" => "#PBS ",
        "sge" => "#$ ",
        "lsf" => "#BSUB ",
        "oar" => "#OAR ",
        other => panic!("no directive prefix for {other}"),
    }
}

fn dask_jobqueue(name: &str) -> std::path::PathBuf {
    data("dask-jobqueue").join(name)
}

fn import(yaml: &Path, output: &Path) -> std::process::Output {
    run(bin()
        .args(["config", "import"])
        .arg(yaml)
        .arg("--output")
        .arg(output))
}

#[test]
fn imported_examples_render_the_directives_dask_jobqueue_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for (example, systems, flags) in EXAMPLES {
        let toml = dir.path().join(format!("{example}.toml"));
        let out = import(&dask_jobqueue(&format!("{example}.yaml")), &toml);
        assert!(out.status.success(), "{example}: {}", stderr(&out));
        for system in *systems {
            let out = run(bin()
                .arg("job-script")
                .arg("--config")
                .arg(&toml)
                .args(["--system", system])
                .args(*flags)
                .args(["--scheduler", "tcp://10.0.0.1:8786"]));
            assert!(out.status.success(), "{example}.{system}: {}", stderr(&out));
            let ours: Vec<String> = stdout(&out)
                .lines()
                .filter(|l| l.starts_with(prefix(system)))
                .map(str::to_string)
                .collect();
            let case = format!("{example}.{system}");
            let theirs: Vec<String> =
                std::fs::read_to_string(dask_jobqueue(&format!("headers/{case}.txt")))
                    .unwrap()
                    .lines()
                    .map(|l| {
                        KNOWN_DIFFERENCES
                            .iter()
                            .find(|(c, t, _)| *c == case && *t == l)
                            .map_or(l.to_string(), |(_, _, o)| o.to_string())
                    })
                    .collect();
            if ours != theirs {
                mismatches.push(format!(
                    "{case}:\n  dask-jobqueue: {theirs:#?}\n  ours: {ours:#?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_import_names_what_it_left_out_and_writes_nothing_over_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("cheyenne.toml");
    let yaml = dask_jobqueue("cheyenne.yaml");
    let out = import(&yaml, &toml);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    // Dask's own settings are named, once, with the reason.
    assert!(err.contains("  distributed: Dask's own settings"), "{err}");
    assert!(
        err.contains("wrote ") && err.contains("[pbs] [slurm]"),
        "{err}"
    );
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(
        written.contains("job_extra_directive = [\"-C geyser\"]"),
        "{written}"
    );
    assert!(written.contains("# jobqueue.slurm.job-extra"), "{written}");

    // Again without --force: refused, exit 2, the file untouched.
    std::fs::write(&toml, "# mine\n").unwrap();
    let out = import(&yaml, &toml);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), "# mine\n");
    // With --force it is replaced.
    let out = run(bin()
        .args(["config", "import", "--force", "--output"])
        .arg(&toml)
        .arg(&yaml));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), written);

    // `-` prints it, and the default output is the user's config file.
    let out = run(bin().args(["config", "import", "--output", "-"]).arg(&yaml));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), written);
    let home = dir.path().join("xdg");
    let out = run(bin()
        .env("XDG_CONFIG_HOME", &home)
        .args(["config", "import"])
        .arg(&yaml));
    assert!(out.status.success(), "{}", stderr(&out));
    let default = home.join("rdask/jobqueue.toml");
    assert_eq!(std::fs::read_to_string(&default).unwrap(), written);
    // ... which `config show` then reads without --config.
    let out = run(bin()
        .env("XDG_CONFIG_HOME", &home)
        .args(["config", "show", "--system", "pbs"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cores = 36"), "{}", stdout(&out));
}

#[test]
fn the_default_jobqueue_yaml_imports_quietly_but_for_python_only_keys() {
    let out = run(bin()
        .args(["config", "import", "--output", "-"])
        .arg(dask_jobqueue("jobqueue.yaml")));
    assert!(out.status.success(), "{}", stderr(&out));
    let toml = stdout(&out);
    for system in [
        "slurm", "pbs", "sge", "lsf", "oar", "htcondor", "moab", "local",
    ] {
        assert!(
            toml.contains(&format!("\n[{system}]\n")),
            "{system}: {toml}"
        );
    }
    // Several sections: no `system` key, the one on PATH picks its table.
    assert!(!toml.contains("\nsystem ="), "{toml}");
    assert!(
        toml.contains("walltime = \"00:30\""),
        "LSF's HH:MM kept: {toml}"
    );
    // Only the unset cores, memory and processes are worth a word: every other shipped
    // value is empty or ours already (worker-command, use-stdin, HTCondor's shebang).
    let err = stderr(&out);
    let noted: Vec<&str> = err
        .lines()
        .filter_map(|l| l.trim().split(':').next())
        .filter(|k| k.starts_with("jobqueue."))
        .collect();
    assert!(
        noted
            .iter()
            .all(|k| k.ends_with(".processes") || k.ends_with(".cores")),
        "{err}"
    );
}

#[test]
fn bad_yaml_is_refused_with_exit_2_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.toml");
    for (yaml, needle) in [
        ("jobqueue:\n  slurm: {cores: [\n", "not valid YAML"),
        ("distributed: {}\n", "no `jobqueue:`"),
        (
            "jobqueue:\n  slurm:\n    cores: 2\n    processes: 4\n    memory: 8GB\n",
            "--processes 4 with --cores 2",
        ),
    ] {
        let input = dir.path().join("in.yaml");
        std::fs::write(&input, yaml).unwrap();
        let out = import(&input, &output);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{yaml}: {}", stderr(&out));
        assert!(!output.exists(), "{yaml}: something was written");
    }
    let out = import(Path::new("/dev/zero"), &output);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_import_has_help_with_examples() {
    let out = run(bin().args(["config", "import", "--help"]));
    assert!(out.status.success());
    assert!(stdout(&out).contains("Examples:"), "{}", stdout(&out));
}

/// dask-jobqueue's `python` and a worker's `--resources` survive the import: the imported
/// file renders a job script whose worker command carries both.
#[test]
fn python_and_worker_resources_are_imported_into_the_worker_command() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("jobqueue.yaml");
    std::fs::write(
        &yaml,
        "jobqueue:\n  slurm:\n    cores: 2\n    memory: 4GB\n    processes: 1\n    \
         python: /opt/conda/envs/dask/bin/python\n    \
         worker-extra-args: ['--resources', 'GPU=1,fpga=2', '--resources=bad']\n",
    )
    .unwrap();
    let toml = dir.path().join("jobqueue.toml");
    let out = import(&yaml, &toml);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("jobqueue.slurm.python"), "{err}");
    assert!(
        err.contains("`--resources bad`: not imported") && err.contains("NAME=AMOUNT"),
        "{err}"
    );
    let out = run(bin().arg("job-script").arg("--config").arg(&toml).args([
        "--system",
        "slurm",
        "--scheduler",
        "tcp://10.0.0.1:8786",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    let worker = script
        .lines()
        .find(|l| l.contains(" worker tcp://10.0.0.1:8786"))
        .unwrap_or_else(|| panic!("no worker command in {script}"));
    assert!(
        worker.contains(" --python /opt/conda/envs/dask/bin/python")
            && worker.contains(" --resources GPU=1,fpga=2")
            && !worker.contains("bad"),
        "{worker}"
    );
}
