//! Durability (paper 4.3's disk variant; spec/protocol.md, "Durability"):
//! what a replica must not forget across a crash, said as effects, and the
//! constructor that rebuilds a replica from what was kept.
//!
//! The core writes nothing. At the end of every step it compares its durable
//! fields (view state, log, checkpoint) with where they stood when the step
//! began and puts an [`Effect::Persist`] for each change *before* the step's
//! other effects. A driver that makes every `Persist` durable before it
//! carries out any later `Send` or `Reply` therefore never lets a message
//! leave that depends on something a crash could take back: a PrepareOk is
//! sent only once its entries are durable, a StartViewChange or DoViewChange
//! only once the view they name is, a StartView or a reply only once the log
//! they announce is.

use super::checkpoint::{Checkpoint, CheckpointPart};
use super::client_table::ClientTable;
use super::config::Config;
use super::io::{Effect, Timer};
use super::log::Entry;
use super::message::{Message, PrepareOk};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{CommitNumber, OpNumber, View};
use serde::{Deserialize, Serialize};
use std::fmt;
use tracing::info;

/// The numbers a restarted replica needs to keep its promises: the view it
/// moved to (it may have sent StartViewChange or DoViewChange for it), the
/// latest view it was Normal in (what its log is worth in a view change),
/// and how far it knows entries committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewState {
    /// The view-number.
    pub view: View,
    /// The last-normal-view.
    pub last_normal_view: View,
    /// The commit-number: not a promise (a replica may forget how far it
    /// executed), but it saves re-learning it.
    pub commit: CommitNumber,
}

/// One thing to make durable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Persist<S: StateMachine> {
    /// A checkpoint: it replaces the one held, and the log entries up to
    /// its commit-number may be dropped (log compaction).
    Checkpoint(Checkpoint<S>),
    /// The view state changed.
    ViewState(ViewState),
    /// The log from op-number `from` on is `entries`: every entry held at
    /// `from` or beyond is replaced (a view change's new log) and these are
    /// written after the entries before `from`. Appends are the case where
    /// `from` follows the last entry held. Carries the commit-number too.
    Log {
        from: OpNumber,
        entries: Vec<Entry<S>>,
        commit: CommitNumber,
    },
}

impl<S: StateMachine> fmt::Debug for Persist<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persist::Checkpoint(checkpoint) => write!(f, "{checkpoint:?}"),
            Persist::ViewState(state) => write!(f, "{state:?}"),
            Persist::Log {
                from,
                entries,
                commit,
            } => write!(f, "log from {from:?} {entries:?} {commit:?}"),
        }
    }
}

/// What a replica kept: what [`Replica::from_durable`] rebuilds it from.
/// Applying a replica's [`Persist`] effects in order to its `Durable`
/// (with [`Durable::apply`]) gives what a storage holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Durable<S: StateMachine> {
    /// The latest view state.
    pub view_state: ViewState,
    /// The latest checkpoint.
    pub checkpoint: Option<Checkpoint<S>>,
    /// The op-number of `entries[0]`.
    pub first: OpNumber,
    /// The log entries kept, from `first` on.
    pub entries: Vec<Entry<S>>,
}

impl<S: StateMachine> fmt::Debug for Durable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "durable({:?} {:?} from {:?} {:?})",
            self.view_state, self.checkpoint, self.first, self.entries
        )
    }
}

impl<S: StateMachine> Default for Durable<S> {
    fn default() -> Self {
        Durable {
            view_state: ViewState {
                view: View(0),
                last_normal_view: View(0),
                commit: CommitNumber(0),
            },
            checkpoint: None,
            first: OpNumber(1),
            entries: Vec::new(),
        }
    }
}

impl<S: StateMachine> Durable<S> {
    fn checkpoint_op(&self) -> OpNumber {
        self.checkpoint
            .as_ref()
            .map_or(OpNumber(0), |c| c.commit.as_op())
    }

    /// Applies one `Persist`, as a storage does.
    pub fn apply(&mut self, persist: &Persist<S>) {
        match persist {
            Persist::Checkpoint(checkpoint) => {
                if self.checkpoint_op() >= checkpoint.commit.as_op() {
                    return;
                }
                let covered = checkpoint.commit.0.saturating_sub(self.first.0 - 1);
                let covered = usize::try_from(covered).unwrap_or(usize::MAX);
                self.entries.drain(..covered.min(self.entries.len()));
                self.first = self.first.max(checkpoint.commit.as_op().next());
                self.view_state.commit = self.view_state.commit.max(checkpoint.commit);
                self.checkpoint = Some(checkpoint.clone());
            }
            Persist::ViewState(state) => {
                let commit = self.view_state.commit.max(state.commit);
                self.view_state = *state;
                self.view_state.commit = commit;
            }
            Persist::Log {
                from,
                entries,
                commit,
            } => {
                self.write_log(*from, entries);
                self.view_state.commit = self.view_state.commit.max(*commit);
            }
        }
    }

