//! The paper's messages, one record each, and the envelope they travel in.
//!
//! The variant of [`Message`] is the message type: a receiver dispatches on it
//! without looking inside. The sender's id is on the [`Envelope`], so no record
//! repeats it (the paper writes it as the last field, `i`).

use super::checkpoint::CheckpointPart;
use super::log::{Entry, LogSuffix};
use super::state_machine::StateMachine;
use super::types::{
    ClientId, CommitNumber, MessageId, NUMBER_MAX, Nonce, OpNumber, ReplicaId, RequestNumber, View,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica-to-replica message with the delivery layer's header.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Envelope<S: StateMachine> {
    /// The sending replica; an Ack goes back to it.
    pub from: ReplicaId,
    /// Unique among the sender's messages, and the same on every resend. For
    /// an [`Ack`], the id of the message it confirms.
    pub id: MessageId,
    /// The message.
    pub msg: Message<S>,
}

impl<S: StateMachine> fmt::Debug for Envelope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}#{:?} {:?}", self.from, self.id, self.msg)
    }
}

/// Every message of the protocol.
///
/// Request and Reply pass between clients and replicas, outside any envelope:
/// clients are not replicas and the delivery layer does not serve them (a
/// client retries on its own timer). An envelope that carries either is
/// dropped by its receiver. The rest pass between replicas in an [`Envelope`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Message<S: StateMachine> {
    Request(Request<S>),
    Prepare(Prepare<S>),
    PrepareOk(PrepareOk),
    Commit(Commit),
    Reply(Reply<S>),
    StartViewChange(StartViewChange),
    DoViewChange(DoViewChange<S>),
    StartView(StartView<S>),
    Recovery(Recovery),
    RecoveryResponse(RecoveryResponse<S>),
    GetState(GetState),
    NewState(NewState<S>),
    Ack(Ack),
    GetCheckpoint(GetCheckpoint),
    NewCheckpoint(NewCheckpoint<S>),
}

impl<S: StateMachine> Message<S> {
    /// The message type's name, as the paper writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Request(_) => "Request",
            Message::Prepare(_) => "Prepare",
            Message::PrepareOk(_) => "PrepareOk",
            Message::Commit(_) => "Commit",
            Message::Reply(_) => "Reply",
            Message::StartViewChange(_) => "StartViewChange",
            Message::DoViewChange(_) => "DoViewChange",
            Message::StartView(_) => "StartView",
            Message::Recovery(_) => "Recovery",
            Message::RecoveryResponse(_) => "RecoveryResponse",
            Message::GetState(_) => "GetState",
            Message::NewState(_) => "NewState",
            Message::Ack(_) => "Ack",
            Message::GetCheckpoint(_) => "GetCheckpoint",
            Message::NewCheckpoint(_) => "NewCheckpoint",
        }
    }

    /// The view the message belongs to, for those that have one. The delivery
    /// layer stops resending a message once its sender has left its view.
    pub fn view(&self) -> Option<View> {
        match self {
            Message::Prepare(m) => Some(m.view),
            Message::PrepareOk(m) => Some(m.view),
            Message::Commit(m) => Some(m.view),
            Message::Reply(m) => Some(m.view),
            Message::StartViewChange(m) => Some(m.view),
            Message::DoViewChange(m) => Some(m.view),
            Message::StartView(m) => Some(m.view),
            Message::RecoveryResponse(m) => Some(m.view),
            Message::GetState(m) => Some(m.view),
            Message::NewState(m) => Some(m.view),
            Message::GetCheckpoint(m) => Some(m.view),
            Message::NewCheckpoint(m) => Some(m.view),
            Message::Request(_) | Message::Recovery(_) | Message::Ack(_) => None,
        }
    }
}

