//! The `command` kernel: runs a program as a task, so plain executables can be scheduled like
//! any other work. The result is the exit status and the (bounded) stdout and stderr.

use std::io::Read;
use std::process::{Command, Stdio};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Keep at most this many bytes of each of stdout and stderr (the rest is counted).
    pub max_output: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes produced beyond `max_output` and dropped.
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl CommandSpec {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        CommandSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: vec![],
            cwd: None,
            max_output: 1 << 20,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a command spec encodes")
    }
}

impl CommandResult {
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("not a command result: {e}"))
    }
}

pub fn run(args: &[u8], _inputs: &[Bytes]) -> Result<Bytes, String> {
    let spec: CommandSpec =
        postcard::from_bytes(args).map_err(|e| format!("command: bad arguments: {e}"))?;
    let (program, rest) = spec.argv.split_first().ok_or("command: empty argv")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .envs(spec.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("command: cannot start {program}: {e}"))?;
    let limit = spec.max_output;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || bounded(err, limit));
    let (stdout, stdout_dropped) = bounded(out, limit);
    let (stderr, stderr_dropped) = err_reader
        .join()
        .map_err(|_| "command: stderr reader panicked")?;
    let status = child
        .wait()
        .map_err(|e| format!("command: waiting for {program}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    let result = CommandResult {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_dropped,
        stderr_dropped,
    };
    Ok(Bytes::from(
        postcard::to_allocvec(&result).expect("encodes"),
    ))
}

/// Reads everything, keeping the first `limit` bytes and counting the rest.
fn bounded(mut r: impl Read, limit: u64) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = (limit as usize).saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
        dropped += (n - room) as u64;
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_program_and_bounds_its_output() {
        let mut spec = CommandSpec::new([
            "sh",
            "-c",
            "printf hello; printf oops >&2; head -c 5000 /dev/zero; exit 3",
        ]);
        spec.max_output = 100;
        spec.env.push(("X".into(), "1".into()));
        let r = CommandResult::decode(&run(&spec.encode(), &[]).unwrap()).unwrap();
        assert_eq!(r.code, Some(3));
        assert_eq!(&r.stdout[..5], b"hello");
        assert_eq!(r.stdout.len(), 100);
        assert_eq!(r.stdout_dropped, 4905);
        assert_eq!(r.stderr, b"oops");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = run(&CommandSpec::new(["/nonexistent/prog"]).encode(), &[]).unwrap_err();
        assert!(err.contains("cannot start /nonexistent/prog"), "{err}");
    }
}
