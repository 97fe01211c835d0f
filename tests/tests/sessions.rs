//! Client sessions (spec/protocol.md, "Client sessions"): the cluster grants
//! client ids, refuses requests of ids it did not grant or has pruned, and
//! bounds its client table by pruning the oldest rows, every replica alike.

use vr::app::KvOutput;
use vr::core::{
    ClientId, Command, Config, Input, Outcome, Replica, ReplicaId, Request, RequestNumber,
};
use vr_tests::harness::{Cluster, SESSIONS, get, op, put, session};

fn register(secret: u64) -> Request<vr::app::Kv> {
    Request {
        operation: Command::Register,
        client: ClientId::provisional(secret),
        request: RequestNumber(1),
    }
}

fn apply(client: ClientId, request: u64, operation: vr::app::KvOperation) -> Request<vr::app::Kv> {
    Request {
        operation: Command::Apply(operation),
        client,
        request: RequestNumber(request),
    }
}

/// Registers the client of `secret` through primary 0 as the next entry
/// after the harness's sessions, and returns the id the cluster granted it.
fn open_session(cluster: &mut Cluster, secret: u64) -> ClientId {
    cluster.step(ReplicaId(0), Input::Request(register(secret)));
    cluster.deliver_all();
    let granted = ClientId::granted(op(1), secret);
    assert_eq!(
        cluster.outcomes_to(ClientId::provisional(secret), 1),
        vec![&Outcome::Registered(granted)]
    );
    granted
}

/// A cluster whose client table holds at most the harness's sessions.
fn full_cluster() -> Cluster {
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_client_table_max(SESSIONS)
        .unwrap();
    Cluster::with_config(config)
}

/// Every replica learns the primary's commit-number (a heartbeat), then
/// their tables are compared.
fn assert_tables_agree(cluster: &mut Cluster) {
    cluster.fire(0, vr::core::Timer::Heartbeat);
    cluster.deliver_all();
    let rows = |r: &Replica<vr::app::Kv>| {
        r.client_table()
            .rows()
            .map(|(c, row)| (c, row.request, row.last_op))
            .collect::<Vec<_>>()
    };
    let first = rows(cluster.replica(0));
    for id in 1..3 {
        assert_eq!(rows(cluster.replica(id)), first, "replica {id}'s table");
    }
}

#[test]
fn a_register_opens_a_session_named_by_its_op_number_and_the_client_secret() {
    let mut cluster = Cluster::new(3);
    let granted = open_session(&mut cluster, 42);
    cluster.step(
        ReplicaId(0),
        Input::Request(apply(granted, 1, put("k", "v"))),
    );
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes_to(granted, 1),
        vec![&Outcome::Output(KvOutput::Stored)]
    );
}

#[test]
fn a_request_with_another_client_s_session_number_but_not_its_secret_is_refused_and_the_victim_keeps_being_served()
 {
    let mut cluster = Cluster::new(3);
    assert_eq!(cluster.commit(0, 1, 1, put("x", "1")), KvOutput::Stored);
    // The hijack: the victim's session with a huge request-number,
    // from a sender who does not know the victim's secret.
    let victim = session(1);
    let forged = ClientId::granted(victim.register_op().unwrap(), 999);
    let before = cluster.replica(0).op_number();
    cluster.step(
        ReplicaId(0),
        Input::Request(apply(forged, 1_000_000, put("x", "hijacked"))),
    );
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes_to(forged, 1_000_000),
        vec![&Outcome::SessionExpired]
    );
    assert_eq!(cluster.replica(0).op_number(), before, "nothing prepared");
    // The victim's next request is served as if nothing happened.
    assert_eq!(
        cluster.commit(0, 1, 2, get("x")),
        KvOutput::Value(Some("1".into()))
    );
    assert_tables_agree(&mut cluster);
}

