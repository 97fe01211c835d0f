//! What a replica knows about its cluster before it hears from anyone.

use super::types::{ReplicaId, View};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The delivery layer's default number of attempts per message (the first
/// send included) before the receiver counts as disconnected.
pub const ATTEMPTS_MAX_DEFAULT: u8 = 3;

/// The default bound on log entries in one NewState message.
pub const STATE_TRANSFER_ENTRIES_MAX_DEFAULT: u32 = 64;

/// The default bound on the weight of the log entries in one message: none,
/// so view change and recovery messages carry whole logs, as in the paper.
/// The runtime sets a bound that keeps every message within a datagram.
pub const MESSAGE_WEIGHT_MAX_DEFAULT: u32 = u32::MAX;

/// The default bound on client-table rows (spec/protocol.md, "Client
/// sessions").
pub const CLIENT_TABLE_MAX_DEFAULT: u64 = 10_000;

/// The cluster configuration and this replica's place in it.
///
/// Invariants: `replica_count` is odd and at least 1; `id < replica_count`;
/// `attempts_max >= 1`; `state_transfer_entries_max >= 1`;
/// `message_weight_max >= 1`; `client_table_max >= 1`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Config {
    /// n = 2f + 1, the number of replicas in the cluster.
    replica_count: u8,
    /// This replica's id.
    id: ReplicaId,
    /// Attempts per replica-to-replica message, the first send included,
    /// before the receiver counts as disconnected.
    attempts_max: u8,
    /// At most this many log entries travel in one NewState message.
    state_transfer_entries_max: u32,
    /// At most this much log-entry weight ([`StateMachine::weight`]) travels
    /// in one message, beyond the entries that are not committed yet, and the
    /// primary admits no request that would take its uncommitted entries
    /// beyond it.
    ///
    /// [`StateMachine::weight`]: super::StateMachine::weight
    message_weight_max: u32,
    /// A checkpoint is taken every this many executed entries, and the log
    /// is compacted up to the previous one (`u64::MAX`: never).
    checkpoint_interval: u64,
    /// The client table holds at most this many rows: executing a Register
    /// beyond it prunes the row whose latest executed entry is oldest.
    client_table_max: u64,
    /// A deliberately wrong rule, for testing the model checker.
    #[cfg(feature = "wrong-variants")]
    bug: Option<Bug>,
}

