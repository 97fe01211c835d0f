//! Messages that carry a log carry a bounded suffix of it (spec/protocol.md,
//! "Bounded messages"): a new primary, a backup and a recovering replica
//! each fetch what the suffix leaves out, and the primary keeps its
//! uncommitted entries within one message.

use vr::app::{Kv, KvOperation, KvOutput};
use vr::core::{Config, Message, ReplicaId, StateMachine, Status, Timer, View};
use vr_tests::harness::{Cluster, commit, op, put};

/// Three replicas whose messages carry no committed entry they can leave out.
fn cluster_with_weight_max(weight_max: u32) -> Cluster {
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_message_weight_max(weight_max)
        .unwrap();
    Cluster::with_config(config)
}

/// Commits five puts through replica 0 with replica `lagging` cut off.
fn commit_five_without(cluster: &mut Cluster, lagging: u8) {
    cluster.isolate(lagging);
    for i in 1..=5 {
        assert_eq!(
            cluster.commit(0, 1, i, put(&format!("k{i}"), "v")),
            KvOutput::Stored
        );
    }
    cluster.heal();
}

fn assert_holds_the_five_puts(cluster: &Cluster, id: u8) {
    let r = cluster.replica(id);
    assert_eq!(r.op_number(), op(5), "replica {id}: {r:?}");
    for i in 1..=5 {
        assert_eq!(r.app().get(&format!("k{i}")), Some("v"), "replica {id}");
    }
}

#[test]
fn a_new_primary_lagging_the_chosen_log_fetches_the_committed_entries_before_starting_the_view() {
    let mut cluster = cluster_with_weight_max(1);
    // Replica 1, primary of view 1, misses all five; replica 2 has them.
    commit_five_without(&mut cluster, 1);
    assert_eq!(cluster.replica(1).op_number(), op(0));
    cluster.crash(0);
    cluster.fire(2, Timer::PrimaryTimeout);
    cluster.deliver_all();

    let dvc = cluster.delivered_of("DoViewChange", 2);
    let Message::DoViewChange(dvc) = &dvc[0].envelope.msg else {
        unreachable!()
    };
    assert_eq!(dvc.log.op, op(5));
    assert!(
        dvc.log.entries.len() < 5,
        "the DoViewChange carried a suffix: {:?}",
        dvc.log
    );
    // Primary(1) asked replica 2 for the committed entries in between.
    assert!(!cluster.delivered_of("GetState", 1).is_empty());
    let primary = cluster.replica(1);
    assert_eq!(
        (primary.status(), primary.view()),
        (Status::Normal, View(1))
    );
    assert_eq!(primary.log(), cluster.replica(2).log());
    assert_eq!(primary.commit_number(), commit(5));
    assert_holds_the_five_puts(&cluster, 1);
    assert_eq!(cluster.commit(1, 1, 6, put("k6", "v")), KvOutput::Stored);
}

#[test]
fn a_backup_lagging_the_start_view_suffix_catches_up_by_state_transfer() {
    let mut cluster = cluster_with_weight_max(1);
    commit_five_without(&mut cluster, 2);
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_all();

    let start = cluster.delivered_of("StartView", 1);
    let Message::StartView(start) = &start[0].envelope.msg else {
        unreachable!()
    };
    assert!(start.log.after > op(0), "a suffix: {:?}", start.log);
    assert!(!cluster.delivered_of("GetState", 2).is_empty());
    let backup = cluster.replica(2);
    assert_eq!((backup.status(), backup.view()), (Status::Normal, View(1)));
    assert_eq!(backup.log(), cluster.replica(1).log());
    assert_holds_the_five_puts(&cluster, 2);
}

#[test]
fn a_replica_recovering_from_a_long_log_fetches_it_before_it_takes_part() {
    let mut cluster = cluster_with_weight_max(1);
    commit_five_without(&mut cluster, 1);
    cluster.deliver_all();
    cluster.crash(2);
    let before = cluster.delivered.len();
    cluster.restart(2, 7);
    cluster.deliver_all();

    // Until recovered it sent nothing but Recovery, GetState and Acks.
    let said: Vec<&str> = cluster.delivered[before..]
        .iter()
        .filter(|m| m.envelope.from == ReplicaId(2))
        .map(|m| m.envelope.msg.name())
        .collect();
    assert!(said.contains(&"GetState"), "{said:?}");
    let first_other = said
        .iter()
        .position(|n| !matches!(*n, "Recovery" | "GetState" | "Ack"));
    assert_eq!(first_other, None, "spoke while recovering: {said:?}");
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(0)));
    assert_eq!(r.log(), cluster.replica(0).log());
    assert_eq!(r.commit_number(), commit(5));
    assert_holds_the_five_puts(&cluster, 2);
    assert_eq!(cluster.commit(0, 1, 6, put("k6", "v")), KvOutput::Stored);
    assert_eq!(cluster.replica(2).op_number(), op(6));
}

#[test]
fn the_primary_admits_no_request_that_would_take_its_uncommitted_entries_beyond_one_message() {
    let operation = |i: u64| put(&format!("k{i}"), "v");
    let weight = <Kv as StateMachine>::weight(&operation(1));
    let mut cluster = cluster_with_weight_max(2 * weight);
    for client in 1..=3 {
        cluster.request(0, client, 1, operation(client));
    }
    // Two fit; the third waits for a retry.
    assert_eq!(cluster.replica(0).op_number(), op(2));
    cluster.deliver_all();
    assert_eq!(cluster.replica(0).commit_number(), commit(2));
    assert!(cluster.replies_to(3, 1).is_empty());
    assert_eq!(cluster.commit(0, 3, 1, operation(3)), KvOutput::Stored);
    // With nothing uncommitted any single request fits, however heavy.
    let heavy = KvOperation::Put {
        key: "big".into(),
        value: "x".repeat(10 * weight as usize),
    };
    assert_eq!(cluster.commit(0, 4, 1, heavy), KvOutput::Stored);
}