#[test]
fn requests_from_ids_the_cluster_never_granted_are_answered_session_expired_and_not_executed() {
    let mut cluster = Cluster::new(3);
    let never_granted = [
        // A provisional id: a secret alone.
        ClientId::provisional(5),
        // An op-number beyond the log.
        ClientId::granted(op(50), 50),
        // An op-number whose entry is not a Register.
        ClientId::granted(op(1), 1),
    ];
    cluster.commit(0, 1, 1, put("x", "1"));
    for client in never_granted {
        cluster.step(
            ReplicaId(0),
            Input::Request(apply(client, 1, put("x", "2"))),
        );
        cluster.deliver_all();
        assert_eq!(
            cluster.outcomes_to(client, 1),
            vec![&Outcome::SessionExpired],
            "{client:?}"
        );
    }
    assert_eq!(cluster.replica(0).op_number(), op(1));
}

#[test]
fn a_register_beyond_the_table_bound_prunes_the_session_idle_longest_and_every_replica_agrees() {
    let mut cluster = full_cluster();
    // Every client but 3 executes a request: client 3's row is the oldest.
    for k in (1..=SESSIONS).filter(|&k| k != 3) {
        cluster.commit(0, k, 1, put("k", "v"));
    }
    cluster.step(ReplicaId(0), Input::Request(register(77)));
    cluster.deliver_all();
    cluster.fire(0, vr::core::Timer::Heartbeat);
    cluster.deliver_all();
    for id in 0..3 {
        let table = cluster.replica(id).client_table();
        assert_eq!(table.len() as u64, SESSIONS, "replica {id}");
        assert!(
            table.get(session(3)).is_none(),
            "replica {id} pruned client 3"
        );
        assert!(table.get(ClientId::granted(op(SESSIONS), 77)).is_some());
    }
    assert_tables_agree(&mut cluster);
}

#[test]
fn a_pruned_client_s_late_retry_is_answered_session_expired_and_not_executed_twice() {
    let mut cluster = full_cluster();
    // Client 1 appends to a value; its reply is lost (the test ignores it).
    cluster.commit(0, 1, 1, put("x", "once"));
    for k in 2..=SESSIONS {
        cluster.commit(0, k, 1, get("y"));
    }
    // A new client's Register prunes client 1, the longest idle.
    cluster.step(ReplicaId(0), Input::Request(register(77)));
    cluster.deliver_all();
    let before = cluster.replica(0).op_number();
    // The late retry of request 1 (whose first reply, "stored", the client
    // did not get), and a next request: neither executes.
    for request in [1, 2] {
        let before = cluster.outcomes_to(session(1), request).len();
        cluster.request(0, 1, request, put("x", "twice"));
        cluster.deliver_all();
        assert_eq!(
            cluster.outcomes_to(session(1), request)[before..],
            [&Outcome::SessionExpired]
        );
    }
    assert_eq!(cluster.replica(0).op_number(), before, "nothing prepared");
    assert_eq!(
        cluster.commit(0, 2, 2, get("x")),
        KvOutput::Value(Some("once".into()))
    );
}

#[test]
fn an_entry_whose_session_a_register_before_it_pruned_is_skipped_by_every_replica() {
    let mut cluster = full_cluster();
    // One batch: a Register (pruning client 1, the oldest row) and then
    // client 1's put, admitted while its row still existed.
    cluster.step(
        ReplicaId(0),
        Input::Requests(vec![register(77), apply(session(1), 1, put("x", "1"))]),
    );
    cluster.deliver_all();
    cluster.fire(0, vr::core::Timer::Heartbeat);
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes_to(session(1), 1),
        vec![&Outcome::SessionExpired]
    );
    for id in 0..3 {
        let r = cluster.replica(id);
        assert_eq!(r.commit_number(), vr_tests::harness::commit(2));
        assert!(r.client_table().get(session(1)).is_none());
    }
    assert_tables_agree(&mut cluster);
    assert_eq!(
        cluster.commit(0, 2, 1, get("x")),
        KvOutput::Value(None),
        "the skipped put was applied nowhere"
    );
}

