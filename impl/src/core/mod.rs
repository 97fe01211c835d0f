//! The protocol core: sans-IO and deterministic.
//!
//! No sockets, clocks, threads or random numbers: time arrives as
//! [`Input::Timeout`], the recovery nonce as an argument of
//! [`Replica::restart`], and everything the replica must do leaves as
//! [`Effect`]s. One module per sub-protocol.

mod checkpoint;
mod client_table;
mod config;
mod delivery;
mod durable;
mod invariants;
mod io;
mod log;
mod message;
mod normal;
mod recovery;
mod replica;
mod state_machine;
mod state_transfer;
mod types;
mod view_change;

pub use checkpoint::{Checkpoint, CheckpointPart, Restore};
pub use client_table::{ClientRecord, ClientTable};
#[cfg(feature = "wrong-variants")]
pub use config::Bug;
pub use config::{
    ATTEMPTS_MAX_DEFAULT, CLIENT_TABLE_MAX_DEFAULT, Config, ConfigError,
    MESSAGE_WEIGHT_MAX_DEFAULT, STATE_TRANSFER_ENTRIES_MAX_DEFAULT,
};
pub use delivery::{Delivery, Unconfirmed};
pub use durable::{Durable, DurableError, Persist, ViewState};
pub use invariants::{ReplicaCheck, Violation, replica_invariants};
pub use io::{Effect, Input, Timer};
pub use log::{Entry, Log, LogSuffix};
pub use message::{
    Ack, Command, Commit, DoViewChange, Envelope, GetCheckpoint, GetState, Message, NewCheckpoint,
    NewState, Outcome, Prepare, PrepareOk, PrimaryState, Recovery, RecoveryResponse, Reply,
    Request, StartView, StartViewChange,
};
pub use recovery::RecoveryProgress;
pub use replica::{Replica, Status};
pub use state_machine::StateMachine;
pub use state_transfer::CatchUp;
pub use types::{
    ClientId, CommitNumber, MessageId, NUMBER_MAX, Nonce, OpNumber, ReplicaId, RequestNumber, View,
};
pub use view_change::{Candidate, Fill, ViewChangeCaches};
