//! How a replica process starts (spec/protocol.md, "Starting a replica"):
//! never empty unless told.
//!
//! Each replica has a directory, `<data_dir>/replica-<id>`. In durable mode
//! it holds the replica's storage: a replica with state restarts from it,
//! and one without refuses to start unless given `--fresh`. In in-memory
//! mode it holds only a start marker: a replica that has started before
//! recovers from its peers, and one with no marker refuses to start unless
//! given `--fresh` (its first start) or `--recover`. A replica that
//! started empty in view 0 by mistake would answer and vote as if it held
//! nothing committed, losing acknowledged writes: that is why guessing is
//! not allowed.

use super::config::ClusterConfig;
use super::node::Start;
use super::storage::{FileDisk, Opened, Storage};
use crate::app::Kv;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// No flag: restart from what the directory holds.
    Restart,
    /// `--fresh`: the cluster's first start.
    Fresh,
    /// `--recover`: recover from the peers, whatever the directory holds.
    Recover,
}

/// Replica `id`'s directory under `data_dir`.
pub fn replica_dir(data_dir: &Path, id: u8) -> PathBuf {
    data_dir.join(format!("replica-{id}"))
}

/// The in-memory mode's start marker in replica directory `dir`.
pub fn start_marker(dir: &Path) -> PathBuf {
    dir.join("started")
}

/// How replica `id` starts, and its storage in durable mode; an error
/// that says what to do when the directory does not allow the start asked.
pub fn prepare(
    cluster: &ClusterConfig,
    id: u8,
    dir: &Path,
    asked: Asked,
) -> Result<(Start, Option<Storage<Kv, FileDisk>>), String> {
    let config = cluster.core_config(id).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    if !cluster.durable {
        let marked = start_marker(dir).exists();
        return match asked {
            Asked::Fresh => Ok((Start::Fresh, None)),
            Asked::Recover => Ok((Start::Recover, None)),
            Asked::Restart if marked => Ok((Start::Recover, None)),
            Asked::Restart => Err(format!(
                "replica {id} has no start marker in {}: if this is the cluster's first start, \
                 start it with --fresh; if it ran before and its directory was lost, start it \
                 with --recover so that it recovers from the other replicas",
                dir.display()
            )),
        };
    }
    let (mut storage, opened) = Storage::open(FileDisk::new(dir), &config)
        .map_err(|e| format!("cannot read the data directory {}: {e}", dir.display()))?;
    let start = match (asked, opened) {
        (Asked::Fresh, Opened::Empty) => Start::Fresh,
        (Asked::Fresh, _) => {
            return Err(format!(
                "replica {id}'s data directory {} holds its state: it has started before. \
                 Restart it without --fresh; remove the directory only if the whole cluster is \
                 to start anew, empty",
                dir.display()
            ));
        }
        (Asked::Recover, _) => {
            storage.distrust();
            Start::Recover
        }
        (Asked::Restart, Opened::Empty) => {
            return Err(format!(
                "replica {id} has no state in {}: if this is the cluster's first start, start it \
                 with --fresh; if its data directory was lost, start it with --recover so that \
                 it recovers from the other replicas",
                dir.display()
            ));
        }
        (Asked::Restart, Opened::Kept { durable, torn }) => {
            if torn {
                warn!(
                    replica = id,
                    "the last write before the crash was torn: cut off"
                );
            }
            info!(replica = id, dir = %dir.display(), "restarting from the data directory");
            Start::FromDisk(Box::new(durable))
        }
        (Asked::Restart, Opened::Corrupt(reason)) => {
            warn!(replica = id, %reason, "the data directory is corrupt: recovering from the other replicas");
            Start::Recover
        }
    };
    Ok((start, Some(storage)))
}

/// Leaves the in-memory mode's start marker, once the replica runs.
pub fn mark_started(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(start_marker(dir), b"started\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vr-startup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn cluster(durable: bool) -> ClusterConfig {
        let mut cluster = ClusterConfig::loopback(1, 3, 7000).unwrap();
        cluster.durable = durable;
        cluster
    }

    #[test]
    fn an_in_memory_replica_without_its_marker_refuses_to_start_unless_told_how() {
        let dir = scratch("memory");
        let cluster = cluster(false);
        let error = prepare(&cluster, 1, &dir, Asked::Restart).err().unwrap();
        assert!(
            error.contains("--fresh") && error.contains("--recover"),
            "{error}"
        );
        assert_eq!(
            prepare(&cluster, 1, &dir, Asked::Fresh).unwrap().0,
            Start::Fresh
        );
        mark_started(&dir).unwrap();
        assert_eq!(
            prepare(&cluster, 1, &dir, Asked::Restart).unwrap().0,
            Start::Recover
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_durable_replica_starts_empty_only_with_fresh_and_never_over_its_state() {
        let dir = scratch("durable");
        let cluster = cluster(true);
        let error = prepare(&cluster, 1, &dir, Asked::Restart).err().unwrap();
        assert!(error.contains("--fresh"), "{error}");
        let (start, storage) = prepare(&cluster, 1, &dir, Asked::Fresh).unwrap();
        assert_eq!(start, Start::Fresh);
        // The first start writes the initial state.
        let mut storage = storage.unwrap();
        let mut effects = Vec::new();
        let config = cluster.core_config(1).unwrap();
        crate::core::Replica::<Kv>::new(config, &mut effects);
        for effect in &effects {
            if let crate::core::Effect::Persist(p) = effect {
                storage.persist(p).unwrap();
            }
        }
        storage.sync().unwrap();
        drop(storage);
        let error = prepare(&cluster, 1, &dir, Asked::Fresh).err().unwrap();
        assert!(error.contains("holds its state"), "{error}");
        assert!(matches!(
            prepare(&cluster, 1, &dir, Asked::Restart).unwrap().0,
            Start::FromDisk(_)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
