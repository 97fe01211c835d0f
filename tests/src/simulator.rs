//! A seeded simulation: clients, a network that reorders, drops and
//! duplicates, timers that fire at random, crashes and restarts (at most f
//! replicas down at once), all chosen from one seed. The harness checks the
//! model's invariants after every step; at the end the clients' history must
//! be linearizable. A failure names its seed, and the same seed replays it.

use crate::harness::Cluster;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use vr::app::{KvOperation, KvOutput};
use vr::core::{ClientId, Config, Input, Outcome, ReplicaId, Request, RequestNumber, Timer, View};
use vr::runtime::storage::CrashFault;

/// The knobs of one simulation.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub replicas: u8,
    pub clients: u8,
    pub steps: usize,
    /// Chance that a message picked for delivery is lost instead.
    pub drop: f64,
    /// Chance that a delivered message stays in flight to arrive again.
    pub duplicate: f64,
    /// Chance per step that a timer fires.
    pub timer: f64,
    /// Chance per step that a replica crashes (while fewer than f are down).
    pub crash: f64,
    /// Chance per step that a crashed replica restarts.
    pub restart: f64,
    /// The replicas' configuration, if not the default for `replicas`.
    pub config: Option<Config>,
    /// After the faults, check that every outstanding request completes.
    pub settle: bool,
    /// Whether the settle phase first restarts every crashed replica. When
    /// false, the replicas crashed when the faults stop (at most f) stay
    /// down, and the rest must still complete every outstanding request: a
    /// new primary must not depend on a replica that never comes back.
    pub restart_in_settle: bool,
    /// Durable mode with storage faults (spec/protocol.md, "Durability"):
    /// None runs the in-memory mode.
    pub storage: Option<StorageFaults>,
}

/// Durable mode in the simulator: each replica's writes wait for a sync
/// (group commit) and so do its Sends and Replies; a crash loses, tears or
/// corrupts what its disk holds.
#[derive(Clone, Copy, Debug)]
pub struct StorageFaults {
    /// Chance per step that a replica syncs its writes (and what waited
    /// for them goes out).
    pub sync: f64,
    /// Of the crashes, the share (in sixteenths) that tear the unsynced
    /// writes and the share that corrupt a synced record; the rest lose the
    /// unsynced writes.
    pub tear_sixteenths: u8,
    pub corrupt_sixteenths: u8,
    /// Chance per step that every replica crashes at once (unsynced writes
    /// lost or torn, never corrupted).
    pub crash_all: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            replicas: 3,
            clients: 2,
            steps: 5_000,
            drop: 0.05,
            duplicate: 0.05,
            timer: 0.03,
            crash: 0.004,
            restart: 0.02,
            config: None,
            settle: true,
            restart_in_settle: true,
            storage: None,
        }
    }
}

/// What a run did, for the test's own assertions.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub completed: usize,
    pub max_view: u64,
    pub crashes: usize,
    pub max_commit: u64,
    /// Every outstanding request completed once the faults stopped.
    pub settled: bool,
    /// Replicas that stayed down through the settle phase.
    pub down_through_settle: usize,
    /// Steps after which some primary(v) was fetching committed entries its
    /// chosen DoViewChange left out.
    pub fill_steps: usize,
    /// Steps after which some recovering replica was fetching the primary's
    /// log by state transfer.
    pub recovery_transfer_steps: usize,
    /// Steps after which some replica was fetching a checkpoint.
    pub checkpoint_fetch_steps: usize,
    /// Steps after which some replica had compacted its log.
    pub compacted_steps: usize,
    /// Durable mode: whole-cluster crashes, restarts from a storage found
    /// corrupt (the replica recovered from its peers), and restarts from a
    /// storage whose torn last write was cut off.
    pub cluster_crashes: usize,
    pub corrupt_restarts: usize,
    pub torn_restarts: usize,
}

/// A small, fast, seedable generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct SimClient {
    id: ClientId,
    next: RequestNumber,
    outstanding: Option<Request<vr::app::Kv>>,
    view: View,
}

/// Runs one simulation from `seed`; panics (with the seed) on a broken
/// invariant or a non-linearizable history.
pub fn run(seed: u64, cfg: SimConfig) -> SimReport {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| simulate(seed, cfg)));
    match outcome {
        Ok(report) => report,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("simulation seed {seed} ({cfg:?}) failed: {message}");
        }
    }
}

