//! Checkpoints and log compaction (paper 5.1; spec/protocol.md,
//! "Checkpoints").
//!
//! Every `checkpoint_interval` executed entries a replica takes a checkpoint
//! (a copy of its application state and client table at its commit-number)
//! and discards its log up to the previous checkpoint, so it holds at most
//! about two intervals of entries and two copies of the state. A replica that
//! needs entries another has discarded receives that one's checkpoint
//! instead, in parts (the operations that rebuild the state, then the client
//! table's rows), and then the entries after it.

use super::client_table::{ClientRecord, ClientTable};
use super::io::Effect;
use super::log::{Entry, Log};
use super::message::{GetCheckpoint, Message, NewCheckpoint};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{ClientId, CommitNumber, OpNumber, ReplicaId, View};
use serde::{Deserialize, Serialize};
use std::fmt;
use tracing::{debug, info};

/// The state after executing every entry up to `commit`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint<S: StateMachine> {
    /// The op-number of the last entry it includes.
    pub commit: CommitNumber,
    /// The application's state then.
    pub app: S,
    /// The client table then.
    pub client_table: ClientTable<S>,
    /// The parts it travels in, cut once when it is made: answering a
    /// request for one costs a lookup, not a rebuild of the state.
    parts: std::sync::Arc<[CheckpointPart<S>]>,
}

impl<S: StateMachine> fmt::Debug for Checkpoint<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint({:?})", self.commit)
    }
}

/// One part of a checkpoint, as it travels: a run of the operations that
/// rebuild the application state, then a run of client-table rows.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CheckpointPart<S: StateMachine> {
    /// The checkpoint's op-number.
    pub commit: CommitNumber,
    /// This part's place, from 0.
    pub index: u32,
    /// Whether it is the checkpoint's last part.
    pub last: bool,
    /// Operations to apply, in order, to the state the earlier parts built.
    pub operations: Vec<S::Operation>,
    /// Client-table rows.
    pub clients: Vec<(ClientId, ClientRecord<S>)>,
}

impl<S: StateMachine> fmt::Debug for CheckpointPart<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "part {} of checkpoint({:?}){} ({} operations, {} rows)",
            self.index,
            self.commit,
            if self.last { ", last" } else { "" },
            self.operations.len(),
            self.clients.len()
        )
    }
}

impl<S: StateMachine> Checkpoint<S> {
    /// The checkpoint of `app` and `client_table` at `commit`, cut into
    /// parts of at most `count_max` items and `weight_max` weight.
    pub fn new(
        commit: CommitNumber,
        app: S,
        client_table: ClientTable<S>,
        count_max: usize,
        weight_max: u32,
    ) -> Checkpoint<S> {
        let parts = cut(commit, &app, &client_table, count_max, weight_max).into();
        Checkpoint {
            commit,
            app,
            client_table,
            parts,
        }
    }

    /// Its parts, in order.
    pub fn parts(&self) -> &[CheckpointPart<S>] {
        &self.parts
    }
}

/// The parts of a checkpoint, each within `count_max` items and
/// `weight_max` weight (an item heavier than that goes alone).
/// Deterministic.
fn cut<S: StateMachine>(
    commit: CommitNumber,
    app: &S,
    client_table: &ClientTable<S>,
    count_max: usize,
    weight_max: u32,
) -> Vec<CheckpointPart<S>> {
    let empty_part = |index: u32| CheckpointPart {
        commit,
        index,
        last: false,
        operations: Vec::new(),
        clients: Vec::new(),
    };
    // The operations that rebuild the state, then the client-table rows,
    // each with its weight.
    let operations = app
        .rebuild()
        .into_iter()
        .map(|op| (u64::from(S::weight(&op)), Ok(op)));
    let rows = client_table
        .rows()
        .map(|(c, r)| (u64::from(r.output.weight()) + 48, Err((c, r.clone()))));
    let mut parts = Vec::new();
    let mut current = empty_part(0);
    let (mut weight, mut count) = (0u64, 0usize);
    for (add, item) in operations.chain(rows) {
        if count > 0 && (count >= count_max || weight + add > u64::from(weight_max)) {
            let next = empty_part(current.index + 1);
            parts.push(std::mem::replace(&mut current, next));
            (weight, count) = (0, 0);
        }
        match item {
            Ok(operation) => current.operations.push(operation),
            Err(row) => current.clients.push(row),
        }
        (weight, count) = (weight + add, count + 1);
    }
    current.last = true;
    parts.push(current);
    parts
}

/// A checkpoint being received, part by part.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Restore<S: StateMachine> {
    /// The checkpoint's op-number.
    commit: CommitNumber,
    /// The next part expected.
    next: u32,
    /// The state the parts so far rebuilt.
    app: S,
    client_table: ClientTable<S>,
}

