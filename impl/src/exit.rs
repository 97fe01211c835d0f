//! `vr`'s exit status: one meaning per code, the same for every command, so
//! that scripts can tell "no such key" from "no cluster".

use std::process::ExitCode;
use vr::client::ClientError;

/// What `vr --help` says of the exit status (README.md, "Exit status", says
/// the same).
pub const HELP: &str = "\
Exit status:
  0  success
  1  the cluster answered no: the key is absent (get, delete), the value
     differs (cas); or the history is not linearizable (check-history)
  2  usage or configuration error: a bad flag, an unreadable file or
     configuration, a request larger than a request may be
  3  no answer: the cluster did not reply in time, or pruned the client's
     session under load (the operation may or may not have taken effect),
     its replicas belong to another cluster id, or nothing succeeded
     (status, bench)";

/// A command's failure: its message for stderr and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit 1: the cluster answered, and the answer is no.
    pub fn no(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Exit 2: the command cannot be carried out as given.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit 3: the cluster did not answer, or not as this cluster.
    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: 3,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// Errors given as text are usage or configuration errors.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::usage(message)
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let message = error.to_string();
        match error {
            ClientError::Timeout { .. }
            | ClientError::Io(_)
            | ClientError::WrongCluster { .. }
            | ClientError::WrongKey { .. }
            | ClientError::SessionExpired => Failure::unreachable(message),
            ClientError::TooLarge { .. } | ClientError::Rejected(_) => Failure::usage(message),
        }
    }
}
