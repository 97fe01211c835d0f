//! Recovery (paper 4.3): a restarted replica learns its state from the others.

use vr::app::KvOutput;
use vr::core::{
    Envelope, Input, LogSuffix, Message, MessageId, Nonce, PrimaryState, RecoveryResponse,
    ReplicaId, Status, Timer, View,
};
use vr_tests::harness::{Cluster, commit, is, op, put};

#[test]
fn a_backup_restarted_mid_run_recovers_catches_up_and_then_takes_part_in_a_view_change() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.commit(0, 1, 2, put("b", "2"));
    cluster.crash(2);
    cluster.commit(0, 1, 3, put("c", "3"));
    cluster.restart(2, 1);
    assert_eq!(cluster.replica(2).status(), Status::Recovering);
    cluster.deliver_all();
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(0)));
    assert_eq!(r.op_number(), op(3));
    assert_eq!(r.commit_number(), commit(3));
    assert_eq!(r.app().get("c"), Some("3"));
    assert!(cluster.timer_set(2, Timer::PrimaryTimeout));
    assert!(!cluster.timer_set(2, Timer::RecoveryRetry));
    // The recovered replica now takes part in a view change without replica 0.
    cluster.crash(0);
    cluster.fire(2, Timer::PrimaryTimeout);
    cluster.deliver_all();
    for id in [1, 2] {
        let r = cluster.replica(id);
        assert_eq!((r.status(), r.view()), (Status::Normal, View(1)));
        assert_eq!(r.op_number(), op(3));
    }
    assert!(
        !cluster.delivered_of("DoViewChange", 2).is_empty(),
        "replica 2 voted"
    );
    assert_eq!(cluster.commit(1, 1, 4, put("d", "4")), KvOutput::Stored);
}

fn response(
    from: u8,
    view: u64,
    nonce: u64,
    primary: Option<PrimaryState<vr::app::Kv>>,
) -> Input<vr::app::Kv> {
    Input::Deliver(Envelope {
        from: ReplicaId(from),
        id: MessageId(100),
        msg: Message::RecoveryResponse(RecoveryResponse {
            view: View(view),
            nonce: Nonce(nonce),
            primary,
        }),
    })
}

#[test]
fn a_recovery_response_with_an_old_nonce_is_ignored() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.crash(2);
    cluster.restart(2, 2);
    cluster.drop_where(|_| true);
    let state = PrimaryState {
        log: LogSuffix::whole(cluster.replica(0).log()),
        commit: cluster.replica(0).commit_number(),
    };
    // Answers to an earlier recovery (nonce 1) count for nothing.
    cluster.step(ReplicaId(2), response(0, 0, 1, Some(state.clone())));
    cluster.step(ReplicaId(2), response(1, 0, 1, None));
    let r = cluster.replica(2);
    assert_eq!(r.status(), Status::Recovering);
    assert!(r.recovery().unwrap().responses().is_empty());
}

#[test]
fn recovery_completes_only_with_f_plus_one_responses_including_the_latest_primary() {
    let mut cluster = Cluster::new(5);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.crash(4);
    cluster.restart(4, 9);
    cluster.drop_where(|_| true);
    let state = |log: LogSuffix<vr::app::Kv>| PrimaryState {
        log,
        commit: commit(1),
    };
    let log = LogSuffix::whole(cluster.replica(0).log());
    // Backups' answers alone never complete recovery, however many.
    cluster.step(ReplicaId(4), response(1, 0, 9, None));
    cluster.step(ReplicaId(4), response(2, 0, 9, None));
    cluster.step(ReplicaId(4), response(3, 0, 9, None));
    assert_eq!(cluster.replica(4).status(), Status::Recovering);
    // A backup answering from view 1 means view 0's primary is not the latest.
    cluster.step(ReplicaId(4), response(3, 1, 9, None));
    cluster.step(ReplicaId(4), response(0, 0, 9, Some(state(log.clone()))));
    assert_eq!(
        cluster.replica(4).status(),
        Status::Recovering,
        "primary of view 0 is stale"
    );
    // The primary of view 1 answers: f + 1 = 3 answers with the latest primary.
    cluster.step(ReplicaId(4), response(1, 1, 9, Some(state(log))));
    let r = cluster.replica(4);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(1)));
    assert_eq!(r.commit_number(), commit(1));
    assert_eq!(r.app().get("a"), Some("1"));
}

#[test]
fn too_few_responses_make_the_recovering_replica_ask_again_with_the_same_nonce() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.crash(2);
    cluster.restart(2, 5);
    // The Recovery messages arrive, but every answer is lost for good.
    cluster.deliver_while(|m| !is(m, "RecoveryResponse"));
    for _ in 0..3 {
        for id in [0, 1] {
            cluster.fire(id, Timer::Resend);
        }
        cluster.deliver_while(|m| !is(m, "RecoveryResponse"));
    }
    assert_eq!(cluster.replica(2).status(), Status::Recovering);
    cluster.fire(2, Timer::RecoveryRetry);
    let nonces: Vec<_> = cluster
        .network
        .iter()
        .filter_map(|m| match &m.envelope.msg {
            Message::Recovery(r) => Some(r.nonce),
            _ => None,
        })
        .collect();
    assert_eq!(nonces, [Nonce(5), Nonce(5)]);
    assert!(cluster.timer_set(2, Timer::RecoveryRetry));
    cluster.deliver_all();
    assert_eq!(cluster.replica(2).status(), Status::Normal);
    assert_eq!(cluster.replica(2).app().get("a"), Some("1"));
}

#[test]
fn a_recovering_replica_is_never_counted_in_a_prepare_ok_or_view_change_quorum() {
    let mut cluster = Cluster::new(3);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.crash(2);
    cluster.restart(2, 1);
    // Its Recovery messages are lost; it stays Recovering. What it sent
    // before the crash no longer matters.
    cluster.drop_where(|_| true);
    cluster.delivered.clear();
    // The primary prepares: only replica 1 could confirm; replica 2 sends no
    // PrepareOk, so with replica 1 cut off nothing commits.
    cluster.isolate(1);
    cluster.request(0, 1, 2, put("b", "2"));
    cluster.deliver_all();
    assert_eq!(cluster.replica(0).commit_number(), commit(1));
    // A view change reaches it: it sends no StartViewChange or DoViewChange.
    cluster.heal();
    cluster.isolate(0);
    cluster.fire(1, Timer::PrimaryTimeout);
    cluster.deliver_while(|m| !is(m, "Recovery"));
    assert_eq!(
        cluster.replica(1).status(),
        Status::ViewChange,
        "no quorum without replica 2"
    );
    for name in ["PrepareOk", "StartViewChange", "DoViewChange"] {
        assert!(
            cluster.delivered_of(name, 2).is_empty(),
            "replica 2 sent {name}"
        );
    }
    assert_eq!(cluster.replica(2).status(), Status::Recovering);
    // Replicas not in Normal status do not answer Recovery either.
    cluster.fire(2, Timer::RecoveryRetry);
    cluster.deliver_all();
    assert_eq!(cluster.replica(2).status(), Status::Recovering);
}
