//! Compressed and otherwise filtered HDF5 inputs, read as h5py wrote them: every filter
//! combination (gzip levels, shuffle, lzf, fletcher32, szip and scaleoffset through the
//! library), every dtype (narrow, unsigned, float16, big-endian, bool), edge chunks, chunks
//! never written, chunks whose filter mask skips filters; each read whole, strided, cut
//! across chunks (rechunked) and reduced, compared with NumPy reading the same file through
//! h5py (tests/arrays/filters.py). A corrupt checksum is an error, not wrong numbers.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rdask::array::{self, eval, format, Array};
use rdask::{LocalCluster, LocalClusterOptions};

use common::{bin, run, stderr, stdout};

fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn filters_py(args: &[&str]) -> std::process::Output {
    Command::new(python())
        .arg(common::repo().join("tests/arrays/filters.py"))
        .args(args)
        .output()
        .expect("running python3 (python3-numpy and python3-h5py)")
}

/// The expressions read for one dataset of `ndim` axes: whole, strided, cut across the
/// file's chunks, transposed, reduced.
fn expressions(name: &str, ndim: u64) -> Vec<String> {
    if name.starts_with("big_") {
        // Large enough for direct reads of unfiltered chunks; kept few (their JSON is big).
        return [
            "{}[::2, 1::3]",
            "{}[5:290, 7:400].rechunk((100, 150))",
            "{}[::-3, ::7]",
            "{}.sum()",
            "{}.rechunk((70, 90)).sum(axis=0)",
        ]
        .map(|s| s.replace("{}", name))
        .to_vec();
    }
    let mut e: Vec<String> = match ndim {
        1 => vec!["{}", "{}[::3]", "{}[5:60]", "{}.rechunk((13,))", "{}[::-4]"],
        3 => vec!["{}", "{}[::2, 1:, ::4]", "{}.rechunk((5, 3, 2))"],
        _ => vec![
            "{}",
            "{}[::2, 1::3]",
            "{}[3:17, 2:]",
            "{}.rechunk((6, 5))",
            "{}[1::7, ::5].T",
            "{}[::-2, 4]",
        ],
    }
    .into_iter()
    .map(|s| s.replace("{}", name))
    .collect();
    // Sums where float32 rounding would not decide the comparison.
    let float32 = ["t_f4", "t_f2", "t_be_f4"].contains(&name);
    if !float32 && !name.starts_with("t_bool") {
        e.push(format!("{name}.sum()"));
        e.push(format!("{name}.rechunk((4, 3)).sum(axis=0)").replace(
            "(4, 3)",
            match ndim {
                1 => "(9,)",
                3 => "(4, 3, 5)",
                _ => "(4, 3)",
            },
        ));
    }
    e
}

