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
//! A key's history is cut where it is quiescent: where every acknowledged
//! operation invoked before the cut has completed before the first one after
//! it is invoked. Every order that agrees with real time then takes all the
//! acknowledged operations before the cut first, so the search crosses the
//! cut with only what the order before it decided: the value the key holds
//! there, with the unknown operations that have not taken effect yet. The
//! search goes depth first over the stretches between cuts: each stretch's
//! search hands the values it may end with, one at a time, to the next
//! stretch, and a stretch that fails from an entry is remembered so that it
//! is never searched from that entry again. A stretch's memo is a bit set
//! over its own operations (128 bits for the usual short one), not over the
//! key's whole history: a 1.5-million-operation history over 5 keys, whose
//! whole-history memo outgrew 10 GB, now checks in about 240 MB.
//!
//! Operations whose status is failed did not take effect and are left out. An
//! unknown (timed out) operation may take effect at any time after its
//! invocation, or never: it has no completion to respect and no result to
//! check, and the search succeeds once every acknowledged operation has taken
//! effect. An unknown put or cas whose value no result shows is left out too:
//! it could only have taken effect where a later put overwrote it unseen.

use super::{Operation, Record, Status};
use ahash::AHashSet;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;

/// Configurations the search of one stretch of a key's history may visit
/// before it gives up (a stretch with many clients on one key and no
/// quiescent point, such as 64 clients over 5 keys, can exceed it, as the
/// whole-key search did before).
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
    let mut checker = Checker::default();
    for (index, record) in records.iter().enumerate() {
        checker.add(index, record)?;
    }
    checker.finish(|wanted| {
        wanted
            .iter()
            .map(|&index| (index, records[index].clone()))
            .collect()
    })
}

/// [`check`] fed one record at a time, so that a history file is checked
/// without holding its records: each key keeps only its operations in a
/// compact form, with its values numbered.
#[derive(Default)]
pub struct Checker {
    summary: Summary,
    keys: BTreeMap<String, KeyHistory>,
}

impl Checker {
    /// Takes the record numbered `index` (what [`Checker::finish`] asks for
    /// back to explain a violation).
    pub fn add(&mut self, index: usize, record: &Record) -> Result<(), Violation> {
        self.summary.operations += 1;
        match record.status {
            Status::Ok => self.summary.ok += 1,
            Status::Failed => self.summary.failed += 1,
            Status::Unknown => self.summary.unknown += 1,
        }
        let history = match self.keys.get_mut(record.key.as_str()) {
            Some(history) => history,
            None => self.keys.entry(record.key.clone()).or_default(),
        };
        history.add(index, record).map_err(|message| Violation {
            key: record.key.clone(),
            message: format!("key {:?}: {message}", record.key),
        })
    }

    /// Checks every key. `fetch` gives back the records of the numbers it is
    /// asked for; it is called only to explain a violation.
    pub fn finish(
        self,
        mut fetch: impl FnMut(&[usize]) -> HashMap<usize, Record>,
    ) -> Result<Summary, Violation> {
        let mut summary = self.summary;
        summary.keys = self.keys.len();
        for (key, history) in self.keys {
            history.check(&key, &mut fetch)?;
        }
        Ok(summary)
    }
}

/// An interned value of one key.
type Value = u32;

/// A key's value: absent or a value.
type State = Option<Value>;

/// An operation as the search applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    /// The value it may write.
    fn written(self) -> Option<Value> {
        match self {
            Effect::Put(value) | Effect::Cas { new: value, .. } => Some(value),
            Effect::Get(_) | Effect::Delete(_) => None,
        }
    }

    /// The value the key holds after it, if it changes it.
    fn leaves(self) -> Option<State> {
        match self {
            Effect::Put(value) | Effect::Cas { new: value, .. } => Some(Some(value)),
            Effect::Delete(_) => Some(None),
            Effect::Get(_) => None,
        }
    }

    /// The values it can take effect only on: the value a get read, a delete
    /// removed, a cas expects or found.
    fn observes(self) -> impl Iterator<Item = State> {
        let (first, second) = match self {
            Effect::Put(_) | Effect::Delete(None) => (None, None),
            Effect::Get(read) => (Some(read), None),
            Effect::Delete(Some(removed)) => (Some(removed), None),
            Effect::Cas {
                expected, previous, ..
            } => (Some(expected), previous),
        };
        first.into_iter().chain(second)
    }
}

