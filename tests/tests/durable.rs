//! Durability (spec/protocol.md, "Durability" and "Restarting from disk"):
//! what must be durable is said before what depends on it, a restarted
//! replica rebuilds itself from its storage, and a storage it cannot trust
//! makes it recover from its peers.

use vr::app::{Kv, KvOutput};
use vr::core::{
    ClientId, CommitNumber, Config, Effect, Envelope, Input, Message, MessageId, OpNumber, Persist,
    Prepare, Replica, ReplicaId, Request, RequestNumber, Status, Timer, View,
};
use vr::runtime::storage::CrashFault;
use vr_tests::harness::{Cluster, get, is, put};

fn config() -> Config {
    Config::new(3, ReplicaId(0)).unwrap()
}

/// The index of the first effect matching `pick`.
fn position(effects: &[Effect<Kv>], pick: impl Fn(&Effect<Kv>) -> bool) -> usize {
    effects
        .iter()
        .position(pick)
        .unwrap_or_else(|| panic!("no such effect in {effects:?}"))
}

fn sends(effect: &Effect<Kv>, name: &str) -> bool {
    matches!(effect, Effect::Send { envelope, .. } if envelope.msg.name() == name)
}

#[test]
fn a_backup_writes_the_entries_it_accepts_before_its_prepare_ok() {
    let mut effects = Vec::new();
    let mut backup = Replica::<Kv>::new(config().for_replica(ReplicaId(1)).unwrap(), &mut effects);
    effects.clear();
    let entry = vr::core::Entry {
        operation: vr::core::Command::Apply(put("a", "1")),
        client: ClientId(7),
        request: RequestNumber(1),
    };
    let prepare = Prepare {
        view: View(0),
        op: OpNumber(1),
        entries: vec![entry.clone()],
        commit: CommitNumber(0),
    };
    backup.step(
        Input::Deliver(Envelope {
            from: ReplicaId(0),
            id: MessageId(1),
            msg: Message::Prepare(prepare),
        }),
        &mut effects,
    );
    let persisted = position(&effects, |e| {
        matches!(e, Effect::Persist(Persist::Log { from, entries, .. })
            if *from == OpNumber(1) && entries == &vec![entry.clone()])
    });
    assert!(persisted < position(&effects, |e| sends(e, "PrepareOk")));
    assert!(persisted < position(&effects, |e| sends(e, "Ack")));
}

#[test]
fn a_primary_writes_what_it_prepares_before_sending_the_prepare() {
    let mut effects = Vec::new();
    let mut primary = Replica::<Kv>::new(config(), &mut effects);
    effects.clear();
    // A Register: a fresh cluster has no sessions for anything else.
    let request = Request {
        operation: vr::core::Command::Register,
        client: ClientId::provisional(7),
        request: RequestNumber(1),
    };
    primary.step(Input::Request(request), &mut effects);
    let persisted = position(
        &effects,
        |e| matches!(e, Effect::Persist(Persist::Log { from, .. }) if *from == OpNumber(1)),
    );
    assert!(persisted < position(&effects, |e| sends(e, "Prepare")));
}

#[test]
fn a_replica_writes_the_view_it_moves_to_before_its_start_view_change() {
    let mut effects = Vec::new();
    let mut backup = Replica::<Kv>::new(config().for_replica(ReplicaId(1)).unwrap(), &mut effects);
    effects.clear();
    backup.step(Input::Timeout(Timer::PrimaryTimeout), &mut effects);
    let persisted = position(
        &effects,
        |e| matches!(e, Effect::Persist(Persist::ViewState(s)) if s.view == View(1) && s.last_normal_view == View(0)),
    );
    assert!(persisted < position(&effects, |e| sends(e, "StartViewChange")));
}

#[test]
fn a_step_that_changes_nothing_durable_writes_nothing() {
    let mut effects = Vec::new();
    let mut primary = Replica::<Kv>::new(config(), &mut effects);
    effects.clear();
    primary.step(Input::Timeout(Timer::Heartbeat), &mut effects);
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Persist(_))),
        "{effects:?}"
    );
}

