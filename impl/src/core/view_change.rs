//! The view change (paper 4.2; spec/protocol.md, "View change"), with the
//! per-message-type de-duplication caches of the design notes.

use super::checkpoint::Checkpoint;
use super::io::{Effect, Timer};
use super::log::{Entry, Log, LogSuffix};
use super::message::{
    DoViewChange, GetState, Message, NewState, PrepareOk, StartView, StartViewChange,
};
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
    /// Once f + 1 DoViewChange have counted but the best log's suffix starts
    /// beyond this replica's commit-number: the committed entries after its
    /// commit-number fetched so far from the best log's sender.
    fill: Option<Fill<S>>,
}

/// What primary(v) has fetched of the committed entries its chosen log left
/// out: the entries after its commit-number, or, when those were compacted
/// away at the sender, the sender's checkpoint and the entries after it.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Fill<S: StateMachine> {
    /// A checkpoint fetched in place of compacted entries.
    pub checkpoint: Option<Checkpoint<S>>,
    /// The entries fetched, following the commit-number or the checkpoint.
    pub entries: Vec<Entry<S>>,
}

impl<S: StateMachine> fmt::Debug for Fill<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(checkpoint) = &self.checkpoint {
            write!(f, "{checkpoint:?}+")?;
        }
        write!(f, "{:?}", self.entries)
    }
}

/// The best log offered so far in DoViewChange messages.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Candidate<S: StateMachine> {
    /// The replica that sent the log, kept only when its suffix starts
    /// beyond this replica's commit-number (which stays put during a view
    /// change): the fill asks it for the entries in between. Offers that need
    /// no fill are told apart by their contents alone, so two arrival orders
    /// of equal offers are one state, not two.
    pub from: Option<ReplicaId>,
    /// The last-normal-view of that replica.
    pub last_normal_view: View,
    /// The log, as a suffix.
    pub log: LogSuffix<S>,
}

impl<S: StateMachine> Candidate<S> {
    /// The paper's order: largest last-normal-view, then largest op-number.
    fn rank(&self) -> (View, OpNumber) {
        (self.last_normal_view, self.log.op)
    }
}