#[derive(Clone, Copy, Debug)]
struct Op {
    invoke: u64,
    /// `u64::MAX` for an unknown operation.
    complete: u64,
    /// Acknowledged: it must take effect.
    definite: bool,
    effect: Effect,
    /// The record's number.
    record: usize,
}

/// Nanoseconds, saturated (at 584 years).
fn nanoseconds(ns: u128) -> u64 {
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// One key's operations and values.
#[derive(Default)]
struct KeyHistory {
    values: Values,
    ops: Vec<Op>,
    /// Values some acknowledged get, delete or cas returned.
    observed: HashSet<Value>,
    records: usize,
    unknown: usize,
}

impl KeyHistory {
    fn add(&mut self, index: usize, record: &Record) -> Result<(), String> {
        self.records += 1;
        let definite = match record.status {
            Status::Failed => return Ok(()),
            Status::Ok => true,
            Status::Unknown => {
                self.unknown += 1;
                false
            }
        };
        let written = || {
            record
                .value
                .as_deref()
                .ok_or_else(|| format!("a {:?} without a value: {record}", record.operation))
        };
        let values = &mut self.values;
        let result = definite.then(|| values.state(record.result.as_deref()));
        if let Some(Some(value)) = result
            && record.operation != Operation::Put
        {
            self.observed.insert(value);
        }
        let effect = match record.operation {
            Operation::Put => Effect::Put(values.number(written()?)),
            Operation::Get => match result {
                Some(read) => Effect::Get(read),
                None => return Ok(()),
            },
            Operation::Delete => Effect::Delete(result),
            Operation::Cas => Effect::Cas {
                expected: values.state(record.expected.as_deref()),
                new: values.number(written()?),
                previous: result,
            },
        };
        self.ops.push(Op {
            invoke: nanoseconds(record.invoke_ns),
            complete: if definite {
                nanoseconds(record.complete_ns)
            } else {
                u64::MAX
            },
            definite,
            effect,
            record: index,
        });
        Ok(())
    }

    fn check(
        mut self,
        key: &str,
        fetch: &mut impl FnMut(&[usize]) -> HashMap<usize, Record>,
    ) -> Result<(), Violation> {
        let observed = &self.observed;
        self.ops
            .retain(|op| op.definite || op.effect.written().is_none_or(|v| observed.contains(&v)));
        self.ops.sort_by_key(|op| (op.invoke, op.complete));
        let ops = &self.ops;
        // Where each value is last observed.
        let mut last_observed: HashMap<State, usize> = HashMap::new();
        for (j, op) in ops.iter().enumerate() {
            for state in op.effect.observes() {
                last_observed.insert(state, j);
            }
        }
        let ranges = stretches(ops);
        if ranges.is_empty() {
            return Ok(());
        }
        // A depth-first search over stretches: each level searches one
        // stretch from one entry, and hands each exit it finds, in turn, to
        // the next stretch as its entry; the memo of a stretch lives while
        // its level is on the path.
        let first = Entry {
            state: None,
            carried: Vec::new(),
        };
        let mut path = vec![Level::new(0, first, &ops[ranges[0].clone()])];
        // Entries from which a stretch was searched to the end in vain.
        let mut failed: HashSet<(usize, State, Vec<usize>)> = HashSet::new();
        // The furthest stretch that failed, and every entry it failed from.
        let mut furthest: (usize, Vec<Entry>) = (0, Vec::new());
        while let Some(level) = path.last_mut() {
            match level.search.next(None) {
                Step::Exit(state, untaken) => {
                    let k = level.k + 1;
                    if k == ranges.len() {
                        return Ok(());
                    }
                    let mut entry = Entry {
                        state,
                        carried: untaken.into_iter().map(|i| level.search.op(i)).collect(),
                    };
                    entry.forget_useless(ranges[k].start, &last_observed);
                    if !failed.contains(&entry.key(k)) {
                        path.push(Level::new(k, entry, &ops[ranges[k].clone()]));
                    }
                }
                Step::Exhausted { .. } => {
                    let level = path.pop().expect("the level searched");
                    failed.insert(level.entry.key(level.k));
                    if level.k > furthest.0 {
                        furthest = (level.k, Vec::new());
                    }
                    if level.k == furthest.0 {
                        furthest.1.push(level.entry);
                    }
                }
                Step::GaveUp => {
                    let range = ranges[level.k].clone();
                    return Err(Violation {
                        key: key.to_string(),
                        message: format!(
                            "key {key:?}: gave up after {CONFIGURATIONS_MAX} configurations of the {} operations from operation {} of the history on; whether it is linearizable is unknown",
                            range.len(),
                            ops[range.start].record + 1
                        ),
                    });
                }
                Step::Reached { .. } => unreachable!("no depth to stop at"),
            }
        }
        let (k, entries) = furthest;
        Err(self.violation(key, ranges[k].clone(), &entries, fetch))
    }

    /// The violation found in the stretch `range`, whatever the key held on
    /// entering it (`entries`).
    fn violation(
        &self,
        key: &str,
        range: Range<usize>,
        entries: &[Entry],
        fetch: &mut impl FnMut(&[usize]) -> HashMap<usize, Record>,
    ) -> Violation {
        let entry = &entries[0];
        let local = entry.local(&self.ops[range.clone()]);
        let Step::Exhausted { deepest } = Stretch::new(local.clone(), entry.state).next(None)
        else {
            unreachable!("the stretch was searched and had no end")
        };
        let Step::Reached {
            path,
            state,
            candidates,
        } = Stretch::new(local.clone(), entry.state).next(Some(deepest))
        else {
            unreachable!("the same search reaches the same depth again")
        };
        let shown: Vec<usize> = path[path.len().saturating_sub(SHOWN_BEFORE)..]
            .iter()
            .chain(&candidates)
            .map(|&i| local[i].record)
            .collect();
        let records = fetch(&shown);
        let show = |i: usize| {
            let number = local[i].record;
            records.get(&number).map_or_else(
                || format!("operation {} of the history", number + 1),
                Record::to_string,
            )
        };
        let mut message = format!(
            "key {key:?} is not linearizable: no order of its {} operations ({} of them unknown) agrees with both real time and their results.\n",
            self.records, self.unknown
        );
        if range.start > 0 {
            let possible: Vec<String> = entries.iter().map(|e| self.values.show(e.state)).collect();
            message.push_str(&format!(
                "  Its first {} operations by invocation have orders that agree, after which the key may hold {}.\n",
                range.start,
                possible.join(" or ")
            ));
        }
        if path.is_empty() && range.start == 0 {
            message.push_str("  Not even the first operation can take effect on the absent key.\n");
        } else if path.is_empty() {
            message.push_str(&format!(
                "  From {}, not even one more can take effect.\n",
                self.values.show(entry.state)
            ));
        } else {
            message.push_str(&format!(
                "  The longest order found takes {} more of them, ending with:\n",
                path.len()
            ));
            for &i in &path[path.len().saturating_sub(SHOWN_BEFORE)..] {
                message.push_str(&format!("    {}\n", show(i)));
            }
        }
        message.push_str(&format!(
            "  The key then holds {}, and none of the operations that may take effect next fits:\n",
            self.values.show(state)
        ));
        for &i in &candidates {
            let why = if local[i].effect.apply(state).is_none() {
                "its result disagrees"
            } else {
                "leads to no complete order"
            };
            message.push_str(&format!("    {} ({why})\n", show(i)));
        }
        Violation {
            key: key.to_string(),
            message,
        }
    }
}

/// Where a search may stand at a cut: the key's value, and the unknown
/// operations invoked before the cut that have not taken effect (they still
/// may, at any time after it). A carried operation is forgotten once
/// nothing after the cut observes the value it leaves (no read, removal or
/// compare of it, and no carried cas expects it): taking it could then only
/// lead to a value no later operation accepts, or one a later write or
/// removal sets anyway.
#[derive(Clone, Debug)]
struct Entry {
    state: State,
    carried: Vec<Op>,
}

impl Entry {
    /// The operations to search in `stretch` from this entry: the carried
    /// ones first (invoked before every operation of the stretch).
    fn local(&self, stretch: &[Op]) -> Vec<Op> {
        self.carried.iter().chain(stretch).copied().collect()
    }

    /// What identifies this entry into stretch `k`.
    fn key(&self, k: usize) -> (usize, State, Vec<usize>) {
        let mut records: Vec<usize> = self.carried.iter().map(|op| op.record).collect();
        records.sort_unstable();
        (k, self.state, records)
    }

    /// Forgets the carried operations that nothing from operation `cut` on
    /// can tell apart from never taking effect.
    fn forget_useless(&mut self, cut: usize, last_observed: &HashMap<State, usize>) {
        let expected: HashSet<State> = self
            .carried
            .iter()
            .filter_map(|op| match op.effect {
                Effect::Cas { expected, .. } => Some(expected),
                _ => None,
            })
            .collect();
        self.carried.retain(|op| {
            op.effect.leaves().is_some_and(|left| {
                expected.contains(&left) || last_observed.get(&left).is_some_and(|&j| j >= cut)
            })
        });
    }
}

/// One level of the search over stretches.
struct Level {
    /// The stretch's number.
    k: usize,
    entry: Entry,
    search: Stretch,
}

impl Level {
    fn new(k: usize, entry: Entry, stretch: &[Op]) -> Level {
        let search = Stretch::new(entry.local(stretch), entry.state);
        Level { k, entry, search }
    }
}

/// The stretches of `ops` (sorted by invocation) between quiescent cuts: a
/// cut falls before an operation invoked after every acknowledged operation
/// before it completed. Unknown operations never complete and so do not
/// hold a cut back; the search carries them across it.
fn stretches(ops: &[Op]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut start = 0;
    let mut horizon: Option<u64> = None;
    for (j, op) in ops.iter().enumerate() {
        if horizon.is_some_and(|h| h < op.invoke) {
            found.push(start..j);
            start = j;
            horizon = None;
        }
        if op.definite {
            horizon = Some(horizon.map_or(op.complete, |h| h.max(op.complete)));
        }
    }
    if start < ops.len() {
        found.push(start..ops.len());
    }
    found
}

/// Each key's values, numbered.
#[derive(Default)]
struct Values {
    numbers: HashMap<Box<str>, Value>,
}

impl Values {
    fn number(&mut self, value: &str) -> Value {
        if let Some(&number) = self.numbers.get(value) {
            return number;
        }
        let number = self.numbers.len() as Value;
        self.numbers.insert(value.into(), number);
        number
    }

    fn state(&mut self, value: Option<&str>) -> State {
        value.map(|v| self.number(v))
    }

    fn show(&self, state: State) -> String {
        state.map_or("nothing".into(), |v| {
            self.numbers
                .iter()
                .find(|(_, number)| **number == v)
                .map_or_else(|| format!("value {v}"), |(name, _)| format!("{name:?}"))
        })
    }
}

/// Which operations have taken effect: a set of indices.
trait Taken: Clone + Eq + std::hash::Hash {
    fn new(n: usize) -> Self;
    fn get(&self, i: usize) -> bool;
    fn set(&mut self, i: usize);
    fn clear(&mut self, i: usize);
}

/// Any number of operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Taken for Bits {
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

/// Up to 128 operations, the usual length of a stretch between cuts:
/// copied and hashed without an allocation.
impl Taken for u128 {
    fn new(n: usize) -> u128 {
        debug_assert!(n <= 128);
        0
    }
    fn get(&self, i: usize) -> bool {
        self & (1 << i) != 0
    }
    fn set(&mut self, i: usize) {
        *self |= 1 << i;
    }
    fn clear(&mut self, i: usize) {
        *self &= !(1 << i);
    }
}

/// What a stretch's search found next.
enum Step {
    /// Every acknowledged operation took effect: the value the key then
    /// holds, with the unknown operations (indices) that had not.
    Exit(State, Vec<usize>),
    /// No more exits: `deepest` operations were the most that took effect.
    Exhausted {
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

/// A level of the search: the operations that may take effect next (a
/// stretch of the search's candidate stack), how far they have been tried,
/// and the one taken (with the value before it).
struct Frame {
    candidates: Range<usize>,
    next: usize,
    taken: Option<(usize, State)>,
    /// Every operation before this one has taken effect.
    first_pending: usize,
}

/// Pushes onto `out` the operations not yet taken effect that may take
/// effect next: invoked no later than every such operation's completion.
/// Acknowledged ones first. Unknown operations with the same effect are
/// interchangeable: only the first is offered, or k unknown deletes would
/// multiply the configurations by 2^k instead of k + 1.
fn push_candidates<T: Taken>(ops: &[Op], taken: &T, first_pending: usize, out: &mut Vec<usize>) {
    let base = out.len();
    let mut bound = u64::MAX;
    for (i, op) in ops.iter().enumerate().skip(first_pending) {
        if op.invoke > bound {
            break;
        }
        if !taken.get(i) {
            bound = bound.min(op.complete);
            out.push(i);
        }
    }
    let found = out.len();
    for k in base..found {
        let i = out[k];
        if ops[i].definite && ops[i].invoke <= bound {
            out.push(i);
        }
    }
    // The acknowledged ones by completion: the first to complete is the
    // one every order must take before what follows it in real time.
    out[found..].sort_unstable_by_key(|&i| ops[i].complete);
    for k in base..found {
        let i = out[k];
        let twin = |m: usize| {
            let j = out[m];
            !ops[j].definite && ops[j].invoke <= bound && ops[j].effect == ops[i].effect
        };
        if !ops[i].definite && ops[i].invoke <= bound && !(base..k).any(twin) {
            out.push(i);
        }
    }
    out.drain(base..found);
}

/// [`push_candidates`] into a vector of their own.
fn candidates<T: Taken>(ops: &[Op], taken: &T, first_pending: usize) -> Vec<usize> {
    let mut found = Vec::new();
    push_candidates(ops, taken, first_pending, &mut found);
    found
}

/// The search of one stretch's operations, by the memo's bit set: one
/// without allocation for the usual short stretch.
enum Stretch {
    Short(Search<u128>),
    Long(Search<Bits>),
}

impl Stretch {
    fn new(ops: Vec<Op>, start: State) -> Stretch {
        if ops.len() <= 128 {
            Stretch::Short(Search::new(ops, start))
        } else {
            Stretch::Long(Search::new(ops, start))
        }
    }

    fn next(&mut self, stop_at: Option<usize>) -> Step {
        match self {
            Stretch::Short(search) => search.next(stop_at),
            Stretch::Long(search) => search.next(stop_at),
        }
    }

    fn op(&self, i: usize) -> Op {
        match self {
            Stretch::Short(search) => search.ops[i],
            Stretch::Long(search) => search.ops[i],
        }
    }
}

/// Searches the orders of `ops` from the key holding `start` for the values
/// it may hold once all acknowledged operations have taken effect (unknown
/// ones left then take effect after, or never: the next stretch's
/// business), one at a time: each [`Search::next`] goes on from the exit
/// the previous one found.
struct Search<T: Taken> {
    ops: Vec<Op>,
    start: State,
    taken: T,
    state: State,
    definite_total: usize,
    definite_taken: usize,
    seen: AHashSet<(T, State)>,
    /// Every frame's candidates, one stretch after another.
    pending: Vec<usize>,
    stack: Vec<Frame>,
    deepest: usize,
}

impl<T: Taken> Search<T> {
    fn new(ops: Vec<Op>, start: State) -> Search<T> {
        let taken = T::new(ops.len());
        let mut pending = Vec::new();
        push_candidates(&ops, &taken, 0, &mut pending);
        Search {
            definite_total: ops.iter().filter(|op| op.definite).count(),
            stack: vec![Frame {
                candidates: 0..pending.len(),
                next: 0,
                taken: None,
                first_pending: 0,
            }],
            ops,
            start,
            taken,
            state: start,
            definite_taken: 0,
            seen: AHashSet::new(),
            pending,
            deepest: 0,
        }
    }

    /// The next exit; with `stop_at`, stops instead on first reaching that
    /// depth.
    fn next(&mut self, stop_at: Option<usize>) -> Step {
        let ops = &self.ops;
        if self.definite_total == 0 {
            // Nothing must take effect: the entry is the one exit.
            return match self.stack.pop() {
                Some(_) => Step::Exit(self.start, (0..ops.len()).collect()),
                None => Step::Exhausted { deepest: 0 },
            };
        }
        while let Some(frame) = self.stack.last_mut() {
            if let Some((i, before)) = frame.taken.take() {
                self.taken.clear(i);
                self.state = before;
                self.definite_taken -= usize::from(ops[i].definite);
            }
            if frame.next == frame.candidates.len() {
                self.pending.truncate(frame.candidates.start);
                self.stack.pop();
                continue;
            }
            let i = self.pending[frame.candidates.start + frame.next];
            frame.next += 1;
            let Some(after) = ops[i].effect.apply(self.state) else {
                continue;
            };
            self.taken.set(i);
            if !self.seen.insert((self.taken.clone(), after)) {
                self.taken.clear(i);
                continue;
            }
            if self.seen.len() > CONFIGURATIONS_MAX {
                return Step::GaveUp;
            }
            if self.definite_taken + usize::from(ops[i].definite) == self.definite_total {
                // Every operation not taken is unknown.
                let untaken = (0..ops.len()).filter(|&j| !self.taken.get(j)).collect();
                self.taken.clear(i);
                return Step::Exit(after, untaken);
            }
            frame.taken = Some((i, self.state));
            self.state = after;
            self.definite_taken += usize::from(ops[i].definite);
            let mut first_pending = frame.first_pending;
            while first_pending < ops.len() && self.taken.get(first_pending) {
                first_pending += 1;
            }
            let from = self.pending.len();
            push_candidates(ops, &self.taken, first_pending, &mut self.pending);
            self.stack.push(Frame {
                candidates: from..self.pending.len(),
                next: 0,
                taken: None,
                first_pending,
            });
            let depth = self.stack.len() - 1;
            if depth > self.deepest {
                self.deepest = depth;
                if stop_at == Some(depth) {
                    return Step::Reached {
                        path: self
                            .stack
                            .iter()
                            .filter_map(|f| f.taken.map(|t| t.0))
                            .collect(),
                        state: self.state,
                        candidates: self.pending[from..].to_vec(),
                    };
                }
            }
        }
        if stop_at == Some(0) {
            return Step::Reached {
                path: Vec::new(),
                state: self.start,
                candidates: candidates(ops, &T::new(ops.len()), 0),
            };
        }
        Step::Exhausted {
            deepest: self.deepest,
        }
    }
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

    #[test]
    fn a_key_history_is_cut_only_where_no_acknowledged_operation_is_pending() {
        let op = |invoke, complete, definite| Op {
            invoke,
            complete: if definite { complete } else { u64::MAX },
            definite,
            effect: Effect::Put(0),
            record: 0,
        };
        let ops = [
            op(0, 10, true),
            op(5, 20, true),  // overlaps the first: no cut between them
            op(21, 0, false), // unknown: never completes, holds no cut back
            op(22, 30, true), // after 20: a cut before the unknown one
            op(30, 40, true), // invoked as the previous completes: no cut
            op(41, 50, true),
        ];
        assert_eq!(stretches(&ops), vec![0..2, 2..5, 5..6]);
        assert_eq!(stretches(&[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn every_value_a_key_may_hold_at_a_cut_is_carried_across_it() {
        // a and b overlap and are then both acknowledged: either may be
        // last, so a read after the cut may see either, but not a third.
        for (read, fine) in [("a", true), ("b", true), ("c", false)] {
            let history = [
                put(1, "a", (0, 10)),
                put(2, "b", (1, 11)),
                get(3, Some(read), (20, 21)),
                get(3, Some(read), (30, 31)),
            ];
            match check(&history) {
                Ok(_) => assert!(fine, "read {read} passed"),
                Err(violation) => {
                    assert!(!fine, "read {read}: {violation}");
                    assert!(
                        violation.message.contains("may hold \"a\" or \"b\"")
                            || violation.message.contains("may hold \"b\" or \"a\""),
                        "{violation}"
                    );
                }
            }
        }
        // Once read, the other cannot come back after a later cut.
        let history = [
            put(1, "a", (0, 10)),
            put(2, "b", (1, 11)),
            get(3, Some("a"), (20, 21)),
            get(3, Some("b"), (30, 31)),
        ];
        check(&history).unwrap_err();
    }

    #[test]
    fn an_unknown_write_is_carried_across_cuts_until_a_read_shows_it() {
        let mut history = vec![put(1, "a", (0, 1)), unknown(put(2, "b", (2, 3)))];
        for i in 0..50 {
            history.push(get(3, Some("a"), (10 + 10 * i, 11 + 10 * i)));
        }
        history.push(get(4, Some("b"), (1000, 1001)));
        history.push(get(4, Some("b"), (1010, 1011)));
        check(&history).unwrap();
        // But it cannot be undone: "a" after "b" is a violation.
        history.push(get(4, Some("a"), (1020, 1021)));
        check(&history).unwrap_err();
    }

    #[test]
    fn many_unknown_deletes_carried_across_cuts_keep_the_search_small() {
        // Thirty deletes that timed out, each of which may take effect at
        // any later time: taken in any subset they would be 2^30
        // configurations; interchangeable, they are 31.
        let delete = |client, times: (u128, u128)| {
            unknown(record(
                client,
                KvOperation::Delete { key: "k".into() },
                times,
                None,
            ))
        };
        let mut history = vec![put(1, "a", (0, 1))];
        for i in 0..30 {
            history.push(delete(100 + i, (2, 3)));
        }
        history.push(get(2, Some("a"), (10, 11)));
        // Each put is then removed by one of the thirty, as late as can be.
        for i in 0..30u128 {
            let t = 100 * (i + 1);
            history.push(put(1, &format!("v{i}"), (t, t + 1)));
            history.push(get(2, Some(&format!("v{i}")), (t + 10, t + 11)));
            history.push(get(2, None, (t + 20, t + 21)));
        }
        let started = Instant::now();
        check(&history).unwrap();
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        // A thirty-first removal has no delete left to explain it.
        history.push(put(1, "w", (5000, 5001)));
        history.push(get(2, None, (5010, 5011)));
        let violation = check(&history).unwrap_err();
        assert!(violation.message.contains("may hold \"w\""), "{violation}");
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
