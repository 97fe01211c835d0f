//! The safety invariants, written once as pure functions over replica states
//! and named by their ids in spec/invariants.md. The model checks them as
//! `always` properties; the simulator after every step; the real-process
//! tests on final states.
//!
//! A crashed replica has no state: callers pass only the replicas that are up.

use vr::core::{Replica, StateMachine, Status, Violation, replica_invariants};

/// A check of one invariant over the replicas that are up.
pub type ClusterCheck<S> = fn(&[&Replica<S>]) -> Result<(), String>;

/// Every invariant that relates several replicas, with its id.
pub fn cluster_invariants<S: StateMachine>() -> [(&'static str, ClusterCheck<S>); 3] {
    [
        ("INV-AGREEMENT", agreement),
        ("INV-PRIMARY-HAS-COMMITTED", primary_has_committed),
        ("INV-SAME-VIEW-PREFIX", same_view_prefix),
    ]
}

/// The ids of every invariant over replica states: the single-replica ones
/// of the core and the cluster ones here.
pub fn state_invariant_ids<S: StateMachine>() -> Vec<&'static str> {
    replica_invariants::<S>()
        .iter()
        .map(|(id, _)| *id)
        .chain(cluster_invariants::<S>().iter().map(|(id, _)| *id))
        .collect()
}

/// Checks the invariant `id` over the replicas that are up.
pub fn check<S: StateMachine>(id: &str, replicas: &[&Replica<S>]) -> Result<(), Violation> {
    for (name, check) in replica_invariants::<S>() {
        if name == id {
            for replica in replicas {
                check(replica).map_err(|detail| Violation {
                    id: name,
                    detail: format!("{:?}: {detail}", replica.id()),
                })?;
            }
            return Ok(());
        }
    }
    for (name, check) in cluster_invariants::<S>() {
        if name == id {
            return check(replicas).map_err(|detail| Violation { id: name, detail });
        }
    }
    panic!("no invariant is named {id}");
}

/// Checks every invariant over replica states, returning the first broken.
pub fn check_all<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), Violation> {
    for id in state_invariant_ids::<S>() {
        check(id, replicas)?;
    }
    Ok(())
}

/// INV-AGREEMENT: any two replicas hold the same entry at every op-number up
/// to the smaller of their commit-numbers.
fn agreement<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), String> {
    for (i, a) in replicas.iter().enumerate() {
        for b in &replicas[i + 1..] {
            let upto = a.commit_number().min(b.commit_number()).as_op();
            if !a.log().agrees_with(b.log(), upto) {
                return Err(format!(
                    "{:?} and {:?} disagree below commit {upto:?}: {:?} vs {:?}",
                    a.id(),
                    b.id(),
                    a.log(),
                    b.log()
                ));
            }
        }
    }
    Ok(())
}

/// INV-PRIMARY-HAS-COMMITTED: a primary in Normal status in view v holds,
/// unchanged, every entry committed by any replica in a view up to v.
fn primary_has_committed<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), String> {
    for p in replicas
        .iter()
        .filter(|r| r.status() == Status::Normal && r.is_primary())
    {
        for r in replicas.iter().filter(|r| r.view() <= p.view()) {
            let committed = r.commit_number().as_op();
            if !p.log().agrees_with(r.log(), committed) {
                return Err(format!(
                    "primary {:?} of {:?} lacks entries {:?} committed up to {committed:?}: {:?}",
                    p.id(),
                    p.view(),
                    r.id(),
                    p.log()
                ));
            }
        }
    }
    Ok(())
}

/// INV-SAME-VIEW-PREFIX: a backup in Normal status in the view its primary is
/// Normal in holds a prefix of the primary's log.
fn same_view_prefix<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), String> {
    for p in replicas
        .iter()
        .filter(|r| r.status() == Status::Normal && r.is_primary())
    {
        for b in replicas
            .iter()
            .filter(|b| b.status() == Status::Normal && b.view() == p.view() && b.id() != p.id())
        {
            let op = b.op_number();
            if !p.log().agrees_with(b.log(), op) {
                return Err(format!(
                    "backup {:?} of {:?} holds {:?}, not a prefix of the primary's {:?}",
                    b.id(),
                    p.view(),
                    b.log(),
                    p.log()
                ));
            }
        }
    }
    Ok(())
}
