//! Model to implementation: the paths the model checker finds (the witnesses
//! of its `sometimes` properties) are replayed through the runtime-facing
//! path (every message and request encoded to bytes with the wire codec and
//! decoded again, then fed to `step`) on replicas of their own, and each
//! replica must end every step in exactly the state the model reached.

use stateright::actor::ActorModelAction;
use stateright::{Checker, Model};
use vr::core::{Effect, Envelope, Input, Nonce, Replica, Request, Status};
use vr_model::actors::{ActorState, ModelTimer, Msg, VrActor};
use vr_model::model::{ModelConfig, VrModel, VrState};
use vr_model::register::Register;

/// Bytes and back, as the runtime sends them.
fn over_the_wire<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let bytes = postcard::to_allocvec(value).expect("encodes");
    postcard::from_bytes(&bytes).expect("decodes")
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
                    Msg::Replica(envelope) => {
                        Input::Deliver(over_the_wire::<Envelope<Register>>(&envelope))
                    }
                    Msg::Request(request) => {
                        Input::Request(over_the_wire::<Request<Register>>(&request))
                    }
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
                let nonce =
                    state.actor_storages[index].expect("a replica that ran keeps its start count");
                ours[index] = Some(Replica::restart(*config, Nonce(nonce), &mut effects));
            }
            _ => {}
        }
        // Every effect the implementation would send survives the wire too.
        for effect in &effects {
            if let Effect::Send { envelope, .. } = effect {
                assert_eq!(&over_the_wire(envelope), envelope);
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
