#!/usr/bin/env bash
# A replica's resident memory before and after a flood of client sessions
# (issue 11, "bounded memory under hostile load"): impl/examples/session_flood.rs
# steps one in-process KV replica (n = 1, the runtime's checkpoint interval)
# with REQUESTS requests, half of them Registers from new clients and half
# each new client's first put, once with the default client_table_max and
# once with the table unbounded, and prints VmRSS before, when the table
# filled, and after. The runtime's client-address map is not part of it.
#
#   bash bench/session-flood.sh            # REQUESTS=1000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000000}
cargo build --release --locked -p vr --example session_flood >&2
for max in 10000 18446744073709551615; do
  echo "== client_table_max = $max"
  ./target/release/examples/session_flood --requests "$REQUESTS" --client-table-max "$max"
done
