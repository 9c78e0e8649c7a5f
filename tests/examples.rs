//! The examples build and do what their docs say. The test command (tests/run.sh) builds them
//! first with `cargo build --examples`; `--all-targets` alone builds them only as test harnesses.

use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with --all-targets",
        path.display()
    );
    path
}

#[test]
fn a_program_with_its_own_kernels_runs_them_on_its_own_workers() {
    let out = std::process::Command::new(example("custom_kernels"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12 words");
}
