//! The `Replica` record, its constructors, and `step`: the one entry point.
//!
//! Every input arrives through [`Replica::step`], which looks at the replica's
//! status, then dispatches on the message type to the handler in the module of
//! its sub-protocol: [`normal`](super::normal), [`view_change`](super::view_change),
//! [`recovery`](super::recovery), [`state_transfer`](super::state_transfer) and
//! [`delivery`](super::delivery).

use super::checkpoint::{Checkpoint, Restore};
use super::client_table::ClientTable;
use super::config::Config;
use super::delivery::Delivery;
use super::durable::DurableMark;
use super::io::{Effect, Input, Timer};
use super::log::Log;
use super::message::{Envelope, Message, Recovery};
use super::recovery::RecoveryProgress;
use super::state_machine::StateMachine;
use super::state_transfer::CatchUp;
use super::types::{CommitNumber, Nonce, OpNumber, ReplicaId, View};
use super::view_change::ViewChangeCaches;
use litemap::LiteMap;
use std::fmt;
use tracing::debug;

/// A replica's status (paper 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Taking part in normal operation in its view.
    Normal,
    /// Changing to its view; accepts no Prepare.
    ViewChange,
    /// Restarted without its state; takes part in nothing until it recovers.
    Recovering,
}

/// Everything one replica knows. Nothing else in the process holds protocol
/// state, so the record can be cloned, compared and hashed by the model
/// checker and snapshotted by the simulator.
///
/// Invariants (checked after every step in debug builds, see
/// [`Replica::check_invariants`]):
/// - commit-number <= op-number, and every entry up to the commit-number has
///   been executed, in order, exactly once.
/// - last-normal-view <= view-number, equal when the status is Normal.
/// - last-normal-view < view-number while the status is ViewChange.
/// - the view-change caches, and a catch-up, exist only while the status is
///   ViewChange; a catch-up's staged entries follow the commit-number.
/// - `prepare_oks` is empty unless this replica is the primary in Normal status,
///   and no value in it exceeds the op-number.
/// - `recovery` is `Some` exactly when the status is Recovering.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Replica<S: StateMachine> {
    pub(super) config: Config,
    pub(super) status: Status,
    /// The view-number.
    pub(super) view: View,
    /// The log; its length is the op-number.
    pub(super) log: Log<S>,
    /// The commit-number. Every entry up to it has been executed.
    pub(super) commit: CommitNumber,
    /// The latest view in which the status was Normal (the paper's v').
    pub(super) last_normal_view: View,
    /// Per client session: its latest executed request and that request's
    /// output; at most `config.client_table_max()` rows.
    pub(super) client_table: ClientTable<S>,
    /// Primary only: the highest op-number each backup has PrepareOk'd in this
    /// view. A backup's PrepareOk(n) covers every entry up to n, since backups
    /// accept Prepares in order.
    pub(super) prepare_oks: LiteMap<ReplicaId, OpNumber>,
    /// The de-duplication caches of the view change under way.
    pub(super) view_change: ViewChangeCaches<S>,
    /// The recovery under way, while Recovering.
    pub(super) recovery: Option<RecoveryProgress<S>>,
    /// The catch-up to a view that started without this replica, while in
    /// ViewChange status in that view.
    pub(super) catch_up: Option<CatchUp<S>>,
    /// Unconfirmed messages and peer connectivity.
    pub(super) delivery: Delivery<S>,
    /// The application, with every committed operation applied.
    pub(super) app: S,
    /// The latest checkpoint: the state at its commit-number, standing for
    /// the log entries discarded (paper 5.1). None until one is taken or
    /// fetched.
    pub(super) checkpoint: Option<Checkpoint<S>>,
    /// A checkpoint being fetched in place of entries another replica
    /// discarded.
    pub(super) restore: Option<Restore<S>>,
}

