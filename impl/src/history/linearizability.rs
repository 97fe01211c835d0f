//! Linearizability of a key-value history (Herlihy and Wing 1990).
//!
//! Linearizability is local: a history is linearizable if and only if each
//! key's sub-history is, so each key is checked on its own. Per key, a depth
//! first search in the style of Wing and Gong (1993), with Lowe's (2017)
//! memoisation: choose an operation that may take effect next (invoked before
//! every operation not yet taken effect has completed), apply it to the key's
//! value, check its result, and go on; never visit the same (set of
//! operations taken effect, value) twice.
//!
//! Operations whose status is failed did not take effect and are left out. An
//! unknown (timed out) operation may take effect at any time after its
//! invocation, or never: it has no completion to respect and no result to
//! check, and the search succeeds once every acknowledged operation has taken
//! effect. An unknown put or cas whose value no result shows is left out too:
//! it could only have taken effect where a later put overwrote it unseen.

use super::{Operation, Record, Status};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Configurations one key's search may visit before it gives up.
const CONFIGURATIONS_MAX: usize = 2_000_000;

/// Operations shown before the point where a search got stuck.
const SHOWN_BEFORE: usize = 6;

/// What a linearizable history held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub operations: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub keys: usize,
}

/// A key whose operations cannot be linearized, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The explanation, with the operations involved, one a line.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Violation {}

/// Checks that `records` is a linearizable history of a key-value store
/// whose keys all start absent.
pub fn check(records: &[Record]) -> Result<Summary, Violation> {
    let mut summary = Summary {
        operations: records.len(),
        ..Summary::default()
    };
    let mut keys: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records {
        match record.status {
            Status::Ok => summary.ok += 1,
            Status::Failed => summary.failed += 1,
            Status::Unknown => summary.unknown += 1,
        }
        keys.entry(&record.key).or_default().push(record);
    }
    summary.keys = keys.len();
    for (key, records) in keys {
        check_key(key, &records)?;
    }
    Ok(summary)
}

/// An interned value of one key.
type Value = u32;

/// A key's value: absent or a value.
type State = Option<Value>;

/// An operation as the search applies it.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Put(Value),
    /// The value read.
    Get(State),
    /// The value removed, if known.
    Delete(Option<State>),
    /// The value held before, if known.
    Cas {
        expected: State,
        new: Value,
        previous: Option<State>,
    },
}

