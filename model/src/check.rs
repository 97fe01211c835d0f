//! Running the checker and reporting what it found: every property's status,
//! the totals, and each discovery's trace as readable steps.

use crate::actors::{ActorState, ModelTimer, Msg, VrActor};
use crate::bfs::LevelBfs;
use crate::model::{ModelConfig, VrModel, VrState};
use serde::Serialize;
use stateright::actor::{ActorModelAction, Id};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, Property, UniformChooser};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Breadth-first, level by level ([`crate::bfs`]): finds the shortest
    /// counterexample; keeps the fingerprint of every state, and the full
    /// states of one level at a time.
    Bfs,
    /// Depth-first: much less memory.
    Dfs,
    /// Random walks (not exhaustive): for models too large to exhaust.
    Simulation,
}

/// How a run goes, besides the model's bounds.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub strategy: Strategy,
    pub threads: usize,
    pub timeout: Option<Duration>,
    /// Check every path of at most this many steps (None: no limit).
    pub depth: Option<usize>,
    /// Called about once a second with the progress so far.
    pub progress: Option<fn(&Progress)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strategy: Strategy::Bfs,
            threads: 1,
            timeout: None,
            depth: None,
            progress: None,
        }
    }
}

/// Progress of a run under way.
#[derive(Clone, Debug)]
pub struct Progress {
    pub states: usize,
    pub unique_states: usize,
    pub depth: usize,
    pub seconds: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub states: usize,
    pub unique_states: usize,
    /// Steps on the longest path explored.
    pub max_depth: usize,
    pub seconds: f64,
    /// Whether every state within the bounds was explored.
    pub complete: bool,
    /// The search stopped at the first violated invariant.
    pub stopped_at_violation: bool,
    pub properties: Vec<PropertyReport>,
}

/// One property's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct PropertyReport {
    pub name: &'static str,
    /// "always" or "sometimes".
    pub kind: &'static str,
    /// "holds", "violated", "witnessed", "not witnessed", "holds so far"
    /// (incomplete run) or "not checked to the end" (the search stopped at
    /// another property's violation).
    pub status: &'static str,
    /// The steps to the counterexample or witness, if one was found.
    pub trace: Option<Vec<String>>,
}

impl Report {
    /// Every `always` holds and every `sometimes` was witnessed, over a
    /// complete run.
    pub fn passed(&self) -> bool {
        self.complete
            && !self.stopped_at_violation
            && self
                .properties
                .iter()
                .all(|p| p.status == "holds" || p.status == "witnessed")
    }

    /// The report of the property `name`.
    pub fn property(&self, name: &str) -> Option<&PropertyReport> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// States per second over the run.
    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.seconds.max(1e-9)
    }

    /// Unique states per second over the run.
    pub fn unique_states_per_second(&self) -> f64 {
        self.unique_states as f64 / self.seconds.max(1e-9)
    }
}

/// Checks the model of `cfg` with `options`.
pub fn run(model: VrModel, options: &RunOptions) -> Report {
    let started = Instant::now();
    let stateright = |model: VrModel| {
        let builder = model
            .checker()
            .threads(options.threads.max(1))
            .finish_when(HasDiscoveries::AnyFailures);
        match options.depth {
            // stateright counts the initial state as depth 1 and checks only
            // states below its target depth: N steps need a target of N + 2.
            Some(depth) => builder.target_max_depth(depth + 2),
            None => builder,
        }
    };
    match options.strategy {
        Strategy::Bfs => finish(
            LevelBfs::spawn(model, options.threads.max(1), options.depth),
            started,
            options,
        ),
        Strategy::Dfs => finish(stateright(model).spawn_dfs(), started, options),
        Strategy::Simulation => finish(
            stateright(model).spawn_simulation(0, UniformChooser),
            started,
            options,
        ),
    }
}