#[test]
fn a_new_primary_whose_commit_number_lags_a_granted_session_makes_its_client_wait_not_expire() {
    let mut cluster = Cluster::new(3);
    // Primary 0 commits a Register and replies, but the backups learn no
    // commit-number for it before 0 fails.
    let granted = open_session(&mut cluster, 42);
    cluster.crash(0);
    cluster.fire(1, vr::core::Timer::PrimaryTimeout);
    // The view forms; replica 2's PrepareOks for the Register are lost.
    cluster.deliver_while(|m| m.envelope.msg.name() != "PrepareOk");
    let primary = cluster.replica(1);
    assert_eq!(
        (primary.status(), primary.view(), primary.op_number()),
        (vr::core::Status::Normal, vr::core::View(1), op(1))
    );
    assert_eq!(primary.commit_number(), vr_tests::harness::commit(0));
    // The session's Register is in the new primary's log, uncommitted: the
    // client's request is dropped (it retries), not refused.
    let request = apply(granted, 1, put("k", "v"));
    cluster.step(ReplicaId(1), Input::Request(request.clone()));
    assert!(cluster.outcomes_to(granted, 1).is_empty());
    // Once the Register commits, the retry is served.
    cluster.fire_resends(2, 1);
    assert_eq!(
        cluster.replica(1).commit_number(),
        vr_tests::harness::commit(1)
    );
    cluster.step(ReplicaId(1), Input::Request(request));
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes_to(granted, 1),
        vec![&Outcome::Output(KvOutput::Stored)]
    );
}

#[test]
fn a_replica_that_fetched_a_checkpoint_prunes_the_same_sessions_as_the_others() {
    // Rows and their ages travel in checkpoints: the replica that lagged
    // behind the compacted log installs them, then prunes as the others do.
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_message_weight_max(1)
        .unwrap()
        .with_checkpoint_interval(2)
        .unwrap()
        .with_client_table_max(SESSIONS)
        .unwrap();
    let mut cluster = Cluster::with_config(config);
    cluster.isolate(2);
    for k in (1..=SESSIONS).rev() {
        cluster.commit(0, k, 1, put(&format!("k{k}"), "v"));
    }
    cluster.heal();
    cluster.fire(0, vr::core::Timer::Heartbeat);
    cluster.deliver_all();
    assert!(
        cluster
            .delivered
            .iter()
            .any(|m| m.to == ReplicaId(2) && m.envelope.msg.name() == "NewCheckpoint"),
        "replica 2 fetched a checkpoint"
    );
    // Client 8 executed first, so it is the idlest: the Register prunes it.
    cluster.step(ReplicaId(0), Input::Request(register(77)));
    cluster.deliver_all();
    assert_tables_agree(&mut cluster);
    assert!(cluster.replica(2).client_table().get(session(8)).is_none());
    assert!(cluster.replica(2).client_table().get(session(1)).is_some());
}

#[test]
fn a_replica_restarted_from_disk_keeps_its_sessions_and_their_ages() {
    let config = Config::new(3, ReplicaId(0))
        .unwrap()
        .with_client_table_max(SESSIONS)
        .unwrap();
    let mut cluster = Cluster::durable(config, false);
    for k in (1..=SESSIONS).rev() {
        cluster.commit(0, k, 1, put(&format!("k{k}"), "v"));
    }
    cluster.fire(0, vr::core::Timer::Heartbeat);
    cluster.deliver_and_sync();
    cluster.crash(1);
    cluster.restart(1, 5);
    cluster.deliver_and_sync();
    cluster.step(ReplicaId(0), Input::Request(register(77)));
    cluster.deliver_and_sync();
    assert_tables_agree(&mut cluster);
    assert!(cluster.replica(1).client_table().get(session(8)).is_none());
}