impl Effect {
    /// The key's value after this operation on `state`, or `None` if its
    /// result disagrees with `state`.
    fn apply(self, state: State) -> Option<State> {
        match self {
            Effect::Put(value) => Some(Some(value)),
            Effect::Get(read) => (read == state).then_some(state),
            Effect::Delete(removed) => removed.is_none_or(|r| r == state).then_some(None),
            Effect::Cas {
                expected,
                new,
                previous,
            } => previous
                .is_none_or(|p| p == state)
                .then_some(if state == expected { Some(new) } else { state }),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Op {
    invoke: u128,
    /// `u128::MAX` for an unknown operation.
    complete: u128,
    /// Acknowledged: it must take effect.
    definite: bool,
    effect: Effect,
    /// Its index in the key's records.
    record: usize,
}

fn check_key(key: &str, records: &[&Record]) -> Result<(), Violation> {
    let mut values = Values::default();
    let ops = operations(records, &mut values).map_err(|message| Violation {
        key: key.to_string(),
        message: format!("key {key:?}: {message}"),
    })?;
    let deepest = match search(&ops, None) {
        Outcome::Linearizable => return Ok(()),
        Outcome::GaveUp => {
            return Err(Violation {
                key: key.to_string(),
                message: format!(
                    "key {key:?}: gave up after {CONFIGURATIONS_MAX} configurations of its {} operations; whether it is linearizable is unknown",
                    records.len()
                ),
            });
        }
        Outcome::Stuck { deepest } => deepest,
        Outcome::Reached { .. } => unreachable!("no depth to stop at"),
    };
    let Outcome::Reached {
        path,
        state,
        candidates,
    } = search(&ops, Some(deepest))
    else {
        unreachable!("the same search reaches the same depth again")
    };
    Err(Violation {
        key: key.to_string(),
        message: explain(key, records, &ops, &values, &path, state, &candidates),
    })
}

/// Each key's values, numbered.
#[derive(Default)]
struct Values<'a> {
    numbers: HashMap<&'a str, Value>,
    names: Vec<&'a str>,
}

impl<'a> Values<'a> {
    fn number(&mut self, value: &'a str) -> Value {
        *self.numbers.entry(value).or_insert_with(|| {
            self.names.push(value);
            (self.names.len() - 1) as Value
        })
    }

    fn state(&mut self, value: &'a Option<String>) -> State {
        value.as_deref().map(|v| self.number(v))
    }

    fn show(&self, state: State) -> String {
        state.map_or("nothing".into(), |v| {
            format!("{:?}", self.names[v as usize])
        })
    }
}

/// The operations to linearize, ordered by invocation.
fn operations<'a>(records: &[&'a Record], values: &mut Values<'a>) -> Result<Vec<Op>, String> {
    let observed: HashSet<&str> = records
        .iter()
        .filter(|r| r.status == Status::Ok && r.operation != Operation::Put)
        .filter_map(|r| r.result.as_deref())
        .collect();
    let mut ops = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let definite = match record.status {
            Status::Failed => continue,
            Status::Ok => true,
            Status::Unknown => false,
        };
        let written = || {
            record
                .value
                .as_deref()
                .ok_or_else(|| format!("a {:?} without a value: {record}", record.operation))
        };
        if !definite
            && matches!(record.operation, Operation::Put | Operation::Cas)
            && !observed.contains(written()?)
        {
            continue;
        }
        let result = definite.then_some(&record.result);
        let effect = match record.operation {
            Operation::Put => Effect::Put(values.number(written()?)),
            Operation::Get if definite => Effect::Get(values.state(&record.result)),
            Operation::Get => continue,
            Operation::Delete => Effect::Delete(result.map(|r| values.state(r))),
            Operation::Cas => Effect::Cas {
                expected: values.state(&record.expected),
                new: values.number(written()?),
                previous: result.map(|r| values.state(r)),
            },
        };
        ops.push(Op {
            invoke: record.invoke_ns,
            complete: if definite {
                record.complete_ns
            } else {
                u128::MAX
            },
            definite,
            effect,
            record: index,
        });
    }
    ops.sort_by_key(|op| (op.invoke, op.complete));
    Ok(ops)
}

/// Which operations have taken effect.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

enum Outcome {
    Linearizable,
    /// No order: `deepest` operations were the most that took effect.
    Stuck {
        deepest: usize,
    },
    /// Stopped on first reaching the depth asked for.
    Reached {
        path: Vec<usize>,
        state: State,
        candidates: Vec<usize>,
    },
    GaveUp,
}

/// A level of the search: the operations that may take effect next, how far
/// they have been tried, and the one taken (with the value before it).
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    taken: Option<(usize, State)>,
    /// Every operation before this one has taken effect.
    first_pending: usize,
}

/// The operations not yet taken effect that may take effect next: invoked
/// no later than every such operation's completion. Acknowledged ones first.
fn candidates(ops: &[Op], taken: &Bits, first_pending: usize) -> Vec<usize> {
    let mut bound = u128::MAX;
    let mut found = Vec::new();
    for (i, op) in ops.iter().enumerate().skip(first_pending) {
        if op.invoke > bound {
            break;
        }
        if !taken.get(i) {
            bound = bound.min(op.complete);
            found.push(i);
        }
    }
    found.retain(|&i| ops[i].invoke <= bound);
    found.sort_by_key(|&i| !ops[i].definite);
    found
}

