//! A small in-memory cluster that moves effects between core replicas by hand.
//!
//! Nothing happens unless a test says so: messages wait in `network` until
//! delivered or dropped, timers fire only when a test fires them. After every
//! step the model's invariants are checked over the replicas that are up, so
//! every scenario is also a safety check.

use std::collections::{BTreeSet, VecDeque};
use vr::app::{Kv, KvOperation, KvOutput};
use vr::core::{
    ClientId, Config, Effect, Envelope, Input, Message, Nonce, Replica, ReplicaId, Reply, Request,
    RequestNumber, Timer,
};

/// A message on its way: `envelope` is for replica `to`.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub to: ReplicaId,
    pub envelope: Envelope<Kv>,
}

/// The cluster: replicas (`None` while crashed), the messages in flight in the
/// order sent, the timers each replica has set, and the replies to clients.
pub struct Cluster {
    pub replicas: Vec<Option<Replica<Kv>>>,
    pub network: VecDeque<InFlight>,
    pub timers: Vec<BTreeSet<Timer>>,
    pub replies: Vec<Reply<Kv>>,
    /// Links (from, to) on which messages are lost.
    pub cut: BTreeSet<(ReplicaId, ReplicaId)>,
    configs: Vec<Config>,
    /// Every message delivered so far, for assertions about what was sent.
    pub delivered: Vec<InFlight>,
}

/// A put of `key` = `value`.
pub fn put(key: &str, value: &str) -> KvOperation {
    KvOperation::Put {
        key: key.into(),
        value: value.into(),
    }
}

/// A read of `key`.
pub fn get(key: &str) -> KvOperation {
    KvOperation::Get { key: key.into() }
}

impl Cluster {
    /// `replica_count` replicas, all Normal in view 0, with the default settings.
    pub fn new(replica_count: u8) -> Cluster {
        Cluster::with_config(Config::new(replica_count, ReplicaId(0)).expect("valid configuration"))
    }

    /// Replicas configured like `config` (its id is replaced by each replica's).
    pub fn with_config(config: Config) -> Cluster {
        let n = config.replica_count();
        let configs: Vec<Config> = (0..n)
            .map(|i| config.for_replica(ReplicaId(i)).expect("valid id"))
            .collect();
        let mut cluster = Cluster {
            replicas: Vec::new(),
            network: VecDeque::new(),
            timers: vec![BTreeSet::new(); usize::from(n)],
            replies: Vec::new(),
            cut: BTreeSet::new(),
            configs: configs.clone(),
            delivered: Vec::new(),
        };
        for config in configs {
            let mut effects = Vec::new();
            let replica = Replica::new(config, &mut effects);
            cluster.replicas.push(Some(replica));
            cluster.apply(config.id(), effects);
        }
        cluster.check();
        cluster
    }

    /// The replica `id`, which must be up.
    pub fn replica(&self, id: u8) -> &Replica<Kv> {
        self.replicas[usize::from(id)]
            .as_ref()
            .unwrap_or_else(|| panic!("replica {id} is crashed"))
    }

    /// Feeds one input to replica `id` and carries out its effects.
    pub fn step(&mut self, id: ReplicaId, input: Input<Kv>) {
        let mut effects = Vec::new();
        let replica = self.replicas[usize::from(id.0)]
            .as_mut()
            .unwrap_or_else(|| panic!("replica {id:?} is crashed"));
        replica.step(input, &mut effects);
        self.apply(id, effects);
        self.check();
    }

    fn apply(&mut self, id: ReplicaId, effects: Vec<Effect<Kv>>) {
        for effect in effects {
            match effect {
                Effect::Send { to, envelope } => self.network.push_back(InFlight { to, envelope }),
                Effect::SetTimer(timer) => {
                    self.timers[usize::from(id.0)].insert(timer);
                }
                Effect::CancelTimer(timer) => {
                    self.timers[usize::from(id.0)].remove(&timer);
                }
                Effect::Reply(reply) => self.replies.push(reply),
            }
        }
    }

    /// Checks every invariant of the model over the replicas that are up.
    pub fn check(&self) {
        let up: Vec<&Replica<Kv>> = self.replicas.iter().flatten().collect();
        if let Err(violation) = vr_model::invariants::check_all(&up) {
            panic!("{violation}\nreplicas: {up:#?}");
        }
    }

    /// Client `client` sends request `request` for `operation` to replica `to`.
    pub fn request(&mut self, to: u8, client: u64, request: u64, operation: KvOperation) {
        let request = Request {
            operation,
            client: ClientId(client),
            request: RequestNumber(request),
        };
        self.step(ReplicaId(to), Input::Request(request));
    }

    /// Delivers the messages in flight, oldest first, including those sent
    /// while delivering, until none is left. Messages to crashed replicas or
    /// over cut links are lost. Returns how many were delivered.
    pub fn deliver_all(&mut self) -> usize {
        self.deliver_while(|_| true)
    }