impl<S: StateMachine> fmt::Debug for Restore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restoring(checkpoint({:?}) next part {})",
            self.commit, self.next
        )
    }
}

/// Who a replica receives a checkpoint from, and what it does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetcher {
    /// A backup in Normal status lacking entries of its view.
    Backup,
    /// A replica catching up to a view, or recovering.
    CatchUp,
    /// primary(v) filling in the committed entries its chosen log left out.
    Fill,
}

impl<S: StateMachine> Replica<S> {
    /// Takes a checkpoint when `checkpoint_interval` entries have been
    /// executed since the last one, and discards the log up to the last one:
    /// the entries between the two stay, for peers that lag a little.
    pub(super) fn checkpoint_if_due(&mut self) {
        let interval = self.config.checkpoint_interval();
        let last = self
            .checkpoint
            .as_ref()
            .map_or(CommitNumber(0), |c| c.commit);
        if self.commit.0 < last.0.saturating_add(interval) {
            return;
        }
        self.log.discard_through(last.as_op());
        debug!(replica = ?self.id(), commit = ?self.commit, base = ?self.log.base(), "checkpoint taken; log compacted");
        self.checkpoint =
            Some(self.make_checkpoint(self.commit, self.app.clone(), self.client_table.clone()));
    }

    /// Sends part `index` of this replica's checkpoint to `to`, for `view`
    /// (the asker's).
    pub(super) fn send_checkpoint_part(
        &mut self,
        to: ReplicaId,
        view: View,
        index: u32,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Some(checkpoint) = &self.checkpoint else {
            debug!(replica = ?self.id(), ?to, "no checkpoint to send");
            return;
        };
        let Some(part) = checkpoint.parts().get(index as usize).cloned() else {
            debug!(replica = ?self.id(), ?to, index, "ignore GetCheckpoint: no such part");
            return;
        };
        self.send(
            to,
            Message::NewCheckpoint(NewCheckpoint { view, part }),
            effects,
        );
    }

    /// GetCheckpoint: a replica that asked for entries this one discarded
    /// wants the next part of its checkpoint. A checkpoint is committed
    /// state, so any replica with one answers (but a Recovering one, which
    /// has none). If the checkpoint asked for has been replaced, the new
    /// one's first part goes instead. Idempotent: it reads and changes
    /// nothing.
    pub(super) fn on_get_checkpoint(
        &mut self,
        from: ReplicaId,
        get: GetCheckpoint,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Some(checkpoint) = &self.checkpoint else {
            debug!(replica = ?self.id(), ?from, "ignore GetCheckpoint: no checkpoint");
            return;
        };
        let index = if checkpoint.commit == get.commit {
            get.part
        } else {
            0
        };
        self.send_checkpoint_part(from, get.view, index, effects);
    }

    /// Who this replica would accept a checkpoint from now, for `view`.
    fn checkpoint_fetcher(&self, from: ReplicaId, view: View) -> Option<Fetcher> {
        if view != self.view {
            return None;
        }
        if self.status == Status::ViewChange && self.view_change.fill().is_some() {
            let best = self.view_change.best()?;
            return (best.from == Some(from)).then_some(Fetcher::Fill);
        }
        if from != self.config.primary(view) || from == self.id() {
            return None;
        }
        match self.status {
            Status::Normal => Some(Fetcher::Backup),
            Status::ViewChange | Status::Recovering if self.catch_up.is_some() => {
                Some(Fetcher::CatchUp)
            }
            _ => None,
        }
    }

    /// The commit-number a fetched checkpoint must pass to be of use.
    fn held_commit(&self, fetcher: Fetcher) -> CommitNumber {
        match fetcher {
            Fetcher::CatchUp => self.catch_up.as_ref().map_or(self.commit, |c| c.base()),
            Fetcher::Fill => self.view_change.fill_base(self.commit).as_commit(),
            Fetcher::Backup => self.op_number().as_commit().max(self.commit),
        }
    }