/// One step of a simulation. Indices are taken modulo what is there to
/// choose from at that moment, so any sequence of choices is a valid
/// schedule: that is what lets proptest shrink one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Client `client` sends its next operation (a write, or a read), or
    /// retries its outstanding one to every replica.
    Client { client: u8, write: bool },
    /// A set timer fires.
    Timer(u16),
    /// A replica that is up crashes (ignored while f are down).
    Crash(u8),
    /// A crashed replica restarts and recovers.
    Restart(u8),
    /// Durable mode: a replica syncs its writes; what waited goes out.
    Sync(u8),
    /// Durable mode: every replica crashes at once.
    CrashAll(u16),
    /// A message in flight arrives.
    Deliver(u16),
    /// A message in flight is lost.
    Lose(u16),
    /// A message in flight arrives and stays in flight to arrive again.
    Duplicate(u16),
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Client {
                client,
                write: true,
            } => write!(f, "w{client}"),
            Choice::Client {
                client,
                write: false,
            } => write!(f, "r{client}"),
            Choice::Timer(i) => write!(f, "t{i}"),
            Choice::Crash(i) => write!(f, "x{i}"),
            Choice::Restart(i) => write!(f, "s{i}"),
            Choice::Sync(i) => write!(f, "y{i}"),
            Choice::CrashAll(i) => write!(f, "X{i}"),
            Choice::Deliver(i) => write!(f, "d{i}"),
            Choice::Lose(i) => write!(f, "l{i}"),
            Choice::Duplicate(i) => write!(f, "u{i}"),
        }
    }
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(token: &str) -> Result<Choice, String> {
        let (kind, number) = token.split_at(1.min(token.len()));
        let n: u16 = number.parse().map_err(|_| format!("bad step {token:?}"))?;
        let small = u8::try_from(n).map_err(|_| format!("bad step {token:?}"));
        Ok(match kind {
            "w" => Choice::Client {
                client: small?,
                write: true,
            },
            "r" => Choice::Client {
                client: small?,
                write: false,
            },
            "t" => Choice::Timer(n),
            "x" => Choice::Crash(small?),
            "s" => Choice::Restart(small?),
            "y" => Choice::Sync(small?),
            "X" => Choice::CrashAll(n),
            "d" => Choice::Deliver(n),
            "l" => Choice::Lose(n),
            "u" => Choice::Duplicate(n),
            _ => return Err(format!("bad step {token:?}")),
        })
    }
}

/// Parses a schedule written as space-separated steps ("w0 d3 t1 ...").
pub fn parse_schedule(text: &str) -> Result<Vec<Choice>, String> {
    text.split_whitespace().map(str::parse).collect()
}

