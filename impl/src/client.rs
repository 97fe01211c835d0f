//! The client library: sends each operation to the primary it knows, retries
//! to every replica on a timeout, and learns the view from replies. Before
//! its first operation a client opens a session (spec/protocol.md, "Client
//! sessions"): a Register request, answered with the client id the cluster
//! granted. Each request carries that id and the next request-number, so the
//! replicas' client table executes it at most once however often it is sent.
//! A client holds the cluster key and tags its requests with it: replicas
//! drop requests that are not tagged, and the client drops replies that are
//! not (spec/protocol.md, "Threat model"), except a replica's refusal
//! ([`refusal`]), which it takes only as an error report.

use crate::app::{KvOperation, KvOutput};
use crate::core::ReplicaId;
use crate::core::{ClientId, Command, Outcome, Request, RequestNumber, View};
use crate::runtime::auth::Key;
use crate::runtime::refusal::{self, Refusal};
use crate::runtime::wire::{self, DATAGRAM_MAX, Packet, Sender, StatusReport, WireError};
use crate::runtime::{ClusterConfig, keyfile};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why an operation did not complete.
#[derive(Debug)]
pub enum ClientError {
    /// No reply within the deadline. The operation may or may not have
    /// executed: a retry with the same client would not execute it twice.
    Timeout { waited: Duration },
    /// The request could not be sent or is refused before it is sent.
    Rejected(String),
    /// The encoded request is `size` bytes, more than the `max`
    /// ([`wire::REQUEST_MAX`]) a replica takes: not sent.
    TooLarge { size: usize, max: usize },
    /// The replicas at these addresses answered that they do not belong to
    /// the client's cluster (`cluster_id`): a misconfigured client.
    WrongCluster {
        cluster_id: u32,
        addresses: Vec<SocketAddr>,
    },
    /// The replicas at these addresses answered that this client's
    /// datagrams do not carry the cluster key's tag: the client's
    /// `key_file` holds another key.
    WrongKey {
        key_file: Option<PathBuf>,
        addresses: Vec<SocketAddr>,
    },
    /// The cluster answered that this client's session is unknown or was
    /// pruned (spec/protocol.md, "Client sessions"). The operation may have
    /// taken effect once before (an earlier copy), and never will later; the
    /// client's next operation opens a new session.
    SessionExpired,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Timeout { waited } => write!(
                f,
                "no reply within {:.1}s: the cluster may be down or without a quorum; the operation may or may not have taken effect",
                waited.as_secs_f64()
            ),
            ClientError::Rejected(reason) => write!(f, "request rejected: {reason}"),
            ClientError::TooLarge { size, max } => write!(
                f,
                "the request is {size} bytes encoded; a request (key, value and about 30 bytes of framing) is at most {max} bytes"
            ),
            ClientError::WrongCluster {
                cluster_id,
                addresses,
            } => {
                let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "wrong cluster id: the replicas at {} answer that they do not belong to cluster {cluster_id}; check --cluster-id or the configuration file's cluster_id",
                    addresses.join(", ")
                )
            }
            ClientError::WrongKey {
                key_file,
                addresses,
            } => {
                let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                let key_file = key_file
                    .as_ref()
                    .map_or(String::new(), |path| format!(" ({})", path.display()));
                write!(
                    f,
                    "wrong key: the replicas at {} could not authenticate this client's requests; its key file{key_file} does not hold the cluster's key",
                    addresses.join(", ")
                )
            }
            ClientError::SessionExpired => write!(
                f,
                "the cluster no longer knows this client's session (pruned after it was idle): the operation may or may not have taken effect, and will not take effect later"
            ),
            ClientError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// The replicas that refused a client's datagram ([`refusal`]), and why.
#[derive(Default)]
struct Refused(BTreeMap<ReplicaId, Refusal>);

/// A client of one cluster.
pub struct Client {
    cluster: ClusterConfig,
    socket: UdpSocket,
    key: Key,
    /// The session the cluster granted, once registered.
    session: Option<ClientId>,
    /// A random number naming this client in histories and written values;
    /// not its session's secret, which only requests carry.
    label: u64,
    next: RequestNumber,
    view: View,
    /// How long to wait for the primary before asking every replica.
    pub retry: Duration,
    /// How long to wait for a reply in all.
    pub deadline: Duration,
}

impl Client {
    /// A client without a session yet (its first operation opens one), with
    /// the key of the file the configuration names.
    pub fn new(cluster: ClusterConfig) -> Result<Client, ClientError> {
        let key =
            keyfile::for_cluster(&cluster).map_err(|e| ClientError::Rejected(e.to_string()))?;
        Client::with_key(cluster, key)
    }

