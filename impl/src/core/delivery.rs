//! The delivery layer, generalized once for every replica-to-replica message
//! (spec/protocol.md, "Delivery"): the receiver confirms each message with an
//! Ack naming its id; the sender resends an unconfirmed message on the Resend
//! timer, up to `attempts_max` attempts in all; after the last unconfirmed
//! attempt it counts the receiver as disconnected and the protocol reacts.
//! Hearing anything from a peer counts it as connected again.
//!
//! The layer does not de-duplicate: receivers expect duplicates, and each
//! handler is idempotent or keeps its own cache.

use super::config::Config;
use super::io::{Effect, Timer};
use super::message::{Ack, Envelope, Message};
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::{MessageId, ReplicaId, View};
use litemap::LiteMap;
use std::collections::BTreeSet;
use std::fmt;
use tracing::{debug, info, warn};

/// A message awaiting its Ack.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Unconfirmed<S: StateMachine> {
    /// The receiver.
    pub to: ReplicaId,
    /// Sends so far, the first included: 1 ..= attempts_max.
    pub attempts: u8,
    /// The message, to send again.
    pub msg: Message<S>,
}

/// The delivery table and what it has learned about peers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Delivery<S: StateMachine> {
    /// Messages sent and not yet confirmed, by id. A few at a time: a sorted
    /// vector, which the model checker clones and hashes cheaply.
    unconfirmed: LiteMap<MessageId, Unconfirmed<S>>,
    /// Peers whose last message ran out of attempts and that have not been
    /// heard from since.
    disconnected: BTreeSet<ReplicaId>,
}

impl<S: StateMachine> Default for Delivery<S> {
    fn default() -> Self {
        Delivery {
            unconfirmed: LiteMap::new(),
            disconnected: BTreeSet::new(),
        }
    }
}

impl<S: StateMachine> Delivery<S> {
    /// Messages awaiting an Ack, by id.
    pub fn unconfirmed(&self) -> &LiteMap<MessageId, Unconfirmed<S>> {
        &self.unconfirmed
    }

    /// Peers currently counted as disconnected.
    pub fn disconnected(&self) -> &BTreeSet<ReplicaId> {
        &self.disconnected
    }

    /// Whether `peer` counts as connected.
    pub fn is_connected(&self, peer: ReplicaId) -> bool {
        !self.disconnected.contains(&peer)
    }

    /// Nothing to resend and every peer connected.
    pub fn is_idle(&self) -> bool {
        self.unconfirmed.is_empty() && self.disconnected.is_empty()
    }

    /// INV-DELIVERY-BOUNDED, for one replica in `view`, `recovering` or
    /// not.
    pub(super) fn check(
        &self,
        config: &Config,
        view: View,
        recovering: bool,
    ) -> Result<(), String> {
        for (id, u) in self.unconfirmed.iter() {
            // Entering a view forgets older views' messages and the
            // Recovery messages (`forget_older_views`); a recovering
            // replica's view is the one it fetches from, not one it entered.
            // NewState and NewCheckpoint carry the asker's view, which may
            // be older: primary(v) filling in, or a replica recovering.
            let reply = matches!(u.msg, Message::NewState(_) | Message::NewCheckpoint(_));
            if !recovering {
                if !reply && u.msg.view().is_some_and(|v| v < view) {
                    return Err(format!(
                        "{id:?} ({}) of an older view than {view:?}",
                        u.msg.name()
                    ));
                }
                if matches!(u.msg, Message::Recovery(_)) {
                    return Err(format!(
                        "{id:?} is a Recovery, but the replica is not recovering"
                    ));
                }
            }
            if *id != MessageId::of(u.to, &u.msg) {
                return Err(format!("unconfirmed {id:?} is not the id of its content"));
            }
            if !(1..=config.attempts_max()).contains(&u.attempts) {
                return Err(format!(
                    "{id:?} at attempt {} of {}",
                    u.attempts,
                    config.attempts_max()
                ));
            }
            if u.to == config.id() || !config.contains(u.to) {
                return Err(format!("{id:?} addressed to {:?}", u.to));
            }
            if matches!(u.msg, Message::Ack(_)) {
                return Err(format!("{id:?} is an Ack awaiting confirmation"));
            }
        }
        if self.disconnected.contains(&config.id()) {
            return Err("the replica counts itself disconnected".into());
        }
        Ok(())
    }
}

