//! Telling a misconfigured client that it has the wrong cluster id, without
//! helping an attacker.
//!
//! A replica drops a datagram of another cluster id, as it always did; but
//! when that datagram is a well-formed client Request or StatusQuery under its
//! own id, the replica answers with [`Packet::WrongCluster`] under the
//! client's id, so that `vr get` can say "wrong cluster id" at once instead
//! of timing out. The answer:
//! - is never larger than the datagram it answers (no amplification: a
//!   spoofed source gains nothing it did not send),
//! - is rate-limited, [`ANSWERS_PER_SECOND`] at most, whatever the sources,
//! - changes nothing in the replica but a counter, and
//! - names neither the replica's cluster id nor anything of its state.

use super::wire::{self, Packet, WireError};
use std::time::{Duration, Instant};

/// At most this many "wrong cluster" answers a second, from one replica to
/// every source together; the rest are only counted.
pub const ANSWERS_PER_SECOND: u32 = 20;

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

/// The answer to `datagram`, refused with `error`, if it deserves one: a
/// client's Request or StatusQuery, well formed under the cluster id it
/// carries, whose answer is no larger than it.
pub fn answer(datagram: &[u8], error: &WireError) -> Option<Vec<u8>> {
    let WireError::WrongCluster(theirs) = *error else {
        return None;
    };
    match wire::decode(theirs, datagram) {
        Ok(Packet::Request(_) | Packet::StatusQuery) => {}
        _ => return None,
    }
    wire::encode(theirs, &Packet::WrongCluster)
        .ok()
        .filter(|answer| answer.len() <= datagram.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::KvOperation;
    use crate::core::{ClientId, Request, RequestNumber};

    #[test]
    fn a_client_request_of_another_cluster_gets_a_small_answer_it_can_read() {
        let request = Packet::Request(Request {
            operation: crate::core::Command::Apply(KvOperation::Get { key: "k".into() }),
            client: ClientId(1),
            request: RequestNumber(1),
        });
        let datagram = wire::encode(7, &request).unwrap();
        let error = wire::decode(3, &datagram).unwrap_err();
        let reply = answer(&datagram, &error).expect("answered");
        assert!(reply.len() <= datagram.len());
        assert_eq!(wire::decode(7, &reply), Ok(Packet::WrongCluster));
        // The smallest client datagram gets an answer of the same size.
        let query = wire::encode(7, &Packet::StatusQuery).unwrap();
        let reply = answer(&query, &wire::decode(3, &query).unwrap_err()).unwrap();
        assert_eq!(reply.len(), query.len());
    }

    #[test]
    fn replica_messages_garbage_and_other_errors_get_no_answer() {
        let reply = wire::encode(7, &Packet::WrongCluster).unwrap();
        // An answer is never answered (no ping-pong between two replicas).
        assert_eq!(answer(&reply, &wire::decode(3, &reply).unwrap_err()), None);
        let mut garbage = wire::encode(7, &Packet::StatusQuery).unwrap();
        garbage.extend_from_slice(b"junk");
        assert_eq!(answer(&garbage, &WireError::WrongCluster(7)), None);
        assert_eq!(
            answer(b"\x02\x07\x00\x00\x00\x04", &WireError::Malformed),
            None
        );
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