impl<S: StateMachine> Replica<S> {
    /// A replica starting for the first time: Normal in view 0, empty log.
    /// Pushes the effects of starting (its first timer) onto `effects`.
    /// Its first effects make its initial (empty) state durable.
    pub fn new(config: Config, effects: &mut Vec<Effect<S>>) -> Replica<S> {
        let mut replica = Replica::blank(config, Status::Normal, None);
        let start = effects.len();
        if replica.is_primary() {
            effects.push(Effect::SetTimer(Timer::Heartbeat));
        } else {
            effects.push(Effect::SetTimer(Timer::PrimaryTimeout));
        }
        replica.persist_changes(DurableMark::nothing(), start, effects);
        replica
    }

    /// A replica restarting after a crash, with nothing of its earlier state
    /// (paper 4.3): it starts Recovering and sends Recovery with `nonce` to
    /// every other replica. The nonce must differ from any it used before;
    /// the driver supplies it so that the core stays deterministic.
    pub fn restart(config: Config, nonce: Nonce, effects: &mut Vec<Effect<S>>) -> Replica<S> {
        let mut replica = Replica::blank(
            config,
            Status::Recovering,
            Some(RecoveryProgress::new(nonce)),
        );
        replica.log.take_unpersisted();
        replica.broadcast(Message::Recovery(Recovery { nonce }), effects);
        effects.push(Effect::SetTimer(Timer::RecoveryRetry));
        replica
    }

    pub(super) fn blank(
        config: Config,
        status: Status,
        recovery: Option<RecoveryProgress<S>>,
    ) -> Replica<S> {
        Replica {
            config,
            status,
            view: View(0),
            log: Log::default(),
            commit: CommitNumber(0),
            last_normal_view: View(0),
            client_table: ClientTable::default(),
            prepare_oks: LiteMap::new(),
            view_change: ViewChangeCaches::default(),
            recovery,
            catch_up: None,
            delivery: Delivery::default(),
            app: S::default(),
            checkpoint: None,
            restore: None,
        }
    }

    /// Handles one input, pushing what the driver must do onto `effects`.
    ///
    /// An input the replica ignores leaves it unchanged and pushes nothing,
    /// with two exceptions, both of the delivery layer, which confirms
    /// reception, not acceptance: every envelope but an Ack is acknowledged,
    /// and any envelope marks its sender connected again.
    pub fn step(&mut self, input: Input<S>, effects: &mut Vec<Effect<S>>) {
        let (mark, start) = (self.durable_mark(), effects.len());
        match input {
            Input::Deliver(envelope) => self.on_envelope(envelope, effects),
            Input::Request(request) => self.on_requests(vec![request], effects),
            Input::Requests(requests) => self.on_requests(requests, effects),
            Input::Timeout(timer) => self.on_timeout(timer, effects),
        }
        // What must be durable goes before what depends on it
        // (spec/protocol.md, "Durability").
        self.persist_changes(mark, start, effects);
        #[cfg(debug_assertions)]
        if !self.config.is_wrong_variant()
            && let Err(violation) = self.check_invariants()
        {
            panic!("{violation}");
        }
    }