/// Writes a schedule as [`parse_schedule`] reads it.
pub fn format_schedule(schedule: &[Choice]) -> String {
    schedule
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A simulated cluster with its clients and their history.
struct World {
    cluster: Cluster,
    clients: Vec<SimClient>,
    history: LinearizabilityTester<ClientId, Register<u64>>,
    report: SimReport,
    nonce: u64,
    seen_replies: usize,
    f: usize,
    storage: Option<StorageFaults>,
}

impl World {
    fn new(cfg: &SimConfig) -> World {
        let config = cfg.config.unwrap_or_else(|| {
            Config::new(cfg.replicas, ReplicaId(0)).expect("valid replica count")
        });
        World {
            f: config.f(),
            cluster: match cfg.storage {
                Some(_) => Cluster::durable(config, true),
                None => Cluster::with_config(config),
            },
            clients: (0..cfg.clients.max(1))
                .map(|i| SimClient {
                    id: crate::harness::session(u64::from(i) + 1),
                    next: RequestNumber(1),
                    outstanding: None,
                    view: View(0),
                })
                .collect(),
            history: LinearizabilityTester::new(Register(0u64)),
            report: SimReport::default(),
            nonce: 1_000,
            seen_replies: 0,
            storage: cfg.storage,
        }
    }

    fn apply(&mut self, choice: Choice) {
        let n = self.cluster.replicas.len();
        match choice {
            Choice::Client { client, write } => {
                let index = usize::from(client) % self.clients.len();
                client_step(
                    write,
                    &mut self.cluster,
                    &mut self.clients[index],
                    &mut self.history,
                );
            }
            Choice::Timer(i) => {
                let set: Vec<(u8, Timer)> = self
                    .cluster
                    .timers
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| self.cluster.replicas[*r].is_some())
                    .flat_map(|(r, timers)| timers.iter().map(move |t| (r as u8, *t)))
                    .collect();
                if !set.is_empty() {
                    let (id, timer) = set[usize::from(i) % set.len()];
                    self.cluster.fire(id, timer);
                }
            }
            Choice::Crash(i) => {
                let up: Vec<u8> = (0..n as u8)
                    .filter(|&r| self.cluster.replicas[usize::from(r)].is_some())
                    .collect();
                if down(&self.cluster) < self.f && !up.is_empty() {
                    let id = up[usize::from(i) % up.len()];
                    match self.storage_fault(i) {
                        Some(fault) => self.cluster.crash_with(id, fault),
                        None => self.cluster.crash(id),
                    }
                    self.report.crashes += 1;
                }
            }
            Choice::Sync(i) => {
                if self.cluster.disks.is_some() {
                    self.cluster.sync(i % n as u8);
                }
            }
            Choice::CrashAll(i) => {
                if self.cluster.disks.is_some() {
                    let fault = if i % 2 == 0 {
                        CrashFault::LoseUnsynced
                    } else {
                        CrashFault::Tear {
                            at: u64::from(i) * 7919,
                        }
                    };
                    for id in 0..n as u8 {
                        if self.cluster.replicas[usize::from(id)].is_some() {
                            self.cluster.crash_with(id, fault);
                        }
                    }
                    self.cluster.network.clear();
                    self.report.cluster_crashes += 1;
                }
            }
            Choice::Restart(i) => {
                let crashed: Vec<u8> = (0..n as u8)
                    .filter(|&r| self.cluster.replicas[usize::from(r)].is_none())
                    .collect();
                if !crashed.is_empty() {
                    self.nonce += 1;
                    self.cluster
                        .restart(crashed[usize::from(i) % crashed.len()], self.nonce);
                }
            }
            Choice::Deliver(i) | Choice::Lose(i) | Choice::Duplicate(i) => {
                if self.cluster.network.is_empty() {
                    return;
                }
                let index = usize::from(i) % self.cluster.network.len();
                let m = self.cluster.network[index].clone();
                let lost = matches!(choice, Choice::Lose(_))
                    || self.cluster.replicas[usize::from(m.to.0)].is_none();
                if !matches!(choice, Choice::Duplicate(_)) || lost {
                    self.cluster.network.remove(index);
                }
                if !lost {
                    self.cluster.deliver_one(m);
                }
            }
        }
        self.report.completed += take_replies(
            &self.cluster,
            &mut self.clients,
            &mut self.history,
            &mut self.seen_replies,
        );
        for r in self.cluster.replicas.iter().flatten() {
            if r.view_change_caches().fill().is_some() {
                self.report.fill_steps += 1;
            }
            if r.status() == vr::core::Status::Recovering && r.catch_up().is_some() {
                self.report.recovery_transfer_steps += 1;
            }
            if r.restore().is_some() {
                self.report.checkpoint_fetch_steps += 1;
            }
            if r.log().base() > vr::core::OpNumber(0) {
                self.report.compacted_steps += 1;
            }
        }
    }

    /// Durable mode: what a crash chosen by `i` does to the disk, as
    /// [`StorageFaults`] shares it out.
    fn storage_fault(&self, i: u8) -> Option<CrashFault> {
        let faults = self.storage?;
        let share = i >> 4;
        let at = u64::from(i) * 7919;
        Some(if share < faults.tear_sixteenths {
            CrashFault::Tear { at }
        } else if share < faults.tear_sixteenths + faults.corrupt_sixteenths {
            CrashFault::Corrupt { at }
        } else {
            CrashFault::LoseUnsynced
        })
    }

    fn finish(mut self, settle_after: bool, restart_in_settle: bool) -> SimReport {
        if settle_after {
            settle(
                &mut self.cluster,
                &mut self.clients,
                &mut self.history,
                &mut self.seen_replies,
                if restart_in_settle {
                    Some(&mut self.nonce)
                } else {
                    None
                },
                &mut self.report,
            );
        }
        if let Some(disks) = &self.cluster.disks {
            self.report.corrupt_restarts = disks.corrupt_restarts;
            self.report.torn_restarts = disks.torn_restarts;
        }
        for r in self.cluster.replicas.iter().flatten() {
            self.report.max_view = self.report.max_view.max(r.view().0);
            self.report.max_commit = self.report.max_commit.max(r.commit_number().0);
        }
        assert!(
            self.history.serialized_history().is_some(),
            "INV-LINEARIZABLE: the clients' history is not linearizable: {:?}",
            self.history
        );
        self.report
    }
}

