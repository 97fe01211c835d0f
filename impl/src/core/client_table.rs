//! The client table (paper 4, 4.1): per client, its latest executed request and
//! that request's output, so that each request executes at most once and a
//! repeated request gets the stored reply.
//!
//! The table holds only what is executed, so every replica's table is the same
//! function of its committed log prefix. Whether a request is still in
//! progress (in the log, not yet executed) is read from the log itself.

use super::checkpoint::Checkpoint;
use super::log::{Entry, Log};
use super::state_machine::StateMachine;
use super::types::{ClientId, CommitNumber, RequestNumber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One client's row.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ClientRecord<S: StateMachine> {
    /// The client's latest executed request.
    pub request: RequestNumber,
    /// What executing it returned.
    pub output: S::Output,
}

/// The client table.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientTable<S: StateMachine> {
    records: BTreeMap<ClientId, ClientRecord<S>>,
}

impl<S: StateMachine> Default for ClientTable<S> {
    fn default() -> Self {
        ClientTable {
            records: BTreeMap::new(),
        }
    }
}

/// What the primary does with a request, judged by the client table and the
/// uncommitted log (paper 4.1 step 2).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission<'a, S: StateMachine> {
    /// A new request: prepare it.
    New,
    /// The client's latest executed request again: resend its reply.
    Executed(&'a S::Output),
    /// Older than the client's latest, or already in the log awaiting commit:
    /// drop it.
    Drop(&'static str),
}

impl<S: StateMachine> ClientTable<S> {
    /// The client's row, if it has had a request executed.
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
        self.records.insert(client, record);
    }

    /// Decides what the primary does with request `request` of `client`.
    pub(super) fn admit<'a>(
        &'a self,
        client: ClientId,
        request: RequestNumber,
        log: &Log<S>,
        commit: CommitNumber,
    ) -> Admission<'a, S> {
        if let Some(record) = self.records.get(&client) {
            if request < record.request {
                return Admission::Drop("older than the client's latest executed request");
            }
            if request == record.request {
                return Admission::Executed(&record.output);
            }
        }
        let in_progress = log
            .entries_after(commit.as_op())
            .any(|(_, entry)| entry.client == client && entry.request >= request);
        if in_progress {
            return Admission::Drop("already in the log, awaiting commit");
        }
        Admission::New
    }

    /// Applies a committed entry to `app` and records its output. An entry
    /// whose request the client table shows executed is not applied again
    /// (`Err` with the stored output): the primary never prepares such an
    /// entry, so this only guards the application against a broken log.
    pub(super) fn execute(
        &mut self,
        app: &mut S,
        entry: &Entry<S>,
    ) -> Result<S::Output, S::Output> {
        if let Some(record) = self.records.get(&entry.client)
            && record.request >= entry.request
        {
            return Err(record.output.clone());
        }
        let output = app.apply(&entry.operation);
        self.records.insert(
            entry.client,
            ClientRecord {
                request: entry.request,
                output: output.clone(),
            },
        );
        Ok(output)
    }

    /// INV-EXECUTED-ONCE, for one replica: each client's committed entries
    /// have increasing request-numbers, and the table holds the latest of them.
    /// With a checkpoint, its table stands for the entries it includes.
    pub(super) fn check(
        &self,
        log: &Log<S>,
        commit: CommitNumber,
        checkpoint: Option<&Checkpoint<S>>,
    ) -> Result<(), String> {
        let (mut latest, from): (BTreeMap<ClientId, RequestNumber>, CommitNumber) = match checkpoint
        {
            Some(c) => (
                c.client_table
                    .rows()
                    .map(|(id, r)| (id, r.request))
                    .collect(),
                c.commit,
            ),
            None => (BTreeMap::new(), CommitNumber(0)),
        };
        if log.base() > from.as_op() || from > commit {
            return Err(format!(
                "log base {:?}, checkpoint {from:?}, commit {commit:?} out of order",
                log.base()
            ));
        }
        let executed = log
            .entries_after(from.as_op())
            .take_while(|(op, _)| *op <= commit.as_op())
            .map(|(_, entry)| entry);
        for entry in executed {
            if let Some(previous) = latest.insert(entry.client, entry.request)
                && previous >= entry.request
            {
                return Err(format!(
                    "{:?} {:?} committed after {previous:?}",
                    entry.client, entry.request
                ));
            }
        }
        let rows: BTreeMap<ClientId, RequestNumber> =
            self.records.iter().map(|(c, r)| (*c, r.request)).collect();
        if rows != latest {
            return Err(format!(
                "client table {rows:?} is not the committed log's latest requests {latest:?}"
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