#[test]
fn a_backup_restarted_from_disk_resumes_normal_in_its_view_without_recovering() {
    let mut cluster = Cluster::durable(config(), false);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.commit(0, 1, 2, put("b", "2"));
    cluster.crash(2);
    cluster.commit(0, 1, 3, put("c", "3"));
    cluster.restart(2, 1);
    let r = cluster.replica(2);
    assert_eq!((r.status(), r.view()), (Status::Normal, View(0)));
    assert!(
        r.op_number() >= vr_tests::harness::op(2),
        "kept what it accepted: {r:?}"
    );
    assert_eq!(r.app().get("a"), Some("1"), "re-executed what it committed");
    assert!(cluster.timer_set(2, Timer::PrimaryTimeout));
    // It catches up like a backup that was cut off.
    cluster.fire(0, Timer::Heartbeat);
    cluster.deliver_all();
    assert_eq!(cluster.replica(2).app().get("c"), Some("3"));
    assert_eq!(cluster.commit(0, 1, 4, put("d", "4")), KvOutput::Stored);
}

#[test]
fn a_primary_restarted_from_disk_starts_a_view_change_that_commits_its_uncommitted_entry() {
    let mut cluster = Cluster::durable(config(), false);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.request(0, 1, 2, put("b", "2"));
    // The backups accept the entry, but their PrepareOks are lost.
    cluster.deliver_while(|m| !is(m, "PrepareOk"));
    cluster.crash(0);
    cluster.restart(0, 1);
    let r = cluster.replica(0);
    assert_eq!((r.status(), r.view()), (Status::ViewChange, View(1)));
    assert_eq!(r.op_number(), vr_tests::harness::op(2));
    cluster.deliver_all();
    for id in 0..3 {
        let r = cluster.replica(id);
        assert_eq!((r.status(), r.view()), (Status::Normal, View(1)), "{r:?}");
    }
    assert_eq!(
        cluster.replica(1).commit_number(),
        vr_tests::harness::commit(2)
    );
    assert_eq!(cluster.replica(1).app().get("b"), Some("2"));
}

/// Syncs and delivers until nothing is held or in flight.
fn settle(cluster: &mut Cluster) {
    while {
        cluster.sync_all();
        cluster.deliver_all() > 0
    } {}
}

/// Fires timers at the replicas until one is primary in Normal status with
/// the others Normal too.
fn form_a_view(cluster: &mut Cluster) -> u8 {
    for _ in 0..10 {
        settle(cluster);
        let normal = |c: &Cluster| (0..3).all(|id| c.replica(id).status() == Status::Normal);
        if normal(cluster) {
            return cluster.replica(0).primary().0;
        }
        for id in 0..3 {
            for timer in [Timer::ViewChangeTimeout, Timer::PrimaryTimeout] {
                if cluster.timer_set(id, timer) {
                    cluster.fire(id, timer);
                    settle(cluster);
                }
            }
        }
    }
    panic!("no view formed");
}

#[test]
fn the_whole_cluster_crashed_at_once_comes_back_with_every_acknowledged_write() {
    let mut cluster = Cluster::durable(config(), true);
    let mut acknowledged = Vec::new();
    for i in 1..=6u64 {
        cluster.request(0, 1, i, put(&format!("k{i}"), &i.to_string()));
        // Group commit: each replica's writes become durable only when it
        // syncs; until then nothing that depends on them leaves.
        settle(&mut cluster);
        if cluster.replies_to(1, i).len() == 1 {
            acknowledged.push(i);
        }
    }
    // One more write, in flight when the power goes.
    cluster.request(0, 1, 7, put("k7", "7"));
    cluster.deliver_all();
    assert_eq!(acknowledged, vec![1, 2, 3, 4, 5, 6]);
    for id in 0..3 {
        cluster.crash_with(id, CrashFault::Tear { at: 7 });
    }
    cluster.network.clear();
    for id in 0..3 {
        cluster.restart(id, 10 + u64::from(id));
    }
    let disks = cluster.disks.as_ref().unwrap();
    assert_eq!(
        disks.corrupt_restarts, 0,
        "every replica restarted from disk"
    );
    let primary = form_a_view(&mut cluster);
    for (request, i) in (100..).zip(&acknowledged) {
        cluster.request(primary, 2, request, get(&format!("k{i}")));
        settle(&mut cluster);
        assert_eq!(
            cluster.replies_to(2, request),
            vec![&KvOutput::Value(Some(i.to_string()))],
            "write {i} survived"
        );
    }
}

