//! Error kinds that decide the exit code: usage/config problems exit 2, everything else 1.
use std::path::PathBuf;

/// An error a user can act on. Displayed as one line, naming the file or field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or configuration value (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A configuration field failed validation (exit code 2).
    #[error("config field `{field}` = {value}: {problem}")]
    Config { field: String, value: String, problem: String },
    /// Unreadable or malformed input data (exit code 1).
    #[error("{}: {problem}", path.display())]
    Data { path: PathBuf, problem: String },
    /// The run was interrupted by a signal after a checkpoint was written.
    #[error("interrupted by {signal}; checkpoint written to {}", checkpoint.display())]
    Interrupted { signal: &'static str, code: i32, checkpoint: PathBuf },
    /// Training stopped on a non-finite loss or gradient (`train.on_nonfinite = "stop"`); the
    /// message names the step and the last good checkpoint (exit code 1). A study records it as
    /// the run's outcome and goes on with the next run.
    #[error("{0}")]
    Diverged(String),
    /// A child process failed with this exit code (`selfsup launch`).
    #[error("{message}")]
    Exit { code: i32, message: String },
}

impl Error {
    pub fn data(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Data { path: path.into(), problem: problem.into() }
    }
    pub fn config(field: impl Into<String>, value: impl std::fmt::Display, problem: impl Into<String>) -> Self {
        Error::Config { field: field.into(), value: value.to_string(), problem: problem.into() }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// Exit code for an error chain: 2 for usage/config errors, the signal code for interrupts, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Usage(_) | Error::Config { .. } => 2,
                Error::Interrupted { code, .. } | Error::Exit { code, .. } => *code,
                Error::Data { .. } | Error::Diverged(_) => 1,
            };
        }
    }
    1
}
