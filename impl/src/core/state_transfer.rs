//! State transfer (paper 5.2; spec/protocol.md, "State transfer"): a replica
//! that is behind fetches the entries it lacks, in bounded chunks.
//!
//! Two cases. A backup in Normal status that lacks entries of its own view
//! appends them as they come: its log is a prefix of the primary's. A replica
//! that learns that a newer view (or the view it is changing to) has started
//! without it catches up: it fetches the new view's log after its
//! commit-number into a staging area and installs it whole, as if from
//! StartView. Until then it keeps its old log and last-normal-view: a replica
//! that claimed the new view with a log cut back to its commit-number could
//! win the next view change with a log lacking committed entries.

use super::checkpoint::Checkpoint;
use super::io::{Effect, Timer};
use super::log::Entry;
use super::message::{GetState, Message, NewState, PrepareOk};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{CommitNumber, OpNumber, ReplicaId, View};
use std::fmt;
use tracing::{debug, info};

/// A catch-up under way: the new view's entries after `base`, as fetched.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CatchUp<S: StateMachine> {
    /// The commit-number when the catch-up began (entries up to it are
    /// committed and so the same in the new view's log), or the fetched
    /// checkpoint's.
    base: CommitNumber,
    /// The new view's entries at op-numbers base + 1, base + 2, ...
    entries: Vec<Entry<S>>,
    /// A checkpoint fetched because the entries after the commit-number were
    /// compacted away at the sender: it stands for every entry up to `base`.
    checkpoint: Option<Checkpoint<S>>,
}

impl<S: StateMachine> CatchUp<S> {
    /// Starts over from a fetched checkpoint.
    pub(super) fn restart_from(&mut self, checkpoint: Checkpoint<S>) {
        self.base = checkpoint.commit;
        self.entries.clear();
        self.checkpoint = Some(checkpoint);
    }

    /// The fetched checkpoint, if any.
    pub fn checkpoint(&self) -> Option<&Checkpoint<S>> {
        self.checkpoint.as_ref()
    }

    /// The commit-number the staged entries follow.
    pub fn base(&self) -> CommitNumber {
        self.base
    }

    /// The op-number the staged log reaches.
    pub fn op_number(&self) -> OpNumber {
        OpNumber(self.base.0 + self.entries.len() as u64)
    }
}

impl<S: StateMachine> fmt::Debug for CatchUp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "catch-up(base={:?} staged={:?})",
            self.base, self.entries
        )
    }
}

impl<S: StateMachine> Replica<S> {
    /// The replica learned from `from`, the primary of `view`, that `view` is
    /// in normal operation while this replica is in an older view or still
    /// changing to it. It moves to `view` in ViewChange status (it takes no
    /// Prepare) and fetches the new view's log after its commit-number. While
    /// a catch-up is under way, each Prepare or Commit of the view repeats its
    /// GetState, in case it was lost.
    pub(super) fn catch_up_to_view(
        &mut self,
        view: View,
        from: ReplicaId,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert!(view > self.view || (view == self.view && self.status == Status::ViewChange));
        debug_assert_eq!(from, self.config.primary(view));
        #[allow(unused_mut)]
        let mut same_view = view == self.view;
        #[cfg(feature = "wrong-variants")]
        if self
            .config
            .has_bug(super::config::Bug::CatchUpIgnoresNewerView)
        {
            same_view = true;
        }
        if same_view && let Some(catch_up) = &self.catch_up {
            // The request may have been lost: ask again. While the last one is
            // unconfirmed, the same GetState adds nothing. A newer view's
            // primary would ignore a GetState of this view (LIVE-JOIN): the
            // replica moves to the newer view instead, below.
            debug!(replica = ?self.id(), ?view, "catching up already: asking again");
            let holds = catch_up.op_number();
            self.request_state_after(from, holds, effects);
            return;
        }
        info!(replica = ?self.id(), from = ?self.view, to = ?view, commit = ?self.commit, "view started without this replica: fetching its log");
        self.enter_view(view, Status::ViewChange, effects);
        self.catch_up = Some(CatchUp {
            base: self.commit,
            entries: Vec::new(),
            checkpoint: None,
        });
        self.request_state_after(from, self.commit.as_op(), effects);
    }

