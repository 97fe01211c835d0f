//! The delivery layer: Acks, resends up to attempts_max, disconnection and
//! the protocol's reaction to it.

use vr::app::KvOutput;
use vr::core::{Bug, Config, Message, ReplicaId, Status, Timer, View};
use vr_tests::harness::{Cluster, between, is, op, put};

#[test]
fn an_acknowledged_message_is_not_resent() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("x", "1"));
    let primary = cluster.replica(0);
    assert!(primary.delivery().unconfirmed().is_empty());
    assert!(
        !cluster.timer_set(0, Timer::Resend),
        "nothing to resend: timer cancelled"
    );
}

#[test]
fn an_unconfirmed_message_is_resent_under_the_same_id() {
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("x", "1"));
    let lost = cluster.drop_where(|m| is(m, "Prepare") && m.to == ReplicaId(2));
    assert_eq!(lost, 1);
    cluster.deliver_all();
    let unconfirmed: Vec<_> = cluster
        .replica(0)
        .delivery()
        .unconfirmed()
        .keys()
        .copied()
        .collect();
    assert_eq!(unconfirmed.len(), 1);
    cluster.fire(0, Timer::Resend);
    let resent: Vec<_> = cluster
        .network
        .iter()
        .filter(|m| is(m, "Prepare"))
        .collect();
    assert_eq!(resent.len(), 1);
    assert!(between(resent[0], 0, 2) && resent[0].envelope.id == unconfirmed[0]);
    cluster.deliver_all();
    assert_eq!(cluster.replica(2).op_number(), op(1));
    assert!(cluster.replica(0).delivery().unconfirmed().is_empty());
}

#[test]
fn attempts_max_unconfirmed_attempts_make_a_backup_that_lost_its_primary_start_a_view_change() {
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("x", "1"));
    cluster.deliver_while(|m| is(m, "Prepare"));
    // Replica 1 holds op 1 and has sent PrepareOk; the primary is gone.
    cluster.crash(0);
    cluster.deliver_all();
    cluster.fire(1, Timer::Resend);
    cluster.fire(1, Timer::Resend);
    let unconfirmed = cluster.replica(1).delivery().unconfirmed();
    assert_eq!(
        unconfirmed.values().map(|u| u.attempts).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(
        cluster.replica(1).status(),
        Status::Normal,
        "not yet: attempts left"
    );
    cluster.fire(1, Timer::Resend);
    let r = cluster.replica(1);
    assert!(r.delivery().disconnected().contains(&ReplicaId(0)));
    assert_eq!((r.status(), r.view()), (Status::ViewChange, View(1)));
    cluster.deliver_all();
    let r = cluster.replica(1);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(1)));
    assert_eq!(
        cluster.commit(1, 1, 1, put("x", "1")),
        KvOutput::Stored,
        "replied by the new primary"
    );
}

#[test]
fn the_number_of_attempts_is_a_setting() {
    let config = Config::with_settings(3, ReplicaId(0), 5, 64).unwrap();
    let mut cluster = Cluster::with_config(config);
    cluster.crash(2);
    cluster.request(0, 1, 1, put("x", "1"));
    cluster.deliver_all();
    cluster.fire_resends(0, 4);
    assert!(cluster.replica(0).delivery().is_connected(ReplicaId(2)));
    cluster.fire_resends(0, 1);
    assert!(!cluster.replica(0).delivery().is_connected(ReplicaId(2)));
}