    /// The log from `from` on becomes `entries`; entries a checkpoint
    /// covers are not kept.
    pub fn write_log(&mut self, from: OpNumber, entries: &[Entry<S>]) {
        let kept_from = from.max(self.checkpoint_op().next());
        let skip = usize::try_from(kept_from.0 - from.0).unwrap_or(usize::MAX);
        let entries = entries.iter().skip(skip).cloned();
        let end = self.first.0 + self.entries.len() as u64;
        if kept_from <= self.first || kept_from.0 > end {
            // Replaced from the start, or after a gap only a checkpoint can
            // fill (`Replica::from_durable` refuses one that does not).
            self.first = kept_from;
            self.entries = entries.collect();
        } else {
            let keep = usize::try_from(kept_from.0 - self.first.0).unwrap_or(usize::MAX);
            self.entries.truncate(keep);
            self.entries.extend(entries);
        }
    }
}

/// Why a replica cannot be rebuilt from what it kept: the storage is not
/// to be trusted, and the replica recovers from its peers instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurableError {
    /// The last-normal-view is beyond the view-number.
    LastNormalViewAhead,
    /// The entries kept start after op-number `first`, leaving a gap after
    /// the checkpoint (or the start of the log) at `base`.
    Gap { base: OpNumber, first: OpNumber },
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableError::LastNormalViewAhead => {
                write!(f, "the last-normal-view kept is beyond the view-number")
            }
            DurableError::Gap { base, first } => write!(
                f,
                "the log kept starts at op-number {} but the checkpoint reaches only {}",
                first.0, base.0
            ),
        }
    }
}

impl std::error::Error for DurableError {}

/// Where a replica's durable fields stood when a step began.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct DurableMark {
    /// (view-number, last-normal-view), or None for a replica that has
    /// written nothing yet.
    view: Option<(View, View)>,
    checkpoint: Option<CommitNumber>,
    recovering: bool,
}

impl DurableMark {
    /// The mark of a replica that has kept nothing: everything it holds is
    /// to be made durable.
    pub(super) fn nothing() -> DurableMark {
        DurableMark {
            view: None,
            checkpoint: None,
            recovering: true,
        }
    }
}

impl<S: StateMachine> Replica<S> {
    /// Where this replica's durable fields stand.
    pub(super) fn durable_mark(&self) -> DurableMark {
        DurableMark {
            view: Some((self.view, self.last_normal_view)),
            checkpoint: self.checkpoint.as_ref().map(|c| c.commit),
            recovering: self.status == Status::Recovering,
        }
    }

    /// Puts, at `start` in `effects` (before everything this step pushed),
    /// a [`Persist`] for each durable field changed since `mark`: the
    /// checkpoint, then the view state, then the log. A replica that is
    /// Recovering keeps nothing (it holds nothing it could promise); once it
    /// recovers, everything it then holds is written.
    pub(super) fn persist_changes(
        &mut self,
        mark: DurableMark,
        start: usize,
        effects: &mut Vec<Effect<S>>,
    ) {
        let changed_from = self.log.take_unpersisted();
        if self.status == Status::Recovering {
            return;
        }
        let everything = mark.recovering;
        let mut persists = Vec::new();
        let checkpoint = self.checkpoint.as_ref().map(|c| c.commit);
        if let Some(held) = &self.checkpoint
            && (everything || checkpoint != mark.checkpoint)
        {
            persists.push(Persist::Checkpoint(held.clone()));
        }
        if everything || mark.view != Some((self.view, self.last_normal_view)) {
            persists.push(Persist::ViewState(self.view_state()));
        }
        let from = if everything {
            Some(self.log.base().next())
        } else {
            // Entries changed and then compacted away in this step are in
            // an earlier checkpoint.
            changed_from.map(|from| from.max(self.log.base().next()))
        };
        if let Some(from) = from {
            let entries = self
                .log
                .entries_after(OpNumber(from.0 - 1))
                .map(|(_, e)| e.clone())
                .collect();
            persists.push(Persist::Log {
                from,
                entries,
                commit: self.commit,
            });
        }
        effects.splice(start..start, persists.into_iter().map(Effect::Persist));
    }

    /// Its view state.
    pub fn view_state(&self) -> ViewState {
        ViewState {
            view: self.view,
            last_normal_view: self.last_normal_view,
            commit: self.commit,
        }
    }

