//! The wire format: one datagram, one packet. A six-byte header (format
//! version, cluster id, sender), a postcard body and a tag: the keyed BLAKE3
//! MAC of header and body under the cluster key ([`super::auth`]). Decoding
//! never panics: a datagram that is truncated, of another version or cluster,
//! larger than a datagram may be, whose tag does not verify, or whose body is
//! malformed, is refused with the reason, for the caller to count. The tag is
//! checked before the body is decoded, so no unauthenticated byte reaches the
//! decoder (spec/protocol.md, "Threat model"). The one datagram without a
//! tag, a replica's refusal of a misconfigured client's datagram, is
//! [`super::refusal`]'s, shorter than any tagged one.

use super::auth::{Key, TAG_LEN};
use crate::app::Kv;
use crate::core::{
    CommitNumber, Envelope, OpNumber, ReplicaId, Reply, Request, StateMachine, View,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The format version this build speaks.
pub const FORMAT_VERSION: u8 = 3;

/// No datagram is larger: below the IPv4 UDP payload limit with room to spare.
pub const DATAGRAM_MAX: usize = 60_000;

/// Bytes in the header: format version, cluster id, sender.
pub const HEADER: usize = 6;

/// The header's sender byte of a client: replica ids are 0 to 254.
const SENDER_CLIENT: u8 = u8::MAX;

/// Who a datagram says sent it, in its authenticated header. A receiver
/// checks it against the packet (a replica message's `from`) and against the
/// datagram's source address, so that a key holder's datagrams cannot claim
/// another replica's identity (spec/protocol.md, "Threat model").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Replica(ReplicaId),
    Client,
}

impl Sender {
    fn byte(self) -> u8 {
        match self {
            Sender::Replica(id) => id.0,
            Sender::Client => SENDER_CLIENT,
        }
    }

