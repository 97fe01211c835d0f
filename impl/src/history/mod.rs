//! Client histories: the JSON-lines records `vr bench --history FILE` writes,
//! one operation a line, and a linearizability checker for the key-value
//! store over them ([`check`]).
//!
//! ```json
//! {"client":42,"operation":"put","key":"key-000000000007","value":"...","invoke_ns":1200,"complete_ns":98000,"result":"stored","status":"ok"}
//! ```
//!
//! Times are nanoseconds since the recorder's start, on one monotonic clock:
//! an operation was invoked no later than `invoke_ns` and completed no earlier
//! than `complete_ns`.

mod linearizability;

pub use linearizability::{Checker, Summary, Violation, check};

use crate::app::{KvOperation, KvOutput};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

/// Which operation a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Put,
    Get,
    Delete,
    Cas,
}

/// What the client learnt of an operation's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A reply came: the operation took effect once, with `result`.
    Ok,
    /// Refused before it was sent: it did not take effect.
    Failed,
    /// No reply (timed out): it may have taken effect, at any time after its
    /// invocation, or never.
    Unknown,
}

/// One operation of one client, as Jepsen-style checkers read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The client's id; a client has at most one operation outstanding.
    pub client: u64,
    pub operation: Operation,
    pub key: String,
    /// Put: the value written. Cas: the value written if it swaps.
    pub value: Option<String>,
    /// Cas: the value the key must hold for the swap (`None`: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    pub invoke_ns: u128,
    pub complete_ns: u128,
    /// With status ok. Get: the value read. Delete: the value removed. Cas:
    /// the value the key held before. Put: "stored". `None`: absent.
    pub result: Option<String>,
    pub status: Status,
}

impl Record {
    /// The record of `operation` by `client`, with its output when it
    /// completed (`status` ok).
    pub fn new(
        client: u64,
        operation: &KvOperation,
        invoke_ns: u128,
        complete_ns: u128,
        output: Option<&KvOutput>,
        status: Status,
    ) -> Record {
        let (name, key, value, expected) = match operation {
            KvOperation::Put { key, value } => (Operation::Put, key, Some(value.clone()), None),
            KvOperation::Get { key } => (Operation::Get, key, None, None),
            KvOperation::Delete { key } => (Operation::Delete, key, None, None),
            KvOperation::Cas { key, expected, new } => {
                (Operation::Cas, key, Some(new.clone()), expected.clone())
            }
        };
        let result = output.and_then(|output| match output {
            KvOutput::Stored => Some("stored".to_string()),
            KvOutput::Value(value) | KvOutput::Deleted(value) => value.clone(),
            KvOutput::Cas { previous, .. } => previous.clone(),
        });
        Record {
            client,
            operation: name,
            key: key.clone(),
            value,
            expected,
            invoke_ns,
            complete_ns,
            result,
            status,
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_deref().map_or("absent".into(), |v| format!("{v:?}"));
        write!(f, "client {:016x} ", self.client)?;
        match self.operation {
            Operation::Put => write!(f, "put {}", shown(&self.value))?,
            Operation::Get => write!(f, "get")?,
            Operation::Delete => write!(f, "delete")?,
            Operation::Cas => write!(f, "cas {} -> {}", shown(&self.expected), shown(&self.value))?,
        }
        match (self.status, self.operation) {
            (Status::Ok, Operation::Put) => write!(f, ": ok")?,
            (Status::Ok, Operation::Get) => write!(f, ": read {}", shown(&self.result))?,
            (Status::Ok, Operation::Delete) => write!(f, ": removed {}", shown(&self.result))?,
            (Status::Ok, Operation::Cas) => write!(f, ": held {}", shown(&self.result))?,
            (Status::Failed, _) => write!(f, ": failed")?,
            (Status::Unknown, _) => write!(f, ": unknown (timed out)")?,
        }
        let seconds = |ns: u128| ns as f64 / 1e9;
        write!(
            f,
            " [invoked {:.6}s, completed {:.6}s]",
            seconds(self.invoke_ns),
            seconds(self.complete_ns)
        )
    }
}

/// Parses a JSON-lines history; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| parse_line(index, line))
        .collect()
}

