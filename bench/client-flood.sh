#!/usr/bin/env bash
# Resident memory of a 3-replica cluster before and after a flood of requests
# from distinct client ids (issue 11): first COUNT requests without the
# cluster key (an attacker's), then COUNT with it (trusted clients'). Each
# request is a Register (a session request) under a new provisional client
# id, sent to every replica: with the key, each executed one adds a row to
# the client table, which client_table_max (default 10,000) bounds.
#
#   bench/client-flood.sh            # COUNT=1000000, RATE=40000 per second
#   COUNT=200000 bench/client-flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000000}
RATE=${RATE:-40000}
PORT=${PORT:-7300}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p vr --bin vr --example flood >&2
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
"$target/release/vr" keygen "$dir/cluster.key" >/dev/null
{
  echo 'cluster_id = 7'
  echo 'key_file = "cluster.key"'
  for i in 0 1 2; do
    printf '\n[[replica]]\nid = %d\naddress = "127.0.0.1:%d"\n' "$i" $((PORT + i))
  done
} >"$dir/cluster.toml"
pids=()
for i in 0 1 2; do
  RUST_LOG=warn "$target/release/vr" replica --config "$dir/cluster.toml" --id "$i" \
    --data-dir "$dir/data" --fresh 2>"$dir/replica-$i.log" &
  pids+=($!)
done
sleep 1
"$target/release/vr" put warm up --config "$dir/cluster.toml" >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
show() {
  printf '%-34s' "$1"
  for i in 0 1 2; do printf '  replica %d: %7d KiB' "$i" "$(rss "${pids[$i]}")"; done
  echo
}
show "before"
"$target/release/examples/flood" "$dir/cluster.toml" "$COUNT" --without-key --rate "$RATE"
show "after $COUNT without the key"
"$target/release/examples/flood" "$dir/cluster.toml" "$COUNT" --rate "$RATE"
show "after $COUNT more with the key"
"$target/release/vr" status --config "$dir/cluster.toml"
