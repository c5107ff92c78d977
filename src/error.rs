//! Exit codes (DESIGN.md's table), decided in one place, and the top-level error report.

use thiserror::Error;

use crate::bucket::store::StoreError;
use crate::config::ConfigError;
use crate::names::InvalidName;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done, including "already done".
    Success = 0,
    /// Failed; the message says which steps happened.
    Failure = 1,
    /// Usage or input error: nothing was changed.
    Usage = 2,
    /// A lock is held or a compare-and-swap lost a race: nothing was changed.
    Conflict = 3,
    /// Some steps or hosts succeeded; the report says which.
    Partial = 4,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status as u8)
    }
}

/// Errors that carry their own exit status, raised by commands.
#[derive(Debug, Error)]
pub(crate) enum ExitError {
    /// Bad input: a flag, a name, a build that does not exist, a path that is not there.
    #[error("{0}")]
    Usage(String),
    /// Someone else holds the lock or won the race.
    #[error("{0}")]
    Conflict(String),
    /// Some steps happened and others did not.
    #[error("{0}")]
    Partial(String),
}

/// A failure whose command still has a result to print (a push report): the outcome is printed
/// as usual, the message as the error, and the process exits with `status`.
#[derive(Debug, Error)]
#[error("{message}")]
pub(crate) struct FailedWithOutcome {
    pub(crate) status: ExitStatus,
    /// What went wrong, in one sentence.
    pub(crate) message: String,
    /// The result to print all the same.
    pub(crate) outcome: crate::output::Outcome,
}

/// The exit status for an error: the first cause in the chain that decides one.
pub(crate) fn exit_status(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
        if let Some(reported) = cause.downcast_ref::<FailedWithOutcome>() {
            return reported.status;
        }
        if let Some(problem) = cause.downcast_ref::<ExitError>() {
            return match problem {
                ExitError::Usage(_) => ExitStatus::Usage,
                ExitError::Conflict(_) => ExitStatus::Conflict,
                ExitError::Partial(_) => ExitStatus::Partial,
            };
        }
        if cause.is::<InvalidName>() || cause.is::<ConfigError>() {
            return ExitStatus::Usage;
        }
        if let Some(status) = cause.downcast_ref::<StoreError>().and_then(store_status) {
            return status;
        }
    }
    ExitStatus::Failure
}

/// The exit status a store error decides, if any: a bucket or credentials that are not there is
/// the operator's input; a lost compare-and-swap is a conflict.
fn store_status(err: &StoreError) -> Option<ExitStatus> {
    match err {
        StoreError::NoSuchBucket { .. }
        | StoreError::NoCredentials { .. }
        | StoreError::Unreachable { .. }
        | StoreError::NoRegion => Some(ExitStatus::Usage),
        StoreError::PreconditionFailed { .. } => Some(ExitStatus::Conflict),
        _ => None,
    }
}

/// The message and its causes, outermost first, without repeats.
pub(crate) fn messages(err: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Wrapped errors often repeat their source's text; say each thing once.
        if out.last().is_none_or(|last| !last.contains(&text)) {
            out.push(text);
        }
    }
    out
}
