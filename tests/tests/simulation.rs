//! Seeded simulations: every step checked against the model's invariants,
//! every history checked for linearizability. A failure prints its seed;
//! `VR_SIM_SEEDS=N` runs more seeds (the default keeps CI short).

use vr_tests::simulator::{self, SimConfig};

fn seeds() -> u64 {
    std::env::var("VR_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

#[test]
fn three_replicas_stay_safe_and_linearizable_under_random_faults() {
    let mut completed = 0;
    let mut views = 0;
    let mut crashes = 0;
    for seed in 0..seeds() {
        let report = simulator::run(seed, SimConfig::default());
        completed += report.completed;
        views = views.max(report.max_view);
        crashes += report.crashes;
    }
    // The runs did something worth checking.
    assert!(completed > 1000, "{completed} operations completed");
    assert!(views >= 2, "view changes happened (max view {views})");
    assert!(crashes > 0, "crashes happened");
}

#[test]
fn five_replicas_stay_safe_and_linearizable_under_random_faults() {
    let cfg = SimConfig {
        replicas: 5,
        clients: 3,
        timer: 0.02,
        ..SimConfig::default()
    };
    let mut completed = 0;
    for seed in 0..seeds() / 2 {
        completed += simulator::run(1_000_000 + seed, cfg).completed;
    }
    assert!(completed > 500, "{completed} operations completed");
}

#[test]
fn a_network_losing_and_duplicating_a_quarter_of_messages_breaks_no_invariant() {
    let cfg = SimConfig {
        drop: 0.25,
        duplicate: 0.25,
        crash: 0.01,
        ..SimConfig::default()
    };
    let mut completed = 0;
    for seed in 0..seeds() {
        completed += simulator::run(2_000_000 + seed, cfg).completed;
    }
    assert!(completed > 100, "{completed} operations completed");
}

#[test]
fn the_simulator_catches_a_primary_that_commits_without_a_quorum() {
    let config = vr::core::Config::new(3, vr::core::ReplicaId(0))
        .unwrap()
        .with_bug(vr::core::Bug::CommitWithoutQuorum);
    let cfg = SimConfig {
        config: Some(config),
        crash: 0.02,
        ..SimConfig::default()
    };
    let caught =
        (0..seeds()).find(|&seed| std::panic::catch_unwind(|| simulator::run(seed, cfg)).is_err());
    assert!(
        caught.is_some(),
        "no seed of {} caught the wrong variant",
        seeds()
    );
}
