//! The model's actors. A replica actor's state is the core's `Replica` and its
//! handlers call the core's `step`; this module only translates effects into
//! stateright's `Out`. Client actors issue a bounded sequence of requests.

use crate::register::{Register, RegisterOperation};
use stateright::actor::{Actor, Id, Out, model_timeout};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use vr::core::{
    ClientId, Command, Config, Durable, Effect, Envelope, Input, Message, Nonce, Replica,
    ReplicaId, Reply, Request, RequestNumber, Status, Timer, View,
};

/// A message between actors: replica to replica in the core's envelope, or
/// between a client and a replica.
///
/// A replica's envelope is behind an Arc: every state holds a copy of the
/// network, and with the envelope inline (the largest message, a
/// DoViewChange, is 80 bytes and owns a vector of entries) each copy of each
/// message in flight was a deep clone. An Arc hashes and compares as what it
/// points to, so the states and their fingerprints are the same.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Msg {
    Replica(Arc<Envelope<Register>>),
    Request(Request<Register>),
    Reply(Reply<Register>),
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Replica(envelope) => envelope.msg.fmt(f),
            Msg::Request(request) => request.fmt(f),
            Msg::Reply(reply) => reply.fmt(f),
        }
    }
}

/// A timer of a replica (the core's) or of a client (its retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelTimer {
    Replica(Timer),
    ClientRetry,
}

/// The model's actors: the replicas first (actor i is replica i), then the
/// clients (actor n + k is client k).
#[derive(Clone, Debug)]
pub enum VrActor {
    /// A replica; replicas 0 .. `down` are down for good, so messages to them
    /// are lost at once rather than left in the network forever.
    Replica {
        config: Config,
        down: u8,
        /// The state a prelude built, and the timers it had set: the
        /// replica's first start takes it instead of starting empty.
        start: Option<Arc<(Replica<Register>, BTreeSet<Timer>)>>,
        /// Durable mode: a crashed replica restarts from the durable fields
        /// it held when it crashed (spec/protocol.md, "Restarting from
        /// disk"), not by recovery.
        durable: bool,
    },
    /// A replica that is down from the start and never runs.
    Down { config: Config },
    Client {
        replica_count: u8,
        requests: u8,
        /// A newcomer: instead of requests, one Register under the
        /// provisional id [`newcomer_id`] (it opens a session, which may
        /// prune a model client's).
        newcomer: bool,
    },
}

/// What a replica has done that no state shows later: the `sometimes`
/// properties look for these. Each flag only ever turns on.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Witness {
    /// A StartViewChange or DoViewChange from a replica already counted in
    /// this view change arrived, and the count did not change.
    pub duplicate_view_change_not_counted: bool,
    /// This replica finished a recovery.
    pub recovered: bool,
    /// This replica finished a state transfer (a NewState completed a gap or
    /// a catch-up).
    pub state_transferred: bool,
    /// As primary(v), this replica fetched the committed entries its chosen
    /// log left out (a fill) and started the view.
    pub filled: bool,
    /// This replica received the last part of another's checkpoint (in
    /// place of entries that one had discarded) and took it: installed it,
    /// or staged it for a catch-up or a fill.
    pub checkpoint_fetched: bool,
}

impl fmt::Debug for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            (self.duplicate_view_change_not_counted, "dup-not-counted"),
            (self.recovered, "recovered"),
            (self.state_transferred, "transferred"),
            (self.filled, "filled"),
            (self.checkpoint_fetched, "checkpoint-fetched"),
        ];
        let on: Vec<&str> = flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "{}", on.join(","))
    }
}

/// A replica actor's state: the core's record and what it witnessed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplicaState {
    pub replica: Replica<Register>,
    pub witness: Witness,
    /// Durable mode: the replica's count of starts (0 otherwise), kept
    /// with its durable state.
    pub starts: u64,
    /// Durable mode: what its storage holds, built as a real storage builds
    /// it, by applying each `Effect::Persist` the core emitted
    /// (`Durable::apply`), so that a restart tests the Persist stream, not a
    /// snapshot of the record.
    /// Shared with the storage the actor saves: one copy, not two.
    pub stored: Option<Arc<Durable<Register>>>,
}

/// What survives a replica's crash: its count of starts (the nonce of its
/// next recovery) and, in durable mode, its durable fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kept {
    pub starts: u64,
    /// Behind an Arc: every state holds a `Kept` per actor, and the
    /// durable fields (a log, a client table, a checkpoint) would otherwise
    /// make each of them large even when absent.
    pub durable: Option<Arc<vr::core::Durable<Register>>>,
}

