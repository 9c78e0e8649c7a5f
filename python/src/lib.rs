//! `rdask._rdask`: the extension module under the `rdask` Python package. It binds the Rust
//! core — `rdask::client::Client`, `rdask::local::LocalCluster`, `rdask::cluster::connect_named`,
//! the worker and the array layer — and adds no scheduling of its own: the Python modules
//! pickle calls and results, this module moves them as task graphs.
//!
//! Async calls run on one tokio runtime owned by the module, with the GIL released while they
//! wait; long waits come back every 100 ms to let Python deliver Ctrl-C.

mod array;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyByteArray;

use rdask::client::KeyState;
use rdask::graph::TaskSpec;
use rdask::ids::TaskId;
use rdask::kernels::python as pykernel;

/// The module's runtime: started on first use, shared by every client and cluster.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rdask-client")
            .enable_all()
            .build()
            .expect("the rdask client runtime starts")
    })
}

/// rdask's errors as Python's: bad input is a ValueError, the rest a RuntimeError.
fn py_err(e: rdask::Error) -> PyErr {
    if e.exit_code() == 2 {
        PyValueError::new_err(e.to_string())
    } else {
        PyRuntimeError::new_err(e.to_string())
    }
}

/// Runs a future on the runtime with the GIL released, checking for Ctrl-C every 100 ms and
/// giving up after `timeout` seconds.
fn block_on<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    fut: impl std::future::Future<Output = T> + Send,
) -> PyResult<T> {
    let deadline = match timeout {
        Some(t) if !(t.is_finite() && t >= 0.0) => {
            return Err(PyValueError::new_err(format!(
                "timeout {t} is not a number of seconds >= 0"
            )))
        }
        Some(t) => Some(Instant::now() + Duration::from_secs_f64(t.min(1e9))),
        None => None,
    };
    let mut fut = std::pin::pin!(fut);
    loop {
        let step = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
            None => Duration::from_millis(100),
        };
        let done = py.detach(|| {
            runtime().block_on(async { tokio::time::timeout(step, fut.as_mut()).await.ok() })
        });
        if let Some(v) = done {
            return Ok(v);
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PyTimeoutError::new_err(format!(
                "no result within {} s",
                timeout.unwrap_or_default()
            )));
        }
    }
}

/// A connection to a scheduler (`rdask.Client` wraps it).
#[pyclass(frozen, module = "rdask._rdask")]
struct Client {
    inner: Mutex<Option<Arc<rdask::Client>>>,
}

impl Client {
    fn new(c: rdask::Client) -> Client {
        Client {
            inner: Mutex::new(Some(Arc::new(c))),
        }
    }

    fn get(&self) -> PyResult<Arc<rdask::Client>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("this client is closed"))
    }
}

fn ids(keys: &[u64]) -> Vec<TaskId> {
    keys.iter().map(|&k| TaskId(k)).collect()
}

#[pymethods]
impl Client {
    /// Connects to the cluster made by `rdask-jobqueue up NAME`.
    #[staticmethod]
    fn connect_named(py: Python<'_>, name: String) -> PyResult<Client> {
        let c = block_on(py, Some(60.0), rdask::cluster::connect_named(&name))?.map_err(py_err)?;
        Ok(Client::new(c))
    }

    /// The scheduler's address.
    #[getter]
    fn address(&self) -> PyResult<String> {
        Ok(self.get()?.address.clone())
    }

    /// Submits Python calls as one graph: each is (call bytes, dependency keys); `python`
    /// is the interpreter that made them (workers use it unless configured otherwise).
    /// Returns the new keys, in order.
    fn submit(
        &self,
        python: &str,
        calls: Vec<(PyBackedBytes, Vec<u64>)>,
        wanted: bool,
    ) -> PyResult<Vec<u64>> {
        let client = self.get()?;
        let mut keys = Vec::with_capacity(calls.len());
        let tasks: Vec<TaskSpec> = calls
            .into_iter()
            .map(|(call, deps)| {
                let id = client.new_key();
                keys.push(id);
                TaskSpec::new(
                    id,
                    pykernel::KERNEL,
                    pykernel::encode_args(python, &call),
                    ids(&deps),
                )
            })
            .collect();
        let wanted_keys = if wanted { keys.clone() } else { Vec::new() };
        client.submit(tasks, &wanted_keys).map_err(py_err)?;
        Ok(keys.into_iter().map(|k| k.0).collect())
    }

    /// Waits until every key is in memory. Returns None, or the first key found failed.
    #[pyo3(signature = (keys, timeout=None))]
    fn wait(&self, py: Python<'_>, keys: Vec<u64>, timeout: Option<f64>) -> PyResult<Option<u64>> {
        let client = self.get()?;
        let tasks = ids(&keys);
        let outcome = block_on(py, timeout, client.wait(&tasks))?;
        if outcome.is_ok() {
            return Ok(None);
        }
        if let Some(k) = tasks
            .iter()
            .find(|k| matches!(client.key_state(**k), KeyState::Erred(_)))
        {
            return Ok(Some(k.0));
        }
        Err(py_err(outcome.unwrap_err()))
    }

    /// Waits until at least one key is done (in memory or failed); returns those that are.
    #[pyo3(signature = (keys, timeout=None))]
    fn wait_any(&self, py: Python<'_>, keys: Vec<u64>, timeout: Option<f64>) -> PyResult<Vec<u64>> {
        let client = self.get()?;
        let tasks = ids(&keys);
        let done = block_on(py, timeout, client.wait_any(&tasks))?.map_err(py_err)?;
        Ok(done.into_iter().map(|k| k.0).collect())
    }

