//! One replica's execution loop: wait on the UDP socket until the next timer
//! deadline, turn a datagram or an expired timer into a `step` input, and
//! carry out the effects. One thread, one loop, every role.

use super::auth::Key;
use super::clients::ClientAddresses;
use super::config::{ClusterConfig, ConfigFileError, Settings};
use super::keyfile::{self, KeyFileError};
use super::refusal::{self, RateLimit};
use super::storage::{FileDisk, Storage};
use super::wire::{self, Counters, DATAGRAM_MAX, Packet, Sender, StatusReport};
use crate::app::Kv;
use crate::core::{Durable, Effect, Input, Nonce, Replica, ReplicaId, Request, Status, Timer};
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How a replica process starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// The cluster's first start: Normal in view 0 with an empty log.
    Fresh,
    /// A restart after a crash: recover from the others first (paper 4.3).
    Recover,
    /// A restart from what the data directory kept (durable mode).
    FromDisk(Box<Durable<Kv>>),
}

/// A replica with its socket, timers and counters.
pub struct Node {
    cluster: ClusterConfig,
    id: ReplicaId,
    socket: UdpSocket,
    /// The cluster key: every datagram in or out is tagged with it.
    key: Key,
    replica: Replica<Kv>,
    settings: Settings,
    deadlines: BTreeMap<Timer, Instant>,
    /// Where each client's latest request came from: its reply goes there.
    clients: ClientAddresses,
    counters: Counters,
    /// Client requests read in this pass over the socket, stepped together
    /// so that the primary prepares them in one Prepare (paper 6.2).
    batch: Vec<Request<Kv>>,
    /// Bounds the refusals (wrong cluster id, wrong key) sent to
    /// misconfigured clients.
    refusals: RateLimit,
    /// Durable mode: the data directory's storage.
    storage: Option<Storage<Kv, FileDisk>>,
    /// Durable mode: the Sends and Replies of this pass that wait for its
    /// writes to be durable (group commit: one fsync per pass).
    held: Vec<Effect<Kv>>,
    /// A write or fsync that failed: the replica cannot keep its promises
    /// and stops.
    failed: Option<io::Error>,
}

/// At most this many datagrams are read in one pass before the requests
/// among them are stepped.
const DRAIN_MAX: usize = 256;

