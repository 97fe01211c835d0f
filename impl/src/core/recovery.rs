//! Recovery (paper 4.3; spec/protocol.md, "Recovery"): a replica that restarted
//! without its state learns it from the others before taking part again.

use super::io::{Effect, Timer};
use super::log::Log;
use super::message::{Message, PrimaryState, Recovery, RecoveryResponse};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{CommitNumber, Nonce, OpNumber, ReplicaId, View};
use std::collections::BTreeMap;
use std::fmt;
use tracing::{debug, info};

/// What a recovering replica has gathered so far.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecoveryProgress<S: StateMachine> {
    /// This recovery's nonce; answers carrying another are ignored.
    nonce: Nonce,
    /// Per replica that answered, the latest view it answered from. Its
    /// size is the number of distinct answers.
    responses: BTreeMap<ReplicaId, View>,
    /// The answer of the primary of the latest view among those answers.
    primary: Option<(View, PrimaryState<S>)>,
}

impl<S: StateMachine> RecoveryProgress<S> {
    pub(super) fn new(nonce: Nonce) -> RecoveryProgress<S> {
        RecoveryProgress {
            nonce,
            responses: BTreeMap::new(),
            primary: None,
        }
    }

    /// The replicas that have answered, with the view each answered from.
    pub fn responses(&self) -> &BTreeMap<ReplicaId, View> {
        &self.responses
    }

    /// The latest view any answer came from.
    fn latest_view(&self) -> Option<View> {
        self.responses.values().copied().max()
    }

    /// The primary's state, once f + 1 replicas answered and the primary of
    /// the latest view they answered from is among them (paper 4.3 step 3).
    fn complete(&self, quorum: usize) -> Option<(View, &PrimaryState<S>)> {
        let (view, state) = self.primary.as_ref()?;
        (self.responses.len() >= quorum && Some(*view) == self.latest_view())
            .then_some((*view, state))
    }
}

impl<S: StateMachine> fmt::Debug for RecoveryProgress<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recovery({:?} answers={:?}", self.nonce, self.responses)?;
        if let Some((view, _)) = &self.primary {
            write!(f, " primary_of={view:?}")?;
        }
        write!(f, ")")
    }
}

impl<S: StateMachine> Replica<S> {
    /// Recovery (paper 4.3 step 2): only a replica in Normal status answers;
    /// the primary adds its log and commit-number. Idempotent: it changes
    /// nothing here, and the recovering replica counts each replica once.
    pub(super) fn on_recovery(
        &mut self,
        from: ReplicaId,
        recovery: Recovery,
        effects: &mut Vec<Effect<S>>,
    ) {
        if self.status != Status::Normal {
            debug!(replica = ?self.id(), ?from, "ignore Recovery: not in Normal status");
            return;
        }
        let primary = self.is_primary().then(|| PrimaryState {
            log: self
                .log
                .suffix_for_message(self.commit, self.config.message_weight_max()),
            commit: self.commit,
        });
        let response = RecoveryResponse {
            view: self.view,
            nonce: recovery.nonce,
            primary,
        };
        self.send(from, Message::RecoveryResponse(response), effects);
    }

    /// RecoveryResponse (paper 4.3 step 3): the recovering replica counts each
    /// answer with its nonce once per replica; with f + 1 answers including
    /// one from the primary of the latest view among them, it takes that
    /// primary's log, executes what is committed and becomes a backup.
    pub(super) fn on_recovery_response(
        &mut self,
        from: ReplicaId,
        response: RecoveryResponse<S>,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert_eq!(self.status, Status::Recovering);
        let progress = self
            .recovery
            .as_mut()
            .expect("Recovering replicas have progress");
        if response.nonce != progress.nonce {
            debug!(replica = ?self.id(), ?from, nonce = ?response.nonce, "ignore RecoveryResponse: another recovery's nonce");
            return;
        }
        if let Some(state) = &response.primary
            && (from != self.config.primary(response.view)
                || !state.log.is_well_formed()
                || state.log.after > state.commit.as_op()
                || state.commit.as_op() > state.log.op)
        {
            debug!(replica = ?self.id(), ?from, "ignore RecoveryResponse: malformed primary state");
            return;
        }
        let newer_primary = response.primary.is_some()
            && progress
                .primary
                .as_ref()
                .is_none_or(|(v, _)| *v < response.view);
        let previous = progress.responses.get(&from).copied();
        if previous.is_some_and(|v| v >= response.view) && !newer_primary {
            debug!(replica = ?self.id(), ?from, view = ?response.view, "duplicate RecoveryResponse: nothing new");
            return;
        }
        progress.responses.insert(
            from,
            previous.map_or(response.view, |v| v.max(response.view)),
        );
        if let Some(state) = response.primary.filter(|_| newer_primary) {
            progress.primary = Some((response.view, state));
        }
        if let Some((view, state)) = progress.complete(self.config.quorum()) {
            if state.log.after == OpNumber(0) {
                let (log, commit) = (Log::default().with_suffix(state.log.clone()), state.commit);
                self.finish_recovery(view, log, commit, effects);
            } else {
                self.recover_by_state_transfer(view, effects);
            }
        }
    }

    pub(super) fn finish_recovery(
        &mut self,
        view: View,
        log: Log<S>,
        commit: CommitNumber,
        effects: &mut Vec<Effect<S>>,
    ) {
        info!(replica = ?self.id(), ?view, op = ?log.op_number(), ?commit, "recovered");
        self.recovery = None;
        effects.push(Effect::CancelTimer(Timer::RecoveryRetry));
        // A recovering replica held nothing: its commit-number is the
        // primary's.
        self.begin_view_as_backup(view, log, commit, commit, effects);
    }

    /// Recovery-retry timer: too few answers came; ask everyone again with the
    /// same nonce, so answers to either round count.
    pub(super) fn on_recovery_retry_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        let Some(progress) = &self.recovery else {
            debug!(replica = ?self.id(), "ignore RecoveryRetry timeout: not recovering");
            return;
        };
        let nonce = progress.nonce;
        if self.catch_up.is_some() {
            // The state transfer may have stalled: ask the primary again.
            self.recover_by_state_transfer(self.view, effects);
        }
        self.broadcast(Message::Recovery(Recovery { nonce }), effects);
        effects.push(Effect::SetTimer(Timer::RecoveryRetry));
    }
}
