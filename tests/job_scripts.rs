//! Golden tests: options in, the exact job script out, for every batch system.
//!
//! The expected scripts live in tests/golden/<case>.txt. They were checked by hand against
//! dask-jobqueue's directive order and memory rounding (shared notes, batch-systems.md). To
//! regenerate after an intended change: `RDASK_BLESS=1 cargo test --test job_scripts`, then
//! review the diff.

mod common;
use common::*;

/// Every case uses a fixed worker command and scheduler so the scripts are machine-independent.
const FIXED: &[&str] = &[
    "--worker-command",
    "/opt/rdask/bin/rdask-jobqueue worker",
    "--scheduler",
    "tcp://10.0.0.1:8786",
];

const CASES: &[(&str, &[&str])] = &[
    (
        "slurm-basic",
        &[
            "--system",
            "slurm",
            "--cores",
            "8",
            "--processes",
            "4",
            "--memory",
            "28GB",
            "--walltime",
            "00:02:00",
        ],
    ),
    (
        "slurm-queue-account-logs",
        &[
            "--system",
            "slurm",
            "--queue",
            "debug",
            "--account",
            "proj42",
            "--log-directory",
            "/scratch/logs",
            "--job-name",
            "myjob",
        ],
    ),
    (
        "slurm-jobcpu-jobmem-skip-extra",
        &[
            "--system",
            "slurm",
            "--cores",
            "4",
            "--job-cpu",
            "6",
            "--job-mem",
            "10GB",
            "--job-directives-skip",
            "--mem",
            "--job-extra-directive",
            "--mem-per-cpu=2G",
            "--job-extra-directive",
            "--exclusive",
        ],
    ),
    (
        "slurm-prologue-epilogue",
        &[
            "--system",
            "slurm",
            "--prologue",
            "module load hdf5",
            "--prologue",
            "source ~/env/bin/activate",
            "--epilogue",
            "echo done",
            "--local-directory",
            "$TMPDIR",
            "--interface",
            "ib0",
            "--worker-extra-arg",
            "--name",
            "--worker-extra-arg",
            "big-$SLURM_JOB_ID",
            "--death-timeout",
            "2m",
        ],
    ),
    (
        "slurm-long-walltime",
        &[
            "--system",
            "slurm",
            "--walltime",
            "36:00:00",
            "--memory",
            "500MB",
        ],
    ),
    (
        "pbs-basic",
        &[
            "--system",
            "pbs",
            "--cores",
            "8",
            "--memory",
            "28GB",
            "--queue",
            "workq",
            "--account",
            "acct",
            "--walltime",
            "01:00:00",
        ],
    ),
    (
        "pbs-resource-spec-logs",
        &[
            "--system",
            "pbs",
            "--resource-spec",
            "select=1:ncpus=24:mem=100GB",
            "--log-directory",
            "/scratch/logs",
        ],
    ),
    (
        "pbs-small-mem-skip-extra",
        &[
            "--system",
            "pbs",
            "--memory",
            "6GB",
            "--job-directives-skip",
            "select",
            "--job-extra-directive",
            "-l select=2:ncpus=4",
            "--job-extra-directive",
            "-V",
        ],
    ),
    (
        "pbs-jobcpu-jobmem",
        &[
            "--system",
            "pbs",
            "--cores",
            "4",
            "--job-cpu",
            "8",
            "--job-mem",
            "20GiB",
            "--processes",
            "2",
        ],
    ),
    (
        "sge-basic",
        &[
            "--system",
            "sge",
            "--queue",
            "all.q",
            "--project",
            "proj",
            "--resource-spec",
            "h_vmem=12G,mem_req=12G",
            "--walltime",
            "02:00:00",
        ],
    ),
    (
        "sge-logs-skip-extra",
        &[
            "--system",
            "sge",
            "--log-directory",
            "/scratch/logs",
            "--job-extra-directive",
            "-pe smp 4",
            "--job-directives-skip",
            "-j y",
        ],
    ),
    (
        "sge-prologue-epilogue",
        &[
            "--system",
            "sge",
            "--cores",
            "4",
            "--processes",
            "2",
            "--memory",
            "16GiB",
            "--prologue",
            "module load mpi",
            "--epilogue",
            "rm -rf $TMPDIR/spill",
        ],
    ),
    (
        "lsf-basic",
        &[
            "--system",
            "lsf",
            "--memory",
            "8GB",
            "--queue",
            "normal",
            "--project",
            "proj",
            "--walltime",
            "00:30:00",
            "--lsf-units",
            "KB",
        ],
    ),
    (
        "lsf-multicore-mb-logs",
        &[
            "--system",
            "lsf",
            "--cores",
            "8",
            "--memory",
            "16GiB",
            "--lsf-units",
            "MB",
            "--log-directory",
            "/scratch/logs",
        ],
    ),
    (
        "lsf-jobcpu-skip-extra",
        &[
            "--system",
            "lsf",
            "--cores",
            "2",
            "--job-cpu",
            "4",
            "--job-mem",
            "4GB",
            "--job-directives-skip",
            "span",
            "--job-extra-directive",
            "-R \"rusage[mem=4000]\"",
            "--lsf-units",
            "GB",
            "--walltime",
            "90m",
        ],
    ),
    (
        "oar-basic",
        &[
            "--system",
            "oar",
            "--cores",
            "4",
            "--memory",
            "16GB",
            "--queue",
            "default",
            "--project",
            "proj",
            "--walltime",
            "02:00:00",
        ],
    ),
    (
        "oar-resource-spec-memory-property",
        &[
            "--system",
            "oar",
            "--resource-spec",
            "/host=1/core=8",
            "--memory-per-core-property-name",
            "memcore",
            "--memory",
            "16GiB",
            "--cores",
            "8",
        ],
    ),
    (
        "oar-logs-extra",
        &[
            "--system",
            "oar",
            "--log-directory",
            "/scratch/logs",
            "--job-extra-directive",
            "-t besteffort",
            "--prologue",
            "source /etc/profile",
        ],
    ),
    (
        "htcondor-basic",
        &[
            "--system", "htcondor", "--cores", "2", "--memory", "4GiB", "--disk", "10GB",
        ],
    ),
    (
        "htcondor-logs-prologue-extra",
        &[
            "--system",
            "htcondor",
            "--log-directory",
            "/scratch/logs",
            "--prologue",
            "export X=1",
            "--job-extra-directive",
            "requirements = (OpSys == \"LINUX\")",
            "--epilogue",
            "echo it's done",
        ],
    ),
    (
        "htcondor-skip-jobcpu",
        &[
            "--system",
            "htcondor",
            "--job-directives-skip",
            "Universe",
            "--job-cpu",
            "4",
            "--job-mem",
            "3GB",
        ],
    ),
    (
        "moab-basic",
        &[
            "--system",
            "moab",
            "--cores",
            "8",
            "--memory",
            "28GB",
            "--queue",
            "batch",
            "--account",
            "acct",
        ],
    ),
    (
        "moab-resource-spec-logs",
        &[
            "--system",
            "moab",
            "--resource-spec",
            "nodes=1:ppn=16",
            "--log-directory",
            "/scratch/logs",
            "--walltime",
            "4h",
        ],
    ),
    (
        "local-basic",
        &["--system", "local", "--cores", "2", "--memory", "2GiB"],
    ),
    (
        "custom-template",
        &[
            "--system",
            "slurm",
            "--template",
            "tests/data/custom.sh.j2",
            "--cores",
            "8",
            "--processes",
            "2",
            "--memory",
            "28GB",
            "--queue",
            "gpu",
            "--job-extra-directive",
            "--gres=gpu:1",
        ],
    ),
];

