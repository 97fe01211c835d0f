//! Telling a misconfigured client what is wrong, without helping an attacker
//! (spec/protocol.md, "Threat model", "Refusals").
//!
//! A replica drops a client's datagram of another cluster id, or one whose
//! tag does not verify under the cluster key, as it drops every refused
//! datagram; but it answers the client with a [`Refusal`], so that `vr get`
//! can say "wrong cluster id" or "wrong key" at once instead of timing out.
//! The replica cannot tag the answer (a client of another cluster or with
//! another key could not check the tag), so a refusal is the one
//! unauthenticated datagram of the wire format, and is built to be worth
//! nothing to an attacker:
//! - it answers only a datagram whose header says a client sent it, never a
//!   replica's (no ping-pong between misconfigured replicas), and is itself
//!   too short to be taken for anything but a refusal;
//! - it is smaller than any datagram it answers ([`REFUSAL_LEN`] bytes, a
//!   client's smallest datagram is 39), so a spoofed source gains nothing it
//!   did not send;
//! - it is rate-limited, [`ANSWERS_PER_SECOND`] at most, whatever the
//!   sources;
//! - it changes nothing in the replica but a counter, and carries no state:
//!   the reason and an echo of the refused datagram's tag, which binds it to
//!   a datagram the client sent, so that only an attacker who sees the
//!   client's traffic can forge one;
//! - the client takes it only as an error report, and gives up early only
//!   when a majority of the replicas refused (what an attacker who can drop
//!   datagrams can achieve anyway).

use super::auth::TAG_LEN;
use super::wire::{self, FORMAT_VERSION, HEADER, Sender, WireError};
use crate::core::ReplicaId;
use std::time::{Duration, Instant};

/// At most this many refusals a second, from one replica to every source
/// together; the rest are only counted.
pub const ANSWERS_PER_SECOND: u32 = 20;

/// Bytes of the refused datagram's tag a refusal echoes.
pub const ECHO_LEN: usize = 16;

/// Bytes in a refusal: the header, the reason and the echo.
pub const REFUSAL_LEN: usize = HEADER + 1 + ECHO_LEN;

/// The smallest datagram a client sends: a header, a one-byte body (a
/// StatusQuery) and a tag. Nothing shorter is answered.
const CLIENT_DATAGRAM_MIN: usize = HEADER + 1 + TAG_LEN;

/// Why a replica refused a client's datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The datagram carries another cluster id than the replica's.
    WrongCluster,
    /// The datagram's tag does not verify under the cluster key: the client
    /// holds another key.
    Unauthenticated,
}

