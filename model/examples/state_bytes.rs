//! Where a model state's memory goes: the heap bytes a successor state adds
//! (what the checker holds per state of a level it keeps), and how they
//! split between the parts of stateright's actor-model state.
//!
//!   cargo run --release -p vr-model --example state_bytes [SCENARIO [STEPS]]
//!
//! It walks SCENARIO (default `default`) breadth-first for STEPS steps
//! (default 7), keeping a sample of a few hundred states per level, then
//! counts, with a counting allocator, the bytes allocated for each successor
//! of the sample and for a copy of each part of it.

use stateright::Model;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        LIVE.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap bytes `make` leaves allocated while its result lives.
fn bytes<T>(make: impl FnOnce() -> T) -> (isize, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let made = make();
    (LIVE.load(Ordering::Relaxed) - before, made)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "default".into());
    let steps: usize = args
        .next()
        .map_or(7, |s| s.parse().expect("STEPS is a number"));
    let scenario = vr_model::scenarios::named(&name).expect("a named scenario");
    let model = scenario.config.into_model().expect("valid bounds");
    println!(
        "inline sizes: state {} B, actor state {} B, message {} B, network envelope {} B",
        size_of::<vr_model::model::VrState>(),
        size_of::<vr_model::actors::ActorState>(),
        size_of::<vr_model::actors::Msg>(),
        size_of::<stateright::actor::Envelope<vr_model::actors::Msg>>(),
    );
    // A deterministic sample of each level.
    let mut level = model.init_states();
    let mut seed = 12_345u64;
    for _ in 0..steps {
        let mut sample = Vec::new();
        for state in &level {
            for next in model.next_states(state) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                if sample.len() < 300
                    && (seed >> 33).is_multiple_of(3)
                    && Model::within_boundary(&model, &next)
                {
                    sample.push(next);
                }
            }
        }
        level = sample;
    }
    let (mut children, mut total, mut network, mut timers, mut actors, mut rest) =
        (0isize, 0, 0, 0, 0, 0);
    for state in &level {
        let mut actions = Vec::new();
        model.actions(state, &mut actions);
        for action in actions {
            let (added, Some(child)) = bytes(|| model.next_state(state, action)) else {
                continue;
            };
            children += 1;
            total += added;
            network += bytes(|| child.network.clone()).0;
            timers += bytes(|| child.timers_set.clone()).0;
            // The actors whose state the step changed (the others are
            // shared with the parent).
            let changed: Vec<&Arc<vr_model::actors::ActorState>> = child
                .actor_states
                .iter()
                .zip(&state.actor_states)
                .filter(|(a, b)| !Arc::ptr_eq(a, b))
                .map(|(a, _)| a)
                .collect();
            actors += bytes(|| {
                changed
                    .iter()
                    .map(|a| Arc::new((***a).clone()))
                    .collect::<Vec<_>>()
            })
            .0;
            rest += bytes(|| {
                (
                    child.actor_states.clone(),
                    child.crashed.clone(),
                    child.actor_storages.clone(),
                    child.random_choices.clone(),
                )
            })
            .0;
        }
    }
    let per = |b: isize| b / children.max(1);
    println!(
        "{name}, {children} successors of {} states {steps} steps in: {} B of heap each; copies of its parts: network {} B, timers {} B, changed actor states {} B, other vectors (actor pointers, crashed flags, storages, random choices) {} B",
        level.len(),
        per(total),
        per(network),
        per(timers),
        per(actors),
        per(rest)
    );
}
