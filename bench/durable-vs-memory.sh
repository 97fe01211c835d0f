#!/usr/bin/env bash
# vr's durable mode beside its in-memory mode, in one run: three `vr replica`
# processes on loopback per mode, data directories on the disk under target/
# (not tmpfs), writes only (`vr bench --read-ratio 0`, 32-byte values over
# 1000 keys) at 1, 16 and 64 clients.
#
#   bash bench/durable-vs-memory.sh        # DURATION=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 16 64"}
cargo build --release --locked -p vr >&2
VR=$PWD/target/release/vr
work=$(mktemp -d "$PWD/target/vr-durable-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
port=7420
for mode in memory durable; do
  cfg=$work/$mode.toml
  {
    echo "cluster_id = 1"
    [ "$mode" = memory ] && echo "durable = false"
    echo "data_dir = \"data-$mode\""
    for i in 0 1 2; do printf '\n[[replica]]\nid = %d\naddress = "127.0.0.1:%d"\n' "$i" $((port + i)); done
  } >"$cfg"
  pids=()
  for i in 0 1 2; do
    RUST_LOG=warn "$VR" replica --config "$cfg" --id "$i" --fresh >>"$work/$mode-$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do "$VR" put warm-up 1 --config "$cfg" >/dev/null 2>&1 && break; sleep 0.1; done
  for c in $CLIENTS; do
    echo "$mode, writes, $c clients: $("$VR" bench --config "$cfg" --clients "$c" --duration "$DURATION" \
      --keys 1000 --value-size 32 --read-ratio 0 2>/dev/null | grep ' ops/s')"
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  port=$((port + 10))
done