impl<S: StateMachine> Message<S> {
    /// Whether every view-, op- and commit-number the message carries is at
    /// most [`NUMBER_MAX`]: a replica drops any other message as malformed
    /// before it changes state, so its arithmetic on them never overflows
    /// (spec/protocol.md, "Threat model").
    pub fn numbers_in_range(&self) -> bool {
        let suffix = |log: &LogSuffix<S>| [log.op.0, log.after.0];
        let numbers: Vec<u64> = match self {
            Message::Prepare(m) => vec![m.op.0, m.commit.0],
            Message::PrepareOk(m) => vec![m.op.0],
            Message::Commit(m) => vec![m.commit.0, m.op.0],
            Message::DoViewChange(m) => {
                let mut n = vec![m.last_normal_view.0, m.commit.0];
                n.extend(suffix(&m.log));
                n
            }
            Message::StartView(m) => {
                let mut n = vec![m.commit.0];
                n.extend(suffix(&m.log));
                n
            }
            Message::RecoveryResponse(m) => match &m.primary {
                Some(p) => {
                    let mut n = vec![p.commit.0];
                    n.extend(suffix(&p.log));
                    n
                }
                None => vec![],
            },
            Message::GetState(m) => vec![m.op.0],
            Message::NewState(m) => vec![m.after.0, m.op.0, m.commit.0],
            Message::GetCheckpoint(m) => vec![m.commit.0],
            Message::NewCheckpoint(m) => vec![m.part.commit.0],
            Message::Request(_)
            | Message::Reply(_)
            | Message::StartViewChange(_)
            | Message::Recovery(_)
            | Message::Ack(_) => vec![],
        };
        self.view().is_none_or(|v| v.0 <= NUMBER_MAX) && numbers.iter().all(|n| *n <= NUMBER_MAX)
    }
}

impl<S: StateMachine> fmt::Debug for Message<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Request(m) => m.fmt(f),
            Message::Prepare(m) => m.fmt(f),
            Message::PrepareOk(m) => m.fmt(f),
            Message::Commit(m) => m.fmt(f),
            Message::Reply(m) => m.fmt(f),
            Message::StartViewChange(m) => m.fmt(f),
            Message::DoViewChange(m) => m.fmt(f),
            Message::StartView(m) => m.fmt(f),
            Message::Recovery(m) => m.fmt(f),
            Message::RecoveryResponse(m) => m.fmt(f),
            Message::GetState(m) => m.fmt(f),
            Message::NewState(m) => m.fmt(f),
            Message::Ack(m) => m.fmt(f),
            Message::GetCheckpoint(m) => write!(
                f,
                "GetCheckpoint({:?}, {:?}, part {})",
                m.view, m.commit, m.part
            ),
            Message::NewCheckpoint(m) => write!(f, "NewCheckpoint({:?}, {:?})", m.view, m.part),
        }
    }
}

/// What a client asks for: a session, or an operation of the application
/// (spec/protocol.md, "Client sessions").
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Command<S: StateMachine> {
    /// Open a session: once the entry is executed, every replica has a
    /// client-table row for the id [`ClientId::granted`] makes of the
    /// entry's op-number and the requesting (provisional) id's secret.
    Register,
    /// Apply this operation of the application.
    Apply(S::Operation),
}

impl<S: StateMachine> Command<S> {
    /// Its share of a message's budget (`Config::message_weight_max`).
    pub fn weight(&self) -> u32 {
        match self {
            Command::Register => S::register_weight(),
            Command::Apply(operation) => S::weight(operation),
        }
    }
}

impl<S: StateMachine> fmt::Debug for Command<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Register => write!(f, "register"),
            Command::Apply(operation) => operation.fmt(f),
        }
    }
}

/// What a replica answers a request with.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Outcome<S: StateMachine> {
    /// What applying the request's operation returned.
    Output(S::Output),
    /// The Register was executed: the client's session id.
    Registered(ClientId),
    /// The request's client has no session: its id was never granted, or
    /// its row was pruned (spec/protocol.md, "Client sessions"). The request
    /// was not executed; the client registers again.
    SessionExpired,
}

impl<S: StateMachine> Outcome<S> {
    /// Its share of a checkpoint part's budget, as a client-table row holds
    /// it.
    pub fn weight(&self) -> u32 {
        match self {
            Outcome::Output(output) => S::output_weight(output),
            Outcome::Registered(_) | Outcome::SessionExpired => 1,
        }
    }
}

impl<S: StateMachine> fmt::Debug for Outcome<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Output(output) => output.fmt(f),
            Outcome::Registered(client) => write!(f, "registered {client:?}"),
            Outcome::SessionExpired => write!(f, "session expired"),
        }
    }
}

/// Request(op, c, s): client `c` asks for `op` as its request `s` (paper 4.1
/// step 1). Sent to the primary it knows, and to every replica on a retry.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Request<S: StateMachine> {
    /// What to execute.
    pub operation: Command<S>,
    /// The client asking.
    pub client: ClientId,
    /// The client's number for this request; one greater than its last.
    pub request: RequestNumber,
}