#[test]
fn every_filter_and_dtype_h5py_writes_reads_as_numpy_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = filters_py(&["make", d]);
    assert!(out.status.success(), "filters.py make: {}", stderr(&out));
    let made: BTreeMap<String, u64> = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(made.len() > 30, "{made:?}");
    let file = dir.path().join("filters.h5").display().to_string();
    let mut ctx = eval::Context::default();
    for name in made.keys() {
        let a = Array::from_hdf5(&file, &format!("/{name}"), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ctx.inputs.insert(name.clone(), a);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results: BTreeMap<String, serde_json::Value> = rt.block_on(async {
        // Two threads per worker: chunks are decoded on both at once.
        let cluster = LocalCluster::start(LocalClusterOptions {
            workers: 2,
            threads_per_worker: 2,
            memory_limit: 0,
            worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
            death_timeout: Duration::from_secs(5),
            ..LocalClusterOptions::default()
        })
        .await
        .unwrap();
        let client = cluster.client().await.unwrap();
        let mut results = BTreeMap::new();
        for (name, &ndim) in &made {
            for expr in expressions(name, ndim) {
                let a = eval::evaluate(&expr, &ctx).unwrap_or_else(|e| panic!("{expr}: {e}"));
                let v = array::compute(&client, &a)
                    .await
                    .unwrap_or_else(|e| panic!("{expr}: {e}"));
                results.insert(expr, format::json(&v));
            }
        }
        cluster.close().await;
        results
    });
    let json = dir.path().join("results.json");
    std::fs::write(&json, serde_json::to_string(&results).unwrap()).unwrap();
    let out = filters_py(&["check", d, json.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "differences from numpy:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(&format!("{0} of {0}", results.len())));
}

#[test]
fn a_chunk_failing_its_checksum_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.h5").display().to_string();
    let out = Command::new(python())
        .arg("-c")
        .arg(
            "import h5py, numpy as np, sys\n\
             with h5py.File(sys.argv[1], 'w') as f:\n\
             \x20   d = f.create_dataset('x', data=np.arange(40.0), chunks=(10,), fletcher32=True)\n\
             \x20   d.id.write_direct_chunk((10,), np.arange(10.0).tobytes() + b'\\0\\0\\0\\1')\n",
        )
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", stderr(&out));
    for expr in ["x.sum()", "x[::3].sum()"] {
        let out = run(bin().args([
            "array",
            expr,
            "-i",
            &format!("x={file}:/x"),
            "--local",
            "1",
            "--quiet",
        ]));
        let err = stderr(&out);
        assert!(!out.status.success(), "{expr}: {}", stdout(&out));
        assert!(err.contains("fletcher32 checksum"), "{expr}: {err}");
        assert!(err.contains("bad.h5:/x"), "{expr}: {err}");
    }
}

/// The zstd filter (id 32015) is decoded here, with or without its HDF5 plugin: chunks
/// compressed by the zstd library, written raw by h5py (shuffled first for one dataset),
/// read whole, strided and cut across chunks.
#[test]
fn zstd_chunks_are_decoded_without_the_plugin() {
    let (rows, cols, c) = (40usize, 30usize, 16usize);
    let value = |i: usize, j: usize| (i * cols + j) as f64 * 0.5;
    let dir = tempfile::tempdir().unwrap();
    for shuffled in [false, true] {
        for ci in (0..rows).step_by(c) {
            for cj in (0..cols).step_by(c) {
                // Edge chunks are stored whole; the part outside the dataset is never read.
                let mut bytes = Vec::with_capacity(c * c * 8);
                for i in ci..ci + c {
                    for j in cj..cj + c {
                        let v = if i < rows && j < cols {
                            value(i, j)
                        } else {
                            -1.0
                        };
                        bytes.extend(v.to_le_bytes());
                    }
                }
                if shuffled {
                    let n = c * c;
                    let mut planes = vec![0u8; bytes.len()];
                    for e in 0..n {
                        for b in 0..8 {
                            planes[b * n + e] = bytes[e * 8 + b];
                        }
                    }
                    bytes = planes;
                }
                let z = zstd::bulk::compress(&bytes, 3).unwrap();
                let name = format!("{}-{ci}-{cj}.zst", u8::from(shuffled));
                std::fs::write(dir.path().join(name), z).unwrap();
            }
        }
    }
    let file = dir.path().join("z.h5").display().to_string();
    let out = Command::new(python())
        .arg("-c")
        .arg(
            "import h5py, sys, os\n\
             d = sys.argv[1]\n\
             with h5py.File(os.path.join(d, 'z.h5'), 'w') as f:\n\
             \x20   for name, shuffle in (('z', False), ('sz', True)):\n\
             \x20       x = f.create_dataset(name, shape=(40, 30), dtype='f8', chunks=(16, 16), shuffle=shuffle, compression=32015, allow_unknown_filter=True)\n\
             \x20       for ci in range(0, 40, 16):\n\
             \x20           for cj in range(0, 30, 16):\n\
             \x20               x.id.write_direct_chunk((ci, cj), open(os.path.join(d, f'{int(shuffle)}-{ci}-{cj}.zst'), 'rb').read())\n",
        )
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", stderr(&out));
    let mut ctx = eval::Context::default();
    for name in ["z", "sz"] {
        let a = Array::from_hdf5(&file, &format!("/{name}"), None).unwrap();
        ctx.inputs.insert(name.to_string(), a);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster::start(LocalClusterOptions {
            workers: 1,
            threads_per_worker: 2,
            memory_limit: 0,
            worker_program: Some(env!("CARGO_BIN_EXE_rdask-jobqueue").into()),
            death_timeout: Duration::from_secs(5),
            ..LocalClusterOptions::default()
        })
        .await
        .unwrap();
        let client = cluster.client().await.unwrap();
        for name in ["z", "sz"] {
            // (expression, rows, columns): element (i, j) of the result is value(rows(i), cols(j)).
            type Pick = fn(usize) -> usize;
            let cases: [(String, usize, usize, Pick, Pick); 3] = [
                (name.to_string(), 40, 30, |i| i, |j| j),
                (
                    format!("{name}[::3, 1::2]"),
                    14,
                    15,
                    |i| 3 * i,
                    |j| 1 + 2 * j,
                ),
                (format!("{name}.rechunk((7, 9))"), 40, 30, |i| i, |j| j),
            ];
            for (expr, n, m, ri, cj) in cases {
                let a = eval::evaluate(&expr, &ctx).unwrap();
                let got = array::compute(&client, &a).await.unwrap().to_f64();
                assert_eq!(got.shape(), &[n, m], "{expr}");
                for ((i, j), v) in got
                    .into_dimensionality::<ndarray::Ix2>()
                    .unwrap()
                    .indexed_iter()
                {
                    assert_eq!(*v, value(ri(i), cj(j)), "{expr} at ({i}, {j})");
                }
            }
            let a = eval::evaluate(&format!("{name}.sum()"), &ctx).unwrap();
            let got = array::compute(&client, &a).await.unwrap().to_f64();
            assert_eq!(
                got.iter().next(),
                Some(&(1199.0 * 1200.0 / 4.0)),
                "{name}.sum()"
            );
        }
        cluster.close().await;
    });
}
