//! Array semantics at the edges (issue 11): HDF5 inputs with lzf, float16, complex or
//! unknown filters; and reads of datasets stored in tiny HDF5 chunks stay small in memory.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdask::array::{self, Array, DType};
use rdask::{LocalCluster, LocalClusterOptions};

use common::{bin, run, stderr};

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
         \x20   f.create_dataset('x', data=np.arange(200000) % 1000 * 0.5, chunks=(1,))\n",
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
