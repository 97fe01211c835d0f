#!/usr/bin/env bash
# vr beside etcd, in one run on this machine: a 3-member etcd and a 3-replica
# vr cluster on loopback, each driven with the same keys (16 bytes, 1000 of
# them) and values (32 bytes) at 1, 16 and 64 concurrent clients, writes then
# reads; then failover, kill -9 of the leader or primary to the next
# acknowledged write, 3 trials each.
#
#   bash bench/compare-etcd.sh            # DURATION=10 TRIALS=3 by default
#
# etcd is Debian's etcd-server, driven through its HTTP/JSON gateway by wrk.
# vr keeps its log in memory, as the paper does (VR_DURABLE=1: in durable mode,
# its data directories and etcd's on the disk under target/, fsync on for
# both); otherwise etcd 3.4
# (Debian's) has no
# --unsafe-no-fsync, so its data directories live on tmpfs (/dev/shm), where
# fsync costs next to nothing. vr is driven by `vr bench`. Everything started
# here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
TRIALS=${TRIALS:-3}
CLIENTS=${CLIENTS:-"1 16 64"}
ETCD_PORT=${ETCD_PORT:-23790}
VR_PORT=${VR_PORT:-7300}

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${need[@]}" >/dev/null; }
fi

cargo build --release --locked -p vr >&2
VR=$PWD/target/release/vr

work=$(mktemp -d /dev/shm/vr-compare-etcd.XXXXXX)
pids=()
stop() { # pid: killed and reaped quietly
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for pid in "${pids[@]}"; do stop "$pid"; done
  rm -rf "$work"
  if [ "${VR_DURABLE:-0}" = 1 ]; then rm -rf "${vr_data:-}" "${etcd_data:-}"; fi
}
trap cleanup EXIT INT TERM

ms() { # a wrk latency ("812.00us", "1.20ms", "2.01s") in milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else printf "?" }'
}

# --- etcd -----------------------------------------------------------------
etcd_client() { echo "http://127.0.0.1:$((ETCD_PORT + $1 * 10))"; }
etcd_peer() { echo "http://127.0.0.1:$((ETCD_PORT + $1 * 10 + 1))"; }
etcd_endpoints() { echo "$(etcd_client 0),$(etcd_client 1),$(etcd_client 2)"; }
declare -A etcd_pid

etcd_start_member() { # id, extra flags...
  local i=$1; shift
  etcd --name "m$i" --data-dir "$etcd_data/m$i" \
    --listen-client-urls "$(etcd_client "$i")" --advertise-client-urls "$(etcd_client "$i")" \
    --listen-peer-urls "$(etcd_peer "$i")" --initial-advertise-peer-urls "$(etcd_peer "$i")" \
    --initial-cluster "m0=$(etcd_peer 0),m1=$(etcd_peer 1),m2=$(etcd_peer 2)" \
    --initial-cluster-state new --initial-cluster-token vr-compare \
    --log-level error "$@" >>"$work/etcd-m$i.log" 2>&1 &
  etcd_pid[$i]=$!
  pids+=($!)
}

etcd_start() { # extra flags...
  rm -rf "$etcd_data"
  for i in 0 1 2; do etcd_start_member "$i" "$@"; done
  for _ in $(seq 100); do
    etcdctl --endpoints "$(etcd_endpoints)" put warm-up 1 >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "error: etcd did not start (logs in $work)" >&2
  exit 1
}

etcd_stop() {
  for i in 0 1 2; do stop "${etcd_pid[$i]}"; done
}