    /// Like `deliver_all`, but messages for which `keep` is false are dropped.
    pub fn deliver_while(&mut self, mut keep: impl FnMut(&InFlight) -> bool) -> usize {
        let mut delivered = 0;
        while let Some(m) = self.network.pop_front() {
            assert!(delivered < 100_000, "the network never quiesced");
            if self.lost(&m) || !keep(&m) {
                continue;
            }
            self.deliver_one(m);
            delivered += 1;
        }
        delivered
    }

    /// Delivers the oldest message in flight matching `pick`, leaving the rest
    /// in place. Panics if none matches.
    pub fn deliver_first(&mut self, pick: impl Fn(&InFlight) -> bool) {
        let index = self
            .network
            .iter()
            .position(pick)
            .expect("a message in flight matches");
        let m = self.network.remove(index).expect("index in range");
        assert!(!self.lost(&m), "the picked message would be lost");
        self.deliver_one(m);
    }

    /// Delivers `m` now, whether or not it is in flight (a duplicate).
    pub fn deliver_one(&mut self, m: InFlight) {
        self.delivered.push(m.clone());
        self.step(m.to, Input::Deliver(m.envelope));
    }

    /// Drops every message in flight matching `pick`; returns how many.
    pub fn drop_where(&mut self, pick: impl Fn(&InFlight) -> bool) -> usize {
        let before = self.network.len();
        self.network.retain(|m| !pick(m));
        before - self.network.len()
    }

    fn lost(&self, m: &InFlight) -> bool {
        self.replicas[usize::from(m.to.0)].is_none() || self.cut.contains(&(m.envelope.from, m.to))
    }

    /// Cuts every link to and from `id` (it stays up).
    pub fn isolate(&mut self, id: u8) {
        for other in 0..self.replicas.len() as u8 {
            if other != id {
                self.cut.insert((ReplicaId(id), ReplicaId(other)));
                self.cut.insert((ReplicaId(other), ReplicaId(id)));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether `timer` is set at replica `id`.
    pub fn timer_set(&self, id: u8, timer: Timer) -> bool {
        self.timers[usize::from(id)].contains(&timer)
    }

    /// Fires `timer` at replica `id`; it must be set.
    pub fn fire(&mut self, id: u8, timer: Timer) {
        assert!(
            self.timers[usize::from(id)].remove(&timer),
            "{timer:?} is not set at replica {id}"
        );
        self.step(ReplicaId(id), Input::Timeout(timer));
    }

    /// Crashes replica `id`: its state and timers are gone.
    pub fn crash(&mut self, id: u8) {
        self.replicas[usize::from(id)] = None;
        self.timers[usize::from(id)].clear();
    }

    /// Restarts crashed replica `id`, which begins recovery with `nonce`.
    pub fn restart(&mut self, id: u8, nonce: u64) {
        assert!(
            self.replicas[usize::from(id)].is_none(),
            "replica {id} is up"
        );
        let mut effects = Vec::new();
        let replica = Replica::restart(self.configs[usize::from(id)], Nonce(nonce), &mut effects);
        self.replicas[usize::from(id)] = Some(replica);
        self.apply(ReplicaId(id), effects);
        self.check();
    }

    /// The replies client `client` received for request `request`.
    pub fn replies_to(&self, client: u64, request: u64) -> Vec<&KvOutput> {
        self.replies
            .iter()
            .filter(|r| r.client == ClientId(client) && r.request == RequestNumber(request))
            .map(|r| &r.output)
            .collect()
    }

    /// Commits `operation` as `client`'s request `request` through the current
    /// primary `primary`, delivering everything; returns its single reply.
    pub fn commit(
        &mut self,
        primary: u8,
        client: u64,
        request: u64,
        operation: KvOperation,
    ) -> KvOutput {
        let before = self.replies_to(client, request).len();
        self.request(primary, client, request, operation);
        self.deliver_all();
        let replies = self.replies_to(client, request);
        assert_eq!(
            replies.len(),
            before + 1,
            "the request got exactly one new reply"
        );
        replies[before].clone()
    }

    /// Fires the Resend timer at `id` `times` times, delivering everything
    /// after each expiry (each expiry is one more attempt per message).
    pub fn fire_resends(&mut self, id: u8, times: usize) {
        for _ in 0..times {
            self.fire(id, Timer::Resend);
            self.deliver_all();
        }
    }

    /// The messages delivered so far of type `name` sent by `from`.
    pub fn delivered_of(&self, name: &str, from: u8) -> Vec<&InFlight> {
        self.delivered
            .iter()
            .filter(|m| m.envelope.msg.name() == name && m.envelope.from == ReplicaId(from))
            .collect()
    }
}

/// Whether `m` is of message type `name`.
pub fn is(m: &InFlight, name: &str) -> bool {
    m.envelope.msg.name() == name
}

/// Whether `m` goes from `from` to `to`.
pub fn between(m: &InFlight, from: u8, to: u8) -> bool {
    m.envelope.from == ReplicaId(from) && m.to == ReplicaId(to)
}

/// Whether `m` is not an Ack.
pub fn not_ack(m: &InFlight) -> bool {
    !matches!(m.envelope.msg, Message::Ack(_))
}