    /// A recovering replica learned from f + 1 answers that `view` is the
    /// latest view, but its primary's log suffix starts beyond op-number 0:
    /// it fetches the primary's log by state transfer, still Recovering (it
    /// takes part in nothing until it holds a log of the view), and finishes
    /// recovery with it. A repeated call for the same view asks again.
    pub(super) fn recover_by_state_transfer(&mut self, view: View, effects: &mut Vec<Effect<S>>) {
        debug_assert_eq!(self.status, Status::Recovering);
        debug_assert_eq!(
            self.commit,
            CommitNumber(0),
            "a recovering replica holds nothing"
        );
        let primary = self.config.primary(view);
        if view == self.view
            && let Some(catch_up) = &self.catch_up
        {
            let holds = catch_up.op_number();
            self.request_state_after(primary, holds, effects);
            return;
        }
        info!(replica = ?self.id(), ?view, "recovering: fetching the primary's log");
        self.view = view;
        // A checkpoint half fetched from the old view's primary is dropped:
        // the new one's may be cut differently.
        self.restore = None;
        self.catch_up = Some(CatchUp {
            base: self.commit,
            entries: Vec::new(),
            checkpoint: None,
        });
        self.request_state_after(primary, OpNumber(0), effects);
    }

    /// Sends GetState for the entries after this replica's op-number to
    /// `from`, a replica in Normal status of the same view.
    pub(super) fn request_state(&mut self, from: ReplicaId, effects: &mut Vec<Effect<S>>) {
        self.request_state_after(from, self.op_number(), effects);
    }

    pub(super) fn request_state_after(
        &mut self,
        from: ReplicaId,
        op: OpNumber,
        effects: &mut Vec<Effect<S>>,
    ) {
        let get = GetState {
            view: self.view,
            op,
        };
        self.send(from, Message::GetState(get), effects);
    }

    /// GetState (paper 5.2): a replica in Normal status of the asker's view
    /// sends the entries after the asker's op-number, within the configured
    /// bounds. Any other replica answers primary(v) alone, with committed
    /// entries only: a new primary fetching what its chosen DoViewChange left
    /// out (paper 5.3). Idempotent: it reads and changes nothing.
    pub(super) fn on_get_state(
        &mut self,
        from: ReplicaId,
        get: GetState,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_get_state(from, &get) {
            debug!(replica = ?self.id(), ?from, view = ?get.view, op = ?get.op, reason, "ignore GetState");
            return;
        }
        if self.discarded(get.op) {
            // The entries asked for are compacted away: the checkpoint that
            // stands for them goes instead, then the entries after it.
            self.send_checkpoint_part(from, get.view, 0, effects);
            return;
        }
        let max = usize::try_from(self.config.state_transfer_entries_max()).unwrap_or(usize::MAX);
        let weight = self.config.message_weight_max();
        let new_state = if self.status == Status::Normal && get.view == self.view {
            NewState {
                view: self.view,
                after: get.op,
                entries: self.log.chunk(get.op, self.op_number(), max, weight),
                op: self.op_number(),
                commit: self.commit,
            }
        } else {
            // primary(v) filling in committed entries (see `on_fill_state`):
            // only committed ones go, as if the log ended at the
            // commit-number, so it receives nothing that may still change.
            NewState {
                view: get.view,
                after: get.op,
                entries: self.log.chunk(get.op, self.commit.as_op(), max, weight),
                op: self.commit.as_op(),
                commit: self.commit,
            }
        };
        self.send(from, Message::NewState(new_state), effects);
    }

