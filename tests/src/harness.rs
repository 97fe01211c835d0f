//! A small in-memory cluster that moves effects between core replicas by hand.
//!
//! Nothing happens unless a test says so: messages wait in `network` until
//! delivered or dropped, timers fire only when a test fires them. After every
//! step the model's invariants are checked over the replicas that are up, so
//! every scenario is also a safety check.

use std::collections::{BTreeSet, VecDeque};
use vr::app::{Kv, KvOperation, KvOutput};
use vr::core::{
    ClientId, Command, CommitNumber, Config, Effect, Envelope, Input, Message, Nonce, OpNumber,
    Outcome, Replica, ReplicaId, Reply, Request, RequestNumber, Timer,
};
use vr::runtime::storage::{CrashFault, MemoryDisk, Opened, Storage};

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
    /// Durable mode: each replica's storage (spec/protocol.md,
    /// "Durability"); None in the default, in-memory mode.
    pub disks: Option<Disks>,
}

/// The replicas' storages in durable mode.
pub struct Disks {
    /// Per replica: its storage while up, its disk while crashed.
    slots: Vec<Slot>,
    /// Per replica: the Sends and Replies waiting for the storage's next
    /// sync (group commit); empty unless `group_commit`.
    held: Vec<Vec<Effect<Kv>>>,
    /// Whether writes wait for an explicit [`Cluster::sync`] (and a crash
    /// can lose them); otherwise every step syncs at its end.
    pub group_commit: bool,
    /// Restarts whose storage was found corrupt (so recovered from peers).
    pub corrupt_restarts: usize,
    /// Restarts from a storage whose torn last write was cut off.
    pub torn_restarts: usize,
    /// A deliberately wrong driver, for showing that the rule matters:
    /// Sends and Replies go out at once, before the writes they depend on
    /// are synced.
    pub send_before_sync: bool,
}

enum Slot {
    Up(Storage<Kv, MemoryDisk>),
    Down(MemoryDisk),
    Moving,
}

/// How many client sessions every cluster starts with: clients 1 to
/// `SESSIONS` are registered (spec/protocol.md, "Client sessions") before a
/// test begins, client k by the Register at op-number k, so every log starts
/// with these entries, all committed everywhere.
pub const SESSIONS: u64 = 8;

/// The session id of the harness's client `k` (1 to [`SESSIONS`]); for any
/// other k an id the cluster never granted.
pub fn session(k: u64) -> ClientId {
    ClientId::granted(OpNumber(k), k)
}

/// Op-number `n` of a test's own entries: the `n`th after the sessions'.
pub fn op(n: u64) -> OpNumber {
    OpNumber(SESSIONS + n)
}

