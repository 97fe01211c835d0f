#!/usr/bin/env bash
# A replica's resident memory before and after a flood of client sessions
# (issue 11, "bounded memory under hostile load"), two ways:
#
# 1. In process (impl/examples/session_flood.rs): one KV replica (n = 1, the
#    runtime's checkpoint interval) stepped with REQUESTS requests, half of
#    them Registers from new clients and half each new client's first put,
#    with the default client_table_max and with the table unbounded; VmRSS
#    before, when the table filled, at each quarter and after.
# 2. Real processes: three `vr replica` processes on loopback (in-memory
#    mode, client_table_max = 10000), REQUESTS Registers from distinct
#    provisional ids sent to the primary (impl/examples/register_flood.rs,
#    RATE a second); VmRSS of each replica before and after, and the
#    commit-number reached (each executed Register is one entry). Replica 0
#    (the primary while it stays one) also holds the runtime's
#    client-address map, which is main's here: not bounded (branch auth
#    bounds it). A view change during the flood moves the primary away from
#    replica 0, which then drops the rest (the status shows the view).
#
#   bash bench/session-flood.sh            # REQUESTS=1000000 RATE=50000
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000000}
RATE=${RATE:-50000}
cargo build --release --locked -p vr --bins --example session_flood --example register_flood >&2
for max in 10000 18446744073709551615; do
  echo "== in process, client_table_max = $max"
  ./target/release/examples/session_flood --requests "$REQUESTS" --client-table-max "$max"
done

VR=$PWD/target/release/vr
work=$(mktemp -d "$PWD/target/vr-session-flood.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
port=7460
cfg=$work/cluster.toml
{
  echo "cluster_id = 1"
  echo "durable = false"
  echo "client_table_max = 10000"
  for i in 0 1 2; do printf '\n[[replica]]\nid = %d\naddress = "127.0.0.1:%d"\n' "$i" $((port + i)); done
} >"$cfg"
for i in 0 1 2; do
  RUST_LOG=warn "$VR" replica --config "$cfg" --id "$i" --fresh >>"$work/$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do "$VR" put warm-up 1 --config "$cfg" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "== 3 vr replica processes, client_table_max = 10000, $REQUESTS Registers at $RATE/s"
each() { echo "replica 0 $(rss "${pids[0]}") KiB, replica 1 $(rss "${pids[1]}") KiB, replica 2 $(rss "${pids[2]}") KiB"; }
echo "before: $(each)"
"$VR" status --config "$cfg"
./target/release/examples/register_flood --address "127.0.0.1:$port" --count "$REQUESTS" --rate "$RATE"
sleep 2
echo "after: $(each)"
"$VR" status --config "$cfg"