    fn ignore_get_state(&self, from: ReplicaId, get: &GetState) -> Option<&'static str> {
        if self.status == Status::Normal && get.view == self.view {
            if get.op > self.op_number() {
                return Some("the asker holds more than this replica");
            }
            return None;
        }
        if from != self.config.primary(get.view) {
            return Some("not in Normal status in the asker's view");
        }
        if get.op >= self.commit.as_op() {
            return Some("no committed entry beyond what primary(v) holds");
        }
        None
    }

    /// NewState (paper 5.2): the entries beyond what this replica holds are
    /// appended (to its log, or while catching up to the staged log) if they
    /// follow without a gap; it asks again while the sender holds more.
    /// Idempotent: a duplicated or stale NewState (another view, or nothing
    /// beyond what this replica holds) is ignored.
    pub(super) fn on_new_state(
        &mut self,
        from: ReplicaId,
        new_state: NewState<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if self.status == Status::ViewChange && self.view_change.fill().is_some() {
            self.on_fill_state(from, new_state, effects);
            return;
        }
        let holds = match &self.catch_up {
            Some(catch_up) => catch_up.op_number(),
            None => self.op_number(),
        };
        if let Some(reason) = self.ignore_new_state(from, &new_state, holds) {
            debug!(replica = ?self.id(), ?from, view = ?new_state.view, after = ?new_state.after, reason, "ignore NewState");
            return;
        }
        let before = holds;
        // Entries already held are the same: both sides hold a prefix of the
        // primary's log in this view.
        let held = usize::try_from(holds.0 - new_state.after.0).unwrap_or(usize::MAX);
        let fresh = new_state.entries.into_iter().skip(held);
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.entries.extend(fresh);
            if self.status == Status::ViewChange {
                // Progress: the catch-up may take longer than one view-change
                // timeout. (A recovering replica has the recovery timer.)
                effects.push(Effect::SetTimer(Timer::ViewChangeTimeout));
            }
        } else {
            for entry in fresh {
                self.log.push(entry);
            }
        }
        let holds = self
            .catch_up
            .as_ref()
            .map_or(self.op_number(), CatchUp::op_number);
        if holds < new_state.op {
            if self.catch_up.is_none() {
                // Entries fetched up to the primary's commit-number are
                // committed: a long transfer must not leave them counted as
                // uncommitted, which a DoViewChange would have to carry.
                self.commit_learned(new_state.commit, effects);
            }
            self.request_state_after(from, holds, effects);
            return;
        }
        match self.catch_up.take() {
            Some(catch_up) => {
                let log = self.install_staged(
                    catch_up.checkpoint,
                    catch_up.base.as_op(),
                    catch_up.entries,
                );
                info!(replica = ?self.id(), view = ?self.view, op = ?log.op_number(), "caught up with the view");
                let commit = new_state.commit.max(self.commit);
                if self.status == Status::Recovering {
                    self.finish_recovery(self.view, log, commit, effects);
                } else {
                    self.begin_view_as_backup(self.view, log, commit, new_state.commit, effects);
                }
            }
            None => {
                self.commit_learned(new_state.commit, effects);
                if holds > before {
                    info!(replica = ?self.id(), view = ?self.view, op = ?holds, "state transfer complete");
                    let ok = PrepareOk {
                        view: self.view,
                        op: holds,
                    };
                    let primary = self.primary();
                    self.send(primary, Message::PrepareOk(ok), effects);
                }
            }
        }
    }

    fn ignore_new_state(
        &self,
        from: ReplicaId,
        new_state: &NewState<S>,
        holds: OpNumber,
    ) -> Option<&'static str> {
        let catching_up = matches!(self.status, Status::ViewChange | Status::Recovering)
            && self.catch_up.is_some();
        if !(self.status == Status::Normal || catching_up) {
            return Some("neither in Normal status nor catching up");
        }
        if new_state.view != self.view {
            return Some("another view");
        }
        if from != self.primary() || self.is_primary() {
            return Some("state is fetched from the primary only");
        }
        let reaches = new_state
            .after
            .0
            .saturating_add(new_state.entries.len() as u64);
        if reaches > new_state.op.0
            || new_state.commit.as_op() > new_state.op
            || (new_state.entries.is_empty() && new_state.op > new_state.after)
        {
            return Some("malformed: entries or commit-number beyond the sender's op-number");
        }
        if new_state.after > holds {
            return Some("leaves a gap after what this replica holds");
        }
        if let Some(catch_up) = &self.catch_up
            && new_state.after < catch_up.base.as_op()
        {
            return Some("starts below the catch-up's base");
        }
        // While catching up, a NewState that shows the staged log complete
        // finishes the catch-up even if it brings no entry.
        let completes_catch_up = catching_up && new_state.op == holds;
        if reaches <= holds.0
            && !completes_catch_up
            && (catching_up || new_state.commit <= self.commit)
        {
            return Some("nothing new (duplicate or stale)");
        }
        // The entries both hold, compared at the same op-numbers: from the
        // later of the answer's start and what this replica still holds (a
        // compacted log holds nothing up to its base).
        let from = match &self.catch_up {
            Some(catch_up) => catch_up.base.as_op(),
            None => self.log.base(),
        }
        .max(new_state.after);
        let overlap = usize::try_from(holds.0.saturating_sub(from.0)).unwrap_or(usize::MAX);
        let theirs = new_state
            .entries
            .iter()
            .skip(usize::try_from(from.0 - new_state.after.0).unwrap_or(usize::MAX));
        let ours: Vec<&Entry<S>> = match &self.catch_up {
            Some(catch_up) => {
                let skip = usize::try_from(from.0 - catch_up.base.0).unwrap_or(usize::MAX);
                catch_up.entries.iter().skip(skip).collect()
            }
            None => self.log.entries_after(from).map(|(_, e)| e).collect(),
        };
        let agrees = theirs.take(overlap).zip(ours).all(|(a, b)| a == b);
        debug_assert!(
            agrees || self.config.is_wrong_variant(),
            "INV-SAME-VIEW-PREFIX: NewState disagrees with entries held in the same view"
        );
        if !agrees {
            return Some("disagrees with entries held in the same view");
        }
        None
    }
}
