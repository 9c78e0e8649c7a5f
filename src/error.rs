//! The library's error type. Every error says what went wrong and how to fix it; the command
//! layer maps the kind to an exit code (2: the user's input, 1: the batch system or runtime).

use std::fmt;

/// How a failed external command ended. Decisions match on it (a command that never
/// started did nothing; one killed at its deadline may have done anything); the messages
/// are its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    /// It never ran: the program is missing or not executable (the reason, with a hint).
    CouldNotStart(String),
    /// It ran and exited with this code.
    Exited(i32),
    /// It was killed by a signal that was not ours.
    Signalled,
    /// It ran past its deadline and we killed it (and its process group).
    TimedOut { after_secs: u64 },
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandStatus::CouldNotStart(why) => write!(f, "could not start: {why}"),
            CommandStatus::Exited(code) => write!(f, "exit status {code}"),
            CommandStatus::Signalled => f.write_str("killed by a signal"),
            CommandStatus::TimedOut { after_secs } => {
                write!(f, "timed out after {after_secs} s and was killed")
            }
        }
    }
}

/// A failed external command (sbatch, qsub, ...), with everything needed to understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// The command line as it was run.
    pub command: String,
    pub status: CommandStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.command, self.status)?;
        let stderr = self.stderr.trim();
        let stdout = self.stdout.trim();
        if !stderr.is_empty() {
            write!(f, ": {stderr}")?;
        } else if !stdout.is_empty() {
            write!(f, ": {stdout}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong (a bad option, file or expression). Exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// A batch-system command failed or answered something we cannot read. Exit code 1.
    #[error("{0}")]
    Command(Box<CommandFailure>),
    /// The runtime (scheduler, workers, daemon) failed. Exit code 1.
    #[error("{0}")]
    Runtime(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }

    /// Wraps an IO error with what we were doing ("writing /path/job.sh").
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// 2 for invalid input, 1 for everything that failed while doing the work.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => 2,
            _ => 1,
        }
    }
}

impl From<CommandFailure> for Error {
    fn from(f: CommandFailure) -> Self {
        Error::Command(Box::new(f))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
