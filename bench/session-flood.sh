#!/usr/bin/env bash
# A replica's resident memory before and after a flood of client sessions
# (issue 11, "bounded memory under hostile load"), in process; see
# bench/client-flood.sh for three real replica processes.
#
# In process (impl/examples/session_flood.rs): one KV replica (n = 1, the
#    runtime's checkpoint interval) stepped with REQUESTS requests, half of
#    them Registers from new clients and half each new client's first put,
#    with the default client_table_max and with the table unbounded; VmRSS
#    before, when the table filled, at each quarter and after.
#
#   bash bench/session-flood.sh            # REQUESTS=1000000
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000000}
cargo build --release --locked -p vr --bins --example session_flood >&2
for max in 10000 18446744073709551615; do
  echo "== in process, client_table_max = $max"
  ./target/release/examples/session_flood --requests "$REQUESTS" --client-table-max "$max"
done