impl Refusal {
    fn byte(self) -> u8 {
        match self {
            Refusal::WrongCluster => 1,
            Refusal::Unauthenticated => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Refusal> {
        match byte {
            1 => Some(Refusal::WrongCluster),
            2 => Some(Refusal::Unauthenticated),
            _ => None,
        }
    }
}

/// A token bucket: [`ANSWERS_PER_SECOND`] tokens, refilled every second.
#[derive(Debug, Default)]
pub struct RateLimit {
    window_started: Option<Instant>,
    used: u32,
}

impl RateLimit {
    /// Whether one more answer may go out at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let fresh = self
            .window_started
            .is_none_or(|started| now.duration_since(started) >= Duration::from_secs(1));
        if fresh {
            self.window_started = Some(now);
            self.used = 0;
        }
        if self.used >= ANSWERS_PER_SECOND {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Replica `from`'s answer to `datagram`, refused with `error` by a replica
/// of cluster `cluster_id`, if it deserves one: a datagram whose header
/// names a client, of another cluster id or whose tag did not verify. The
/// answer carries the cluster id the client used, so the client can read
/// it. The body is not decoded: no unauthenticated byte reaches the decoder.
pub fn answer(
    datagram: &[u8],
    error: &WireError,
    cluster_id: u32,
    from: ReplicaId,
) -> Option<Vec<u8>> {
    let (refusal, theirs) = match *error {
        WireError::WrongCluster(theirs) => (Refusal::WrongCluster, theirs),
        WireError::Unauthenticated => (Refusal::Unauthenticated, cluster_id),
        _ => return None,
    };
    if datagram.len() < CLIENT_DATAGRAM_MIN
        || wire::claimed_sender(datagram) != Some(Sender::Client)
    {
        return None;
    }
    let mut bytes = Vec::with_capacity(REFUSAL_LEN);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&theirs.to_le_bytes());
    bytes.push(from.0);
    bytes.push(refusal.byte());
    bytes.extend_from_slice(&tag(datagram)[..ECHO_LEN]);
    debug_assert!(bytes.len() == REFUSAL_LEN && bytes.len() < datagram.len());
    Some(bytes)
}

/// What `datagram` refuses, if it is a refusal for a client of cluster
/// `cluster_id` that answers `sent`, the datagram the client sent.
pub fn read(datagram: &[u8], cluster_id: u32, sent: &[u8]) -> Option<Refusal> {
    if datagram.len() != REFUSAL_LEN
        || datagram[0] != FORMAT_VERSION
        || datagram[1..5] != cluster_id.to_le_bytes()
        || sent.len() < CLIENT_DATAGRAM_MIN
        || datagram[HEADER + 1..] != tag(sent)[..ECHO_LEN]
    {
        return None;
    }
    Refusal::from_byte(datagram[HEADER])
}

/// The tag a datagram ends with (checked or not).
fn tag(datagram: &[u8]) -> &[u8] {
    &datagram[datagram.len() - TAG_LEN..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::KvOperation;
    use crate::core::{ClientId, Request, RequestNumber};
    use crate::runtime::auth::{KEY_LEN, Key};
    use crate::runtime::wire::Packet;

    const KEY: Key = Key::from_bytes([7; KEY_LEN]);
    const OTHER_KEY: Key = Key::from_bytes([8; KEY_LEN]);

    fn request(key: &Key, cluster_id: u32) -> Vec<u8> {
        let request = Packet::Request(Request {
            operation: crate::core::Command::Apply(KvOperation::Get { key: "k".into() }),
            client: ClientId(1),
            request: RequestNumber(1),
        });
        wire::encode(key, Sender::Client, cluster_id, &request).unwrap()
    }

    /// What replica 0 of cluster 3, holding [`KEY`], answers.
    fn answer_of(datagram: &[u8]) -> Option<Vec<u8>> {
        let error = wire::decode(&KEY, 3, datagram).unwrap_err();
        answer(datagram, &error, 3, ReplicaId(0))
    }

    #[test]
    fn a_client_request_of_another_cluster_gets_a_smaller_answer_it_can_read() {
        let sent = request(&KEY, 7);
        let reply = answer_of(&sent).expect("answered");
        assert!(reply.len() < sent.len());
        assert_eq!(read(&reply, 7, &sent), Some(Refusal::WrongCluster));
        // The smallest client datagram is answered too, by fewer bytes.
        let query = wire::encode(&KEY, Sender::Client, 7, &Packet::StatusQuery).unwrap();
        let reply = answer_of(&query).expect("answered");
        assert!(reply.len() < query.len());
        assert_eq!(read(&reply, 7, &query), Some(Refusal::WrongCluster));
    }

    #[test]
    fn a_client_request_under_another_key_gets_an_unauthenticated_answer() {
        let sent = request(&OTHER_KEY, 3);
        let reply = answer_of(&sent).expect("answered");
        assert!(reply.len() < sent.len());
        assert_eq!(read(&reply, 3, &sent), Some(Refusal::Unauthenticated));
    }

    #[test]
    fn a_refusal_answers_only_the_datagram_it_echoes_and_its_cluster() {
        let sent = request(&OTHER_KEY, 3);
        let reply = answer_of(&sent).unwrap();
        let other = wire::encode(&OTHER_KEY, Sender::Client, 3, &Packet::StatusQuery).unwrap();
        assert_eq!(read(&reply, 3, &other), None);
        assert_eq!(read(&reply, 4, &sent), None);
        let mut forged = reply.clone();
        forged[HEADER + 1] ^= 1;
        assert_eq!(read(&forged, 3, &sent), None);
        // A tagged datagram is never taken for a refusal.
        assert_eq!(read(&sent, 3, &sent), None);
    }

    #[test]
    fn replica_messages_refusals_garbage_and_other_errors_get_no_answer() {
        let from_replica = wire::encode(
            &OTHER_KEY,
            Sender::Replica(ReplicaId(1)),
            3,
            &Packet::StatusQuery,
        )
        .unwrap();
        assert_eq!(answer_of(&from_replica), None);
        let of_other_cluster =
            wire::encode(&KEY, Sender::Replica(ReplicaId(1)), 7, &Packet::StatusQuery).unwrap();
        assert_eq!(answer_of(&of_other_cluster), None);
        // A refusal is never answered (no ping-pong).
        let refusal = answer_of(&request(&OTHER_KEY, 3)).unwrap();
        assert_eq!(
            answer(&refusal, &WireError::Unauthenticated, 3, ReplicaId(0)),
            None
        );
        assert_eq!(
            answer(&refusal, &WireError::WrongCluster(3), 7, ReplicaId(0)),
            None
        );
        let mut garbage = request(&KEY, 3);
        garbage.truncate(CLIENT_DATAGRAM_MIN - 1);
        assert_eq!(
            answer(&garbage, &WireError::WrongCluster(3), 7, ReplicaId(0)),
            None
        );
        let sent = request(&KEY, 3);
        for error in [
            WireError::Malformed,
            WireError::WrongVersion(9),
            WireError::Oversized(sent.len()),
        ] {
            assert_eq!(answer(&sent, &error, 3, ReplicaId(0)), None);
        }
    }

    #[test]
    fn answers_are_limited_per_second() {
        let mut limit = RateLimit::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limit.allow(start)).count();
        assert_eq!(allowed, ANSWERS_PER_SECOND as usize);
        assert!(!limit.allow(start + Duration::from_millis(999)));
        assert!(limit.allow(start + Duration::from_secs(1)));
    }
}
