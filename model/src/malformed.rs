//! Malformed messages: what a replica with a bug, still holding the cluster
//! key, might send (spec/protocol.md, "Threat model"). The key authenticates
//! the sender, not the content, so every handler guards against content no
//! correct replica sends; a correct core never produces such a message, so
//! without these the model never executes those guards.
//!
//! With [`ModelConfig::malformed`](crate::model::ModelConfig::malformed) the
//! model starts with every message below in flight, each sent by the replica
//! its envelope names (stateright's source is that replica). Each is refused
//! by the guard named beside it in every state the model reaches, so
//! delivering it changes nothing a correct replica's message would not: the
//! receiver hears from the sender (counting it connected) and acknowledges
//! the envelope, nothing else. Every invariant and progress property must
//! hold with them in flight.
//!
//! The messages name replicas 0-2 and views 0 and 1 (primary(0) = 0,
//! primary(1) = 1): a cluster of 3 with no replica down. All but the
//! RecoveryResponses go to replicas 0 and 1, which are Normal in view 0 at
//! the `malformed` scenario's start, so each meets its guard at the first
//! step; replica 2 is recovering there, and the RecoveryResponses are for
//! it. Numbers "beyond"
//! anything held are 1,000, more than any model run reaches. The
//! RecoveryResponses carry the nonce of replica 2's recovery in the
//! `Recovering` prelude ([`PRELUDE_RECOVERY_NONCE`]); to any other recovery
//! they are another recovery's answers.

use crate::prelude::PRELUDE_RECOVERY_NONCE;
use crate::register::{Register, RegisterOperation};
use vr::core::{
    ClientId, Command, Commit, CommitNumber, DoViewChange, Entry, Envelope, GetCheckpoint,
    LogSuffix, Message, MessageId, NUMBER_MAX, NewState, Nonce, OpNumber, Prepare, PrepareOk,
    PrimaryState, RecoveryResponse, ReplicaId, Request, RequestNumber, StartView, View,
};

/// An op-number no model run reaches.
const BEYOND: u64 = 1_000;

/// The nonce of replica 2's recovery in the `Recovering` prelude.
const PRELUDE_RECOVERY: Nonce = Nonce(PRELUDE_RECOVERY_NONCE);

/// A nonce no recovery in the model uses.
const NO_RECOVERY: Nonce = Nonce(999_999);

/// One malformed message, the replica it goes to, and the guard that
/// refuses it.
#[derive(Clone, Debug)]
pub struct Malformed {
    pub to: ReplicaId,
    pub envelope: Envelope<Register>,
    /// The guard's reason, as the receiver logs it at debug level on the
    /// line that begins `ignore` and the message's name (or `ignore
    /// envelope`, for the guards of the envelope itself).
    pub refused_by: &'static str,
    /// Whether the receiver acknowledges it: every envelope from another
    /// replica of the cluster with numbers in range is acknowledged,
    /// whatever its content (spec/protocol.md, "Delivery").
    pub acked: bool,
}

/// An entry as a Prepare or a log carries it (its content does not matter:
/// every message carrying it is refused before it is read).
fn entry() -> Entry<Register> {
    Entry {
        operation: Command::Apply(RegisterOperation::Write(99)),
        client: ClientId::granted(OpNumber(1), 99),
        request: RequestNumber(1),
    }
}

/// A log suffix with `after`, `op` and `entries` entries, well-formed or not.
fn suffix(after: u64, op: u64, entries: usize) -> LogSuffix<Register> {
    LogSuffix {
        op: OpNumber(op),
        after: OpNumber(after),
        entries: vec![entry(); entries],
    }
}

fn envelope(from: u8, to: u8, msg: Message<Register>, refused_by: &'static str) -> Malformed {
    let to = ReplicaId(to);
    Malformed {
        to,
        envelope: Envelope {
            from: ReplicaId(from),
            id: MessageId::of(to, &msg),
            msg,
        },
        refused_by,
        acked: true,
    }
}

/// Like [`envelope`], for an envelope refused before it is acknowledged.
fn unacknowledged(from: u8, to: u8, msg: Message<Register>, refused_by: &'static str) -> Malformed {
    Malformed {
        acked: false,
        ..envelope(from, to, msg, refused_by)
    }
}

