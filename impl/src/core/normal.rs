//! Normal operation (paper 4.1; spec/protocol.md, "Normal operation").

use super::client_table::Admission;
use super::io::{Effect, Timer};
use super::log::Entry;
use super::message::{Command, Commit, Message, Outcome, Prepare, PrepareOk, Reply, Request};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{CommitNumber, OpNumber, ReplicaId};
use tracing::debug;

impl<S: StateMachine> Replica<S> {
    /// Request (paper 4.1 steps 1-3): the primary in Normal status admits
    /// each request through the client table and appends it to its log (a
    /// request of a client without a session is answered SessionExpired and
    /// not executed: spec/protocol.md, "Client sessions"); the
    /// requests admitted together go to every backup in one Prepare (batching,
    /// paper 6.2). A backup drops requests: the client retries. Idempotent
    /// for a repeated request: the stored reply is sent again.
    pub(super) fn on_requests(&mut self, requests: Vec<Request<S>>, effects: &mut Vec<Effect<S>>) {
        if let Some(reason) = self.ignore_request() {
            debug!(replica = ?self.id(), requests = requests.len(), reason, "ignore Request");
            return;
        }
        let before = self.op_number();
        for request in requests {
            self.admit(request, effects);
        }
        if self.op_number() > before {
            self.prepare(before, effects);
        }
    }

    fn admit(&mut self, request: Request<S>, effects: &mut Vec<Effect<S>>) {
        let admission = self.client_table.admit(
            request.client,
            request.request,
            &request.operation,
            &self.log,
            self.commit,
        );
        match admission {
            Admission::Drop(reason) => {
                debug!(replica = ?self.id(), client = ?request.client, request = ?request.request, reason, "ignore Request");
            }
            Admission::Expired => {
                debug!(replica = ?self.id(), client = ?request.client, request = ?request.request,
                    "refuse Request: the client has no session");
                effects.push(Effect::Reply(Reply {
                    view: self.view,
                    client: request.client,
                    request: request.request,
                    output: Outcome::SessionExpired,
                }));
            }
            Admission::New if self.connected_backups() < self.config.f() => {
                debug!(replica = ?self.id(), client = ?request.client, request = ?request.request,
                    "ignore Request: fewer than f backups connected, it could not commit");
            }
            Admission::New if self.pipeline_full(&request.operation) => {
                debug!(replica = ?self.id(), client = ?request.client, request = ?request.request,
                    "ignore Request: the uncommitted entries fill a message; the client retries");
            }
            Admission::Executed(output) => {
                effects.push(Effect::Reply(Reply {
                    view: self.view,
                    client: request.client,
                    request: request.request,
                    output: output.clone(),
                }));
            }
            Admission::New => self.log.push(Entry {
                operation: request.operation,
                client: request.client,
                request: request.request,
            }),
        }
    }

