//! State transfer (paper 5.2): a replica behind in its view fetches the log it
//! lacks, in bounded chunks.

use vr::core::{Config, Message, ReplicaId, Status, Timer, View};
use vr_tests::harness::{Cluster, commit, is, op, put};

#[test]
fn a_backup_that_missed_many_operations_catches_up_through_several_bounded_new_state_messages() {
    let config = Config::with_settings(3, ReplicaId(0), 3, 4).unwrap();
    let mut cluster = Cluster::with_config(config);
    cluster.isolate(2);
    for i in 1..=10 {
        cluster.commit(0, 1, i, put("k", &i.to_string()));
    }
    cluster.heal();
    assert_eq!(cluster.replica(2).op_number(), op(0));
    // The next Prepare shows replica 2 a gap.
    cluster.commit(0, 1, 11, put("k", "11"));
    let r = cluster.replica(2);
    assert_eq!(r.op_number(), op(11));
    let chunks: Vec<usize> = cluster
        .delivered
        .iter()
        .filter_map(|m| match &m.envelope.msg {
            Message::NewState(n) if m.to == ReplicaId(2) => Some(n.entries.len()),
            _ => None,
        })
        .collect();
    assert!(chunks.len() >= 3, "several NewState messages: {chunks:?}");
    assert!(
        chunks.iter().all(|&n| n <= 4),
        "each within the bound: {chunks:?}"
    );
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    let r = cluster.replica(2);
    assert_eq!(r.commit_number(), commit(11));
    assert_eq!(r.app().get("k"), Some("11"));
    assert_eq!(r.log(), cluster.replica(0).log());
}

#[test]
fn a_duplicated_new_state_is_harmless() {
    let mut cluster = Cluster::new(3);
    cluster.isolate(2);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.heal();
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    let new_state = cluster
        .delivered
        .iter()
        .find(|m| is(m, "NewState"))
        .cloned()
        .expect("a NewState was delivered");
    let before = cluster.replica(2).clone();
    cluster.deliver_one(new_state);
    assert_eq!(cluster.replica(2), &before);
}

#[test]
fn a_replica_that_learns_of_a_newer_view_replaces_its_uncommitted_entries_with_that_views_log() {
    let mut cluster = Cluster::new(5);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    // Replica 0 prepares "b" at op 2 only at replica 4; both are then cut off.
    cluster.request(0, 1, 2, put("b", "2"));
    cluster.deliver_while(|m| m.to == ReplicaId(4) && is(m, "Prepare"));
    assert_eq!(cluster.replica(4).op_number(), op(2));
    cluster.isolate(0);
    cluster.isolate(4);
    // View 1 forms from replicas 1, 2, 3, without "b", and commits "c" at op 2.
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_all();
    assert_eq!(
        (cluster.replica(1).status(), cluster.replica(1).view()),
        (Status::Normal, View(1))
    );
    cluster.commit(1, 2, 1, put("c", "3"));
    // Replica 4, still in view 0 with "b" uncommitted at op 2, hears of view 1.
    // It takes no part in view 1 until it holds view 1's log: it keeps its own
    // log and last-normal-view meanwhile.
    cluster.heal();
    cluster.fire(1, Timer::Heartbeat);
    cluster.deliver_first(|m| is(m, "Commit") && m.to == ReplicaId(4));
    let r = cluster.replica(4);
    assert_eq!(
        (r.status(), r.view(), r.last_normal_view()),
        (Status::ViewChange, View(1), View(0))
    );
    assert_eq!(
        r.op_number(),
        op(2),
        "its log is untouched until view 1's arrives"
    );
    assert!(r.catch_up().is_some());
    cluster.deliver_all();
    let r = cluster.replica(4);
    assert_eq!(
        (r.status(), r.view(), r.last_normal_view()),
        (Status::Normal, View(1), View(1))
    );
    assert_eq!(
        r.log(),
        cluster.replica(1).log(),
        "\"b\" replaced by view 1's \"c\""
    );
    assert_eq!(r.commit_number(), commit(2));
    assert_eq!((r.app().get("b"), r.app().get("c")), (None, Some("3")));
}

#[test]
fn a_replica_catching_up_to_a_view_cannot_lose_a_committed_entry_in_the_next_view_change() {
    // Regression: catching up used to cut the log back to the commit-number
    // and claim the new view at once, so the cut log could win the next view
    // change over a longer log holding a committed entry.
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("a", "1"));
    // "a" commits at replica 0 with replica 1's PrepareOk; replica 2's Prepare
    // is delayed for good.
    cluster.drop_where(|m| m.to == ReplicaId(2));
    cluster.deliver_all();
    assert_eq!(cluster.replies_to(1, 1), [&vr::app::KvOutput::Stored]);
    // View 1 forms at replica 1 from replica 2's empty log and its own ["a"].
    cluster.isolate(0);
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_while(|m| !is(m, "StartView"));
    assert_eq!(cluster.replica(1).status(), Status::Normal);
    // Replica 1's heartbeat reaches replica 2 before its StartView; then
    // replica 1 crashes.
    cluster.fire(1, Timer::Heartbeat);
    cluster.deliver_first(|m| is(m, "Commit") && m.to == ReplicaId(2));
    cluster.crash(1);
    cluster.drop_where(|_| true);
    let r = cluster.replica(2);
    assert_eq!(
        (r.status(), r.last_normal_view()),
        (Status::ViewChange, View(0))
    );
    // Replica 2 gives up on view 1; view 2 forms from replicas 0 and 2.
    cluster.heal();
    cluster.fire(2, Timer::ViewChangeTimeout);
    cluster.deliver_all();
    for id in [0, 2] {
        let r = cluster.replica(id);
        assert_eq!((r.status(), r.view()), (Status::Normal, View(2)));
        assert_eq!(
            r.op_number(),
            op(1),
            "replica {id} holds the committed \"a\""
        );
    }
    assert_eq!(cluster.replica(2).app().get("a"), Some("1"));
}

#[test]
fn a_backup_that_missed_the_last_prepares_fetches_them_when_the_primary_is_idle() {
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("a", "1"));
    cluster.drop_where(|m| is(m, "Prepare") && m.to == ReplicaId(2));
    cluster.deliver_all();
    assert_eq!(cluster.replica(2).op_number(), op(0));
    // No further Prepare shows replica 2 a gap; the heartbeat's op-number does.
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    let r = cluster.replica(2);
    assert_eq!((r.op_number(), r.commit_number()), (op(1), commit(1)));
}

#[test]
fn a_catch_up_completes_when_the_new_view_holds_nothing_beyond_the_commit_number() {
    let mut cluster = Cluster::new(3);
    cluster.isolate(2);
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_all();
    assert_eq!(
        (cluster.replica(1).status(), cluster.replica(1).view()),
        (Status::Normal, View(1))
    );
    cluster.heal();
    cluster.fire(1, Timer::Heartbeat);
    cluster.deliver_first(|m| is(m, "Commit") && m.to == ReplicaId(2));
    assert!(cluster.replica(2).catch_up().is_some());
    cluster.deliver_all();
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(1)));
    assert!(r.catch_up().is_none());
}
