//! State transfer (paper 5.2; spec/protocol.md, "State transfer"): a replica
//! that is behind in its view fetches the entries it lacks, in bounded chunks.

use super::io::Effect;
use super::message::{GetState, Message, NewState, PrepareOk};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{ReplicaId, View};
use tracing::{debug, info};

impl<S: StateMachine> Replica<S> {
    /// The replica learned from `from`, the primary of `view`, that `view` is
    /// in normal operation while this replica is in an older view or still
    /// changing to it. Entries above its commit-number may differ from the
    /// new view's log, so it drops them (paper 5.2), enters Normal in `view`
    /// and fetches the rest of the log.
    pub(super) fn catch_up_to_view(
        &mut self,
        view: View,
        from: ReplicaId,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert!(view > self.view || (view == self.view && self.status == Status::ViewChange));
        debug_assert_eq!(from, self.config.primary(view));
        info!(replica = ?self.id(), from = ?self.view, to = ?view, commit = ?self.commit, "view started without this replica: truncating to the commit-number and fetching the log");
        self.log.truncate(self.commit);
        self.enter_view(view, Status::Normal, effects);
        self.request_state(from, effects);
    }

    /// Sends GetState for the entries after this replica's op-number to
    /// `from`, a replica in Normal status of the same view.
    pub(super) fn request_state(&mut self, from: ReplicaId, effects: &mut Vec<Effect<S>>) {
        let get = GetState {
            view: self.view,
            op: self.op_number(),
        };
        self.send(from, Message::GetState(get), effects);
    }

    /// GetState (paper 5.2): a replica in Normal status of the asker's view
    /// sends the entries after the asker's op-number, at most the configured
    /// bound of them. Idempotent: it reads and changes nothing.
    pub(super) fn on_get_state(
        &mut self,
        from: ReplicaId,
        get: GetState,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_get_state(&get) {
            debug!(replica = ?self.id(), ?from, view = ?get.view, op = ?get.op, reason, "ignore GetState");
            return;
        }
        let max = usize::try_from(self.config.state_transfer_entries_max()).unwrap_or(usize::MAX);
        let new_state = NewState {
            view: self.view,
            after: get.op,
            entries: self.log.suffix(get.op, max),
            op: self.op_number(),
            commit: self.commit,
        };
        self.send(from, Message::NewState(new_state), effects);
    }

    fn ignore_get_state(&self, get: &GetState) -> Option<&'static str> {
        if self.status != Status::Normal {
            return Some("not in Normal status");
        }
        if get.view != self.view {
            return Some("another view");
        }
        if get.op > self.op_number() {
            return Some("the asker holds more than this replica");
        }
        None
    }

    /// NewState (paper 5.2): the entries beyond this replica's op-number are
    /// appended, if they continue its log without a gap; it asks again while the sender holds more, executes up
    /// to the sender's commit-number, and confirms its log to the primary.
    /// Idempotent: a duplicated or stale NewState (another view, or nothing
    /// beyond what this replica holds) is ignored.
    pub(super) fn on_new_state(
        &mut self,
        from: ReplicaId,
        new_state: NewState<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_new_state(&new_state) {
            debug!(replica = ?self.id(), ?from, view = ?new_state.view, after = ?new_state.after, reason, "ignore NewState");
            return;
        }
        // Both logs are prefixes of the primary's in this view, so entries this
        // replica already holds are the same and are skipped.
        let held = usize::try_from(self.op_number().0 - new_state.after.0).unwrap_or(usize::MAX);
        debug_assert!(
            new_state
                .entries
                .iter()
                .take(held)
                .zip(self.log.entries_after(new_state.after))
                .all(|(theirs, (_, ours))| theirs == ours),
            "INV-SAME-VIEW-PREFIX: NewState disagrees with the log in the same view"
        );
        for entry in new_state.entries.into_iter().skip(held) {
            self.log.push(entry);
        }
        if self.op_number() < new_state.op {
            self.request_state(from, effects);
        } else if !self.is_primary() {
            info!(replica = ?self.id(), view = ?self.view, op = ?self.op_number(), "state transfer complete");
            let ok = PrepareOk {
                view: self.view,
                op: self.op_number(),
            };
            let primary = self.primary();
            self.send(primary, Message::PrepareOk(ok), effects);
        }
        self.commit_learned(new_state.commit, effects);
    }

    fn ignore_new_state(&self, new_state: &NewState<S>) -> Option<&'static str> {
        if self.status != Status::Normal {
            return Some("not in Normal status");
        }
        if new_state.view != self.view {
            return Some("another view");
        }
        let reaches = new_state
            .after
            .0
            .saturating_add(new_state.entries.len() as u64);
        if new_state.after > self.op_number() {
            return Some("leaves a gap after this replica's log");
        }
        if reaches <= self.op_number().0 && new_state.commit <= self.commit {
            return Some("nothing new (duplicate or stale)");
        }
        if reaches > new_state.op.0
            || new_state.commit.as_op() > new_state.op
            || (new_state.entries.is_empty() && new_state.op > new_state.after)
        {
            return Some("malformed: entries or commit-number beyond the sender's op-number");
        }
        None
    }
}