#[test]
fn a_torn_last_write_is_cut_off_and_the_replica_restarts_from_what_was_synced() {
    let mut cluster = Cluster::durable(config(), true);
    cluster.request(0, 1, 1, put("a", "1"));
    cluster.sync(0);
    cluster.deliver_all();
    assert!(
        cluster.unsynced(1),
        "the backup wrote the entry but did not sync"
    );
    assert!(
        cluster.network.iter().all(|m| !is(m, "PrepareOk")),
        "so its PrepareOk waits"
    );
    cluster.crash_with(1, CrashFault::Tear { at: 9 });
    cluster.restart(1, 1);
    let disks = cluster.disks.as_ref().unwrap();
    assert_eq!((disks.torn_restarts, disks.corrupt_restarts), (1, 0));
    let r = cluster.replica(1);
    assert_eq!(
        (r.status(), r.op_number()),
        (Status::Normal, vr_tests::harness::op(0))
    );
}

#[test]
fn a_replica_whose_log_is_corrupt_recovers_from_its_peers_then_restarts_from_disk_again() {
    let mut cluster = Cluster::durable(config(), false);
    cluster.commit(0, 1, 1, put("a", "1"));
    cluster.commit(0, 1, 2, put("b", "2"));
    cluster.crash_with(2, CrashFault::Corrupt { at: 3 });
    cluster.restart(2, 1);
    assert_eq!(cluster.disks.as_ref().unwrap().corrupt_restarts, 1);
    assert_eq!(
        cluster.replica(2).status(),
        Status::Recovering,
        "it does not vote with a corrupt log"
    );
    cluster.deliver_all();
    let r = cluster.replica(2);
    assert_eq!(
        (r.status(), r.op_number()),
        (Status::Normal, vr_tests::harness::op(2))
    );
    // Recovered, it wrote its whole state anew: the next restart is from
    // disk.
    cluster.crash(2);
    cluster.restart(2, 2);
    assert_eq!(cluster.disks.as_ref().unwrap().corrupt_restarts, 1);
    let r = cluster.replica(2);
    assert_eq!(
        (r.status(), r.op_number()),
        (Status::Normal, vr_tests::harness::op(2))
    );
    assert_eq!(r.app().get("b"), Some("2"));
}

#[test]
fn a_replica_restarted_from_a_checkpoint_and_the_entries_after_it_has_the_whole_state() {
    let config = config().with_checkpoint_interval(2).unwrap();
    let mut cluster = Cluster::durable(config, false);
    for i in 1..=7 {
        cluster.commit(0, 1, i, put(&format!("k{i}"), "v"));
    }
    let kept = cluster.kept(1).unwrap();
    assert!(kept.checkpoint.is_some(), "checkpoints were written");
    assert!(
        kept.first > vr_tests::harness::op(1),
        "and the log compacted"
    );
    cluster.crash(1);
    cluster.restart(1, 1);
    let r = cluster.replica(1);
    assert_eq!(r.status(), Status::Normal);
    for i in 1..=6 {
        assert_eq!(r.app().get(&format!("k{i}")), Some("v"), "k{i}");
    }
    assert_eq!(cluster.commit(0, 1, 8, put("k8", "v")), KvOutput::Stored);
}

#[test]
fn a_driver_that_sends_before_its_writes_are_durable_loses_an_acknowledged_write() {
    // The rule's negative test: the same whole-cluster crash as above, with
    // a driver that lets PrepareOk and the reply out before syncing.
    let mut cluster = Cluster::durable(config(), true);
    cluster.disks.as_mut().unwrap().send_before_sync = true;
    cluster.request(0, 1, 1, put("a", "1"));
    cluster.deliver_all();
    assert_eq!(
        cluster.replies_to(1, 1),
        vec![&KvOutput::Stored],
        "acknowledged"
    );
    for id in 0..3 {
        cluster.crash_with(id, CrashFault::LoseUnsynced);
    }
    cluster.network.clear();
    for id in 0..3 {
        cluster.restart(id, 10 + u64::from(id));
    }
    let primary = form_a_view(&mut cluster);
    cluster.request(primary, 2, 1, get("a"));
    settle(&mut cluster);
    assert_eq!(
        cluster.replies_to(2, 1),
        vec![&KvOutput::Value(None)],
        "the acknowledged write is gone"
    );
}
