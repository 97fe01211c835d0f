//! The model's properties: every invariant of spec/invariants.md as an
//! `always` property named by its id, and `sometimes` properties showing that
//! the behaviours of interest are reachable (so no invariant holds vacuously).

use crate::actors::{ActorState, ModelTimer, Msg};
use crate::invariants;
use crate::liveness::{self, Snapshot};
use crate::model::{ModelConfig, VrModel, VrState, live_replicas, up};
use crate::prelude::Prelude;
use crate::register::Register;
use stateright::Expectation;
use stateright::semantics::ConsistencyTester;
use vr::core::ReplicaId;
use vr::core::Status;

/// The id of the linearizability invariant, checked over the client history.
pub const LINEARIZABLE: &str = "INV-LINEARIZABLE";

/// `sometimes`: some replica committed a request.
pub const REQUEST_COMMITTED: &str = "a request committed";
/// `sometimes`: some replica is Normal in a view after view 0.
pub const VIEW_CHANGE_COMPLETED: &str = "a view change completed";
/// `sometimes`: a primary is Normal in view v + 1 while primary(v) is down and
/// view v never started: the failed next primary did not stall the cluster.
pub const NEXT_PRIMARY_SKIPPED: &str = "a view change completed after primary(v) failed during it";
/// `sometimes`: a replica counted a peer disconnected after attempts_max.
pub const PEER_DISCONNECTED: &str = "a replica marked a peer disconnected";
/// `sometimes`: a re-delivered StartViewChange or DoViewChange was not counted.
pub const DUPLICATE_NOT_COUNTED: &str =
    "a duplicate StartViewChange or DoViewChange was not counted";
/// `sometimes`: a restarted replica recovered and is Normal again.
pub const RECOVERED: &str = "a recovered replica rejoined";
/// `sometimes`: a state transfer completed.
pub const STATE_TRANSFERRED: &str = "a state transfer completed";

/// `sometimes`: primary(v) filled in the committed entries its chosen log
/// left out, and started the view.
pub const FILLED: &str = "a new primary filled in its log and started the view";
/// `sometimes`: a replica took another's checkpoint in place of the entries
/// that one had discarded.
pub const CHECKPOINT_FETCHED: &str = "a replica fetched another's checkpoint";
/// `sometimes`: a replica is primary, Normal, in a view of n or more: it has
/// been primary before (views past n).
pub const PRIMARY_AGAIN: &str = "a replica is primary a second time";

/// `sometimes`: a client's session was pruned by a newcomer's Register,
/// and its request answered SessionExpired.
pub const SESSION_EXPIRED: &str = "a pruned client's request was answered SessionExpired";

/// A property's condition.
type Condition = fn(&VrModel, &VrState) -> bool;

macro_rules! state_invariants {
    ($($id:literal => $name:ident),* $(,)?) => {
        $(
            fn $name(_: &VrModel, state: &VrState) -> bool {
                invariants::check($id, &up(state)).is_ok()
            }
        )*
        /// The `always` properties over replica states, by id.
        const STATE_INVARIANTS: &[(&str, Condition)] = &[$(($id, $name)),*];
    };
}

state_invariants! {
    "INV-COMMIT-LE-OP" => commit_le_op,
    "INV-LAST-NORMAL-VIEW" => last_normal_view,
    "INV-CACHES-CLEARED" => caches_cleared,
    "INV-PREPARE-OK-PRIMARY-ONLY" => prepare_ok_primary_only,
    "INV-EXECUTED-ONCE" => executed_once,
    "INV-DELIVERY-BOUNDED" => delivery_bounded,
    "INV-RECOVERING-SILENT" => recovering_silent,
    "INV-AGREEMENT" => agreement,
    "INV-PRIMARY-HAS-COMMITTED" => primary_has_committed,
    "INV-SAME-VIEW-PREFIX" => same_view_prefix,
}

