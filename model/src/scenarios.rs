//! The named scenarios: model configurations worth checking, each exhaustive
//! within its bounds.

use crate::check::Strategy;
use crate::model::ModelConfig;
use crate::prelude::Prelude;

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
        Scenario {
            name: "pruning",
            about: "3 replicas, 1 client with a session and 1 newcomer registering, a client table of 1 row: the newcomer's Register prunes the client's session, whose request is refused (SessionExpired) or skipped, never executed twice",
            config: ModelConfig {
                newcomers: 1,
                client_table_max: 1,
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "new-primary-commits",
            about: "3 replicas from a prelude in which primary 0 committed ops 1-2 that the backups hold uncommitted; 1 crash: a view change that leaves 0 out and a crash make 0's PrepareOk after StartView the new primary's only way to commit them (LIVE-COMMIT)",
            config: ModelConfig {
                clients: 0,
                crashes: 1,
                prelude: Some(Prelude::OldPrimaryCommitted),
                ..base.clone()
            },
            depth: Some(7),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "views-past-n",
            about: "3 replicas from a prelude in view 2 (two view changes done), views up to 4, 1 crash: a replica is primary a second time",
            config: ModelConfig {
                clients: 0,
                crashes: 1,
                max_view: 4,
                prelude: Some(Prelude::ViewTwo),
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "after-recovery",
            about: "3 replicas from a prelude in which replica 2 crashed and recovered, 1 crash, views up to 2: replica 2 restarts a second time, or a view change follows the completed recovery",
            config: ModelConfig {
                clients: 0,
                crashes: 1,
                max_view: 2,
                prelude: Some(Prelude::RecoveredOnce),
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "fill",
            about: "3 replicas, one committed entry per message, primary 0 down, from a prelude in which the view change to view 1 is under way and replica 1 lacks every committed entry: primary 1 fills in its log from replica 2",
            config: ModelConfig {
                clients: 0,
                down: 1,
                message_weight_max: 1,
                prelude: Some(Prelude::FillNeeded),
                ..base.clone()
            },
            depth: Some(8),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "fill-from-checkpoint",
            about: "as `fill` with a checkpoint every 2 entries: replica 2 has compacted the entries primary 1 lacks, so primary 1 fetches replica 2's checkpoint in their place before it can start the view",
            config: ModelConfig {
                clients: 0,
                down: 1,
                message_weight_max: 1,
                checkpoint_interval: 2,
                prelude: Some(Prelude::FillNeeded),
                ..base.clone()
            },
            depth: Some(10),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "durable",
            about: "as `default` in durable mode, 2 crashes, views up to 2: more than f replicas down at once, each restarting from what it persisted (spec/protocol.md, \"Durability\")",
            config: ModelConfig {
                durable: true,
                crashes: 2,
                max_view: 2,
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "checkpoints",
            about: "as `default` with a checkpoint after every executed entry (logs compacted behind it), 1 crash, views up to 2: checkpoints taken, and a restarted replica's state transfer served from a compacted log",
            config: ModelConfig {
                checkpoint_interval: 1,
                crashes: 1,
                max_view: 2,
                ..base.clone()
            },
            depth: Some(6),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "checkpoint-fetch",
            about: "3 replicas, a checkpoint every 2 entries, from a prelude in which replicas 0 and 1 executed 6 writes (checkpoint at op 6, logs after op 4) and changed to view 1 without replica 2, which holds only the sessions and has asked primary 1 for the log: it fetches primary 1's checkpoint in parts, then the entry after it, and joins view 1",
            config: ModelConfig {
                clients: 0,
                checkpoint_interval: 2,
                prelude: Some(Prelude::CheckpointBehind),
                ..base.clone()
            },
            depth: Some(8),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "catch-up-overtaken",
            about: "3 replicas, 1 crash, views up to 3, from a prelude in which replica 0, catching up to view 1 (its GetState lost), hears primary 2's Commit of view 2: it moves on to view 2 and fetches its log (LIVE-JOIN), and a crash can make it primary of view 3",
            config: ModelConfig {
                clients: 0,
                crashes: 1,
                max_view: 3,
                prelude: Some(Prelude::CatchUpOvertaken),
                ..base.clone()
            },
            depth: Some(7),
            strategy: Strategy::Bfs,
        },
        Scenario {
            name: "malformed",
            about: "3 replicas, no client, from a prelude in which replica 2 restarted and is recovering: malformed messages in flight from the start, as a replica with a bug that holds the cluster key sends them (model/src/malformed.rs), each refused by a guard of the core, while the recovery or a view change goes on",
            config: ModelConfig {
                clients: 0,
                prelude: Some(Prelude::Recovering),
                malformed: true,
                ..base.clone()
            },
            depth: Some(5),
            strategy: Strategy::Bfs,
        },
    ]
}

/// The scenario called `name`.
pub fn named(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}
