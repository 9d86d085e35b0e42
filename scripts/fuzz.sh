#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/ with cargo-fuzz (libFuzzer,
# AddressSanitizer). Installs cargo-fuzz if missing; runs on this stable
# toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly -Z flags).
#
#   scripts/fuzz.sh                       every target for 60 s
#   FUZZ_TIME=600 scripts/fuzz.sh tcp_framing recording
#   FUZZ_RUNS=10000000 scripts/fuzz.sh    the long run: 10 M executions each
#   make fuzz, make fuzz-long             the same two
#
# New inputs that reach new code go into fuzz/corpus/<target>/ (commit the
# result of `cargo fuzz cmin` now and then); a crash leaves its input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ so that
# `make test` replays it, then fix the bug. Each target's last lines
# (executions, coverage, rate) are kept in fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
# Its own target directory: instrumented builds never evict the main ones.
fuzz=(cargo fuzz run -O --features libfuzzer --target-dir fuzz/target)
# FUZZ_RUNS alone runs until that many executions; with FUZZ_TIME too, until either.
limit=()
[ -n "${FUZZ_RUNS:-}" ] && limit+=(-runs="$FUZZ_RUNS")
[ -n "${FUZZ_TIME:-}" ] || [ -z "${FUZZ_RUNS:-}" ] && limit+=(-max_total_time="${FUZZ_TIME:-60}")
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
  echo "== $t: ${limit[*]}"
  start=$(date +%s)
  "${fuzz[@]}" "$t" -- "${limit[@]}" -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1 || { tail -40 "fuzz/logs/$t.log"; exit 1; }
  grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss' "fuzz/logs/$t.log" | tail -3
  echo "   $(( $(date +%s) - start )) s"
done
