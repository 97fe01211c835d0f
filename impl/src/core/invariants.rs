//! The invariants of one replica's record, by the ids of spec/invariants.md.
//! [`Replica::step`] checks them after every input in debug builds; the model
//! checks them as properties of every reachable state, beside the invariants
//! that relate several replicas.

use super::message::Message;
use super::replica::{Replica, Status};
use super::state_machine::StateMachine;
use super::types::OpNumber;
use std::fmt;

/// A broken invariant: its id and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's id in spec/invariants.md.
    pub id: &'static str,
    /// What broke it.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.id, self.detail)
    }
}

impl std::error::Error for Violation {}

/// A check of one invariant on one replica.
pub type ReplicaCheck<S> = fn(&Replica<S>) -> Result<(), String>;

/// Every single-replica invariant, with its id.
pub fn replica_invariants<S: StateMachine>() -> [(&'static str, ReplicaCheck<S>); 7] {
    [
        ("INV-COMMIT-LE-OP", commit_le_op),
        ("INV-LAST-NORMAL-VIEW", last_normal_view),
        ("INV-CACHES-CLEARED", caches_cleared),
        ("INV-PREPARE-OK-PRIMARY-ONLY", prepare_ok_primary_only),
        ("INV-EXECUTED-ONCE", |r| {
            r.client_table.check(
                &r.log,
                r.commit,
                r.checkpoint.as_ref(),
                r.config.client_table_max(),
            )
        }),
        ("INV-DELIVERY-BOUNDED", |r| {
            r.delivery
                .check(&r.config, r.view, r.status == Status::Recovering)
        }),
        ("INV-RECOVERING-SILENT", recovering_silent),
    ]
}

impl<S: StateMachine> Replica<S> {
    /// Checks every single-replica invariant, returning the first broken.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        for (id, check) in replica_invariants::<S>() {
            check(self).map_err(|detail| Violation {
                id,
                detail: format!("{:?}: {detail}", self.id()),
            })?;
        }
        Ok(())
    }
}

fn commit_le_op<S: StateMachine>(r: &Replica<S>) -> Result<(), String> {
    if r.commit.as_op() > r.op_number() {
        return Err(format!(
            "commit {:?} beyond op {:?}",
            r.commit,
            r.op_number()
        ));
    }
    Ok(())
}

fn last_normal_view<S: StateMachine>(r: &Replica<S>) -> Result<(), String> {
    let fine = match r.status {
        Status::Normal => r.last_normal_view == r.view,
        Status::ViewChange => r.last_normal_view < r.view,
        Status::Recovering => r.last_normal_view <= r.view,
    };
    if !fine {
        return Err(format!(
            "{:?} in {:?} with last-normal-view {:?}",
            r.status, r.view, r.last_normal_view
        ));
    }
    Ok(())
}

fn caches_cleared<S: StateMachine>(r: &Replica<S>) -> Result<(), String> {
    if r.status != Status::ViewChange && !r.view_change.is_empty() {
        return Err(format!("{:?} with caches {:?}", r.status, r.view_change));
    }
    if r.view_change.do_view_change_from().next().is_some() && !r.is_primary() {
        return Err("DoViewChange counted by a replica that is not primary(v)".into());
    }
    if let Some(catch_up) = &r.catch_up
        && (r.status == Status::Normal
            || catch_up.base() != catch_up.checkpoint().map_or(r.commit, |c| c.commit))
    {
        return Err(format!(
            "{:?} with {catch_up:?} at commit {:?}",
            r.status, r.commit
        ));
    }
    if r.view_change.fill().is_some()
        && (r.view_change.do_view_change_from().count() < r.config.quorum()
            || r.view_change
                .best()
                .is_none_or(|b| b.log.after <= r.commit.as_op()))
    {
        return Err("filling in committed entries without a chosen log that needs them".into());
    }
    if let Some(best) = r.view_change.best()
        && best.from.is_some() != (best.log.after > r.commit.as_op())
    {
        return Err(format!(
            "the chosen log's sender is {:?} for a suffix after {:?} at commit {:?}",
            best.from, best.log.after, r.commit
        ));
    }
    if r.view_change
        .start_view_change_from()
        .any(|from| from == r.id())
    {
        return Err("its own StartViewChange was counted".into());
    }
    Ok(())
}

fn prepare_ok_primary_only<S: StateMachine>(r: &Replica<S>) -> Result<(), String> {
    let primary_in_normal = r.status == Status::Normal && r.is_primary();
    if !primary_in_normal && !r.prepare_oks.is_empty() {
        return Err(format!(
            "{:?}, not the primary in Normal status, holds PrepareOk counts",
            r.status
        ));
    }
    if let Some((from, op)) = r.prepare_oks.iter().find(|(_, op)| **op > r.op_number()) {
        return Err(format!(
            "PrepareOk {op:?} from {from:?} beyond op {:?}",
            r.op_number()
        ));
    }
    Ok(())
}

fn recovering_silent<S: StateMachine>(r: &Replica<S>) -> Result<(), String> {
    if r.recovery.is_some() != (r.status == Status::Recovering) {
        return Err(format!(
            "{:?} with recovery progress {:?}",
            r.status, r.recovery
        ));
    }
    if r.status != Status::Recovering {
        return Ok(());
    }
    if r.log.op_number() != OpNumber(0) || !r.view_change.is_empty() || !r.prepare_oks.is_empty() {
        return Err("holds protocol state while recovering".into());
    }
    let speaking = r.delivery.unconfirmed().values().find(|u| {
        !matches!(
            u.msg,
            Message::Recovery(_) | Message::GetState(_) | Message::GetCheckpoint(_)
        )
    });
    if let Some(u) = speaking {
        return Err(format!(
            "sent {} to {:?} while recovering",
            u.msg.name(),
            u.to
        ));
    }
    Ok(())
}
