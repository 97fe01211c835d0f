//! The model: its bounds, the actors in it, the history it records, and the
//! properties it checks.

use crate::actors::{ActorState, Msg, ReplicaState, VrActor, client_id};
use crate::driver::Driver;
use crate::malformed;
use crate::prelude::{Prelude, open_sessions};
use crate::properties;
use crate::register::Register;
use stateright::actor::{ActorModel, ActorModelState, Envelope, Id, LossyNetwork, Network};
use stateright::semantics::register::Register as RegisterSpec;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vr::core::{ClientId, Config, ConfigError, Message, Replica, ReplicaId, RequestNumber, View};

/// The checked system.
pub type VrModel = ActorModel<VrActor, ModelConfig, History>;
/// One state of it.
pub type VrState = ActorModelState<VrActor, History>;

/// The bounds and settings of a model run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// n, the number of replicas (odd).
    pub replicas: u8,
    /// How many clients.
    pub clients: u8,
    /// Requests per client.
    pub requests: u8,
    /// Crashes in a run, each possibly followed by a restart with recovery;
    /// at most f replicas (down ones included) are down at once.
    pub crashes: u8,
    /// Whether the network may lose messages.
    pub lossy: bool,
    /// Whether the network may deliver a message more than once.
    pub duplicating: bool,
    /// No replica goes past this view.
    pub max_view: u64,
    /// The delivery layer's attempts per message.
    pub attempts_max: u8,
    /// Log entries per NewState.
    pub state_transfer_entries_max: u32,
    /// The bound on log entries per DoViewChange, StartView and
    /// RecoveryResponse beyond the uncommitted ones (each entry weighs 1
    /// here); the default, no bound, sends whole logs.
    pub message_weight_max: u32,
    /// A checkpoint every this many executed entries, compacting the log
    /// (the default, `u64::MAX`, never).
    pub checkpoint_interval: u64,
    /// Replicas 0 .. down are down from the start and never run: the
    /// primary of view 0 (and more) has failed before anything happened.
    pub down: u8,
    /// If set, only this replica may crash (the others never do).
    pub crash_only: Option<u8>,
    /// If set, the replicas start from this prelude's state, built by
    /// running the core, instead of empty.
    pub prelude: Option<Prelude>,
    /// Durable mode: a crashed replica restarts from its durable state, so
    /// any number may be down at once (spec/protocol.md, "Durability").
    pub durable: bool,
    /// Clients without a session that each send one Register, after the
    /// `clients` (whose sessions are open from the start).
    pub newcomers: u8,
    /// The bound on client-table rows (spec/protocol.md, "Client
    /// sessions"): below `clients` + `newcomers`, a newcomer's Register
    /// prunes a client's session.
    pub client_table_max: u64,
    /// Whether the model starts with [`crate::malformed`]'s messages in
    /// flight: content only a replica with a bug sends, each refused by a
    /// guard of the core. Needs 3 replicas, none down.
    pub malformed: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            replicas: 3,
            clients: 1,
            // A write, then a read: one operation alone is always linearizable.
            requests: 2,
            crashes: 0,
            lossy: false,
            duplicating: false,
            max_view: 1,
            attempts_max: 2,
            state_transfer_entries_max: 1,
            message_weight_max: vr::core::MESSAGE_WEIGHT_MAX_DEFAULT,
            checkpoint_interval: u64::MAX,
            down: 0,
            crash_only: None,
            prelude: None,
            durable: false,
            newcomers: 0,
            client_table_max: vr::core::CLIENT_TABLE_MAX_DEFAULT,
            malformed: false,
        }
    }
}

/// What the model records besides the actors' states: the clients' operations
/// for the linearizability check, and which views started.
///
/// Shared, not copied, between states: most steps record nothing, and every
/// state of a breadth-first search's frontier holds one.
#[derive(Clone, Debug, PartialEq, Hash, Default)]
pub struct History(Arc<Recorded>);