/// A client's state: its next request and, while waiting, the request out.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientState {
    /// The request awaiting its reply, if any.
    pub awaiting: Option<Request<Register>>,
    /// How many requests have completed.
    pub completed: u8,
    /// The latest view a reply came from: its primary is whom to ask.
    pub view: View,
}

/// An actor's state. Not boxed: stateright already keeps each behind an Arc.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ActorState {
    Replica(ReplicaState),
    Client(ClientState),
    Down,
}

impl fmt::Debug for ActorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActorState::Replica(r) => {
                write!(f, "{:?}", r.replica)?;
                if r.witness != Witness::default() {
                    write!(f, " [{:?}]", r.witness)?;
                }
                Ok(())
            }
            ActorState::Down => write!(f, "down"),
            ActorState::Client(c) => match &c.awaiting {
                Some(request) => write!(f, "client done={} awaiting {request:?}", c.completed),
                None => write!(f, "client done={}", c.completed),
            },
        }
    }
}

/// The operation client `client` issues as its request `request`: writes of a
/// value unique to the client and request, and reads in between.
pub fn client_operation(client: ClientId, request: RequestNumber) -> RegisterOperation {
    if request.0 % 2 == 1 {
        RegisterOperation::Write((client.0 as u8 + 1) * 10 + request.0 as u8)
    } else {
        RegisterOperation::Read
    }
}

/// The session id of model client `k` (the actor `replica_count + k`): the
/// model starts with every client registered (spec/protocol.md, "Client
/// sessions"), client k with secret k by the Register at op-number k + 1
/// ([`crate::prelude::open_sessions`]).
pub fn session_of(k: u64) -> ClientId {
    ClientId::granted(vr::core::OpNumber(k + 1), k)
}

/// The client's id for the actor `id` in a cluster of `replica_count`.
pub fn client_id(id: Id, replica_count: u8) -> ClientId {
    session_of(usize::from(id) as u64 - u64::from(replica_count))
}

/// The secrets of newcomers' provisional ids start here: the actor's id
/// plus this.
const NEWCOMER_SECRET_BASE: u64 = 1000;

/// The provisional id a newcomer (actor `id`) registers under.
pub fn newcomer_id(id: Id) -> ClientId {
    ClientId::provisional(NEWCOMER_SECRET_BASE + usize::from(id) as u64)
}

/// The actor of client `client`, if it is a model client's session or a
/// newcomer's provisional id (the prelude's client is not an actor).
pub fn client_actor(client: ClientId, replica_count: u8) -> Option<Id> {
    let k = client.secret();
    if client.register_op().is_none() && k >= NEWCOMER_SECRET_BASE {
        return Some(Id::from((k - NEWCOMER_SECRET_BASE) as usize));
    }
    (client == session_of(k)).then(|| Id::from(k as usize + usize::from(replica_count)))
}

impl VrActor {
    fn on_replica_effects(
        effects: Vec<Effect<Register>>,
        replica_count: u8,
        down: u8,
        o: &mut Out<Self>,
    ) {
        for effect in effects {
            match effect {
                Effect::Send { to, envelope } if to.0 < down => drop(envelope),
                Effect::Send { to, envelope } => o.send(
                    Id::from(usize::from(to.0)),
                    Msg::Replica(Arc::new(envelope)),
                ),
                Effect::SetTimer(timer) => o.set_timer(ModelTimer::Replica(timer), model_timeout()),
                Effect::CancelTimer(timer) => o.cancel_timer(ModelTimer::Replica(timer)),
                // Durable at once: a step is atomic here, and with the
                // `durable` flag a crashed replica restarts from the durable
                // fields it held when it crashed.
                Effect::Persist(_) => {}
                Effect::Reply(reply) => {
                    // The prelude's client is not an actor.
                    if let Some(client) = client_actor(reply.client, replica_count) {
                        o.send(client, Msg::Reply(reply))
                    }
                }
            }
        }
    }

    /// Runs the core's `step` on a copy of the replica, keeping the original
    /// (a borrowed `Cow`, so stateright prunes the step) when nothing changed.
    fn step_replica(
        state: &mut Cow<ActorState>,
        input: Input<Register>,
        replica_count: u8,
        (down, durable): (u8, bool),
        o: &mut Out<Self>,
    ) {
        let ActorState::Replica(current) = &**state else {
            return;
        };
        let witness = witness_of(&current.replica, &input);
        let message = match &input {
            Input::Deliver(e) => Some(e.msg.name()),
            _ => None,
        };
        let mut next = current.replica.clone();
        let mut effects = Vec::new();
        next.step(input, &mut effects);
        let witness = witness.merge(current.witness, &current.replica, &next, message);
        let mut stored = current.stored.clone();
        if durable && effects.iter().any(|e| matches!(e, Effect::Persist(_))) {
            // Durable at the step's end, before anything it sent arrives.
            apply_persists(Arc::make_mut(stored.get_or_insert_default()), &effects);
            o.save(Kept {
                starts: current.starts,
                durable: stored.clone(),
            });
        }
        if next != current.replica || witness != current.witness || stored != current.stored {
            *state = Cow::Owned(ActorState::Replica(ReplicaState {
                replica: next,
                witness,
                starts: current.starts,
                stored,
            }));
        }
        Self::on_replica_effects(effects, replica_count, down, o);
    }

