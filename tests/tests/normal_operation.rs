//! Normal operation (paper 4.1): scenario tests on the in-memory harness.

use vr::app::KvOutput;
use vr::core::{ReplicaId, Status, Timer, View};
use vr_tests::harness::{Cluster, between, commit, get, is, op, put};

#[test]
fn a_request_commits_and_its_reply_reaches_the_client() {
    let mut cluster = Cluster::new(3);
    let output = cluster.commit(0, 7, 1, put("x", "1"));
    assert_eq!(output, KvOutput::Stored);
    let primary = cluster.replica(0);
    assert_eq!(primary.op_number(), op(1));
    assert_eq!(primary.commit_number(), commit(1));
    assert_eq!(primary.app().get("x"), Some("1"));
    // The backups hold the entry; they learn the commit from the next Prepare
    // or Commit.
    for id in [1, 2] {
        assert_eq!(cluster.replica(id).op_number(), op(1));
        assert_eq!(cluster.replica(id).commit_number(), commit(0));
    }
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    for id in [1, 2] {
        assert_eq!(cluster.replica(id).commit_number(), commit(1));
        assert_eq!(cluster.replica(id).app().get("x"), Some("1"));
    }
    let reply = cluster.replies.last().expect("a reply");
    assert_eq!(reply.view, View(0));
}

#[test]
fn the_primary_commits_with_f_prepare_oks_and_not_before() {
    let mut cluster = Cluster::new(5);
    cluster.request(0, 1, 1, put("x", "1"));
    // Only one of the two PrepareOks needed (f = 2) reaches the primary.
    cluster.deliver_first(|m| is(m, "Prepare") && m.to == ReplicaId(1));
    cluster.deliver_first(|m| is(m, "PrepareOk") && between(m, 1, 0));
    assert_eq!(cluster.replica(0).commit_number(), commit(0));
    assert!(cluster.replies.is_empty());
    cluster.deliver_first(|m| is(m, "Prepare") && m.to == ReplicaId(2));
    cluster.deliver_first(|m| is(m, "PrepareOk") && between(m, 2, 0));
    assert_eq!(cluster.replica(0).commit_number(), commit(1));
    assert_eq!(cluster.replies_to(1, 1), [&KvOutput::Stored]);
}

#[test]
fn a_repeated_request_gets_the_stored_reply_and_executes_once() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 7, 1, put("x", "1"));
    assert_eq!(
        cluster.commit(0, 7, 2, get("x")),
        KvOutput::Value(Some("1".into()))
    );
    cluster.commit(0, 8, 1, put("x", "2"));
    // Client 7 repeats request 2: it gets the stored reply, not a new read.
    assert_eq!(
        cluster.commit(0, 7, 2, get("x")),
        KvOutput::Value(Some("1".into()))
    );
    assert_eq!(cluster.replica(0).op_number(), op(3));
    let record = cluster
        .replica(0)
        .client_table()
        .get(vr_tests::harness::session(7))
        .unwrap();
    assert_eq!(record.request.0, 2);
}

#[test]
fn an_older_request_and_a_request_in_progress_are_dropped() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 7, 1, put("x", "1"));
    cluster.commit(0, 7, 2, put("x", "2"));
    cluster.request(0, 7, 1, put("x", "old"));
    cluster.deliver_all();
    assert!(
        cluster.replies_to(7, 1).len() == 1,
        "no new reply to the old request"
    );
    // Request 3 is prepared but not committed; its retry is not prepared twice.
    cluster.request(0, 7, 3, put("x", "3"));
    cluster.request(0, 7, 3, put("x", "3"));
    assert_eq!(cluster.replica(0).op_number(), op(3));
    cluster.deliver_all();
    assert_eq!(cluster.replies_to(7, 3), [&KvOutput::Stored]);
    assert_eq!(cluster.replica(0).app().get("x"), Some("3"));
}

#[test]
fn a_backup_drops_client_requests() {
    let mut cluster = Cluster::new(3);
    cluster.request(1, 7, 1, put("x", "1"));
    assert!(cluster.network.is_empty());
    assert_eq!(cluster.replica(1).op_number(), op(0));
}