#[test]
fn job_scripts_match_their_golden_files() {
    let bless = std::env::var("RDASK_BLESS").as_deref() == Ok("1");
    let mut mismatches = Vec::new();
    for (name, args) in CASES {
        let out = run(bin()
            .current_dir(repo())
            .arg("job-script")
            .args(*args)
            .args(FIXED));
        assert!(
            out.status.success(),
            "{name}: exit {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
        let got = stdout(&out);
        let path = repo().join("tests/golden").join(format!("{name}.txt"));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if got != want {
            mismatches.push(format!(
                "--- {name}: expected ---\n{want}--- got ---\n{got}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn without_a_worker_command_the_script_runs_this_binary_by_absolute_path() {
    let out = run(bin().args([
        "job-script",
        "--system",
        "slurm",
        "--scheduler",
        "tcp://h:1",
    ]));
    let script = stdout(&out);
    let exe = env!("CARGO_BIN_EXE_rdask-jobqueue");
    assert!(
        script.contains(&format!("{exe} worker tcp://h:1 --nthreads 1")),
        "{script}"
    );
}

#[test]
fn a_missing_scheduler_address_is_a_visible_placeholder() {
    let out = run(bin().args(["job-script", "--system", "pbs"]));
    assert!(out.status.success());
    assert!(stdout(&out).contains("tcp://SCHEDULER:8786"));
    assert!(
        stderr(&out).contains("warning: no --scheduler given"),
        "{}",
        stderr(&out)
    );
}

/// Each bad input: exit 2, a message naming the value and what is accepted.
#[test]
fn bad_input_is_refused_with_exit_2_and_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_key = dir.path().join("unknown-key.toml");
    std::fs::write(&unknown_key, "cores = 4\nqueu = 'debug'\n").unwrap();
    let wrong_type = dir.path().join("wrong-type.toml");
    std::fs::write(&wrong_type, "[slurm]\nmemory = true\n").unwrap();
    let broken = data("broken-syntax.sh.j2");
    let unknown_var = data("unknown-variable.sh.j2");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--memory".into(), "12XB".into()],
            vec!["'12XB'", "unknown unit 'XB'", "GiB"],
        ),
        (
            vec!["--walltime".into(), "25:61:00".into()],
            vec!["'25:61:00'", "minutes must be 0-59", "HH:MM:SS"],
        ),
        (
            vec!["--system".into(), "foo".into()],
            vec!["'foo'", "slurm, pbs, sge"],
        ),
        (
            vec![
                "--processes".into(),
                "3".into(),
                "--cores".into(),
                "2".into(),
            ],
            vec!["--processes 3 with --cores 2"],
        ),
        (
            vec!["--template".into(), broken.display().to_string()],
            vec!["broken-syntax.sh.j2", "syntax error", "sh.j2:3)"],
        ),
        (
            vec!["--template".into(), unknown_var.display().to_string()],
            vec![
                "unknown-variable.sh.j2",
                "undefined",
                "docs/configuration.md#templates",
            ],
        ),
        (
            vec!["--template".into(), "/nonexistent.j2".into()],
            vec!["cannot read template /nonexistent.j2"],
        ),
        (
            vec!["--config".into(), unknown_key.display().to_string()],
            vec!["unknown key `queu`", "queue"],
        ),
        (
            vec!["--config".into(), wrong_type.display().to_string()],
            vec!["[slurm]", "`memory`", "boolean"],
        ),
        (vec!["--cores".into(), "0".into()], vec!["--cores"]),
    ];
    for (args, needles) in cases {
        // Through both commands that render scripts; a submit must fail before submitting.
        for sub in [&["job-script"][..], &["jobs", "submit"][..]] {
            let out = run(bin()
                .args(sub)
                .args(&args)
                .args(["--scheduler", "tcp://h:1"])
                .env("RDASK_SYSTEM", "local"));
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{sub:?} {args:?}: {err}");
            assert!(
                stdout(&out).is_empty(),
                "{args:?} printed something: {}",
                stdout(&out)
            );
            for n in &needles {
                assert!(err.contains(n), "{args:?}: message lacks {n:?}: {err}");
            }
        }
    }
}

#[test]
fn config_show_prints_sources_and_is_reusable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobqueue.toml");
    std::fs::write(&file, "system = 'pbs'\ncores = 4\n[pbs]\nqueue = 'workq'\n").unwrap();
    let out = run(bin()
        .args(["config", "show", "--memory", "8GB"])
        .env("RDASK_CONFIG", &file)
        .env("RDASK_WALLTIME", "2h"));
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for needle in [
        "system = \"pbs\"",
        "queue = \"workq\"",
        "[pbs]",
        "flag --memory",
        "environment RDASK_WALLTIME",
        "walltime = \"2h\"",
        "cores = 4",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &shown).unwrap();
    let out2 = run(bin().args(["config", "show", "--config"]).arg(&again));
    assert!(out2.status.success(), "{}", stderr(&out2));
    assert!(
        stdout(&out2).contains("memory = \"8000000000\""),
        "{}",
        stdout(&out2)
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["job-script", "--help"],
        &["config", "show", "--help"],
        &["jobs", "submit", "--help"],
        &["jobs", "status", "--help"],
        &["jobs", "cancel", "--help"],
        &["--version"],
    ] {
        let out = run(bin().args(args));
        assert!(out.status.success(), "{args:?}");
        assert!(!stdout(&out).trim().is_empty(), "{args:?}");
    }
}

/// A newline (or any control character) in an option that lands in the job script would start
/// a shell line there, which SLURM and Grid Engine then run: refused from flags, RDASK_*
/// variables and config files alike, with exit 2, naming the option, and printing nothing.
#[test]
fn control_characters_in_script_options_are_refused_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let evil = format!("x\ntouch {}", marker.display());
    let keys = [
        "job_extra_directive",
        "queue",
        "account",
        "job_name",
        "log_directory",
        "shebang",
        "resource_spec",
        "local_directory",
        "interface",
        "python",
        "worker_extra_arg",
        "worker_command",
        "prologue",
    ];
    for key in keys {
        let flag = format!("--{}", key.replace('_', "-"));
        let var = format!("RDASK_{}", key.to_ascii_uppercase());
        let file = dir.path().join(format!("{key}.toml"));
        let toml_value = serde_json::to_string(&format!("#!{evil}")).unwrap();
        std::fs::write(&file, format!("[sge]\n{key} = {toml_value}\n")).unwrap();
        let by_flag = run(bin()
            .args([
                "job-script",
                "--system",
                "slurm",
                "--scheduler",
                "tcp://h:1",
            ])
            .arg(format!("{flag}={evil}")));
        let by_file = run(bin()
            .args(["job-script", "--system", "sge", "--scheduler", "tcp://h:1"])
            .arg("--config")
            .arg(&file));
        let mut cases = vec![(by_flag, flag.clone()), (by_file, format!("`{key}`"))];
        // In the environment, list keys are newline-separated on purpose; a single value is not.
        if !matches!(key, "job_extra_directive" | "worker_extra_arg" | "prologue") {
            let by_env = run(bin()
                .args([
                    "job-script",
                    "--system",
                    "slurm",
                    "--scheduler",
                    "tcp://h:1",
                ])
                .env(&var, &evil));
            cases.push((by_env, var));
        }
        for (out, name) in cases {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name}: {err}");
            assert!(
                err.contains(&name) && (err.contains("a newline")),
                "{name}: unclear: {err}"
            );
            assert!(stdout(&out).is_empty(), "{name}: printed a script");
        }
    }
    assert!(!marker.exists());
}

