//! The progress properties (spec/invariants.md, "Progress"), written once as
//! pure functions of a cluster's state and named by their ids.
//!
//! stateright's `eventually` is unsound for this model: its runs are bounded,
//! they may cycle (a heartbeat that changes nothing returns to the same
//! state), and an unfair path (the same timer firing for ever) is as much a
//! path as any. So progress is checked the way one argues it: from a state,
//! let the network become synchronous — every message in flight is
//! delivered, none is lost or duplicated, nothing crashes — and let time pass
//! only through the timers a live, healthy cluster relies on. That
//! continuation is deterministic, so the check is a pure function of the
//! state and can be an `always` property: a state from which even a
//! synchronous, fault-free continuation makes no progress is a liveness bug.
//!
//! - LIVE-COMMIT: a primary that is Normal in the newest view, with a quorum
//!   of replicas up and not recovering, commits every entry in its log using
//!   only Heartbeat, Resend and RecoveryRetry: no failure detector (primary
//!   or view-change timeout) needs to fire.
//!   The Resend timer is a failure detector too, on its last expiry: a
//!   backup whose message to its primary has spent its attempts counts the
//!   primary disconnected and starts a view change (spec/protocol.md,
//!   "Disconnection"). So LIVE-COMMIT claims nothing once a backup of the
//!   primary's view holds a message to it on its last attempt: losses before
//!   the network turned synchronous have already run that detector down, and
//!   what follows is LIVE-VIEW's claim.
//! - LIVE-VIEW: with a quorum of replicas up and not recovering, a view forms
//!   and its primary commits every entry it holds, once the primary and
//!   view-change timeouts may fire as well: a failed primary, or a failed
//!   next primary, never stalls the cluster.
//! - LIVE-JOIN: under LIVE-COMMIT's conditions, every replica that is up
//!   becomes Normal in the primary's view with the same timers alone: a
//!   replica left behind (an older view, a view change it missed, a
//!   recovery) catches up from the primary's messages, and needs no failure
//!   detector to rejoin.
//!
//! The simulator and the real-process tests check the same claims on their
//! own runs (the simulator's settle phase).

use crate::driver::Driver;
use vr::core::{MessageId, Replica, ReplicaId, StateMachine, Status, Timer, View};

/// A cluster as the progress checks see it: each replica (`None` while
/// crashed) with the timers it has set, and the replica messages in flight.
pub type Snapshot<S> = Driver<S>;

/// LIVE-COMMIT's id.
pub const LIVE_COMMIT: &str = "LIVE-COMMIT";
/// LIVE-VIEW's id.
pub const LIVE_VIEW: &str = "LIVE-VIEW";

/// LIVE-JOIN's id.
pub const LIVE_JOIN: &str = "LIVE-JOIN";

/// The ids of the progress properties.
pub const IDS: [&str; 3] = [LIVE_COMMIT, LIVE_VIEW, LIVE_JOIN];

/// Synchronous rounds a continuation may take. Each round delivers every
/// message, then lets one period of each timer allowed pass. A recovery, a
/// state transfer or a view change each take a round or two; a run of
/// failed next primaries (at most f in a row) one view change each.
fn rounds(replica_count: usize, attempts_max: u8) -> usize {
    4 * (replica_count + 2) + 2 * usize::from(attempts_max)
}

impl<S: StateMachine> Driver<S> {
    fn quorum(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    fn healthy(&self) -> usize {
        self.replicas
            .iter()
            .flatten()
            .filter(|r| r.status() != Status::Recovering)
            .count()
    }

    /// The newest view of any replica that is up or of any message in flight.
    fn newest_view(&self) -> View {
        let replicas = self.replicas.iter().flatten().map(|r| r.view());
        let messages = self.in_flight.iter().filter_map(|(_, e)| e.msg.view());
        replicas.chain(messages).max().unwrap_or_default()
    }

    /// The primary that is Normal in the newest view, if it is up.
    fn leader(&self) -> Option<&Replica<S>> {
        let view = self.newest_view();
        self.replicas
            .iter()
            .flatten()
            .find(|r| r.status() == Status::Normal && r.view() == view && r.is_primary())
    }

    /// Whether a backup in `leader`'s view holds a message to it on its last
    /// attempt, with neither a copy nor its Ack in flight: that backup's next
    /// Resend expiry counts its primary disconnected and starts a view
    /// change, a failure detector firing (spec/protocol.md, "Disconnection").
    fn leader_due_to_be_suspected(&self, leader: &Replica<S>) -> bool {
        let in_flight = |id: MessageId| self.in_flight.iter().any(|(_, e)| e.id == id);
        self.replicas.iter().flatten().any(|r| {
            r.id() != leader.id()
                && r.status() != Status::Recovering
                && r.view() == leader.view()
                && r.delivery().unconfirmed().iter().any(|(&id, u)| {
                    u.to == leader.id() && u.attempts >= r.config().attempts_max() && !in_flight(id)
                })
        })
    }

    /// The primary LIVE-COMMIT and LIVE-JOIN make their claims of: Normal in
    /// the newest view, with a quorum of replicas up and not recovering, and
    /// no backup of its view due to suspect it.
    fn claimed_leader(&self) -> Option<&Replica<S>> {
        let leader = self.leader()?;
        (self.healthy() >= self.quorum() && !self.leader_due_to_be_suspected(leader))
            .then_some(leader)
    }

    /// Whether every replica that is up is Normal in a leader's view.
    fn joined(&self) -> bool {
        let Some(view) = self.leader().map(Replica::view) else {
            return false;
        };
        self.replicas
            .iter()
            .flatten()
            .all(|r| r.status() == Status::Normal && r.view() == view)
    }

    /// Whether a leader holds every entry it had as `target` committed.
    fn committed(&self, target: Option<(ReplicaId, View, vr::core::OpNumber)>) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let committed = leader.commit_number().as_op() == leader.op_number();
        match target {
            // The same primary in the same view: everything it held then.
            Some((id, view, op)) if id == leader.id() && view == leader.view() => {
                leader.commit_number().as_op() >= op
            }
            _ => committed,
        }
    }