/// Prepare(v, m, n, k): the primary of view `v` asks the backups to place `m`
/// at op-number `n`; `k` is its commit-number (paper 4.1 step 3). With
/// batching (paper 6.2) `m` is a batch: the entries end at op-number `n`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Prepare<S: StateMachine> {
    /// The primary's view-number.
    pub view: View,
    /// The op-number the last entry takes.
    pub op: OpNumber,
    /// The clients' requests, as they go into the log, at op-numbers
    /// `op - len + 1` to `op`; never empty.
    pub entries: Vec<Entry<S>>,
    /// The primary's commit-number.
    pub commit: CommitNumber,
}

/// PrepareOk(v, n, i): the sender, a backup in view `v`, has every entry up to
/// and including op-number `n` of this view's log (paper 4.1 step 4).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PrepareOk {
    /// The backup's view-number.
    pub view: View,
    /// The backup's op-number: the highest entry it holds.
    pub op: OpNumber,
}

/// Commit(v, k, n): the primary of view `v` has committed up to `k` and holds
/// entries up to `n`. Sent when the primary has sent no Prepare for a while,
/// so it doubles as a heartbeat (paper 4.1 step 6). The paper's Commit has no
/// `n`; with it a backup that missed the last Prepares asks for them even
/// when no new Prepare comes to show it a gap.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Commit {
    /// The primary's view-number.
    pub view: View,
    /// The primary's commit-number.
    pub commit: CommitNumber,
    /// The primary's op-number.
    pub op: OpNumber,
}

/// Reply(v, s, x): the result `x` of client request `s`, executed by the
/// primary of view `v` (paper 4.1 step 5).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Reply<S: StateMachine> {
    /// The replying primary's view-number, so the client learns the primary.
    pub view: View,
    /// The client the reply is for.
    pub client: ClientId,
    /// The request it answers.
    pub request: RequestNumber,
    /// What executing the request returned, or why it was not executed.
    pub output: Outcome<S>,
}

/// StartViewChange(v, i): the sender has moved to view `v` and stopped normal
/// operation in its old view (paper 4.2 step 1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StartViewChange {
    /// The view the sender is changing to.
    pub view: View,
}

/// DoViewChange(v, l, v', n, k, i): sent to primary(v) by a replica that has
/// StartViewChange for `v` from f others (paper 4.2 step 2). The paper's `n` is
/// the suffix's op-number. Of the log `l` it carries the suffix its
/// commit-number and the message bound allow (paper 5.3's smaller
/// DoViewChange): every uncommitted entry, and the latest committed ones.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DoViewChange<S: StateMachine> {
    /// The view being changed to.
    pub view: View,
    /// The sender's log: its op-number and its entries after a point no later
    /// than `commit`.
    pub log: LogSuffix<S>,
    /// v': the latest view in which the sender's status was Normal.
    pub last_normal_view: View,
    /// The sender's commit-number.
    pub commit: CommitNumber,
}

/// StartView(v, l, n, k): primary(v) has formed view `v` with this log and
/// commit-number (paper 4.2 step 3); `n` is the suffix's op-number. Like
/// DoViewChange it carries a suffix of the log: a backup whose commit-number
/// does not reach the suffix's start fetches the view's log by state transfer.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StartView<S: StateMachine> {
    /// The new view.
    pub view: View,
    /// The log the new primary chose: its op-number and its entries after a
    /// point no later than `commit`.
    pub log: LogSuffix<S>,
    /// The new primary's commit-number.
    pub commit: CommitNumber,
}

/// Recovery(i, x): the sender restarted, lost its state, and asks the others
/// for it; `x` is this recovery's nonce (paper 4.3 step 1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Recovery {
    /// Echoed in every answer.
    pub nonce: Nonce,
}

/// RecoveryResponse(v, x, l, n, k, j): a replica in Normal status answers a
/// Recovery; only the primary of `v` sends its log and numbers (paper 4.3
/// step 2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RecoveryResponse<S: StateMachine> {
    /// The sender's view-number.
    pub view: View,
    /// The nonce of the Recovery this answers.
    pub nonce: Nonce,
    /// The primary's log and commit-number; `None` from a backup.
    pub primary: Option<PrimaryState<S>>,
}

/// What the primary adds to its RecoveryResponse: the paper's `l`, `n`, `k`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PrimaryState<S: StateMachine> {
    /// The primary's log: its op-number and its entries after a point no
    /// later than `commit`; the recovering replica fetches any before it.
    pub log: LogSuffix<S>,
    /// The primary's commit-number.
    pub commit: CommitNumber,
}

