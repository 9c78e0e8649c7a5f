//! `python.call`: runs a pickled Python function on a worker, for the `rdask` Python package.
//!
//! The worker stays a Rust process. On the first Python task it starts a long-lived Python
//! interpreter running the embedded runner (`python_runner.py`, as `python -c`); the
//! interpreters form a pool, one per task running at once (so at most one per worker
//! thread), and each is fed one call at a time over its stdin and stdout. Keeping them warm
//! is what makes a task cost a pipe round trip instead of an interpreter start. An
//! interpreter that dies is dropped (the task it ran fails with the reason) and the next task
//! starts a fresh one.
//!
//! Which interpreter: the worker's `--python` (or `RDASK_WORKER_PYTHON`) when set, else the
//! one the task names (the submitting `sys.executable`). The task's bytes are opaque here:
//! the call and its inputs go to the runner as they are, and the runner's reply is the result.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::Registry;

/// The kernel's name in the registry.
pub const KERNEL: &str = "python.call";

/// The runner script the interpreters run (also the owner of the result encoding, which the
/// Python package executes too).
pub const RUNNER_SOURCE: &str = include_str!("python_runner.py");

/// Parts up to this size are copied into one write with the request's header.
const SMALL_PART: usize = 64 << 10;

/// What a runner writes once it is ready for requests.
const READY: &[u8; 4] = b"RDR1";

/// A task's arguments: the submitting interpreter and the pickled call (opaque to Rust).
pub fn encode_args(python: &str, call: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + python.len() + call.len());
    v.extend_from_slice(&(python.len() as u32).to_le_bytes());
    v.extend_from_slice(python.as_bytes());
    v.extend_from_slice(call);
    v
}

/// The inverse of [`encode_args`].
pub fn decode_args(args: &[u8]) -> Result<(&str, &[u8]), String> {
    let bad = || format!("{KERNEL}: malformed arguments ({} bytes)", args.len());
    let len = u32::from_le_bytes(args.get(..4).ok_or_else(bad)?.try_into().expect("4")) as usize;
    let python = args.get(4..4 + len).ok_or_else(bad)?;
    let python = std::str::from_utf8(python).map_err(|_| bad())?;
    Ok((python, &args[4 + len..]))
}

/// Which interpreter runs a task: the worker's configured one wins over the submitter's.
pub fn interpreter(configured: Option<&Path>, submitted: &str) -> PathBuf {
    match configured {
        Some(p) => p.to_path_buf(),
        None if submitted.is_empty() => PathBuf::from("python3"),
        None => PathBuf::from(submitted),
    }
}

/// The request frame: the part count, then each part with its length.
pub fn encode_request_header(nparts: usize) -> [u8; 4] {
    (nparts as u32).to_le_bytes()
}

/// A runner's reply status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    Result,
    Error,
}

impl ReplyStatus {
    pub fn from_byte(b: u8) -> Result<Self, String> {
        match b {
            0 => Ok(ReplyStatus::Result),
            1 => Ok(ReplyStatus::Error),
            other => Err(format!(
                "{KERNEL}: the Python runner sent status byte {other}: its output was corrupted"
            )),
        }
    }
}

/// One live interpreter.
struct Runner {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Runner {
    fn start(python: &Path) -> Result<Runner, String> {
        let mut child = Command::new(python)
            .args(["-u", "-c", RUNNER_SOURCE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "{KERNEL}: cannot start the Python interpreter {}: {e}; give the worker a \
                     Python that exists on this host (worker --python PATH, or \
                     RDASK_WORKER_PYTHON)",
                    python.display()
                )
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("piped"));
        let mut r = Runner {
            child,
            stdin,
            stdout,
        };
        let mut ready = [0u8; 4];
        if r.stdout.read_exact(&mut ready).is_err() || &ready != READY {
            return Err(format!(
                "{KERNEL}: the Python interpreter {} did not start the runner ({}); it must be \
                 Python 3.9 or newer (see the worker's log for its error)",
                python.display(),
                r.ended()
            ));
        }
        Ok(r)
    }

