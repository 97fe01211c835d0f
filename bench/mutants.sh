#!/usr/bin/env bash
# Mutation score of the protocol core (impl/src/core) against the model
# checker's scenarios and the simulator alone: cargo-mutants changes one spot
# of the core at a time (a function body replaced by a default value, an
# operator swapped, a condition negated, ...) and counts the mutant killed when
# these tests fail:
#
#   - model/tests/checker.rs: every named scenario at a few steps, the prelude
#     scenarios at their depth bounds, the default model at six steps;
#   - model/tests/malformed.rs: the `malformed` scenario's claim that each of
#     its messages, at the scenario's start, is refused by the guard named
#     for it (a guard weakened so that a message gets through changes the
#     receiver, but within the scenario's bound need not break a property);
#   - tests/tests/simulation.rs: the seeded simulator at CI's seed count.
#
# Not in the test command: the core's unit tests, the hand-written scenario
# tests (tests/tests/view_change.rs and friends), the pinned state count and
# the tests that expect a deliberately wrong variant to be caught (they ask
# whether the checker catches a known bug, not whether the core is right).
#
# Not mutated: impl/src/core/invariants.rs (the checker's own predicates: a
# weakened invariant is the test, not the code under test), Debug/Display
# impls, and the wrong-variant switches of Config (feature wrong-variants,
# off in every build but the model's tests).
#
#   bash bench/mutants.sh                    # every mutant (hours on 2 cores)
#   SHARD=0/16 bash bench/mutants.sh         # a 1-in-16 sample, round-robin
#   bash bench/mutants.sh --list             # extra arguments go to cargo mutants
#
# Results: mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt,
# unviable.txt). The score is (caught + timeout) / (caught + missed + timeout):
# a mutant that makes a test hang is caught too, but the count is shown apart,
# since a loaded machine can time out a mutant that would have passed.
#
# Needs cargo-mutants (`cargo install cargo-mutants`). IN_PLACE=1 mutates
# this tree in place (no copy, reuses target/): only on a tree nobody edits.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants > /dev/null || {
    echo "mutants: cargo-mutants is not installed: cargo install cargo-mutants" >&2
    exit 2
}

args=(
    --file 'impl/src/core/*.rs'
    --exclude impl/src/core/invariants.rs
    --exclude-re 'impl (fmt::)?(Debug|Display) for'
    --exclude-re '(with_bug|has_bug|is_wrong_variant)'
    --test-package vr-model --test-package vr-tests
)
[ -n "${SHARD:-}" ] && args+=(--shard "$SHARD" --sharding round-robin)
if [ -n "${IN_PLACE:-}" ]; then args+=(--in-place); else args+=(--jobs 1); fi

# cargo-mutants 27 runs its baseline on the mutated package's tests only, not
# on --test-package's: run the baseline here, and give each mutant five times
# its test time (at least 5 minutes) before counting it as timed out.
test_args=(--test checker --test malformed --test simulation -- --skip pinned_number --skip is_caught --skip catches --skip timeout)
cargo test --profile mutants -p vr-model -p vr-tests --no-run --test checker --test malformed --test simulation
start=$(date +%s)
cargo test --profile mutants -p vr-model -p vr-tests "${test_args[@]}" || {
    echo "mutants: the tests fail on the unmutated tree" >&2
    exit 1
}
baseline=$(($(date +%s) - start))
timeout=$((baseline * 5 > 300 ? baseline * 5 : 300))
echo "baseline: ${baseline}s; timeout per mutant: ${timeout}s"
args+=(--baseline skip --timeout "$timeout" --build-timeout "$timeout" --profile mutants)

status=0
cargo mutants "${args[@]}" "$@" -- "${test_args[@]}" || status=$?

out=mutants.out
[ -f "$out/caught.txt" ] || exit "$status"
caught=$(wc -l < "$out/caught.txt")
missed=$(wc -l < "$out/missed.txt")
timeout=$(wc -l < "$out/timeout.txt")
unviable=$(wc -l < "$out/unviable.txt")
viable=$((caught + missed + timeout))
echo "viable mutants: $viable (unviable: $unviable); caught $caught, missed $missed, timed out $timeout"
[ "$viable" -gt 0 ] && python3 -c "print(f'score: {100.0 * ($caught + $timeout) / $viable:.1f}% of viable mutants caught')"
exit $status
