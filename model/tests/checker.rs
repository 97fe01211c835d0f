//! The model checker on small bounds: the scenarios pass, the explored state
//! count is pinned, and deliberately wrong variants of the core are caught.

use vr::core::Bug;
use vr_model::check::{self, Report, RunOptions, Strategy};
use vr_model::model::ModelConfig;
use vr_model::properties;

fn bfs(depth: usize) -> RunOptions {
    RunOptions {
        strategy: Strategy::Bfs,
        depth: Some(depth),
        ..RunOptions::default()
    }
}

fn run(cfg: ModelConfig, depth: usize) -> Report {
    check::run(cfg.into_model().expect("valid bounds"), &bfs(depth))
}

fn run_with_bug(cfg: ModelConfig, bug: Bug, depth: usize) -> Report {
    let config = cfg.replica_config().expect("valid bounds").with_bug(bug);
    check::run(cfg.into_model_with(config), &bfs(depth))
}

fn violated(report: &Report) -> Vec<&'static str> {
    report
        .properties
        .iter()
        .filter(|p| p.status == "violated")
        .map(|p| p.name)
        .collect()
}

/// The steps to the counterexample or witness of property `name`.
fn trace<'a>(report: &'a Report, name: &str) -> &'a [String] {
    report
        .property(name)
        .and_then(|p| p.trace.as_deref())
        .unwrap_or_else(|| panic!("no trace for {name}"))
}

fn status<'a>(report: &'a Report, name: &str) -> &'a str {
    report
        .property(name)
        .unwrap_or_else(|| panic!("no property {name}"))
        .status
}

#[test]
fn the_default_model_holds_every_invariant_and_reaches_every_behaviour_at_six_steps() {
    let report = run(ModelConfig::default(), 6);
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
    assert!(report.passed());
    // Only the Resend timer's expiry, with a message's attempts spent,
    // counts a peer disconnected (spec/protocol.md, "Delivery").
    let disconnected = trace(&report, properties::PEER_DISCONNECTED);
    assert!(
        disconnected
            .last()
            .is_some_and(|step| step.contains("Resend")),
        "{disconnected:#?}"
    );
}

#[test]
fn a_model_that_checkpoints_after_every_entry_holds_every_invariant_at_six_steps() {
    // Every commit takes a checkpoint and compacts the log behind the one
    // before: the invariants must hold over compacted logs too.
    let cfg = ModelConfig {
        checkpoint_interval: 1,
        ..ModelConfig::default()
    };
    let report = run(cfg, 6);
    assert!(report.passed(), "{report:#?}");
    // A checkpoint is a function of its replica's own history, so within
    // these bounds (too few for a replica to need another's checkpoint) it
    // adds no interleaving: the same states, each with its checkpoint.
    assert_eq!(
        report.unique_states,
        run(ModelConfig::default(), 6).unique_states
    );
}

/// A change to what the model explores changes this number: if it moves,
/// say why in the commit (spec/ or the core changed behaviour).
#[test]
fn the_default_model_explores_a_pinned_number_of_states_at_five_steps() {
    let report = run(ModelConfig::default(), 5);
    assert_eq!(report.unique_states, 15684);
}

#[test]
fn a_primary_that_commits_before_f_prepare_oks_is_caught() {
    let cfg = ModelConfig::default();
    let report = run_with_bug(cfg.clone(), Bug::CommitWithoutQuorum, 6);
    assert_eq!(status(&report, "INV-PRIMARY-HAS-COMMITTED"), "violated");
    let trace = trace(&report, "INV-PRIMARY-HAS-COMMITTED");
    assert!(
        trace.iter().any(|step| step.contains("StartView")),
        "{trace:#?}"
    );
    // The same bounds without the bug hold.
    assert_eq!(status(&run(cfg, 6), "INV-PRIMARY-HAS-COMMITTED"), "holds");
}

#[test]
fn a_do_view_change_cache_that_counts_a_duplicate_twice_is_caught() {
    let cfg = ModelConfig::default();
    let report = run_with_bug(cfg, Bug::CountDuplicateDoViewChange, 9);
    let violated = violated(&report);
    assert!(
        !violated.is_empty(),
        "no invariant caught the bug: {report:#?}"
    );
    let trace = trace(&report, violated[0]);
    let dvc_deliveries = trace.iter().filter(|s| s.contains("DoViewChange")).count();
    assert!(
        dvc_deliveries >= 2,
        "the trace re-delivers a DoViewChange: {trace:#?}"
    );
}

