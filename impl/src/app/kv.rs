//! A small deterministic key-value store.

use crate::core::StateMachine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The key-value store: every operation, reads included, goes through the log,
/// so every operation is linearizable.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kv {
    entries: BTreeMap<String, String>,
}

/// An operation on the store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KvOperation {
    /// Sets `key` to `value`.
    Put { key: String, value: String },
    /// Reads `key`.
    Get { key: String },
    /// Removes `key`.
    Delete { key: String },
    /// Sets `key` to `new` if its value is `expected` (`None`: absent).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

/// What an operation returns.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// Put: done.
    Stored,
    /// Get: the value, if any.
    Value(Option<String>),
    /// Delete: the value removed, if any.
    Deleted(Option<String>),
    /// Cas: whether it swapped, and the value the key held before.
    Cas {
        swapped: bool,
        previous: Option<String>,
    },
}

impl Kv {
    /// The value of `key`, read locally (not linearizable: for inspection).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl StateMachine for Kv {
    type Operation = KvOperation;
    type Output = KvOutput;

    fn apply(&mut self, operation: &KvOperation) -> KvOutput {
        match operation {
            KvOperation::Put { key, value } => {
                self.entries.insert(key.clone(), value.clone());
                KvOutput::Stored
            }
            KvOperation::Get { key } => KvOutput::Value(self.entries.get(key).cloned()),
            KvOperation::Delete { key } => KvOutput::Deleted(self.entries.remove(key)),
            KvOperation::Cas { key, expected, new } => {
                let previous = self.entries.get(key).cloned();
                let swapped = previous == *expected;
                if swapped {
                    self.entries.insert(key.clone(), new.clone());
                }
                KvOutput::Cas { swapped, previous }
            }
        }
    }

    fn output_weight(output: &KvOutput) -> u32 {
        let strings = match output {
            KvOutput::Value(value) | KvOutput::Deleted(value) => {
                value.as_ref().map_or(0, String::len)
            }
            KvOutput::Cas { previous, .. } => previous.as_ref().map_or(0, String::len),
            _ => 0,
        };
        u32::try_from(strings + 8).unwrap_or(u32::MAX)
    }

    fn register_weight() -> u32 {
        // A Register entry: the command's tag, the client id (at most 19
        // bytes) and the request-number (at most 10).
        1 + 19 + 10
    }

    fn rebuild(&self) -> Vec<KvOperation> {
        self.entries
            .iter()
            .map(|(key, value)| KvOperation::Put {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// An upper bound on the entry's encoded size in bytes (postcard): the
    /// strings, a length prefix of at most 5 bytes for each of up to three,
    /// the variant and option tags, and up to 20 bytes of client id and
    /// request-number.
    fn weight(operation: &KvOperation) -> u32 {
        // Lengths and tags, then the entry's fields: the command's tag, the
        // client id (a u128, at most 19 bytes) and the request-number.
        const OVERHEAD: usize = 3 * 5 + 2 + 1 + 19 + 10;
        let strings = match operation {
            KvOperation::Put { key, value } => key.len() + value.len(),
            KvOperation::Get { key } | KvOperation::Delete { key } => key.len(),
            KvOperation::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, String::len) + new.len()
            }
        };
        u32::try_from(strings + OVERHEAD).unwrap_or(u32::MAX)
    }
}

impl fmt::Debug for Kv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(&self.entries).finish()
    }
}

impl fmt::Debug for KvOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOperation::Put { key, value } => write!(f, "put {key}={value}"),
            KvOperation::Get { key } => write!(f, "get {key}"),
            KvOperation::Delete { key } => write!(f, "delete {key}"),
            KvOperation::Cas { key, expected, new } => write!(f, "cas {key} {expected:?}->{new}"),
        }
    }
}

impl fmt::Debug for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Stored => write!(f, "stored"),
            KvOutput::Value(v) => write!(f, "value {v:?}"),
            KvOutput::Deleted(v) => write!(f, "deleted {v:?}"),
            KvOutput::Cas { swapped, previous } => {
                write!(f, "cas swapped={swapped} previous={previous:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> KvOperation {
        KvOperation::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn compare_and_swap_swaps_only_on_the_expected_value() {
        let mut kv = Kv::default();
        kv.apply(&put("k", "a"));
        let miss = kv.apply(&KvOperation::Cas {
            key: "k".into(),
            expected: Some("b".into()),
            new: "c".into(),
        });
        assert_eq!(
            miss,
            KvOutput::Cas {
                swapped: false,
                previous: Some("a".into())
            }
        );
        let hit = kv.apply(&KvOperation::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "c".into(),
        });
        assert_eq!(
            hit,
            KvOutput::Cas {
                swapped: true,
                previous: Some("a".into())
            }
        );
        assert_eq!(kv.get("k"), Some("c"));
    }

    #[test]
    fn delete_returns_the_removed_value() {
        let mut kv = Kv::default();
        kv.apply(&put("k", "a"));
        assert_eq!(
            kv.apply(&KvOperation::Delete { key: "k".into() }),
            KvOutput::Deleted(Some("a".into()))
        );
        assert_eq!(
            kv.apply(&KvOperation::Get { key: "k".into() }),
            KvOutput::Value(None)
        );
    }
}
