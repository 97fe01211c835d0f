//! Preludes: starting states built by running the core, so that a deep path
//! of the protocol is a few steps from the model's start instead of beyond
//! its depth bound. The model explores every interleaving from the prelude's
//! state on; the prelude itself is one fixed, fault-free (or scripted-fault)
//! run of the same handlers, driven by [`Driver`].
//!
//! Every start but an empty cluster's is built here: the model's clients
//! begin with their sessions open ([`open_sessions`]; spec/protocol.md,
//! "Client sessions"), so that no model path spends its depth on
//! registering. A prelude's script runs after that, its requests from
//! [`prelude_client`], a session of its own; they only read the register, so
//! the model's clients' history stays linearizable from the register's
//! initial value.
//! A prelude that writes (to give a checkpoint more than one part) is for
//! models without clients, whose history the writes would otherwise enter.

use crate::driver::Driver;
use crate::register::{Register, RegisterOperation};
use vr::core::{
    ClientId, Command, CommitNumber, Config, Message, OpNumber, Outcome, ReplicaId, Request,
    RequestNumber, Status, Timer, View,
};

/// The secret of the prelude's session: beyond every model client's.
const PRELUDE_SECRET: u64 = 100;

/// The session of the prelude's requests: registered after the model's
/// clients' (`clients` of them).
pub fn prelude_client(clients: u8) -> ClientId {
    ClientId::granted(OpNumber(u64::from(clients) + 1), PRELUDE_SECRET)
}

/// Opens the sessions of the model's `clients` clients (client k's secret
/// is k, its Register at op-number k + 1: [`crate::actors::session_of`]) and,
/// with `prelude`, the prelude's session, through primary 0 in view 0; then
/// a heartbeat, so that every replica has executed them and nothing is in
/// flight.
pub fn open_sessions(d: &mut Driver<Register>, clients: u8, prelude: bool) {
    let secrets = (0..u64::from(clients)).chain(prelude.then_some(PRELUDE_SECRET));
    for (index, secret) in secrets.enumerate() {
        d.request(
            0,
            Request {
                operation: Command::Register,
                client: ClientId::provisional(secret),
                request: RequestNumber(1),
            },
        );
        d.deliver_all();
        let granted = ClientId::granted(OpNumber(index as u64 + 1), secret);
        assert_eq!(
            d.replica(0)
                .and_then(|r| r.client_table().get(granted))
                .map(|row| &row.output),
            Some(&Outcome::Registered(granted)),
            "sessions: the Register of secret {secret} did not open session {granted:?}:\n{}",
            d.describe()
        );
    }
    d.fire(0, Timer::Heartbeat);
    d.deliver_all();
}

/// The nonce of replica 2's recovery in the [`Prelude::Recovering`] and
/// [`Prelude::RecoveredOnce`] preludes: one the model's own restarts (1, 2,
/// ...) never use.
pub const PRELUDE_RECOVERY_NONCE: u64 = 1_000;

/// A named starting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Prelude {
    /// Primary 0 has committed ops 1 and 2; the backups hold both but learned
    /// no commit-number. A view change that leaves 0 out, and the crash of
    /// its other member, make 0's PrepareOk after StartView the only way to
    /// commit them (LIVE-COMMIT).
    OldPrimaryCommitted,
    /// Two view changes done: every replica Normal in view 2 (primary 2),
    /// an entry committed in view 0 and one in view 2. One more view change
    /// makes replica 0 primary a second time.
    ViewTwo,
    /// Replica 2 crashed and recovered after op 1 committed; every replica
    /// Normal in view 0. A crash of 2 is its second; a crash of the primary
    /// is a view change after a completed recovery.
    RecoveredOnce,
    /// Replica 2 crashed and restarted after the prelude's session
    /// committed; its Recovery messages (nonce [`PRELUDE_RECOVERY_NONCE`])
    /// are in flight, replicas 0 and 1 Normal in view 0. A recovery under
    /// way from the first step, without a crash's and a restart's steps.
    Recovering,
    /// Primary 0 is gone after committing ops 1-3 with replica 2 alone;
    /// replica 1 holds nothing. The view change to view 1 is under way, 2's
    /// DoViewChange in flight: with one committed entry per message, primary
    /// 1 must fill in ops 1-2 from replica 2 before it can start the view.
    /// Needs `down = 1` and `message_weight_max = 1`.
    FillNeeded,
    /// Replicas 0 and 1 executed six writes (ops 2-7, after the prelude's
    /// session at op 1) without replica 2, taking a checkpoint every 2
    /// entries, so their checkpoint is at op 6 and their logs start after op
    /// 4; then they changed to view 1 without it. Replica 2, at op 1 and in
    /// view 0, has heard primary 1's Commit and asked it for the log after op
    /// 1: entries primary 1 has discarded, so it gets primary 1's checkpoint
    /// (in two parts) and then op 7, and joins view 1. Needs `clients = 0`
    /// (the prelude's writes are no model client's) and
    /// `checkpoint_interval = 2`.
    CheckpointBehind,
    /// Replica 0, primary of view 0, was cut off while replicas 1 and 2
    /// changed to view 1; it heard primary 1's Commit and asked it for view
    /// 1's log, but the GetState was lost. Meanwhile 1 and 2 changed to view
    /// 2 without it, and primary 2's Commit is on its way to 0: replica 0,
    /// catching up to view 1, hears of view 2 and must move on to it and
    /// fetch view 2's log from primary 2 (LIVE-JOIN; wrong variant
    /// `CatchUpIgnoresNewerView`).
    CatchUpOvertaken,
}

