//! A level-by-level breadth-first search that keeps only one level of full
//! states, and none at the depth bound.
//!
//! stateright's breadth-first checker queues every state it generates, the
//! full state, until a thread pops it; under a depth bound it queues the
//! states one step past the bound as well, only to drop them unchecked when
//! they are popped. That last level is the largest (each level of this model
//! is four to five times the one before), so most of the memory of a bounded
//! run went to states that were never checked. With more than one thread its
//! order is not strictly breadth-first either: a state first reached on a
//! longer path is recorded at that depth, and under a bound the part of its
//! subtree past the bound from there is never explored, although a shorter
//! path reaches it.
//!
//! This search explores the same states, counts them the same way, and
//! checks the same properties on the same states as stateright's
//! breadth-first search with one thread, but:
//! - it finishes one level before it starts the next, whatever the number of
//!   threads, so every state is explored at its least depth;
//! - a state at the last level the bound checks is checked, and its
//!   successors counted, as soon as it is generated, and is then dropped:
//!   only the levels before it are ever held in full;
//! - a state one step past the bound is only fingerprinted and counted (it
//!   is never checked, as in stateright's search), and it is kept as a
//!   fingerprint only.
//!
//! For the counterexample and witness paths it keeps, per checked state, the
//! fingerprint of the state it was first reached from, and replays the path
//! from the initial state when asked (stateright's checker did the same
//! before it kept action indices per queued state).

use stateright::{Checker, Expectation, Model, Path};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A state's 64-bit hash: its identity in the search.
type Fingerprint = u64;

/// The fingerprint of no state: the parent recorded for an initial state.
const ROOT: Fingerprint = 0;

/// States per unit of work a thread takes from the level it expands.
const CHUNK: usize = 512;

/// Shards of the fingerprint tables, so that threads rarely wait on a lock.
const SHARDS: usize = 64;

/// Fingerprints are hashes already: a table keyed by them need not hash
/// them again.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByFingerprint = BuildHasherDefault<Identity>;

/// A state's fingerprint: a hash with fixed keys, so that runs agree.
fn fingerprint<T: Hash>(value: &T) -> Fingerprint {
    let keys = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    // 0 stands for "no parent".
    keys.hash_one(value).max(1)
}

fn shard(fp: Fingerprint) -> usize {
    // A table uses the low bits for the bucket and the top seven as a tag:
    // bits in between pick the shard.
    (fp >> 40) as usize % SHARDS
}

/// What the search threads share with the checker's owner.
struct Shared {
    /// States generated within the boundary, repeats included.
    states: AtomicUsize,
    /// Checked (and initial) states, by fingerprint, with the fingerprint of
    /// the state each was first reached from.
    seen: Vec<Mutex<HashMap<Fingerprint, Fingerprint, ByFingerprint>>>,
    /// States one step past the depth bound: counted, never checked.
    beyond: Vec<Mutex<HashSet<Fingerprint, ByFingerprint>>>,
    /// Unique states past the bound that are not also among the checked
    /// ones, once the search is done.
    beyond_unique: AtomicUsize,
    /// The deepest level generated, counted from 1 for the initial states
    /// (as stateright counts).
    max_depth: AtomicUsize,
    /// Per property, the state that first violated (`always`) or witnessed
    /// (`sometimes`) it.
    discoveries: Mutex<HashMap<&'static str, Fingerprint>>,
    /// Whether each property (by index) has a discovery: read on every
    /// state, so kept apart from the map.
    discovered: Vec<AtomicBool>,
    /// Set when the search finished or was told to stop.
    done: AtomicBool,
    /// Set by the owner to abandon the search.
    stop: AtomicBool,
}

impl Shared {
    /// Records `fp` as reached from `parent`; false if it was already seen.
    fn insert(&self, fp: Fingerprint, parent: Fingerprint) -> bool {
        let mut seen = self.seen[shard(fp)]
            .lock()
            .expect("no thread panics holding it");
        match seen.entry(fp) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(parent);
                true
            }
        }
    }

    fn parent(&self, fp: Fingerprint) -> Option<Fingerprint> {
        self.seen[shard(fp)]
            .lock()
            .expect("no thread panics holding it")
            .get(&fp)
            .copied()
    }

    fn seen_count(&self) -> usize {
        self.seen
            .iter()
            .map(|s| s.lock().expect("no thread panics holding it").len())
            .sum()
    }
}

