//! The state machine the model replicates: one register holding a small
//! number. Small on purpose: every state the checker stores holds a copy per
//! replica.

use serde::{Deserialize, Serialize};
use stateright::semantics::register::{RegisterOp, RegisterRet};
use std::fmt;
use vr::core::StateMachine;

/// The register.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Register(pub u8);

/// An operation on the register.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegisterOperation {
    /// Sets the value.
    Write(u8),
    /// Reads the value.
    Read,
}

/// What an operation returns.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegisterOutput {
    /// Write: done.
    Written,
    /// Read: the value.
    Value(u8),
}

impl StateMachine for Register {
    type Operation = RegisterOperation;
    type Output = RegisterOutput;

    fn apply(&mut self, operation: &RegisterOperation) -> RegisterOutput {
        match *operation {
            RegisterOperation::Write(value) => {
                self.0 = value;
                RegisterOutput::Written
            }
            RegisterOperation::Read => RegisterOutput::Value(self.0),
        }
    }

    fn rebuild(&self) -> Vec<RegisterOperation> {
        if *self == Register::default() {
            Vec::new()
        } else {
            vec![RegisterOperation::Write(self.0)]
        }
    }
}

impl RegisterOperation {
    /// The same operation in stateright's sequential register specification.
    pub fn to_spec(self) -> RegisterOp<u8> {
        match self {
            RegisterOperation::Write(value) => RegisterOp::Write(value),
            RegisterOperation::Read => RegisterOp::Read,
        }
    }
}

impl RegisterOutput {
    /// The same output in stateright's sequential register specification.
    pub fn to_spec(self) -> RegisterRet<u8> {
        match self {
            RegisterOutput::Written => RegisterRet::WriteOk,
            RegisterOutput::Value(value) => RegisterRet::ReadOk(value),
        }
    }
}

impl fmt::Debug for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reg={}", self.0)
    }
}

impl fmt::Debug for RegisterOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterOperation::Write(v) => write!(f, "w{v}"),
            RegisterOperation::Read => write!(f, "r"),
        }
    }
}

impl fmt::Debug for RegisterOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterOutput::Written => write!(f, "ok"),
            RegisterOutput::Value(v) => write!(f, "={v}"),
        }
    }
}