cat >"$work/etcd.lua" <<'LUA'
-- One request per call: a put (or, with OP=range, a read) of a random key
-- among 1000, keys "key-" and 12 digits (16 bytes), values 32 bytes.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  return ((s:gsub(".", function(c)
    local bits, b = "", c:byte()
    for i = 8, 1, -1 do bits = bits .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end
local op = os.getenv("OP") or "put"
local keys, value = {}, base64(string.rep("v", 32))
for i = 0, 999 do keys[i] = base64(string.format("key-%012d", i)) end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local key = keys[math.random(0, 999)]
  if op == "put" then
    return wrk.format(nil, "/v3/kv/put", nil, '{"key":"' .. key .. '","value":"' .. value .. '"}')
  end
  return wrk.format(nil, "/v3/kv/range", nil, '{"key":"' .. key .. '"}')
end
LUA

etcd_load() { # clients, put|range -> "ops/s p50 p99"
  local c=$1 threads=$(( $1 < 2 ? 1 : 2 ))
  local out
  out=$(OP=$2 wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s "$work/etcd.lua" "$(etcd_client 0)")
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -z "$errors" ] || echo "etcd $2 at $c clients: $errors" >&2
  echo "$rps $p50 $p99"
}

# --- vr -------------------------------------------------------------------
declare -A vr_pid
vr_config="$work/vr.toml"
if [ "${VR_DURABLE:-0}" = 1 ]; then
  # Both on the disk, both with fsync: etcd's data directories too.
  etcd_data=$(mktemp -d "$PWD/target/etcd-compare-data.XXXXXX")
  vr_data=$(mktemp -d "$PWD/target/vr-compare-data.XXXXXX")
else
  etcd_data="$work/etcd"
  vr_data="$work/vr-data"
fi
{
  echo "cluster_id = 1"
  [ "${VR_DURABLE:-0}" = 1 ] || echo "durable = false"
  echo "data_dir = \"$vr_data\""
  for i in 0 1 2; do printf '\n[[replica]]\nid = %d\naddress = "127.0.0.1:%d"\n' "$i" $((VR_PORT + i)); done
} >"$vr_config"

vr_start_replica() { # id, flags...
  local i=$1; shift
  RUST_LOG=warn "$VR" replica --config "$vr_config" --id "$i" "$@" \
    >>"$work/vr-$i.log" 2>&1 &
  vr_pid[$i]=$!
  pids+=($!)
}

vr_start() {
  rm -rf "$vr_data" # a new cluster: its first start
  for i in 0 1 2; do vr_start_replica "$i" --fresh; done
  for _ in $(seq 100); do
    "$VR" put warm-up 1 --config "$vr_config" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "error: vr did not start (logs in $work)" >&2
  exit 1
}

vr_stop() {
  for i in 0 1 2; do stop "${vr_pid[$i]}"; done
}

vr_load() { # clients, read ratio -> "ops/s p50 p99"
  local line
  line=$("$VR" bench --config "$vr_config" --clients "$1" --duration "$DURATION" \
    --keys 1000 --value-size 32 --read-ratio "$2" 2>/dev/null | grep ' ops/s')
  awk '{
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) == "ops/s,") ops = $i
      if ($i == "p50") p50 = $(i + 1)
      if ($i == "p99") p99 = $(i + 1)
    }
    printf "%s %s %s", ops, p50, p99 }' <<<"$line"
}

# --- throughput and latency -------------------------------------------------
echo "== throughput and latency: ${DURATION}s per run, 16-byte keys over 1000, 32-byte values" >&2
declare -A result
etcd_start
for c in $CLIENTS; do
  echo "etcd: $c clients ..." >&2
  result[etcd,write,$c]=$(etcd_load "$c" put)
  result[etcd,read,$c]=$(etcd_load "$c" range)
done
etcd_stop
vr_start
for c in $CLIENTS; do
  echo "vr: $c clients ..." >&2
  result[vr,write,$c]=$(vr_load "$c" 0)
  result[vr,read,$c]=$(vr_load "$c" 1)
done
vr_stop

printf '\n%-6s %7s | %10s %8s %8s | %10s %8s %8s | %9s %9s\n' \
  op clients "vr ops/s" "p50 ms" "p99 ms" "etcd ops/s" "p50 ms" "p99 ms" "ops ratio" "p99 ratio"
