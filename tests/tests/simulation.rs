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
fn messages_carrying_log_suffixes_keep_every_invariant_and_complete_every_request() {
    // With room for one entry per message, DoViewChange, StartView and
    // RecoveryResponse carry short suffixes, so new primaries, backups and
    // recovering replicas fetch the rest: the paths a long log takes in the
    // runtime.
    let config = vr::core::Config::with_settings(3, vr::core::ReplicaId(0), 3, 1)
        .unwrap()
        .with_message_weight_max(1)
        .unwrap();
    let cfg = SimConfig {
        config: Some(config),
        crash: 0.01,
        ..SimConfig::default()
    };
    let (mut completed, mut fills, mut recovery_transfers) = (0, 0, 0);
    for seed in 0..seeds() {
        let report = simulator::run(3_000_000 + seed, cfg);
        assert!(report.settled, "seed {seed}: requests left incomplete");
        completed += report.completed;
        fills += report.fill_steps;
        recovery_transfers += report.recovery_transfer_steps;
    }
    assert!(completed > 1000, "{completed} operations completed");
    println!(
        "{completed} operations; {fills} steps filling, {recovery_transfers} recovering by state transfer"
    );
    assert!(fills > 0, "no new primary had to fetch committed entries");
    assert!(
        recovery_transfers > 0,
        "no recovering replica had to fetch the primary's log"
    );
}

#[test]
fn compacted_logs_and_checkpoints_keep_every_invariant_and_complete_every_request() {
    // A checkpoint every 3 entries and room for one entry per message: lagging
    // backups, catching-up and recovering replicas and filling primaries
    // often find the entries they need compacted away, and fetch a
    // checkpoint instead.
    let config = vr::core::Config::with_settings(3, vr::core::ReplicaId(0), 3, 1)
        .unwrap()
        .with_message_weight_max(1)
        .unwrap()
        .with_checkpoint_interval(3)
        .unwrap();
    let cfg = SimConfig {
        config: Some(config),
        crash: 0.01,
        ..SimConfig::default()
    };
    let (mut completed, mut fetches, mut compacted) = (0, 0, 0);
    for seed in 0..seeds() {
        let report = simulator::run(4_000_000 + seed, cfg);
        assert!(report.settled, "seed {seed}: requests left incomplete");
        completed += report.completed;
        fetches += report.checkpoint_fetch_steps;
        compacted += report.compacted_steps;
    }
    println!(
        "{completed} operations; {compacted} steps with a compacted log, {fetches} fetching a checkpoint"
    );
    assert!(completed > 1000, "{completed} operations completed");
    assert!(compacted > 0, "no log was compacted");
    assert!(fetches > 0, "no replica fetched a checkpoint");
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

/// Crashes that are not undone: the replicas down when the faults stop stay
/// down through the settle phase, which must still complete every request.
fn crashed_stay_down(config: Option<vr::core::Config>) -> SimConfig {
    SimConfig {
        crash: 0.01,
        restart: 0.005,
        restart_in_settle: false,
        config,
        ..SimConfig::default()
    }
}

#[test]
fn replicas_crashed_when_the_faults_stop_can_stay_down_and_every_request_still_completes() {
    let mut left_down = 0;
    let mut completed = 0;
    for seed in 0..seeds() {
        let report = simulator::run(3_000_000 + seed, crashed_stay_down(None));
        assert!(report.settled);
        left_down += report.down_through_settle;
        completed += report.completed;
    }
    assert!(
        left_down > seeds() as usize / 4,
        "{left_down} replicas left down"
    );
    assert!(completed > 1000, "{completed} operations completed");
}

/// Durable mode with group commit: Sends and Replies wait for a sync.
fn durable(tear: u8, corrupt: u8, crash_all: f64) -> SimConfig {
    SimConfig {
        crash: 0.01,
        storage: Some(simulator::StorageFaults {
            sync: 0.2,
            tear_sixteenths: tear,
            corrupt_sixteenths: corrupt,
            crash_all,
        }),
        ..SimConfig::default()
    }
}

#[test]
fn durable_replicas_whose_crashes_lose_tear_or_corrupt_writes_stay_safe_and_linearizable() {
    let cfg = durable(5, 5, 0.0);
    let (mut completed, mut corrupt, mut torn) = (0, 0, 0);
    for seed in 0..seeds() {
        let report = simulator::run(6_000_000 + seed, cfg);
        assert!(report.settled, "seed {seed}: requests left incomplete");
        completed += report.completed;
        corrupt += report.corrupt_restarts;
        torn += report.torn_restarts;
    }
    println!("{completed} operations; {corrupt} corrupt restarts, {torn} torn restarts");
    assert!(completed > 1000, "{completed} operations completed");
    assert!(corrupt > 0, "no replica found its storage corrupt");
    assert!(torn > 0, "no replica found a torn write");
}

#[test]
fn a_durable_cluster_crashed_whole_loses_no_acknowledged_write() {
    // Every replica crashes at once now and then (its unsynced writes lost
    // or torn); the linearizability check fails if a write acknowledged
    // before the crash is missing from a later read.
    let config = vr::core::Config::new(3, vr::core::ReplicaId(0))
        .unwrap()
        .with_checkpoint_interval(4)
        .unwrap();
    let cfg = SimConfig {
        config: Some(config),
        ..durable(4, 0, 0.003)
    };
    let (mut completed, mut whole) = (0, 0);
    for seed in 0..seeds() {
        let report = simulator::run(7_000_000 + seed, cfg);
        assert!(report.settled, "seed {seed}: requests left incomplete");
        completed += report.completed;
        whole += report.cluster_crashes;
    }
    println!("{completed} operations; {whole} whole-cluster crashes");
    assert!(completed > 1000, "{completed} operations completed");
    assert!(whole > 10, "only {whole} whole-cluster crashes");
}
