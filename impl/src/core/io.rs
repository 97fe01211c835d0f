//! What goes into [`Replica::step`](super::Replica::step) and what comes out.
//! The core does no I/O: a driver (the runtime, the model, a test) turns these
//! into datagrams, timers and replies.

use super::durable::Persist;
use super::message::{Envelope, Reply, Request};
use super::state_machine::StateMachine;
use super::types::ReplicaId;
use std::fmt;

/// Something that happened to a replica.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Input<S: StateMachine> {
    /// A message from another replica arrived.
    Deliver(Envelope<S>),
    /// A client's request arrived.
    Request(Request<S>),
    /// Several clients' requests arrived together: the primary places them
    /// in one Prepare (batching, paper 6.2).
    Requests(Vec<Request<S>>),
    /// A timer the replica set has expired.
    Timeout(Timer),
}

/// The replica's timers. How long each runs is the driver's setting; the core
/// only says when one starts and stops.
///
/// [`Effect::SetTimer`] (re)starts a timer: its deadline moves to one full
/// duration from now. A timer that fires is no longer set until set again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Primary, Normal: restarted by every Prepare it sends; on expiry the idle
    /// primary sends Commit to every backup.
    Heartbeat,
    /// Backup, Normal: restarted whenever the primary of the view is heard
    /// from; on expiry the backup starts a view change.
    PrimaryTimeout,
    /// ViewChange: started on entering a view change; on expiry the replica
    /// gives up on this view and moves to the next.
    ViewChangeTimeout,
    /// Set while the delivery layer holds unconfirmed messages; on expiry each
    /// is resent, or its receiver counted as disconnected.
    Resend,
    /// Recovering: on expiry the Recovery message goes out again.
    RecoveryRetry,
}

/// Something the driver must do for the replica.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Effect<S: StateMachine> {
    /// Send this envelope to replica `to`.
    Send {
        to: ReplicaId,
        envelope: Envelope<S>,
    },
    /// Start, or restart, the timer.
    SetTimer(Timer),
    /// Stop the timer; a no-op if it is not set.
    CancelTimer(Timer),
    /// Send this reply to its client.
    Reply(Reply<S>),
    /// Make this durable before carrying out any later `Send` or `Reply`
    /// (spec/protocol.md, "Durability"). A driver without storage ignores it.
    Persist(Persist<S>),
}

impl<S: StateMachine> fmt::Debug for Input<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Deliver(envelope) => write!(f, "deliver {envelope:?}"),
            Input::Request(request) => write!(f, "client {request:?}"),
            Input::Requests(requests) => write!(f, "clients {requests:?}"),
            Input::Timeout(timer) => write!(f, "timeout {timer:?}"),
        }
    }
}

impl<S: StateMachine> fmt::Debug for Effect<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Send { to, envelope } => write!(f, "send to {to:?}: {envelope:?}"),
            Effect::SetTimer(timer) => write!(f, "set {timer:?}"),
            Effect::CancelTimer(timer) => write!(f, "cancel {timer:?}"),
            Effect::Reply(reply) => write!(f, "reply {reply:?}"),
            Effect::Persist(persist) => write!(f, "persist {persist:?}"),
        }
    }
}