fn finish(checker: impl Checker<VrModel>, started: Instant, options: &RunOptions) -> Report {
    let mut last = Instant::now();
    let mut timed_out = false;
    while !checker.is_done() {
        // stateright's own timeout does not stop a single search thread that
        // still has work queued, so the deadline is kept here: past it, the
        // report is made from what was explored and the search is abandoned.
        if options.timeout.is_some_and(|t| started.elapsed() >= t) {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Some(progress) = options.progress
            && last.elapsed() >= Duration::from_secs(1)
        {
            last = Instant::now();
            progress(&Progress {
                states: checker.state_count(),
                unique_states: checker.unique_state_count(),
                depth: checker.max_depth().saturating_sub(1),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    let checker = if timed_out { checker } else { checker.join() };
    let seconds = started.elapsed().as_secs_f64();
    let timed_out = timed_out || options.timeout.is_some_and(|t| started.elapsed() >= t);
    let model = checker.model();
    let discoveries = checker.discoveries();
    let failed = model
        .properties()
        .iter()
        .any(|p| p.expectation == Expectation::Always && discoveries.contains_key(p.name));
    // Exhaustive: nothing cut short by the deadline or a violation, not a
    // random walk, and not depth-first under a depth bound (which may skip
    // states first reached near the bound).
    let depth_first_bounded = options.strategy == Strategy::Dfs && options.depth.is_some();
    let complete =
        !(timed_out || failed || depth_first_bounded || options.strategy == Strategy::Simulation);
    let properties = model
        .properties()
        .iter()
        .map(|p| {
            let found = discoveries.get(p.name);
            let (kind, status) = match (&p.expectation, found) {
                (Expectation::Always, None) if failed => ("always", "not checked to the end"),
                (Expectation::Sometimes, None) if failed => ("sometimes", "not checked to the end"),
                (Expectation::Always, None) if !complete => ("always", "holds so far"),
                (Expectation::Always, None) => ("always", "holds"),
                (Expectation::Always, Some(_)) => ("always", "violated"),
                (Expectation::Sometimes, Some(_)) => ("sometimes", "witnessed"),
                (Expectation::Sometimes, None) => ("sometimes", "not witnessed"),
                (Expectation::Eventually, None) => ("eventually", "holds"),
                (Expectation::Eventually, Some(_)) => ("eventually", "violated"),
            };
            PropertyReport {
                name: p.name,
                kind,
                status,
                trace: found.map(|path| trace(model, path, p)),
            }
        })
        .collect();
    Report {
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        // The deepest state stateright reached, less the initial state; with
        // a bound, states past it were reached but not explored.
        max_depth: checker
            .max_depth()
            .saturating_sub(1)
            .min(options.depth.unwrap_or(usize::MAX)),
        seconds,
        complete,
        stopped_at_violation: failed,
        properties,
    }
}

/// The steps of `path` up to the first state that violates (`always`) or
/// witnesses (`sometimes`) `property` (stateright may record a longer path
/// than needed): each action, then every replica's status, view, op-number
/// and commit-number after it.
pub fn trace(
    model: &VrModel,
    path: &Path<VrState, ActorModelAction<Msg, ModelTimer, ()>>,
    property: &Property<VrModel>,
) -> Vec<String> {
    let reached = |state: &VrState| match property.expectation {
        Expectation::Sometimes => (property.condition)(model, state),
        Expectation::Always | Expectation::Eventually => !(property.condition)(model, state),
    };
    let mut steps = Vec::new();
    for (state, action) in path.clone().into_vec() {
        if reached(&state) {
            break;
        }
        let Some(action) = action else {
            continue;
        };
        let mut line = describe(model, &action);
        if let Some(next) = model.next_state(&state, action) {
            let _ = write!(line, "  =>  {}", summary(model, &next));
        }
        steps.push(line);
    }
    steps
}

fn name(model: &VrModel, id: Id) -> String {
    match model.actors.get(usize::from(id)) {
        Some(VrActor::Replica { config, .. } | VrActor::Down { config }) => {
            format!("r{}", config.id())
        }
        Some(VrActor::Client { .. }) => {
            format!(
                "client{}",
                usize::from(id) - usize::from(model.cfg.replicas)
            )
        }
        None => format!("{id:?}"),
    }
}

/// One action as a sentence.
pub fn describe(model: &VrModel, action: &ActorModelAction<Msg, ModelTimer, ()>) -> String {
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            format!("{} -> {}: {msg:?}", name(model, *src), name(model, *dst))
        }
        ActorModelAction::Drop(envelope) => format!(
            "lost {} -> {}: {:?}",
            name(model, envelope.src),
            name(model, envelope.dst),
            envelope.msg
        ),
        ActorModelAction::Timeout(id, ModelTimer::Replica(timer)) => {
            format!("{} timer {timer:?} fires", name(model, *id))
        }
        ActorModelAction::Timeout(id, ModelTimer::ClientRetry) => {
            format!("{} retries", name(model, *id))
        }
        ActorModelAction::Crash(id) => format!("{} crashes", name(model, *id)),
        ActorModelAction::Recover(id) => format!("{} restarts", name(model, *id)),
        ActorModelAction::SelectRandom { actor, .. } => format!("{} chooses", name(model, *actor)),
    }
}

/// Every replica's status, view, op-number and commit-number.
pub fn summary(model: &VrModel, state: &VrState) -> String {
    let mut parts = Vec::new();
    for (i, actor) in state.actor_states.iter().enumerate() {
        if let ActorState::Down = &**actor {
            parts.push(format!("r{i} down"));
        } else if let ActorState::Replica(r) = &**actor {
            let r = &r.replica;
            if state.crashed[i] {
                parts.push(format!("r{i} crashed"));
            } else {
                parts.push(format!(
                    "r{i} {:?} {:?} {:?} {:?}",
                    r.status(),
                    r.view(),
                    r.op_number(),
                    r.commit_number()
                ));
            }
        }
    }
    let _ = model;
    parts.join(" | ")
}

/// The model of `cfg`, or the configuration error.
pub fn build(cfg: ModelConfig) -> Result<VrModel, vr::core::ConfigError> {
    cfg.into_model()
}
