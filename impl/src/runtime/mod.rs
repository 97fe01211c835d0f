//! The runtime: the core driven by real UDP sockets and clocks. One thread per
//! replica runs [`node::Node::run`], the single execution loop.

pub mod config;
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

/// Decides how replica `id` starts from its marker in `dir`, and leaves the
/// marker for the next start.
pub fn start_mode(dir: &Path, cluster_id: u32, id: u8) -> std::io::Result<Start> {
    let marker = start_marker(dir, cluster_id, id);
    let start = if marker.exists() {
        Start::Recover
    } else {
        Start::Fresh
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(&marker, b"started\n")?;
    Ok(start)
}
