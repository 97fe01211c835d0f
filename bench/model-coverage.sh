#!/usr/bin/env bash
# Line coverage of the protocol core (impl/src/core) by the model checker's
# named scenarios alone: no unit test, no hand-written scenario test, no
# simulator. Each scenario runs `vr-model check --scenario NAME` at its own
# depth bound (or DEPTH, if set) in a coverage-instrumented release build with
# the core's debug assertions on, so that the assertions' lines count too.
#
#   bash bench/model-coverage.sh              # every scenario, then the union
#   SCENARIOS="default fill" bash bench/model-coverage.sh
#   DEPTH=6 bash bench/model-coverage.sh      # every scenario at 6 steps
#
# Prints one row per scenario (the core's lines it covers, all of them and
# without the Debug/Display impls, which format states for traces) and the
# union, and writes the union's per-file table with its unreached lines to
# target/model-coverage/core-files.txt.
#
# Needs cargo-llvm-cov (`cargo install cargo-llvm-cov`) and the
# llvm-tools-preview component (`rustup component add llvm-tools-preview`).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-llvm-cov > /dev/null || {
    echo "model-coverage: cargo-llvm-cov is not installed: cargo install cargo-llvm-cov" >&2
    exit 2
}

export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
out=target/model-coverage
rm -rf "$out"
mkdir -p "$out"

cargo llvm-cov clean --workspace
cargo llvm-cov run --release --no-report -p vr-model --bin vr-model -- scenarios > "$out/scenarios.txt"
profraw_dir=${CARGO_TARGET_DIR:-target}/llvm-cov-target
rm -f "$profraw_dir"/*.profraw

scenarios=${SCENARIOS:-$(awk '{print $1}' "$out/scenarios.txt")}

# The core's covered and coverable lines: all of them, then without the
# formatting (Debug, Display) impls (bench/core-coverage.py).
core_summary() {
    cargo llvm-cov report --release --lcov 2> /dev/null | python3 bench/core-coverage.py
}

printf "%-22s %6s %14s %8s %16s %8s %8s\n" scenario depth "core lines" covered "without fmt" covered seconds
for s in $scenarios; do
    depth_arg=()
    [ -n "${DEPTH:-}" ] && depth_arg=(--depth "$DEPTH")
    start=$(date +%s)
    cargo llvm-cov run --release --no-report -p vr-model --bin vr-model -- \
        check --scenario "$s" "${depth_arg[@]}" > "$out/$s.log" 2>&1 || {
        echo "model-coverage: scenario $s failed; see $out/$s.log" >&2
        exit 1
    }
    seconds=$(($(date +%s) - start))
    mkdir -p "$out/$s"
    mv "$profraw_dir"/*.profraw "$out/$s/"
    cp "$out/$s"/*.profraw "$profraw_dir/"
    read -r covered count percent covered_kept count_kept percent_kept < <(core_summary)
    rm -f "$profraw_dir"/*.profraw
    depth=$(awk -v s="$s" '$1 == s' "$out/scenarios.txt" | sed -n 's/.*depth \([0-9]*\).*/\1/p')
    printf "%-22s %6s %14s %7s%% %16s %7s%% %8s\n" "$s" "${DEPTH:-$depth}" "$covered/$count" "$percent" \
        "$covered_kept/$count_kept" "$percent_kept" "$seconds"
done

for s in $scenarios; do cp "$out/$s"/*.profraw "$profraw_dir/"; done
read -r covered count percent covered_kept count_kept percent_kept < <(core_summary)
printf "%-22s %6s %14s %7s%% %16s %7s%%\n" "all named scenarios" "" "$covered/$count" "$percent" \
    "$covered_kept/$count_kept" "$percent_kept"

cargo llvm-cov report --release --lcov 2> /dev/null | python3 bench/core-coverage.py --files > "$out/core-files.txt"
echo "per-file table and unreached lines of the union: $out/core-files.txt"