/// The malformed replica messages, one per guard clause.
pub fn envelopes() -> Vec<Malformed> {
    let prepare = |op, entries| {
        Message::Prepare(Prepare {
            view: View(0),
            op: OpNumber(op),
            entries: vec![entry(); entries],
            commit: CommitNumber(0),
        })
    };
    let prepare_ok = |view, op| {
        Message::PrepareOk(PrepareOk {
            view: View(view),
            op: OpNumber(op),
        })
    };
    let do_view_change = |last_normal_view, log, commit| {
        Message::DoViewChange(DoViewChange {
            view: View(1),
            log,
            last_normal_view: View(last_normal_view),
            commit: CommitNumber(commit),
        })
    };
    let start_view = |log, commit| {
        Message::StartView(StartView {
            view: View(1),
            log,
            commit: CommitNumber(commit),
        })
    };
    let new_state = |after, entries, op, commit| {
        Message::NewState(NewState {
            view: View(0),
            after: OpNumber(after),
            entries: vec![entry(); entries],
            op: OpNumber(op),
            commit: CommitNumber(commit),
        })
    };
    let recovery_response = |nonce, primary: Option<(LogSuffix<Register>, u64)>| {
        Message::RecoveryResponse(RecoveryResponse {
            view: View(0),
            nonce,
            primary: primary.map(|(log, commit)| PrimaryState {
                log,
                commit: CommitNumber(commit),
            }),
        })
    };
    const PREPARE_MALFORMED: &str = "malformed: no entries, or more than its op-number";
    const NOT_PRIMARY_SENDER: &str = "sender is not the primary of the message's view";
    const DO_VIEW_CHANGE_MALFORMED: &str =
        "malformed: last-normal-view, log or commit-number out of range";
    const START_VIEW_MALFORMED: &str = "malformed: log or commit-number out of range";
    const NEW_STATE_MALFORMED: &str =
        "malformed: entries or commit-number beyond the sender's op-number";
    const RECOVERY_RESPONSE_MALFORMED: &str = "malformed primary state";
    vec![
        // replica.rs, on_envelope: from replica 3, which is not in the
        // cluster,
        unacknowledged(
            3,
            0,
            Message::Commit(Commit {
                view: View(0),
                commit: CommitNumber(0),
                op: OpNumber(0),
            }),
            "sender is not another replica of the cluster",
        ),
        // and a view-number above NUMBER_MAX.
        unacknowledged(
            0,
            1,
            Message::Commit(Commit {
                view: View(NUMBER_MAX + 1),
                commit: CommitNumber(0),
                op: OpNumber(0),
            }),
            "a view-, op- or commit-number above NUMBER_MAX",
        ),
        // replica.rs, on_envelope: a client's Request inside a replica
        // envelope.
        envelope(
            2,
            0,
            Message::Request(Request {
                operation: Command::Apply(RegisterOperation::Read),
                client: ClientId::granted(OpNumber(1), 99),
                request: RequestNumber(1),
            }),
            "client message inside a replica envelope",
        ),
        // checkpoint.rs, on_get_checkpoint: to a replica that holds no
        // checkpoint (the model checkpoints only with --checkpoint-interval).
        envelope(
            2,
            0,
            Message::GetCheckpoint(GetCheckpoint {
                view: View(0),
                commit: CommitNumber(BEYOND),
                part: 0,
            }),
            "no checkpoint",
        ),
        // normal.rs, on_prepare: a Prepare without entries.
        envelope(0, 1, prepare(1, 0), PREPARE_MALFORMED),
        // normal.rs, on_prepare: more entries than its op-number.
        envelope(0, 1, prepare(1, 2), PREPARE_MALFORMED),
        // normal.rs, ignore_from_primary: a Prepare, and a Commit, of view 0
        // from a replica that is not primary(0).
        envelope(2, 1, prepare(1, 1), NOT_PRIMARY_SENDER),
        envelope(
            2,
            1,
            Message::Commit(Commit {
                view: View(0),
                commit: CommitNumber(0),
                op: OpNumber(0),
            }),
            NOT_PRIMARY_SENDER,
        ),
        // normal.rs, ignore_prepare_ok: a PrepareOk of view 1 to replica 0,
        // which is never primary of view 1 (while in view 0: a newer view).
        envelope(
            2,
            0,
            prepare_ok(1, 0),
            "newer view: a backup is never ahead of its primary",
        ),
        // normal.rs, ignore_prepare_ok: a PrepareOk of view 0 to replica 1,
        // not primary(0).
        envelope(2, 1, prepare_ok(0, 0), "not the primary"),
        // normal.rs, ignore_prepare_ok: beyond the primary's op-number.
        envelope(
            1,
            0,
            prepare_ok(0, BEYOND),
            "beyond the primary's op-number",
        ),
        // view_change.rs, ignore_do_view_change: to replica 0, not primary(1).
        envelope(
            2,
            0,
            do_view_change(0, suffix(0, 0, 0), 0),
            "this replica is not the primary of that view",
        ),
        // view_change.rs, ignore_do_view_change, one clause each: a
        // last-normal-view not below the view,
        envelope(
            0,
            1,
            do_view_change(1, suffix(0, 0, 0), 0),
            DO_VIEW_CHANGE_MALFORMED,
        ),
        // a log whose entries do not fill `after` to `op`,
        envelope(
            2,
            1,
            do_view_change(0, suffix(0, 1, 0), 0),
            DO_VIEW_CHANGE_MALFORMED,
        ),
        // a log starting after the commit-number,
        envelope(
            0,
            1,
            do_view_change(0, suffix(1, 2, 1), 0),
            DO_VIEW_CHANGE_MALFORMED,
        ),
        // a commit-number beyond the log.
        envelope(
            2,
            1,
            do_view_change(0, suffix(0, 0, 0), 1),
            DO_VIEW_CHANGE_MALFORMED,
        ),
        // view_change.rs, ignore_start_view: from replica 2, not primary(1).
        envelope(
            2,
            0,
            start_view(suffix(0, 0, 0), 0),
            "sender is not the primary of that view",
        ),
        // view_change.rs, ignore_start_view, one clause each: a log whose
        // entries do not fill it,
        envelope(1, 0, start_view(suffix(0, 1, 0), 0), START_VIEW_MALFORMED),
        // a log starting after the commit-number,
        envelope(1, 0, start_view(suffix(1, 2, 1), 0), START_VIEW_MALFORMED),
        // a commit-number beyond the log.
        envelope(1, 0, start_view(suffix(0, 0, 0), 1), START_VIEW_MALFORMED),
        // state_transfer.rs, ignore_new_state: from replica 2, not the
        // primary of view 0.
        envelope(
            2,
            1,
            new_state(0, 1, 1, 0),
            "state is fetched from the primary only",
        ),
        // state_transfer.rs, ignore_new_state, one clause each: entries
        // beyond the sender's op-number,
        envelope(0, 1, new_state(0, 2, 1, 0), NEW_STATE_MALFORMED),
        // a commit-number beyond it,
        envelope(0, 1, new_state(0, 0, 0, 1), NEW_STATE_MALFORMED),
        // no entries though the op-number is beyond `after`.
        envelope(0, 1, new_state(0, 0, 1, 0), NEW_STATE_MALFORMED),
        // state_transfer.rs, ignore_new_state: well-formed, but after
        // entries no replica holds (a gap).
        envelope(
            0,
            1,
            new_state(BEYOND, 1, BEYOND + 1, 0),
            "leaves a gap after what this replica holds",
        ),
        // recovery.rs, on_recovery_response: another recovery's nonce.
        envelope(
            1,
            2,
            recovery_response(NO_RECOVERY, None),
            "another recovery's nonce",
        ),
        // recovery.rs, on_recovery_response, one clause each: a primary's
        // state from replica 1, not primary(0),
        envelope(
            1,
            2,
            recovery_response(PRELUDE_RECOVERY, Some((suffix(0, 0, 0), 0))),
            RECOVERY_RESPONSE_MALFORMED,
        ),
        // a log whose entries do not fill it,
        envelope(
            0,
            2,
            recovery_response(PRELUDE_RECOVERY, Some((suffix(0, 1, 0), 0))),
            RECOVERY_RESPONSE_MALFORMED,
        ),
        // a log starting after the commit-number,
        envelope(
            0,
            2,
            recovery_response(PRELUDE_RECOVERY, Some((suffix(1, 2, 1), 0))),
            RECOVERY_RESPONSE_MALFORMED,
        ),
        // a commit-number beyond the log.
        envelope(
            0,
            2,
            recovery_response(PRELUDE_RECOVERY, Some((suffix(0, 0, 0), 1))),
            RECOVERY_RESPONSE_MALFORMED,
        ),
    ]
}

/// The replica that sends the malformed requests (a request carries no
/// sender; stateright's source is this replica's actor).
pub const REQUEST_SENDER: usize = 2;

/// The malformed client requests, each with the replica it goes to and the
/// guard that refuses it: client_table.rs, admit: a Register from a granted
/// id (a session's, not a provisional one), to primary(0). Refused without
/// a reply or a change, so the step is a no-op that the checker prunes,
/// though the guard runs.
pub fn requests() -> Vec<(ReplicaId, Request<Register>, &'static str)> {
    let register = Request {
        operation: Command::Register,
        client: ClientId::granted(OpNumber(1), 99),
        request: RequestNumber(1),
    };
    vec![(
        ReplicaId(0),
        register,
        "a Register must come from a provisional id",
    )]
}
