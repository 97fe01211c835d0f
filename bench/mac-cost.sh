#!/usr/bin/env bash
# The cost of authentication: `vr bench --clients 64 --duration 10` against
# `vr cluster`, alternating a build without it (BASE: a `vr` binary built
# from a commit before authentication, for example main at 23998b3, which has
# everything else) and one with it (NEW, default this checkout's release
# build), ROUNDS times each.
#
#   mkdir /tmp/vr-base && git archive 23998b3 | tar -x -C /tmp/vr-base
#   (cd /tmp/vr-base && cargo build --release -p vr --bin vr)
#   bench/mac-cost.sh /tmp/vr-base/target/release/vr
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/mac-cost.sh BASE_VR [NEW_VR]}
NEW=${2:-${CARGO_TARGET_DIR:-target}/release/vr}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-7500}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
# one NAME VR [ARGS]: ARGS (the key file, for NEW) go to both commands.
one() {
  local name=$1 vr=$2
  shift 2
  RUST_LOG=warn "$vr" cluster --port "$PORT" "$@" >/dev/null 2>&1 &
  local cluster=$!
  sleep 1
  local addresses="127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))"
  printf '%-8s ' "$name"
  "$vr" bench --cluster "$addresses" --clients "$CLIENTS" --duration "$DURATION" "$@" 2>&1 |
    tail -1
  echo
  kill "$cluster"
  wait "$cluster" 2>/dev/null || true
}
for _ in $(seq "$ROUNDS"); do
  one without "$BASE"
  one with "$NEW" --cluster-key-file "$dir/cluster.key"
done