impl<S: StateMachine> fmt::Debug for Delivery<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unconfirmed=[")?;
        for (i, (id, u)) in self.unconfirmed.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{id:?}->{:?} {}x{}", u.to, u.msg.name(), u.attempts)?;
        }
        write!(f, "]")?;
        if !self.disconnected.is_empty() {
            write!(f, " disconnected={:?}", self.disconnected)?;
        }
        Ok(())
    }
}

impl<S: StateMachine> Replica<S> {
    /// Sends `msg` to `to` and keeps it until confirmed. The id is derived
    /// from the receiver and the content, so sending content that is already
    /// unconfirmed adds nothing: that message is on its way, with its attempts.
    pub(super) fn send(&mut self, to: ReplicaId, msg: Message<S>, effects: &mut Vec<Effect<S>>) {
        debug_assert!(to != self.id(), "a replica never sends to itself");
        debug_assert!(
            !matches!(msg, Message::Ack(_)),
            "Acks go through acknowledge"
        );
        let id = MessageId::of(to, &msg);
        if self.delivery.unconfirmed.contains_key(&id) {
            debug!(replica = ?self.id(), ?to, msg = msg.name(), "already unconfirmed: not sent again");
            return;
        }
        if self.delivery.unconfirmed.is_empty() {
            effects.push(Effect::SetTimer(Timer::Resend));
        }
        self.delivery.unconfirmed.insert(
            id,
            Unconfirmed {
                to,
                attempts: 1,
                msg: msg.clone(),
            },
        );
        effects.push(Effect::Send {
            to,
            envelope: Envelope {
                from: self.id(),
                id,
                msg,
            },
        });
    }

    /// Sends `msg` to every other replica, each copy under its own id.
    pub(super) fn broadcast(&mut self, msg: Message<S>, effects: &mut Vec<Effect<S>>) {
        let others: Vec<ReplicaId> = self.config.others().collect();
        for to in others {
            self.send(to, msg.clone(), effects);
        }
    }

    /// Sends a periodic message (the idle primary's Commit) to every other
    /// replica. Unlike [`broadcast`](Self::broadcast), a copy whose identical
    /// predecessor is still unconfirmed goes out again, under the same id and
    /// with its attempts unchanged: the heartbeat is how a backup knows its
    /// primary is alive, so one lost copy (or lost Ack) must not silence it
    /// until the slower Resend timer (spec/protocol.md, "Delivery"). The
    /// attempts still count only Resend expiries, so a backup that never
    /// answers is still counted disconnected after `attempts_max` of them.
    pub(super) fn broadcast_periodic(&mut self, msg: Message<S>, effects: &mut Vec<Effect<S>>) {
        let others: Vec<ReplicaId> = self.config.others().collect();
        for to in others {
            let id = MessageId::of(to, &msg);
            #[allow(unused_mut)]
            let mut again = self.delivery.unconfirmed.contains_key(&id);
            #[cfg(feature = "wrong-variants")]
            if self
                .config
                .has_bug(super::config::Bug::SuppressUnconfirmedHeartbeat)
            {
                again = false;
            }
            if again {
                effects.push(Effect::Send {
                    to,
                    envelope: Envelope {
                        from: self.id(),
                        id,
                        msg: msg.clone(),
                    },
                });
            } else {
                self.send(to, msg.clone(), effects);
            }
        }
    }

    /// Confirms reception of message `id` to its sender.
    pub(super) fn acknowledge(&self, to: ReplicaId, id: MessageId, effects: &mut Vec<Effect<S>>) {
        effects.push(Effect::Send {
            to,
            envelope: Envelope {
                from: self.id(),
                id,
                msg: Message::Ack(Ack),
            },
        });
    }

    /// Hearing anything from a peer counts it as connected again.
    pub(super) fn heard_from(&mut self, peer: ReplicaId) {
        if self.delivery.disconnected.remove(&peer) {
            info!(replica = ?self.id(), ?peer, "peer connected again");
        }
    }