/// The cluster as the progress properties see it: crashed and down replicas
/// as `None`, each replica's timers, the replica messages in flight (sorted,
/// so that the check is a function of the state alone).
pub fn snapshot(cfg: &ModelConfig, state: &VrState) -> Snapshot<Register> {
    let n = usize::from(cfg.replicas);
    let replicas = (0..n)
        .map(|i| match &*state.actor_states[i] {
            ActorState::Replica(r) if !state.crashed[i] => Some(r.replica.clone()),
            _ => None,
        })
        .collect();
    let timers = (0..n)
        .map(|i| {
            state.timers_set[i]
                .iter()
                .filter_map(|t| match t {
                    ModelTimer::Replica(t) => Some(*t),
                    ModelTimer::ClientRetry => None,
                })
                .collect()
        })
        .collect();
    let mut in_flight: Vec<_> = state
        .network
        .iter_all()
        .filter(|e| usize::from(e.dst) < n)
        .filter_map(|e| match e.msg {
            Msg::Replica(envelope) => {
                Some((ReplicaId(usize::from(e.dst) as u8), (**envelope).clone()))
            }
            _ => None,
        })
        .collect();
    in_flight.sort();
    Snapshot {
        replicas,
        timers,
        in_flight,
        replied: Vec::new(),
    }
}

fn live_commit(model: &VrModel, state: &VrState) -> bool {
    liveness::live_commit(&snapshot(&model.cfg, state)).is_ok()
}

fn live_view(model: &VrModel, state: &VrState) -> bool {
    liveness::live_view(&snapshot(&model.cfg, state)).is_ok()
}

fn live_join(model: &VrModel, state: &VrState) -> bool {
    liveness::live_join(&snapshot(&model.cfg, state)).is_ok()
}

fn linearizable(_: &VrModel, state: &VrState) -> bool {
    state.history.linearizability.is_consistent()
}

fn request_committed(_: &VrModel, state: &VrState) -> bool {
    up(state).iter().any(|r| r.commit_number().0 > 0)
}

fn view_change_completed(_: &VrModel, state: &VrState) -> bool {
    up(state)
        .iter()
        .any(|r| r.status() == Status::Normal && r.view().0 > 0)
}

fn next_primary_skipped(_: &VrModel, state: &VrState) -> bool {
    up(state).iter().any(|p| {
        let failed = p.view().0.checked_sub(1).filter(|&v| v > 0);
        p.status() == Status::Normal
            && p.is_primary()
            && failed.is_some_and(|v| {
                let failed_primary = usize::from(p.config().primary(vr::core::View(v)).0);
                // It failed before reaching view v: down from the start, or
                // crashed (stateright keeps a crashed actor's last state) while
                // in a view up to v.
                let failed_before = match &*state.actor_states[failed_primary] {
                    ActorState::Down => true,
                    ActorState::Replica(r) => {
                        state.crashed[failed_primary] && r.replica.view() <= vr::core::View(v)
                    }
                    ActorState::Client(_) => false,
                };
                failed_before && !state.history.started_views.contains(&vr::core::View(v))
            })
    })
}

fn peer_disconnected(_: &VrModel, state: &VrState) -> bool {
    up(state)
        .iter()
        .any(|r| !r.delivery().disconnected().is_empty())
}

fn duplicate_not_counted(_: &VrModel, state: &VrState) -> bool {
    live_replicas(state).any(|(_, r)| r.witness.duplicate_view_change_not_counted)
}

fn filled(_: &VrModel, state: &VrState) -> bool {
    live_replicas(state).any(|(_, r)| r.witness.filled)
}

fn checkpoint_fetched(_: &VrModel, state: &VrState) -> bool {
    live_replicas(state).any(|(_, r)| r.witness.checkpoint_fetched)
}

fn primary_again(model: &VrModel, state: &VrState) -> bool {
    let n = u64::from(model.cfg.replicas);
    up(state)
        .iter()
        .any(|r| r.status() == Status::Normal && r.is_primary() && r.view().0 >= n)
}

fn recovered(_: &VrModel, state: &VrState) -> bool {
    live_replicas(state).any(|(_, r)| r.witness.recovered && r.replica.status() == Status::Normal)
}

fn state_transferred(_: &VrModel, state: &VrState) -> bool {
    live_replicas(state).any(|(_, r)| r.witness.state_transferred)
}