fn search(ops: &[Op], stop_at: Option<usize>) -> Outcome {
    let definite_total = ops.iter().filter(|op| op.definite).count();
    if definite_total == 0 {
        return Outcome::Linearizable;
    }
    let mut taken = Bits::new(ops.len());
    let mut state: State = None;
    let mut definite_taken = 0;
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut deepest = 0;
    let mut stack = vec![Frame {
        candidates: candidates(ops, &taken, 0),
        next: 0,
        taken: None,
        first_pending: 0,
    }];
    while let Some(frame) = stack.last_mut() {
        if let Some((i, before)) = frame.taken.take() {
            taken.clear(i);
            state = before;
            definite_taken -= usize::from(ops[i].definite);
        }
        let Some(&i) = frame.candidates.get(frame.next) else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let Some(after) = ops[i].effect.apply(state) else {
            continue;
        };
        taken.set(i);
        if !seen.insert((taken.clone(), after)) {
            taken.clear(i);
            continue;
        }
        if seen.len() > CONFIGURATIONS_MAX {
            return Outcome::GaveUp;
        }
        frame.taken = Some((i, state));
        state = after;
        definite_taken += usize::from(ops[i].definite);
        if definite_taken == definite_total {
            return Outcome::Linearizable;
        }
        let mut first_pending = frame.first_pending;
        while first_pending < ops.len() && taken.get(first_pending) {
            first_pending += 1;
        }
        stack.push(Frame {
            candidates: candidates(ops, &taken, first_pending),
            next: 0,
            taken: None,
            first_pending,
        });
        let depth = stack.len() - 1;
        if depth > deepest {
            deepest = depth;
            if stop_at == Some(depth) {
                return Outcome::Reached {
                    path: stack.iter().filter_map(|f| f.taken.map(|t| t.0)).collect(),
                    state,
                    candidates: stack[depth].candidates.clone(),
                };
            }
        }
    }
    if stop_at == Some(0) {
        return Outcome::Reached {
            path: Vec::new(),
            state: None,
            candidates: candidates(ops, &Bits::new(ops.len()), 0),
        };
    }
    Outcome::Stuck { deepest }
}

