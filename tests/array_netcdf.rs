//! netCDF-4 variables as inputs (`--input x=file.nc:var`) and outputs, against
//! netCDF4-python (tests/arrays/netcdf_files.py): packed variables unpacked with
//! scale_factor/add_offset in netCDF4-python's type, _FillValue and missing_value as NaN,
//! plain and grouped variables unchanged, and our output read back by netCDF4-python.
//!
//! netCDF4-python comes from RDASK_TEST_NETCDF4 (a PYTHONPATH entry; tests/run.sh installs
//! it with pip): without the variable the test says NOT RUN; with it, a missing module fails.

mod common;

use common::{bin, run, stderr, stdout};
use serde_json::Value;

fn netcdf4(args: &[&std::ffi::OsStr]) -> Option<Value> {
    let Some(path) = std::env::var_os("RDASK_TEST_NETCDF4") else {
        eprintln!("RDASK_TEST_NETCDF4 is not set (tests/run.sh sets it): NOT RUN");
        return None;
    };
    let python = std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = std::process::Command::new(python)
        .env("PYTHONPATH", path)
        .arg(common::repo().join("tests/arrays/netcdf_files.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "netcdf_files.py: {}", stderr(&out));
    Some(serde_json::from_str(stdout(&out).trim()).unwrap())
}

/// Our `--format json` result's values, flattened, as f64 (NaN from "nan").
fn values(data: &Value, out: &mut Vec<f64>) {
    match data {
        Value::Array(items) => items.iter().for_each(|i| values(i, out)),
        Value::String(s) => out.push(s.parse().unwrap()),
        Value::Bool(b) => out.push(f64::from(u8::from(*b))),
        v => out.push(v.as_f64().unwrap()),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn check(what: &str, ours: &Value, want: &Value) {
    assert_eq!(ours["shape"], want["shape"], "{what}: shape");
    assert_eq!(ours["dtype"], want["dtype"], "{what}: dtype");
    let mut got = Vec::new();
    values(&ours["data"], &mut got);
    let want: Vec<f64> = want["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(&want) {
        assert!(same(*g, *w), "{what}: {got:?} vs netCDF4's {want:?}");
    }
}

#[test]
fn netcdf4_variables_read_as_netcdf4_python_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vars.nc");
    let Some(reference) = netcdf4(&["write".as_ref(), file.as_os_str()]) else {
        return;
    };
    for (var, want) in reference.as_object().unwrap() {
        let input = format!("x={}:{var}", file.display());
        let o = run(bin().args([
            "array", "x", "--input", &input, "--local", "1", "--quiet", "--format", "json",
        ]));
        assert!(o.status.success(), "{var}: {}", stderr(&o));
        let ours: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        check(var, &ours, want);
    }
    // `info` on the .nc file: its variables, the packed one with its filters.
    let o = run(bin().arg("info").arg(&file));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("temp  int16 (7, 5)  chunks (3, 5)  shuffle + gzip(level=3)"),
        "{text}"
    );
    assert!(text.contains("└── plain  int32 (7,)"), "{text}");
    // Computing on them: NaN where netCDF4 masks.
    let input = format!("x={}:temp", file.display());
    let o = run(bin().args([
        "array",
        "np.nansum(x)",
        "--input",
        &input,
        "--local",
        "1",
        "--quiet",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    // 0.5 * (0 + ... + 34 - 13) + 10 * 34 over the 34 unmasked values.
    let want = 0.5 * (595.0 - 13.0) + 340.0;
    assert_eq!(stdout(&o).trim().parse::<f64>().unwrap(), want);
}

#[test]
fn results_stored_as_nc_are_read_by_netcdf4_python() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vars.nc");
    let Some(reference) = netcdf4(&["write".as_ref(), file.as_os_str()]) else {
        return;
    };
    let out = dir.path().join("out.nc");
    let input = format!("x={}:wind", file.display());
    let target = format!("{}:/doubled", out.display());
    let o = run(bin().args([
        "array", "x * 2", "--input", &input, "--output", &target, "--local", "1", "--quiet",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let got = netcdf4(&["read".as_ref(), out.as_os_str(), "doubled".as_ref()]).unwrap();
    let wind = &reference["wind"];
    assert_eq!(got["shape"], wind["shape"]);
    assert_eq!(got["dtype"], "float32");
    let doubled: Vec<f64> = wind["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| 2.0 * v.as_str().unwrap().parse::<f64>().unwrap())
        .collect();
    let read: Vec<f64> = got["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(read.len(), doubled.len());
    for (r, d) in read.iter().zip(&doubled) {
        assert!(same(*r, *d), "{read:?} vs {doubled:?}");
    }
}