    /// How the process ended (it is killed first if it has not).
    fn ended(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let status = match self.child.try_wait() {
            Ok(Some(s)) => Some(s),
            _ => {
                // Give an exiting process a moment before calling it stuck.
                std::thread::sleep(std::time::Duration::from_millis(50));
                match self.child.try_wait() {
                    Ok(Some(s)) => Some(s),
                    _ => {
                        let _ = self.child.kill();
                        self.child.wait().ok()
                    }
                }
            }
        };
        match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("it exited with status {c}"),
                (None, Some(sig)) => format!("it was killed by signal {sig}"),
                _ => "it ended".into(),
            },
            None => "it could not be waited for".into(),
        }
    }

    /// Sends one call and reads its reply. `Err` means the interpreter is unusable.
    fn call(&mut self, call: &[u8], inputs: &[Bytes]) -> std::io::Result<(ReplyStatus, Vec<u8>)> {
        // Small parts are gathered into one write (one system call for a typical task);
        // large ones (arrays) are written from where they are, not copied.
        let mut head = Vec::with_capacity(64 + call.len());
        head.extend_from_slice(&encode_request_header(1 + inputs.len()));
        for part in std::iter::once(call).chain(inputs.iter().map(|b| &b[..])) {
            head.extend_from_slice(&(part.len() as u64).to_le_bytes());
            if part.len() <= SMALL_PART {
                head.extend_from_slice(part);
            } else {
                self.stdin.write_all(&head)?;
                head.clear();
                self.stdin.write_all(part)?;
            }
        }
        self.stdin.write_all(&head)?;
        self.stdin.flush()?;
        let mut head = [0u8; 9];
        self.stdout.read_exact(&mut head)?;
        let status = ReplyStatus::from_byte(head[0])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes")) as usize;
        let mut body = vec![0u8; len];
        self.stdout.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// The warm interpreters of one worker, by interpreter path.
pub struct Pool {
    configured: Option<PathBuf>,
    idle: Mutex<HashMap<PathBuf, Vec<Runner>>>,
}

impl Pool {
    pub fn new(configured: Option<PathBuf>) -> Pool {
        Pool {
            configured,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Runs one task: an idle interpreter (or a new one) takes the call, and goes back to
    /// the pool unless it died.
    pub fn run(&self, args: &[u8], inputs: &[Bytes]) -> Result<Bytes, String> {
        let (submitted, call) = decode_args(args)?;
        let python = interpreter(self.configured.as_deref(), submitted);
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&python)
            .and_then(Vec::pop);
        let mut runner = match idle {
            Some(r) => r,
            None => Runner::start(&python)?,
        };
        match runner.call(call, inputs) {
            Ok((status, body)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(python)
                    .or_default()
                    .push(runner);
                match status {
                    ReplyStatus::Result => Ok(Bytes::from(body)),
                    ReplyStatus::Error => Err(String::from_utf8_lossy(&body).into_owned()),
                }
            }
            Err(e) => Err(format!(
                "{KERNEL}: the Python interpreter running this task died ({}; {e}); a fresh one \
                 runs the next task",
                runner.ended()
            )),
        }
    }
}

/// Registers `python.call` with a pool of its own; `python` is the worker's configured
/// interpreter, if any.
pub fn register(r: &mut Registry, python: Option<PathBuf>) {
    let pool = Arc::new(Pool::new(python));
    r.register(KERNEL, move |args, inputs| pool.run(args, inputs));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_malformed_ones_are_refused() {
        let a = encode_args("/usr/bin/python3", b"\x01\x02call");
        assert_eq!(
            decode_args(&a).unwrap(),
            ("/usr/bin/python3", &b"\x01\x02call"[..])
        );
        assert_eq!(decode_args(&encode_args("", b"")).unwrap(), ("", &b""[..]));
        assert!(decode_args(&[1, 0]).unwrap_err().contains("malformed"));
        assert!(decode_args(&[9, 0, 0, 0, b'x'])
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn the_workers_python_wins_over_the_submitters() {
        let mine = PathBuf::from("/opt/py/bin/python");
        assert_eq!(interpreter(Some(&mine), "/usr/bin/python3"), mine);
        assert_eq!(
            interpreter(None, "/usr/bin/python3"),
            PathBuf::from("/usr/bin/python3")
        );
        assert_eq!(interpreter(None, ""), PathBuf::from("python3"));
        assert_eq!(ReplyStatus::from_byte(0), Ok(ReplyStatus::Result));
        assert_eq!(ReplyStatus::from_byte(1), Ok(ReplyStatus::Error));
        assert!(ReplyStatus::from_byte(7).unwrap_err().contains("corrupted"));
    }

    /// Builds a call the way the Python package does, with the system's Python (only the
    /// standard library: the runner needs cloudpickle only for functions pickled by value).
    fn python_call(python: &str, expr: &str) -> Vec<u8> {
        let script = format!(
            "import pickle, struct, sys, operator, math\n\
             fn, args = {expr}\n\
             f = pickle.dumps(fn, protocol=5)\n\
             sys.stdout.buffer.write(struct.pack('<Q', len(f)) + f + pickle.dumps((args, {{}}), protocol=5))"
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn system_python() -> Option<String> {
        let p = std::env::var("RDASK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        Path::new(&p).exists().then_some(p)
    }

    #[test]
    fn a_warm_interpreter_runs_calls_reports_errors_and_is_replaced_when_it_dies() {
        let Some(py) = system_python() else {
            eprintln!("NOT RUN: no Python at /usr/bin/python3 or $RDASK_TEST_PYTHON");
            return;
        };
        let pool = Pool::new(None);
        let run = |expr: &str| pool.run(&encode_args(&py, &python_call(&py, expr)), &[]);
        // The result is the runner's encoding (magic, buffer count, pickle length, pickle).
        let ok = run("operator.add, (40, 2)").unwrap();
        assert_eq!(&ok[..4], b"RDP1");
        let n_idle = || {
            pool.idle
                .lock()
                .unwrap()
                .values()
                .map(Vec::len)
                .sum::<usize>()
        };
        assert_eq!(n_idle(), 1, "the interpreter stays warm");
        let err = run("math.sqrt, (-1,)").unwrap_err();
        assert!(err.contains("ValueError: math domain error"), "{err}");
        assert!(err.contains("rdask-pickled-exception:"), "{err}");
        let err = run("__import__, ('no_such_module_rdask',)").unwrap_err();
        assert!(
            err.contains("cannot import") || err.contains("No module named"),
            "{err}"
        );
        // os._exit kills the interpreter mid-task: the task fails with why, the next one
        // gets a fresh interpreter.
        let err = run("__import__('os')._exit, (3,)").unwrap_err();
        assert!(err.contains("died") && err.contains("status 3"), "{err}");
        assert_eq!(n_idle(), 0);
        assert!(run("operator.mul, (6, 7)").is_ok());
        assert_eq!(n_idle(), 1);
    }

    #[test]
    fn a_missing_interpreter_is_a_clear_error() {
        let pool = Pool::new(Some(PathBuf::from("/nonexistent/python")));
        let err = pool.run(&encode_args("", b""), &[]).unwrap_err();
        assert!(
            err.contains("cannot start the Python interpreter /nonexistent/python")
                && err.contains("--python"),
            "{err}"
        );
    }
}