    /// Ack: stop resending message `id`. Idempotent: an Ack for a message no
    /// longer held (confirmed already, or forgotten with its view) is ignored.
    pub(super) fn on_ack(&mut self, from: ReplicaId, id: MessageId, effects: &mut Vec<Effect<S>>) {
        match self.delivery.unconfirmed.get(&id) {
            Some(u) if u.to == from => {
                self.delivery.unconfirmed.remove(&id);
                if self.delivery.unconfirmed.is_empty() {
                    effects.push(Effect::CancelTimer(Timer::Resend));
                }
            }
            Some(_) => {
                debug!(replica = ?self.id(), ?from, ?id, "ignore Ack: message was sent to another replica")
            }
            None => {
                debug!(replica = ?self.id(), ?from, ?id, "ignore Ack: nothing unconfirmed under that id")
            }
        }
    }

    /// Messages of views older than `view` need no more resending: their
    /// receivers discard them by the view check. Nor do Recovery messages,
    /// once a replica is in a view: they are answered only while recovering.
    pub(super) fn forget_older_views(&mut self, view: View, effects: &mut Vec<Effect<S>>) {
        let before = self.delivery.unconfirmed.len();
        self.delivery.unconfirmed.retain(|_, u| match u.msg.view() {
            Some(v) => v >= view,
            None => !matches!(u.msg, Message::Recovery(_)),
        });
        if before > 0 && self.delivery.unconfirmed.is_empty() {
            effects.push(Effect::CancelTimer(Timer::Resend));
        }
    }

    /// Resend timer: resend every unconfirmed message with attempts left;
    /// count the receiver of one without as disconnected and react.
    pub(super) fn on_resend_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        if self.delivery.unconfirmed.is_empty() {
            debug!(replica = ?self.id(), "ignore Resend timeout: nothing unconfirmed");
            return;
        }
        let attempts_max = self.config.attempts_max();
        let mut lost = BTreeSet::new();
        let mut spent = Vec::new();
        let from = self.id();
        for (&id, u) in self.delivery.unconfirmed.iter_mut() {
            if u.attempts >= attempts_max {
                lost.insert(u.to);
                spent.push(id);
                continue;
            }
            u.attempts += 1;
            effects.push(Effect::Send {
                to: u.to,
                envelope: Envelope {
                    from,
                    id,
                    msg: u.msg.clone(),
                },
            });
        }
        for id in spent {
            self.delivery.unconfirmed.remove(&id);
        }
        if !self.delivery.unconfirmed.is_empty() {
            effects.push(Effect::SetTimer(Timer::Resend));
        }
        for peer in lost {
            self.on_peer_disconnected(peer, effects);
        }
    }

    /// A peer ran out of attempts. The protocol's reaction (spec/protocol.md,
    /// "Disconnection"): a backup that loses its primary, or a replica that
    /// loses primary(v) while changing to view v, moves to the next view; a
    /// primary keeps serving while f backups are connected.
    fn on_peer_disconnected(&mut self, peer: ReplicaId, effects: &mut Vec<Effect<S>>) {
        self.delivery.disconnected.insert(peer);
        info!(replica = ?self.id(), ?peer, view = ?self.view, "peer disconnected");
        match self.status {
            Status::Normal if self.is_primary() => {
                if self.connected_backups() < self.config.f() {
                    warn!(replica = ?self.id(), view = ?self.view,
                        "primary lost its quorum: new requests wait until f backups are connected");
                }
            }
            Status::Normal | Status::ViewChange if peer == self.primary() => {
                info!(replica = ?self.id(), ?peer, view = ?self.view, "primary disconnected: moving to the next view");
                self.start_view_change(self.view.next(), effects);
            }
            Status::Normal | Status::ViewChange | Status::Recovering => {}
        }
    }

    /// Backups not counted as disconnected.
    pub(super) fn connected_backups(&self) -> usize {
        self.config
            .others()
            .filter(|&r| self.delivery.is_connected(r))
            .count()
    }
}
