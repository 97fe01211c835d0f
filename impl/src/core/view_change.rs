//! The view change (paper 4.2; spec/protocol.md, "View change"), with the
//! per-message-type de-duplication caches of the design notes.

use super::io::Effect;
use super::log::Log;
use super::message::{DoViewChange, Message, PrepareOk, StartView, StartViewChange};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{CommitNumber, OpNumber, ReplicaId, View};
use std::collections::BTreeSet;
use std::fmt;
use tracing::{debug, error, info};

/// The de-duplication caches of one view change: per message type, the
/// replicas already counted. Cleared whenever the replica enters a view, so
/// they never hold anything of an older view change.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ViewChangeCaches<S: StateMachine> {
    /// Replicas (never this one) whose StartViewChange for this view counted.
    start_view_change: BTreeSet<ReplicaId>,
    /// Replicas (this one included, once it has sent its own) whose
    /// DoViewChange for this view counted. Only primary(v) fills it.
    do_view_change: BTreeSet<ReplicaId>,
    /// Of the DoViewChange messages counted, what the selection rule needs:
    /// the log with the largest (last-normal-view, op-number).
    best: Option<Candidate<S>>,
    /// The largest commit-number among the DoViewChange messages counted.
    commit_max: CommitNumber,
}

/// The best log offered so far in DoViewChange messages.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Candidate<S: StateMachine> {
    /// The last-normal-view of the replica that sent the log.
    pub last_normal_view: View,
    /// The log.
    pub log: Log<S>,
}

impl<S: StateMachine> Candidate<S> {
    /// The paper's order: largest last-normal-view, then largest op-number.
    fn rank(&self) -> (View, OpNumber) {
        (self.last_normal_view, self.log.op_number())
    }
}

impl<S: StateMachine> Default for ViewChangeCaches<S> {
    fn default() -> Self {
        ViewChangeCaches {
            start_view_change: BTreeSet::new(),
            do_view_change: BTreeSet::new(),
            best: None,
            commit_max: CommitNumber(0),
        }
    }
}

impl<S: StateMachine> ViewChangeCaches<S> {
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.start_view_change.is_empty()
            && self.do_view_change.is_empty()
            && self.best.is_none()
            && self.commit_max == CommitNumber(0)
    }

    /// Replicas whose StartViewChange counted.
    pub fn start_view_change_from(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.start_view_change.iter().copied()
    }

    /// Replicas whose DoViewChange counted.
    pub fn do_view_change_from(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.do_view_change.iter().copied()
    }

    /// The best log offered so far.
    pub fn best(&self) -> Option<&Candidate<S>> {
        self.best.as_ref()
    }

    pub(super) fn clear(&mut self) {
        *self = ViewChangeCaches::default();
    }
}

impl<S: StateMachine> fmt::Debug for ViewChangeCaches<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "svc={:?} dvc={:?}",
            self.start_view_change, self.do_view_change
        )?;
        if let Some(best) = &self.best {
            write!(
                f,
                " best=({:?}, {:?}) commit_max={:?}",
                best.last_normal_view,
                best.log.op_number(),
                self.commit_max
            )?;
        }
        Ok(())
    }
}

impl<S: StateMachine> Replica<S> {
    /// Moves to ViewChange status in `view` and sends StartViewChange to every
    /// other replica (paper 4.2 step 1).
    pub(super) fn start_view_change(&mut self, view: View, effects: &mut Vec<Effect<S>>) {
        debug_assert!(
            view > self.view,
            "a view change always moves to a newer view"
        );
        info!(replica = ?self.id(), from = ?self.view, to = ?view, "view change");
        self.enter_view(view, Status::ViewChange, effects);
        self.broadcast(Message::StartViewChange(StartViewChange { view }), effects);
        // With f = 0 no StartViewChange need arrive.
        if self.config.f() == 0 {
            self.send_do_view_change(effects);
        }
    }

    /// StartViewChange (paper 4.2 steps 1-2): a newer view moves this replica
    /// to it; each replica is counted once (the de-duplication cache); at f,
    /// DoViewChange goes to the new primary.
    pub(super) fn on_start_view_change(
        &mut self,
        from: ReplicaId,
        svc: StartViewChange,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_view_change_message(svc.view) {
            debug!(replica = ?self.id(), ?from, view = ?svc.view, reason, "ignore StartViewChange");
            return;
        }
        if svc.view > self.view {
            self.start_view_change(svc.view, effects);
        }
        debug_assert!(self.status == Status::ViewChange && svc.view == self.view);
        if !self.view_change.start_view_change.insert(from) {
            debug!(replica = ?self.id(), ?from, view = ?svc.view, "duplicate StartViewChange: not counted again");
            return;
        }
        if self.view_change.start_view_change.len() == self.config.f() {
            self.send_do_view_change(effects);
        }
    }

