//! The model in durable mode (spec/protocol.md, "Durability"): a crashed
//! replica restarts from the durable fields it held, so more than f may be
//! down at once, and a restarted replica keeps its promises.

use vr_model::check::{self, RunOptions, Strategy};
use vr_model::model::ModelConfig;

fn durable(crashes: u8) -> ModelConfig {
    ModelConfig {
        durable: true,
        crashes,
        requests: 1,
        max_view: 2,
        ..ModelConfig::default()
    }
}

#[test]
fn a_durable_model_in_which_more_than_f_replicas_crash_and_restart_holds_every_invariant() {
    let options = RunOptions {
        strategy: Strategy::Bfs,
        depth: Some(DEPTH),
        ..RunOptions::default()
    };
    let report = check::run(durable(2).into_model().expect("valid bounds"), &options);
    assert!(report.complete);
    for p in &report.properties {
        assert!(
            p.status == "holds" || p.status == "witnessed",
            "{} is {}: {:?}",
            p.name,
            p.status,
            p.trace
        );
    }
    assert!(report.passed(), "{report:#?}");
}

const DEPTH: usize = 6;