    fn on_envelope(&mut self, envelope: Envelope<S>, effects: &mut Vec<Effect<S>>) {
        let Envelope { from, id, msg } = envelope;
        if !self.config.contains(from) || from == self.config.id() {
            debug!(replica = ?self.id(), ?from, "ignore envelope: sender is not another replica of the cluster");
            return;
        }
        if !msg.numbers_in_range() {
            debug!(replica = ?self.id(), ?from, msg = msg.name(), "ignore envelope: malformed: a view-, op- or commit-number above NUMBER_MAX");
            return;
        }
        self.heard_from(from);
        if let Message::Ack(_) = msg {
            self.on_ack(from, id, effects);
            return;
        }
        self.acknowledge(from, id, effects);
        if self.status == Status::Recovering {
            match msg {
                Message::RecoveryResponse(m) => self.on_recovery_response(from, m, effects),
                Message::NewState(m) if self.catch_up.is_some() => {
                    self.on_new_state(from, m, effects)
                }
                Message::NewCheckpoint(m) if self.catch_up.is_some() => {
                    self.on_new_checkpoint(from, m, effects)
                }
                other => debug!(replica = ?self.id(), msg = other.name(), "ignore: recovering"),
            }
            return;
        }
        match msg {
            Message::Prepare(m) => self.on_prepare(from, m, effects),
            Message::PrepareOk(m) => self.on_prepare_ok(from, m, effects),
            Message::Commit(m) => self.on_commit(from, m, effects),
            Message::StartViewChange(m) => self.on_start_view_change(from, m, effects),
            Message::DoViewChange(m) => self.on_do_view_change(from, m, effects),
            Message::StartView(m) => self.on_start_view(from, m, effects),
            Message::Recovery(m) => self.on_recovery(from, m, effects),
            Message::GetState(m) => self.on_get_state(from, m, effects),
            Message::NewState(m) => self.on_new_state(from, m, effects),
            Message::GetCheckpoint(m) => self.on_get_checkpoint(from, m, effects),
            Message::NewCheckpoint(m) => self.on_new_checkpoint(from, m, effects),
            Message::RecoveryResponse(_) => {
                debug!(replica = ?self.id(), "ignore RecoveryResponse: not recovering")
            }
            Message::Request(_) | Message::Reply(_) => {
                debug!(replica = ?self.id(), "ignore client message inside a replica envelope")
            }
            Message::Ack(_) => unreachable!("handled above"),
        }
    }

    fn on_timeout(&mut self, timer: Timer, effects: &mut Vec<Effect<S>>) {
        match timer {
            Timer::Heartbeat => self.on_heartbeat_timeout(effects),
            Timer::PrimaryTimeout => self.on_primary_timeout(effects),
            Timer::ViewChangeTimeout => self.on_view_change_timeout(effects),
            Timer::Resend => self.on_resend_timeout(effects),
            Timer::RecoveryRetry => self.on_recovery_retry_timeout(effects),
        }
    }

    /// Executes every entry up to `commit` that is not yet executed, in order,
    /// and, as primary, replies to each entry's client (paper 4.1 steps 5, 7):
    /// a Register's client gets its session id, and the client of an entry
    /// whose session was pruned since it was admitted gets SessionExpired.
    pub(super) fn commit_up_to(&mut self, commit: CommitNumber, effects: &mut Vec<Effect<S>>) {
        debug_assert!(
            self.config.is_wrong_variant() || commit.as_op() <= self.op_number(),
            "INV-COMMIT-LE-OP: commit {commit:?} beyond op {:?}",
            self.op_number()
        );
        let replying = self.status == Status::Normal && self.is_primary();
        while self.commit < commit {
            let op = self.commit.as_op().next();
            let entry = self.log.get(op).expect("entries up to the op-number exist");
            let (client, request) = (entry.client, entry.request);
            let output = self
                .client_table
                .execute(&mut self.app, op, entry, self.config.client_table_max())
                .unwrap_or_else(|stored| {
                    debug_assert!(
                        self.config.is_wrong_variant(),
                        "INV-EXECUTED-ONCE: {client:?} {request:?} is in the log twice"
                    );
                    stored
                });
            self.commit = op.as_commit();
            if replying {
                effects.push(Effect::Reply(super::message::Reply {
                    view: self.view,
                    client,
                    request,
                    output,
                }));
            }
        }
        self.checkpoint_if_due();
    }

