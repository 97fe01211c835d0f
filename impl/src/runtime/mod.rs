//! The runtime: the core driven by real UDP sockets and clocks. One thread per
//! replica runs [`node::Node::run`], the single execution loop.

pub mod auth;
pub mod clients;
pub mod config;
pub mod keyfile;
pub mod node;
pub mod wire;

pub use config::{ClusterConfig, ConfigFileError, Settings};
pub use node::{Node, Start, StartError};

use std::path::{Path, PathBuf};

/// The file that records that replica `id` of `cluster_id` has started before.
/// A replica keeps no protocol state across a restart (spec/protocol.md,
/// "What survives a restart"); it only needs to know whether this start is
/// the cluster's first, or a restart that must recover.
pub fn start_marker(dir: &Path, cluster_id: u32, id: u8) -> PathBuf {
    dir.join(format!("cluster-{cluster_id}-replica-{id}.started"))
}

/// How replica `id` starts, by its marker in `dir`: a restart if it has
/// started before.
pub fn start_mode(dir: &Path, cluster_id: u32, id: u8) -> Start {
    if start_marker(dir, cluster_id, id).exists() {
        Start::Recover
    } else {
        Start::Fresh
    }
}

/// Leaves the marker that makes replica `id`'s next start a recovery. Written
/// on every start, whatever decided its mode, once the replica is running.
pub fn mark_started(dir: &Path, cluster_id: u32, id: u8) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(start_marker(dir, cluster_id, id), b"started\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_started_once_in_any_mode_recovers_on_its_next_start() {
        let dir = std::env::temp_dir().join(format!("vr-marker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(start_mode(&dir, 4, 1), Start::Fresh);
        mark_started(&dir, 4, 1).unwrap();
        assert_eq!(start_mode(&dir, 4, 1), Start::Recover);
        assert_eq!(
            start_mode(&dir, 4, 2),
            Start::Fresh,
            "markers are per replica"
        );
        assert_eq!(start_mode(&dir, 5, 1), Start::Fresh, "and per cluster");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