    fn from_byte(byte: u8) -> Sender {
        match byte {
            SENDER_CLIENT => Sender::Client,
            id => Sender::Replica(ReplicaId(id)),
        }
    }
}

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
    /// Client sessions in the client table (at most `client_table_max`).
    pub sessions: u64,
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
    /// Whose tag did not verify under the cluster key: forged, corrupted, or
    /// from a client without the key.
    pub unauthenticated: u64,
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
            + self.unauthenticated
    }

    /// Counts a refused datagram.
    pub fn count(&mut self, error: &WireError) {
        match error {
            WireError::Malformed => self.malformed += 1,
            WireError::WrongVersion(_) => self.wrong_version += 1,
            WireError::WrongCluster(_) => self.wrong_cluster += 1,
            WireError::Oversized(_) => self.oversized += 1,
            WireError::Unauthenticated => self.unauthenticated += 1,
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
    Unauthenticated,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Malformed => write!(f, "truncated or malformed datagram"),
            WireError::WrongVersion(v) => write!(f, "format version {v}, not {FORMAT_VERSION}"),
            WireError::WrongCluster(c) => write!(f, "datagram of cluster {c}"),
            WireError::Oversized(n) => write!(f, "{n} bytes, more than {DATAGRAM_MAX}"),
            WireError::Unauthenticated => write!(f, "tag does not verify under the cluster key"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encodes `packet` from `sender` for cluster `cluster_id`, tagged with `key`.
pub fn encode(
    key: &Key,
    sender: Sender,
    cluster_id: u32,
    packet: &Packet,
) -> Result<Vec<u8>, WireError> {
    encode_as(key, sender, cluster_id, packet)
}

/// Decodes a datagram meant for cluster `cluster_id`, if its tag verifies
/// under `key`; returns the sender its header names with the packet.
pub fn decode(key: &Key, cluster_id: u32, bytes: &[u8]) -> Result<(Sender, Packet), WireError> {
    decode_as(key, cluster_id, bytes)
}

/// The sender a datagram's header names, before its tag is checked: what a
/// replica looks at to decide whether a refused datagram deserves a
/// [`super::refusal`], and nothing else.
pub fn claimed_sender(bytes: &[u8]) -> Option<Sender> {
    (bytes.len() >= HEADER).then(|| Sender::from_byte(bytes[5]))
}

/// [`encode`] for the messages of any state machine.
pub fn encode_as<S: StateMachine>(
    key: &Key,
    sender: Sender,
    cluster_id: u32,
    packet: &Packet<S>,
) -> Result<Vec<u8>, WireError> {
    let mut bytes = Vec::with_capacity(64 + TAG_LEN);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&cluster_id.to_le_bytes());
    bytes.push(sender.byte());
    let mut bytes = postcard::to_extend(packet, bytes).map_err(|_| WireError::Malformed)?;
    let tag = key.tag(&bytes);
    bytes.extend_from_slice(&tag);
    if bytes.len() > DATAGRAM_MAX {
        return Err(WireError::Oversized(bytes.len()));
    }
    Ok(bytes)
}

/// [`decode`] for the messages of any state machine.
pub fn decode_as<S: StateMachine>(
    key: &Key,
    cluster_id: u32,
    bytes: &[u8],
) -> Result<(Sender, Packet<S>), WireError> {
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
    if bytes.len() < HEADER + TAG_LEN {
        return Err(WireError::Malformed);
    }
    let (tagged, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    if !key.verify(tagged, tag) {
        return Err(WireError::Unauthenticated);
    }
    match postcard::take_from_bytes::<Packet<S>>(&tagged[HEADER..]) {
        Ok((packet, [])) => Ok((Sender::from_byte(tagged[5]), packet)),
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

    const KEY: Key = key(7);

    const fn key(byte: u8) -> Key {
        Key::from_bytes([byte; crate::runtime::auth::KEY_LEN])
    }

    fn prepare() -> Packet {
        replica_packet(crate::core::Message::Prepare(crate::core::Prepare {
            view: View(4),
            op: OpNumber(12),
            entries: vec![crate::core::Entry {
                operation: crate::core::Command::Apply(KvOperation::Put {
                    key: "victim".into(),
                    value: "EVIL".into(),
                }),
                client: ClientId(1),
                request: RequestNumber(2),
            }],
            commit: CommitNumber(11),
        }))
    }

    /// One datagram of each kind a replica or client sends.
    fn samples() -> Vec<(Sender, Packet)> {
        vec![
            (Sender::Client, request()),
            (Sender::Replica(ReplicaId(2)), prepare()),
            (Sender::Client, Packet::StatusQuery),
            (
                Sender::Replica(ReplicaId(0)),
                Packet::Reply(Reply {
                    view: View(1),
                    client: ClientId(9),
                    request: RequestNumber(1),
                    output: crate::core::Outcome::Output(crate::app::KvOutput::Stored),
                }),
            ),
        ]
    }

    #[test]
    fn a_packet_round_trips_with_its_sender() {
        for (sender, packet) in samples() {
            let bytes = encode(&KEY, sender, 3, &packet).unwrap();
            assert_eq!(decode(&KEY, 3, &bytes).unwrap(), (sender, packet));
        }
    }

    #[test]
    fn a_datagram_tagged_with_another_key_is_refused_as_unauthenticated() {
        let bytes = encode(&key(8), Sender::Replica(ReplicaId(2)), 3, &prepare()).unwrap();
        assert_eq!(decode(&KEY, 3, &bytes), Err(WireError::Unauthenticated));
    }

    #[test]
    fn a_changed_sender_byte_is_refused_as_unauthenticated() {
        let mut bytes = encode(&KEY, Sender::Replica(ReplicaId(2)), 3, &prepare()).unwrap();
        bytes[5] = 0;
        assert_eq!(decode(&KEY, 3, &bytes), Err(WireError::Unauthenticated));
    }

    #[test]
    fn every_truncation_and_bad_header_is_refused_without_panic() {
        let bytes = encode(&KEY, Sender::Client, 3, &request()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&KEY, 3, &bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        assert_eq!(decode(&KEY, 4, &bytes), Err(WireError::WrongCluster(3)));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode(&KEY, 3, &other), Err(WireError::WrongVersion(9)));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&KEY, 3, &longer), Err(WireError::Unauthenticated));
        assert_eq!(
            decode(&KEY, 3, &vec![1; DATAGRAM_MAX + 1]),
            Err(WireError::Oversized(DATAGRAM_MAX + 1))
        );
    }

    /// `body` behind a valid header and under a valid tag: what only a key
    /// holder could send.
    fn authenticated(body: &[u8], sender: u8) -> Vec<u8> {
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.push(sender);
        bytes.extend_from_slice(body);
        let tag = KEY.tag(&bytes);
        bytes.extend_from_slice(&tag);
        bytes
    }

    #[test]
    fn an_authenticated_body_with_trailing_bytes_is_malformed() {
        let bytes = encode(&KEY, Sender::Client, 3, &request()).unwrap();
        let mut body = bytes[HEADER..bytes.len() - TAG_LEN].to_vec();
        body.push(0);
        assert_eq!(
            decode(&KEY, 3, &authenticated(&body, SENDER_CLIENT)),
            Err(WireError::Malformed)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Random datagrams, with and without a valid header, are refused
        /// without a panic.
        #[test]
        fn random_datagrams_are_refused_without_panic(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            header in proptest::prelude::any::<bool>(),
        ) {
            if header && bytes.len() >= HEADER {
                bytes[0] = FORMAT_VERSION;
                bytes[1..5].copy_from_slice(&3u32.to_le_bytes());
            }
            proptest::prop_assert!(decode(&KEY, 3, &bytes).is_err());
        }

        /// The body decoder behind the tag never panics either, whatever a
        /// key holder sends.
        #[test]
        fn random_authenticated_bodies_decode_or_are_refused_without_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            sender in proptest::prelude::any::<u8>(),
        ) {
            let _ = decode(&KEY, 3, &authenticated(&body, sender));
        }

        /// Every datagram with one or more flipped bits is refused: no
        /// flipped datagram is taken as a message.
        #[test]
        fn bit_flipped_authenticated_datagrams_are_always_refused(
            sample in 0..4usize,
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0..8u8), 1..4),
        ) {
            let (sender, packet) = samples().swap_remove(sample);
            let original = encode(&KEY, sender, 3, &packet).unwrap();
            let mut bytes = original.clone();
            for (index, bit) in flips {
                let at = index.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            proptest::prop_assume!(bytes != original);
            proptest::prop_assert!(decode(&KEY, 3, &bytes).is_err());
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
                let bytes = encode(
                    &KEY,
                    Sender::Replica(ReplicaId(2)),
                    u32::MAX,
                    &replica_packet(msg),
                )
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
