//! Arrays end to end: expressions over HDF5 files written by h5py, computed on a local cluster
//! of real worker processes and checked against NumPy on the same files
//! (tests/arrays/reference.py, run with Debian's python3-numpy and python3-h5py); results we
//! store are read back by h5py; the `array` command's errors; out-of-core runs under a memory
//! limit.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdask::array::eval::{evaluate, Context};
use rdask::array::{self, format, Array};
use rdask::{LocalCluster, LocalClusterOptions};

use common::{bin, run, stderr, stdout};

fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn reference(args: &[&str]) -> std::process::Output {
    Command::new(python())
        .arg(common::repo().join("tests/arrays/reference.py"))
        .args(args)
        .output()
        .expect("running python3 (python3-numpy and python3-h5py)")
}

fn make_inputs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = reference(&["make", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "reference.py make: {}", stderr(&out));
    dir
}

fn options(workers: usize, memory_limit: u64) -> LocalClusterOptions {
    LocalClusterOptions {
        workers,
        threads_per_worker: 1,
        memory_limit,
        worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
        death_timeout: Duration::from_secs(5),
        ..LocalClusterOptions::default()
    }
}

fn context(dir: &Path) -> Context {
    let file = dir.join("inputs.h5").display().to_string();
    let mut ctx = Context::default();
    for name in ["f64", "f32", "i64", "i32", "b32", "c3", "v", "b"] {
        ctx.inputs.insert(
            name.to_string(),
            Array::from_hdf5(&file, &format!("/{name}"), None).unwrap(),
        );
    }
    ctx
}