fn explain(
    key: &str,
    records: &[&Record],
    ops: &[Op],
    values: &Values,
    path: &[usize],
    state: State,
    candidates: &[usize],
) -> String {
    let unknown = records
        .iter()
        .filter(|r| r.status == Status::Unknown)
        .count();
    let mut message = format!(
        "key {key:?} is not linearizable: no order of its {} operations ({unknown} of them unknown) agrees with both real time and their results.\n",
        records.len()
    );
    if path.is_empty() {
        message.push_str("  Not even the first operation can take effect on the absent key.\n");
    } else {
        message.push_str(&format!(
            "  The longest order found takes {} of them, ending with:\n",
            path.len()
        ));
        for &i in &path[path.len().saturating_sub(SHOWN_BEFORE)..] {
            message.push_str(&format!("    {}\n", records[ops[i].record]));
        }
    }
    message.push_str(&format!(
        "  The key then holds {}, and none of the operations that may take effect next fits:\n",
        values.show(state)
    ));
    for &i in candidates {
        let why = if ops[i].effect.apply(state).is_none() {
            "its result disagrees"
        } else {
            "leads to no complete order"
        };
        message.push_str(&format!("    {} ({why})\n", records[ops[i].record]));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Kv, KvOperation, KvOutput};
    use crate::core::StateMachine;
    use std::time::Instant;

    fn record(
        client: u64,
        operation: KvOperation,
        times: (u128, u128),
        output: Option<KvOutput>,
    ) -> Record {
        let status = if output.is_some() {
            Status::Ok
        } else {
            Status::Unknown
        };
        Record::new(
            client,
            &operation,
            times.0,
            times.1,
            output.as_ref(),
            status,
        )
    }

    fn put(client: u64, value: &str, times: (u128, u128)) -> Record {
        let operation = KvOperation::Put {
            key: "k".into(),
            value: value.into(),
        };
        record(client, operation, times, Some(KvOutput::Stored))
    }

    fn get(client: u64, read: Option<&str>, times: (u128, u128)) -> Record {
        let operation = KvOperation::Get { key: "k".into() };
        record(
            client,
            operation,
            times,
            Some(KvOutput::Value(read.map(Into::into))),
        )
    }

    fn unknown(mut record: Record) -> Record {
        record.status = Status::Unknown;
        record.result = None;
        record
    }

    fn cas(
        client: u64,
        expected: Option<&str>,
        new: &str,
        previous: Option<&str>,
        times: (u128, u128),
    ) -> Record {
        let operation = KvOperation::Cas {
            key: "k".into(),
            expected: expected.map(Into::into),
            new: new.into(),
        };
        let output = KvOutput::Cas {
            swapped: expected == previous,
            previous: previous.map(Into::into),
        };
        record(client, operation, times, Some(output))
    }

    #[test]
    fn overlapping_writes_and_reads_that_agree_with_some_order_are_linearizable() {
        // a and b overlap: a read may see either, but then the other only
        // if it was written after.
        let history = [
            put(1, "a", (0, 10)),
            put(2, "b", (1, 11)),
            get(3, Some("b"), (2, 5)),
            get(4, Some("a"), (6, 9)),
            get(3, Some("a"), (12, 13)),
        ];
        assert_eq!(check(&history).unwrap().ok, 5);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_not_linearizable() {
        let history = [
            put(1, "a", (0, 1)),
            put(1, "b", (2, 3)),
            get(2, Some("a"), (4, 5)),
        ];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.key, "k");
        assert!(
            violation.message.contains("read \"a\""),
            "{}",
            violation.message
        );
        assert!(
            violation.message.contains("holds \"b\""),
            "{}",
            violation.message
        );
    }

    #[test]
    fn an_unknown_write_that_a_later_read_observes_took_effect() {
        let history = [
            put(1, "a", (0, 1)),
            unknown(put(2, "b", (2, 3))),
            get(3, Some("a"), (10, 11)),
            get(3, Some("b"), (20, 21)),
            get(4, Some("b"), (30, 31)),
        ];
        check(&history).unwrap();
    }

    #[test]
    fn an_unknown_write_never_observed_may_not_have_taken_effect() {
        let history = [
            put(1, "a", (0, 1)),
            unknown(put(2, "b", (2, 3))),
            get(3, Some("a"), (10, 11)),
        ];
        check(&history).unwrap();
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
        let history = [get(3, Some("b"), (0, 1)), unknown(put(2, "b", (2, 3)))];
        check(&history).unwrap_err();
    }

    #[test]
    fn a_lost_acknowledged_write_is_not_linearizable() {
        let history = [
            put(1, "a", (0, 1)),
            put(2, "b", (2, 3)),
            // The final read after everything: the key lost b.
            get(9, Some("a"), (100, 101)),
        ];
        check(&history).unwrap_err();
        let lost = [put(1, "a", (0, 1)), get(9, None, (100, 101))];
        let violation = check(&lost).unwrap_err();
        assert!(
            violation.message.contains("read absent"),
            "{}",
            violation.message
        );
    }

    #[test]
    fn a_read_of_a_value_never_written_is_not_linearizable() {
        let history = [put(1, "a", (0, 1)), get(2, Some("z"), (2, 3))];
        check(&history).unwrap_err();
    }

    #[test]
    fn a_compare_and_swap_swaps_only_from_the_value_it_expects() {
        let fine = [
            put(1, "a", (0, 1)),
            cas(2, Some("a"), "b", Some("a"), (2, 3)),
            cas(3, Some("a"), "c", Some("b"), (4, 5)),
            get(1, Some("b"), (6, 7)),
            cas(2, None, "d", Some("b"), (8, 9)),
        ];
        check(&fine).unwrap();
        // A cas that did not swap cannot have changed the value.
        let mut no_swap = fine.to_vec();
        no_swap[3] = get(1, Some("c"), (6, 7));
        check(&no_swap).unwrap_err();
        // Two concurrent cas from the same value cannot both swap.
        let both = [
            put(1, "a", (0, 1)),
            cas(2, Some("a"), "b", Some("a"), (2, 5)),
            cas(3, Some("a"), "c", Some("a"), (3, 6)),
        ];
        check(&both).unwrap_err();
        // Concurrent, one swaps and the other sees its value.
        let one = [
            put(1, "a", (0, 1)),
            cas(2, Some("a"), "b", Some("a"), (2, 5)),
            cas(3, Some("a"), "c", Some("b"), (3, 6)),
            get(4, Some("b"), (7, 8)),
        ];
        check(&one).unwrap();
        // A cas from absent on a fresh key swaps.
        let fresh = [cas(1, None, "a", None, (0, 1)), get(2, Some("a"), (2, 3))];
        check(&fresh).unwrap();
    }

    #[test]
    fn a_delete_removes_the_value_it_reports() {
        let delete = |client, removed: Option<&str>, times| {
            record(
                client,
                KvOperation::Delete { key: "k".into() },
                times,
                Some(KvOutput::Deleted(removed.map(Into::into))),
            )
        };
        let fine = [
            put(1, "a", (0, 1)),
            delete(2, Some("a"), (2, 3)),
            get(3, None, (4, 5)),
            delete(2, None, (6, 7)),
        ];
        check(&fine).unwrap();
        let twice = [
            put(1, "a", (0, 1)),
            delete(2, Some("a"), (2, 3)),
            delete(3, Some("a"), (4, 5)),
        ];
        check(&twice).unwrap_err();
    }

    #[test]
    fn failed_operations_did_not_take_effect() {
        let mut failed = put(2, "b", (2, 3));
        failed.status = Status::Failed;
        let history = [put(1, "a", (0, 1)), failed, get(3, Some("b"), (4, 5))];
        check(&history).unwrap_err();
    }

    #[test]
    fn keys_are_checked_separately_and_the_violation_names_its_key() {
        let mut other = put(1, "x", (0, 1));
        other.key = "other".into();
        let mut stale = get(2, None, (2, 3));
        stale.key = "other".into();
        let history = [put(1, "a", (0, 1)), get(2, Some("a"), (2, 3)), other, stale];
        assert_eq!(check(&history).unwrap_err().key, "other");
    }

    /// A history of `clients` closed-loop clients over `keys` keys, each
    /// operation taking effect at a point inside its interval: linearizable
    /// by construction. Some operations time out (taking effect or not) and
    /// some fail.
    fn generated(clients: u64, keys: u64, operations: usize, seed: u64) -> Vec<Record> {
        let mut seed = seed | 1;
        let mut random = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // (effect point, invoke, complete, client, operation, fate 0..100)
        let mut planned = Vec::new();
        let mut now = vec![0u128; clients as usize];
        let mut last_written: HashMap<String, String> = HashMap::new();
        for n in 0..operations {
            let client = random(clients);
            let key = format!("key-{}", random(keys));
            let invoke = now[client as usize] + u128::from(random(10));
            let point = invoke + 1 + u128::from(random(50));
            let complete = point + 1 + u128::from(random(50));
            now[client as usize] = complete;
            let value = format!("{client}-{n}");
            let operation = match random(10) {
                0..=4 => KvOperation::Get { key },
                8 => KvOperation::Delete { key },
                5..=7 => {
                    last_written.insert(key.clone(), value.clone());
                    KvOperation::Put { key, value }
                }
                _ => KvOperation::Cas {
                    expected: last_written.insert(key.clone(), value.clone()),
                    key,
                    new: value,
                },
            };
            planned.push((point, invoke, complete, client, operation, random(100)));
        }
        planned.sort_by_key(|p| p.0);
        let mut kv = Kv::default();
        let mut history = Vec::new();
        for (_, invoke, complete, client, operation, fate) in planned {
            let (output, status) = match fate {
                0 => (None, Status::Failed),
                1 => (None, Status::Unknown),
                2 => {
                    kv.apply(&operation);
                    (None, Status::Unknown)
                }
                _ => (Some(kv.apply(&operation)), Status::Ok),
            };
            history.push(Record::new(
                client,
                &operation,
                invoke,
                complete,
                output.as_ref(),
                status,
            ));
        }
        history.sort_by_key(|r| r.invoke_ns);
        history
    }

    #[test]
    fn generated_linearizable_histories_pass() {
        for seed in 1..20 {
            let history = generated(8, 3, 400, seed);
            if let Err(violation) = check(&history) {
                panic!("seed {seed}: {violation}");
            }
        }
    }

    #[test]
    fn a_single_changed_read_in_a_long_history_is_caught() {
        // The check is not vacuous: change one acknowledged read of a
        // linearizable history to a value its key held long before.
        let mut history = generated(8, 10, 5_000, 7);
        let (index, old) = history
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Status::Ok && r.operation == Operation::Put)
            .map(|(i, r)| (i, r.clone()))
            .next()
            .unwrap();
        let stale = history
            .iter()
            .enumerate()
            .skip(index + 2_000)
            .position(|(_, r)| {
                r.key == old.key && r.operation == Operation::Get && r.status == Status::Ok
            })
            .unwrap()
            + index
            + 2_000;
        history[stale].result = old.value.clone();
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.key, old.key);
        eprintln!("{violation}");
    }

    #[test]
    fn fifty_thousand_operations_over_a_thousand_keys_check_in_seconds() {
        let history = generated(8, 1000, 50_000, 3);
        let started = Instant::now();
        let summary = check(&history).unwrap();
        let spread = started.elapsed();
        let contended = generated(8, 4, 20_000, 5);
        let started = Instant::now();
        check(&contended).unwrap();
        let hot = started.elapsed();
        eprintln!(
            "{} operations over {} keys: {spread:?}; 20000 over 4 keys: {hot:?}",
            summary.operations, summary.keys
        );
        assert!(spread.as_secs() < 5 && hot.as_secs() < 5);
    }
}