/// The search under way, or done.
pub struct LevelBfs<M: Model> {
    model: Arc<M>,
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl<M> LevelBfs<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Clone + PartialEq + Send + Sync + 'static,
    M::Action: Clone + PartialEq,
{
    /// Starts searching `model` with `threads` threads, checking every state
    /// at most `depth` steps from an initial state (all of them if None), and
    /// stopping at the first violation of an `always` property.
    pub fn spawn(model: M, threads: usize, depth: Option<usize>) -> LevelBfs<M> {
        let model = Arc::new(model);
        // Progress is checked as `always` properties (see liveness.rs):
        // this search has no notion of `eventually` and would report one
        // as holding.
        assert!(
            model
                .properties()
                .iter()
                .all(|p| p.expectation != Expectation::Eventually),
            "the level search checks no `eventually` property"
        );
        let properties = model.properties().len();
        let shared = Arc::new(Shared {
            states: AtomicUsize::new(0),
            seen: (0..SHARDS).map(|_| Mutex::default()).collect(),
            beyond: (0..SHARDS).map(|_| Mutex::default()).collect(),
            beyond_unique: AtomicUsize::new(0),
            max_depth: AtomicUsize::new(0),
            discoveries: Mutex::default(),
            discovered: (0..properties).map(|_| AtomicBool::new(false)).collect(),
            done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let search = Search {
            model: Arc::clone(&model),
            shared: Arc::clone(&shared),
            threads: threads.max(1),
            depth,
        };
        let handle = std::thread::Builder::new()
            .name("bfs".into())
            .spawn(move || search.run())
            .expect("a thread starts");
        LevelBfs {
            model,
            shared,
            handles: vec![handle],
        }
    }

    /// The path from an initial state to the state `fp`, replayed.
    fn path_to(&self, fp: Fingerprint) -> Option<Path<M::State, M::Action>> {
        let mut fingerprints = vec![fp];
        let mut at = fp;
        loop {
            let parent = self.shared.parent(at)?;
            if parent == ROOT {
                break;
            }
            fingerprints.push(parent);
            at = parent;
        }
        fingerprints.reverse();
        let init = self
            .model
            .init_states()
            .into_iter()
            .find(|s| fingerprint(s) == fingerprints[0])?;
        let mut actions = Vec::new();
        let mut state = init.clone();
        for &next in &fingerprints[1..] {
            let (action, reached) = self
                .model
                .next_steps(&state)
                .into_iter()
                .find(|(_, s)| fingerprint(s) == next)?;
            actions.push(action);
            state = reached;
        }
        Path::from_actions(&*self.model, init, &actions)
    }
}

impl<M: Model> Drop for LevelBfs<M> {
    fn drop(&mut self) {
        // An abandoned search (a timeout) stops at its next unit of work.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

impl<M> Checker<M> for LevelBfs<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Clone + PartialEq + Send + Sync + 'static,
    M::Action: Clone + PartialEq,
{
    fn model(&self) -> &M {
        &self.model
    }

    fn state_count(&self) -> usize {
        self.shared.states.load(Ordering::Relaxed)
    }

    fn unique_state_count(&self) -> usize {
        let beyond = if self.shared.done.load(Ordering::Acquire) {
            self.shared.beyond_unique.load(Ordering::Relaxed)
        } else {
            // Under way: some of these may turn out to be checked states.
            self.shared
                .beyond
                .iter()
                .map(|s| s.lock().expect("no thread panics holding it").len())
                .sum()
        };
        self.shared.seen_count() + beyond
    }

    fn max_depth(&self) -> usize {
        self.shared.max_depth.load(Ordering::Relaxed)
    }

    fn discoveries(&self) -> HashMap<&'static str, Path<M::State, M::Action>> {
        let found: Vec<(&'static str, Fingerprint)> = self
            .shared
            .discoveries
            .lock()
            .expect("no thread panics holding it")
            .iter()
            .map(|(&name, &fp)| (name, fp))
            .collect();
        found
            .into_iter()
            .filter_map(|(name, fp)| Some((name, self.path_to(fp)?)))
            .collect()
    }

    fn handles(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.handles)
    }

    fn is_done(&self) -> bool {
        // A search that panicked (a core assertion failing in a step) never
        // sets `done`: its thread has ended, so it is done too, and `join`
        // raises its panic instead of the caller waiting for ever.
        self.shared.done.load(Ordering::Acquire) || self.handles.iter().all(|h| h.is_finished())
    }
}

/// The search itself, run on its own thread, with helpers for each level.
struct Search<M: Model> {
    model: Arc<M>,
    shared: Arc<Shared>,
    threads: usize,
    depth: Option<usize>,
}

impl<M> Search<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Clone + PartialEq + Send + Sync + 'static,
    M::Action: Clone + PartialEq,
{
    fn run(self) {
        let properties = self.model.properties();
        let mut level: Vec<(M::State, Fingerprint)> = Vec::new();
        for state in self.model.init_states() {
            if !self.model.within_boundary(&state) {
                continue;
            }
            self.shared.states.fetch_add(1, Ordering::Relaxed);
            let fp = fingerprint(&state);
            if self.shared.insert(fp, ROOT) {
                self.check(&properties, &state, fp);
                level.push((state, fp));
            }
        }
        self.reached(0);
        let mut steps = 0;
        while !level.is_empty() && !self.finished() {
            level = self.expand_level(level, steps);
            steps += 1;
        }
        // The states past the bound that no shorter path reached.
        let beyond_unique: usize = self
            .shared
            .beyond
            .iter()
            .map(|b| {
                let b = b.lock().expect("no thread panics holding it");
                b.iter()
                    .filter(|&&fp| self.shared.parent(fp).is_none())
                    .count()
            })
            .sum();
        self.shared
            .beyond_unique
            .store(beyond_unique, Ordering::Relaxed);
        self.shared.done.store(true, Ordering::Release);
    }

    /// Whether to stop: told to, or an `always` property is violated.
    fn finished(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed) || {
            let found = self
                .shared
                .discoveries
                .lock()
                .expect("no thread panics holding it");
            self.model
                .properties()
                .iter()
                .any(|p| p.expectation == Expectation::Always && found.contains_key(p.name))
        }
    }

    fn reached(&self, steps: usize) {
        self.shared
            .max_depth
            .fetch_max(steps + 1, Ordering::Relaxed);
    }

    /// Expands every state of `level` (each `steps` from the start) on the
    /// search's threads, freeing each unit of work once done, and returns
    /// the next level's states that are to be expanded in turn.
    fn expand_level(
        &self,
        level: Vec<(M::State, Fingerprint)>,
        steps: usize,
    ) -> Vec<(M::State, Fingerprint)> {
        let mut chunks: Vec<Vec<(M::State, Fingerprint)>> = Vec::new();
        let mut level = level.into_iter().peekable();
        while level.peek().is_some() {
            chunks.push(level.by_ref().take(CHUNK).collect());
        }
        let work = Mutex::new(chunks);
        let next = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.threads {
                scope.spawn(|| {
                    let properties = self.model.properties();
                    let mut found = Vec::new();
                    let mut actions = Vec::new();
                    loop {
                        if self.shared.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let chunk = work.lock().expect("no thread panics holding it").pop();
                        let Some(chunk) = chunk else { break };
                        for (state, fp) in chunk {
                            self.expand(&properties, &state, fp, steps, &mut actions, &mut found);
                        }
                        if self.violated(&properties) {
                            break;
                        }
                    }
                    next.lock()
                        .expect("no thread panics holding it")
                        .append(&mut found);
                });
            }
        });
        next.into_inner().expect("no thread panics holding it")
    }

    /// Generates the successors of `state` (at `steps`) within the
    /// boundary. Those the bound lets the search check are checked, once
    /// each; those of the last checked level are expanded at once (their own
    /// successors only counted) and the others pushed onto `next`.
    fn expand(
        &self,
        properties: &[stateright::Property<M>],
        state: &M::State,
        fp: Fingerprint,
        steps: usize,
        actions: &mut Vec<M::Action>,
        next: &mut Vec<(M::State, Fingerprint)>,
    ) {
        let child_steps = steps + 1;
        self.model.actions(state, actions);
        let generated: Vec<M::Action> = std::mem::take(actions);
        for action in generated {
            let Some(child) = self.model.next_state(state, action) else {
                continue;
            };
            if !self.model.within_boundary(&child) {
                continue;
            }
            self.shared.states.fetch_add(1, Ordering::Relaxed);
            let child_fp = fingerprint(&child);
            self.reached(child_steps);
            if self.depth.is_some_and(|d| child_steps > d) {
                // Past the bound: counted as stateright counts it, never
                // checked.
                self.shared.beyond[shard(child_fp)]
                    .lock()
                    .expect("no thread panics holding it")
                    .insert(child_fp);
                continue;
            }
            if !self.shared.insert(child_fp, fp) {
                continue;
            }
            self.check(properties, &child, child_fp);
            if self.depth == Some(child_steps) {
                let mut none = Vec::new();
                self.expand(
                    properties,
                    &child,
                    child_fp,
                    child_steps,
                    actions,
                    &mut none,
                );
                debug_assert!(none.is_empty());
            } else {
                next.push((child, child_fp));
            }
        }
    }

    /// Checks every property not yet discovered on `state`.
    fn check(&self, properties: &[stateright::Property<M>], state: &M::State, fp: Fingerprint) {
        for (i, property) in properties.iter().enumerate() {
            if self.shared.discovered[i].load(Ordering::Relaxed) {
                continue;
            }
            let holds = (property.condition)(&self.model, state);
            let discovered = match property.expectation {
                Expectation::Always => !holds,
                Expectation::Sometimes => holds,
                // Refused in `spawn`.
                Expectation::Eventually => false,
            };
            if discovered {
                let mut found = self
                    .shared
                    .discoveries
                    .lock()
                    .expect("no thread panics holding it");
                found.entry(property.name).or_insert(fp);
                self.shared.discovered[i].store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether an `always` property is violated.
    fn violated(&self, properties: &[stateright::Property<M>]) -> bool {
        properties.iter().enumerate().any(|(i, p)| {
            p.expectation == Expectation::Always
                && self.shared.discovered[i].load(Ordering::Relaxed)
        })
    }
}