    /// Whether the leader, `target`'s primary, sent a Reply for each entry it
    /// executed after op-number `executed` up to `target`'s op-number (paper
    /// 4.1 step 5: the primary answers the client of each entry it executes).
    fn replied_to_each(
        &self,
        target: (ReplicaId, View, vr::core::OpNumber),
        executed: vr::core::OpNumber,
    ) -> Result<(), String> {
        let Some(leader) = self.leader() else {
            return Err("no leader after the continuation".into());
        };
        let mut op = executed;
        while op < target.2 {
            op = op.next();
            let Some(entry) = leader.log().get(op) else {
                // Compacted behind a checkpoint: executed, not checked here.
                continue;
            };
            let answered = self
                .replied
                .iter()
                .any(|&(from, c, r)| from == target.0 && c == entry.client && r == entry.request);
            if !answered {
                return Err(format!(
                    "primary {:?} of {:?} executed op {op:?} ({:?} {:?}) and sent its client no Reply:\n{}",
                    target.0,
                    target.1,
                    entry.client,
                    entry.request,
                    self.describe()
                ));
            }
        }
        Ok(())
    }

    /// Runs the synchronous continuation until `done`, allowing the failure
    /// detectors' timers only if `failure_detectors`. Returns whether `done`
    /// held within the bound.
    fn continue_until(&mut self, failure_detectors: bool, done: impl Fn(&Self) -> bool) -> bool {
        let attempts_max = self
            .replicas
            .iter()
            .flatten()
            .map(|r| r.config().attempts_max())
            .max()
            .unwrap_or(1);
        for round in 0..rounds(self.replicas.len(), attempts_max) {
            self.deliver_all();
            if done(self) {
                return true;
            }
            for timer in [Timer::Resend, Timer::Heartbeat, Timer::RecoveryRetry] {
                self.fire_everywhere(timer);
            }
            if done(self) {
                return true;
            }
            // Failure detectors fire only when the cheaper timers did not
            // help: every other round, the way a real timeout is longer than
            // a heartbeat or a resend.
            if failure_detectors && round % 2 == 1 && self.leader().is_none() {
                self.fire_everywhere(Timer::ViewChangeTimeout);
                if self.leader().is_none() {
                    self.fire_everywhere(Timer::PrimaryTimeout);
                }
            }
        }
        done(self)
    }
}

/// LIVE-COMMIT over `snapshot`: vacuously true unless a primary is Normal in
/// the newest view with a quorum of replicas up and not recovering, and no
/// backup of its view is due to suspect it (its Resend timer's last expiry is
/// a failure detector, which LIVE-COMMIT does not let fire).
pub fn live_commit<S: StateMachine>(snapshot: &Snapshot<S>) -> Result<(), String> {
    let Some(leader) = snapshot.claimed_leader() else {
        return Ok(());
    };
    let target = (leader.id(), leader.view(), leader.op_number());
    let executed = leader.commit_number().as_op();
    let mut run = snapshot.clone();
    run.replied.clear();
    if run.continue_until(false, |s| s.committed(Some(target))) {
        return run.replied_to_each(target, executed);
    }
    Err(format!(
        "primary {:?} of {:?} held entries up to {:?} and, with a quorum up, a synchronous network and its heartbeats, did not commit them:\n{}",
        target.0,
        target.1,
        target.2,
        run.describe()
    ))
}

/// LIVE-VIEW over `snapshot`: vacuously true unless a quorum of replicas is
/// up and not recovering.
pub fn live_view<S: StateMachine>(snapshot: &Snapshot<S>) -> Result<(), String> {
    if snapshot.healthy() < snapshot.quorum() {
        return Ok(());
    }
    let mut run = snapshot.clone();
    if run.continue_until(true, |s| s.committed(None)) {
        return Ok(());
    }
    Err(format!(
        "with a quorum up and a synchronous network, no primary formed a view and committed what it held:\n{}",
        run.describe()
    ))
}

/// LIVE-JOIN over `snapshot`: vacuously true where LIVE-COMMIT is, and
/// where every replica that is up is Normal in the primary's view already.
pub fn live_join<S: StateMachine>(snapshot: &Snapshot<S>) -> Result<(), String> {
    let Some(leader) = snapshot.claimed_leader() else {
        return Ok(());
    };
    if snapshot.joined() {
        return Ok(());
    }
    let (id, view) = (leader.id(), leader.view());
    let mut run = snapshot.clone();
    if run.continue_until(false, Snapshot::joined) {
        return Ok(());
    }
    Err(format!(
        "primary {id:?} of {view:?} had a quorum, and with a synchronous network and the heartbeats some replica that was up did not become Normal in its view:\n{}",
        run.describe()
    ))
}

/// Checks the progress property `id`.
pub fn check<S: StateMachine>(id: &str, snapshot: &Snapshot<S>) -> Result<(), String> {
    match id {
        LIVE_COMMIT => live_commit(snapshot),
        LIVE_VIEW => live_view(snapshot),
        LIVE_JOIN => live_join(snapshot),
        other => panic!("no progress property is named {other}"),
    }
}