#[test]
fn a_run_stopped_by_its_timeout_is_incomplete_and_fails() {
    // The abandoned search goes on in the background until the depth bound.
    let options = RunOptions {
        timeout: Some(std::time::Duration::from_millis(1)),
        depth: Some(6),
        ..RunOptions::default()
    };
    let report = check::run(ModelConfig::default().into_model().unwrap(), &options);
    assert!(!report.complete);
    assert!(!report.passed());
}

#[test]
fn sometimes_properties_a_scenario_cannot_reach_are_not_expected_of_it() {
    let no_crash = properties::expected_sometimes(&ModelConfig::default());
    assert!(!no_crash.contains(&properties::RECOVERED));
    let crash = properties::expected_sometimes(&ModelConfig {
        crashes: 1,
        max_view: 2,
        ..ModelConfig::default()
    });
    assert!(crash.contains(&properties::RECOVERED));
    assert!(crash.contains(&properties::NEXT_PRIMARY_SKIPPED));
}

#[test]
fn every_named_scenario_builds_and_holds_its_invariants_at_a_few_steps() {
    for scenario in vr_model::scenarios::all() {
        let report = run(scenario.config.clone(), 4);
        let violated = violated(&report);
        assert!(violated.is_empty(), "{}: {violated:?}", scenario.name);
        assert!(
            report.unique_states > 10,
            "{} explored something",
            scenario.name
        );
    }
}

#[test]
fn a_newcomer_pruning_a_client_s_session_keeps_every_property_and_the_client_is_answered_session_expired()
 {
    // A client table of one row: the newcomer's Register prunes the model
    // client's session; INV-EXECUTED-ONCE replays the pruning on every
    // replica, and the client's refused request stays pending in the
    // linearizability history.
    let scenario = vr_model::scenarios::named("pruning").unwrap();
    let report = run(scenario.config, 5);
    assert!(report.complete);
    assert_eq!(violated(&report), Vec::<&str>::new());
    assert_eq!(
        status(&report, vr_model::properties::SESSION_EXPIRED),
        "witnessed"
    );
    assert!(report.passed(), "{report:#?}");
}

#[test]
fn the_prelude_scenarios_hold_every_property_and_reach_their_deep_paths() {
    for name in [
        "new-primary-commits",
        "views-past-n",
        "after-recovery",
        "fill",
        "checkpoint-fetch",
        "catch-up-overtaken",
    ] {
        let scenario = vr_model::scenarios::named(name).unwrap();
        let depth = scenario.depth.unwrap().min(6);
        let report = run(scenario.config, depth);
        assert!(report.passed(), "{name}: {report:#?}");
    }
}

#[test]
fn a_backup_that_sends_prepare_ok_against_its_own_commit_number_is_caught_by_a_progress_property() {
    let cfg = vr_model::scenarios::named("new-primary-commits")
        .unwrap()
        .config;
    let report = run_with_bug(cfg.clone(), Bug::PrepareOkAgainstOwnCommit, 6);
    // The search stops at the first violation: LIVE-COMMIT or LIVE-VIEW
    // (no view change can help, so both see the stalled primary).
    let violated = violated(&report);
    assert!(
        violated.len() == 1 && violated[0].starts_with("LIVE-"),
        "{report:#?}"
    );
    let trace = trace(&report, violated[0]);
    assert!(
        trace.iter().any(|step| step.contains("StartView")),
        "{trace:#?}"
    );
    let fixed = run(cfg, 6);
    assert_eq!(status(&fixed, "LIVE-COMMIT"), "holds");
    assert_eq!(status(&fixed, "LIVE-VIEW"), "holds");
}