    /// NewCheckpoint: a part of the checkpoint of the replica this one
    /// fetches from (its primary, or the chosen log's sender in a fill). The
    /// parts rebuild the state in order; once the last arrives, the
    /// checkpoint stands for every entry up to its op-number, and the
    /// entries after it are fetched as usual. Idempotent: a part out of
    /// order, or of a checkpoint no newer than what is held, changes nothing
    /// (a repeated first part of the checkpoint under way asks again for the
    /// next part, in case that request was lost).
    pub(super) fn on_new_checkpoint(
        &mut self,
        from: ReplicaId,
        message: NewCheckpoint<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let part = message.part;
        let Some(fetcher) = self.checkpoint_fetcher(from, message.view) else {
            debug!(replica = ?self.id(), ?from, "ignore NewCheckpoint: not fetching from that replica in that view");
            return;
        };
        if part.commit <= self.held_commit(fetcher) {
            debug!(replica = ?self.id(), ?from, commit = ?part.commit, "ignore NewCheckpoint: no newer than what is held");
            return;
        }
        let under_way = self
            .restore
            .as_ref()
            .filter(|r| r.commit == part.commit)
            .map(|r| r.next);
        match under_way {
            Some(next) => {
                if part.index != next {
                    debug!(replica = ?self.id(), index = part.index, next, "NewCheckpoint out of order: asking for the next part again");
                    self.ask_checkpoint_part(from, part.commit, next, effects);
                    return;
                }
            }
            _ if part.index == 0 => {
                info!(replica = ?self.id(), ?from, commit = ?part.commit, "the entries needed are compacted: fetching a checkpoint");
                self.restore = Some(Restore {
                    commit: part.commit,
                    next: 0,
                    app: S::default(),
                    client_table: ClientTable::default(),
                });
            }
            _ => {
                debug!(replica = ?self.id(), index = part.index, "ignore NewCheckpoint: not the first part of a checkpoint");
                return;
            }
        }
        let restore = self.restore.as_mut().expect("set above");
        for operation in &part.operations {
            restore.app.apply(operation);
        }
        for (client, record) in part.clients {
            restore.client_table.set_row(client, record);
        }
        restore.next += 1;
        if matches!(fetcher, Fetcher::CatchUp | Fetcher::Fill) && self.status == Status::ViewChange
        {
            // Progress: a long transfer may take more than one view-change
            // timeout.
            effects.push(Effect::SetTimer(super::io::Timer::ViewChangeTimeout));
        }
        if !part.last {
            let next = restore.next;
            self.ask_checkpoint_part(from, part.commit, next, effects);
            return;
        }
        let restore = self.restore.take().expect("set above");
        let checkpoint = self.make_checkpoint(restore.commit, restore.app, restore.client_table);
        info!(replica = ?self.id(), commit = ?checkpoint.commit, "checkpoint received");
        match fetcher {
            Fetcher::Backup => {
                self.install_checkpoint(checkpoint);
                self.request_state(from, effects);
            }
            Fetcher::CatchUp => {
                let base = checkpoint.commit;
                self.catch_up
                    .as_mut()
                    .expect("catching up")
                    .restart_from(checkpoint);
                self.request_state_after(from, base.as_op(), effects);
            }
            Fetcher::Fill => self.fill_from_checkpoint(checkpoint, effects),
        }
    }

    /// A checkpoint cut into parts as this replica's configuration says.
    fn make_checkpoint(
        &self,
        commit: CommitNumber,
        app: S,
        client_table: ClientTable<S>,
    ) -> Checkpoint<S> {
        let count = usize::try_from(self.config.state_transfer_entries_max()).unwrap_or(usize::MAX);
        Checkpoint::new(
            commit,
            app,
            client_table,
            count,
            self.config.message_weight_max(),
        )
    }

    fn ask_checkpoint_part(
        &mut self,
        from: ReplicaId,
        commit: CommitNumber,
        part: u32,
        effects: &mut Vec<Effect<S>>,
    ) {
        let get = GetCheckpoint {
            view: self.view,
            commit,
            part,
        };
        self.send(from, Message::GetCheckpoint(get), effects);
    }

    /// Makes `checkpoint` this replica's state: its application state,
    /// client table and commit-number, and a log that starts after it. Every
    /// entry it stands for is committed, so nothing this replica held up to
    /// it differs (INV-AGREEMENT).
    pub(super) fn install_checkpoint(&mut self, checkpoint: Checkpoint<S>) {
        debug_assert!(checkpoint.commit > self.commit);
        self.app = checkpoint.app.clone();
        self.client_table = checkpoint.client_table.clone();
        self.commit = checkpoint.commit;
        self.log = Log::empty_after(checkpoint.commit.as_op());
        self.checkpoint = Some(checkpoint);
    }

    /// The log that staged `entries` make: after this replica's own log up
    /// to `base` (its commit-number, so those entries are committed), or,
    /// when a checkpoint was fetched in place of compacted entries, after
    /// that checkpoint, which then replaces this replica's state (all of it
    /// committed). Used by a catch-up and by a fill once they are whole.
    pub(super) fn install_staged(
        &mut self,
        checkpoint: Option<Checkpoint<S>>,
        base: OpNumber,
        entries: Vec<Entry<S>>,
    ) -> Log<S> {
        let mut log = match checkpoint {
            Some(checkpoint) => {
                debug_assert_eq!(checkpoint.commit.as_op(), base);
                self.install_checkpoint(checkpoint);
                Log::empty_after(base)
            }
            None => self.log.truncated(base),
        };
        for entry in entries {
            log.push(entry);
        }
        log
    }

    /// Whether op-number `op` lies in what this replica has discarded.
    pub(super) fn discarded(&self, op: OpNumber) -> bool {
        op < self.log.base()
    }
}