/// The seeded schedule: `cfg.steps` choices drawn from `seed`.
pub fn schedule(seed: u64, cfg: &SimConfig) -> Vec<Choice> {
    let mut rng = Rng(seed);
    (0..cfg.steps)
        .map(|_| {
            let any = rng.next() as u16;
            if rng.below(100) < 6 {
                Choice::Client {
                    client: (any % 256) as u8,
                    write: rng.below(2) == 0,
                }
            } else if rng.chance(cfg.timer) {
                Choice::Timer(any)
            } else if rng.chance(cfg.crash) {
                Choice::Crash((any % 256) as u8)
            } else if rng.chance(cfg.restart) {
                Choice::Restart((any % 256) as u8)
            } else if cfg.storage.is_some_and(|s| rng.chance(s.crash_all)) {
                Choice::CrashAll(any)
            } else if cfg.storage.is_some_and(|s| rng.chance(s.sync)) {
                Choice::Sync((any % 256) as u8)
            } else if rng.chance(cfg.drop) {
                Choice::Lose(any)
            } else if rng.chance(cfg.duplicate) {
                Choice::Duplicate(any)
            } else {
                Choice::Deliver(any)
            }
        })
        .collect()
}

/// Runs `schedule`, then (if `cfg.settle`) the liveness phase; panics on a
/// broken invariant, a non-linearizable history or a stuck request.
pub fn run_schedule(schedule: &[Choice], cfg: SimConfig) -> SimReport {
    let mut world = World::new(&cfg);
    for &choice in schedule {
        world.apply(choice);
    }
    world.finish(cfg.settle, cfg.restart_in_settle)
}

fn simulate(seed: u64, cfg: SimConfig) -> SimReport {
    run_schedule(&schedule(seed, &cfg), cfg)
}

/// Completes the clients' outstanding requests whose replies arrived since
/// `seen`; returns how many completed.
fn take_replies(
    cluster: &Cluster,
    clients: &mut [SimClient],
    history: &mut LinearizabilityTester<ClientId, Register<u64>>,
    seen: &mut usize,
) -> usize {
    let mut completed = 0;
    while *seen < cluster.replies.len() {
        let reply = cluster.replies[*seen].clone();
        *seen += 1;
        let Some(client) = clients.iter_mut().find(|c| c.id == reply.client) else {
            continue;
        };
        if client
            .outstanding
            .as_ref()
            .is_some_and(|r| r.request == reply.request)
        {
            client.outstanding = None;
            client.view = client.view.max(reply.view);
            let ret = match reply.output {
                Outcome::Output(KvOutput::Stored) => RegisterRet::WriteOk,
                Outcome::Output(KvOutput::Value(v)) => {
                    RegisterRet::ReadOk(v.map_or(0, |v| v.parse().unwrap()))
                }
                other => panic!("unexpected output {other:?}"),
            };
            history
                .on_return(client.id, ret)
                .expect("a return for an invoked operation");
            completed += 1;
        }
    }
    completed
}