    fn send_request(request: &Request<Register>, to: Id, o: &mut Out<Self>) {
        o.send(to, Msg::Request(request.clone()));
    }
}

/// Applies a step's `Persist` effects, in order, to what storage holds.
fn apply_persists(stored: &mut Durable<Register>, effects: &[Effect<Register>]) {
    for effect in effects {
        if let Effect::Persist(persist) = effect {
            stored.apply(persist);
        }
    }
}

/// What delivering `input` to `replica` will witness, judged before the step.
fn witness_of(replica: &Replica<Register>, input: &Input<Register>) -> Witness {
    let mut witness = Witness::default();
    if let Input::Deliver(envelope) = input
        && replica.status() == Status::ViewChange
    {
        let caches = replica.view_change_caches();
        witness.duplicate_view_change_not_counted = match &envelope.msg {
            Message::StartViewChange(m) => {
                m.view == replica.view()
                    && caches.start_view_change_from().any(|r| r == envelope.from)
            }
            Message::DoViewChange(m) => {
                m.view == replica.view() && caches.do_view_change_from().any(|r| r == envelope.from)
            }
            _ => false,
        };
    }
    witness
}

impl Witness {
    fn merge(
        self,
        before: Witness,
        old: &Replica<Register>,
        new: &Replica<Register>,
        message: Option<&'static str>,
    ) -> Witness {
        let new_state = message == Some("NewState");
        // Where a fetched checkpoint goes: installed, or staged by a
        // catch-up or a fill. A NewCheckpoint that completes none leaves
        // these as they were.
        let fetched = |r: &Replica<Register>| {
            (
                r.checkpoint().map(|c| c.commit),
                r.catch_up().and_then(|c| c.checkpoint()).map(|c| c.commit),
                r.commit_number(),
            )
        };
        let counts = |r: &Replica<Register>| {
            let c = r.view_change_caches();
            (
                c.start_view_change_from().count(),
                c.do_view_change_from().count(),
            )
        };
        Witness {
            duplicate_view_change_not_counted: before.duplicate_view_change_not_counted
                || (self.duplicate_view_change_not_counted && counts(old) == counts(new)),
            recovered: before.recovered
                || (old.status() == Status::Recovering && new.status() == Status::Normal),
            state_transferred: before.state_transferred
                || (new_state
                    && new.status() == Status::Normal
                    && (old.status() != Status::Normal || new.op_number() > old.op_number())),
            filled: before.filled
                || (old.view_change_caches().fill().is_some()
                    && new.status() == Status::Normal
                    && new.is_primary()),
            checkpoint_fetched: before.checkpoint_fetched
                || (message == Some("NewCheckpoint")
                    && new.restore().is_none()
                    && (old.restore().is_some() || fetched(old) != fetched(new))),
        }
    }
}

