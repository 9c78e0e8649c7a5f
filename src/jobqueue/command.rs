//! Runs batch-system commands with a timeout, capturing their output.
//!
//! A login node's batch system can hang (a slurmctld restarting, a stale NFS mount under
//! qsub); a deployer that waits forever on it hangs its users' shells. Every command therefore
//! has a deadline, after which it is killed and reported as timed out.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{Invocation, Output};
use crate::error::{CommandFailure, CommandStatus, Error, Result};

/// Runs the command and returns what it printed, whatever its exit status. Fails only when it
/// cannot start or does not finish within `timeout`.
pub fn run(inv: &Invocation, timeout: Duration) -> Result<Output> {
    let (program, args) = inv
        .argv
        .split_first()
        .expect("a command line is never empty");
    let stdin = match &inv.stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).map_err(|e| {
            // Without its input the command never starts (LSF's `bsub < script`).
            Error::from(CommandFailure {
                command: display(inv),
                status: CommandStatus::CouldNotStart(format!("opening {}: {e}", path.display())),
                stdout: String::new(),
                stderr: String::new(),
            })
        })?),
        None => Stdio::null(),
    };
    // Its own process group, so a timeout can kill whatever it started too (a wrapper
    // script's children would otherwise keep our pipes open).
    let mut child = Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (is the batch system's client installed and on PATH? --system picks another)"
            } else {
                ""
            };
            Error::from(CommandFailure {
                command: display(inv),
                status: CommandStatus::CouldNotStart(format!("{e}{hint}")),
                stdout: String::new(),
                stderr: String::new(),
            })
        })?;
    let stdout = reader(child.stdout.take().expect("piped"));
    let stderr = reader(child.stderr.take().expect("piped"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    let timed_out = done_rx.recv_timeout(timeout).is_err();
    if timed_out {
        // The process group of a child we have not reaped yet: the waiter thread is still
        // blocked in wait(), so the group id cannot have been recycled.
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let status = waiter
        .join()
        .expect("waiter thread")
        .map_err(Error::io(format!("waiting for `{}`", display(inv))))?;
    // Output is complete when the pipes close; a process that escaped the group may hold
    // them open, so the wait for it is bounded too (one deadline for both pipes), and what
    // arrived until then is kept.
    let grace_end = std::time::Instant::now() + PIPE_GRACE;
    let out = Output {
        code: status.code(),
        stdout: stdout.take(grace_end),
        stderr: stderr.take(grace_end),
    };
    if timed_out {
        return Err(CommandFailure {
            command: display(inv),
            status: CommandStatus::TimedOut {
                after_secs: timeout.as_secs(),
            },
            stdout: out.stdout,
            stderr: out.stderr,
        }
        .into());
    }
    Ok(out)
}

/// Runs the command and fails unless it exits with status 0.
pub fn run_checked(inv: &Invocation, timeout: Duration) -> Result<Output> {
    let out = run(inv, timeout)?;
    if out.code == Some(0) {
        Ok(out)
    } else {
        Err(failure(inv, &out).into())
    }
}

/// The error for a command that exited badly.
pub fn failure(inv: &Invocation, out: &Output) -> CommandFailure {
    CommandFailure {
        command: display(inv),
        status: match out.code {
            Some(c) => CommandStatus::Exited(c),
            None => CommandStatus::Signalled,
        },
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
    }
}

/// The command line as a user would type it (stdin redirection included).
pub fn display(inv: &Invocation) -> String {
    let mut s = inv
        .argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(p) = &inv.stdin {
        s.push_str(" < ");
        s.push_str(&shell_quote(&p.display().to_string()));
    }
    s
}

/// How long to wait for a finished command's pipes to close.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// A pipe being read to its end on a thread, keeping what arrived so far.
struct Captured {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Captured {
    /// Everything read once the pipe closed, or what arrived by `deadline`.
    fn take(self, deadline: std::time::Instant) -> String {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = self.done.recv_timeout(left);
        let buf = self.buf.lock().expect("captured output");
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> Captured {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    let shared = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            shared
                .lock()
                .expect("captured output")
                .extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(());
    });
    Captured { buf, done }
}

/// Quotes a word for a POSIX shell only when it needs it.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Quotes a word for a POSIX shell but leaves `$NAME` and `${NAME}` expansion working, for
/// values users write with variables in them (`local_directory = "$TMPDIR"`). Nothing else
/// runs: every other `$` (`$(cmd)`, `$((1+1))`, `${X:-$(cmd)}`) and every backtick is
/// escaped, so a value cannot run a command in the job.
pub fn shell_quote_expanding(word: &str) -> String {
    if shell_quote(word) == word {
        return word.to_string();
    }
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::from("\"");
    for (i, &c) in chars.iter().enumerate() {
        let plain_variable = c == '$' && is_variable_reference(&chars[i + 1..]);
        if matches!(c, '"' | '\\' | '`') || (c == '$' && !plain_variable) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether the text after a `$` is a plain variable name, or one in braces: `HOME/x`,
/// `{HOME}/x`, but not `(cmd)`, `((1+1))`, `{X:-y}`, `1` or `$`.
fn is_variable_reference(rest: &[char]) -> bool {
    let name_start = |c: &char| c.is_ascii_alphabetic() || *c == '_';
    let name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match rest.first() {
        Some(c) if name_start(c) => true,
        Some('{') => match rest.iter().position(|&c| c == '}') {
            Some(end) if end > 1 => name_start(&rest[1]) && rest[1..end].iter().all(name_char),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            &Invocation::new(["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            out,
            Output {
                code: Some(3),
                stdout: "out\n".into(),
                stderr: "err\n".into()
            }
        );
    }

    #[test]
    fn a_failed_command_shows_itself_its_status_and_stderr() {
        let inv = Invocation::new(["sh", "-c", "echo 'no such partition' >&2; exit 1"]);
        let err = run_checked(&inv, Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sh -c"), "{err}");
        assert!(
            err.contains("exit status 1") && err.contains("no such partition"),
            "{err}"
        );
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_deadline() {
        let started = std::time::Instant::now();
        let err = run(
            &Invocation::new(["sleep", "30"]),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_timeout_also_ends_what_the_command_started() {
        // A wrapper whose child keeps the pipes open: the deadline must still hold.
        let started = std::time::Instant::now();
        let inv = Invocation::new(["sh", "-c", "sleep 30; echo never"]);
        assert!(run(&inv, Duration::from_millis(300)).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn output_before_a_leftover_child_is_kept_and_the_wait_is_bounded() {
        let started = std::time::Instant::now();
        let inv = Invocation::new(["sh", "-c", "echo '1234 RUNNING'; sleep 30 & exit 0"]);
        let out = run(&inv, Duration::from_secs(20)).unwrap();
        assert_eq!(out.stdout, "1234 RUNNING\n");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run(
            &Invocation::new(["rdask-no-such-command"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.to_string().contains("could not start"), "{err}");
    }

    #[test]
    fn stdin_comes_from_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, "hello").unwrap();
        let mut inv = Invocation::new(["cat"]);
        inv.stdin = Some(p);
        assert_eq!(run(&inv, Duration::from_secs(5)).unwrap().stdout, "hello");
    }

    #[test]
    fn quoting_is_minimal_and_safe() {
        assert_eq!(shell_quote("--mem=27G"), "--mem=27G");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote_expanding("$TMPDIR/x y"), "\"$TMPDIR/x y\"");
        assert_eq!(shell_quote_expanding("a\"b"), "\"a\\\"b\"");
    }

    /// What a quoted word becomes when a shell reads it: `printf %s WORD`.
    fn through_sh(quoted: &str) -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {quoted}")])
            .env("RDASK_T", "v")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn expanding_quotes_expand_variables_and_run_nothing() {
        assert_eq!(through_sh(&shell_quote_expanding("$RDASK_T/a b")), "v/a b");
        assert_eq!(through_sh(&shell_quote_expanding("${RDASK_T}x y")), "vx y");
        for literal in [
            "$(echo pwned) x",
            "`echo pwned` x",
            "$((6*7)) x",
            "${RDASK_T:-$(echo pwned)} x",
            "a\"; echo pwned; \"",
            "$$ $1 $ x",
            "back\\slash $",
        ] {
            let quoted = shell_quote_expanding(literal);
            assert_eq!(through_sh(&quoted), literal, "{literal} as {quoted}");
            assert_eq!(through_sh(&shell_quote(literal)), literal);
        }
    }
}
