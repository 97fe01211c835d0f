//! The wire format: one datagram, one packet. A five-byte header (format
//! version, cluster id) and a postcard body. Decoding never panics: a datagram
//! that is truncated, malformed, of another version or cluster, or larger than
//! a datagram may be, is refused with the reason, for the caller to count.

use crate::app::Kv;
use crate::core::{
    CommitNumber, Envelope, OpNumber, ReplicaId, Reply, Request, StateMachine, View,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The format version this build speaks.
pub const FORMAT_VERSION: u8 = 2;

/// No datagram is larger: below the IPv4 UDP payload limit with room to spare.
pub const DATAGRAM_MAX: usize = 60_000;

const HEADER: usize = 5;

/// The largest encoded Request a client may send and a primary accepts: the
/// Prepare that carries it to the backups must fit in a datagram too.
pub const REQUEST_MAX: usize = DATAGRAM_MAX - 1024;

/// The replicas' bound on the log-entry weight of one message
/// ([`Config::message_weight_max`](crate::core::Config::message_weight_max)):
/// the key-value store weighs an entry by an upper bound on its encoded
/// size, and what a message adds around its entries (header, envelope,
/// numbers, lengths) stays far below the 512 bytes left over.
pub const MESSAGE_WEIGHT_MAX: u32 = (DATAGRAM_MAX - 512) as u32;

/// The replicas' bound on entries per NewState; the weight bound above is
/// the one that usually applies.
pub const STATE_TRANSFER_ENTRIES_MAX: u32 = 4096;

/// The replicas take a checkpoint every this many executed entries and
/// compact their logs behind the previous one, so a replica holds at most
/// about twice this many entries (paper 5.1).
pub const CHECKPOINT_INTERVAL: u64 = 100_000;

/// What travels in one datagram: the key-value store's messages in the
/// runtime; the model's replay sends its register's through the same format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Packet<S: StateMachine = Kv> {
    /// A replica-to-replica message of the protocol.
    Replica(Envelope<S>),
    /// A client's request to a replica.
    Request(Request<S>),
    /// A replica's reply to a client.
    Reply(Reply<S>),
    /// Asks a replica for its status (outside the protocol).
    StatusQuery,
    /// A replica's status.
    Status(StatusReport),
    /// A replica's answer to a client's Request or StatusQuery of another
    /// cluster id, sent under that id so the client can read it
    /// ([`super::refusal`]): no larger than what it answers, and saying
    /// nothing of the replica's own cluster.
    WrongCluster,
}

/// A replica's status, for `vr status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub id: ReplicaId,
    /// Normal, ViewChange or Recovering.
    pub status: String,
    pub view: View,
    pub op: OpNumber,
    pub commit: CommitNumber,
    /// Peers not counted as disconnected.
    pub connected: Vec<ReplicaId>,
    pub counters: Counters,
}

/// Datagrams a replica dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Could not be decoded: truncated or malformed.
    pub malformed: u64,
    /// Another format version.
    pub wrong_version: u64,
    /// Another cluster.
    pub wrong_cluster: u64,
    /// Larger than a datagram may be.
    pub oversized: u64,
    /// Claimed to come from a replica whose configured address is not the
    /// datagram's source.
    pub forged: u64,
    /// A packet a replica does not take (a Reply, a Status).
    pub unexpected: u64,
    /// Outgoing messages too large to send.
    pub unsendable: u64,
}

impl Counters {
    /// Every datagram dropped.
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.wrong_version
            + self.wrong_cluster
            + self.oversized
            + self.forged
            + self.unexpected
    }

    /// Counts a refused datagram.
    pub fn count(&mut self, error: &WireError) {
        match error {
            WireError::Malformed => self.malformed += 1,
            WireError::WrongVersion(_) => self.wrong_version += 1,
            WireError::WrongCluster(_) => self.wrong_cluster += 1,
            WireError::Oversized(_) => self.oversized += 1,
        }
    }
}