    /// Guard shared by StartViewChange and DoViewChange.
    fn ignore_view_change_message(&self, view: View) -> Option<&'static str> {
        if view < self.view {
            return Some("older view");
        }
        if view == self.view && self.status == Status::Normal {
            return Some("the view change to this view is over");
        }
        None
    }

    /// Sends DoViewChange to primary(v), or counts it directly when this
    /// replica is primary(v) (paper 4.2 step 2). Sent once per view: the
    /// StartViewChange count passes f exactly once.
    fn send_do_view_change(&mut self, effects: &mut Vec<Effect<S>>) {
        debug_assert!(self.status == Status::ViewChange);
        let dvc = DoViewChange {
            view: self.view,
            log: self.log.clone(),
            last_normal_view: self.last_normal_view,
            commit: self.commit,
        };
        if self.is_primary() {
            self.count_do_view_change(self.id(), dvc, effects);
        } else {
            let primary = self.primary();
            self.send(primary, Message::DoViewChange(dvc), effects);
        }
    }

    /// DoViewChange (paper 4.2 step 3): primary(v) counts each replica once,
    /// keeps the best log and the largest commit-number, and with f + 1 starts
    /// the view. A DoViewChange for a newer view first moves it to that view.
    pub(super) fn on_do_view_change(
        &mut self,
        from: ReplicaId,
        dvc: DoViewChange<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_do_view_change(&dvc) {
            debug!(replica = ?self.id(), ?from, view = ?dvc.view, reason, "ignore DoViewChange");
            return;
        }
        if dvc.view > self.view {
            self.start_view_change(dvc.view, effects);
            // With f = 0 the view may have started already.
            if self.status == Status::Normal {
                return;
            }
        }
        self.count_do_view_change(from, dvc, effects);
    }

    fn ignore_do_view_change(&self, dvc: &DoViewChange<S>) -> Option<&'static str> {
        if let Some(reason) = self.ignore_view_change_message(dvc.view) {
            return Some(reason);
        }
        if self.config.primary(dvc.view) != self.id() {
            return Some("this replica is not the primary of that view");
        }
        if dvc.last_normal_view >= dvc.view || dvc.commit.as_op() > dvc.log.op_number() {
            return Some("malformed: last-normal-view or commit-number out of range");
        }
        None
    }

    fn count_do_view_change(
        &mut self,
        from: ReplicaId,
        dvc: DoViewChange<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert!(
            self.status == Status::ViewChange && dvc.view == self.view && self.is_primary()
        );
        let cache = &mut self.view_change;
        if !cache.do_view_change.insert(from) {
            #[cfg(feature = "wrong-variants")]
            if self
                .config
                .has_bug(super::config::Bug::CountDuplicateDoViewChange)
                && self.view_change.do_view_change.len() + 1 == self.config.quorum()
            {
                self.start_view(effects);
                return;
            }
            debug!(replica = ?self.id(), ?from, view = ?dvc.view, "duplicate DoViewChange: not counted again");
            return;
        }
        let offered = Candidate {
            last_normal_view: dvc.last_normal_view,
            log: dvc.log,
        };
        if cache
            .best
            .as_ref()
            .is_none_or(|best| offered.rank() > best.rank())
        {
            cache.best = Some(offered);
        }
        cache.commit_max = cache.commit_max.max(dvc.commit);
        if cache.do_view_change.len() == self.config.quorum() {
            self.start_view(effects);
        }
    }

    /// primary(v) has f + 1 DoViewChange: it takes the best log, the largest
    /// commit-number, enters Normal, sends StartView, executes what is
    /// committed and replies to its clients (paper 4.2 steps 3-4).
    fn start_view(&mut self, effects: &mut Vec<Effect<S>>) {
        let best = self
            .view_change
            .best
            .take()
            .expect("f + 1 DoViewChange offer a log");
        let mut commit = self.view_change.commit_max.max(self.commit);
        if commit.as_op() > best.log.op_number() {
            // Only a faulty DoViewChange can claim commits beyond every log
            // offered; the entries it names are not here to execute.
            debug_assert!(
                self.config.is_wrong_variant(),
                "INV-PRIMARY-HAS-COMMITTED: commit {commit:?} beyond the chosen log {:?}",
                best.log
            );
            error!(replica = ?self.id(), ?commit, op = ?best.log.op_number(), "DoViewChange commit-number beyond the chosen log: not trusted");
            commit = best.log.op_number().as_commit().max(self.commit);
        }
        self.adopt_log(best.log, commit);
        let view = self.view;
        info!(replica = ?self.id(), ?view, op = ?self.op_number(), ?commit, "view started as primary");
        self.enter_view(view, Status::Normal, effects);
        let start = StartView {
            view,
            log: self.log.clone(),
            commit,
        };
        self.broadcast(Message::StartView(start), effects);
        self.commit_up_to(commit, effects);
    }

    /// Replaces the log with one chosen by a view change. The entries up to
    /// the old commit-number are committed, so the new log holds them
    /// unchanged (INV-AGREEMENT) and the application state stays valid.
    fn adopt_log(&mut self, log: Log<S>, commit: CommitNumber) {
        debug_assert!(
            self.config.is_wrong_variant() || self.keeps_committed_prefix(&log),
            "INV-AGREEMENT: {:?} adopts a log that differs in its committed prefix",
            self.id()
        );
        debug_assert!(
            self.config.is_wrong_variant() || commit.as_op() <= log.op_number(),
            "INV-COMMIT-LE-OP"
        );
        self.log = log;
    }

    /// Whether `log` holds this replica's committed entries unchanged.
    fn keeps_committed_prefix(&self, log: &Log<S>) -> bool {
        let committed = self.commit.as_op();
        committed <= log.op_number() && self.log.prefix(committed) == log.prefix(committed)
    }

    /// Enters Normal status in `view` as a backup with `log`, the view's log
    /// (from StartView, recovery or a catch-up), executes up to `commit` and
    /// confirms the uncommitted rest to the primary with PrepareOk.
    pub(super) fn begin_view_as_backup(
        &mut self,
        view: View,
        log: Log<S>,
        commit: CommitNumber,
        effects: &mut Vec<Effect<S>>,
    ) {
        self.adopt_log(log, commit);
        info!(replica = ?self.id(), ?view, op = ?self.op_number(), ?commit, "view started as backup");
        self.enter_view(view, Status::Normal, effects);
        debug_assert!(!self.is_primary(), "a backup of {view:?}");
        self.commit_up_to(commit, effects);
        if self.op_number() > self.commit.as_op() {
            let ok = PrepareOk {
                view,
                op: self.op_number(),
            };
            let primary = self.primary();
            self.send(primary, Message::PrepareOk(ok), effects);
        }
    }

    /// StartView (paper 4.2 step 5): a replica still changing to the view, or
    /// in an older one, adopts the new primary's log, enters Normal, executes
    /// what is committed and sends PrepareOk for the uncommitted rest.
    /// Idempotent: a StartView for the view it is Normal in is ignored.
    pub(super) fn on_start_view(
        &mut self,
        from: ReplicaId,
        start: StartView<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if let Some(reason) = self.ignore_start_view(from, &start) {
            debug!(replica = ?self.id(), ?from, view = ?start.view, reason, "ignore StartView");
            return;
        }
        let commit = start.commit.max(self.commit);
        self.begin_view_as_backup(start.view, start.log, commit, effects);
    }

    fn ignore_start_view(&self, from: ReplicaId, start: &StartView<S>) -> Option<&'static str> {
        if from != self.config.primary(start.view) {
            return Some("sender is not the primary of that view");
        }
        if start.view < self.view {
            return Some("older view");
        }
        if start.view == self.view && self.status == Status::Normal {
            return Some("already Normal in that view");
        }
        if start.commit.as_op() > start.log.op_number() {
            return Some("malformed: commit-number beyond the log");
        }
        let keeps = self.keeps_committed_prefix(&start.log);
        debug_assert!(
            keeps || self.config.is_wrong_variant(),
            "INV-AGREEMENT: StartView {:?} drops entries {:?} committed",
            start.log,
            self.id()
        );
        if !keeps {
            return Some("the log differs from entries this replica committed");
        }
        None
    }

    /// View-change timer: the view change did not complete in time, so the
    /// replica moves on to the next view and so the next primary.
    pub(super) fn on_view_change_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        if self.status != Status::ViewChange {
            debug!(replica = ?self.id(), "ignore ViewChangeTimeout: not changing views");
            return;
        }
        info!(replica = ?self.id(), view = ?self.view, "view change timed out: moving to the next view");
        self.start_view_change(self.view.next(), effects);
    }
}
