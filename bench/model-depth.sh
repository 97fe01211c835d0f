#!/usr/bin/env bash
# For each named scenario of the model (default: all), the deepest depth bound
# that `vr-model check` explores exhaustively within a time and a memory
# limit: it checks the scenario at its own depth bound, then one step deeper,
# and so on, and stops at the first depth whose run is cut short by the
# deadline (--timeout) or is killed for passing the memory limit.
#
#   bash bench/model-depth.sh                  # every scenario
#   bash bench/model-depth.sh default fill     # some
#
# Settings (environment):
#   TIME_LIMIT=600        seconds per run (vr-model check --timeout)
#   MEMORY_LIMIT_GIB=8    a run whose resident memory passes this is killed
#   THREADS=2             checker threads
#   PREDICT=0             1: do not start a run that the growth of the last
#                         two runs predicts to take more than PREDICT_FACTOR
#                         times the time limit (it is reported as
#                         "predicted"); saves up to TIME_LIMIT per scenario,
#                         at the risk of stopping one depth short
#   PREDICT_FACTOR=2
#
# One row per scenario: the deepest depth completed, its unique and total
# states, wall-clock seconds, peak resident memory (/usr/bin/time), the
# result of that run (pass: every property holds and every behaviour of
# interest was reached) and why the next depth was not reached.
set -euo pipefail
cd "$(dirname "$0")/.."

TIME_LIMIT=${TIME_LIMIT:-600}
MEMORY_LIMIT_GIB=${MEMORY_LIMIT_GIB:-8}
THREADS=${THREADS:-2}
PREDICT=${PREDICT:-0}
PREDICT_FACTOR=${PREDICT_FACTOR:-2}
limit_kib=$((MEMORY_LIMIT_GIB * 1024 * 1024))

cargo build --release -p vr-model >&2
bin=${CARGO_TARGET_DIR:-target}/release/vr-model

if [ $# -gt 0 ]; then
    scenarios=("$@")
else
    mapfile -t scenarios < <("$bin" scenarios | awk '{print $1}')
fi

work=$(mktemp -d -t vr-model-depth-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Runs scenario $1 at depth $2; leaves the JSON report in $work/out, the peak
# resident KiB in $work/peak, and prints "done", "timeout" or "memory".
run() {
    local scenario=$1 depth=$2
    /usr/bin/time -f "%M" -o "$work/peak" \
        "$bin" check --scenario "$scenario" --depth "$depth" --threads "$THREADS" \
        --timeout "$TIME_LIMIT" --json > "$work/out" 2> /dev/null &
    local timer=$! child="" killed=0
    while kill -0 "$timer" 2> /dev/null; do
        sleep 1
        [ -n "$child" ] || child=$(pgrep -P "$timer" || true)
        if [ -n "$child" ]; then
            local rss
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/$child/status" 2> /dev/null || echo 0)
            if [ "${rss:-0}" -gt "$limit_kib" ]; then
                kill "$child" 2> /dev/null || true
                killed=1
            fi
        fi
    done
    wait "$timer" || true
    if [ "$killed" = 1 ]; then
        echo memory
    elif [ "$(jq -r '.complete' "$work/out" 2> /dev/null)" = true ]; then
        echo done
    else
        echo timeout
    fi
}

printf '%-20s %6s %12s %12s %9s %9s  %-6s %s\n' \
    scenario depth unique total seconds "peak MiB" result "next depth"
for scenario in "${scenarios[@]}"; do
    depth=$("$bin" scenarios | awk -v s="$scenario" '$1 == s {for (i = 1; i < NF; i++) if ($i == "depth") print $(i + 1)}' | tr -d ')')
    if [ -z "$depth" ]; then
        echo "no scenario $scenario with a depth bound" >&2
        exit 2
    fi
    best="" previous_seconds="" why=""
    while :; do
        if [ "$PREDICT" = 1 ] && [ -n "$previous_seconds" ] && [ -n "$best" ]; then
            last_seconds=$(echo "$best" | awk '{print $5}')
            predicted=$(awk -v a="$previous_seconds" -v b="$last_seconds" 'BEGIN {g = (a > 0.5) ? b / a : 5; printf "%.0f", b * g}')
            if awk -v p="$predicted" -v f="$PREDICT_FACTOR" -v t="$TIME_LIMIT" 'BEGIN {exit !(p > f * t)}'; then
                why="$depth: predicted ${predicted}s, not run"
                break
            fi
        fi
        echo "  $scenario at depth $depth ..." >&2
        outcome=$(run "$scenario" "$depth")
        if [ "$outcome" != done ]; then
            why="$depth: $outcome"
            break
        fi
        result=$(jq -r 'if ([.properties[] | select(.status != "holds" and .status != "witnessed")] | length) == 0 then "pass" else "FAIL" end' "$work/out")
        row=$(jq -r --arg s "$scenario" --arg peak "$(cat "$work/peak")" --arg r "$result" \
            '[$s, .max_depth, .unique_states, .states, (.seconds | floor), (($peak | tonumber) / 1024 | floor), $r] | @tsv' "$work/out")
        [ -n "$best" ] && previous_seconds=$(echo "$best" | awk '{print $5}')
        best=$row
        echo "  $row" >&2
        depth=$((depth + 1))
    done
    if [ -n "$best" ]; then
        echo "$best" | awk -v why="$why" '{printf "%-20s %6s %12s %12s %9s %9s  %-6s %s\n", $1, $2, $3, $4, $5, $6, $7, why}'
    else
        printf '%-20s %6s %12s %12s %9s %9s  %-6s %s\n' "$scenario" - - - - - - "$why"
    fi
done