impl<S: StateMachine> Default for ViewChangeCaches<S> {
    fn default() -> Self {
        ViewChangeCaches {
            start_view_change: BTreeSet::new(),
            do_view_change: BTreeSet::new(),
            best: None,
            commit_max: CommitNumber(0),
            fill: None,
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
            && self.fill.is_none()
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

    /// The committed entries fetched so far for the best log, once f + 1
    /// DoViewChange have counted and this replica lacks some.
    pub fn fill(&self) -> Option<&Fill<S>> {
        self.fill.as_ref()
    }

    /// The op-number the fill's entries follow: this replica's
    /// commit-number, or a fetched checkpoint's.
    pub(super) fn fill_base(&self, commit: CommitNumber) -> OpNumber {
        self.fill
            .as_ref()
            .and_then(|f| f.checkpoint.as_ref())
            .map_or(commit, |c| c.commit)
            .as_op()
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
                best.last_normal_view, best.log.op, self.commit_max
            )?;
        }
        if let Some(fill) = &self.fill {
            write!(f, " fill={fill:?}")?;
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
            log: self
                .log
                .suffix_for_message(self.commit, self.config.message_weight_max()),
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
        if dvc.last_normal_view >= dvc.view
            || !dvc.log.is_well_formed()
            || dvc.log.after > dvc.commit.as_op()
            || dvc.commit.as_op() > dvc.log.op
        {
            return Some("malformed: last-normal-view, log or commit-number out of range");
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
        if cache.do_view_change.len() >= self.config.quorum() {
            debug!(replica = ?self.id(), ?from, view = ?dvc.view, "DoViewChange after f + 1: the log is chosen already");
            return;
        }
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
            from: (dvc.log.after > self.commit.as_op()).then_some(from),
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

    /// primary(v) has f + 1 DoViewChange: it takes the best log. Entries up
    /// to its commit-number are committed, so its own log supplies any the
    /// best log's suffix leaves out; if the suffix starts beyond them, it
    /// first fetches the committed entries in between from the suffix's
    /// sender (paper 5.3: a smaller DoViewChange, and the new primary asks
    /// for more when it needs them).
    fn start_view(&mut self, effects: &mut Vec<Effect<S>>) {
        let best = self
            .view_change
            .best
            .as_ref()
            .expect("f + 1 DoViewChange offer a log");
        if best.log.after <= self.commit.as_op() {
            let log = self.log.with_suffix(best.log.clone());
            self.start_view_with(log, effects);
            return;
        }
        let source = best
            .from
            .expect("a suffix beyond the commit-number keeps its sender");
        debug_assert_ne!(
            source,
            self.id(),
            "this replica's own suffix starts within its commit-number"
        );
        info!(replica = ?self.id(), view = ?self.view, commit = ?self.commit, after = ?best.log.after, ?source, "the chosen log starts beyond this replica's commit-number: fetching the committed entries in between");
        self.view_change.fill = Some(Fill::default());
        self.fetch_committed(source, effects);
    }

    /// The op-number the fill holds up to.
    fn fill_held(&self) -> OpNumber {
        let base = self.view_change.fill_base(self.commit);
        let fetched = self
            .view_change
            .fill
            .as_ref()
            .map_or(0, |f| f.entries.len());
        OpNumber(base.0 + fetched as u64)
    }

    fn fetch_committed(&mut self, source: ReplicaId, effects: &mut Vec<Effect<S>>) {
        let get = GetState {
            view: self.view,
            op: self.fill_held(),
        };
        self.send(source, Message::GetState(get), effects);
    }

    /// The chosen log's sender had compacted the entries asked for and sent
    /// its checkpoint: the fill goes on from there.
    pub(super) fn fill_from_checkpoint(
        &mut self,
        checkpoint: Checkpoint<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let fill = self.view_change.fill.as_mut().expect("filling");
        fill.entries.clear();
        fill.checkpoint = Some(checkpoint);
        self.fill_progressed(effects);
    }

    /// NewState while primary(v) fills in the committed entries the chosen
    /// DoViewChange left out: they are appended in order, and once they reach
    /// the chosen suffix the view starts. Idempotent: entries already held,
    /// or from another replica, change nothing.
    pub(super) fn on_fill_state(
        &mut self,
        from: ReplicaId,
        new_state: NewState<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Some(best) = &self.view_change.best else {
            unreachable!("called while filling");
        };
        let (source, until) = (
            best.from
                .expect("a suffix beyond the commit-number keeps its sender"),
            best.log.after,
        );
        let held = self.fill_held();
        let reaches = new_state
            .after
            .0
            .saturating_add(new_state.entries.len() as u64);
        let reason = if from != source || new_state.view != self.view {
            Some("not from the chosen log's sender for this view")
        } else if reaches > new_state.commit.0 {
            Some("malformed: entries beyond the sender's commit-number")
        } else if new_state.after != held || new_state.entries.is_empty() {
            Some("nothing that follows what this replica holds")
        } else {
            None
        };
        if let Some(reason) = reason {
            debug!(replica = ?self.id(), ?from, after = ?new_state.after, reason, "ignore NewState");
            return;
        }
        let wanted = usize::try_from(until.0.saturating_sub(held.0)).unwrap_or(usize::MAX);
        let fill = self.view_change.fill.as_mut().expect("filling");
        fill.entries
            .extend(new_state.entries.into_iter().take(wanted));
        self.fill_progressed(effects);
    }

    /// The fill grew: ask for more, or, once it reaches the chosen suffix,
    /// assemble the view's log and start the view.
    fn fill_progressed(&mut self, effects: &mut Vec<Effect<S>>) {
        // Progress: a long fill may take more than one view-change timeout.
        effects.push(Effect::SetTimer(Timer::ViewChangeTimeout));
        let best = self.view_change.best.as_ref().expect("filling");
        let (source, until) = (
            best.from
                .expect("a suffix beyond the commit-number keeps its sender"),
            best.log.after,
        );
        if self.fill_held() < until {
            self.fetch_committed(source, effects);
            return;
        }
        let base = self.view_change.fill_base(self.commit);
        let fill = self.view_change.fill.take().expect("filling");
        let log = self.install_staged(fill.checkpoint, base, fill.entries);
        let best = self.view_change.best.as_ref().expect("filling");
        let log = log.with_suffix(best.log.clone());
        info!(replica = ?self.id(), view = ?self.view, "fetched the committed entries the chosen log left out");
        self.start_view_with(log, effects);
    }

    /// The view's log is whole: primary(v) takes the largest commit-number,
    /// enters Normal, sends StartView, executes what is committed and
    /// replies to its clients (paper 4.2 steps 3-4).
    fn start_view_with(&mut self, log: Log<S>, effects: &mut Vec<Effect<S>>) {
        let mut commit = self.view_change.commit_max.max(self.commit);
        if commit.as_op() > log.op_number() {
            // Only a faulty DoViewChange can claim commits beyond every log
            // offered; the entries it names are not here to execute.
            debug_assert!(
                self.config.is_wrong_variant(),
                "INV-PRIMARY-HAS-COMMITTED: commit {commit:?} beyond the chosen log {log:?}"
            );
            error!(replica = ?self.id(), ?commit, op = ?log.op_number(), "DoViewChange commit-number beyond the chosen log: not trusted");
            commit = log.op_number().as_commit().max(self.commit);
        }
        self.adopt_log(log, commit);
        let view = self.view;
        info!(replica = ?self.id(), ?view, op = ?self.op_number(), ?commit, "view started as primary");
        self.enter_view(view, Status::Normal, effects);
        let start = StartView {
            view,
            log: self
                .log
                .suffix_for_message(commit, self.config.message_weight_max()),
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
        self.log.agrees_with(log, committed)
    }

    /// Enters Normal status in `view` as a backup with `log`, the view's log
    /// (from StartView, recovery or a catch-up), executes up to `commit` and
    /// confirms to the primary with PrepareOk every entry beyond
    /// `primary_commit`, the commit-number the primary sent (paper 4.2 step
    /// 5). Not beyond this replica's own commit-number, which may be higher
    /// (an old primary's): the new primary counts PrepareOks to commit the
    /// entries it does not know are committed, and without this one it
    /// might never commit them (spec/protocol.md, "StartView"; LIVE-COMMIT).
    pub(super) fn begin_view_as_backup(
        &mut self,
        view: View,
        log: Log<S>,
        commit: CommitNumber,
        primary_commit: CommitNumber,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert!(primary_commit <= commit, "commit is at least the primary's");
        self.adopt_log(log, commit);
        info!(replica = ?self.id(), ?view, op = ?self.op_number(), ?commit, "view started as backup");
        self.enter_view(view, Status::Normal, effects);
        debug_assert!(!self.is_primary(), "a backup of {view:?}");
        self.commit_up_to(commit, effects);
        #[allow(unused_mut)]
        let mut confirmed = primary_commit;
        #[cfg(feature = "wrong-variants")]
        if self
            .config
            .has_bug(super::config::Bug::PrepareOkAgainstOwnCommit)
        {
            confirmed = self.commit;
        }
        if self.op_number() > confirmed.as_op() {
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
        if start.log.after > self.commit.as_op() {
            // Entries this replica lacks may be committed: fetch the view's log.
            self.catch_up_to_view(start.view, from, effects);
            return;
        }
        let log = self.log.with_suffix(start.log);
        let keeps = self.keeps_committed_prefix(&log);
        debug_assert!(
            keeps || self.config.is_wrong_variant(),
            "INV-AGREEMENT: StartView {log:?} drops entries {:?} committed",
            self.id()
        );
        if !keeps {
            debug!(replica = ?self.id(), ?from, view = ?start.view, "ignore StartView: the log differs from entries this replica committed");
            return;
        }
        let commit = start.commit.max(self.commit);
        self.begin_view_as_backup(start.view, log, commit, start.commit, effects);
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
        if !start.log.is_well_formed()
            || start.log.after > start.commit.as_op()
            || start.commit.as_op() > start.log.op
        {
            return Some("malformed: log or commit-number out of range");
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