/// The contents of a [`History`].
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Recorded {
    /// The clients' invocations and returns.
    pub linearizability: LinearizabilityTester<ClientId, RegisterSpec<u8>>,
    /// Per client, the latest request invoked and the latest returned.
    invoked: BTreeMap<ClientId, RequestNumber>,
    returned: BTreeMap<ClientId, RequestNumber>,
    /// The views a StartView was sent for: views that started.
    pub started_views: BTreeSet<View>,
    /// A client's request was answered SessionExpired (its session pruned).
    pub expired: bool,
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded {
            linearizability: LinearizabilityTester::new(RegisterSpec(0)),
            invoked: BTreeMap::new(),
            returned: BTreeMap::new(),
            started_views: BTreeSet::new(),
            expired: false,
        }
    }
}

impl std::ops::Deref for History {
    type Target = Recorded;

    fn deref(&self) -> &Recorded {
        &self.0
    }
}

impl History {
    fn recorded_mut(&mut self) -> &mut Recorded {
        Arc::make_mut(&mut self.0)
    }
}

impl ModelConfig {
    /// Checks that the bounds make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.replicas < 3 || self.replicas.is_multiple_of(2) {
            return Err(format!(
                "--replicas {} : the model needs an odd number of replicas, at least 3",
                self.replicas
            ));
        }
        let f = self.replicas / 2;
        if self.down > f {
            return Err(format!(
                "--down {} is more than f = {f} replicas down",
                self.down
            ));
        }
        if self.max_view < 1 {
            return Err(
                "--max-view must be at least 1: no view change is possible otherwise".into(),
            );
        }
        if self.clients > 20 || self.requests > 9 {
            return Err(
                "at most 20 clients and 9 requests per client (values must fit the register)"
                    .into(),
            );
        }
        if self.attempts_max == 0
            || self.state_transfer_entries_max == 0
            || self.message_weight_max == 0
            || self.checkpoint_interval == 0
        {
            return Err(
                "--attempts-max, --state-transfer-entries-max, --message-weight-max and --checkpoint-interval must be at least 1"
                    .into(),
            );
        }
        if let Some(prelude) = self.prelude {
            let fits = self.replicas == 3
                && match prelude {
                    Prelude::FillNeeded => self.down == 1 && self.message_weight_max == 1,
                    Prelude::CheckpointBehind => {
                        self.down == 0 && self.clients == 0 && self.checkpoint_interval == 2
                    }
                    _ => self.down == 0,
                };
            if !fits {
                return Err(format!(
                    "--prelude {} needs {}",
                    prelude.name(),
                    prelude.requirement()
                ));
            }
        }
        let sessions = u64::from(self.clients) + u64::from(self.prelude.is_some());
        if self.client_table_max < sessions.max(1) {
            return Err(format!(
                "--client-table-max {} is less than the {sessions} sessions the start opens",
                self.client_table_max
            ));
        }
        if self.malformed && (self.replicas != 3 || self.down != 0) {
            return Err(
                "--malformed needs --replicas 3 --down 0: its messages name replicas 0-2".into(),
            );
        }
        if let Some(only) = self.crash_only {
            if only >= self.replicas || only < self.down {
                return Err(format!("--crash-only {only} names no running replica"));
            }
            if self.crashes == 0 {
                return Err("--crash-only needs --crashes of at least 1".into());
            }
        }
        Ok(())
    }

    /// The configuration every replica runs with (replica 0's view of it).
    pub fn replica_config(&self) -> Result<Config, ConfigError> {
        Config::with_settings(
            self.replicas,
            ReplicaId(0),
            self.attempts_max,
            self.state_transfer_entries_max,
        )?
        .with_message_weight_max(self.message_weight_max)?
        .with_checkpoint_interval(self.checkpoint_interval)?
        .with_client_table_max(self.client_table_max)
    }

    /// The model, with the replicas configured by [`replica_config`].
    ///
    /// [`replica_config`]: ModelConfig::replica_config
    pub fn into_model(self) -> Result<VrModel, ConfigError> {
        let config = self.replica_config()?;
        Ok(self.into_model_with(config))
    }

    /// The model with the replicas configured like `config` (tests use it to
    /// run deliberately wrong variants).
    pub fn into_model_with(self, config: Config) -> VrModel {
        let configs: Vec<Config> = (0..self.replicas)
            .map(|i| {
                config
                    .for_replica(ReplicaId(i))
                    .expect("id within the cluster")
            })
            .collect();
        // The start: empty replicas, unless there are clients (their
        // sessions open first) or a prelude.
        let mut prelude = (self.clients > 0 || self.prelude.is_some()).then(|| {
            let mut d = Driver::new(&configs);
            open_sessions(&mut d, self.clients, self.prelude.is_some());
            if let Some(p) = self.prelude {
                p.build(&mut d, &configs, self.clients);
            }
            d
        });
        let replicas: Vec<VrActor> = configs
            .iter()
            .map(|&config| {
                let i = usize::from(config.id().0);
                if i < usize::from(self.down) {
                    VrActor::Down { config }
                } else {
                    let start = prelude.as_mut().and_then(|d| {
                        let replica = d.replicas[i].take()?;
                        Some(Arc::new((replica, d.timers[i].clone())))
                    });
                    VrActor::Replica {
                        config,
                        down: self.down,
                        start,
                        durable: self.durable,
                    }
                }
            })
            .collect();
        let in_flight: Vec<Envelope<Msg>> = prelude
            .map(|d| d.in_flight)
            .unwrap_or_default()
            .into_iter()
            .chain(
                malformed::envelopes()
                    .into_iter()
                    .filter(|_| self.malformed)
                    .map(|m| (m.to, m.envelope)),
            )
            .filter(|(to, _)| to.0 >= self.down)
            .map(|(to, envelope)| Envelope {
                src: Id::from(usize::from(envelope.from.0)),
                dst: Id::from(usize::from(to.0)),
                msg: Msg::Replica(Arc::new(envelope)),
            })
            .chain(
                malformed::requests()
                    .into_iter()
                    .filter(|_| self.malformed)
                    .map(|(to, request, _)| Envelope {
                        // Not a client's: no history records it.
                        src: Id::from(malformed::REQUEST_SENDER),
                        dst: Id::from(usize::from(to.0)),
                        msg: Msg::Request(request),
                    }),
            )
            .collect();
        let (replica_count, requests) = (self.replicas, self.requests);
        let clients: Vec<VrActor> = (0..self.clients)
            .map(|_| VrActor::Client {
                replica_count,
                requests,
                newcomer: false,
            })
            .chain((0..self.newcomers).map(|_| VrActor::Client {
                replica_count,
                requests: 1,
                newcomer: true,
            }))
            .collect();
        let network = if self.duplicating {
            Network::new_unordered_duplicating(in_flight)
        } else {
            Network::new_unordered_nonduplicating(in_flight)
        };
        let lossy = if self.lossy {
            LossyNetwork::Yes
        } else {
            LossyNetwork::No
        };
        // At most f replicas are down at once: the protocol's assumption.
        let f = usize::from(self.replicas / 2);
        let crashes = if self.durable {
            usize::from(self.crashes).min(usize::from(self.replicas - self.down))
        } else {
            usize::from(self.crashes).min(f.saturating_sub(usize::from(self.down)))
        };
        let model = ActorModel::new(self, History::default())
            .actors(replicas)
            .actors(clients)
            .init_network(network)
            .lossy_network(lossy)
            .max_crashes(crashes)
            .record_msg_out(record_out)
            .record_msg_in(record_in)
            .within_boundary(within_boundary);
        properties::add_all(model)
    }
}