/// Parses line `index` (from 0) of a history.
fn parse_line(index: usize, line: &str) -> Result<Record, String> {
    let record: Record =
        serde_json::from_str(line).map_err(|e| format!("line {}: {e}", index + 1))?;
    if record.complete_ns < record.invoke_ns {
        return Err(format!("line {}: completed before invoked", index + 1));
    }
    Ok(record)
}

/// Reads and parses the history in `path`.
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Calls `each` with every record of the history in `path` and its line's
/// index (from 0), reading one line at a time; stops at `each`'s first
/// `Some`.
fn for_each_record<T>(
    path: &Path,
    mut each: impl FnMut(usize, Record) -> Option<T>,
) -> Result<Option<T>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(cannot)?);
    let mut line = String::new();
    for index in 0.. {
        line.clear();
        if reader.read_line(&mut line).map_err(cannot)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_line(index, &line).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(stop) = each(index, record) {
            return Ok(Some(stop));
        }
    }
    Ok(None)
}

/// Checks the history in `path` as [`check`] does, streaming it: its records
/// are not held, only each key's operations in a compact form. `Err` when
/// the file cannot be read or parsed; `Ok(Err)` when it is not linearizable.
pub fn check_file(path: &Path) -> Result<Result<Summary, Violation>, String> {
    let mut checker = Checker::default();
    if let Some(violation) =
        for_each_record(path, |index, record| checker.add(index, &record).err())?
    {
        return Ok(Err(violation));
    }
    Ok(checker.finish(|wanted| {
        let mut found = HashMap::new();
        // A second pass, only to quote the records a violation involves.
        let _ = for_each_record(path, |index, record| {
            if wanted.contains(&index) {
                found.insert(index, record);
            }
            None::<()>
        });
        found
    }))
}

/// Writes `records` as JSON lines.
pub fn write(out: &mut impl std::io::Write, records: &[Record]) -> std::io::Result<()> {
    for record in records {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_line_parses_and_round_trips() {
        let line = r#"{"client":7,"operation":"get","key":"key-000000000001","value":null,"invoke_ns":10,"complete_ns":20,"result":"v","status":"ok"}"#;
        let records = parse(line).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].operation, Operation::Get);
        assert_eq!(records[0].status, Status::Ok);
        assert_eq!(records[0].result.as_deref(), Some("v"));
        let mut out = Vec::new();
        write(&mut out, &records).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), line);
    }

    #[test]
    fn a_cas_records_its_expected_value_and_the_value_held_before() {
        let cas = KvOperation::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "b".into(),
        };
        let output = KvOutput::Cas {
            swapped: false,
            previous: Some("c".into()),
        };
        let record = Record::new(1, &cas, 5, 6, Some(&output), Status::Ok);
        let mut out = Vec::new();
        write(&mut out, std::slice::from_ref(&record)).unwrap();
        let parsed = parse(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(parsed, vec![record]);
        assert_eq!(parsed[0].expected.as_deref(), Some("a"));
        assert_eq!(parsed[0].result.as_deref(), Some("c"));
    }

    #[test]
    fn a_history_file_is_checked_streaming_and_its_violation_quotes_the_records() {
        let lines = [
            r#"{"client":1,"operation":"put","key":"k","value":"a","invoke_ns":0,"complete_ns":1,"result":"stored","status":"ok"}"#,
            "",
            r#"{"client":1,"operation":"put","key":"k","value":"b","invoke_ns":2,"complete_ns":3,"result":"stored","status":"ok"}"#,
            r#"{"client":2,"operation":"get","key":"k","value":null,"invoke_ns":4,"complete_ns":5,"result":"a","status":"ok"}"#,
        ];
        let path = std::env::temp_dir().join(format!("vr-history-{}.jsonl", std::process::id()));
        std::fs::write(&path, lines[..3].join("\n")).unwrap();
        let summary = check_file(&path).unwrap().unwrap();
        assert_eq!((summary.operations, summary.keys), (2, 1));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let violation = check_file(&path).unwrap().unwrap_err();
        // The second pass found the stuck read on the file's fourth line.
        assert!(violation.message.contains("get: read \"a\""), "{violation}");
        assert!(violation.message.contains("holds \"b\""), "{violation}");
        let _ = std::fs::remove_file(&path);
        assert!(check_file(&path).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let error = parse("\n{\"client\":1}\n").unwrap_err();
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
