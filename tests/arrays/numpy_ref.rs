//! NumPy as the reference for expressions on generated arrays (tests/arrays/semantics.py):
//! its answer per expression, and the comparison of ours with it. Shared by
//! tests/array_semantics.rs and tests/array_ops.rs.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use rdask::array::eval::{evaluate, Context};
use rdask::array::{self};
use rdask::{LocalCluster, LocalClusterOptions};

use crate::common;

pub fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Where a NumPy 2 is installed for the reference (a PYTHONPATH entry): RDASK_TEST_NUMPY2,
/// which tests/run.sh sets after installing one. h5py need not load with it: semantics.py
/// does not use it.
pub fn numpy2_path() -> Option<String> {
    std::env::var("RDASK_TEST_NUMPY2").ok()
}

/// NumPy's answer for one expression.
#[derive(Debug)]
pub enum Reference {
    Value {
        shape: Vec<usize>,
        dtype: String,
        values: Vec<f64>,
    },
    Error(String),
}

/// Evaluates `exprs` with NumPy (from `pythonpath` first, if given): its version, and an
/// answer per expression.
pub fn numpy(exprs: &[&str], pythonpath: Option<&str>) -> (String, Vec<Reference>) {
    let mut cmd = Command::new(python());
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd
        .arg(common::repo().join("tests/arrays/semantics.py"))
        .args(exprs)
        .output()
        .expect("running python3 with numpy");
    assert!(
        out.status.success(),
        "semantics.py: {}",
        common::stderr(&out)
    );
    let text = common::stdout(&out);
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let version = lines.next().unwrap()["numpy"].as_str().unwrap().to_string();
    let answers = lines
        .map(|v| match v.get("error") {
            Some(e) => Reference::Error(e.as_str().unwrap().to_string()),
            None => Reference::Value {
                shape: serde_json::from_value(v["shape"].clone()).unwrap(),
                dtype: v["dtype"].as_str().unwrap().to_string(),
                values: v["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().parse::<f64>().unwrap())
                    .collect(),
            },
        })
        .collect();
    (version, answers)
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn options() -> LocalClusterOptions {
    LocalClusterOptions {
        workers: 1,
        threads_per_worker: 1,
        memory_limit: 0,
        worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
        death_timeout: Duration::from_secs(5),
        ..LocalClusterOptions::default()
    }
}

/// Computes each expression on a one-worker cluster and compares with NumPy: the same shape,
/// dtype and values (nan and inf included), or a refusal before running whose message
/// contains NumPy's (up to its first comma: NumPy's messages go on about casting rules).
pub fn compare_with_numpy(exprs: &[&str], answers: &[Reference]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster::start(options()).await.unwrap();
        let client = cluster.client().await.unwrap();
        for (expr, reference) in exprs.iter().zip(answers) {
            let built = evaluate(expr, &Context::default());
            match (reference, built) {
                (Reference::Error(e), Err(ours)) => {
                    let numpy_message = e.split_once(": ").unwrap().1.trim_end_matches('.');
                    let numpy_message = numpy_message.split(',').next().unwrap();
                    assert!(
                        ours.to_lowercase().contains(&numpy_message.to_lowercase()),
                        "{expr}: NumPy says '{e}', we say: {ours}"
                    );
                }
                (Reference::Error(e), Ok(_)) => panic!("{expr}: NumPy refuses ({e}), we build it"),
                (Reference::Value { .. }, Err(ours)) => panic!("{expr}: refused: {ours}"),
                (
                    Reference::Value {
                        shape,
                        dtype,
                        values,
                    },
                    Ok(a),
                ) => {
                    let got = array::compute(&client, &a)
                        .await
                        .unwrap_or_else(|e| panic!("{expr}: {e}"));
                    assert_eq!(got.shape(), shape.as_slice(), "{expr}");
                    assert_eq!(got.dtype().name(), dtype, "{expr}");
                    let got: Vec<f64> = got.to_f64().iter().copied().collect();
                    assert_eq!(got.len(), values.len(), "{expr}");
                    for (g, w) in got.iter().zip(values) {
                        assert!(same(*g, *w), "{expr}: {got:?} vs NumPy's {values:?}");
                    }
                }
            }
        }
        cluster.close().await;
    });
}