/// Records a client's first send of each request as an invocation, and each
/// StartView as a view that started.
fn record_out(cfg: &ModelConfig, history: &History, envelope: Envelope<&Msg>) -> Option<History> {
    match envelope.msg {
        Msg::Request(request) if usize::from(envelope.src) >= usize::from(cfg.replicas) => {
            let client = request.client;
            if history
                .invoked
                .get(&client)
                .is_some_and(|&r| r >= request.request)
            {
                return None;
            }
            let mut next = history.clone();
            let recorded = next.recorded_mut();
            // An invalid history (two operations in flight for one client)
            // makes the tester report the history as not linearizable.
            let vr::core::Command::Apply(operation) = request.operation else {
                return None;
            };
            let _ = recorded
                .linearizability
                .on_invoke(client, operation.to_spec());
            recorded.invoked.insert(client, request.request);
            Some(next)
        }
        Msg::Replica(e) => match &e.msg {
            Message::StartView(start) if !history.started_views.contains(&start.view) => {
                let mut next = history.clone();
                next.recorded_mut().started_views.insert(start.view);
                Some(next)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Records the first reply a client gets to its request as its return.
fn record_in(cfg: &ModelConfig, history: &History, envelope: Envelope<&Msg>) -> Option<History> {
    let Msg::Reply(reply) = envelope.msg else {
        return None;
    };
    let client = client_id(envelope.dst, cfg.replicas);
    if reply.client != client
        || history.invoked.get(&client) != Some(&reply.request)
        || history.returned.get(&client) == Some(&reply.request)
    {
        return None;
    }
    // SessionExpired is not a return: the operation stays pending (it may
    // have taken effect, or not), which linearizability allows.
    let output = match reply.output {
        vr::core::Outcome::Output(output) => output,
        vr::core::Outcome::SessionExpired if !history.expired => {
            let mut next = history.clone();
            next.recorded_mut().expired = true;
            return Some(next);
        }
        _ => return None,
    };
    let mut next = history.clone();
    let recorded = next.recorded_mut();
    let _ = recorded.linearizability.on_return(client, output.to_spec());
    recorded.returned.insert(client, reply.request);
    Some(next)
}

/// The bounds that keep runs finite: views, crashes, copies in flight; and
/// clients never crash (only replicas do).
fn within_boundary(cfg: &ModelConfig, state: &VrState) -> bool {
    let replicas = usize::from(cfg.replicas);
    if state.crashed[replicas..].iter().any(|&c| c) {
        return false;
    }
    if let Some(only) = cfg.crash_only
        && state.crashed[..replicas]
            .iter()
            .enumerate()
            .any(|(i, &c)| c && i != usize::from(only))
    {
        return false;
    }
    // Crashes so far: each restart followed one, and so does each replica
    // that is crashed now.
    let restarts: u64 = state.actor_storages[..replicas]
        .iter()
        .map(|s| s.as_ref().map_or(1, |k| k.starts).saturating_sub(1))
        .sum();
    let crashed = state.crashed[..replicas].iter().filter(|&&c| c).count() as u64;
    if restarts + crashed > u64::from(cfg.crashes) {
        return false;
    }
    // A replica still recovering has no state yet: with the crashed ones, at
    // most f (the down ones included) may be without state at once.
    let recovering = live_replicas(state)
        .filter(|(_, r)| r.replica.status() == vr::core::Status::Recovering)
        .count();
    // In durable mode a crashed replica keeps its state.
    let stateless = if cfg.durable { 0 } else { crashed as usize };
    if stateless + recovering + usize::from(cfg.down) > usize::from(cfg.replicas / 2) {
        return false;
    }
    if replica_states(state).any(|r| r.replica.view() > View(cfg.max_view)) {
        return false;
    }
    if let Network::UnorderedNonDuplicating(copies) = &state.network
        && copies.values().any(|&n| n > usize::from(cfg.attempts_max))
    {
        return false;
    }
    true
}

/// Every replica's state, crashed ones included (a crashed replica keeps the
/// state it crashed with until it restarts).
pub fn replica_states(state: &VrState) -> impl Iterator<Item = &ReplicaState> {
    state.actor_states.iter().filter_map(|s| match &**s {
        ActorState::Replica(r) => Some(r),
        ActorState::Client(_) | ActorState::Down => None,
    })
}

/// The replicas that are up, with their actor ids.
pub fn live_replicas(state: &VrState) -> impl Iterator<Item = (Id, &ReplicaState)> {
    state
        .actor_states
        .iter()
        .enumerate()
        .filter(|(i, _)| !state.crashed[*i])
        .filter_map(|(i, s)| match &**s {
            ActorState::Replica(r) => Some((Id::from(i), r)),
            ActorState::Client(_) | ActorState::Down => None,
        })
}

/// The core records of the replicas that are up.
pub fn up(state: &VrState) -> Vec<&Replica<Register>> {
    live_replicas(state).map(|(_, r)| &r.replica).collect()
}