/// Liveness: once faults stop (every replica up, no loss), every outstanding
/// request completes. Time passes only when the network is quiet: first the
/// delivery layer's and the primary's timers, and only when that is not
/// enough, a view change.
fn settle(
    cluster: &mut Cluster,
    clients: &mut [SimClient],
    history: &mut LinearizabilityTester<ClientId, Register<u64>>,
    seen: &mut usize,
    restart_with: Option<&mut u64>,
    report: &mut SimReport,
) {
    match restart_with {
        Some(nonce) => {
            for id in 0..cluster.replicas.len() as u8 {
                if cluster.replicas[usize::from(id)].is_none() {
                    *nonce += 1;
                    cluster.restart(id, *nonce);
                }
            }
        }
        None => {
            report.down_through_settle = cluster.replicas.iter().filter(|r| r.is_none()).count()
        }
    }
    if cluster.disks.is_none() {
        check_progress(cluster);
    }
    let n = cluster.replicas.len() as u8;
    for round in 0..60 {
        // Every outstanding request to every replica, as one batch: the
        // primary prepares them together (paper 6.2).
        let batch: Vec<Request<vr::app::Kv>> = clients
            .iter()
            .filter_map(|c| c.outstanding.clone())
            .collect();
        if !batch.is_empty() {
            for id in 0..n {
                if cluster.replicas[usize::from(id)].is_some() {
                    cluster.step(ReplicaId(id), Input::Requests(batch.clone()));
                }
            }
        }
        cluster.deliver_and_sync();
        report.completed += take_replies(cluster, clients, history, seen);
        let recovering = cluster
            .replicas
            .iter()
            .flatten()
            .any(|r| r.status() == vr::core::Status::Recovering);
        if clients.iter().all(|c| c.outstanding.is_none()) && !recovering {
            report.settled = true;
            return;
        }
        for timer in [Timer::Resend, Timer::Heartbeat, Timer::RecoveryRetry] {
            for id in 0..n {
                if cluster.timer_set(id, timer) {
                    cluster.fire(id, timer);
                    cluster.deliver_and_sync();
                }
            }
        }
        report.completed += take_replies(cluster, clients, history, seen);
        if round % 4 == 3 {
            // Still stuck: let one view change's worth of time pass.
            let timer = if cluster
                .replicas
                .iter()
                .flatten()
                .any(|r| r.status() == vr::core::Status::ViewChange)
            {
                Timer::ViewChangeTimeout
            } else {
                Timer::PrimaryTimeout
            };
            if let Some(id) = (0..n).find(|&id| cluster.timer_set(id, timer)) {
                cluster.fire(id, timer);
                cluster.deliver_and_sync();
            }
        }
    }
    let states: Vec<String> = cluster
        .replicas
        .iter()
        .flatten()
        .map(|r| format!("{r:?}"))
        .collect();
    let pending: Vec<_> = clients
        .iter()
        .filter_map(|c| c.outstanding.as_ref())
        .collect();
    panic!(
        "liveness: with a quorum up and no faults, requests {pending:?} did not complete: {states:#?}"
    );
}

/// The model's progress properties (spec/invariants.md, "Progress
/// properties") on the state the faults left: judged by a synchronous,
/// fault-free continuation of a copy, before the settle phase's own (which
/// lets view changes happen, and so could hide a primary that cannot commit
/// what it holds).
fn check_progress(cluster: &Cluster) {
    let snapshot = vr_model::liveness::Snapshot {
        replicas: cluster.replicas.clone(),
        timers: cluster.timers.clone(),
        in_flight: cluster
            .network
            .iter()
            .filter(|m| !cluster.cut.contains(&(m.envelope.from, m.to)))
            .map(|m| (m.to, m.envelope.clone()))
            .collect(),
        replied: Vec::new(),
    };
    for id in vr_model::liveness::IDS {
        if let Err(detail) = vr_model::liveness::check(id, &snapshot) {
            panic!("{id}: {detail}");
        }
    }
}

/// Replicas without their state: crashed, or restarted and still
/// recovering. VR tolerates at most f of them at once.
fn down(cluster: &Cluster) -> usize {
    cluster
        .replicas
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_none_or(|r| r.status() == vr::core::Status::Recovering)
        })
        .count()
}

fn client_step(
    write: bool,
    cluster: &mut Cluster,
    client: &mut SimClient,
    history: &mut LinearizabilityTester<ClientId, Register<u64>>,
) {
    let n = cluster.replicas.len();
    let (request, targets): (Request<vr::app::Kv>, Vec<usize>) = match &client.outstanding {
        // Retry: to every replica.
        Some(request) => (request.clone(), (0..n).collect()),
        None => {
            let number = client.next;
            client.next = number.next();
            let value = client.id.secret() * 1_000_000 + number.0;
            let (operation, op) = if write {
                (
                    KvOperation::Put {
                        key: "x".into(),
                        value: value.to_string(),
                    },
                    RegisterOp::Write(value),
                )
            } else {
                (KvOperation::Get { key: "x".into() }, RegisterOp::Read)
            };
            history
                .on_invoke(client.id, op)
                .expect("one operation at a time per client");
            let request = Request {
                operation: vr::core::Command::Apply(operation),
                client: client.id,
                request: number,
            };
            client.outstanding = Some(request.clone());
            (request, vec![usize::from(client.view.primary(n as u8).0)])
        }
    };
    for target in targets {
        if cluster.replicas[target].is_some() {
            cluster.step(ReplicaId(target as u8), Input::Request(request.clone()));
        }
    }
}