/// Values placed on the worker's command line are quoted: `$NAME` still expands (a documented
/// convenience), but nothing a value holds runs as a command in the job.
#[test]
fn worker_arguments_in_a_script_run_no_commands() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let touch = format!("touch {}", marker.display());
    let out = run(bin()
        .args([
            "job-script",
            "--system",
            "local",
            "--scheduler",
            "tcp://h:1",
        ])
        .args(["--worker-command", "printf '[%s]\\n'"])
        .arg(format!("--local-directory=$(  {touch} )/$RDASK_T"))
        .arg(format!("--worker-extra-arg=`{touch}` ${{RDASK_T}}"))
        .arg(format!("--interface=$({touch})")));
    assert!(out.status.success(), "{}", stderr(&out));
    let script = dir.path().join("job.sh");
    std::fs::write(&script, stdout(&out)).unwrap();
    let ran = run(std::process::Command::new("bash")
        .arg(&script)
        .env("RDASK_T", "v"));
    let printed = stdout(&ran);
    assert!(!marker.exists(), "a value ran a command:\n{printed}");
    assert!(printed.contains(&format!("[$(  {touch} )/v]")), "{printed}");
    assert!(printed.contains(&format!("[`{touch}` v]")), "{printed}");
    assert!(printed.contains(&format!("[$({touch})]")), "{printed}");
}