    /// Replaces the view-dependent bookkeeping on entering `view` with `status`:
    /// caches and PrepareOk counts belong to one view, and messages of older
    /// views need no more resending.
    pub(super) fn enter_view(&mut self, view: View, status: Status, effects: &mut Vec<Effect<S>>) {
        debug_assert!(view >= self.view, "views only grow");
        self.view = view;
        self.status = status;
        if status == Status::Normal {
            self.last_normal_view = view;
        }
        self.view_change.clear();
        self.prepare_oks.clear();
        self.catch_up = None;
        self.restore = None;
        self.forget_older_views(view, effects);
        let (set, cancel): (&[Timer], &[Timer]) = match status {
            Status::ViewChange => (
                &[Timer::ViewChangeTimeout],
                &[Timer::Heartbeat, Timer::PrimaryTimeout],
            ),
            Status::Normal if self.is_primary() => (
                &[Timer::Heartbeat],
                &[Timer::PrimaryTimeout, Timer::ViewChangeTimeout],
            ),
            Status::Normal => (
                &[Timer::PrimaryTimeout],
                &[Timer::Heartbeat, Timer::ViewChangeTimeout],
            ),
            Status::Recovering => unreachable!("no replica enters Recovering but by restarting"),
        };
        effects.extend(cancel.iter().map(|&t| Effect::CancelTimer(t)));
        effects.extend(set.iter().map(|&t| Effect::SetTimer(t)));
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.config.id()
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Its view-number.
    pub fn view(&self) -> View {
        self.view
    }

    /// Its op-number: the op-number of its latest log entry.
    pub fn op_number(&self) -> OpNumber {
        self.log.op_number()
    }

    /// Its commit-number.
    pub fn commit_number(&self) -> CommitNumber {
        self.commit
    }

    /// Its latest checkpoint.
    pub fn checkpoint(&self) -> Option<&Checkpoint<S>> {
        self.checkpoint.as_ref()
    }

    /// The checkpoint it is fetching, if any.
    pub fn restore(&self) -> Option<&Restore<S>> {
        self.restore.as_ref()
    }

    /// Its log.
    pub fn log(&self) -> &Log<S> {
        &self.log
    }

    /// The latest view in which its status was Normal.
    pub fn last_normal_view(&self) -> View {
        self.last_normal_view
    }

    /// Its client table.
    pub fn client_table(&self) -> &ClientTable<S> {
        &self.client_table
    }

    /// The view-change caches.
    pub fn view_change_caches(&self) -> &ViewChangeCaches<S> {
        &self.view_change
    }

    /// Unconfirmed messages and peer connectivity.
    pub fn delivery(&self) -> &Delivery<S> {
        &self.delivery
    }

    /// The recovery under way, if Recovering.
    pub fn recovery(&self) -> Option<&RecoveryProgress<S>> {
        self.recovery.as_ref()
    }

    /// The catch-up to a newer view under way, if any.
    pub fn catch_up(&self) -> Option<&CatchUp<S>> {
        self.catch_up.as_ref()
    }

    /// The application state: every committed operation applied in order.
    pub fn app(&self) -> &S {
        &self.app
    }

    /// primary(v) for this replica's view.
    pub fn primary(&self) -> ReplicaId {
        self.config.primary(self.view)
    }

    /// Whether this replica is the primary of its view (whatever its status).
    pub fn is_primary(&self) -> bool {
        self.primary() == self.id()
    }
}

impl<S: StateMachine> fmt::Debug for Replica<S> {
    /// One line: what the explorer and a failing trace show of a replica.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} {:?} {:?} {:?} log={:?}",
            self.id(),
            self.status,
            self.view,
            self.op_number(),
            self.commit,
            self.log
        )?;
        if !self.view_change.is_empty() {
            write!(f, " {:?}", self.view_change)?;
        }
        if let Some(recovery) = &self.recovery {
            write!(f, " {recovery:?}")?;
        }
        if let Some(catch_up) = &self.catch_up {
            write!(f, " {catch_up:?}")?;
        }
        if !self.delivery.is_idle() {
            write!(f, " {:?}", self.delivery)?;
        }
        Ok(())
    }
}