for op in write read; do
  for c in $CLIENTS; do
    read -r v_ops v_p50 v_p99 <<<"${result[vr,$op,$c]}"
    read -r e_ops e_p50 e_p99 <<<"${result[etcd,$op,$c]}"
    awk -v op="$op" -v c="$c" -v vo="$v_ops" -v v50="$v_p50" -v v99="$v_p99" \
      -v eo="$e_ops" -v e50="$e_p50" -v e99="$e_p99" 'BEGIN {
      printf "%-6s %7d | %10.0f %8.2f %8.2f | %10.0f %8.2f %8.2f | %8.2fx %8.2fx\n",
        op, c, vo, v50, v99, eo, e50, e99, (eo > 0 ? vo / eo : 0), (e99 > 0 ? v99 / e99 : 0) }'
  done
done
echo "(ops ratio: vr over etcd, higher is better for vr; p99 ratio: vr over etcd, lower is better for vr)"

# --- failover ---------------------------------------------------------------
now_ms() { date +%s%3N; }

etcd_failover_trials() { # label, flags...
  local label=$1; shift
  etcd_start "$@"
  local times=()
  for _ in $(seq "$TRIALS"); do
    local leader=""
    for i in 0 1 2; do
      if etcdctl --endpoints "$(etcd_client "$i")" endpoint status -w json 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["leader"] == s["header"]["member_id"] else 1)'; then
        leader=$i
      fi
    done
    [ -n "$leader" ] || { echo "error: no etcd leader" >&2; exit 1; }
    local others=()
    for i in 0 1 2; do [ "$i" = "$leader" ] || others+=("$(etcd_client "$i")"); done
    local endpoints
    endpoints=$(IFS=,; echo "${others[*]}")
    local start
    start=$(now_ms)
    stop "${etcd_pid[$leader]}"
    until etcdctl --endpoints "$endpoints" --command-timeout=200ms put failover x >/dev/null 2>&1; do :; done
    times+=($(( $(now_ms) - start )))
    # The killed member comes back with its data directory and rejoins.
    etcd --name "m$leader" --data-dir "$work/etcd/m$leader" \
      --listen-client-urls "$(etcd_client "$leader")" --advertise-client-urls "$(etcd_client "$leader")" \
      --listen-peer-urls "$(etcd_peer "$leader")" --initial-advertise-peer-urls "$(etcd_peer "$leader")" \
      --initial-cluster "m0=$(etcd_peer 0),m1=$(etcd_peer 1),m2=$(etcd_peer 2)" \
      --initial-cluster-state existing --log-level error "$@" >>"$work/etcd-m$leader.log" 2>&1 &
    etcd_pid[$leader]=$!
    pids+=($!)
    until etcdctl --endpoints "$(etcd_client "$leader")" --command-timeout=500ms put rejoined x >/dev/null 2>&1; do sleep 0.1; done
    sleep 1
  done
  etcd_stop
  echo "$label: ${times[*]} ms"
}

vr_failover_trials() {
  vr_start
  local times=()
  for _ in $(seq "$TRIALS"); do
    local primary
    primary=$("$VR" status --config "$vr_config" | awk '$3 == "Normal" {print $4; exit}')
    primary=$(( primary % 3 ))
    local start
    start=$(now_ms)
    stop "${vr_pid[$primary]}"
    until "$VR" put failover x --config "$vr_config" >/dev/null 2>&1; do :; done
    times+=($(( $(now_ms) - start )))
    vr_start_replica "$primary" # restarts from its data directory (or recovers, in memory)
    until "$VR" status --config "$vr_config" | awk -v id="$primary" '$1 == id && $3 == "Normal" {ok = 1} END {exit !ok}'; do sleep 0.1; done
    sleep 1
  done
  vr_stop
  echo "vr (default timers): ${times[*]} ms"
}

echo >&2
echo "== failover: kill -9 of the leader / primary until the next acknowledged write, $TRIALS trials" >&2
echo
echo "failover, kill -9 to the next acknowledged write:"
vr_failover_trials
etcd_failover_trials "etcd (default timers: heartbeat 100 ms, election 1000 ms)"
etcd_failover_trials "etcd (heartbeat 50 ms, election 300 ms)" --heartbeat-interval 50 --election-timeout 300