    /// A client without a session yet, with the given key.
    pub fn with_key(cluster: ClusterConfig, key: Key) -> Result<Client, ClientError> {
        let unspecified: SocketAddr = if cluster.addresses[0].is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(unspecified)?;
        Ok(Client {
            cluster,
            socket,
            key,
            session: None,
            label: random()?,
            next: RequestNumber(1),
            view: View(0),
            retry: Duration::from_millis(250),
            deadline: Duration::from_secs(5),
        })
    }

    /// The session's client id, once registered.
    pub fn id(&self) -> Option<ClientId> {
        self.session
    }

    /// A random number naming this client (not secret).
    pub fn label(&self) -> u64 {
        self.label
    }

    /// Opens a session if the client has none: one round trip, a Register
    /// request under a provisional id made of a fresh random secret.
    pub fn register(&mut self) -> Result<ClientId, ClientError> {
        if let Some(session) = self.session {
            return Ok(session);
        }
        let provisional = ClientId::provisional(random()?);
        let request = Request {
            operation: Command::Register,
            client: provisional,
            request: RequestNumber(1),
        };
        match self.exchange(&request)? {
            Outcome::Registered(session) if session.secret() == provisional.secret() => {
                self.session = Some(session);
                self.next = RequestNumber(1);
                Ok(session)
            }
            other => Err(ClientError::Rejected(format!(
                "the cluster answered a Register with {other:?}"
            ))),
        }
    }

    /// The latest view a reply came from.
    pub fn view(&self) -> View {
        self.view
    }

    /// Executes `operation` on the cluster and returns its output, opening
    /// a session first if the client has none.
    pub fn call(&mut self, operation: KvOperation) -> Result<KvOutput, ClientError> {
        let client = self.register()?;
        let request = Request {
            operation: Command::Apply(operation),
            client,
            request: self.next,
        };
        self.next = self.next.next();
        match self.exchange(&request)? {
            Outcome::Output(output) => Ok(output),
            Outcome::SessionExpired => {
                self.session = None;
                Err(ClientError::SessionExpired)
            }
            Outcome::Registered(_) => Err(ClientError::Rejected(
                "the cluster answered an operation with a session grant".into(),
            )),
        }
    }

    /// Sends `request` to the primary it knows, to every replica on each
    /// retry, until a reply to it comes or the deadline passes.
    fn exchange(
        &mut self,
        request: &Request<crate::app::Kv>,
    ) -> Result<Outcome<crate::app::Kv>, ClientError> {
        let bytes = self.encode_request(request)?;
        let mut refused = Refused::default();
        let started = Instant::now();
        if let Some(primary) = self.cluster.address(self.cluster.primary(self.view)) {
            self.send(&bytes, primary);
        }
        let mut next_retry = started + self.retry;
        let mut buffer = vec![0u8; DATAGRAM_MAX + 1];
        loop {
            let now = Instant::now();
            if now >= started + self.deadline {
                if !refused.0.is_empty() {
                    return Err(self.refused(&refused));
                }
                return Err(ClientError::Timeout {
                    waited: now - started,
                });
            }
            if now >= next_retry {
                for address in self.cluster.addresses.clone() {
                    self.send(&bytes, address);
                }
                next_retry = now + self.retry;
            }
            let wait = next_retry
                .min(started + self.deadline)
                .saturating_duration_since(now);
            let Some((len, source)) = self.receive(&mut buffer, wait)? else {
                continue;
            };
            let datagram = &buffer[..len];
            match wire::decode(&self.key, self.cluster.cluster_id, datagram) {
                Ok((sender, Packet::Reply(reply)))
                    if self.is_replica(sender, source)
                        && reply.client == request.client
                        && reply.request == request.request =>
                {
                    self.view = self.view.max(reply.view);
                    return Ok(reply.output);
                }
                Ok(_) => {}
                Err(_) => {
                    self.note_refusal(datagram, source, &bytes, &mut refused);
                    // No quorum is left to serve this client.
                    if refused.0.len() > self.cluster.addresses.len() / 2 {
                        return Err(self.refused(&refused));
                    }
                }
            }
        }
    }

    /// The datagram of `request`, if a replica would take it: the one limit
    /// a request has is [`wire::REQUEST_MAX`], whether it would fit a
    /// datagram or not.
    fn encode_request(&self, request: &Request<crate::app::Kv>) -> Result<Vec<u8>, ClientError> {
        let too_large = |size| ClientError::TooLarge {
            size,
            max: wire::REQUEST_MAX,
        };
        match wire::encode(
            &self.key,
            Sender::Client,
            self.cluster.cluster_id,
            &Packet::Request(request.clone()),
        ) {
            Ok(bytes) if bytes.len() > wire::REQUEST_MAX => Err(too_large(bytes.len())),
            Ok(bytes) => Ok(bytes),
            Err(WireError::Oversized(size)) => Err(too_large(size)),
            Err(e) => Err(ClientError::Rejected(e.to_string())),
        }
    }

