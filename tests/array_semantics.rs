//! Array semantics at the edges, as NumPy 2 has them (issue 11): sizes the cluster cannot
//! hold are refused before anything starts; Python ints follow NEP 50; duplicate axes,
//! `var(ddof=n)`, reductions over empty axes and negative integer powers give NumPy's values
//! or NumPy's refusal; HDF5 inputs with lzf, float16, complex or unknown filters; and reads
//! of datasets stored in tiny HDF5 chunks stay small in memory.
//!
//! NumPy (tests/arrays/semantics.py, run by RDASK_TEST_PYTHON, default /usr/bin/python3) is
//! the reference. The NEP 50 cases are compared with NumPy when it is 2.x; with NumPy 1.x
//! (Debian 12's, which promotes by value instead) they are checked against NEP 50's rule.

mod common;
#[path = "arrays/numpy_ref.rs"]
mod numpy_ref;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdask::array::eval::{evaluate, Context};
use rdask::array::{self, Array, DType};
use rdask::{LocalCluster, LocalClusterOptions};

use common::{bin, run, stderr};
use numpy_ref::{compare_with_numpy, numpy, numpy2_path};

fn python() -> String {
    std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn python_run(code: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("running python3 (python3-numpy and python3-h5py)");
    assert!(out.status.success(), "python: {}", stderr(&out));
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

fn array_cmd(args: &[&str]) -> std::process::Output {
    run(bin()
        .arg("array")
        .args(args)
        .args(["--local", "1", "--quiet"]))
}

/// Exit 2 with `needle` in the message, and no sign of a crash.
fn assert_refused(out: &std::process::Output, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: expected '{needle}' in: {err}"
    );
    for crash in ["panicked", "backtrace", "memory allocation", "connection"] {
        assert!(!err.contains(crash), "{what}: {err}");
    }
}

#[test]
fn sizes_a_cluster_cannot_hold_are_refused_before_anything_starts() {
    for (expr, needle) in [
        // 10^24 elements: the size overflows 64 bits.
        ("ones((10**12, 10**12)).sum()", "too large"),
        (
            "ones((10**10,), chunks=(1,)).sum()",
            "at most 1000000 chunks per array",
        ),
        // 5 million chunks exceeded the scheduler's message limit.
        (
            "ones((5000000,), chunks=(1,)).sum()",
            "makes 5000000 chunks",
        ),
        (
            "ones((100000, 100000), chunks=(100000, 100000)).sum()",
            "at most 512 MiB per chunk",
        ),
        // Broadcasting multiplies the operands' chunk counts.
        (
            "ones((20000, 1), chunks=(10, 1)) + ones((1, 20000), chunks=(1, 10))",
            "makes 4000000 chunks",
        ),
        (
            "ones((2, 2)).rechunk((1, 1)) + ones((10**7,), chunks=(1,))",
            "chunks",
        ),
    ] {
        assert_refused(&array_cmd(&[expr]), needle, expr);
    }
    // Within the limits the same kind of expression runs.
    let out = array_cmd(&["ones((1000,), chunks=(1,)).sum()"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::stdout(&out).trim(), "1000.0");
}

#[test]
fn edge_semantics_match_numpy() {
    let exprs = [
        // Duplicate axes, also after normalising negative ones.
        "ones((3, 4)).sum(axis=(0, 0))",
        "ones((3, 4)).mean(axis=(1, -1))",
        // var/std with ddof >= n: inf where values differ, nan where they are all equal.
        "(arange(20) * 1.5).var(ddof=20)",
        "ones((5, 3)).var(axis=0, ddof=5)",
        "(arange(6) * 1.0).std(ddof=7)",
        "(arange(12) * 1.0).var(ddof=11)",
        // Reductions over empty axes.
        "zeros((0, 3)).sum(axis=0)",
        "zeros((0, 3)).sum()",
        "zeros((0, 3), dtype='i4').sum(axis=0)",
        "arange(0).sum()",
        "zeros((0, 3)).mean(axis=0)",
        "zeros((0, 3)).mean()",
        "zeros((0, 3)).var(axis=0)",
        "zeros((0, 3)).min(axis=1)",
        "zeros((0, 3)).min(axis=0)",
        "zeros((0, 3)).max()",
        // Integer powers.
        "arange(5) ** -1",
        "arange(5).astype('i4') ** -2",
        "arange(5) ** -1.0",
        "arange(1, 5) ** 0",
        "arange(1, 5) ** 3",
        // Python ints that fit keep the array's type.
        "zeros((2, 3), dtype='i4') + 2147483647",
        "zeros((2,), dtype='i4') + -2147483648",
    ];
    let (_, answers) = numpy(&exprs, None);
    compare_with_numpy(&exprs, &answers);
}

/// NEP 50 (NumPy 2's promotion): Python ints are weak and must fit the array's type; 0-d
/// arrays are strong. NumPy 1.x promoted by value here, so with it the expectations are
/// NEP 50's, written out.
#[test]
fn python_ints_follow_nep_50() {
    let refused = [
        "arange(3).astype('i4') + 2147483648",
        "arange(3).astype('i4') * -2147483649",
        "2**31 - arange(3).astype('i4')",
        "arange(3).astype('i4') ** 2147483648",
        "full((2,), 2**40, dtype='i4')",
    ];
    let valued = [
        // A 0-d float64 array is not a Python float: float32 * float64 is float64.
        "arange(3).astype('f4') * (arange(3) * 1.0).sum()",
        "arange(3).astype('i4') * 2.5",
        "arange(3).astype('i4') / 2147483648",
        "arange(3).astype('f4') * 3",
        // NumPy 1.x made this float64 (2**40 needs int64); NEP 50 keeps float32.
        "arange(3).astype('f4') + 2**40",
    ];
    let all: Vec<&str> = refused.iter().chain(&valued).copied().collect();
    let (version, answers) = numpy(&all, numpy2_path().as_deref());
    if version.split('.').next().unwrap().parse::<u32>().unwrap() >= 2 {
        compare_with_numpy(&all, &answers);
    } else {
        eprintln!("NumPy {version} predates NEP 50: checking its rules as written");
        for expr in refused {
            let e = evaluate(expr, &Context::default()).unwrap_err();
            assert!(e.contains("out of bounds for int32"), "{expr}: {e}");
        }
        for (expr, dtype) in
            valued
                .iter()
                .zip([DType::F64, DType::F64, DType::F64, DType::F32, DType::F32])
        {
            assert_eq!(
                evaluate(expr, &Context::default()).unwrap().dtype(),
                dtype,
                "{expr}"
            );
        }
    }
    // The command refuses with exit 2 and NumPy's wording.
    assert_refused(
        &array_cmd(&["arange(3).astype('i4') + 2147483648"]),
        "Python integer 2147483648 out of bounds for int32",
        "int32 + 2**31",
    );
}

#[test]
fn hdf5_lzf_float16_complex_and_unknown_filters() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kinds.h5").display().to_string();
    python_run(
        "import h5py, numpy as np, sys\n\
         with h5py.File(sys.argv[1], 'w') as f:\n\
         \x20   f.create_dataset('lzf', data=np.arange(1000.0).reshape(40, 25), chunks=(7, 5), compression='lzf')\n\
         \x20   f.create_dataset('f16', data=(np.arange(100) / 8).astype('f2'), chunks=(16,))\n\
         \x20   f.create_dataset('c128', data=np.arange(10) * (1 + 2j))\n\
         \x20   f.create_dataset('c64', data=(np.arange(10) * 1j).astype('c8'))\n\
         \x20   d = f.create_dataset('blosc', shape=(4,), dtype='f8', chunks=(4,), compression=32001, allow_unknown_filter=True)\n\
         \x20   d.id.write_direct_chunk((0,), np.arange(4.0).tobytes())\n",
        &[&file],
    );
    let lzf = Array::from_hdf5(&file, "/lzf", None).unwrap();
    let f16 = Array::from_hdf5(&file, "/f16", None).unwrap();
    assert_eq!(f16.dtype(), DType::F32, "float16 is read as float32");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster::start(options()).await.unwrap();
        let client = cluster.client().await.unwrap();
        let got = array::compute(&client, &lzf).await.unwrap().to_f64();
        assert_eq!(got.shape(), &[40, 25]);
        for ((i, j), v) in got
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
            .indexed_iter()
        {
            assert_eq!(*v, (i * 25 + j) as f64);
        }
        let got = array::compute(&client, &f16).await.unwrap();
        assert_eq!(got.dtype(), DType::F32);
        for (i, v) in got.to_f64().iter().enumerate() {
            assert_eq!(*v, i as f64 / 8.0, "float16 value {i}");
        }
        cluster.close().await;
    });
    for (dataset, needle) in [
        ("c128", "complex128"),
        ("c64", "complex64"),
        ("blosc", "blosc filter (id 32001)"),
    ] {
        let e = Array::from_hdf5(&file, &format!("/{dataset}"), None).unwrap_err();
        assert!(e.contains(needle), "{dataset}: {e}");
        assert_refused(
            &array_cmd(&["x.sum()", "-i", &format!("x={file}:/{dataset}")]),
            needle,
            dataset,
        );
    }
}