/// GetState(v, n, i): the sender, in view `v`, holds entries up to `n` and asks
/// for those after it (paper 5.2).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GetState {
    /// The asker's view-number. A replica in Normal status in it answers
    /// from its log; any other replica answers primary(v) alone, and only
    /// with entries it has committed (a new primary fetching the committed
    /// entries its chosen DoViewChange left out).
    pub view: View,
    /// The asker's op-number.
    pub op: OpNumber,
}

/// NewState(v, l, n, k): the entries after `after` (at most the configured
/// bound), and the sender's op-number `op` and commit-number `commit` (paper
/// 5.2). The asker asks again while `op` is beyond what it holds.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct NewState<S: StateMachine> {
    /// The sender's view-number.
    pub view: View,
    /// The op-number the entries follow: the GetState's `op`.
    pub after: OpNumber,
    /// The entries at op-numbers `after + 1`, `after + 2`, ...
    pub entries: Vec<Entry<S>>,
    /// The sender's op-number.
    pub op: OpNumber,
    /// The sender's commit-number.
    pub commit: CommitNumber,
}

/// GetCheckpoint(v, k, p): the sender, fetching the checkpoint at `commit`
/// that this replica sent the first part of, asks for part `part`
/// (spec/protocol.md, "Checkpoints").
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GetCheckpoint {
    /// The asker's view-number, echoed in the answer.
    pub view: View,
    /// The checkpoint's op-number.
    pub commit: CommitNumber,
    /// The part wanted.
    pub part: u32,
}

/// NewCheckpoint(v, part): a part of the sender's checkpoint, sent in place
/// of entries it has discarded.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct NewCheckpoint<S: StateMachine> {
    /// The asker's view-number.
    pub view: View,
    /// The part.
    pub part: CheckpointPart<S>,
}

/// Ack: the delivery layer's confirmation that the envelope with this
/// envelope's id arrived. Never itself confirmed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ack;

macro_rules! debug_as {
    ($ty:ident $(<$s:ident>)?, |$m:ident, $f:ident| $body:expr) => {
        impl$(<$s: StateMachine>)? fmt::Debug for $ty$(<$s>)? {
            fn fmt(&self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $m = self;
                $body
            }
        }
    };
}

debug_as!(Request<S>, |m, f| write!(
    f,
    "Request({:?}, {:?}, {:?})",
    m.operation, m.client, m.request
));
debug_as!(Prepare<S>, |m, f| write!(
    f,
    "Prepare({:?}, {:?}, {:?}, {:?})",
    m.view, m.op, m.entries, m.commit
));
debug_as!(PrepareOk, |m, f| write!(
    f,
    "PrepareOk({:?}, {:?})",
    m.view, m.op
));
debug_as!(Commit, |m, f| write!(
    f,
    "Commit({:?}, {:?}, {:?})",
    m.view, m.commit, m.op
));
debug_as!(Reply<S>, |m, f| write!(
    f,
    "Reply({:?}, {:?}, {:?}, {:?})",
    m.view, m.client, m.request, m.output
));
debug_as!(StartViewChange, |m, f| write!(
    f,
    "StartViewChange({:?})",
    m.view
));
debug_as!(DoViewChange<S>, |m, f| write!(
    f,
    "DoViewChange({:?}, {:?}, last_normal={:?}, {:?})",
    m.view, m.log, m.last_normal_view, m.commit
));
debug_as!(StartView<S>, |m, f| write!(
    f,
    "StartView({:?}, {:?}, {:?})",
    m.view, m.log, m.commit
));
debug_as!(Recovery, |m, f| write!(f, "Recovery({:?})", m.nonce));
debug_as!(RecoveryResponse<S>, |m, f| match &m.primary {
    Some(p) => write!(
        f,
        "RecoveryResponse({:?}, {:?}, {:?}, {:?})",
        m.view, m.nonce, p.log, p.commit
    ),
    None => write!(f, "RecoveryResponse({:?}, {:?})", m.view, m.nonce),
});
debug_as!(PrimaryState<S>, |m, f| write!(
    f,
    "{:?} {:?}",
    m.log, m.commit
));
debug_as!(GetState, |m, f| write!(
    f,
    "GetState({:?}, {:?})",
    m.view, m.op
));
debug_as!(NewState<S>, |m, f| write!(
    f,
    "NewState({:?}, after={:?}, {:?}, {:?}, {:?})",
    m.view, m.after, m.entries, m.op, m.commit
));
debug_as!(Ack, |_m, f| write!(f, "Ack"));
