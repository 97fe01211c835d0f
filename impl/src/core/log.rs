//! The log: the ordered operations a replica has accepted.

use super::state_machine::StateMachine;
use super::types::{ClientId, CommitNumber, OpNumber, RequestNumber};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One log entry: a client's request, placed at an op-number.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Entry<S: StateMachine> {
    /// The operation to apply.
    pub operation: S::Operation,
    /// The client that asked for it.
    pub client: ClientId,
    /// That client's request-number for it.
    pub request: RequestNumber,
}

impl<S: StateMachine> fmt::Debug for Entry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}/{:?}:{:?}",
            self.client, self.request, self.operation
        )
    }
}

/// The log, positions counted from 1: the entry at op-number n is `entries[n-1]`,
/// so the op-number of the log is its length and is never stored apart from it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Log<S: StateMachine> {
    entries: Vec<Entry<S>>,
}

impl<S: StateMachine> Default for Log<S> {
    fn default() -> Self {
        Log {
            entries: Vec::new(),
        }
    }
}

impl<S: StateMachine> Log<S> {
    /// A log holding these entries at op-numbers 1, 2, ...
    pub fn from_entries(entries: Vec<Entry<S>>) -> Log<S> {
        Log { entries }
    }

    /// The op-number of the latest entry (0 for an empty log).
    pub fn op_number(&self) -> OpNumber {
        OpNumber(self.entries.len() as u64)
    }

    /// The entry at op-number `op`, if the log reaches it.
    pub fn get(&self, op: OpNumber) -> Option<&Entry<S>> {
        let index = usize::try_from(op.0).ok()?.checked_sub(1)?;
        self.entries.get(index)
    }

    /// Appends an entry at op-number `op_number() + 1`.
    pub fn push(&mut self, entry: Entry<S>) {
        self.entries.push(entry);
    }

    /// Drops every entry above `commit`.
    pub fn truncate(&mut self, commit: CommitNumber) {
        self.entries
            .truncate(usize::try_from(commit.0).unwrap_or(usize::MAX));
    }

    /// The entries after op-number `after`, at most `max` of them.
    pub fn suffix(&self, after: OpNumber, max: usize) -> Vec<Entry<S>> {
        let start = usize::try_from(after.0).unwrap_or(usize::MAX);
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    /// The entries after op-number `after`, with their op-numbers.
    pub fn entries_after(&self, after: OpNumber) -> impl Iterator<Item = (OpNumber, &Entry<S>)> {
        let start = usize::try_from(after.0).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .enumerate()
            .skip(start)
            .map(|(index, entry)| (OpNumber(index as u64 + 1), entry))
    }

    /// Every entry, op-number 1 first.
    pub fn entries(&self) -> &[Entry<S>] {
        &self.entries
    }

    /// The first `op` entries.
    pub fn prefix(&self, op: OpNumber) -> &[Entry<S>] {
        let end = usize::try_from(op.0).unwrap_or(usize::MAX);
        &self.entries[..end.min(self.entries.len())]
    }
}

impl<S: StateMachine> fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}
