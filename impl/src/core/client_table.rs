//! The client table (paper 4, 4.1): per client session, its latest executed
//! request and that request's output, so that each request executes at most
//! once and a repeated request gets the stored reply.
//!
//! A row exists only for a session the cluster granted: executing a Register
//! entry creates it, and executing a Register beyond `client_table_max` rows
//! prunes the row whose latest executed entry is oldest (spec/protocol.md,
//! "Client sessions"). The table holds only what is executed, so every
//! replica's table is the same function of its committed log prefix, pruning
//! included. Whether a request is still in progress (in the log, not yet
//! executed) is read from the log itself.

use super::checkpoint::Checkpoint;
use super::log::{Entry, Log};
use super::message::{Command, Outcome};
use super::state_machine::StateMachine;
use super::types::{ClientId, CommitNumber, OpNumber, RequestNumber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One client's row.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ClientRecord<S: StateMachine> {
    /// The client's latest executed request (0 until its first).
    pub request: RequestNumber,
    /// What executing it returned (for request 0, the Register's grant).
    pub output: Outcome<S>,
    /// The op-number of the latest entry executed for this session (its
    /// Register's at first): the order in which rows are pruned.
    pub last_op: OpNumber,
}

/// The client table.
///
/// Invariant: `by_age` holds exactly one `(last_op, client)` for each row.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientTable<S: StateMachine> {
    records: BTreeMap<ClientId, ClientRecord<S>>,
    /// The rows by their `last_op`, oldest first: what pruning takes.
    by_age: BTreeMap<OpNumber, ClientId>,
}

impl<S: StateMachine> Default for ClientTable<S> {
    fn default() -> Self {
        ClientTable {
            records: BTreeMap::new(),
            by_age: BTreeMap::new(),
        }
    }
}