/// A deliberately wrong variant of a protocol rule (feature
/// `wrong-variants`): the model's tests show each one is caught.
#[cfg(feature = "wrong-variants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bug {
    /// The primary commits an entry with one PrepareOk fewer than f.
    CommitWithoutQuorum,
    /// primary(v) counts a re-delivered DoViewChange a second time.
    CountDuplicateDoViewChange,
    /// A backup entering a view sends PrepareOk only for entries beyond its
    /// own commit-number, not beyond the commit-number the primary sent: a
    /// liveness bug (the primary may never commit entries the backup already
    /// holds as committed), caught by LIVE-COMMIT.
    PrepareOkAgainstOwnCommit,
    /// An idle primary does not re-send a heartbeat whose identical
    /// predecessor is still unconfirmed: a lost copy silences the heartbeats
    /// to that backup until the Resend timer's copies.
    SuppressUnconfirmedHeartbeat,
    /// A replica catching up to view v that hears from the primary of a
    /// newer view asks that primary again for view v's log instead of moving
    /// to the newer view: the primary ignores a GetState of another view, so
    /// the replica stays out until its view-change timer fires, a liveness
    /// bug caught by LIVE-JOIN.
    CatchUpIgnoresNewerView,
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// n must be 2f + 1 for some f >= 0.
    ReplicaCountNotOdd(u8),
    /// The id names no replica of the cluster.
    UnknownReplica { id: ReplicaId, replica_count: u8 },
    /// At least one attempt is needed to send anything.
    AttemptsMaxZero,
    /// State transfer must move at least one entry per message.
    StateTransferEntriesMaxZero,
    /// A message must be able to carry at least one entry.
    MessageWeightMaxZero,
    /// Checkpoints must be at least one entry apart.
    CheckpointIntervalZero,
    /// The client table must hold at least the session just opened.
    ClientTableMaxZero,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ReplicaCountNotOdd(n) => write!(
                f,
                "a cluster needs an odd number of replicas (2f+1), not {n}"
            ),
            ConfigError::UnknownReplica { id, replica_count } => write!(
                f,
                "replica id {id} is not in a cluster of {replica_count} (ids are 0..{replica_count})"
            ),
            ConfigError::AttemptsMaxZero => write!(f, "attempts_max must be at least 1"),
            ConfigError::StateTransferEntriesMaxZero => {
                write!(f, "state_transfer_entries_max must be at least 1")
            }
            ConfigError::MessageWeightMaxZero => write!(f, "message_weight_max must be at least 1"),
            ConfigError::CheckpointIntervalZero => {
                write!(f, "checkpoint_interval must be at least 1")
            }
            ConfigError::ClientTableMaxZero => write!(f, "client_table_max must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A configuration with the default delivery and state-transfer settings.
    pub fn new(replica_count: u8, id: ReplicaId) -> Result<Config, ConfigError> {
        Config::with_settings(
            replica_count,
            id,
            ATTEMPTS_MAX_DEFAULT,
            STATE_TRANSFER_ENTRIES_MAX_DEFAULT,
        )
    }

    /// A configuration with every setting given.
    pub fn with_settings(
        replica_count: u8,
        id: ReplicaId,
        attempts_max: u8,
        state_transfer_entries_max: u32,
    ) -> Result<Config, ConfigError> {
        if replica_count.is_multiple_of(2) {
            return Err(ConfigError::ReplicaCountNotOdd(replica_count));
        }
        if id.0 >= replica_count {
            return Err(ConfigError::UnknownReplica { id, replica_count });
        }
        if attempts_max == 0 {
            return Err(ConfigError::AttemptsMaxZero);
        }
        if state_transfer_entries_max == 0 {
            return Err(ConfigError::StateTransferEntriesMaxZero);
        }
        Ok(Config {
            replica_count,
            id,
            attempts_max,
            state_transfer_entries_max,
            message_weight_max: MESSAGE_WEIGHT_MAX_DEFAULT,
            checkpoint_interval: u64::MAX,
            client_table_max: CLIENT_TABLE_MAX_DEFAULT,
            #[cfg(feature = "wrong-variants")]
            bug: None,
        })
    }

    /// The same configuration with another bound on the log-entry weight of
    /// one message (at least 1).
    pub fn with_message_weight_max(self, message_weight_max: u32) -> Result<Config, ConfigError> {
        if message_weight_max == 0 {
            return Err(ConfigError::MessageWeightMaxZero);
        }
        Ok(Config {
            message_weight_max,
            ..self
        })
    }

    /// The same cluster seen from another replica.
    pub fn for_replica(self, id: ReplicaId) -> Result<Config, ConfigError> {
        if !self.contains(id) {
            return Err(ConfigError::UnknownReplica {
                id,
                replica_count: self.replica_count,
            });
        }
        Ok(Config { id, ..self })
    }

    /// The same configuration with a deliberately wrong rule.
    #[cfg(feature = "wrong-variants")]
    pub fn with_bug(self, bug: Bug) -> Config {
        Config {
            bug: Some(bug),
            ..self
        }
    }

    /// Whether the deliberately wrong rule `bug` is in force.
    #[cfg(feature = "wrong-variants")]
    pub(super) fn has_bug(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// Whether a wrong variant is in force: the handlers' own assertions are
    /// then off, so that the model checker, not a panic, reports what breaks.
    pub(super) fn is_wrong_variant(&self) -> bool {
        #[cfg(feature = "wrong-variants")]
        return self.bug.is_some();
        #[cfg(not(feature = "wrong-variants"))]
        false
    }

    /// n, the number of replicas.
    pub fn replica_count(&self) -> u8 {
        self.replica_count
    }

    /// f, the number of replicas that may fail: n = 2f + 1.
    pub fn f(&self) -> usize {
        usize::from(self.replica_count / 2)
    }

    /// f + 1, the size of every quorum.
    pub fn quorum(&self) -> usize {
        self.f() + 1
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Attempts per message before the receiver counts as disconnected.
    pub fn attempts_max(&self) -> u8 {
        self.attempts_max
    }

    /// The bound on log entries in one NewState message.
    pub fn state_transfer_entries_max(&self) -> u32 {
        self.state_transfer_entries_max
    }

    /// The bound on the log-entry weight of one message.
    pub fn message_weight_max(&self) -> u32 {
        self.message_weight_max
    }

    /// The same configuration taking a checkpoint, and compacting the log,
    /// every `interval` executed entries (at least 1).
    pub fn with_checkpoint_interval(self, interval: u64) -> Result<Config, ConfigError> {
        if interval == 0 {
            return Err(ConfigError::CheckpointIntervalZero);
        }
        Ok(Config {
            checkpoint_interval: interval,
            ..self
        })
    }

    /// Executed entries between checkpoints (`u64::MAX`: no checkpoints).
    pub fn checkpoint_interval(&self) -> u64 {
        self.checkpoint_interval
    }

    /// The same configuration bounding the client table to `max` rows (at
    /// least 1).
    pub fn with_client_table_max(self, max: u64) -> Result<Config, ConfigError> {
        if max == 0 {
            return Err(ConfigError::ClientTableMaxZero);
        }
        Ok(Config {
            client_table_max: max,
            ..self
        })
    }

    /// The bound on client-table rows.
    pub fn client_table_max(&self) -> u64 {
        self.client_table_max
    }

    /// primary(v) = v mod n (paper 4).
    pub fn primary(&self, view: View) -> ReplicaId {
        view.primary(self.replica_count)
    }

    /// Whether `id` names a replica of this cluster.
    pub fn contains(&self, id: ReplicaId) -> bool {
        id.0 < self.replica_count
    }

    /// Every replica but this one, in id order.
    pub fn others(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.replica_count)
            .map(ReplicaId)
            .filter(move |&r| r != self.id)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}/{} attempts_max={} state_transfer_entries_max={}",
            self.id, self.replica_count, self.attempts_max, self.state_transfer_entries_max
        )?;
        if self.message_weight_max != MESSAGE_WEIGHT_MAX_DEFAULT {
            write!(f, " message_weight_max={}", self.message_weight_max)?;
        }
        if self.checkpoint_interval != u64::MAX {
            write!(f, " checkpoint_interval={}", self.checkpoint_interval)?;
        }
        if self.client_table_max != CLIENT_TABLE_MAX_DEFAULT {
            write!(f, " client_table_max={}", self.client_table_max)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_replica_count_is_refused() {
        assert_eq!(
            Config::new(4, ReplicaId(0)),
            Err(ConfigError::ReplicaCountNotOdd(4))
        );
        assert_eq!(
            Config::new(0, ReplicaId(0)),
            Err(ConfigError::ReplicaCountNotOdd(0))
        );
    }

    #[test]
    fn an_id_outside_the_cluster_is_refused() {
        assert_eq!(
            Config::new(3, ReplicaId(3)),
            Err(ConfigError::UnknownReplica {
                id: ReplicaId(3),
                replica_count: 3
            })
        );
    }

    #[test]
    fn the_primary_rotates_with_the_view() {
        let config = Config::new(5, ReplicaId(0)).unwrap();
        assert_eq!(config.f(), 2);
        assert_eq!(config.quorum(), 3);
        assert_eq!(config.primary(View(0)), ReplicaId(0));
        assert_eq!(config.primary(View(7)), ReplicaId(2));
        assert_eq!(
            config.others().collect::<Vec<_>>(),
            [1, 2, 3, 4].map(ReplicaId)
        );
    }
}