/// Why a datagram was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    Malformed,
    WrongVersion(u8),
    WrongCluster(u32),
    Oversized(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Malformed => write!(f, "truncated or malformed datagram"),
            WireError::WrongVersion(v) => write!(f, "format version {v}, not {FORMAT_VERSION}"),
            WireError::WrongCluster(c) => write!(f, "datagram of cluster {c}"),
            WireError::Oversized(n) => write!(f, "{n} bytes, more than {DATAGRAM_MAX}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encodes `packet` for cluster `cluster_id`.
pub fn encode(cluster_id: u32, packet: &Packet) -> Result<Vec<u8>, WireError> {
    encode_as(cluster_id, packet)
}

/// Decodes a datagram meant for cluster `cluster_id`.
pub fn decode(cluster_id: u32, bytes: &[u8]) -> Result<Packet, WireError> {
    decode_as(cluster_id, bytes)
}

/// [`encode`] for the messages of any state machine.
pub fn encode_as<S: StateMachine>(
    cluster_id: u32,
    packet: &Packet<S>,
) -> Result<Vec<u8>, WireError> {
    let mut bytes = Vec::with_capacity(64);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&cluster_id.to_le_bytes());
    let bytes = postcard::to_extend(packet, bytes).map_err(|_| WireError::Malformed)?;
    if bytes.len() > DATAGRAM_MAX {
        return Err(WireError::Oversized(bytes.len()));
    }
    Ok(bytes)
}

/// [`decode`] for the messages of any state machine.
pub fn decode_as<S: StateMachine>(cluster_id: u32, bytes: &[u8]) -> Result<Packet<S>, WireError> {
    if bytes.len() > DATAGRAM_MAX {
        return Err(WireError::Oversized(bytes.len()));
    }
    if bytes.len() < HEADER {
        return Err(WireError::Malformed);
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(WireError::WrongVersion(bytes[0]));
    }
    let cluster = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if cluster != cluster_id {
        return Err(WireError::WrongCluster(cluster));
    }
    match postcard::take_from_bytes::<Packet<S>>(&bytes[HEADER..]) {
        Ok((packet, [])) => Ok(packet),
        _ => Err(WireError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::KvOperation;
    use crate::core::{ClientId, RequestNumber};

    fn request() -> Packet {
        Packet::Request(Request {
            operation: crate::core::Command::Apply(KvOperation::Put {
                key: "k".into(),
                value: "v".into(),
            }),
            client: ClientId(9),
            request: RequestNumber(1),
        })
    }

    #[test]
    fn a_packet_round_trips() {
        let bytes = encode(3, &request()).unwrap();
        assert_eq!(decode(3, &bytes).unwrap(), request());
    }

    #[test]
    fn every_truncation_and_bad_header_is_refused_without_panic() {
        let bytes = encode(3, &request()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode(3, &bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        assert_eq!(decode(4, &bytes), Err(WireError::WrongCluster(3)));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode(3, &other), Err(WireError::WrongVersion(9)));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(3, &longer), Err(WireError::Malformed));
        assert_eq!(
            decode(3, &vec![1; DATAGRAM_MAX + 1]),
            Err(WireError::Oversized(DATAGRAM_MAX + 1))
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in [5, 6, 17, 100, 1000] {
            for _ in 0..200 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                bytes[0] = FORMAT_VERSION;
                bytes[1..5].copy_from_slice(&3u32.to_le_bytes());
                let _ = decode(3, &bytes);
            }
        }
    }

    /// A log of `count` puts with values of `value_size` bytes and the
    /// largest client ids and request-numbers, with every entry but the last
    /// `uncommitted` committed.
    fn long_log(count: u64, value_size: usize) -> crate::core::Log<crate::app::Kv> {
        crate::core::Log::from_entries(
            (0..count)
                .map(|i| crate::core::Entry {
                    operation: crate::core::Command::Apply(KvOperation::Put {
                        key: format!("key-{i:012}"),
                        value: "v".repeat(value_size),
                    }),
                    client: ClientId(u128::MAX),
                    request: RequestNumber(u64::MAX - i),
                })
                .collect(),
        )
    }

    fn replica_packet(msg: crate::core::Message<crate::app::Kv>) -> Packet {
        Packet::Replica(crate::core::Envelope {
            from: crate::core::ReplicaId(2),
            id: crate::core::MessageId::of(crate::core::ReplicaId(1), &msg),
            msg,
        })
    }

    #[test]
    fn view_change_and_state_transfer_messages_of_a_long_log_fit_a_datagram() {
        use crate::core::{
            CommitNumber, DoViewChange, Message, NewState, OpNumber, StartView, View,
        };
        let far = View(u64::MAX - 1);
        for (count, value_size, uncommitted) in [
            (200_000, 32, 64),
            (20, REQUEST_MAX - 100, 1),
            (50, 1000, 40),
        ] {
            let log = long_log(count, value_size);
            let commit = CommitNumber(count - uncommitted);
            let suffix = log.suffix_for_message(commit, MESSAGE_WEIGHT_MAX);
            assert!(suffix.after <= commit.as_op() && suffix.is_well_formed());
            let dvc = Message::DoViewChange(DoViewChange {
                view: far,
                log: suffix.clone(),
                last_normal_view: far,
                commit,
            });
            let start = Message::StartView(StartView {
                view: far,
                log: suffix.clone(),
                commit,
            });
            let new_state = Message::NewState(NewState {
                view: far,
                after: OpNumber(0),
                entries: log.chunk(OpNumber(0), log.op_number(), 4096, MESSAGE_WEIGHT_MAX),
                op: log.op_number(),
                commit,
            });
            for msg in [dvc, start, new_state] {
                let name = msg.name();
                let bytes = encode(u32::MAX, &replica_packet(msg))
                    .unwrap_or_else(|e| panic!("{name} of {count} entries: {e}"));
                // Not vacuous: the messages come close to the bound.
                assert!(
                    bytes.len() > DATAGRAM_MAX / 2 || suffix.entries.len() as u64 == uncommitted,
                    "{name}: {} bytes",
                    bytes.len()
                );
            }
        }
    }
}
