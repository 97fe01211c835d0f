//! The named scenarios: model configurations worth checking, each exhaustive
//! within its bounds.

use crate::check::Strategy;
use crate::model::ModelConfig;

/// A named configuration.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub config: ModelConfig,
    /// Every path of at most this many steps is checked (None: no limit).
    pub depth: Option<usize>,
    /// How to search: breadth-first where the depth bound makes it
    /// exhaustive within memory, depth-first (no depth bound) where the
    /// breadth-first frontier would not fit.
    pub strategy: Strategy,
}

/// Every named scenario, `default` first.
pub fn all() -> Vec<Scenario> {
    let base = ModelConfig::default();
    vec![
        Scenario {
            name: "default",
            about: "3 replicas, 1 client: normal operation, a view change, resends and disconnection",
            config: base.clone(),
            depth: Some(8),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "next-primary-fails",
            about: "3 replicas, 1 crash anywhere, views up to 2: among the paths, primary(1) crashes during the view change to view 1 and view 2 forms",
            config: ModelConfig {
                crashes: 1,
                max_view: 2,
                ..base.clone()
            },
            depth: Some(7),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "lossy",
            about: "3 replicas, a lossy and duplicating network: resend, disconnect and the de-duplication caches",
            config: ModelConfig {
                lossy: true,
                duplicating: true,
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "recovery",
            about: "3 replicas: a replica crashes, restarts and recovers",
            config: ModelConfig {
                crashes: 1,
                ..base.clone()
            },
            depth: Some(7),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "five-replicas",
            about: "5 replicas (f = 2): primary(0) and primary(1) are down; the view change to view 1 is abandoned and view 2 must form",
            config: ModelConfig {
                replicas: 5,
                clients: 0,
                down: 2,
                max_view: 2,
                // One attempt per message: the first unconfirmed resend
                // timeout counts the peer disconnected. With resends the
                // state space at the depth a five-replica view change needs
                // does not fit in memory.
                attempts_max: 1,
                ..base
            },
            depth: Some(10),
            strategy: Strategy::Bfs,
        },
    ]
}

/// The scenario called `name`.
pub fn named(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}
