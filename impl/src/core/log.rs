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

    /// The entries after op-number `after` up to op-number `until`, at most
    /// `count_max` of them and at most `weight_max` of weight, but always at
    /// least one if any.
    pub fn chunk(
        &self,
        after: OpNumber,
        until: OpNumber,
        count_max: usize,
        weight_max: u32,
    ) -> Vec<Entry<S>> {
        let mut weight = 0u64;
        let mut chunk = Vec::new();
        let available = usize::try_from(until.0.saturating_sub(after.0)).unwrap_or(usize::MAX);
        for (_, entry) in self.entries_after(after).take(count_max.min(available)) {
            weight += u64::from(S::weight(&entry.operation));
            if !chunk.is_empty() && weight > u64::from(weight_max) {
                break;
            }
            chunk.push(entry.clone());
        }
        chunk
    }

    /// The weight of the entries after op-number `after`.
    pub fn weight_after(&self, after: OpNumber) -> u64 {
        self.entries_after(after)
            .map(|(_, entry)| u64::from(S::weight(&entry.operation)))
            .sum()
    }

    /// What a view change or recovery message carries of this log: every
    /// entry after `commit` (they may be uncommitted, so the receiver cannot
    /// get them elsewhere), and before those as many of the latest committed
    /// entries as fit in `weight_max`. A receiver whose own commit-number
    /// reaches the suffix's start needs nothing more; one that lags fetches
    /// the committed entries in between.
    pub fn suffix_for_message(&self, commit: CommitNumber, weight_max: u32) -> LogSuffix<S> {
        debug_assert!(commit.as_op() <= self.op_number());
        let mut after = self.op_number();
        let mut weight = 0u64;
        for entry in self.entries.iter().rev() {
            let next = weight + u64::from(S::weight(&entry.operation));
            if after <= commit.as_op() && next > u64::from(weight_max) {
                break;
            }
            weight = next;
            after = OpNumber(after.0 - 1);
        }
        LogSuffix {
            op: self.op_number(),
            after,
            entries: self.entries_after(after).map(|(_, e)| e.clone()).collect(),
        }
    }

    /// The first `after` entries of this log followed by `suffix`: the whole
    /// log the suffix belongs to, if this log's first `after` entries are
    /// that log's (the caller knows they are committed).
    pub fn with_suffix(&self, suffix: LogSuffix<S>) -> Log<S> {
        debug_assert!(suffix.after <= self.op_number());
        let mut entries = self.prefix(suffix.after).to_vec();
        entries.extend(suffix.entries);
        Log { entries }
    }
}

/// The tail of a log, as view change and recovery messages carry it: the
/// log's op-number and its entries after op-number `after`.
///
/// Invariant (checked on receipt by [`LogSuffix::is_well_formed`]): `after`
/// plus the number of entries is `op`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct LogSuffix<S: StateMachine> {
    /// The op-number of the whole log.
    pub op: OpNumber,
    /// The op-number the entries follow.
    pub after: OpNumber,
    /// The entries at op-numbers `after + 1` to `op`.
    pub entries: Vec<Entry<S>>,
}

impl<S: StateMachine> LogSuffix<S> {
    /// The whole of `log`, as a suffix after op-number 0.
    pub fn whole(log: &Log<S>) -> LogSuffix<S> {
        LogSuffix {
            op: log.op_number(),
            after: OpNumber(0),
            entries: log.entries.clone(),
        }
    }

    /// Whether the entries exactly fill `after` to `op`.
    pub fn is_well_formed(&self) -> bool {
        self.after.0.checked_add(self.entries.len() as u64) == Some(self.op.0)
    }
}

impl<S: StateMachine> fmt::Debug for LogSuffix<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}+", self.after)?;
        f.debug_list().entries(&self.entries).finish()
    }
}

impl<S: StateMachine> fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}
