//! Model to implementation: the paths the model checker finds (the witnesses
//! of its `sometimes` properties, and the counterexamples it finds in the
//! wrong variants) are replayed through the runtime-facing path (every
//! message and request encoded to a datagram by the runtime's wire format and
//! decoded again, then fed to `step`) on replicas of their own, and each
//! replica must end every step in exactly the state the model reached.

use stateright::actor::ActorModelAction;
use stateright::{Checker, HasDiscoveries, Model};
use vr::core::{Bug, Effect, Envelope, Input, Nonce, Replica, Status};
use vr::runtime::auth::Key;
use vr::runtime::wire::{self, Packet, Sender};
use vr_model::actors::{ActorState, ModelTimer, Msg, VrActor};
use vr_model::model::{ModelConfig, VrModel, VrState};
use vr_model::register::Register;

const CLUSTER: u32 = 7;

/// A datagram and back, in the runtime's wire format (tagged and checked
/// with a fixed key).
fn over_the_wire(packet: Packet<Register>) -> Packet<Register> {
    let key = Key::from_bytes([5; vr::runtime::auth::KEY_LEN]);
    let bytes = wire::encode_as(&key, Sender::Client, CLUSTER, &packet).expect("fits a datagram");
    wire::decode_as(&key, CLUSTER, &bytes).expect("decodes").1
}

fn envelope_over_the_wire(envelope: &Envelope<Register>) -> Envelope<Register> {
    match over_the_wire(Packet::Replica(envelope.clone())) {
        Packet::Replica(envelope) => envelope,
        other => panic!("an envelope came back as {other:?}"),
    }
}

fn model_replica(state: &VrState, index: usize) -> Option<&Replica<Register>> {
    if state.crashed[index] {
        return None;
    }
    match &*state.actor_states[index] {
        ActorState::Replica(r) => Some(&r.replica),
        _ => None,
    }
}

/// A model path: each state with the action taken from it.
type ModelPath = Vec<(VrState, Option<ActorModelAction<Msg, ModelTimer, ()>>)>;

fn replay(model: &VrModel, path: ModelPath) -> usize {
    let replicas = usize::from(model.cfg.replicas);
    let mut ours: Vec<Option<Replica<Register>>> = (0..replicas)
        .map(|i| model_replica(&path[0].0, i).cloned())
        .collect();
    let mut steps = 0;
    for (state, action) in path {
        let Some(action) = action else { continue };
        let next = model
            .next_state(&state, action.clone())
            .expect("the path's action is enabled");
        let mut effects = Vec::new();
        match action {
            ActorModelAction::Deliver { dst, msg, .. } if usize::from(dst) < replicas => {
                let input = match msg {
                    Msg::Replica(envelope) => Input::Deliver(envelope_over_the_wire(&envelope)),
                    Msg::Request(request) => match over_the_wire(Packet::Request(request)) {
                        Packet::Request(request) => Input::Request::<Register>(request),
                        other => panic!("a request came back as {other:?}"),
                    },
                    Msg::Reply(_) => continue,
                };
                if let Some(r) = ours[usize::from(dst)].as_mut() {
                    r.step(input, &mut effects);
                }
            }
            ActorModelAction::Timeout(id, ModelTimer::Replica(timer)) => {
                if let Some(r) = ours[usize::from(id)].as_mut() {
                    r.step(Input::Timeout(timer), &mut effects);
                }
            }
            ActorModelAction::Crash(id) if usize::from(id) < replicas => {
                ours[usize::from(id)] = None
            }
            ActorModelAction::Recover(id) => {
                let index = usize::from(id);
                let VrActor::Replica { config, .. } = &model.actors[index] else {
                    continue;
                };
                let nonce = state.actor_storages[index]
                    .as_ref()
                    .expect("a replica that ran keeps its start count")
                    .starts;
                ours[index] = Some(Replica::restart(*config, Nonce(nonce), &mut effects));
            }
            _ => {}
        }
        // Every effect the implementation would send survives the wire too.
        for effect in &effects {
            if let Effect::Send { envelope, .. } = effect {
                assert_eq!(&envelope_over_the_wire(envelope), envelope);
            }
        }
        for (index, replica) in ours.iter().enumerate() {
            assert_eq!(
                replica.as_ref(),
                model_replica(&next, index),
                "replica {index} after step {steps} diverged from the model"
            );
        }
        steps += 1;
    }
    steps
}

#[test]
fn every_witness_path_of_the_model_replays_step_for_step_through_the_wire() {
    let mut replayed = 0;
    let mut recovered = false;
    for cfg in [
        ModelConfig::default(),
        ModelConfig {
            crashes: 1,
            ..ModelConfig::default()
        },
    ] {
        let model = cfg.into_model().unwrap();
        let checker = model
            .clone()
            .checker()
            .target_max_depth(8)
            .spawn_bfs()
            .join();
        let discoveries = checker.discoveries();
        assert!(
            discoveries.len() >= 4,
            "the model witnessed its behaviours: {:?}",
            discoveries.keys()
        );
        for (name, path) in discoveries {
            let path = path.into_vec();
            let last = path.last().unwrap().0.clone();
            let steps = replay(&model, path);
            assert!(steps > 0, "{name}: an empty path");
            recovered |= (0..usize::from(model.cfg.replicas))
                .filter_map(|i| model_replica(&last, i))
                .any(|r| r.status() == Status::Normal)
                && name.contains("recovered");
            replayed += 1;
        }
    }
    eprintln!("{replayed} model paths replayed");
    assert!(replayed >= 8, "{replayed} paths replayed");
    assert!(recovered, "a recovery path was among them");
}

#[test]
fn the_counterexamples_of_the_wrong_variants_replay_step_for_step_through_the_wire() {
    for (bug, depth, property) in [
        (Bug::CommitWithoutQuorum, 6, "INV-PRIMARY-HAS-COMMITTED"),
        (Bug::CountDuplicateDoViewChange, 9, ""),
    ] {
        let cfg = ModelConfig::default();
        let config = cfg.replica_config().unwrap().with_bug(bug);
        let model = cfg.into_model_with(config);
        let checker = model
            .clone()
            .checker()
            // stateright counts the initial state as depth 1 (and the
            // model's start as one more): `depth` steps.
            .target_max_depth(depth + 2)
            .finish_when(HasDiscoveries::AnyFailures)
            .spawn_bfs()
            .join();
        let failures: Vec<_> = checker
            .discoveries()
            .into_iter()
            // The search stops at the first violation, an invariant's or a
            // progress property's (LIVE-...).
            .filter(|(name, _)| name.starts_with("INV-") || name.starts_with("LIVE-"))
            .collect();
        assert!(!failures.is_empty(), "{bug:?}: no counterexample");
        assert!(
            property.is_empty() || failures.iter().any(|(name, _)| *name == property),
            "{bug:?}: {property} not among {:?}",
            failures.iter().map(|(name, _)| name).collect::<Vec<_>>()
        );
        for (name, path) in failures {
            let steps = replay(&model, path.into_vec());
            assert!(steps > 0, "{bug:?}: an empty counterexample");
            eprintln!("{bug:?}: the counterexample to {name} replayed, {steps} steps");
        }
    }
}