/// 200,000 values in one-element HDF5 chunks (1.6 MB) once made a worker peak at 794 MB:
/// HDF5 keeps a selection per chunk a read touches. Reads now touch at most 1024 file chunks
/// each. The bound is loose (a fresh worker is a few tens of MiB).
#[test]
fn tiny_file_chunks_keep_worker_memory_small() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.h5");
    let file_s = file.display().to_string();
    python_run(
        "import h5py, numpy as np, sys\n\
         with h5py.File(sys.argv[1], 'w') as f:\n\
         \x20   f.create_dataset('x', data=np.arange(200000) % 1000 * 0.5, chunks=(1,))\n\
         \x20   f.create_dataset('y', data=np.arange(15000).reshape(300, 50), chunks=(1, 1))\n",
        &[&file_s],
    );
    assert!(Path::new(&file).exists());
    let x = Array::from_hdf5(&file_s, "/x", None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = LocalCluster::start(options()).await.unwrap();
        let client = cluster.client().await.unwrap();
        let got = array::compute(&client, &x).await.unwrap().to_f64();
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, (i % 1000) as f64 * 0.5, "value {i}");
        }
        // 2-d, 15,000 one-element chunks, read in pieces cut along both axes (a strided
        // transposed slice too): every value lands at its place.
        let y = Array::from_hdf5(&file_s, "/y", None).unwrap();
        let got = array::compute(&client, &y).await.unwrap().to_f64();
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, i as f64, "y value {i}");
        }
        let t = evaluate(
            "y[3::7, 1:40:3].T",
            &Context {
                inputs: [("y".to_string(), y)].into(),
                default_chunks: None,
            },
        )
        .unwrap();
        let got = array::compute(&client, &t).await.unwrap().to_f64();
        assert_eq!(got.shape(), &[13, 43]);
        let got = got.into_dimensionality::<ndarray::Ix2>().unwrap();
        for ((j, i), v) in got.indexed_iter() {
            assert_eq!(*v, ((3 + 7 * i) * 50 + 1 + 3 * j) as f64, "y.T[{j}, {i}]");
        }
        for pid in cluster.worker_pids() {
            let peak = rdask::sys::peak_rss_of(&pid.to_string());
            assert!(peak > 0, "worker {pid} gone before its peak was read");
            eprintln!("worker {pid}: peak RSS {} MiB", peak >> 20);
            assert!(
                peak < 200 << 20,
                "worker {pid} peaked at {} MiB",
                peak >> 20
            );
        }
        cluster.close().await;
    });
}