/// Why a replica could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigFileError),
    Bind {
        address: SocketAddr,
        error: io::Error,
    },
    Random(String),
    Storage(io::Error),
    Key(KeyFileError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Bind { address, error } => write!(f, "cannot bind {address}: {error}"),
            StartError::Random(e) => write!(f, "no randomness for the recovery nonce: {e}"),
            StartError::Storage(e) => write!(f, "cannot write the data directory: {e}"),
            StartError::Key(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

impl Node {
    /// Binds replica `id`'s configured address and starts the replica; in
    /// durable mode `storage` is its data directory's.
    pub fn start(
        cluster: ClusterConfig,
        id: u8,
        settings: Settings,
        start: Start,
        storage: Option<Storage<Kv, FileDisk>>,
    ) -> Result<Node, StartError> {
        let config = cluster.core_config(id).map_err(StartError::Config)?;
        let address = cluster.address(ReplicaId(id)).expect("id validated");
        let key = keyfile::for_cluster(&cluster).map_err(StartError::Key)?;
        let socket =
            UdpSocket::bind(address).map_err(|error| StartError::Bind { address, error })?;
        let mut effects = Vec::new();
        let mut storage = storage;
        let rebuilt = match start {
            Start::Fresh => Some(Replica::new(config, &mut effects)),
            Start::Recover => None,
            Start::FromDisk(durable) => match Replica::from_durable(config, *durable, &mut effects)
            {
                Ok(replica) => Some(replica),
                Err(error) => {
                    warn!(replica = id, %error, "the data directory cannot be trusted: recovering from the other replicas");
                    effects.clear();
                    if let Some(storage) = &mut storage {
                        storage.distrust();
                    }
                    None
                }
            },
        };
        let replica = match rebuilt {
            Some(replica) => replica,
            None => {
                let nonce = getrandom::u64().map_err(|e| StartError::Random(e.to_string()))?;
                info!(
                    replica = id,
                    "restarting: recovering from the other replicas"
                );
                Replica::restart(config, Nonce(nonce), &mut effects)
            }
        };
        let mut node = Node {
            cluster,
            id: ReplicaId(id),
            socket,
            key,
            replica,
            settings,
            deadlines: BTreeMap::new(),
            clients: ClientAddresses::default(),
            counters: Counters::default(),
            batch: Vec::new(),
            refusals: RateLimit::default(),
            storage,
            held: Vec::new(),
            failed: None,
        };
        node.carry_out(effects);
        node.flush();
        match node.failed.take() {
            Some(error) => Err(StartError::Storage(error)),
            None => Ok(node),
        }
    }

    /// Runs the loop until `stop` is set.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> io::Result<()> {
        let mut buffer = vec![0u8; DATAGRAM_MAX + 1];
        let started = Instant::now();
        let mut warned = false;
        info!(replica = self.id.0, address = %self.cluster.address(self.id).unwrap(), "replica running");
        while !stop.load(Ordering::Relaxed) {
            if !warned
                && self.replica.status() == Status::Recovering
                && started.elapsed() > Duration::from_secs(5)
            {
                warn!(
                    replica = self.id.0,
                    "still recovering after 5 s: no replica in Normal status has answered (in-memory mode cannot survive a restart of the whole cluster; durable mode can)"
                );
                warned = true;
            }
            self.fire_expired_timers();
            self.flush();
            if let Some(error) = self.failed.take() {
                return Err(error);
            }
            let wait = self
                .deadlines
                .values()
                .min()
                .map_or(Duration::from_millis(100), |d| {
                    d.saturating_duration_since(Instant::now())
                })
                .clamp(Duration::from_micros(100), Duration::from_millis(100));
            self.socket.set_read_timeout(Some(wait))?;
            match self.socket.recv_from(&mut buffer) {
                Ok((len, source)) => {
                    self.on_datagram(&buffer[..len], source);
                    self.drain(&mut buffer)?;
                    self.flush();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // A previous send's ICMP "port unreachable" (a peer that is
                // down), an oversized datagram, a reset: none is this
                // replica's failure. It logs and goes on.
                Err(e) => {
                    debug!(replica = self.id.0, error = %e, "receive failed");
                    if e.kind() != io::ErrorKind::ConnectionRefused {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads what else is waiting on the socket, up to [`DRAIN_MAX`]
    /// datagrams, then steps the client requests among them as one batch.
    fn drain(&mut self, buffer: &mut [u8]) -> io::Result<()> {
        self.socket.set_nonblocking(true)?;
        for _ in 1..DRAIN_MAX {
            match self.socket.recv_from(buffer) {
                Ok((len, source)) => self.on_datagram(&buffer[..len], source),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => debug!(replica = self.id.0, error = %e, "receive failed"),
            }
        }
        self.socket.set_nonblocking(false)?;
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.step(Input::Requests(batch));
        }
        Ok(())
    }

    fn fire_expired_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<Timer> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(timer, _)| *timer)
            .collect();
        for timer in expired {
            // An earlier timer's step may have restarted or cancelled it.
            if self.deadlines.get(&timer).is_some_and(|d| *d <= now) {
                self.deadlines.remove(&timer);
                self.step(Input::Timeout(timer));
            }
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], source: SocketAddr) {
        let (sender, packet) = match wire::decode(&self.key, self.cluster.cluster_id, bytes) {
            Ok(decoded) => decoded,
            Err(error) => {
                debug!(replica = self.id.0, %source, %error, "datagram dropped");
                self.counters.count(&error);
                self.refuse(bytes, source, &error);
                return;
            }
        };
        match packet {
            Packet::Replica(envelope) => {
                // The key is the cluster's, so the tag alone does not say
                // which replica sent: the authenticated header's sender must
                // be the envelope's, and the source its configured address.
                if sender != Sender::Replica(envelope.from)
                    || self.cluster.address(envelope.from) != Some(source)
                {
                    debug!(replica = self.id.0, %source, ?sender, from = ?envelope.from, "forged sender: dropped");
                    self.counters.forged += 1;
                    return;
                }
                self.step(Input::Deliver(envelope));
            }
            Packet::Request(_) if bytes.len() > wire::REQUEST_MAX => {
                debug!(replica = self.id.0, %source, len = bytes.len(), "request too large to prepare: dropped");
                self.counters.oversized += 1;
            }
            Packet::Request(_) if sender != Sender::Client => {
                debug!(replica = self.id.0, %source, ?sender, "request from a replica's identity: dropped");
                self.counters.forged += 1;
            }
            Packet::Request(request) => {
                self.clients.insert(request.client, source);
                self.batch.push(request);
            }
            Packet::StatusQuery => {
                let report = self.status();
                self.send_packet(source, &Packet::Status(report));
            }
            Packet::Reply(_) | Packet::Status(_) => self.counters.unexpected += 1,
        }
    }

    /// Tells a client of another cluster id, or with another key, so,
    /// within the bounds [`refusal`] sets.
    fn refuse(&mut self, bytes: &[u8], source: SocketAddr, error: &wire::WireError) {
        if let Some(answer) = refusal::answer(bytes, error, self.cluster.cluster_id, self.id)
            && self.refusals.allow(Instant::now())
            && let Err(error) = self.socket.send_to(&answer, source)
        {
            debug!(replica = self.id.0, %source, %error, "send failed");
        }
    }

    fn step(&mut self, input: Input<Kv>) {
        let mut effects = Vec::new();
        self.replica.step(input, &mut effects);
        self.carry_out(effects);
    }

    fn carry_out(&mut self, effects: Vec<Effect<Kv>>) {
        for effect in effects {
            if let Some(storage) = &mut self.storage {
                match effect {
                    Effect::Persist(persist) => {
                        if let Err(error) = storage.persist(&persist) {
                            self.failed.get_or_insert(error);
                        }
                        continue;
                    }
                    Effect::Send { .. } | Effect::Reply(_)
                        if !self.held.is_empty() || storage.has_unsynced() =>
                    {
                        self.held.push(effect);
                        continue;
                    }
                    _ => {}
                }
            }
            self.carry_out_now(effect);
        }
    }

    /// The end of a pass over the socket: one fsync makes every write of
    /// the pass durable, then what waited for it goes out (spec/protocol.md,
    /// "Durability"). Nothing goes out after a failed write.
    fn flush(&mut self) {
        let Some(storage) = &mut self.storage else {
            return;
        };
        if let Err(error) = storage.sync() {
            self.failed.get_or_insert(error);
        }
        if self.failed.is_some() {
            self.held.clear();
            return;
        }
        for effect in std::mem::take(&mut self.held) {
            self.carry_out_now(effect);
        }
    }

    fn carry_out_now(&mut self, effect: Effect<Kv>) {
        match effect {
            Effect::Send { to, envelope } => {
                if let Some(address) = self.cluster.address(to) {
                    self.send_packet(address, &Packet::Replica(envelope));
                }
            }
            Effect::SetTimer(timer) => {
                self.deadlines
                    .insert(timer, Instant::now() + self.settings.duration(timer));
            }
            Effect::CancelTimer(timer) => {
                self.deadlines.remove(&timer);
            }
            Effect::Persist(_) => {}
            Effect::Reply(reply) => {
                if let Some(address) = self.clients.get(reply.client) {
                    self.send_packet(address, &Packet::Reply(reply));
                }
            }
        }
    }

    fn send_packet(&mut self, address: SocketAddr, packet: &Packet) {
        match wire::encode(
            &self.key,
            Sender::Replica(self.id),
            self.cluster.cluster_id,
            packet,
        ) {
            Ok(bytes) => {
                if let Err(error) = self.socket.send_to(&bytes, address) {
                    debug!(replica = self.id.0, %address, %error, "send failed");
                }
            }
            Err(error) => {
                warn!(replica = self.id.0, %address, %error, "message too large to send: dropped");
                self.counters.unsendable += 1;
            }
        }
    }

    /// The replica's status, as `vr status` shows it.
    pub fn status(&self) -> StatusReport {
        let r = &self.replica;
        StatusReport {
            id: self.id,
            status: format!("{:?}", r.status()),
            view: r.view(),
            op: r.op_number(),
            commit: r.commit_number(),
            connected: r
                .config()
                .others()
                .filter(|p| r.delivery().is_connected(*p))
                .collect(),
            sessions: r.client_table().len() as u64,
            counters: self.counters,
        }
    }
}