impl Prelude {
    /// What the model configuration must say for this prelude to make sense.
    pub fn requirement(self) -> &'static str {
        match self {
            Prelude::FillNeeded => "--replicas 3 --down 1 --message-weight-max 1",
            Prelude::CheckpointBehind => {
                "--replicas 3 --down 0 --clients 0 --checkpoint-interval 2"
            }
            _ => "--replicas 3 --down 0",
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Runs the prelude on `d`, whose replicas have executed `sessions`
    /// Registers (the model's clients' and the prelude's): the script's
    /// op-numbers follow them.
    ///
    /// Panics if a step of the script does not lead where it should: the
    /// prelude is fixed, so that is a change of the core's behaviour.
    pub fn build(self, d: &mut Driver<Register>, configs: &[Config], clients: u8) {
        let base = u64::from(clients) + 1;
        let client = prelude_client(clients);
        let read = |request: u64| read(client, request);
        let write = |request: u64| write(client, request);
        let expect = |d: &Driver<Register>, id, status, view, commit: CommitNumber| {
            expect(d, id, status, view, CommitNumber(base + commit.0))
        };
        match self {
            Prelude::OldPrimaryCommitted => {
                d.request(0, read(1));
                d.request(0, read(2));
                d.deliver_all();
                expect(d, 0, Status::Normal, View(0), CommitNumber(2));
                expect(d, 1, Status::Normal, View(0), CommitNumber(0));
                expect(d, 2, Status::Normal, View(0), CommitNumber(0));
            }
            Prelude::ViewTwo => {
                d.request(0, read(1));
                d.deliver_all();
                d.fire(0, Timer::Heartbeat);
                d.deliver_all();
                d.fire(2, Timer::PrimaryTimeout);
                d.deliver_all();
                d.fire(0, Timer::PrimaryTimeout);
                d.deliver_all();
                d.request(2, read(2));
                d.deliver_all();
                d.fire(2, Timer::Heartbeat);
                d.deliver_all();
                for id in 0..3 {
                    expect(d, id, Status::Normal, View(2), CommitNumber(2));
                }
            }
            Prelude::RecoveredOnce => {
                d.request(0, read(1));
                d.deliver_all();
                d.fire(0, Timer::Heartbeat);
                d.deliver_all();
                d.crash(2);
                d.restart(configs[2], PRELUDE_RECOVERY_NONCE);
                d.deliver_all();
                for id in 0..3 {
                    expect(d, id, Status::Normal, View(0), CommitNumber(1));
                }
            }
            Prelude::Recovering => {
                d.crash(2);
                d.restart(configs[2], PRELUDE_RECOVERY_NONCE);
                expect(d, 0, Status::Normal, View(0), CommitNumber(0));
                expect(d, 1, Status::Normal, View(0), CommitNumber(0));
                let recovering = d
                    .replica(2)
                    .is_some_and(|r| r.status() == Status::Recovering);
                assert!(
                    recovering && d.in_flight.len() == 2,
                    "prelude: replica 2 is not recovering with its two Recovery messages in flight:\n{}",
                    d.describe()
                );
            }
            Prelude::FillNeeded => {
                let apart = cut_off(1);
                for request in 1..=3 {
                    d.request(0, read(request));
                    d.deliver_while(apart);
                }
                d.fire(0, Timer::Heartbeat);
                d.deliver_while(apart);
                expect(d, 2, Status::Normal, View(0), CommitNumber(3));
                expect(d, 1, Status::Normal, View(0), CommitNumber(0));
                d.crash(0);
                d.fire(2, Timer::PrimaryTimeout);
                d.deliver_until(|_, e| matches!(e.msg, Message::DoViewChange(_)));
                expect(d, 1, Status::ViewChange, View(1), CommitNumber(0));
                expect(d, 2, Status::ViewChange, View(1), CommitNumber(3));
            }
            Prelude::CheckpointBehind => {
                let apart = cut_off(2);
                // After the sessions' Registers (ops 1 .. base), base + 1 ..
                // base + 6: a checkpoint every 2 executed entries leaves
                // primary 1 one at base + 5 with its log starting after the
                // previous one, so replica 2 (at op base) needs the
                // checkpoint, then the entry after it.
                for request in 1..=6 {
                    d.request(0, write(request));
                    d.deliver_while(apart);
                }
                d.fire(0, Timer::Heartbeat);
                d.deliver_while(apart);
                d.fire(1, Timer::PrimaryTimeout);
                d.deliver_while(apart);
                expect(d, 0, Status::Normal, View(1), CommitNumber(6));
                expect(d, 1, Status::Normal, View(1), CommitNumber(6));
                expect(d, 2, Status::Normal, View(0), CommitNumber(0));
                let primary = d.replica(1).expect("up");
                assert!(
                    primary.log().base() > OpNumber(base)
                        && primary.checkpoint().map(|c| c.commit) == Some(CommitNumber(base + 5))
                        && primary.checkpoint().is_some_and(|c| c.parts().len() > 1),
                    "prelude: primary 1 has not compacted its log behind a checkpoint of several parts:\n{}",
                    d.describe()
                );
                d.fire(1, Timer::Heartbeat);
                d.deliver_until(|to, e| {
                    to == ReplicaId(1) && matches!(e.msg, Message::GetState(_))
                });
                expect(d, 2, Status::ViewChange, View(1), CommitNumber(0));
            }
            Prelude::CatchUpOvertaken => {
                let apart = cut_off(0);
                d.request(0, read(1));
                d.deliver_all();
                d.fire(0, Timer::Heartbeat);
                d.deliver_all();
                // View 1 without replica 0, and an entry 0 lacks.
                d.fire(1, Timer::PrimaryTimeout);
                d.deliver_while(apart);
                d.request(1, read(2));
                d.deliver_while(apart);
                // Primary 1's Commit reaches 0, which starts to catch up;
                // what 0 sends (its GetState among them) is lost.
                d.fire(1, Timer::Heartbeat);
                d.deliver_while(|_, e| e.from != ReplicaId(0));
                expect(d, 0, Status::ViewChange, View(1), CommitNumber(1));
                assert!(
                    d.replica(0).is_some_and(|r| r.catch_up().is_some()),
                    "prelude: replica 0 is not catching up:\n{}",
                    d.describe()
                );
                // View 2 without replica 0, cut off long enough that 1 and
                // 2 spend every attempt of their messages to it and count it
                // disconnected: no StartView of view 2 will reach it. Then
                // primary 2's Commit to 0 stays in flight.
                d.fire(2, Timer::PrimaryTimeout);
                d.deliver_while(apart);
                for _ in 0..configs[0].attempts_max() {
                    for id in [1, 2] {
                        d.fire(id, Timer::Resend);
                    }
                    d.deliver_while(apart);
                }
                for id in [1, 2] {
                    let r = d.replica(id).expect("up");
                    assert!(
                        !r.delivery().is_connected(ReplicaId(0))
                            && r.delivery()
                                .unconfirmed()
                                .values()
                                .all(|u| u.to != ReplicaId(0)),
                        "prelude: replica {id} still sends to replica 0:\n{}",
                        d.describe()
                    );
                }
                d.fire(2, Timer::Heartbeat);
                d.deliver_until(|to, _| to == ReplicaId(0));
                assert!(
                    d.in_flight.iter().any(|(to, e)| *to == ReplicaId(0)
                        && e.from == ReplicaId(2)
                        && matches!(&e.msg, Message::Commit(c) if c.view == View(2))),
                    "prelude: primary 2's Commit to replica 0 is not in flight:\n{}",
                    d.describe()
                );
                expect(d, 1, Status::Normal, View(2), CommitNumber(2));
                expect(d, 2, Status::Normal, View(2), CommitNumber(2));
                expect(d, 0, Status::ViewChange, View(1), CommitNumber(1));
            }
        }
    }
}

/// A write by the prelude's client: only for preludes of models without
/// clients, whose history it would otherwise enter.
fn write(client: ClientId, request: u64) -> Request<Register> {
    Request {
        operation: Command::Apply(RegisterOperation::Write(request as u8)),
        client,
        request: RequestNumber(request),
    }
}

/// For [`Driver::deliver_while`]: replica `id` is cut off, every message to
/// or from it lost.
fn cut_off(id: u8) -> impl Fn(ReplicaId, &vr::core::Envelope<Register>) -> bool + Copy {
    move |to, e| to != ReplicaId(id) && e.from != ReplicaId(id)
}

fn read(client: ClientId, request: u64) -> Request<Register> {
    Request {
        operation: Command::Apply(RegisterOperation::Read),
        client,
        request: RequestNumber(request),
    }
}

fn expect(d: &Driver<Register>, id: u8, status: Status, view: View, commit: CommitNumber) {
    let r = d
        .replica(id)
        .unwrap_or_else(|| panic!("prelude: replica {id} is down"));
    assert_eq!(
        (r.status(), r.view(), r.commit_number()),
        (status, view, commit),
        "prelude: replica {id} is not where the script leads:\n{}",
        d.describe()
    );
}
