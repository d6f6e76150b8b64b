#!/usr/bin/env bash
# bench_fill.sh — is emrchain as fast with a million records stored as with
# none?
#
# Starts one 4-validator emrchain network on 127.0.0.1 with the settings
# bench_chain.sh uses, and runs three phases of `emrchaind load` on it:
#
#   fresh   saturation with the default mix, on a state of a few thousand
#           records                                       [DURATION seconds]
#   fill    FILL AddRecords as fast as the network takes them
#   filled  saturation with the default mix again          [DURATION seconds]
#
# For fresh and filled it reports committed tx/s, the mean block interval
# and size, node1's mean FinalizeBlock and Commit time per block (CometBFT's
# ABCI timing metrics) and the nodes' CPU per committed tx; after the fill,
# the bytes per record of node1's application database (data/app.db). The last line is
#   fresh N tx/s, filled M tx/s with R records, ratio M/N; FinalizeBlock+Commit per block A ms -> B ms
#
# Results (JSON and CSV per phase, metrics, a CPU profile of node1 per
# saturation phase, commands.txt, logs) go to
# $BENCH_OUT. Environment (defaults in brackets):
#   BIN              directory with emrchaind [./bin]
#   BENCH_OUT        results directory [./bench-fill]
#   FILL             AddRecords of the fill phase [1000000]
#   DURATION         seconds of each measured phase [45]
#   WARMUP           seconds at the start of a phase left out of the figures [10]
#   BACKEND          database: pebble or goleveldb [pebble]
#   NODE_GOGC        GOGC of every node [1000]
#   NODE_MEMLIMIT    GOMEMLIMIT of every node [3GiB: with GOGC=1000 and a
#                    million records a node's heap otherwise grows past 7 GB
#                    and four of them swap a 24 GiB machine]
#   FILL_STEP        AddRecords signed per fill run [250000: the load keeps
#                    what it signed in memory]
#   TIMEOUT_PROPOSE  consensus timeout_propose [3s]
#   TIMEOUT_COMMIT   consensus timeout_commit [500ms, as emrchaind testnet]
#   MEMPOOL_SIZE     [mempool] size, in transactions [5000]
#   NODE_CONFIG      config.toml settings, blank-separated section.key=value
#                    items, as bench_chain.sh takes them [none]
#   TX_INDEXER       CometBFT's tx indexer on every node: kv or null [kv, as
#                    emrchaind init writes it; null shows how much of the
#                    growth is the tx index's, not the application state's]
#   KEEP             1 keeps the network's directory [0]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${BENCH_OUT:-$ROOT/bench-fill}
FILL=${FILL:-1000000}
DURATION=${DURATION:-45}
WARMUP=${WARMUP:-10}
BACKEND=${BACKEND:-pebble}
NODE_GOGC=${NODE_GOGC:-1000}
NODE_MEMLIMIT=${NODE_MEMLIMIT-3GiB}
FILL_STEP=${FILL_STEP:-250000}
TIMEOUT_PROPOSE=${TIMEOUT_PROPOSE-3s}
TX_INDEXER=${TX_INDEXER:-kv}
KEEP=${KEEP:-0}
LOCALNET=$ROOT/testnet/localnet.sh
EMRCHAIND=$BIN/emrchaind
BENCH_NAME=bench-fill
# shellcheck source=testnet/bench_lib.sh
source "$ROOT/testnet/bench_lib.sh"