/// `config show --config /dev/zero` read without end; big or special files are refused.
#[test]
fn config_and_template_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#\n".repeat(600_000)).unwrap();
    for (args, file) in [
        (vec!["config", "show", "--config", "/dev/zero"], "/dev/zero"),
        (
            vec!["job-script", "--system", "slurm", "--template", "/dev/zero"],
            "/dev/zero",
        ),
        (
            vec!["config", "show", "--config", big.to_str().unwrap()],
            "big.toml",
        ),
    ] {
        let out = run(bin().args(&args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(file), "{args:?}: {err}");
        assert!(
            err.contains("not a regular file") || err.contains("1048576 bytes"),
            "{args:?}: {err}"
        );
    }
    let out = run(bin()
        .args(["config", "show"])
        .env("RDASK_CONFIG", "/dev/zero"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Overflowing and absurd numbers are refused with exit 2, whatever their source.
#[test]
fn numbers_out_of_range_are_refused_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.toml");
    std::fs::write(&file, "[slurm]\nprocesses = 100000\n").unwrap();
    let env_cases: &[(&str, &str, &str)] = &[
        ("RDASK_WALLTIME", "307445734561825861", "too large"),
        ("RDASK_WALLTIME", "00:00:02", "at least 10 s"),
        ("RDASK_MEMORY", "1MiB", "64.0 MiB"),
        ("RDASK_CORES", "100000", "1 to 4096"),
        ("RDASK_DEATH_TIMEOUT", "99999999999999999999", "too large"),
        ("RDASK_COMMAND_TIMEOUT", "0", "1 s to 3600 s"),
    ];
    for (var, value, needle) in env_cases {
        for sub in [&["job-script"][..], &["jobs", "submit"][..]] {
            let out = run(bin()
                .args(sub)
                .args(["--system", "local", "--scheduler", "tcp://h:1"])
                .env(var, value));
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
            assert!(err.contains(var) && err.contains(needle), "{var}: {err}");
            assert!(stdout(&out).is_empty());
        }
    }
    let flag_cases: &[(&[&str], &str)] = &[
        (&["--walltime", "307445734561825861"], "too large"),
        (
            &["--memory", "200MiB", "--cores", "4", "--processes", "4"],
            "50.0 MiB",
        ),
        (&["--processes", "5000", "--cores", "4096"], "1 to 1024"),
        (&["--lifetime-margin", "30d"], "0 s to 86400 s"),
    ];
    for (args, needle) in flag_cases {
        let out = run(bin()
            .args([
                "job-script",
                "--system",
                "slurm",
                "--scheduler",
                "tcp://h:1",
            ])
            .args(*args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = run(bin()
        .args(["job-script", "--system", "slurm", "--config"])
        .arg(&file));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`processes`"), "{}", stderr(&out));
}

/// Worker, MPI and scheduler-address options out of range end at once with exit 2 and a
/// message naming the option, never a panic or a hang.
#[test]
fn worker_and_mpi_options_out_of_range_exit_2_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["worker", "--nthreads", "100000", "tcp://127.0.0.1:9"],
            "--nthreads",
        ),
        (
            vec!["worker", "--nthreads", "0", "tcp://127.0.0.1:9"],
            "--nthreads",
        ),
        (
            vec!["worker", "--nworkers", "100000", "tcp://127.0.0.1:9"],
            "--nworkers",
        ),
        (
            vec!["worker", "--memory-limit", "1MiB", "tcp://127.0.0.1:9"],
            "--memory-limit",
        ),
        (
            vec!["worker", "--death-timeout", "0", "tcp://127.0.0.1:9"],
            "--death-timeout",
        ),
        (
            vec![
                "worker",
                "--death-timeout",
                "99999999999999999999",
                "tcp://127.0.0.1:9",
            ],
            "--death-timeout",
        ),
        (
            vec!["worker", "--lifetime", "400d", "tcp://127.0.0.1:9"],
            "--lifetime",
        ),
        (
            vec!["worker", "--lifetime-end", "NaN", "tcp://127.0.0.1:9"],
            "--lifetime-end",
        ),
        (vec!["worker", "http://127.0.0.1:9"], "only tcp://"),
        (vec!["worker", "tcp://127.0.0.1"], "no port"),
        (vec!["worker", "tcp://127.0.0.1:99999"], "1 to 65535"),
        (vec!["worker", "tcp://a b:1"], "not a host name"),
        (
            vec!["mpi", "--nthreads", "100000", "run", "--", "true"],
            "--nthreads",
        ),
        (
            vec!["mpi", "--memory-limit", "1kB", "run", "--", "true"],
            "--memory-limit",
        ),
        (
            vec!["mpi", "--wait-timeout", "0", "run", "--", "true"],
            "--wait-timeout",
        ),
        (
            vec![
                "job-script",
                "--system",
                "slurm",
                "--scheduler",
                "ssh://h:1",
            ],
            "--scheduler",
        ),
    ];
    for (args, needle) in cases {
        let started = std::time::Instant::now();
        let out = run(bin()
            .args(&args)
            .env("RDASK_SECRET", "ab".repeat(32))
            .current_dir(dir.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: message lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?} did not end at once"
        );
    }
    // A rank the launcher's variables place outside the world.
    let out = run(bin()
        .args(["mpi", "--wait-timeout", "2", "run", "--", "true"])
        .env("SLURM_PROCID", "7")
        .env("SLURM_NTASKS", "4")
        .current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("outside a world of 4"),
        "{}",
        stderr(&out)
    );
}

/// A secret file others can read is refused (it grants running commands on every worker);
/// a scheduler started without a secret writes the one it makes to a 0600 file and says where.
#[test]
fn secret_files_are_private() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(bin()
        .args(["worker", "tcp://127.0.0.1:9", "--no-nanny", "--secret-file"])
        .arg(&secret));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600") && err.contains("644"), "{err}");

    let home = dir.path().join("home");
    let mut child = bin()
        .args(["scheduler", "--host", "127.0.0.1", "--port", "0"])
        .env("RDASK_HOME", &home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read on a thread, so a scheduler that never says it fails the test instead of hanging it.
    let stdout_pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = std::io::BufReader::new(stdout_pipe)
            .lines()
            .map_while(|l| l.ok())
            .find(|l| l.starts_with("secret file: "));
        let _ = tx.send(found);
    });
    let said = rx.recv_timeout(std::time::Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let said = said
        .ok()
        .flatten()
        .expect("the scheduler says where its secret is");
    let file = said
        .strip_prefix("secret file: ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(file.starts_with(home.to_str().unwrap()), "{said}");
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{said}");
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(text.trim().len(), 64, "{text}");
    assert!(said.contains(&format!("--secret-file {file}")), "{said}");
}

/// `up` builds worker options from the same configuration: a worker process below 64 MiB or a
/// newline in an option is refused before anything is created or started.
#[test]
fn up_refuses_bad_worker_options_before_creating_anything() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--memory", "100MiB", "--cores", "2", "--processes", "2"][..],
        &["--queue", "a\nb"],
        &["--walltime", "307445734561825861"],
    ] {
        let out = run(bin()
            .env("RDASK_HOME", home.path())
            .args(["up", "--name", "bad", "--system", "local"])
            .args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            !home.path().join("clusters").join("bad").exists(),
            "{args:?}: a cluster directory was created"
        );
    }
}

