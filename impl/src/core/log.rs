//! The log: the ordered operations a replica has accepted.

use super::message::Command;
use super::state_machine::StateMachine;
use super::types::{ClientId, CommitNumber, OpNumber, RequestNumber};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One log entry: a client's request, placed at an op-number.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Entry<S: StateMachine> {
    /// What to execute: a Register or an operation to apply.
    pub operation: Command<S>,
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

/// The log, positions counted from 1. The entries up to op-number `base`
/// have been discarded (they are committed, and a checkpoint stands for
/// them); the entry at op-number n > base is `entries[n - base - 1]`, so the
/// op-number of the log is `base` plus the entries held.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Log<S: StateMachine> {
    base: OpNumber,
    entries: Vec<Entry<S>>,
    /// The lowest op-number written since the driver was last told what to
    /// make durable (spec/protocol.md, "Durability"); not part of the log's
    /// value.
    #[serde(skip)]
    unpersisted: Unpersisted,
}

/// The lowest op-number of a log changed since [`Log::take_unpersisted`]:
/// bookkeeping for [`Effect::Persist`](super::Effect::Persist), not part of
/// the log. Two logs holding the same entries are equal, hash alike and
/// order alike whatever their marks: the replica takes the mark at the end
/// of every step, so at a step boundary (where the model checker compares
/// states) every mark is `None`.
#[derive(Clone, Copy, Default)]
struct Unpersisted(Option<OpNumber>);

impl Unpersisted {
    fn lower_to(&mut self, op: OpNumber) {
        self.0 = Some(self.0.map_or(op, |held| held.min(op)));
    }
}

impl PartialEq for Unpersisted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Unpersisted {}

impl PartialOrd for Unpersisted {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Unpersisted {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::hash::Hash for Unpersisted {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl<S: StateMachine> Default for Log<S> {
    fn default() -> Self {
        Log::empty_after(OpNumber(0))
    }
}

impl<S: StateMachine> Log<S> {
    /// A log holding these entries at op-numbers 1, 2, ...
    pub fn from_entries(entries: Vec<Entry<S>>) -> Log<S> {
        Log {
            base: OpNumber(0),
            entries,
            unpersisted: Unpersisted(Some(OpNumber(1))),
        }
    }

    /// An empty log whose entries up to `base` are discarded: what a
    /// checkpoint at `base` leaves.
    pub fn empty_after(base: OpNumber) -> Log<S> {
        Log {
            base,
            entries: Vec::new(),
            unpersisted: Unpersisted(Some(base.next())),
        }
    }

    /// The lowest op-number changed since the last call, if any: from there
    /// on the log differs from what the driver was last asked to make
    /// durable. Clears the mark.
    pub(super) fn take_unpersisted(&mut self) -> Option<OpNumber> {
        self.unpersisted.0.take()
    }

    /// The op-number of the latest entry discarded (0 if none).
    pub fn base(&self) -> OpNumber {
        self.base
    }

    /// The op-number of the latest entry (0 for an empty log).
    pub fn op_number(&self) -> OpNumber {
        OpNumber(self.base.0 + self.entries.len() as u64)
    }

    fn index(&self, op: OpNumber) -> Option<usize> {
        usize::try_from(op.0.checked_sub(self.base.0)?.checked_sub(1)?).ok()
    }

    /// The entry at op-number `op`, if the log holds it.
    pub fn get(&self, op: OpNumber) -> Option<&Entry<S>> {
        self.entries.get(self.index(op)?)
    }

    /// Appends an entry at op-number `op_number() + 1`.
    pub fn push(&mut self, entry: Entry<S>) {
        self.entries.push(entry);
        self.unpersisted.lower_to(self.op_number());
    }

    /// This log cut back to op-number `op` (at least its base).
    pub fn truncated(&self, op: OpNumber) -> Log<S> {
        let mut unpersisted = self.unpersisted;
        unpersisted.lower_to(op.max(self.base).next());
        Log {
            base: self.base,
            entries: self.prefix(op).to_vec(),
            unpersisted,
        }
    }