#[test]
fn a_primary_keeps_serving_while_a_quorum_is_connected_and_drops_requests_without_one() {
    let mut cluster = Cluster::new(3);
    cluster.isolate(2);
    cluster.request(0, 1, 1, put("x", "1"));
    cluster.deliver_all();
    cluster.fire_resends(0, 3);
    assert!(!cluster.replica(0).delivery().is_connected(ReplicaId(2)));
    let r = cluster.replica(0);
    assert_eq!(
        (r.status(), r.view()),
        (Status::Normal, View(0)),
        "still the primary"
    );
    // One backup of f = 1 is still connected: it keeps committing.
    assert_eq!(cluster.commit(0, 1, 2, put("x", "2")), KvOutput::Stored);
    // With replica 1 cut off too, no quorum is connected: new requests wait.
    cluster.isolate(1);
    cluster.request(0, 1, 3, put("x", "3"));
    cluster.deliver_all();
    cluster.fire_resends(0, 3);
    assert_eq!(cluster.replica(0).delivery().disconnected().len(), 2);
    let op = cluster.replica(0).op_number();
    cluster.request(0, 2, 1, put("y", "1"));
    assert_eq!(
        cluster.replica(0).op_number(),
        op,
        "not prepared without a quorum"
    );
    // Hearing from a backup again counts it connected; the primary serves.
    cluster.heal();
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    assert!(cluster.replica(0).delivery().disconnected().is_empty());
    assert_eq!(cluster.commit(0, 2, 1, put("y", "1")), KvOutput::Stored);
}

#[test]
fn every_replica_message_but_ack_is_acknowledged_by_id() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("x", "1"));
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_all();
    for m in &cluster.delivered {
        let acks = cluster
            .delivered
            .iter()
            .filter(|a| matches!(a.envelope.msg, Message::Ack(_)))
            .filter(|a| {
                a.envelope.id == m.envelope.id && a.envelope.from == m.to && a.to == m.envelope.from
            })
            .count();
        if is(m, "Ack") {
            continue;
        }
        assert_eq!(
            acks,
            1,
            "{} from {:?} to {:?}",
            m.envelope.msg.name(),
            m.envelope.from,
            m.to
        );
    }
}

/// Heartbeats after a lost Commit to backup 1: how many of three more
/// reached it (each is lost again, so none is ever confirmed).
fn heartbeats_reaching_a_backup_after_a_lost_commit(config: Config) -> usize {
    let mut cluster = Cluster::with_config(config);
    cluster.commit(0, 1, 1, put("x", "1"));
    cluster.fire(0, Timer::Heartbeat);
    assert_eq!(
        cluster.drop_where(|m| is(m, "Commit") && m.to == ReplicaId(1)),
        1
    );
    cluster.deliver_all();
    let id = *cluster
        .replica(0)
        .delivery()
        .unconfirmed()
        .keys()
        .next()
        .unwrap();
    let mut reached = 0;
    for _ in 0..3 {
        cluster.fire(0, Timer::Heartbeat);
        for m in cluster
            .network
            .iter()
            .filter(|m| is(m, "Commit") && between(m, 0, 1))
        {
            assert_eq!(m.envelope.id, id, "the same content keeps its id");
            reached += 1;
        }
        let attempts = cluster
            .replica(0)
            .delivery()
            .unconfirmed()
            .get(&id)
            .unwrap()
            .attempts;
        assert_eq!(attempts, 1, "a heartbeat is not a resend attempt");
        cluster.drop_where(|m| is(m, "Commit") && m.to == ReplicaId(1));
        cluster.deliver_all();
    }
    reached
}

#[test]
fn an_idle_primary_keeps_heartbeating_a_backup_whose_previous_commit_was_lost() {
    let config = Config::new(3, ReplicaId(0)).unwrap();
    assert_eq!(heartbeats_reaching_a_backup_after_a_lost_commit(config), 3);
}

#[test]
fn suppressing_a_heartbeat_whose_copy_is_unconfirmed_silences_the_backup() {
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_bug(Bug::SuppressUnconfirmedHeartbeat);
    assert_eq!(heartbeats_reaching_a_backup_after_a_lost_commit(config), 0);
}

#[test]
fn a_heartbeat_that_arrives_is_confirmed() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("x", "1"));
    for _ in 0..2 {
        cluster.fire(0, Timer::Heartbeat);
        cluster.drop_where(|m| is(m, "Commit") && m.to == ReplicaId(1));
        cluster.deliver_all();
    }
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    assert!(cluster.replica(0).delivery().unconfirmed().is_empty());
}