/// Commit-number `n` of a test's own entries.
pub fn commit(n: u64) -> CommitNumber {
    CommitNumber(SESSIONS + n)
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
            disks: None,
        };
        for config in configs {
            let mut effects = Vec::new();
            let replica = Replica::new(config, &mut effects);
            cluster.replicas.push(Some(replica));
            cluster.apply(config.id(), effects);
        }
        cluster.check();
        cluster.open_sessions();
        cluster
    }

    /// Like [`Cluster::with_config`], in durable mode: every replica keeps
    /// its state in an in-memory storage and a restart rebuilds it from
    /// there. With `group_commit`, Sends and Replies wait for
    /// [`Cluster::sync`], and a crash may lose, tear or corrupt what was
    /// not synced.
    pub fn durable(config: Config, group_commit: bool) -> Cluster {
        let n = config.replica_count();
        let mut disks = Disks {
            slots: Vec::new(),
            held: vec![Vec::new(); usize::from(n)],
            group_commit,
            corrupt_restarts: 0,
            torn_restarts: 0,
            send_before_sync: false,
        };
        for i in 0..n {
            let config = config.for_replica(ReplicaId(i)).expect("valid id");
            let (storage, opened) =
                Storage::open(MemoryDisk::default(), &config).expect("memory cannot fail");
            assert!(matches!(opened, Opened::Empty));
            disks.slots.push(Slot::Up(storage));
        }
        let mut cluster = Cluster {
            replicas: Vec::new(),
            network: VecDeque::new(),
            timers: vec![BTreeSet::new(); usize::from(n)],
            replies: Vec::new(),
            cut: BTreeSet::new(),
            configs: Vec::new(),
            delivered: Vec::new(),
            disks: Some(disks),
        };
        for i in 0..n {
            let config = config.for_replica(ReplicaId(i)).expect("valid id");
            cluster.configs.push(config);
            let mut effects = Vec::new();
            let replica = Replica::new(config, &mut effects);
            cluster.replicas.push(Some(replica));
            cluster.apply(config.id(), effects);
        }
        cluster.sync_all();
        cluster.check();
        cluster.open_sessions();
        cluster
    }

    /// Registers clients 1 to [`SESSIONS`] through primary 0, commits them
    /// everywhere (a heartbeat), and forgets the traffic: a test starts from
    /// a quiet cluster whose clients have sessions.
    fn open_sessions(&mut self) {
        for k in 1..=SESSIONS {
            let register = Request {
                operation: Command::Register,
                client: ClientId::provisional(k),
                request: RequestNumber(1),
            };
            self.step(ReplicaId(0), Input::Request(register));
            self.deliver_and_sync();
        }
        self.fire(0, Timer::Heartbeat);
        self.deliver_and_sync();
        for k in 1..=SESSIONS {
            assert!(
                self.replicas
                    .iter()
                    .flatten()
                    .all(|r| r.client_table().get(session(k)).is_some()),
                "client {k}'s session is open everywhere"
            );
        }
        self.replies.clear();
        self.delivered.clear();
    }

    /// Durable mode: makes replica `id`'s writes durable, then carries out
    /// the Sends and Replies that waited for them.
    pub fn sync(&mut self, id: u8) {
        let Some(disks) = &mut self.disks else {
            return;
        };
        let Slot::Up(storage) = &mut disks.slots[usize::from(id)] else {
            return;
        };
        storage.sync().expect("memory cannot fail");
        let held = std::mem::take(&mut disks.held[usize::from(id)]);
        for effect in held {
            self.carry_out(ReplicaId(id), effect);
        }
    }

    /// Durable mode: syncs every replica.
    pub fn sync_all(&mut self) {
        for id in 0..self.replicas.len() as u8 {
            self.sync(id);
        }
    }

    /// Durable mode: whether replica `id` has writes not yet synced.
    pub fn unsynced(&self, id: u8) -> bool {
        self.disks
            .as_ref()
            .is_some_and(|d| match &d.slots[usize::from(id)] {
                Slot::Up(storage) => storage.has_unsynced(),
                _ => false,
            })
    }

    /// Durable mode: crashes replica `id`, and `fault` befalls the writes
    /// its disk holds (a plain [`Cluster::crash`] loses the unsynced ones).
    pub fn crash_with(&mut self, id: u8, fault: CrashFault) {
        self.replicas[usize::from(id)] = None;
        self.timers[usize::from(id)].clear();
        let disks = self.disks.as_mut().expect("durable mode");
        disks.held[usize::from(id)].clear();
        let slot = &mut disks.slots[usize::from(id)];
        match std::mem::replace(slot, Slot::Moving) {
            Slot::Up(storage) => {
                let mut disk = storage.into_disk();
                disk.crash(fault);
                *slot = Slot::Down(disk);
            }
            other => *slot = other,
        }
    }

    /// Durable mode: what replica `id` holds durably (once synced).
    pub fn kept(&self, id: u8) -> Option<&vr::core::Durable<Kv>> {
        match &self.disks.as_ref()?.slots[usize::from(id)] {
            Slot::Up(storage) => Some(storage.kept()),
            _ => None,
        }
    }

    /// Durable mode: restarts replica `id` from its disk; a corrupt disk
    /// (or one that contradicts itself) makes it recover with `nonce`.
    fn restart_from_disk(&mut self, id: u8, nonce: u64) -> (Replica<Kv>, Vec<Effect<Kv>>) {
        let config = self.configs[usize::from(id)];
        let disks = self.disks.as_mut().expect("durable mode");
        let slot = &mut disks.slots[usize::from(id)];
        let Slot::Down(disk) = std::mem::replace(slot, Slot::Moving) else {
            panic!("replica {id} is up");
        };
        let (storage, opened) = Storage::open(disk, &config).expect("memory cannot fail");
        *slot = Slot::Up(storage);
        let mut effects = Vec::new();
        let rebuilt = match opened {
            Opened::Kept { durable, torn } => {
                disks.torn_restarts += usize::from(torn);
                Replica::from_durable(config, durable, &mut effects).ok()
            }
            Opened::Empty | Opened::Corrupt(_) => None,
        };
        match rebuilt {
            Some(replica) => (replica, effects),
            None => {
                disks.corrupt_restarts += 1;
                effects.clear();
                let replica = Replica::restart(config, Nonce(nonce), &mut effects);
                (replica, effects)
            }
        }
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
            let Some(disks) = &mut self.disks else {
                self.carry_out(id, effect);
                continue;
            };
            let index = usize::from(id.0);
            match effect {
                Effect::Persist(persist) => {
                    let Slot::Up(storage) = &mut disks.slots[index] else {
                        panic!("replica {id:?} is up without its storage");
                    };
                    storage.persist(&persist).expect("memory cannot fail");
                }
                Effect::Send { .. } | Effect::Reply(_)
                    if disks.group_commit
                        && !disks.send_before_sync
                        && (!disks.held[index].is_empty()
                            || matches!(&disks.slots[index], Slot::Up(s) if s.has_unsynced())) =>
                {
                    disks.held[index].push(effect)
                }
                Effect::Send { .. } | Effect::Reply(_) if !disks.group_commit => {
                    // One sync per step: before anything leaves.
                    if let Slot::Up(storage) = &mut disks.slots[index] {
                        storage.sync().expect("memory cannot fail");
                    }
                    self.carry_out(id, effect)
                }
                other => self.carry_out(id, other),
            }
        }
        if let Some(disks) = &mut self.disks
            && let Slot::Up(storage) = &mut disks.slots[usize::from(id.0)]
        {
            if disks.group_commit {
                // The step's writes reach the disk as one record, not yet
                // synced.
                storage.write().expect("memory cannot fail");
            } else {
                storage.sync().expect("memory cannot fail");
            }
        }
    }

    fn carry_out(&mut self, id: ReplicaId, effect: Effect<Kv>) {
        match effect {
            Effect::Persist(_) => {}
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
            operation: Command::Apply(operation),
            client: session(client),
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

    /// Like `deliver_all`, but in durable mode every replica also syncs
    /// whenever the network is quiet, until nothing waits for a sync.
    pub fn deliver_and_sync(&mut self) -> usize {
        let mut delivered = 0;
        loop {
            self.sync_all();
            let now = self.deliver_all();
            if now == 0 {
                return delivered;
            }
            delivered += now;
        }
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

    /// Crashes replica `id`: its state and timers are gone (in durable
    /// mode, its unsynced writes too).
    pub fn crash(&mut self, id: u8) {
        if self.disks.is_some() {
            self.crash_with(id, CrashFault::LoseUnsynced);
            return;
        }
        self.replicas[usize::from(id)] = None;
        self.timers[usize::from(id)].clear();
    }

    /// Restarts crashed replica `id`, which begins recovery with `nonce`
    /// (in durable mode: restarts from its disk, and recovers only if that
    /// is corrupt).
    pub fn restart(&mut self, id: u8, nonce: u64) {
        assert!(
            self.replicas[usize::from(id)].is_none(),
            "replica {id} is up"
        );
        let (replica, effects) = if self.disks.is_some() {
            self.restart_from_disk(id, nonce)
        } else {
            let mut effects = Vec::new();
            let replica =
                Replica::restart(self.configs[usize::from(id)], Nonce(nonce), &mut effects);
            (replica, effects)
        };
        self.replicas[usize::from(id)] = Some(replica);
        self.apply(ReplicaId(id), effects);
        self.check();
    }

    /// The outputs client `client` received for request `request`.
    pub fn replies_to(&self, client: u64, request: u64) -> Vec<&KvOutput> {
        self.outcomes_to(session(client), request)
            .into_iter()
            .filter_map(|outcome| match outcome {
                Outcome::Output(output) => Some(output),
                _ => None,
            })
            .collect()
    }

    /// Every answer `client` received for request `request`, refusals
    /// included.
    pub fn outcomes_to(&self, client: ClientId, request: u64) -> Vec<&Outcome<Kv>> {
        self.replies
            .iter()
            .filter(|r| r.client == client && r.request == RequestNumber(request))
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