    /// Discards the entries up to op-number `op` (a checkpoint stands for
    /// them).
    pub fn discard_through(&mut self, op: OpNumber) {
        if op <= self.base {
            return;
        }
        debug_assert!(op <= self.op_number());
        let drop = usize::try_from(op.0 - self.base.0).unwrap_or(usize::MAX);
        self.entries.drain(..drop.min(self.entries.len()));
        self.base = op;
    }

    /// The entries held after op-number `after`, with their op-numbers.
    pub fn entries_after(&self, after: OpNumber) -> impl Iterator<Item = (OpNumber, &Entry<S>)> {
        let start = usize::try_from(after.0.saturating_sub(self.base.0)).unwrap_or(usize::MAX);
        let base = self.base.0;
        self.entries
            .iter()
            .enumerate()
            .skip(start)
            .map(move |(index, entry)| (OpNumber(base + index as u64 + 1), entry))
    }

    /// Every entry held, op-number `base + 1` first.
    pub fn entries(&self) -> &[Entry<S>] {
        &self.entries
    }

    /// The entries held up to op-number `op` (those after the base).
    pub fn prefix(&self, op: OpNumber) -> &[Entry<S>] {
        let end = usize::try_from(op.0.saturating_sub(self.base.0)).unwrap_or(usize::MAX);
        &self.entries[..end.min(self.entries.len())]
    }

    /// Whether this log and `other` hold the same entries at every op-number
    /// up to `upto` that both hold (both reach `upto`).
    pub fn agrees_with(&self, other: &Log<S>, upto: OpNumber) -> bool {
        if upto > self.op_number() || upto > other.op_number() {
            return false;
        }
        let from = self.base.max(other.base);
        self.entries_after(from)
            .zip(other.entries_after(from))
            .take_while(|((op, _), _)| *op <= upto)
            .all(|((_, a), (_, b))| a == b)
    }

    /// The entries after op-number `after` up to op-number `until`, at most
    /// `count_max` of them and at most `weight_max` of weight, but always at
    /// least one if any. `after` is at least the base.
    pub fn chunk(
        &self,
        after: OpNumber,
        until: OpNumber,
        count_max: usize,
        weight_max: u32,
    ) -> Vec<Entry<S>> {
        debug_assert!(after >= self.base);
        let mut weight = 0u64;
        let mut chunk = Vec::new();
        let available = usize::try_from(until.0.saturating_sub(after.0)).unwrap_or(usize::MAX);
        for (_, entry) in self.entries_after(after).take(count_max.min(available)) {
            weight += u64::from(entry.operation.weight());
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
            .map(|(_, entry)| u64::from(entry.operation.weight()))
            .sum()
    }

    /// What a view change or recovery message carries of this log: every
    /// entry after `commit` (they may be uncommitted, so the receiver cannot
    /// get them elsewhere), and before those as many of the latest committed
    /// entries as fit in `weight_max` (none before the base). A receiver
    /// whose own commit-number reaches the suffix's start needs nothing more;
    /// one that lags fetches the committed entries in between.
    pub fn suffix_for_message(&self, commit: CommitNumber, weight_max: u32) -> LogSuffix<S> {
        debug_assert!(commit.as_op() <= self.op_number() && self.base <= commit.as_op());
        let mut after = self.op_number();
        let mut weight = 0u64;
        for entry in self.entries.iter().rev() {
            let next = weight + u64::from(entry.operation.weight());
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

    /// This log's entries up to op-number `suffix.after`, then `suffix`: the
    /// whole log the suffix belongs to, if this log's entries up to `after`
    /// are that log's (the caller knows they are committed). Suffix entries
    /// at or below this log's base are dropped: the base stands for them.
    pub fn with_suffix(&self, suffix: LogSuffix<S>) -> Log<S> {
        debug_assert!(suffix.after <= self.op_number());
        let mut log = self.truncated(suffix.after.max(self.base));
        let skip =
            usize::try_from(self.base.0.saturating_sub(suffix.after.0)).unwrap_or(usize::MAX);
        log.entries.extend(suffix.entries.into_iter().skip(skip));
        log
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
    /// Every entry `log` holds, as a suffix after its base.
    pub fn whole(log: &Log<S>) -> LogSuffix<S> {
        LogSuffix {
            op: log.op_number(),
            after: log.base,
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