/// What the primary does with a request, judged by the client table and the
/// uncommitted log (paper 4.1 step 2; spec/protocol.md, "Client sessions").
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission<'a, S: StateMachine> {
    /// A new request: prepare it.
    New,
    /// The client's latest executed request again: resend its reply.
    Executed(&'a Outcome<S>),
    /// The client has no session: answer so, execute nothing.
    Expired,
    /// Older than the client's latest, already in the log awaiting commit,
    /// or a session whose Register awaits commit: drop it.
    Drop(&'static str),
}

impl<S: StateMachine> ClientTable<S> {
    /// The client's row, if it has a session.
    pub fn get(&self, client: ClientId) -> Option<&ClientRecord<S>> {
        self.records.get(&client)
    }

    /// The number of clients with a row.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no client has a row.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every row, in client order.
    pub fn rows(&self) -> impl Iterator<Item = (ClientId, &ClientRecord<S>)> {
        self.records.iter().map(|(c, r)| (*c, r))
    }

    /// Sets a client's row, as a checkpoint being restored holds it.
    pub(super) fn set_row(&mut self, client: ClientId, record: ClientRecord<S>) {
        if let Some(old) = self.records.get(&client) {
            self.by_age.remove(&old.last_op);
        }
        self.by_age.insert(record.last_op, client);
        self.records.insert(client, record);
    }

    /// Decides what the primary does with request `request` of `client`.
    pub(super) fn admit<'a>(
        &'a self,
        client: ClientId,
        request: RequestNumber,
        command: &Command<S>,
        log: &Log<S>,
        commit: CommitNumber,
    ) -> Admission<'a, S> {
        let in_progress = || {
            log.entries_after(commit.as_op())
                .any(|(_, entry)| entry.client == client && entry.request >= request)
        };
        if let Command::Register = command {
            if client.register_op().is_some() {
                return Admission::Drop("a Register must come from a provisional id");
            }
            if in_progress() {
                return Admission::Drop("already in the log, awaiting commit");
            }
            return Admission::New;
        }
        let Some(record) = self.records.get(&client) else {
            // A session whose Register the previous primary committed may
            // not be executed here yet (a new primary's commit-number can lag
            // the old one's): the client waits and retries.
            let registering = client.register_op().is_some_and(|op| {
                op > commit.as_op()
                    && log.get(op).is_some_and(|entry| {
                        entry.operation == Command::Register
                            && entry.client == ClientId::provisional(client.secret())
                    })
            });
            if registering {
                return Admission::Drop("the session's Register awaits commit");
            }
            return Admission::Expired;
        };
        if request < record.request {
            return Admission::Drop("older than the client's latest executed request");
        }
        if request == record.request {
            return Admission::Executed(&record.output);
        }
        if in_progress() {
            return Admission::Drop("already in the log, awaiting commit");
        }
        Admission::New
    }

    /// Executes the committed entry at op-number `op`: a Register opens a
    /// session (pruning the oldest row beyond `max`); an operation is applied
    /// to `app` and its output recorded, unless its client has no row (pruned
    /// since the primary admitted it), when nothing is applied. An entry
    /// whose request the client table shows executed is not applied again
    /// (`Err` with the stored outcome): the primary never prepares such an
    /// entry, so this only guards the application against a broken log.
    pub(super) fn execute(
        &mut self,
        app: &mut S,
        op: OpNumber,
        entry: &Entry<S>,
        max: u64,
    ) -> Result<Outcome<S>, Outcome<S>> {
        let operation = match &entry.operation {
            Command::Register => {
                let client = ClientId::granted(op, entry.client.secret());
                let output = Outcome::Registered(client);
                self.set_row(
                    client,
                    ClientRecord {
                        request: RequestNumber(0),
                        output: output.clone(),
                        last_op: op,
                    },
                );
                self.prune(max);
                return Ok(output);
            }
            Command::Apply(operation) => operation,
        };
        let Some(record) = self.records.get(&entry.client) else {
            return Ok(Outcome::SessionExpired);
        };
        if record.request >= entry.request {
            return Err(record.output.clone());
        }
        let output = Outcome::Output(app.apply(operation));
        self.set_row(
            entry.client,
            ClientRecord {
                request: entry.request,
                output: output.clone(),
                last_op: op,
            },
        );
        Ok(output)
    }

    /// Drops the rows whose latest executed entry is oldest until at most
    /// `max` are left.
    fn prune(&mut self, max: u64) {
        while self.records.len() as u64 > max {
            let Some((_, client)) = self.by_age.pop_first() else {
                break;
            };
            self.records.remove(&client);
        }
    }

    /// INV-EXECUTED-ONCE, for one replica: replaying the committed entries
    /// (after the checkpoint, from its table) by the rules of
    /// [`execute`](Self::execute) gives this table, and each session's
    /// executed entries have increasing request-numbers.
    pub(super) fn check(
        &self,
        log: &Log<S>,
        commit: CommitNumber,
        checkpoint: Option<&Checkpoint<S>>,
        max: u64,
    ) -> Result<(), String> {
        let (start, from) = match checkpoint {
            Some(c) => (c.client_table.clone(), c.commit),
            None => (ClientTable::default(), CommitNumber(0)),
        };
        if log.base() > from.as_op() || from > commit {
            return Err(format!(
                "log base {:?}, checkpoint {from:?}, commit {commit:?} out of order",
                log.base()
            ));
        }
        if self.by_age.len() != self.records.len()
            || self
                .by_age
                .iter()
                .any(|(op, c)| self.records.get(c).map(|r| r.last_op) != Some(*op))
        {
            return Err("the rows' age index does not match the rows".into());
        }
        // The replay keeps rows without outputs: only the numbers matter.
        let mut rows: BTreeMap<ClientId, (RequestNumber, OpNumber)> = start
            .records
            .iter()
            .map(|(c, r)| (*c, (r.request, r.last_op)))
            .collect();
        let mut by_age: BTreeMap<OpNumber, ClientId> = start.by_age.clone();
        let executed = log
            .entries_after(from.as_op())
            .take_while(|(op, _)| *op <= commit.as_op());
        for (op, entry) in executed {
            match entry.operation {
                Command::Register => {
                    let client = ClientId::granted(op, entry.client.secret());
                    rows.insert(client, (RequestNumber(0), op));
                    by_age.insert(op, client);
                    while rows.len() as u64 > max {
                        let Some((_, oldest)) = by_age.pop_first() else {
                            break;
                        };
                        rows.remove(&oldest);
                    }
                }
                Command::Apply(_) => {
                    let Some(row) = rows.get_mut(&entry.client) else {
                        continue;
                    };
                    if row.0 >= entry.request {
                        return Err(format!(
                            "{:?} {:?} committed after {:?}",
                            entry.client, entry.request, row.0
                        ));
                    }
                    by_age.remove(&row.1);
                    *row = (entry.request, op);
                    by_age.insert(op, entry.client);
                }
            }
        }
        let held: BTreeMap<ClientId, (RequestNumber, OpNumber)> = self
            .records
            .iter()
            .map(|(c, r)| (*c, (r.request, r.last_op)))
            .collect();
        if held != rows {
            return Err(format!(
                "client table {held:?} is not what the committed log makes of it: {rows:?}"
            ));
        }
        Ok(())
    }
}

impl<S: StateMachine> fmt::Debug for ClientTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.records
                    .iter()
                    .map(|(c, r)| (c, (r.request, &r.output))),
            )
            .finish()
    }
}