    /// Notes `datagram`, which did not decode, if it is a replica's refusal
    /// of `sent` ([`refusal`]): from a replica's address, of this client's
    /// cluster id, echoing `sent`'s tag.
    fn note_refusal(
        &self,
        datagram: &[u8],
        source: SocketAddr,
        sent: &[u8],
        refused: &mut Refused,
    ) {
        if let Some(id) = self.cluster.replica_at(source)
            && let Some(refusal) = refusal::read(datagram, self.cluster.cluster_id, sent)
        {
            refused.0.insert(id, refusal);
        }
    }

    /// The error that `refused` reports: a wrong cluster id if any replica
    /// said so (a replica checks the cluster id before the tag), else a
    /// wrong key.
    fn refused(&self, refused: &Refused) -> ClientError {
        let by = |reason| -> Vec<SocketAddr> {
            refused
                .0
                .iter()
                .filter(|(_, r)| **r == reason)
                .filter_map(|(id, _)| self.cluster.address(*id))
                .collect()
        };
        let wrong_cluster = by(Refusal::WrongCluster);
        if !wrong_cluster.is_empty() {
            return ClientError::WrongCluster {
                cluster_id: self.cluster.cluster_id,
                addresses: wrong_cluster,
            };
        }
        ClientError::WrongKey {
            key_file: self.cluster.key_file.clone(),
            addresses: by(Refusal::Unauthenticated),
        }
    }

    /// Waits up to `wait` for a datagram; `None` when none came. A refused
    /// earlier send (a replica that is down) is not an error here.
    fn receive(
        &self,
        buffer: &mut [u8],
        wait: Duration,
    ) -> Result<Option<(usize, SocketAddr)>, ClientError> {
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.socket.recv_from(buffer) {
            Ok(received) => Ok(Some(received)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an authenticated datagram's sender is a replica, sending
    /// from its configured address.
    fn is_replica(&self, sender: Sender, source: SocketAddr) -> bool {
        matches!(sender, Sender::Replica(id) if self.cluster.address(id) == Some(source))
    }

    fn send(&self, bytes: &[u8], address: SocketAddr) {
        // A replica that is down is the retry's business, not an error.
        let _ = self.socket.send_to(bytes, address);
    }

    /// Asks every replica for its status; `None` for those that do not answer
    /// within `wait`. [`ClientError::WrongCluster`] or
    /// [`ClientError::WrongKey`] if none answered but some refused the query.
    pub fn statuses(&self, wait: Duration) -> Result<Vec<Option<StatusReport>>, ClientError> {
        let bytes = wire::encode(
            &self.key,
            Sender::Client,
            self.cluster.cluster_id,
            &Packet::StatusQuery,
        )
        .map_err(|e| ClientError::Rejected(e.to_string()))?;
        for address in &self.cluster.addresses {
            self.send(&bytes, *address);
        }
        let mut reports: Vec<Option<StatusReport>> = vec![None; self.cluster.addresses.len()];
        let mut refused = Refused::default();
        let started = Instant::now();
        let mut buffer = vec![0u8; DATAGRAM_MAX + 1];
        while reports.iter().any(Option::is_none) && started.elapsed() < wait {
            let Some((len, source)) =
                self.receive(&mut buffer, wait.saturating_sub(started.elapsed()))?
            else {
                continue;
            };
            let datagram = &buffer[..len];
            match wire::decode(&self.key, self.cluster.cluster_id, datagram) {
                Ok((sender, Packet::Status(report))) if self.is_replica(sender, source) => {
                    if let Some(id) = self.cluster.replica_at(source) {
                        reports[usize::from(id.0)] = Some(report);
                    }
                }
                Ok(_) => {}
                Err(_) => self.note_refusal(datagram, source, &bytes, &mut refused),
            }
            if refused.0.len() == self.cluster.addresses.len() {
                break;
            }
        }
        if reports.iter().all(Option::is_none) && !refused.0.is_empty() {
            return Err(self.refused(&refused));
        }
        Ok(reports)
    }
}

/// A random 64-bit number from the operating system.
fn random() -> Result<u64, ClientError> {
    getrandom::u64().map_err(|e| ClientError::Rejected(format!("no randomness for a session: {e}")))
}
