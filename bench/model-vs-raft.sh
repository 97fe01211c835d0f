#!/usr/bin/env bash
# Model-checking speed: vr-model's scenarios beside stateright's own Raft
# example, in one run on this machine, with the ratio of unique states per
# second. The Raft example is built from the stateright source cargo already
# downloaded for this workspace, in a scratch directory outside the
# repository; nothing of it is copied here.
#
#   bash bench/model-vs-raft.sh                 # every scenario
#   bash bench/model-vs-raft.sh --scenario default --json
#
# Extra arguments go to `vr-model bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p vr-model
cargo fetch --locked >/dev/null

version=$(cargo metadata --format-version 1 --locked \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "stateright"))')
source=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/stateright-"$version" | head -n 1)
if [ ! -d "$source" ]; then
  echo "error: stateright $version's source is not in cargo's registry" >&2
  exit 1
fi
scratch="${TMPDIR:-/tmp}/vr-bench-stateright-$version"
if [ ! -d "$scratch/src" ]; then
  rm -rf "$scratch"
  cp -r "$source" "$scratch"
fi
echo "building stateright $version's Raft example in $scratch" >&2
(cd "$scratch" && CARGO_TARGET_DIR="$scratch/target" cargo build --release --example raft >&2)

./target/release/vr-model bench --raft "$scratch/target/release/examples/raft" "$@"