/// Every operation, per dtype where it matters, with shapes and chunks that do not divide.
fn expressions() -> Vec<String> {
    let mut e = Vec::new();
    for x in ["f64", "f32", "i64", "i32"] {
        for op in ["sum", "mean", "min", "max", "var", "std"] {
            e.push(format!("{x}.{op}()"));
            e.push(format!("{x}.{op}(axis=0)"));
            e.push(format!("{x}.{op}(axis=1)"));
        }
        for t in [
            "{x}.T",
            "{x}.dot({x}.T)",
            "{x}.T @ {x}",
            "{x} + 1",
            "{x} * 2.5",
            "{x} - {x}.mean(axis=0)",
            "({x} + {x}[:, :1]) / 3",
            "{x} ** 2",
            "-{x}",
            "abs({x})",
            "sqrt(abs({x}))",
            "{x}[3:30:4, ::5]",
            "{x}[-1]",
            "{x}[..., 2]",
            "{x}.rechunk((5, 11)).sum(axis=1)",
            "{x}.astype('f4')",
            "{x}.astype('int32') * 3",
            "{x}.sum(axis=0, keepdims=True)",
        ] {
            e.push(t.replace("{x}", x));
        }
    }
    // Issue 17's elementwise operations: comparisons, logic, where, clip, minimum/maximum,
    // floor division and modulo (by zero too), rounding and the float functions.
    for x in ["f64", "f32", "i64", "i32"] {
        for t in [
            "{x} > 0",
            "({x} > -3) & ({x} <= 4)",
            "({x} < -20) | ({x} >= 20)",
            "({x} != 0) ^ ({x} == {x}.T.T)",
            "~({x} > 0)",
            "np.where({x} > 0, {x}, 0)",
            "np.where({x} < 0, {x}, f64)",
            "np.minimum({x}, {x}.mean(axis=0))",
            "np.maximum({x}, 1)",
            "np.clip({x}, -5, 5)",
            "{x}.clip(0)",
            "{x} // 4",
            "{x} % 4",
            "{x} // -3",
            "{x} % -3",
            "{x} % 0",
            "{x} // 2.5",
            "np.sign({x})",
            "np.isnan({x})",
            "np.isfinite({x})",
            "{x}.astype(bool)",
            "{x}.astype('f4')",
            "{x}.astype('i4')",
            "{x}.astype('i8')",
            "{x}.astype('f8')",
            "np.tanh({x} / 10)",
            "np.arctan({x})",
            "np.arcsin({x} / 100)",
            "np.arccos({x} / 100)",
            "np.log10(abs({x}) + 1)",
            "np.log1p(abs({x}))",
            "np.expm1({x} / 10)",
            "{x}.argmin()",
            "{x}.argmax(axis=0)",
            "np.argmin({x}, axis=1)",
            "({x} > 0).any(axis=0)",
            "({x} > -25).all(axis=1)",
            "np.count_nonzero({x} > 0, axis=1)",
            "np.nansum({x}, axis=0)",
            "np.nanmean({x}, axis=1)",
            "np.nanmax({x}, axis=0)",
            "np.nanstd({x}, axis=0, ddof=1)",
            "({x} / 10).prod(axis=0)",
            "{x}.cumsum(axis=0)",
            "np.cumsum({x}, axis=1)",
            "({x} / 40).cumprod(axis=0)",
            "{x}.T.cumsum(axis=-1)",
        ] {
            e.push(t.replace("{x}", x));
        }
    }
    for x in ["f64", "f32"] {
        for t in [
            "np.floor({x})",
            "np.ceil({x})",
            "np.round({x})",
            "np.round({x}, 1)",
            "{x}.round(-1)",
        ] {
            e.push(t.replace("{x}", x));
        }
    }
    for x in ["i64", "i32"] {
        for t in ["~{x}", "{x} & 7", "{x} | b32", "{x} ^ -1", "{x} // 0"] {
            e.push(t.replace("{x}", x));
        }
    }
    e.extend(
        [
            "b",
            "~b",
            "b & (f64 > 0)",
            "b | (i32 < 0)",
            "b ^ b.T.T",
            "b + b",
            "b * (f32 > 0)",
            "b + 1",
            "b * 2.5",
            "b / 2",
            "b.sum()",
            "b.sum(axis=0)",
            "b.mean(axis=1)",
            "b.max(axis=1)",
            "b.min()",
            "b.astype('f4') * 2",
            "b.astype('i4') - 1",
            "np.where(b, f64, i32)",
            "np.where(i32, 1, 2.5)",
            "np.minimum(b, f64 > 0)",
            "abs(b)",
            "np.isnan(np.log(f64))",
        ]
        .map(String::from),
    );
    for ax in ["", "axis=0", "axis=1", "axis=2", "axis=(0, 2)"] {
        for op in ["sum", "mean", "max", "std"] {
            e.push(format!("c3.{op}({ax})"));
        }
    }
    e.extend(
        [
            "c3.T",
            "c3.transpose((1, 0, 2)) + 1",
            "c3[1:5:3, :, -2]",
            "v.sum()",
            "v.mean()",
            "v[::3]",
            "v * v - 1",
            "v.std(ddof=1)",
            "v.var(ddof=1)",
            "exp(v) + log(abs(v) + 1) - sin(v) * cos(v)",
            "f64 + b32",
            "i32 + f32",
            "i32 / 2",
            "i64 * 2",
            "i32 + b32",
            "f32 + f64",
            "2 ** i32.astype('f8') / 1e10",
            "1 - f64",
            "ones((7, 5), chunks=(3, 2)).sum(axis=0)",
            "arange(17, chunks=(5,)) * 2",
            "arange(3, 40, 4, chunks=(3,))",
            "zeros((4, 4)) + 3",
            "full((3, 5), 2.5, chunks=(2, 2)).mean(axis=1)",
            "f64.dot(f64.T + 1).sum()",
            "(f64 + f64.T.T) - f64.mean(axis=0)",
            "f64[:20].dot(f64[:20].T)",
            "f64[::-1]",
            "f64[30:2:-3, ::-2]",
            "i32[::-1].sum(axis=0)",
            "f32.T[::-2, 5]",
            "c3[::-1, None, 1:3, ::-2]",
            "v[::-7]",
            "f64[None, :, None] + 1",
            "np.squeeze(f64[:1])",
            "np.expand_dims(v, 0) * 2",
            "np.concatenate((f64, f32), axis=0)",
            "np.concatenate((f64, i32[:, :5]), axis=1)",
            "np.stack((f64, f64.T.T), axis=-1)",
            "np.stack((b32, b32 * 2))",
            "f64[f64.shape[0] - 1] * f64.ndim",
            "f64.reshape(23, 37)",
            "i32.reshape(-1)[::5]",
            "c3.reshape(6, 20).sum(axis=1)",
            "v.reshape(5, 10).T",
            "f64 @ b32.astype('f8')",
            "b32 @ f32.T",
            "v @ v",
            "np.dot(i64[:, 0], i32[:, 1])",
            "np.median(f64, axis=0)",
            "np.percentile(i32, 25, axis=1)",
            "np.median(c3, axis=1)",
            "np.percentile(v, 99)",
        ]
        .map(String::from),
    );
    e
}