[[ -x $EMRCHAIND ]] || die "$EMRCHAIND not found (make bench-fill builds it)"
command -v jq >/dev/null || die "jq is needed to read the summaries"
command -v curl >/dev/null || die "curl is needed"
check_node_env
[[ $FILL =~ ^[0-9]+$ && $FILL -ge 1 && $FILL -le 5000000 ]] || die "FILL must be 1..5000000 records"
[[ $FILL_STEP =~ ^[0-9]+$ && $FILL_STEP -ge 1000 && $FILL_STEP -le 5000000 ]] || die "FILL_STEP must be 1000..5000000"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 15 && $DURATION -le 600 ]] || die "DURATION must be 15..600 seconds (a number, no unit)"
[[ $TX_INDEXER == kv || $TX_INDEXER == null ]] || die "TX_INDEXER must be kv or null"
[[ $WARMUP =~ ^[0-9]+$ && $WARMUP -lt $DURATION ]] || die "WARMUP must be a number of seconds shorter than DURATION"

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.csv "$OUT"/*.txt "$OUT"/*.pprof
rm -rf "$OUT/logs"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/emrchain-fill.XXXXXX")
NET=$WORK/emr

cleanup() {
  local rc=$?
  set +e
  [[ -n ${prof:-} ]] && kill "$prof" 2>/dev/null
  [[ -d $NET/pids ]] && LOCALNET_DIR=$NET "$LOCALNET" stop >/dev/null 2>&1
  if [[ -d $NET/logs ]]; then
    mkdir -p "$OUT/logs"
    cp "$NET"/logs/*.log "$OUT/logs/" 2>/dev/null
  fi
  if [[ $KEEP == 1 ]]; then say "kept the network in $WORK"; else rm -rf "$WORK"; fi
  [[ $rc -ne 0 ]] && say "FAILED (exit $rc); logs in $OUT/logs"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo "# bench-fill $(date -u +%FT%TZ) on $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo '+changes'); $(go version 2>/dev/null | cut -d' ' -f3)"
  echo "# FILL=$FILL FILL_STEP=$FILL_STEP DURATION=$DURATION WARMUP=$WARMUP BACKEND=$BACKEND NODE_GOGC=$NODE_GOGC NODE_MEMLIMIT=${NODE_MEMLIMIT:-none} TIMEOUT_PROPOSE=${TIMEOUT_PROPOSE:-default} TIMEOUT_COMMIT=${TIMEOUT_COMMIT:-default} MEMPOOL_SIZE=${MEMPOOL_SIZE:-default} NODE_CONFIG=${NODE_CONFIG:-none} TX_INDEXER=$TX_INDEXER"
} | tee "$OUT/commands.txt"

write_net "$NET" emrchain-fill
if [[ $TX_INDEXER != kv ]]; then
  note "config.toml of every node of $NET: [tx_index] indexer = \"$TX_INDEXER\""
  sed -i "s|^indexer = .*|indexer = \"$TX_INDEXER\"|" "$NET"/node*/config/config.toml
fi
enable_metrics "$NET" 1 "$METRICS_PORT"
enable_pprof "$NET" 1 "$PPROF_PORT"
start_net "$NET" "$EMRCHAIND"

# phase NAME: the default mix at saturation; the load reports node1's
# FinalizeBlock and Commit means over its measured window (--metrics: not
# its setup's or drain's small blocks), per block and per tx committed in
# the window. A CPU profile of node1 is taken in the middle of the window.
phase() {
  local name=$1
  say "$name: saturation for ${DURATION}s"
  scrape "$METRICS_PORT" "$OUT/$name-metrics-before.txt"
  profile_later "$PPROF_PORT" "$OUT/$name-node1.cpu.pprof" $((WARMUP + 5)) $(((DURATION - WARMUP) / 2)) &
  prof=$!
  run "$EMRCHAIND" load --testnet "$NET" --name "$name" --duration "${DURATION}s" --warmup "${WARMUP}s" \
    --prefix "fill-$name" --json "$OUT/$name.json" --csv "$OUT/$name.csv" --blocks-csv "$OUT/$name-blocks.csv" \
    --cpu-pids "$(node_pids "$NET")" --metrics "http://127.0.0.1:$METRICS_PORT/metrics"
  scrape "$METRICS_PORT" "$OUT/$name-metrics-after.txt"
  wait "$prof" && profile_text "$EMRCHAIND" "$OUT/$name-node1.cpu.pprof" || say "no CPU profile of the $name phase"
  prof= # waited for: cleanup must not signal a number the system may have given another process
  printf '%s finalize_block_ms %s commit_ms %s abci_us_per_tx %s block_ms %s block_us_per_tx %s cpu_ms_per_tx %s\n' "$name" \
    "$(jq .abci.finalize_block_ms "$OUT/$name.json")" "$(jq .abci.commit_ms "$OUT/$name.json")" \
    "$(jq .abci.per_tx_us "$OUT/$name.json")" "$(jq .abci.block_ms "$OUT/$name.json")" \
    "$(jq .abci.block_per_tx_us "$OUT/$name.json")" "$(cpu_per_tx "$OUT/$name.json")" | tee -a "$OUT/phases.txt"
}

