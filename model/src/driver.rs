//! A small deterministic driver of core replicas, without stateright: it
//! delivers messages in the order sent and fires timers when told. The
//! progress properties run their synchronous continuations on it, and the
//! preludes build the model's deep starting states with it.

use std::collections::{BTreeSet, VecDeque};
use vr::core::{
    ClientId, Config, Effect, Envelope, Input, Nonce, Replica, ReplicaId, Request, RequestNumber,
    StateMachine, Timer,
};

/// Replicas (`None` while crashed) with the timers each has set, and the
/// replica messages in flight, oldest first.
#[derive(Clone)]
pub struct Driver<S: StateMachine> {
    pub replicas: Vec<Option<Replica<S>>>,
    pub timers: Vec<BTreeSet<Timer>>,
    /// Messages in flight, each with its receiver.
    pub in_flight: Vec<(ReplicaId, Envelope<S>)>,
    /// The Replies sent since the driver was built, by whom and to which
    /// client's request, oldest first.
    pub replied: Vec<(ReplicaId, ClientId, RequestNumber)>,
}

impl<S: StateMachine> Driver<S> {
    /// Replicas configured by `configs` (one per replica, in id order),
    /// starting for the first time.
    pub fn new(configs: &[Config]) -> Driver<S> {
        let mut driver = Driver {
            replicas: Vec::new(),
            timers: vec![BTreeSet::new(); configs.len()],
            in_flight: Vec::new(),
            replied: Vec::new(),
        };
        for config in configs {
            let mut effects = Vec::new();
            driver
                .replicas
                .push(Some(Replica::new(*config, &mut effects)));
            driver.apply(config.id(), effects);
        }
        driver
    }

    /// The replica `id`, if up.
    pub fn replica(&self, id: u8) -> Option<&Replica<S>> {
        self.replicas[usize::from(id)].as_ref()
    }

    fn apply(&mut self, id: ReplicaId, effects: Vec<Effect<S>>) {
        for effect in effects {
            match effect {
                Effect::Send { to, envelope } => self.in_flight.push((to, envelope)),
                Effect::SetTimer(timer) => {
                    self.timers[usize::from(id.0)].insert(timer);
                }
                Effect::CancelTimer(timer) => {
                    self.timers[usize::from(id.0)].remove(&timer);
                }
                Effect::Reply(reply) => self.replied.push((id, reply.client, reply.request)),
                // Durable at once: the driver never loses a write.
                Effect::Persist(_) => {}
            }
        }
    }

    /// Feeds `input` to replica `id`, if it is up.
    pub fn step(&mut self, id: ReplicaId, input: Input<S>) {
        let Some(replica) = self.replicas[usize::from(id.0)].as_mut() else {
            return;
        };
        let mut effects = Vec::new();
        replica.step(input, &mut effects);
        self.apply(id, effects);
    }

    /// A client's request arrives at replica `to`.
    pub fn request(&mut self, to: u8, request: Request<S>) {
        self.step(ReplicaId(to), Input::Request(request));
    }

    /// Delivers everything in flight, and what that sends, oldest first;
    /// messages to crashed replicas are lost.
    pub fn deliver_all(&mut self) {
        self.deliver_while(|_, _| true);
    }

    /// Like [`deliver_all`](Self::deliver_all), but messages for which
    /// `keep(to, envelope)` is false are lost. Gives up (leaving the rest in
    /// flight) after a million deliveries: a synchronous network that never
    /// quiesces is for the caller to judge.
    pub fn deliver_while(&mut self, mut keep: impl FnMut(ReplicaId, &Envelope<S>) -> bool) {
        let mut queue: VecDeque<_> = std::mem::take(&mut self.in_flight).into();
        let mut delivered = 0usize;
        while let Some((to, envelope)) = queue.pop_front() {
            if delivered > 1_000_000 {
                queue.push_front((to, envelope));
                break;
            }
            if !keep(to, &envelope) {
                continue;
            }
            delivered += 1;
            self.step(to, Input::Deliver(envelope));
            queue.extend(self.in_flight.drain(..));
        }
        self.in_flight = queue.into();
    }

    /// Delivers messages in order until the next one satisfies `stop`, which
    /// stays in flight with everything after it.
    pub fn deliver_until(&mut self, stop: impl Fn(ReplicaId, &Envelope<S>) -> bool) {
        let mut queue: VecDeque<_> = std::mem::take(&mut self.in_flight).into();
        while let Some((to, envelope)) = queue.pop_front() {
            if stop(to, &envelope) {
                queue.push_front((to, envelope));
                break;
            }
            self.step(to, Input::Deliver(envelope));
            queue.extend(self.in_flight.drain(..));
        }
        self.in_flight = queue.into();
    }

    /// Fires `timer` at replica `id` if it is set there; returns whether it was.
    pub fn fire(&mut self, id: u8, timer: Timer) -> bool {
        let set = self.timers[usize::from(id)].remove(&timer);
        if set {
            self.step(ReplicaId(id), Input::Timeout(timer));
        }
        set
    }

    /// Fires `timer` at every replica that has it set, in id order,
    /// delivering everything after each.
    pub fn fire_everywhere(&mut self, timer: Timer) {
        for id in 0..self.replicas.len() as u8 {
            if self.fire(id, timer) {
                self.deliver_all();
            }
        }
    }

    /// Crashes replica `id`: its state and timers are gone.
    pub fn crash(&mut self, id: u8) {
        self.replicas[usize::from(id)] = None;
        self.timers[usize::from(id)].clear();
    }

    /// Restarts crashed replica `id` with `config`; it recovers with `nonce`.
    pub fn restart(&mut self, config: Config, nonce: u64) {
        let id = config.id();
        let mut effects = Vec::new();
        let replica = Replica::restart(config, Nonce(nonce), &mut effects);
        self.replicas[usize::from(id.0)] = Some(replica);
        self.apply(id, effects);
    }

    /// One line per replica.
    pub fn describe(&self) -> String {
        let replicas: Vec<String> = self
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(r) => format!("{r:?}"),
                None => format!("r{i} crashed"),
            })
            .collect();
        replicas.join("\n")
    }
}