#[test]
fn a_replica_catching_up_that_stays_in_its_old_view_on_hearing_a_newer_one_is_caught_by_live_join()
{
    let cfg = vr_model::scenarios::named("catch-up-overtaken")
        .unwrap()
        .config;
    let report = run_with_bug(cfg.clone(), Bug::CatchUpIgnoresNewerView, 4);
    // A quorum in view 2 commits without replica 0, so only LIVE-JOIN sees
    // that it never rejoins.
    assert_eq!(
        violated(&report),
        vec![vr_model::liveness::LIVE_JOIN],
        "{report:#?}"
    );
    let fixed = run(cfg, 4);
    assert_eq!(violated(&fixed), Vec::<&str>::new(), "{fixed:#?}");
    // Fixed, replica 0 moves to view 2 and fetches its log from primary 2.
    let transferred = trace(&fixed, properties::STATE_TRANSFERRED);
    assert!(
        transferred
            .last()
            .is_some_and(|s| s.starts_with("r2 -> r0: NewState") && s.contains("r0 Normal v2")),
        "{transferred:#?}"
    );
}

#[test]
fn a_new_primary_filling_in_entries_its_source_compacted_fetches_the_source_s_checkpoint() {
    let scenario = vr_model::scenarios::named("fill-from-checkpoint").unwrap();
    let report = run(scenario.config, 8);
    assert!(report.passed(), "{report:#?}");
    // Replica 2 discarded ops 1-2 behind its checkpoint: primary 1 asks for
    // them, gets the checkpoint, then the entries after it, and starts view 1.
    let filled = trace(&report, properties::FILLED);
    assert!(
        filled
            .iter()
            .any(|s| s.starts_with("r2 -> r1: NewCheckpoint"))
            && filled.last().is_some_and(|s| s.contains("r1 Normal v1")),
        "{filled:#?}"
    );
}

#[test]
fn a_replica_behind_the_new_primary_s_checkpoint_fetches_it_in_parts_and_then_catches_up() {
    let scenario = vr_model::scenarios::named("checkpoint-fetch").unwrap();
    let report = run(scenario.config, 6);
    assert!(report.passed(), "{report:#?}");
    // Primary 1 discarded the entries replica 2 asked for: its checkpoint
    // goes instead, the second part on replica 2's GetCheckpoint.
    let fetched = trace(&report, properties::CHECKPOINT_FETCHED);
    assert!(
        fetched.iter().any(|s| s.contains("GetCheckpoint"))
            && fetched.last().is_some_and(|s| s.contains("NewCheckpoint")),
        "{fetched:#?}"
    );
    // Then the entry after the checkpoint, by state transfer, and replica 2
    // is Normal in view 1.
    let transferred = trace(&report, properties::STATE_TRANSFERRED);
    let last = transferred.last().expect("a step");
    assert!(
        // Op 1 is the prelude's session (spec/protocol.md, "Client
        // sessions"), ops 2-7 its writes, the checkpoint at op 6.
        last.starts_with("r1 -> r2: NewState") && last.ends_with("r2 Normal v1 op7 c7"),
        "{transferred:#?}"
    );
}

#[test]
fn the_level_by_level_search_explores_what_stateright_s_breadth_first_search_explores() {
    use stateright::{Checker, Model};
    let depth = 5;
    let theirs = ModelConfig::default()
        .into_model()
        .unwrap()
        .checker()
        .target_max_depth(depth + 2)
        .spawn_bfs()
        .join();
    for threads in [1, 2] {
        let options = RunOptions {
            threads,
            ..bfs(depth)
        };
        let ours = check::run(ModelConfig::default().into_model().unwrap(), &options);
        assert!(ours.complete);
        assert_eq!(
            (ours.unique_states, ours.states),
            (theirs.unique_state_count(), theirs.state_count()),
            "{threads} threads"
        );
    }
}

#[test]
fn malformed_messages_from_a_replica_with_a_bug_change_no_property_while_a_recovery_and_a_view_change_go_on()
 {
    // Every message of model/src/malformed.rs is in flight from the start;
    // each is refused by a guard (model/tests/malformed.rs checks which), so
    // every invariant and progress property holds, and the recovery under
    // way and a view change still complete.
    let scenario = vr_model::scenarios::named("malformed").unwrap();
    let report = run(scenario.config, 4);
    assert!(report.complete);
    assert_eq!(violated(&report), Vec::<&str>::new());
    for witnessed in [properties::RECOVERED, properties::VIEW_CHANGE_COMPLETED] {
        assert_eq!(status(&report, witnessed), "witnessed", "{witnessed}");
    }
    assert!(report.passed(), "{report:#?}");
}
