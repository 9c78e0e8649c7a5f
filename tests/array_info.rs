//! `rdask-jobqueue info FILE` against h5py's own view of files h5py wrote
//! (tests/arrays/info_files.py): every group and dataset, with shape, dtype, chunks, filters
//! (HDF5's filter ids and levels as h5py reads them), size in memory and on disk.

mod common;

use common::{bin, run, stderr, stdout};
use serde_json::Value;

fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Every entry of our JSON tree, by path.
fn flatten(e: &Value, out: &mut std::collections::BTreeMap<String, Value>) {
    let path = e["path"].as_str().unwrap().to_string();
    if e["kind"] == "group" {
        if path != "/" {
            out.insert(path, e.clone());
        }
        for m in e["members"].as_array().unwrap() {
            flatten(m, out);
        }
    } else {
        out.insert(path, e.clone());
    }
}

/// The name and level we must give for a filter h5py reports as (id, client data).
fn expected_filter(id: i64, values: &[i64]) -> (String, String) {
    match id {
        1 => ("gzip".into(), format!("level={}", values[0])),
        2 => ("shuffle".into(), String::new()),
        3 => ("fletcher32".into(), String::new()),
        6 => {
            // H5Pset_scaleoffset: [scale type (0 float D-scale, 2 int), factor, ...].
            let kind = if values[0] == 0 {
                "float, decimals"
            } else {
                "integer, minbits"
            };
            ("scaleoffset".into(), format!("{kind}={}", values[1]))
        }
        32000 => ("lzf".into(), String::new()),
        other => panic!("filter {other} not expected in these files"),
    }
}

#[test]
fn info_matches_what_h5py_sees() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python())
        .arg(common::repo().join("tests/arrays/info_files.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    for (name, h5py_view) in files.as_object().unwrap() {
        let path = dir.path().join(name);
        let o = run(bin().arg("info").arg(&path).arg("--json"));
        assert!(o.status.success(), "{}", stderr(&o));
        let ours: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let mut entries = Default::default();
        flatten(&ours["root"], &mut entries);
        let h5py_view = h5py_view.as_object().unwrap();
        assert_eq!(
            entries.keys().collect::<Vec<_>>(),
            h5py_view.keys().collect::<Vec<_>>(),
            "{name}: the same groups and datasets"
        );
        let (mut memory, mut stored) = (0, 0);
        for (p, want) in h5py_view {
            let got = &entries[p];
            if want.get("group").is_some() {
                assert_eq!(got["kind"], "group", "{p}");
                continue;
            }
            for key in ["shape", "dtype", "chunks", "memory_bytes", "stored_bytes"] {
                assert_eq!(got[key], want[key], "{name}:{p} {key}");
            }
            memory += want["memory_bytes"].as_u64().unwrap();
            stored += want["stored_bytes"].as_u64().unwrap();
            let got_filters: Vec<(String, String)> = got["filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap().to_string();
                    (s("name"), s("settings"))
                })
                .collect();
            let want_filters: Vec<(String, String)> = want["filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let values: Vec<i64> = f[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_i64().unwrap())
                        .collect();
                    expected_filter(f[0].as_i64().unwrap(), &values)
                })
                .collect();
            assert_eq!(got_filters, want_filters, "{name}:{p} filters");
        }
        assert_eq!(ours["memory_bytes"], memory);
        assert_eq!(ours["stored_bytes"], stored);
        // The text tree names every member once, with its filters.
        let o = run(bin().arg("info").arg(&path));
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains("x  float64 (1000, 200)  chunks (100, 50)  shuffle + gzip(level=4)"),
            "{text}"
        );
        assert!(text.contains("└── sub/\n"), "{text}");
        assert!(
            text.contains(
                "never_written  float64 (5, 5)  contiguous  no filters  200 B, nothing stored yet"
            ),
            "{text}"
        );
    }
}

#[test]
fn info_refuses_what_is_not_an_hdf5_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.h5");
    let o = run(bin().arg("info").arg(&missing));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    let text = dir.path().join("notes.h5");
    std::fs::write(&text, "not hdf5").unwrap();
    let o = run(bin().arg("info").arg(&text));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not an HDF5 (or netCDF-4) file"),
        "{}",
        stderr(&o)
    );
    // A netCDF-3 (classic) file: named as such, with the conversion to run.
    let classic = dir.path().join("classic.nc");
    std::fs::write(&classic, b"CDF\x01\x00\x00\x00\x00").unwrap();
    let o = run(bin().arg("info").arg(&classic));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("netCDF-3 (classic)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nccopy -k nc4"), "{}", stderr(&o));
}
