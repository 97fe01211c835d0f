//! The replicated application, as the protocol sees it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;

/// A deterministic state machine: the same operations applied in the same
/// order from the same initial state give the same outputs and the same state
/// on every replica. The protocol orders the operations; the state machine
/// only applies them.
///
/// The bounds let a replica's state be cloned, compared and hashed by the model
/// checker, and operations and outputs travel on the wire.
pub trait StateMachine: Clone + Debug + Default + Eq + Hash {
    /// An operation a client asks for.
    type Operation: Clone + Debug + Eq + Ord + Hash + Serialize + DeserializeOwned;
    /// What applying an operation returns to the client.
    type Output: Clone + Debug + Eq + Ord + Hash + Serialize + DeserializeOwned;

    /// Applies one committed operation. Must be deterministic: no clocks, no
    /// randomness, no I/O.
    fn apply(&mut self, operation: &Self::Operation) -> Self::Output;

    /// Operations that, applied in order to the initial (default) state,
    /// rebuild this state: how a checkpoint travels to a replica that lacks
    /// the entries it stands for. Deterministic: the same state gives the
    /// same operations.
    fn rebuild(&self) -> Vec<Self::Operation>;

    /// How much of a message's budget (`Config::message_weight_max`) a log
    /// entry holding `operation` takes. The runtime's state machines give an
    /// upper bound on the entry's encoded size in bytes; the default counts
    /// entries.
    fn weight(operation: &Self::Operation) -> u32 {
        let _ = operation;
        1
    }

    /// The weight of a Register entry (a client opening a session), as
    /// [`weight`](Self::weight) counts it.
    fn register_weight() -> u32 {
        1
    }

    /// The same for an output, as a checkpoint's client-table rows carry
    /// them.
    fn output_weight(output: &Self::Output) -> u32 {
        let _ = output;
        1
    }
}
