#!/bin/bash
# A/B of server builds under the same load, alternated round by round so a
# slow patch of this shared machine hits every build alike. Loopback only;
# each run stops by itself (the load test's --duration).
#
#   benches/ab.sh "<scenario and load options>" ROUNDS BIN_A BIN_B [...]
#   benches/ab.sh "conference --peers 8 --pacing 0" 3 /tmp/before/switchboard target/release/switchboard
#
# Prints, per run: the build, forwarded packets per server CPU-second, the
# server's own delay histogram, end-to-end latency, and datagrams / send
# messages from /metrics. Server on CPU 1 with SHARDS shards (default 1), load
# on CPU 0.
set -eu
# Every load peer connects from one loopback address: lift the per-address
# and room caps a production server keeps (by environment: older builds ignore it).
for cap in CONNECTIONS CONNECTIONS_PER_IP PARTICIPANTS PARTICIPANTS_PER_ROOM; do export "SWITCHBOARD_MAX_$cap=1000000"; done
export SWITCHBOARD_JOINS_PER_SECOND_PER_IP=1000000
load=$1 rounds=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
port=18090
data=$(mktemp -d /tmp/switchboard-ab-XXXXXX)
trap 'rm -rf "$data"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    rm -rf "$data/run" && mkdir -p "$data/run"
    taskset -c 1 "$bin" --http 127.0.0.1:$port --udp-port 0 --shards "${SHARDS:-1}" --data-dir "$data/run" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -sf -o /dev/null 127.0.0.1:$port/healthz && break; sleep 0.1; done
    # shellcheck disable=SC2086 # the load options are words on purpose
    taskset -c 0 "$root/target/release/loadtest" $load --duration 8s --url http://127.0.0.1:$port \
      --keys "$data/run/keys.json" --server-pid $pid > "$data/out.txt" 2>&1 || true
    sent=$(curl -s 127.0.0.1:$port/metrics | awk '/^switchboard_udp_(datagrams_sent|send_messages)_total/ {printf "%s ", $2}')
    kill $pid; wait $pid 2>/dev/null || true
    echo "$bin: $(sed -n 's/.*→ \([0-9]* per CPU-second\).*/\1/p' "$data/out.txt") |" \
      "$(sed -n 's/ *inside server *//p' "$data/out.txt") |" \
      "$(sed -n 's/ *latency (µs) *//p' "$data/out.txt") | datagrams, messages: $sent"
  done
done
