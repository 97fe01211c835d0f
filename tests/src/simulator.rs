//! A seeded simulation: clients, a network that reorders, drops and
//! duplicates, timers that fire at random, crashes and restarts (at most f
//! replicas down at once), all chosen from one seed. The harness checks the
//! model's invariants after every step; at the end the clients' history must
//! be linearizable. A failure names its seed, and the same seed replays it.

use crate::harness::Cluster;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use vr::app::{KvOperation, KvOutput};
use vr::core::{ClientId, Config, Input, ReplicaId, Request, RequestNumber, Timer, View};

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

fn simulate(seed: u64, cfg: SimConfig) -> SimReport {
    let mut rng = Rng(seed);
    let config = cfg
        .config
        .unwrap_or_else(|| Config::new(cfg.replicas, ReplicaId(0)).expect("valid replica count"));
    let f = config.f();
    let mut cluster = Cluster::with_config(config);
    let mut clients: Vec<SimClient> = (0..cfg.clients)
        .map(|i| SimClient {
            id: ClientId(u64::from(i) + 1),
            next: RequestNumber(1),
            outstanding: None,
            view: View(0),
        })
        .collect();
    let mut history = LinearizabilityTester::new(Register(0u64));
    let mut report = SimReport::default();
    let mut nonce = 1_000;
    let mut seen_replies = 0;
    for _ in 0..cfg.steps {
        let roll = rng.below(100);
        if roll < 6 {
            client_step(&mut rng, &mut cluster, &mut clients, &mut history);
        } else if rng.chance(cfg.timer) {
            fire_some_timer(&mut rng, &mut cluster);
        } else if rng.chance(cfg.crash) && down(&cluster) < f {
            let up: Vec<u8> = (0..cfg.replicas)
                .filter(|&i| cluster.replicas[usize::from(i)].is_some())
                .collect();
            cluster.crash(up[rng.below(up.len())]);
            report.crashes += 1;
        } else if rng.chance(cfg.restart) && cluster.replicas.iter().any(Option::is_none) {
            let crashed: Vec<u8> = (0..cfg.replicas)
                .filter(|&i| cluster.replicas[usize::from(i)].is_none())
                .collect();
            nonce += 1;
            cluster.restart(crashed[rng.below(crashed.len())], nonce);
        } else if !cluster.network.is_empty() {
            let index = rng.below(cluster.network.len());
            let m = cluster.network[index].clone();
            let lost = cluster.replicas[usize::from(m.to.0)].is_none() || rng.chance(cfg.drop);
            if lost || !rng.chance(cfg.duplicate) {
                cluster.network.remove(index);
            }
            if !lost {
                cluster.deliver_one(m);
            }
        }
        report.completed += take_replies(&cluster, &mut clients, &mut history, &mut seen_replies);
    }
    if cfg.settle {
        settle(
            &mut cluster,
            &mut clients,
            &mut history,
            &mut seen_replies,
            &mut nonce,
            &mut report,
        );
    }
    for r in cluster.replicas.iter().flatten() {
        report.max_view = report.max_view.max(r.view().0);
        report.max_commit = report.max_commit.max(r.commit_number().0);
    }
    assert!(
        history.serialized_history().is_some(),
        "INV-LINEARIZABLE: the clients' history is not linearizable: {history:?}"
    );
    report
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
                KvOutput::Stored => RegisterRet::WriteOk,
                KvOutput::Value(v) => RegisterRet::ReadOk(v.map_or(0, |v| v.parse().unwrap())),
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
    nonce: &mut u64,
    report: &mut SimReport,
) {
    for id in 0..cluster.replicas.len() as u8 {
        if cluster.replicas[usize::from(id)].is_none() {
            *nonce += 1;
            cluster.restart(id, *nonce);
        }
    }
    let n = cluster.replicas.len() as u8;
    for round in 0..60 {
        for client in clients.iter() {
            if let Some(request) = &client.outstanding {
                for id in 0..n {
                    cluster.step(ReplicaId(id), Input::Request(request.clone()));
                }
            }
        }
        cluster.deliver_all();
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
                    cluster.deliver_all();
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
                cluster.deliver_all();
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
        "liveness: with every replica up and no faults, requests {pending:?} did not complete: {states:#?}"
    );
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
    rng: &mut Rng,
    cluster: &mut Cluster,
    clients: &mut [SimClient],
    history: &mut LinearizabilityTester<ClientId, Register<u64>>,
) {
    let index = rng.below(clients.len());
    let n = cluster.replicas.len();
    let client = &mut clients[index];
    let (request, targets): (Request<vr::app::Kv>, Vec<usize>) = match &client.outstanding {
        // Retry: to every replica.
        Some(request) => (request.clone(), (0..n).collect()),
        None => {
            let number = client.next;
            client.next = number.next();
            let value = client.id.0 * 1_000_000 + number.0;
            let (operation, op) = if rng.below(2) == 0 {
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
                operation,
                client: client.id,
                request: number,
            };
            client.outstanding = Some(request.clone());
            (request, vec![(client.view.0 % n as u64) as usize])
        }
    };
    for target in targets {
        if cluster.replicas[target].is_some() {
            cluster.step(ReplicaId(target as u8), Input::Request(request.clone()));
        }
    }
}

fn fire_some_timer(rng: &mut Rng, cluster: &mut Cluster) {
    let set: Vec<(u8, Timer)> = cluster
        .timers
        .iter()
        .enumerate()
        .filter(|(i, _)| cluster.replicas[*i].is_some())
        .flat_map(|(i, timers)| timers.iter().map(move |t| (i as u8, *t)))
        .collect();
    if set.is_empty() {
        return;
    }
    let (id, timer) = set[rng.below(set.len())];
    cluster.fire(id, timer);
}
