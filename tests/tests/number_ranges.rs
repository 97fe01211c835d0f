//! Numbers at the end of the range (spec/protocol.md, "Threat model"): a
//! message carrying a view-, op- or commit-number above `NUMBER_MAX` is
//! dropped as malformed before it changes anything, and the replica's own
//! arithmetic never wraps, so a hostile or corrupted number cannot send a
//! replica to the end of the number line or back to view 0.

use vr::app::{Kv, KvOperation};
use vr::core::{
    ClientId, Commit, CommitNumber, Entry, Envelope, Input, Message, MessageId, NUMBER_MAX,
    OpNumber, Prepare, ReplicaId, RequestNumber, StartViewChange, Status, Timer, View,
};
use vr_tests::harness::Cluster;

fn deliver(cluster: &mut Cluster, from: u8, to: u8, msg: Message<Kv>) {
    let envelope = Envelope {
        from: ReplicaId(from),
        id: MessageId::of(ReplicaId(to), &msg),
        msg,
    };
    cluster.step(ReplicaId(to), Input::Deliver(envelope));
}

fn svc(view: u64) -> Message<Kv> {
    Message::StartViewChange(StartViewChange { view: View(view) })
}

#[test]
fn a_start_view_change_beyond_number_max_is_dropped_and_a_later_timeout_moves_to_view_one() {
    for view in [u64::MAX - 1, u64::MAX, NUMBER_MAX + 1] {
        let mut cluster = Cluster::new(3);
        let sent = cluster.network.len();
        deliver(&mut cluster, 2, 1, svc(view));
        let r = cluster.replica(1);
        assert_eq!((r.status(), r.view()), (Status::Normal, View(0)), "{view}");
        assert_eq!(cluster.network.len(), sent, "not even acknowledged");
        // The backup's own view change goes to view 1, and completes.
        cluster.fire(1, Timer::PrimaryTimeout);
        assert_eq!(cluster.replica(1).view(), View(1));
        cluster.deliver_all();
        for id in 0..3 {
            let r = cluster.replica(id);
            assert_eq!((r.status(), r.view()), (Status::Normal, View(1)), "{id}");
        }
    }
}

#[test]
fn a_view_change_from_number_max_moves_on_without_wrapping_to_zero() {
    let mut cluster = Cluster::new(3);
    deliver(&mut cluster, 2, 1, svc(NUMBER_MAX));
    assert_eq!(cluster.replica(1).view(), View(NUMBER_MAX));
    assert_eq!(cluster.replica(1).status(), Status::ViewChange);
    cluster.fire(1, Timer::ViewChangeTimeout);
    assert_eq!(cluster.replica(1).view(), View(NUMBER_MAX + 1));
    cluster.fire(1, Timer::ViewChangeTimeout);
    assert_eq!(cluster.replica(1).view(), View(NUMBER_MAX + 2));
}

#[test]
fn a_prepare_or_commit_whose_numbers_reach_past_number_max_changes_nothing() {
    let entry = Entry {
        operation: vr::core::Command::Apply(KvOperation::Put {
            key: "victim".into(),
            value: "EVIL".into(),
        }),
        client: ClientId(1),
        request: RequestNumber(1),
    };
    for (op, commit) in [
        (u64::MAX, 0),
        (u64::MAX - 1, 0),
        (NUMBER_MAX + 1, 0),
        (1, u64::MAX),
    ] {
        let mut cluster = Cluster::new(3);
        let sent = cluster.network.len();
        let prepare = Message::Prepare(Prepare {
            view: View(0),
            op: OpNumber(op),
            entries: vec![entry.clone()],
            commit: CommitNumber(commit),
        });
        deliver(&mut cluster, 0, 1, prepare);
        let commit_msg = Message::Commit(Commit {
            view: View(0),
            commit: CommitNumber(commit.max(op)),
            op: OpNumber(op),
        });
        deliver(&mut cluster, 0, 1, commit_msg);
        let r = cluster.replica(1);
        // Unchanged since the harness opened its sessions.
        assert_eq!(
            r.op_number(),
            vr_tests::harness::op(0),
            "op {op} commit {commit}"
        );
        assert_eq!(r.commit_number(), vr_tests::harness::commit(0));
        assert_eq!(r.status(), Status::Normal);
        assert_eq!(
            cluster.network.len(),
            sent,
            "no PrepareOk, no Ack, no GetState"
        );
    }
}