/// Explicit per-job requests reach the batch system as the user wrote them, where its
/// directive reads that spelling (dask-jobqueue passes `job_mem` verbatim): `--job-mem 100G`
/// is `--mem=100G`, not `94G` from its decimal bytes. Only a spelling the system cannot read
/// is converted, as `memory` always is. `job_cpu` and `resource_spec` are never rewritten.
#[test]
fn explicit_requests_pass_through_as_written_on_every_system() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "slurm",
            &["--job-mem", "100G", "--job-cpu", "6"],
            &["#SBATCH --mem=100G", "#SBATCH --cpus-per-task=6"],
        ),
        ("slurm", &["--job-mem", "120GB"], &["#SBATCH --mem=120GB"]),
        ("slurm", &["--job-mem", "512m"], &["#SBATCH --mem=512m"]),
        // sbatch refuses `20GiB`: converted with SLURM's rounding.
        ("slurm", &["--job-mem", "20GiB"], &["#SBATCH --mem=20G"]),
        (
            "pbs",
            &["--job-mem", "100gb", "--job-cpu", "6"],
            &["#PBS -l select=1:ncpus=6:mem=100gb"],
        ),
        (
            "pbs",
            &["--job-mem", "20GiB"],
            &["#PBS -l select=1:ncpus=1:mem=20GB"],
        ),
        (
            "pbs",
            &["--resource-spec", "select=1:ncpus=4:mem=16gb:model=skl"],
            &["#PBS -l select=1:ncpus=4:mem=16gb:model=skl"],
        ),
        (
            "moab",
            &["--job-mem", "64GB", "--job-cpu", "3"],
            &["#PBS -l select=1:ncpus=3:mem=64GB"],
        ),
        (
            "sge",
            &["--resource-spec", "h_vmem=12G,mem_req=12G"],
            &["#$ -l h_vmem=12G,mem_req=12G"],
        ),
        // LSF's -M is a bare number in LSF_UNIT_FOR_LIMITS: converted, as dask-jobqueue
        // converts its `mem`.
        (
            "lsf",
            &["--job-mem", "8GB", "--lsf-units", "MB", "--job-cpu", "6"],
            &["#BSUB -M 8000", "#BSUB -n 6"],
        ),
        (
            "oar",
            &["--resource-spec", "/nodes=2/core=4"],
            &["#OAR -l /nodes=2/core=4,walltime=00:30:00"],
        ),
        (
            "oar",
            &[
                "--job-cpu",
                "4",
                "--job-mem",
                "8GiB",
                "--memory-per-core-property-name",
                "memcore",
            ],
            &[
                "#OAR -l /nodes=1/core=4,walltime=00:30:00",
                "#OAR -p memcore>=2048",
            ],
        ),
        (
            "htcondor",
            &["--job-mem", "8GiB", "--job-cpu", "6"],
            &["RequestMemory = 8192", "RequestCpus = 6"],
        ),
        (
            "local",
            &["--job-mem", "100G", "--job-cpu", "3"],
            &["#LOCAL name=rdask-worker cores=3 memory=100G walltime=00:30:00"],
        ),
    ];
    for (system, args, want) in cases {
        let out = run(bin()
            .arg("job-script")
            .args(["--system", system])
            .args(*args)
            .args(FIXED));
        assert!(out.status.success(), "{system} {args:?}: {}", stderr(&out));
        let script = stdout(&out);
        for line in *want {
            assert!(
                script.lines().any(|l| l == *line),
                "{system} {args:?}: no line `{line}` in\n{script}"
            );
        }
    }
    // The merged configuration keeps the text as written too.
    let out = run(bin().args(["config", "show", "--job-mem", "100G"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("job_mem = \"100G\""),
        "{}",
        stdout(&out)
    );
}

/// The real sbatch accepts every `--mem=` we write for `job_mem`, as written or converted.
#[test]
fn the_real_sbatch_accepts_the_job_mem_we_write() {
    if !real_system_enabled("slurm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (job_mem, line) in [
        ("1G", "#SBATCH --mem=1G"),
        ("1GB", "#SBATCH --mem=1GB"),
        ("512m", "#SBATCH --mem=512m"),
        ("2GiB", "#SBATCH --mem=2G"),
        ("1.5GB", "#SBATCH --mem=2G"),
    ] {
        let out = run(bin()
            .args(["job-script", "--system", "slurm", "--queue", "debug"])
            .args(["--job-mem", job_mem])
            .args(FIXED));
        assert!(out.status.success(), "{job_mem}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.lines().any(|l| l == line), "{job_mem}: {script}");
        let path = dir.path().join("job.sh");
        std::fs::write(&path, &script).unwrap();
        let test = std::process::Command::new("sbatch")
            .arg("--test-only")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "{job_mem}: sbatch --test-only refused `{line}`: {}",
            String::from_utf8_lossy(&test.stderr)
        );
    }
}

/// The `python` key becomes the worker's `--python` on every system's worker command, from a
/// flag, the environment or a config file, and `config show` names it with its source.
#[test]
fn the_python_key_reaches_the_worker_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobqueue.toml");
    std::fs::write(&file, "[sge]\npython = '/opt/py env/bin/python3'\n").unwrap();
    /// (system, environment, flags, what the worker command must hold)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "slurm",
            vec![],
            vec!["--python", "/opt/venv/bin/python"],
            " --python /opt/venv/bin/python",
        ),
        (
            "pbs",
            vec![("RDASK_PYTHON", "python3.12")],
            vec![],
            " --python python3.12",
        ),
        (
            "sge",
            vec![("RDASK_CONFIG", file.to_str().unwrap())],
            vec![],
            " --python '/opt/py env/bin/python3'",
        ),
    ];
    for (system, env, flags, expected) in cases {
        let out = run(bin()
            .args(["job-script", "--system", system])
            .args(FIXED)
            .args(&flags)
            .envs(env.iter().copied()));
        assert!(out.status.success(), "{system}: {}", stderr(&out));
        let script = stdout(&out);
        let worker_line = script
            .lines()
            .find(|l| l.contains("/opt/rdask/bin/rdask-jobqueue worker"))
            .unwrap_or_else(|| panic!("{system}: no worker command in\n{script}"));
        assert!(
            worker_line.contains(expected),
            "{system}: {expected:?} missing from {worker_line}"
        );
    }
    // Without the key the worker command has no --python (the worker picks its default).
    let out = run(bin().args(["job-script", "--system", "slurm"]).args(FIXED));
    assert!(!stdout(&out).contains("--python"), "{}", stdout(&out));

    let out = run(bin()
        .args(["config", "show", "--system", "sge"])
        .env("RDASK_CONFIG", &file));
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    let line = shown
        .lines()
        .find(|l| l.starts_with("python "))
        .unwrap_or_else(|| panic!("no python line in\n{shown}"));
    assert!(
        line.contains("\"/opt/py env/bin/python3\"") && line.contains("[sge]"),
        "{line}"
    );
}

/// A relative path, an option-like value or an empty value for `python` is refused with exit
/// 2, naming the source and the fix, from every source, and no script is printed.
#[test]
fn a_bad_python_value_is_exit_2_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    for (value, needle) in [
        ("venv/bin/python", "relative path"),
        ("-c", "starts with '-'"),
        ("/opt/venv/bin/", "directory"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, format!("python = '{value}'\n")).unwrap();
        let by_flag = run(bin()
            .args(["job-script", "--system", "slurm"])
            .args(FIXED)
            .arg(format!("--python={value}")));
        let by_env = run(bin()
            .args(["job-script", "--system", "slurm"])
            .args(FIXED)
            .env("RDASK_PYTHON", value));
        let by_file = run(bin()
            .args(["job-script", "--system", "slurm"])
            .args(FIXED)
            .arg("--config")
            .arg(&file));
        for (out, name) in [
            (by_flag, "--python"),
            (by_env, "RDASK_PYTHON"),
            (by_file, "`python`"),
        ] {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} {value}: {err}");
            assert!(
                err.contains(name) && err.contains(needle) && err.contains("absolute path"),
                "{name} {value}: unclear: {err}"
            );
            assert!(stdout(&out).is_empty(), "{name} {value}: printed a script");
        }
    }
}