    /// ("pending" | "ready" | "erred" | "lost", error text or None), without a round trip.
    fn key_state(&self, key: u64) -> PyResult<(&'static str, Option<String>)> {
        Ok(match self.get()?.key_state(TaskId(key)) {
            KeyState::Pending => ("pending", None),
            KeyState::Ready => ("ready", None),
            KeyState::Erred(e) => ("erred", Some(e)),
            KeyState::Lost(e) => ("lost", Some(e)),
        })
    }

    /// Fetches the results from the workers holding them (each as a bytearray: writable,
    /// so NumPy arrays decoded from it are too, at the cost of one copy).
    #[pyo3(signature = (keys, timeout=None))]
    fn gather<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<u64>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Bound<'py, PyByteArray>>> {
        let client = self.get()?;
        let tasks = ids(&keys);
        let got = block_on(py, timeout, client.gather(&tasks))?.map_err(py_err)?;
        Ok(got.iter().map(|b| PyByteArray::new(py, b)).collect())
    }

    /// The scheduler may drop these results (and cancel their tasks if nothing needs them).
    fn release(&self, keys: Vec<u64>) -> PyResult<()> {
        match self.get() {
            Ok(c) => c.release(&ids(&keys)).map_err(py_err),
            // Released by a future outliving its client: nothing left to tell.
            Err(_) => Ok(()),
        }
    }

    /// The number of workers connected now.
    fn n_workers(&self, py: Python<'_>) -> PyResult<usize> {
        let client = self.get()?;
        let report = block_on(py, Some(30.0), async move { client.status().await })?;
        Ok(report.map_err(py_err)?.workers.len())
    }

    /// Closes the connection (the cluster keeps running).
    fn close(&self) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _guard = runtime().enter();
        drop(taken);
    }
}

/// A scheduler in this process and worker processes on this machine.
#[pyclass(frozen, module = "rdask._rdask")]
struct LocalCluster {
    inner: Mutex<Option<rdask::LocalCluster>>,
}

#[pymethods]
impl LocalCluster {
    #[new]
    #[pyo3(signature = (n_workers, threads_per_worker, memory_limit, worker_program, local_directory, worker_args))]
    fn new(
        py: Python<'_>,
        n_workers: usize,
        threads_per_worker: u32,
        memory_limit: u64,
        worker_program: PathBuf,
        local_directory: Option<PathBuf>,
        worker_args: Vec<String>,
    ) -> PyResult<LocalCluster> {
        let mut opts = rdask::LocalClusterOptions {
            workers: n_workers,
            threads_per_worker,
            memory_limit,
            worker_program: Some(worker_program),
            worker_args,
            ..rdask::LocalClusterOptions::default()
        };
        if let Some(d) = local_directory {
            opts.local_directory = d;
        }
        let cluster = block_on(py, None, rdask::LocalCluster::start(opts))?.map_err(py_err)?;
        Ok(LocalCluster {
            inner: Mutex::new(Some(cluster)),
        })
    }

    /// A new client connection to this cluster's scheduler.
    fn client(&self, py: Python<'_>) -> PyResult<Client> {
        let (address, secret) = {
            let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let c = guard
                .as_ref()
                .ok_or_else(|| PyRuntimeError::new_err("this cluster is closed"))?;
            (c.address().to_string(), c.secret.clone())
        };
        let c = block_on(py, Some(60.0), async move {
            rdask::Client::connect(&address, &secret).await
        })?
        .map_err(py_err)?;
        Ok(Client::new(c))
    }

    #[getter]
    fn scheduler_address(&self) -> PyResult<String> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("this cluster is closed"))?
            .address()
            .to_string())
    }

    /// The process ids of the running worker processes.
    fn worker_pids(&self) -> Vec<u32> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .map(rdask::LocalCluster::worker_pids)
            .unwrap_or_default()
    }

    /// Stops the workers and the scheduler.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(c) = taken {
            block_on(py, None, c.close())?;
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _guard = runtime().enter();
        drop(taken);
    }
}

/// The worker's command line, for the `rdask-worker` program.
#[derive(clap::Parser, Debug)]
#[command(
    name = "rdask-worker",
    about = "A worker of an rdask cluster running in this Python environment (one process; \
             LocalCluster starts these)"
)]
struct WorkerCommand {
    #[command(flatten)]
    args: rdask::worker::command_line::WorkerArgs,
}

/// Runs a worker with these arguments (`rdask-worker [worker] ADDRESS ...`); returns its
/// exit status.
#[pyfunction]
fn worker_main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    use clap::Parser;
    rdask::rt::init_logging("info");
    let skip = usize::from(argv.get(1).map(String::as_str) == Some("worker"));
    let words = argv.iter().take(1).chain(argv.iter().skip(1 + skip));
    let args = match WorkerCommand::try_parse_from(words) {
        Ok(w) => w.args,
        Err(e) => {
            let _ = e.print();
            return Ok(e.exit_code());
        }
    };
    if !args.no_nanny {
        eprintln!(
            "error: rdask-worker runs one worker process: add --no-nanny, or use \
             `rdask-jobqueue worker --nworkers N` for a supervised group"
        );
        return Ok(2);
    }
    let mut kernels = rdask::kernels::Registry::empty();
    rdask::array::kernels::register(&mut kernels);
    let code =
        py.detach(
            || match rdask::worker::command_line::worker(args, kernels, &["worker"]) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            },
        );
    Ok(code)
}

#[pymodule]
fn _rdask(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<LocalCluster>()?;
    m.add_function(wrap_pyfunction!(worker_main, m)?)?;
    m.add("RUNNER_SOURCE", pykernel::RUNNER_SOURCE)?;
    m.add("PYTHON_KERNEL", pykernel::KERNEL)?;
    array::register(m)?;

    Ok(())
}