/// The ids of every `always` property: the invariant ids of spec/, then
/// the progress properties' (LIVE-...).
pub fn invariant_ids() -> Vec<&'static str> {
    STATE_INVARIANTS
        .iter()
        .map(|(id, _)| *id)
        .chain([LINEARIZABLE])
        .chain(liveness::IDS)
        .collect()
}

/// The `sometimes` properties a run with these bounds can witness.
pub fn expected_sometimes(cfg: &ModelConfig) -> Vec<&'static str> {
    let mut names = vec![VIEW_CHANGE_COMPLETED, PEER_DISCONNECTED];
    // Without resends or a duplicating network no message arrives twice;
    // from the checkpoint prelude, every replica is in view 1 already, so
    // without a view past it there is no view change to count in.
    let view_change_ahead = cfg.prelude != Some(Prelude::CheckpointBehind) || cfg.max_view >= 2;
    if (cfg.attempts_max > 1 || cfg.duplicating) && view_change_ahead {
        names.push(DUPLICATE_NOT_COUNTED);
    }
    if cfg.clients > 0 && cfg.requests > 0 {
        names.extend([REQUEST_COMMITTED, STATE_TRANSFERRED]);
    }
    // In durable mode a restarted replica rebuilds itself from its disk.
    if (cfg.crashes > 0 && !cfg.durable) || cfg.prelude == Some(Prelude::Recovering) {
        names.push(RECOVERED);
    }
    if (cfg.crashes > 0 || cfg.down >= 2) && cfg.max_view >= 2 {
        names.push(NEXT_PRIMARY_SKIPPED);
    }
    if cfg.prelude == Some(Prelude::FillNeeded) {
        names.push(FILLED);
    }
    if cfg.prelude == Some(Prelude::CheckpointBehind) {
        // Replica 2 must fetch primary 1's checkpoint, then catch up to
        // view 1 by state transfer.
        names.extend([CHECKPOINT_FETCHED, STATE_TRANSFERRED]);
    }
    if cfg.prelude == Some(Prelude::CatchUpOvertaken) {
        // Replica 0 fetches view 2's log from primary 2.
        names.push(STATE_TRANSFERRED);
    }
    if cfg.max_view >= u64::from(cfg.replicas) {
        names.push(PRIMARY_AGAIN);
    }
    if cfg.newcomers > 0
        && cfg.clients > 0
        && cfg.client_table_max < u64::from(cfg.clients) + u64::from(cfg.newcomers)
    {
        names.push(SESSION_EXPIRED);
    }
    names
}

/// Adds every property to the model.
pub fn add_all(mut model: VrModel) -> VrModel {
    for (id, check) in STATE_INVARIANTS {
        model = model.property(Expectation::Always, id, *check);
    }
    model = model.property(Expectation::Always, LINEARIZABLE, linearizable);
    model = model.property(Expectation::Always, liveness::LIVE_COMMIT, live_commit);
    model = model.property(Expectation::Always, liveness::LIVE_VIEW, live_view);
    model = model.property(Expectation::Always, liveness::LIVE_JOIN, live_join);
    let sometimes: [(&'static str, Condition); 11] = [
        (SESSION_EXPIRED, |_, state| state.history.expired),
        (FILLED, filled),
        (CHECKPOINT_FETCHED, checkpoint_fetched),
        (PRIMARY_AGAIN, primary_again),
        (REQUEST_COMMITTED, request_committed),
        (VIEW_CHANGE_COMPLETED, view_change_completed),
        (PEER_DISCONNECTED, peer_disconnected),
        (DUPLICATE_NOT_COUNTED, duplicate_not_counted),
        (STATE_TRANSFERRED, state_transferred),
        (RECOVERED, recovered),
        (NEXT_PRIMARY_SKIPPED, next_primary_skipped),
    ];
    let expected = expected_sometimes(&model.cfg);
    for (name, check) in sometimes {
        if expected.contains(&name) {
            model = model.property(Expectation::Sometimes, name, check);
        }
    }
    model
}