#[test]
fn every_operation_matches_numpy() {
    let dir = make_inputs();
    let ctx = context(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results: BTreeMap<String, serde_json::Value> = rt.block_on(async {
        let cluster = LocalCluster::start(options(3, 0)).await.unwrap();
        let client = cluster.client().await.unwrap();
        let mut results = BTreeMap::new();
        for expr in expressions() {
            let a = evaluate(&expr, &ctx).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let v = array::compute(&client, &a)
                .await
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(v.shape(), a.shape(), "{expr}: shape as planned");
            assert_eq!(v.dtype(), a.dtype(), "{expr}: dtype as planned");
            results.insert(expr, format::json(&v));
        }
        cluster.close().await;
        results
    });
    let file = dir.path().join("results.json");
    std::fs::write(&file, serde_json::to_string(&results).unwrap()).unwrap();
    let out = reference(&[
        "check",
        dir.path().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "differences from numpy:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(&format!("{0} of {0}", results.len())));
}

#[test]
fn stored_results_read_back_with_h5py_and_existing_files_keep_their_datasets() {
    let dir = make_inputs();
    let inputs = dir.path().join("inputs.h5").display().to_string();
    let out_file = dir.path().join("out.h5").display().to_string();
    let d = dir.path().to_str().unwrap().to_string();
    let cases = [
        ("(f64 + f64.T.T) - f64.mean(axis=0)", "/centred"),
        ("c3.transpose((2, 0, 1)) * 2", "/groups/c3t"),
        ("i32 + b32", "/ints"),
        ("f32[::2, 3:]", "/sliced"),
        ("f64.sum(axis=1)", "/rowsums"),
        // bool as h5py stores it (an enum of int8), read and written.
        ("(f64 > 0) & ~b", "/mask"),
    ];
    for (i, (expr, dataset)) in cases.iter().enumerate() {
        let o = run(bin()
            .args(["array", expr, "--local", "2", "--quiet"])
            .args(["--input", &format!("f64={inputs}:/f64")])
            .args(["--input", &format!("f32={inputs}:/f32")])
            .args(["--input", &format!("i32={inputs}:/i32")])
            .args(["--input", &format!("b32={inputs}:/b32")])
            .args(["--input", &format!("c3={inputs}:/c3")])
            .args(["--input", &format!("b={inputs}:/b")])
            .args(["--output", &format!("{out_file}:{dataset}")]));
        assert!(o.status.success(), "{expr}: {}", stderr(&o));
        assert!(stdout(&o).contains("stored"), "{}", stdout(&o));
        // The first store created the file (a rename); later ones copy into it.
        let check = reference(&["stored", &format!("{out_file}:{dataset}"), expr, &d]);
        assert!(
            check.status.success(),
            "{}{}",
            stdout(&check),
            stderr(&check)
        );
        if i > 0 {
            let first = cases[0];
            let again = reference(&["stored", &format!("{out_file}:{}", first.1), first.0, &d]);
            assert!(again.status.success(), "an earlier dataset was damaged");
        }
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("rdask-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn array_cmd(args: &[&str]) -> std::process::Output {
    run(bin()
        .arg("array")
        .args(args)
        .args(["--local", "1", "--quiet"]))
}

#[test]
fn bad_input_is_refused_clearly_and_nothing_is_written() {
    let dir = make_inputs();
    let inputs = dir.path().join("inputs.h5").display().to_string();
    let x = format!("x={inputs}:/f64");
    let out = dir.path().join("o.h5").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["x.sum()".into(), "-i".into(), "x=/nonexistent.h5:/x".into()],
            "no such file",
        ),
        (
            vec!["x.sum()".into(), "-i".into(), format!("x={inputs}:/nope")],
            "no dataset '/nope'",
        ),
        (
            vec!["x.sum()".into(), "-i".into(), format!("x={inputs}:/s")],
            "supported: float64",
        ),
        (
            vec!["x + x.T[:5]".into(), "-i".into(), x.clone()],
            "could not be broadcast",
        ),
        (
            vec!["x.mean(axis=2)".into(), "-i".into(), x.clone()],
            "axis 2 is out of bounds",
        ),
        (vec!["x.sum(".into(), "-i".into(), x.clone()], "^"),
        (vec!["x $ 2".into(), "-i".into(), x.clone()], "^"),
        (
            vec!["x.sum()".into(), "-i".into(), "x".into()],
            "NAME=FILE.h5:/dataset",
        ),
        (
            vec!["y * 2".into(), "-i".into(), x.clone()],
            "unknown name 'y'",
        ),
        (
            vec!["ones((100000, 100000)) + 1".into()],
            "too large to print",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = array_cmd(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{args:?}: wanted '{want}' in: {}",
            stderr(&o)
        );
    }
    // The syntax error shows the expression with a caret under the place.
    let o = array_cmd(&["x.sum(axis=0", "-i", &x]);
    let err = stderr(&o);
    assert!(
        err.contains("x.sum(axis=0\n") && err.contains("            ^"),
        "{err}"
    );
    // An existing output is refused without --overwrite, and left as it was.
    let first = array_cmd(&["x * 2", "-i", &x, "-o", &format!("{out}:/y")]);
    assert!(first.status.success(), "{}", stderr(&first));
    let before = std::fs::read(&out).unwrap();
    let again = array_cmd(&["x * 3", "-i", &x, "-o", &format!("{out}:/y")]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&out).unwrap(), before, "the output changed");
    let over = array_cmd(&["x * 3", "-i", &x, "-o", &format!("{out}:/y"), "--overwrite"]);
    assert!(over.status.success(), "{}", stderr(&over));
    // A run that fails on the workers leaves no output and no temporary file.
    let failing = array_cmd(&[
        "x.astype('i8') ** -1",
        "-i",
        &x,
        "-o",
        &format!("{}:/z", dir.path().join("never.h5").display()),
    ]);
    assert_ne!(failing.status.code(), Some(0));
    assert!(
        stderr(&failing).contains("negative integer powers"),
        "{}",
        stderr(&failing)
    );
    assert!(!dir.path().join("never.h5").exists());
    let tmp = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("rdask-tmp")
        })
        .count();
    assert_eq!(tmp, 0, "temporary files were left behind");
}

#[test]
fn printed_results_in_text_and_json() {
    let o = run(bin().args([
        "array",
        "ones((5, 3), chunks=(2, 2)).sum(axis=0)",
        "--local",
        "1",
        "--format",
        "json",
        "--quiet",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["data"], serde_json::json!([5.0, 5.0, 5.0]));
    let o = run(bin().args(["array", "arange(6).sum()", "--local", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "15");
}

/// The out-of-core case: 2 workers of 256 MiB each, a 2 GiB input; a reduction and
/// an elementwise result stored to HDF5 both complete with every worker's peak RSS under its
/// limit.
#[test]
fn out_of_core_runs_stay_under_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.h5").display().to_string();
    let output = dir.path().join("out.h5").display().to_string();
    let limit: u64 = 256 << 20;
    let n = 16384; // 16384^2 float64 = 2 GiB
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The input, written by a cluster of its own.
        {
            let cluster = LocalCluster::start(options(2, 0)).await.unwrap();
            let client = cluster.client().await.unwrap();
            let x = Array::random(&[n, n], 3, Some(&[1024, 1024])).unwrap();
            array::store(&client, &x, &input, "/x", false)
                .await
                .unwrap();
            cluster.close().await;
        }
        assert!(std::fs::metadata(&input).unwrap().len() >= 2 << 30);
        let cluster = LocalCluster::start(options(2, limit)).await.unwrap();
        let client = cluster.client().await.unwrap();
        let x = Array::from_hdf5(&input, "/x", None).unwrap();
        let mean = array::compute(
            &client,
            &x.reduce(rdask::array::block::ReduceOp::Mean, None, false, 0.0)
                .unwrap(),
        )
        .await
        .unwrap();
        let m = mean.to_f64()[[]];
        assert!((m - 0.5).abs() < 1e-3, "mean of uniform values: {m}");
        let y = x
            .with_scalar(
                rdask::array::block::BinOp::Mul,
                rdask::array::Scalar::Int(2),
                false,
            )
            .unwrap()
            .with_scalar(
                rdask::array::block::BinOp::Sub,
                rdask::array::Scalar::Int(1),
                false,
            )
            .unwrap();
        array::store(&client, &y, &output, "/y", false)
            .await
            .unwrap();
        for pid in cluster.worker_pids() {
            let peak = rdask::sys::peak_rss_of(&pid.to_string());
            assert!(peak > 0, "worker {pid} gone before its peak was read");
            assert!(
                peak < limit,
                "worker {pid} peaked at {} MiB, over the {} MiB limit",
                peak >> 20,
                limit >> 20
            );
            eprintln!(
                "worker {pid}: peak RSS {} MiB of {} MiB",
                peak >> 20,
                limit >> 20
            );
        }
        cluster.close().await;
    });
    // Spot-check the stored result against the input with h5py.
    let check = Command::new(python())
        .args([
            "-c",
            "import h5py, numpy as np, sys\n\
             x = h5py.File(sys.argv[1])['/x']; y = h5py.File(sys.argv[2])['/y']\n\
             assert y.shape == x.shape and y.dtype == np.float64\n\
             for s in [np.s_[:1000, :1000], np.s_[-1000:, 5000:7000], np.s_[8000:8100, :]]:\n\
             \x20   assert np.allclose(y[s], 2 * x[s] - 1, rtol=0, atol=0), s\n\
             print('ok')",
            &input,
            &output,
        ])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

/// The README's first command, small: it builds its sample, runs the classic examples and
/// checks each against a direct computation.
#[test]
fn the_demo_checks_every_result() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(bin().args([
        "demo",
        "--size",
        "2048",
        "--chunk",
        "512",
        "--dot-size",
        "512",
        "--memory-limit",
        "256MiB",
        "--dir",
        dir.path().to_str().unwrap(),
    ]));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for step in [
        "x.sum()",
        "x.mean(axis=1)",
        "(x + x.T) - x.mean(axis=0)",
        "y.dot(y.T + 1)",
    ] {
        assert!(
            out.contains(&format!("ok  {step}")),
            "{step} missing in:\n{out}"
        );
    }
    assert!(out.contains("every result matched its direct computation"));
    assert!(dir.path().join("sample.h5").is_file() && dir.path().join("result.h5").is_file());
}