phase fresh

say "fill: $FILL AddRecords as fast as the network takes them, $FILL_STEP per run"
FILLED=0
RUNS=0
while [[ $FILLED -lt $FILL ]]; do
  RUNS=$((RUNS + 1))
  n=$((FILL - FILLED < FILL_STEP ? FILL - FILLED : FILL_STEP))
  run "$EMRCHAIND" load --testnet "$NET" --name "fill-$RUNS" --mix add-record=1 --max-txs "$n" --duration 30m --warmup 5s \
    --prefix "fill-$RUNS" --json "$OUT/fill-$RUNS.json" | grep -E '^  (committed|throughput)'
  c=$(jq .committed "$OUT/fill-$RUNS.json")
  [[ $c -gt 0 ]] || die "fill run $RUNS committed nothing"
  FILLED=$((FILLED + c))
  say "filled $FILLED of $FILL"
done
# Records now: the fill's, plus one per patient of each run's setup
# (1,024: the fresh phase's and the fill runs'), plus the fresh phase's
# share of AddRecords (60 % of what it committed). The state's bytes are
# taken now too, before the filled phase adds its own.
RECORDS=$(jq -s --argjson filled "$FILLED" --argjson runs "$RUNS" \
  '.[0].committed * 0.6 + $filled + ($runs + 1) * 1024 | floor' "$OUT/fresh.json")
DB_BYTES=$(du -sb "$NET/node1/data/app.db" | cut -f1)
echo "app.db of node1: $DB_BYTES bytes for about $RECORDS records: $((DB_BYTES / RECORDS)) B/record" | tee -a "$OUT/phases.txt"

phase filled

echo
for f in fresh filled; do
  jq -r "$JQ_LATENCY"' "\(.name): \(.tps|floor) tx/s committed, latency p50 \(lat("p50")), p99 \(lat("p99")); blocks every \(.blocks.mean_interval_ms|floor) ms with \(.blocks.mean_txs|floor) txs"' "$OUT/$f.json"
done
cat "$OUT/phases.txt"
read -r _ _ F0 _ C0 _ P0 _ B0 _ Q0 _ _ < <(grep '^fresh ' "$OUT/phases.txt")
read -r _ _ F1 _ C1 _ P1 _ B1 _ Q1 _ _ < <(grep '^filled ' "$OUT/phases.txt")
T0=$(jq .tps "$OUT/fresh.json")
T1=$(jq .tps "$OUT/filled.json")
# The last line; per block and, since saturated blocks differ in size, per
# tx committed in the window (both over the window's blocks only); then
# the same with the proposal's execution (Prepare/ProcessProposal).
awk -v t0="$T0" -v t1="$T1" -v r="$RECORDS" -v f0="$F0" -v c0="$C0" -v f1="$F1" -v c1="$C1" -v p0="$P0" -v p1="$P1" \
  -v b0="$B0" -v b1="$B1" -v q0="$Q0" -v q1="$Q1" 'BEGIN {
  printf "fresh %d tx/s, filled %d tx/s with %d records, ratio %.3f; FinalizeBlock+Commit per block %.0f ms -> %.0f ms, per tx %.0f us -> %.0f us; with the execution per block %.0f ms -> %.0f ms, per tx %.0f us -> %.0f us\n",
    t0, t1, r, (t0 > 0 ? t1 / t0 : 0), f0 + c0, f1 + c1, p0, p1, b0, b1, q0, q1 }'