#[test]
fn a_backup_accepts_prepares_only_in_order() {
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("a", "1"));
    cluster.request(0, 1, 2, put("b", "2"));
    // Replica 1 sees op 2 before op 1: it does not append it, and asks for
    // the state it lacks instead.
    cluster.deliver_first(|m| {
        is(m, "Prepare")
            && m.to == ReplicaId(1)
            && matches!(&m.envelope.msg, vr::core::Message::Prepare(p) if p.op == op(2))
    });
    assert_eq!(cluster.replica(1).op_number(), op(0));
    assert!(
        cluster
            .network
            .iter()
            .any(|m| is(m, "GetState") && between(m, 1, 0))
    );
    cluster.deliver_all();
    assert_eq!(cluster.replica(1).op_number(), op(2));
    assert_eq!(cluster.replica(0).commit_number(), commit(2));
}

#[test]
fn a_single_replica_cluster_commits_alone() {
    let mut cluster = Cluster::new(1);
    assert_eq!(cluster.commit(0, 1, 1, put("x", "1")), KvOutput::Stored);
    assert_eq!(cluster.replica(0).commit_number(), commit(1));
    assert_eq!(cluster.replica(0).status(), Status::Normal);
}

fn batch(requests: &[(u64, &str)]) -> vr::core::Input<vr::app::Kv> {
    vr::core::Input::Requests(
        requests
            .iter()
            .map(|&(client, key)| vr::core::Request {
                operation: vr::core::Command::Apply(put(key, "v")),
                client: vr_tests::harness::session(client),
                request: vr::core::RequestNumber(1),
            })
            .collect(),
    )
}

#[test]
fn requests_arriving_together_travel_in_one_prepare_and_commit_together() {
    let mut cluster = Cluster::new(3);
    cluster.step(ReplicaId(0), batch(&[(1, "a"), (2, "b"), (3, "c")]));
    let prepares: Vec<_> = cluster
        .network
        .iter()
        .filter(|m| is(m, "Prepare"))
        .collect();
    assert_eq!(prepares.len(), 2, "one Prepare per backup");
    let vr::core::Message::Prepare(p) = &prepares[0].envelope.msg else {
        unreachable!()
    };
    assert_eq!((p.op, p.entries.len()), (op(3), 3));
    cluster.deliver_all();
    assert_eq!(cluster.replica(0).commit_number(), commit(3));
    for client in 1..=3 {
        assert_eq!(cluster.replies_to(client, 1), [&KvOutput::Stored]);
    }
    // A request already executed in the batch gets its stored reply again and
    // takes no new op-number.
    cluster.step(ReplicaId(0), batch(&[(1, "a"), (4, "d")]));
    cluster.deliver_all();
    assert_eq!(cluster.replica(0).op_number(), op(4));
    assert_eq!(cluster.replies_to(1, 1).len(), 2);
}

#[test]
fn a_backup_appends_only_the_entries_of_a_batch_it_does_not_hold() {
    let mut cluster = Cluster::new(3);
    cluster.request(0, 1, 1, put("a", "v"));
    let first = cluster
        .network
        .iter()
        .find(|m| is(m, "Prepare") && m.to == ReplicaId(1))
        .cloned()
        .expect("a Prepare to replica 1");
    cluster.deliver_all();
    cluster.step(ReplicaId(0), batch(&[(2, "b"), (3, "c")]));
    // A Prepare of ops 1 to 3, as a primary resending a longer batch would
    // send, overlaps the op replica 1 holds.
    let mut overlapping = cluster
        .network
        .iter()
        .find(|m| is(m, "Prepare") && m.to == ReplicaId(1))
        .cloned()
        .expect("a Prepare to replica 1");
    let (vr::core::Message::Prepare(old), vr::core::Message::Prepare(new)) =
        (&first.envelope.msg, &mut overlapping.envelope.msg)
    else {
        unreachable!()
    };
    new.entries.insert(0, old.entries[0].clone());
    cluster.drop_where(|m| is(m, "Prepare"));
    cluster.deliver_one(overlapping);
    let backup = cluster.replica(1);
    assert_eq!(backup.op_number(), op(3));
    assert_eq!(backup.log(), cluster.replica(0).log());
}