impl Actor for VrActor {
    type Msg = Msg;
    type State = ActorState;
    type Timer = ModelTimer;
    /// What survives a replica's crash.
    type Storage = Kept;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Kept>, o: &mut Out<Self>) -> ActorState {
        match self {
            VrActor::Down { .. } => ActorState::Down,
            VrActor::Replica {
                config,
                down,
                start,
                durable,
            } => {
                let mut effects = Vec::new();
                let replica = match (storage, start) {
                    (None, Some(start)) => {
                        let (replica, timers) = &**start;
                        effects.extend(timers.iter().map(|&t| Effect::SetTimer(t)));
                        replica.clone()
                    }
                    (None, None) => Replica::new(*config, &mut effects),
                    (
                        Some(Kept {
                            durable: Some(kept),
                            ..
                        }),
                        _,
                    ) if *durable => Replica::from_durable(*config, (**kept).clone(), &mut effects)
                        .expect("the model's durable state is whole"),
                    (Some(kept), _) => Replica::restart(*config, Nonce(kept.starts), &mut effects),
                };
                let starts = storage.as_ref().map_or(0, |k| k.starts) + 1;
                // A first start's storage is empty, or holds the prelude's
                // state (built by running the core, as if persisted); a
                // restart's holds what the replica persisted before it crashed.
                let stored = durable.then(|| {
                    let mut stored = match (storage, start) {
                        (Some(kept), _) => kept.durable.as_deref().cloned().unwrap_or_default(),
                        (None, Some(_)) => replica.durable(),
                        (None, None) => Durable::default(),
                    };
                    apply_persists(&mut stored, &effects);
                    Arc::new(stored)
                });
                o.save(Kept {
                    starts,
                    durable: stored.clone(),
                });
                Self::on_replica_effects(effects, config.replica_count(), *down, o);
                ActorState::Replica(ReplicaState {
                    replica,
                    witness: Witness::default(),
                    starts: if *durable { starts } else { 0 },
                    stored,
                })
            }
            VrActor::Client {
                replica_count,
                requests,
                newcomer,
            } => {
                let client = client_id(id, *replica_count);
                let mut state = ClientState {
                    awaiting: None,
                    completed: 0,
                    view: View(0),
                };
                if *requests > 0 {
                    let request = if *newcomer {
                        Request {
                            operation: Command::Register,
                            client: newcomer_id(id),
                            request: RequestNumber(1),
                        }
                    } else {
                        Request {
                            operation: Command::Apply(client_operation(client, RequestNumber(1))),
                            client,
                            request: RequestNumber(1),
                        }
                    };
                    Self::send_request(&request, Id::from(0), o);
                    o.set_timer(ModelTimer::ClientRetry, model_timeout());
                    state.awaiting = Some(request);
                }
                ActorState::Client(state)
            }
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<ActorState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match (self, msg) {
            (
                VrActor::Replica {
                    config,
                    down,
                    durable,
                    ..
                },
                Msg::Replica(envelope),
            ) => {
                if usize::from(src) != usize::from(envelope.from.0) {
                    return;
                }
                Self::step_replica(
                    state,
                    Input::Deliver(Arc::unwrap_or_clone(envelope)),
                    config.replica_count(),
                    (*down, *durable),
                    o,
                );
            }
            (
                VrActor::Replica {
                    config,
                    down,
                    durable,
                    ..
                },
                Msg::Request(request),
            ) => {
                Self::step_replica(
                    state,
                    Input::Request(request),
                    config.replica_count(),
                    (*down, *durable),
                    o,
                );
            }
            (
                VrActor::Client {
                    replica_count,
                    requests,
                    ..
                },
                Msg::Reply(reply),
            ) => {
                let ActorState::Client(client) = &**state else {
                    return;
                };
                let Some(awaiting) = &client.awaiting else {
                    return;
                };
                if reply.request != awaiting.request || reply.client != awaiting.client {
                    return;
                }
                let mut next = client.clone();
                next.completed += 1;
                next.view = next.view.max(reply.view);
                next.awaiting = None;
                if reply.output == vr::core::Outcome::SessionExpired {
                    // The session is gone: the client stops (its request's
                    // outcome stays unknown in the history).
                    next.completed = *requests;
                }
                if next.completed < *requests {
                    let number = reply.request.next();
                    let request = Request {
                        operation: Command::Apply(client_operation(reply.client, number)),
                        client: reply.client,
                        request: number,
                    };
                    let primary = next.view.primary(*replica_count);
                    Self::send_request(&request, Id::from(usize::from(primary.0)), o);
                    o.set_timer(ModelTimer::ClientRetry, model_timeout());
                    next.awaiting = Some(request);
                } else {
                    o.cancel_timer(ModelTimer::ClientRetry);
                }
                *state = Cow::Owned(ActorState::Client(next));
            }
            _ => {}
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<ActorState>,
        timer: &ModelTimer,
        o: &mut Out<Self>,
    ) {
        match (self, timer) {
            (
                VrActor::Replica {
                    config,
                    down,
                    durable,
                    ..
                },
                ModelTimer::Replica(timer),
            ) => {
                Self::step_replica(
                    state,
                    Input::Timeout(*timer),
                    config.replica_count(),
                    (*down, *durable),
                    o,
                );
            }
            (VrActor::Client { replica_count, .. }, ModelTimer::ClientRetry) => {
                let ActorState::Client(client) = &**state else {
                    return;
                };
                if let Some(request) = &client.awaiting {
                    for replica in 0..*replica_count {
                        Self::send_request(request, Id::from(usize::from(replica)), o);
                    }
                    o.set_timer(ModelTimer::ClientRetry, model_timeout());
                }
            }
            _ => {}
        }
    }

    fn name(&self) -> String {
        match self {
            VrActor::Replica { config, .. } | VrActor::Down { config } => {
                format!("r{}", config.id())
            }
            VrActor::Client { .. } => "client".into(),
        }
    }
}

/// A replica's id as a stateright actor id.
pub fn replica_actor(id: ReplicaId) -> Id {
    Id::from(usize::from(id.0))
}
