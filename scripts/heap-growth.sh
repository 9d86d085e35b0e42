#!/usr/bin/env bash
# Where the heap grows under churn: runs the server (system allocator, so
# that heaptrack sees every allocation) under heaptrack for a short and a
# long `loadtest churn`, kills it once the load has left (so what is still
# allocated counts as "leaked"), and prints what the long run holds beyond
# the short one, by call site. A site that grows with the number of sessions
# is a leak; a few reallocations of one table are high-water marks.
#
#   scripts/heap-growth.sh              20 s against 100 s, 16 clients
#   SHORT=30 LONG=300 PEERS=40 scripts/heap-growth.sh
#
# Found with it: routes kept after their tracks ended (~0.7 KB a session).
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=${SHORT:-20} LONG=${LONG:-100} PEERS=${PEERS:-16}
command -v heaptrack >/dev/null || apt-get install -y heaptrack
out=$(mktemp -d /tmp/heap-growth.XXXXXX)
CARGO_TARGET_DIR=target/system-alloc cargo build --release -p signalling --bin switchboard --no-default-features
cargo build --release -p loadtest --bin loadtest
bin=target/system-alloc/release/switchboard

run() { # $1: seconds of churn
  local data="$out/data-$1" port
  mkdir -p "$data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  heaptrack -o "$out/heap-$1" "$bin" --http "127.0.0.1:$port" --udp-port 0 --shards 2 \
    --data-dir "$data" --resume-grace 3s >"$out/server-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.2; done
  target/release/loadtest churn --url "http://127.0.0.1:$port" --keys "$data/keys.json" --peers "$PEERS" \
    --duration "${1}s" --video-kbps 300 --json "$data/churn.json" | tail -1
  sleep 8 # vanished clients' grace, then the shards' removals
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^switchboard_participants ' || true
  pkill -KILL -f "$bin --http 127.0.0.1:$port" || true
  { wait "$pid"; } 2>/dev/null || true # killed on purpose
}

run "$SHORT"
run "$LONG"
heaptrack_print "$out/heap-$LONG.zst" -d "$out/heap-$SHORT.zst" -l -p 0 -a 0 -T 0 -n 40 >"$out/diff.txt" 2>/dev/null
echo "== held after $LONG s beyond $SHORT s, by call site (first frame of ours); full diff in $out/diff.txt"
awk '/leaked over/ { if (h != "") print h " | " f; h = $0; f = ""; next }
     /(sfu|signalling)::/ { if (f == "") f = $0 }
     END { print h " | " f }' "$out/diff.txt" | grep -v '^ *-' | sort -h -r | head -15
