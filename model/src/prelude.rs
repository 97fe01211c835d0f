//! Preludes: starting states built by running the core, so that a deep path
//! of the protocol is a few steps from the model's start instead of beyond
//! its depth bound. The model explores every interleaving from the prelude's
//! state on; the prelude itself is one fixed, fault-free (or scripted-fault)
//! run of the same handlers, driven by [`Driver`].
//!
//! The prelude's requests come from [`PRELUDE_CLIENT`] and only read the
//! register, so the model's clients' history stays linearizable from the
//! register's initial value; a prelude that writes (to give a checkpoint
//! more than one part) is for models without clients.

use crate::driver::Driver;
use crate::register::{Register, RegisterOperation};
use vr::core::{
    ClientId, CommitNumber, Config, Message, OpNumber, ReplicaId, Request, RequestNumber, Status,
    Timer, View,
};

/// The client id of the prelude's requests: beyond every model client's.
pub const PRELUDE_CLIENT: ClientId = ClientId(100);

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
    /// Primary 0 is gone after committing ops 1-3 with replica 2 alone;
    /// replica 1 holds nothing. The view change to view 1 is under way, 2's
    /// DoViewChange in flight: with one committed entry per message, primary
    /// 1 must fill in ops 1-2 from replica 2 before it can start the view.
    /// Needs `down = 1` and `message_weight_max = 1`.
    FillNeeded,
    /// Replicas 0 and 1 executed ops 1-5 (writes) without replica 2, taking
    /// a checkpoint every 2 entries, so their logs start after op 2; then
    /// they changed to view 1 without it. Replica 2, empty and in view 0,
    /// has heard primary 1's Commit and asked it for the log after op 0:
    /// entries primary 1 has discarded, so it gets primary 1's checkpoint (at
    /// op 4, in two parts) and then op 5, and joins view 1. Needs
    /// `clients = 0` (the prelude's writes are no model client's) and
    /// `checkpoint_interval = 2`.
    CheckpointBehind,
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

    /// Runs the prelude on replicas configured by `configs`.
    ///
    /// Panics if a step of the script does not lead where it should: the
    /// prelude is fixed, so that is a change of the core's behaviour.
    pub fn build(self, configs: &[Config]) -> Driver<Register> {
        let mut d = Driver::new(configs);
        match self {
            Prelude::OldPrimaryCommitted => {
                d.request(0, read(1));
                d.request(0, read(2));
                d.deliver_all();
                expect(&d, 0, Status::Normal, View(0), CommitNumber(2));
                expect(&d, 1, Status::Normal, View(0), CommitNumber(0));
                expect(&d, 2, Status::Normal, View(0), CommitNumber(0));
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
                    expect(&d, id, Status::Normal, View(2), CommitNumber(2));
                }
            }
            Prelude::RecoveredOnce => {
                d.request(0, read(1));
                d.deliver_all();
                d.fire(0, Timer::Heartbeat);
                d.deliver_all();
                d.crash(2);
                // A nonce the model's own restarts (1, 2, ...) never use.
                d.restart(configs[2], 1_000);
                d.deliver_all();
                for id in 0..3 {
                    expect(&d, id, Status::Normal, View(0), CommitNumber(1));
                }
            }
            Prelude::FillNeeded => {
                let apart = |to: ReplicaId, e: &vr::core::Envelope<Register>| {
                    to != ReplicaId(1) && e.from != ReplicaId(1)
                };
                for request in 1..=3 {
                    d.request(0, read(request));
                    d.deliver_while(apart);
                }
                d.fire(0, Timer::Heartbeat);
                d.deliver_while(apart);
                expect(&d, 2, Status::Normal, View(0), CommitNumber(3));
                expect(&d, 1, Status::Normal, View(0), CommitNumber(0));
                d.crash(0);
                d.fire(2, Timer::PrimaryTimeout);
                d.deliver_until(|_, e| matches!(e.msg, Message::DoViewChange(_)));
                expect(&d, 1, Status::ViewChange, View(1), CommitNumber(0));
                expect(&d, 2, Status::ViewChange, View(1), CommitNumber(3));
            }
            Prelude::CheckpointBehind => {
                let apart = |to: ReplicaId, e: &vr::core::Envelope<Register>| {
                    to != ReplicaId(2) && e.from != ReplicaId(2)
                };
                for request in 1..=5 {
                    d.request(0, write(request));
                    d.deliver_while(apart);
                }
                d.fire(0, Timer::Heartbeat);
                d.deliver_while(apart);
                d.fire(1, Timer::PrimaryTimeout);
                d.deliver_while(apart);
                expect(&d, 0, Status::Normal, View(1), CommitNumber(5));
                expect(&d, 1, Status::Normal, View(1), CommitNumber(5));
                expect(&d, 2, Status::Normal, View(0), CommitNumber(0));
                let primary = d.replica(1).expect("up");
                assert!(
                    primary.log().base() > OpNumber(0)
                        && primary.checkpoint().map(|c| c.commit) == Some(CommitNumber(4))
                        && primary.checkpoint().is_some_and(|c| c.parts().len() > 1),
                    "prelude: primary 1 has not compacted its log behind a checkpoint of several parts:\n{}",
                    d.describe()
                );
                d.fire(1, Timer::Heartbeat);
                d.deliver_until(|to, e| {
                    to == ReplicaId(1) && matches!(e.msg, Message::GetState(_))
                });
                expect(&d, 2, Status::ViewChange, View(1), CommitNumber(0));
            }
        }
        d
    }
}

/// A write by the prelude's client: only for preludes of models without
/// clients, whose history it would otherwise enter.
fn write(request: u64) -> Request<Register> {
    Request {
        operation: RegisterOperation::Write(request as u8),
        client: PRELUDE_CLIENT,
        request: RequestNumber(request),
    }
}

fn read(request: u64) -> Request<Register> {
    Request {
        operation: RegisterOperation::Read,
        client: PRELUDE_CLIENT,
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
