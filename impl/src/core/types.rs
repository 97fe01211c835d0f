//! The protocol's numbers. Each means one thing, so each has its own type: a
//! view-number cannot be compared with an op-number by mistake.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The largest view-, op- or commit-number a replica takes from a message
/// (spec/protocol.md, "Threat model": number ranges). No cluster comes near
/// it (2^62 operations at a billion a second take 146 years), and it leaves
/// the arithmetic on these numbers (the next view, an op-number plus a
/// batch's length) room that never overflows: a message carrying a larger
/// number is malformed and dropped before it changes anything, so that no
/// sender can push a replica to the end of the number line.
pub const NUMBER_MAX: u64 = 1 << 62;

macro_rules! number {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

number!(
    /// A replica's index in the configuration. The order of ids is the order in
    /// which replicas become primary: primary(v) = v mod n.
    ReplicaId(u8), "r"
);
number!(
    /// The view-number: which view (and so which primary) a replica is in.
    View(u64), "v"
);
number!(
    /// The op-number: the position of an entry in the log, counted from 1. The
    /// op-number of a replica is the position of its latest entry (0 when empty).
    OpNumber(u64), "op"
);
number!(
    /// The commit-number: the op-number of the most recently committed entry.
    /// Every entry at or below it is committed, and executed.
    CommitNumber(u64), "c"
);
number!(
    /// A client's identity: the session the cluster granted it
    /// (spec/protocol.md, "Client sessions"). The high 64 bits are the
    /// op-number of the Register entry that opened the session (unique, never
    /// reused), the low 64 bits the secret the client chose for it, so that
    /// an id cannot be guessed from the op-numbers. A client without a
    /// session registers under a provisional id: its secret alone, high half
    /// 0 (no entry has op-number 0).
    ClientId(u128), "client"
);
number!(
    /// A client's request-number: each client numbers its requests 1, 2, 3, ...
    RequestNumber(u64), "req"
);
number!(
    /// Identifies a replica-to-replica message for the delivery layer: the
    /// receiver's Ack names it, and every resend of a message keeps its id.
    /// The id is a digest of the receiver and the content ([`MessageId::of`]):
    /// the same content to the same replica is the same message, so the id
    /// needs no counter (nothing to lose in a crash, no state that only
    /// grows) and a late Ack can only confirm content that did arrive.
    MessageId(u64), "m"
);
number!(
    /// The number a recovering replica puts in its Recovery message so that it
    /// can tell the answers to this recovery from those to an earlier one.
    Nonce(u64), "nonce"
);

impl View {
    /// primary(v) = v mod n: the replica that leads this view in a cluster of
    /// `replica_count` (paper 4). The one place the rule is written; clients
    /// use it too, to find whom to ask.
    pub fn primary(self, replica_count: u8) -> ReplicaId {
        ReplicaId((self.0 % u64::from(replica_count.max(1))) as u8)
    }

    /// The view after this one. Views stay far below `u64::MAX` (messages
    /// with views above [`NUMBER_MAX`] are dropped); the addition saturates
    /// rather than wrap all the same, so that no path could take a replica
    /// back to view 0, where it would refuse every message as stale.
    pub fn next(self) -> View {
        View(self.0.saturating_add(1))
    }
}

impl OpNumber {
    /// The op-number after this one; saturating, as [`View::next`].
    pub fn next(self) -> OpNumber {
        OpNumber(self.0.saturating_add(1))
    }

    /// The commit-number that commits every entry up to and including this one.
    pub fn as_commit(self) -> CommitNumber {
        CommitNumber(self.0)
    }
}

impl CommitNumber {
    /// The op-number of the entry this commit-number points at.
    pub fn as_op(self) -> OpNumber {
        OpNumber(self.0)
    }
}

impl MessageId {
    /// The id of `msg` sent to `to`: a deterministic 64-bit digest, the same
    /// in every run of the same build. Two different messages to one replica
    /// share an id with probability about 2^-64; the cost would be a missed
    /// resend, not a wrong protocol step.
    pub fn of<T: Hash>(to: ReplicaId, msg: &T) -> MessageId {
        let mut hasher = DefaultHasher::new();
        to.hash(&mut hasher);
        msg.hash(&mut hasher);
        MessageId(hasher.finish())
    }
}

impl ClientId {
    /// The provisional id a client registers under: its secret alone.
    pub fn provisional(secret: u64) -> ClientId {
        ClientId(u128::from(secret))
    }

    /// The id of the session the Register entry at op-number `op` opened
    /// for the client whose secret is `secret`.
    pub fn granted(op: OpNumber, secret: u64) -> ClientId {
        ClientId((u128::from(op.0) << 64) | u128::from(secret))
    }

    /// The op-number of the Register entry that opened this session; None
    /// for a provisional id.
    pub fn register_op(self) -> Option<OpNumber> {
        let op = (self.0 >> 64) as u64;
        (op != 0).then_some(OpNumber(op))
    }

    /// The client's secret.
    pub fn secret(self) -> u64 {
        self.0 as u64
    }
}

impl RequestNumber {
    /// The request-number after this one; saturating, as [`View::next`]
    /// (a client would need 2^64 requests to get there).
    pub fn next(self) -> RequestNumber {
        RequestNumber(self.0.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_numbers_at_the_end_of_the_range_never_wrap_to_zero() {
        assert_eq!(View(u64::MAX - 1).next(), View(u64::MAX));
        assert_eq!(View(u64::MAX).next(), View(u64::MAX));
        assert_eq!(OpNumber(u64::MAX - 1).next(), OpNumber(u64::MAX));
        assert_eq!(OpNumber(u64::MAX).next(), OpNumber(u64::MAX));
        assert_eq!(RequestNumber(u64::MAX - 1).next(), RequestNumber(u64::MAX));
        assert_eq!(RequestNumber(u64::MAX).next(), RequestNumber(u64::MAX));
        assert_eq!(View(NUMBER_MAX).next(), View(NUMBER_MAX + 1));
    }
}
