//! Checkpoints and log compaction (paper 5.1; spec/protocol.md,
//! "Checkpoints"): replicas discard their logs up to a checkpoint, and a
//! replica that needs entries another has discarded gets its checkpoint
//! instead — as a lagging backup, a replica catching up to a view, a new
//! primary filling in its chosen log, and a recovering replica.

use vr::app::KvOutput;
use vr::core::{Config, ReplicaId, Status, Timer, View};
use vr_tests::harness::{Cluster, commit, op, put};

/// Three replicas taking a checkpoint every 2 entries, with room for one
/// entry per message.
fn compacting_cluster() -> Cluster {
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_message_weight_max(1)
        .unwrap()
        .with_checkpoint_interval(2)
        .unwrap();
    Cluster::with_config(config)
}

/// Commits six puts through replica 0 with replica `lagging` cut off.
fn commit_six_without(cluster: &mut Cluster, lagging: u8) {
    cluster.isolate(lagging);
    for i in 1..=6 {
        assert_eq!(
            cluster.commit(0, 1, i, put(&format!("k{i}"), "v")),
            KvOutput::Stored
        );
    }
    cluster.heal();
}

fn assert_holds_the_six_puts(cluster: &Cluster, id: u8) {
    let r = cluster.replica(id);
    assert!(r.op_number() >= op(6), "replica {id}: {r:?}");
    for i in 1..=6 {
        assert_eq!(r.app().get(&format!("k{i}")), Some("v"), "replica {id}");
    }
}

fn fetched_a_checkpoint(cluster: &Cluster, id: u8) -> bool {
    !cluster.delivered_of("GetCheckpoint", id).is_empty()
        || cluster
            .delivered
            .iter()
            .any(|m| m.to == ReplicaId(id) && m.envelope.msg.name() == "NewCheckpoint")
}

#[test]
fn replicas_compact_their_logs_behind_a_checkpoint() {
    let mut cluster = compacting_cluster();
    commit_six_without(&mut cluster, 2);
    let primary = cluster.replica(0);
    let checkpoint = primary.checkpoint().expect("a checkpoint was taken");
    assert!(checkpoint.commit >= commit(4));
    assert!(primary.log().base() > op(0), "{:?}", primary.log());
    assert!(primary.log().entries().len() < 6);
}

#[test]
fn a_backup_lagging_behind_the_primary_s_compacted_log_gets_its_checkpoint() {
    let mut cluster = compacting_cluster();
    commit_six_without(&mut cluster, 2);
    // The next heartbeat shows replica 2 that it lacks everything.
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    assert!(fetched_a_checkpoint(&cluster, 2));
    let backup = cluster.replica(2);
    assert_eq!(backup.status(), Status::Normal);
    assert_holds_the_six_puts(&cluster, 2);
    assert_eq!(cluster.commit(0, 1, 7, put("k7", "v")), KvOutput::Stored);
    assert_eq!(cluster.replica(2).op_number(), op(7));
}

#[test]
fn a_replica_catching_up_to_a_view_gets_a_checkpoint_when_the_entries_are_compacted() {
    let mut cluster = compacting_cluster();
    commit_six_without(&mut cluster, 2);
    cluster.isolate(2);
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_all();
    cluster.heal();
    assert_eq!(cluster.replica(1).view(), View(1));
    // A heartbeat of view 1 shows replica 2 the view started without it.
    cluster.fire(1, Timer::Heartbeat);
    cluster.deliver_all();
    assert!(fetched_a_checkpoint(&cluster, 2));
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(1)));
    assert_holds_the_six_puts(&cluster, 2);
}

#[test]
fn a_new_primary_filling_in_its_chosen_log_gets_a_checkpoint_when_the_entries_are_compacted() {
    let mut cluster = compacting_cluster();
    // Replica 1, primary of view 1, misses all six.
    commit_six_without(&mut cluster, 1);
    cluster.crash(0);
    cluster.fire(2, Timer::PrimaryTimeout);
    cluster.deliver_all();
    assert!(fetched_a_checkpoint(&cluster, 1));
    let primary = cluster.replica(1);
    assert_eq!(
        (primary.status(), primary.view()),
        (Status::Normal, View(1))
    );
    assert_holds_the_six_puts(&cluster, 1);
    assert_eq!(cluster.commit(1, 1, 7, put("k7", "v")), KvOutput::Stored);
}

#[test]
fn a_recovering_replica_gets_a_checkpoint_and_then_the_entries_after_it() {
    let mut cluster = compacting_cluster();
    commit_six_without(&mut cluster, 1);
    cluster.deliver_all();
    cluster.crash(2);
    cluster.restart(2, 5);
    cluster.deliver_all();
    assert!(fetched_a_checkpoint(&cluster, 2));
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(0)));
    assert_holds_the_six_puts(&cluster, 2);
    // Its client table came with the checkpoint: a repeated request gets the
    // stored reply, not a second execution, from whichever replica answers.
    assert_eq!(
        r.client_table()
            .get(vr_tests::harness::session(1))
            .map(|c| c.request),
        Some(vr::core::RequestNumber(6))
    );
}