    fn ignore_request(&self) -> Option<&'static str> {
        if self.status != Status::Normal {
            return Some("not in Normal status");
        }
        if !self.is_primary() {
            return Some("not the primary");
        }
        None
    }

    /// Whether admitting `operation` would take the uncommitted entries
    /// beyond one message's bound: DoViewChange, StartView and RecoveryResponse
    /// carry every uncommitted entry, so this bound is what keeps them within
    /// it. With nothing uncommitted, any one request is admitted.
    fn pipeline_full(&self, operation: &Command<S>) -> bool {
        self.op_number() > self.commit.as_op()
            && self.log.weight_after(self.commit.as_op()) + u64::from(operation.weight())
                > u64::from(self.config.message_weight_max())
    }

    /// Sends the entries after `after`, just appended, in one Prepare.
    fn prepare(&mut self, after: super::types::OpNumber, effects: &mut Vec<Effect<S>>) {
        debug_assert!(self.status == Status::Normal && self.is_primary());
        debug_assert!(after < self.op_number());
        let prepare = Prepare {
            view: self.view,
            op: self.op_number(),
            entries: self
                .log
                .entries_after(after)
                .map(|(_, e)| e.clone())
                .collect(),
            commit: self.commit,
        };
        self.broadcast(Message::Prepare(prepare), effects);
        effects.push(Effect::SetTimer(Timer::Heartbeat));
        // With f = 0 the primary alone is a quorum.
        self.commit_by_quorum(effects);
    }

    /// Prepare (paper 4.1 step 4): a backup in Normal status of the same view
    /// appends the entries beyond its op-number if the batch reaches it and
    /// answers PrepareOk; then it executes up to the primary's commit-number. A Prepare of a newer view,
    /// or one reaching a replica still changing to its view, shows that the
    /// view started without it: it catches up (paper 5.2). A gap starts state
    /// transfer. Idempotent: a Prepare already held changes nothing but the
    /// commit-number it may carry.
    pub(super) fn on_prepare(
        &mut self,
        from: ReplicaId,
        prepare: Prepare<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_from_primary(from, prepare.view) {
            debug!(replica = ?self.id(), ?from, view = ?prepare.view, op = ?prepare.op, reason, "ignore Prepare");
            return;
        }
        if prepare.entries.is_empty() || prepare.entries.len() as u64 > prepare.op.0 {
            debug!(replica = ?self.id(), ?from, op = ?prepare.op, "ignore Prepare: malformed: no entries, or more than its op-number");
            return;
        }
        if prepare.view > self.view || self.status == Status::ViewChange {
            self.catch_up_to_view(prepare.view, from, effects);
            return;
        }
        debug_assert!(
            self.status == Status::Normal && prepare.view == self.view && !self.is_primary()
        );
        effects.push(Effect::SetTimer(Timer::PrimaryTimeout));
        let op = self.op_number();
        // The batch's first op-number; entries already held are the same
        // (INV-SAME-VIEW-PREFIX), so only those beyond are appended.
        let first = prepare.op.0 - prepare.entries.len() as u64 + 1;
        if first <= op.0 + 1 && prepare.op > op {
            let held = usize::try_from(op.0 + 1 - first).unwrap_or(usize::MAX);
            debug_assert!(
                self.config.is_wrong_variant()
                    || self
                        .log
                        .entries_after(OpNumber(first - 1))
                        .all(|(op, e)| prepare.entries[(op.0 - first) as usize] == *e),
                "INV-SAME-VIEW-PREFIX: a Prepare disagrees with entries held in the same view"
            );
            for entry in prepare.entries.into_iter().skip(held) {
                self.log.push(entry);
            }
            let ok = PrepareOk {
                view: self.view,
                op: self.op_number(),
            };
            self.send(from, Message::PrepareOk(ok), effects);
        } else if first > op.0 + 1 {
            debug!(replica = ?self.id(), ?op, prepare = ?prepare.op, "gap before Prepare: state transfer");
            self.request_state(from, effects);
        }
        self.commit_learned(prepare.commit, effects);
    }

    /// PrepareOk (paper 4.1 step 5): the primary records that the backup holds
    /// every entry up to `op`, and commits each entry that f backups hold.
    /// Idempotent: a PrepareOk at or below what the backup already confirmed
    /// changes nothing.
    pub(super) fn on_prepare_ok(
        &mut self,
        from: ReplicaId,
        ok: PrepareOk,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_prepare_ok(from, &ok) {
            debug!(replica = ?self.id(), ?from, view = ?ok.view, op = ?ok.op, reason, "ignore PrepareOk");
            return;
        }
        debug_assert!(self.status == Status::Normal && self.is_primary() && ok.view == self.view);
        self.prepare_oks.insert(from, ok.op);
        self.commit_by_quorum(effects);
    }

    fn ignore_prepare_ok(&self, from: ReplicaId, ok: &PrepareOk) -> Option<&'static str> {
        if ok.view != self.view {
            return Some(if ok.view < self.view {
                "older view"
            } else {
                "newer view: a backup is never ahead of its primary"
            });
        }
        if self.status != Status::Normal {
            return Some("not in Normal status");
        }
        if !self.is_primary() {
            return Some("not the primary");
        }
        if ok.op > self.op_number() {
            return Some("beyond the primary's op-number");
        }
        if self.prepare_oks.get(&from).is_some_and(|&n| n >= ok.op) {
            return Some("duplicate: the backup confirmed as much already");
        }
        None
    }

    /// The primary's commit rule: the highest op-number that f backups hold
    /// (and the primary, which holds everything) is committed.
    pub(super) fn commit_by_quorum(&mut self, effects: &mut Vec<Effect<S>>) {
        #[allow(unused_mut)]
        let mut f = self.config.f();
        #[cfg(feature = "wrong-variants")]
        if self.config.has_bug(super::config::Bug::CommitWithoutQuorum) {
            f = f.saturating_sub(1);
        }
        let held = if f == 0 {
            self.op_number()
        } else {
            let mut confirmed: Vec<_> = self.prepare_oks.values().copied().collect();
            if confirmed.len() < f {
                return;
            }
            confirmed.sort_unstable_by(|a, b| b.cmp(a));
            confirmed[f - 1]
        };
        if held.as_commit() > self.commit {
            debug_assert!(held <= self.op_number());
            self.commit_up_to(held.as_commit(), effects);
        }
    }

    /// Commit (paper 4.1 step 7): a backup learns the primary's commit-number,
    /// and that the primary is alive; if the primary holds entries it lacks,
    /// it asks for them (paper 5.2). As for Prepare, a Commit of a view this
    /// replica has not started shows that it must catch up. Idempotent.
    pub(super) fn on_commit(
        &mut self,
        from: ReplicaId,
        commit: Commit,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_from_primary(from, commit.view) {
            debug!(replica = ?self.id(), ?from, view = ?commit.view, reason, "ignore Commit");
            return;
        }
        if commit.view > self.view || self.status == Status::ViewChange {
            self.catch_up_to_view(commit.view, from, effects);
            return;
        }
        debug_assert!(
            self.status == Status::Normal && commit.view == self.view && !self.is_primary()
        );
        effects.push(Effect::SetTimer(Timer::PrimaryTimeout));
        if commit.op > self.op_number() {
            debug!(replica = ?self.id(), op = ?self.op_number(), primary_op = ?commit.op, "behind the primary: state transfer");
            self.request_state(from, effects);
        }
        self.commit_learned(commit.commit, effects);
    }

    /// Guard shared by the messages only the primary of their view sends.
    fn ignore_from_primary(
        &self,
        from: ReplicaId,
        view: super::types::View,
    ) -> Option<&'static str> {
        if from != self.config.primary(view) {
            return Some("sender is not the primary of the message's view");
        }
        if view < self.view {
            return Some("older view");
        }
        None
    }

    /// A backup executes up to the primary's commit-number, as far as its log
    /// reaches: its log is a prefix of the primary's in this view.
    pub(super) fn commit_learned(&mut self, commit: CommitNumber, effects: &mut Vec<Effect<S>>) {
        let reachable = commit.min(self.op_number().as_commit());
        if reachable > self.commit {
            self.commit_up_to(reachable, effects);
        }
    }

    /// Heartbeat timer (paper 4.1 step 6): an idle primary sends Commit, which
    /// tells the backups it is alive and how far it has committed. Every
    /// expiry sends a copy, even when an identical Commit is unconfirmed.
    pub(super) fn on_heartbeat_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        if self.status != Status::Normal || !self.is_primary() {
            debug!(replica = ?self.id(), "ignore Heartbeat timeout: not the primary in Normal status");
            return;
        }
        let commit = Commit {
            view: self.view,
            commit: self.commit,
            op: self.op_number(),
        };
        self.broadcast_periodic(Message::Commit(commit), effects);
        effects.push(Effect::SetTimer(Timer::Heartbeat));
    }

    /// Primary timeout (paper 4.2): a backup that has not heard from its
    /// primary starts a view change to the next view.
    pub(super) fn on_primary_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        if self.status != Status::Normal || self.is_primary() {
            debug!(replica = ?self.id(), "ignore PrimaryTimeout: not a backup in Normal status");
            return;
        }
        self.start_view_change(self.view.next(), effects);
    }
}