    /// Its durable fields: what a storage that carried out every
    /// [`Persist`] it emitted holds (up to compaction). A Recovering
    /// replica's are not to be restarted from (it emits none).
    pub fn durable(&self) -> Durable<S> {
        Durable {
            view_state: self.view_state(),
            checkpoint: self.checkpoint.clone(),
            first: self.log.base().next(),
            entries: self.log.entries().to_vec(),
        }
    }

    /// A replica restarting from what it kept (paper 4.3, the disk
    /// variant; spec/protocol.md, "Restarting from disk"). It rebuilds its
    /// application from the checkpoint and the committed entries after it.
    /// Everything it ever sent depended only on what it kept, so it is like
    /// a replica that was cut off for a while:
    /// - Normal as a backup in its view: it resumes Normal, with its primary
    ///   timer set, and confirms its uncommitted entries with PrepareOk
    ///   (one it sent before the crash may have been lost with it).
    /// - Normal as the primary: the PrepareOk counts are lost, so its
    ///   uncommitted entries could wait for ever; it starts a view change to
    ///   the next view, which re-proposes them.
    /// - In a view change: its counts are lost too; it moves to the next
    ///   view.
    ///
    /// Refuses (and the driver runs recovery instead) a kept state that
    /// contradicts itself.
    pub fn from_durable(
        config: Config,
        durable: Durable<S>,
        effects: &mut Vec<Effect<S>>,
    ) -> Result<Replica<S>, DurableError> {
        let Durable {
            view_state,
            checkpoint,
            first,
            entries,
        } = durable;
        if view_state.last_normal_view > view_state.view || view_state.view == View(u64::MAX) {
            return Err(DurableError::LastNormalViewAhead);
        }
        let base = checkpoint
            .as_ref()
            .map_or(OpNumber(0), |c| c.commit.as_op());
        if first > base.next() || first == OpNumber(0) {
            return Err(DurableError::Gap { base, first });
        }
        let mut replica = Replica::blank(config, Status::ViewChange, None);
        if let Some(checkpoint) = checkpoint {
            replica.install_checkpoint(checkpoint);
        }
        for (index, entry) in entries.into_iter().enumerate() {
            if first.0 + index as u64 > base.0 {
                replica.log.push(entry);
            }
        }
        replica.log.take_unpersisted();
        replica.view = view_state.view;
        replica.last_normal_view = view_state.last_normal_view;
        let commit = view_state
            .commit
            .min(replica.op_number().as_commit())
            .max(replica.commit);
        // Re-executes; the status is not Normal yet, so nothing replies.
        replica.commit_up_to(commit, &mut Vec::new());
        let mark = DurableMark {
            view: Some((replica.view, replica.last_normal_view)),
            checkpoint: (base > OpNumber(0)).then_some(base.as_commit()),
            recovering: false,
        };
        let start = effects.len();
        let view = replica.view;
        info!(replica = ?replica.id(), ?view, op = ?replica.op_number(), commit = ?replica.commit, "restarted from durable state");
        if replica.last_normal_view == view && replica.config.primary(view) != replica.id() {
            replica.status = Status::Normal;
            effects.push(Effect::SetTimer(Timer::PrimaryTimeout));
            if replica.op_number() > replica.commit.as_op() {
                let ok = PrepareOk {
                    view,
                    op: replica.op_number(),
                };
                let primary = replica.primary();
                replica.send(primary, Message::PrepareOk(ok), effects);
            }
        } else {
            replica.start_view_change(view.next(), effects);
        }
        replica.persist_changes(mark, start, effects);
        Ok(replica)
    }
}

impl<S: StateMachine> Checkpoint<S> {
    /// The checkpoint its parts describe, as a storage kept them, cut anew
    /// as `config` says; None if the parts are not one whole checkpoint
    /// (numbered 0, 1, ... of one commit-number, the last marked last).
    pub fn from_parts(parts: &[CheckpointPart<S>], config: &Config) -> Option<Checkpoint<S>> {
        let commit = parts.first()?.commit;
        let whole = parts.iter().enumerate().all(|(index, part)| {
            part.commit == commit
                && part.index as usize == index
                && part.last == (index + 1 == parts.len())
        });
        if !whole {
            return None;
        }
        let mut app = S::default();
        let mut client_table = ClientTable::default();
        for part in parts {
            for operation in &part.operations {
                app.apply(operation);
            }
            for (client, record) in &part.clients {
                client_table.set_row(*client, record.clone());
            }
        }
        let count = usize::try_from(config.state_transfer_entries_max()).unwrap_or(usize::MAX);
        Some(Checkpoint::new(
            commit,
            app,
            client_table,
            count,
            config.message_weight_max(),
        ))
    }
}
