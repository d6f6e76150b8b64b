#!/usr/bin/env bash
# bench_chain.sh — emrchain against CometBFT's kvstore, in one run.
#
# Writes two 4-validator networks with `emrchaind testnet` (so both get the
# very same config.toml: consensus timeouts, mempool, block and database
# settings, and the same genesis consensus params), runs them in turn with
# testnet/localnet.sh on 127.0.0.1, and loads each at saturation:
#
#   emrchain  emrchaind start, loaded by `emrchaind load` (signed, valid txs:
#             60% AddRecord, 30% RecordAccess, 10% Grant/Revoke/RotateKey)
#   kvstore   cometbft start with proxy_app = "kvstore", loaded by CometBFT's
#             loadtime `load` with txs of emrchain's mean size, measured by
#             `emrchaind load watch` (same block observer as emrchain's)
#
# then each again at RATE_FRACTION of its saturation throughput for
# latency, on a fresh network of the same settings (RATE_FRESH=0: on the one
# just saturated, whose compactions and caches still carry that phase). It
# prints the summaries and, last, the line
#   emrchain <N> tx/s, kvstore <M> tx/s, ratio <N/M>
# Before any of it, a warm-up phase of each network (WARM seconds, not
# counted). With REPEAT=R it first runs R-1 more rounds (2..R) of the two saturation
# phases, in turn, each on a fresh network, then round 1 as above (with the
# profile and the latency phases); N and M are then the medians of the R
# rounds, the latency phases run at RATE_FRACTION of those, and a line per
# round and the median of the rounds' own ratios come before the last.
#
# Results go to $BENCH_OUT: *.json summaries, *.csv series and blocks, a PNG
# plot, a CPU profile of one emrchain validator under saturation (and its
# top functions as text), CPU seconds per committed tx of each network, the
# commands run (commands.txt) and the nodes' logs.
#
# Both networks run without storage services (`emrchaind testnet
# --replicate=false`): the load commits records whose blobs it never
# uploads, and each sidecar's storage service would ask its peers for every
# one (docs/decisions.md, storage services).
#
# Environment (defaults in brackets):
#   BIN            directory with emrchaind, cometbft and load [./bin]
#   BENCH_OUT      results directory [./bench-chain]
#   DURATION       seconds of each measured phase [45]
#   WARMUP         seconds at the start of a phase left out of the figures [10]
#   WARM           seconds of the warm-up phase of each network, at
#                  saturation on a network of its own, before the measured
#                  ones; its figures are reported but not counted [30; 0
#                  skips it]. Without it the first phase of a run, on a
#                  machine that was idle, was emrchain's slowest in 11 of
#                  13 runs (BENCHMARKS.md, runs 17-29)
#   RATE_FRACTION  the latency phase runs at this share of saturation [0.7]
#   BACKEND        database of both networks: pebble or goleveldb [pebble]
#   NODE_GOGC      GOGC of every node process of both networks [1000; see
#                  BENCHMARKS.md: at 300, once emrchain's IAVL node cache is
#                  full, garbage collection slows its blocks down]
#   NODE_MEMLIMIT  GOMEMLIMIT of every node process of both networks [none;
#                  BENCHMARKS.md, run 27: 1GiB halves the memory emrchain's
#                  nodes touch, but the 0.7 phase then fell behind]
#   TIMEOUT_PROPOSE  consensus timeout_propose of both networks [3s, CometBFT's
#                  default; "" keeps the 1s emrchaind testnet writes, which
#                  under saturation on 2 shared cores fails rounds]
#   TIMEOUT_COMMIT consensus timeout_commit of both networks [the 500ms
#                  `emrchaind testnet` writes]
#   MEMPOOL_SIZE   [mempool] size of both networks, in transactions [the
#                  5,000 `emrchaind testnet` writes, CometBFT's default]
#   NODE_CONFIG    config.toml settings for both networks, blank-separated
#                  section.key=value items (a nested section a.b.key, a
#                  top-level key alone), the value as TOML writes it and
#                  without blanks (mempool.recheck=false,
#                  consensus.timeout_commit="1s", log_level="debug") [none]
#   KV_RATE        loadtime's rate per endpoint at saturation, tx/s [1500]
#   CONNS          emrchaind load senders per node [0: 8 at saturation, at a
#                  rate one per 100 tx/s a node gets, 2 to 8]
#   SUBMIT         how emrchaind load sends: grpc (TxService.BroadcastTxs
#                  streams) or jsonrpc (batches of broadcast_tx_sync, the
#                  runs before 39) [grpc]
#   RATE_FRESH     1 runs the latency phase on a fresh network [1]
#   REPEAT         rounds of the saturation phases, 1 to 9 [1]: on this
#                  shared machine one round's ratio moves by ±15 %
#   KEEP           1 keeps the networks' directories [0]
#   KV_COMETDB     1 runs kvstore under cometbft-cometdb (testnet/cometbft-
#                  cometdb: CometBFT's databases opened with emrchaind's
#                  64 MiB memtables) instead of stock cometbft [0]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${BENCH_OUT:-$ROOT/bench-chain}
DURATION=${DURATION:-45}
WARMUP=${WARMUP:-10}
WARM=${WARM:-30}
RATE_FRACTION=${RATE_FRACTION:-0.7}
BACKEND=${BACKEND:-pebble}
NODE_GOGC=${NODE_GOGC:-1000}
TIMEOUT_PROPOSE=${TIMEOUT_PROPOSE-3s}
KV_RATE=${KV_RATE:-1500}
CONNS=${CONNS:-0}
SUBMIT=${SUBMIT:-grpc}
KEEP=${KEEP:-0}
RATE_FRESH=${RATE_FRESH:-1}
REPEAT=${REPEAT:-1}
LOCALNET=$ROOT/testnet/localnet.sh
EMRCHAIND=$BIN/emrchaind
COMETBFT=$BIN/cometbft
KV_COMETDB=${KV_COMETDB:-0}
[[ $KV_COMETDB == 1 ]] && COMETBFT=$BIN/cometbft-cometdb
LOADTIME=$BIN/load

BENCH_NAME=bench-chain
# shellcheck source=testnet/bench_lib.sh
source "$ROOT/testnet/bench_lib.sh"

for b in "$EMRCHAIND" "$COMETBFT" "$LOADTIME"; do
  [[ -x $b ]] || die "$b not found (make bench-chain builds and installs them)"
done
command -v jq >/dev/null || die "jq is needed to read the summaries"
command -v curl >/dev/null || die "curl is needed"
# Checked as text first: [[ -ge ]] on "45s" is a bash syntax error, and
# RATE_FRACTION 0 would ask for --rate 0, which is saturation.
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 15 && $DURATION -le 600 ]] || die "DURATION must be 15..600 seconds (a number, no unit)"
[[ $WARMUP =~ ^[0-9]+$ && $WARMUP -lt $DURATION ]] || die "WARMUP must be a number of seconds shorter than DURATION"
[[ $WARM =~ ^[0-9]+$ && ( $WARM == 0 || ( $WARM -gt $WARMUP && $WARM -le 600 ) ) ]] ||
  die "WARM must be 0 or a number of seconds longer than WARMUP, at most 600"
[[ $RATE_FRACTION =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]] || die "RATE_FRACTION must be more than 0 and at most 1"
[[ $KV_RATE =~ ^[1-9][0-9]*$ ]] || die "KV_RATE must be a positive number of tx/s"
[[ $CONNS =~ ^[0-9]+$ ]] || die "CONNS must be a number (0: the load's default)"
[[ $SUBMIT == grpc || $SUBMIT == jsonrpc ]] || die "SUBMIT must be grpc or jsonrpc"
[[ $RATE_FRESH =~ ^[01]$ ]] || die "RATE_FRESH must be 0 or 1"
[[ $KV_COMETDB =~ ^[01]$ ]] || die "KV_COMETDB must be 0 or 1"
check_node_env
[[ $REPEAT =~ ^[1-9]$ ]] || die "REPEAT must be 1 to 9"

# binary_go FILE: the Go release FILE was built with. make builds emrchaind
# on every run but installs cometbft once: a cometbft left from an older
# Go would run kvstore on another runtime (collector, scheduler) unnoticed.
binary_go() { go version "$1" 2>/dev/null | awk '{print $NF}'; }
[[ $(binary_go "$EMRCHAIND") == "$(binary_go "$COMETBFT")" ]] ||
  say "warning: $EMRCHAIND was built by $(binary_go "$EMRCHAIND"), $COMETBFT by $(binary_go "$COMETBFT"): remove $COMETBFT and make bench-chain installs it again"

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.csv "$OUT"/*.png "$OUT"/*.pprof "$OUT"/*.txt
rm -rf "$OUT/logs"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/emrchain-bench.XXXXXX")
BG=() # pids of background jobs this script started and has not waited for

# reaped PID: PID has been waited for, so cleanup must not signal it: by
# then the system may have given its number to another process (pid_max is
# 32768 on the bench machine, and a run starts some 6,000 processes).
reaped() {
  local i
  for i in "${!BG[@]}"; do
    [[ ${BG[i]} == "$1" ]] && unset 'BG[i]'
  done
  return 0
}

cleanup() {
  local rc=$?
  set +e
  for pid in "${BG[@]}"; do kill "$pid" 2>/dev/null; done
  for net in "$WORK"/*/; do
    net=$(basename "$net")
    [[ -d $WORK/$net/pids ]] && LOCALNET_DIR=$WORK/$net "$LOCALNET" stop >/dev/null 2>&1
  done
  for pid in "${BG[@]}"; do wait "$pid" 2>/dev/null; done
  for net in "$WORK"/*/; do
    net=$(basename "$net")
    if [[ -d $WORK/$net/logs ]]; then
      mkdir -p "$OUT/logs/$net"
      cp "$WORK/$net"/logs/*.log "$OUT/logs/$net/" 2>/dev/null
    fi
  done
  # What loadtime says it sent to kvstore (its offered load), per phase.
  mkdir -p "$OUT/logs"
  cp "$WORK"/*.loadtime.log "$OUT/logs/" 2>/dev/null
  if [[ $KEEP == 1 ]]; then
    say "kept the networks in $WORK"
  else
    rm -rf "$WORK"
  fi
  [[ $rc -ne 0 ]] && say "FAILED (exit $rc); logs in $OUT/logs"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM


{
  echo "# bench-chain $(date -u +%FT%TZ) on $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo '+changes'); emrchaind $("$EMRCHAIND" version 2>/dev/null | awk '/^emrchaind:/ {print $2}') built by $(binary_go "$EMRCHAIND"); cometbft $("$COMETBFT" version 2>/dev/null) built by $(binary_go "$COMETBFT"); $(go version 2>/dev/null | cut -d' ' -f3)"
  echo "# DURATION=$DURATION WARMUP=$WARMUP WARM=$WARM RATE_FRACTION=$RATE_FRACTION RATE_FRESH=$RATE_FRESH REPEAT=$REPEAT BACKEND=$BACKEND NODE_GOGC=$NODE_GOGC NODE_MEMLIMIT=${NODE_MEMLIMIT:-none} TIMEOUT_PROPOSE=${TIMEOUT_PROPOSE:-default} TIMEOUT_COMMIT=${TIMEOUT_COMMIT:-default} MEMPOOL_SIZE=${MEMPOOL_SIZE:-default} NODE_CONFIG=${NODE_CONFIG:-none} KV_RATE=$KV_RATE CONNS=$CONNS SUBMIT=$SUBMIT KV_COMETDB=$KV_COMETDB"
} | tee "$OUT/commands.txt"

# emr_net DIR: writes and starts a 4-validator emrchain network in DIR;
# sets PPROF_PORT and METRICS_PORT (node1's).
emr_net() {
  write_net "$1" emrchain-bench
  enable_pprof "$1" 1 "$PPROF_PORT"
  enable_metrics "$1" 1 "$METRICS_PORT"
  start_net "$1" "$EMRCHAIND"
}

# kv_net DIR: the same network running CometBFT's kvstore; sets
# METRICS_PORT and ENDPOINTS (loadtime's websockets).
kv_net() {
  local f
  write_net "$1" kvstore-bench
  note "config.toml of every node of $1: proxy_app = \"kvstore\" (CometBFT's built-in in-memory kvstore)"
  for f in "$1"/node*/config/config.toml; do
    sed -i 's|^proxy_app = .*|proxy_app = "kvstore"|' "$f"
  done
  enable_metrics "$1" 1 "$METRICS_PORT"
  start_net "$1" "$COMETBFT"
  ENDPOINTS=$(for i in 0 1 2 3; do rpc "$1" $i | sed 's|^http://|ws://|; s|$|/v1/websocket|'; done | paste -sd,)
}

# emr_saturation SUFFIX: emrchain at saturation on the running network
# $EMR, results in $OUT/emrchain-saturation$SUFFIX.*; sets EMR_CPU and
# EMR_BYTES (the mean transaction size, which kvstore's load then uses).
emr_saturation() {
  say "emrchain at saturation for ${DURATION}s${1:+ (round ${1#-r} of $REPEAT)}"
  run "$EMRCHAIND" load --testnet "$EMR" --name "emrchain$1" --duration "${DURATION}s" --warmup "${WARMUP}s" --conns "$CONNS" --submit "$SUBMIT" \
    --prefix "bench-sat$1" --json "$OUT/emrchain-saturation$1.json" --csv "$OUT/emrchain-saturation$1.csv" \
    --blocks-csv "$OUT/emrchain-saturation$1-blocks.csv" --cpu-pids "$(node_pids "$EMR")"
  EMR_CPU=$(cpu_per_tx "$OUT/emrchain-saturation$1.json")
  echo "emrchain$1 $EMR_CPU" >>"$WORK/cpu-per-tx.txt"
  EMR_BYTES=$(jq '.mean_tx_bytes | floor' "$OUT/emrchain-saturation$1.json")
}

# kv_saturation SUFFIX: kvstore at saturation on the running network $KV,
# results in $OUT/kvstore-saturation$SUFFIX.*; sets KV_CPU.
kv_saturation() {
  say "kvstore at saturation for ${DURATION}s${1:+ (round ${1#-r} of $REPEAT)} (loadtime: $KV_RATE tx/s to each of 4 endpoints, $EMR_BYTES-byte txs)"
  kv_phase "kvstore$1" "kvstore-saturation$1" "$KV_RATE"
  KV_CPU=$(cpu_per_tx "$OUT/kvstore-saturation$1.json")
  echo "kvstore$1 $KV_CPU" >>"$WORK/cpu-per-tx.txt"
}

# kv_phase NAME FILE RATE_PER_ENDPOINT [SECONDS]: loadtime load with the
# watcher around it, for SECONDS [DURATION]; the results are labelled NAME
# and written to $OUT/FILE*.
kv_phase() {
  local name=$1 file=$2 rate=$3 secs=${4:-$DURATION} w
  run "$EMRCHAIND" load watch --node "$(rpc "$KV" 0)" --name "$name" --duration "${secs}s" --warmup "${WARMUP}s" \
    --json "$OUT/$file.json" --csv "$OUT/$file.csv" --blocks-csv "$OUT/$file-blocks.csv" --cpu-pids "$(node_pids "$KV")" \
    >"$WORK/$name.watch.txt" 2>&1 &
  w=$!
  BG+=("$w")
  sleep 0.5
  run timeout $((secs + 60)) "$LOADTIME" -c 1 -T "$secs" -r "$rate" -s "$EMR_BYTES" \
    --broadcast-tx-method async --endpoints "$ENDPOINTS" >"$WORK/$name.loadtime.log" 2>&1 ||
    { tail -n 20 "$WORK/$name.loadtime.log"; die "loadtime failed"; }
  wait "$w" || { reaped "$w"; cat "$WORK/$name.watch.txt"; die "watch failed"; }
  reaped "$w"
  cat "$WORK/$name.watch.txt"
}

# median: the median of the numbers on stdin.
median() {
  jq -s 'sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end'
}

# median_tps FILE...: the median committed tx/s of the summaries.
median_tps() { jq .tps "$@" | median; }

# median_cpu FILE...: the median node CPU ms per committed tx of the
# summaries that have one, or n/a.
median_cpu() {
  local v
  v=$(jq '.node_cpu_ms_per_tx // empty' "$@")
  if [[ -z $v ]]; then echo n/a; else median <<<"$v"; fi
}

# --- warm-up (WARM) ------------------------------------------------------------
# The first phase of a run, on a machine that was idle, is slower than
# the ones after it: in runs 17-29 the first emrchain phase had the lowest
# ratio of its run in 11 of 13 (the exceptions: run 17, and run 27, whose
# nodes were held to 1 GiB), at up to 1.4x the node CPU per transaction,
# as if the memory the nodes touch first costs more (emrchain's touch
# about 11 GB, kvstore's 5). A validator that has run for minutes pays
# none of that, so each network first runs WARM seconds at saturation on
# a network of its own, reported but not counted. (Run 30, the first with
# it: the warm-up was emrchain's slowest phase, the ratio 0.61 all the
# same.)
if [[ $WARM -gt 0 ]]; then
  EMR=$WORK/emr-warm
  emr_net "$EMR"
  say "warm-up: emrchain at saturation for ${WARM}s (not counted)"
  run "$EMRCHAIND" load --testnet "$EMR" --name emrchain-warm --duration "${WARM}s" --warmup "${WARMUP}s" --conns "$CONNS" --submit "$SUBMIT" \
    --prefix bench-warm --json "$OUT/warm-emrchain.json" >"$WORK/warm-emrchain.txt" 2>&1 ||
    { cat "$WORK/warm-emrchain.txt"; die "emrchain warm-up failed"; }
  EMR_BYTES=$(jq '.mean_tx_bytes | floor' "$OUT/warm-emrchain.json")
  stop_net "$EMR"
  KV=$WORK/kv-warm
  kv_net "$KV"
  say "warm-up: kvstore at saturation for ${WARM}s (not counted)"
  kv_phase kvstore-warm warm-kvstore "$KV_RATE" "$WARM" >/dev/null
  stop_net "$KV"
fi

# --- more rounds of the saturation phases (REPEAT) ---------------------------
: >"$WORK/cpu-per-tx.txt"
for r in $(seq 2 "$REPEAT"); do
  EMR=$WORK/emr-r$r
  emr_net "$EMR"
  emr_saturation "-r$r"
  stop_net "$EMR"
  KV=$WORK/kv-r$r
  kv_net "$KV"
  kv_saturation "-r$r"
  stop_net "$KV"
done

# --- emrchain ----------------------------------------------------------------
EMR=$WORK/emr
emr_net "$EMR"

profile_later "$PPROF_PORT" "$OUT/emrchaind-node1.cpu.pprof" $((WARMUP + 20)) $(( DURATION - WARMUP > 40 ? 30 : (DURATION - WARMUP) / 2 )) &
prof=$!
BG+=("$prof")
emr_saturation ""
scrape "$METRICS_PORT" "$OUT/emrchain-node1-metrics.txt"
wait "$prof" || say "no CPU profile collected"
reaped "$prof"

EMR_TPS=$(median_tps "$OUT"/emrchain-saturation*.json)
EMR_RATE=$(awk -v t="$EMR_TPS" -v f="$RATE_FRACTION" 'BEGIN { printf "%.0f", t * f }')
[[ $EMR_RATE -ge 1 ]] || die "emrchain committed $EMR_TPS tx/s at saturation: no rate to measure latency at"
if [[ $RATE_FRESH == 1 ]]; then
  stop_net "$EMR"
  EMR=$WORK/emr-rate
  emr_net "$EMR"
fi
say "emrchain at $EMR_RATE tx/s ($RATE_FRACTION of saturation) for ${DURATION}s"
run "$EMRCHAIND" load --testnet "$EMR" --name "emrchain-$RATE_FRACTION" --rate "$EMR_RATE" --duration "${DURATION}s" \
  --warmup "${WARMUP}s" --conns "$CONNS" --submit "$SUBMIT" --prefix bench-rate \
  --json "$OUT/emrchain-rate.json" --csv "$OUT/emrchain-rate.csv" --blocks-csv "$OUT/emrchain-rate-blocks.csv" \
  --cpu-pids "$(node_pids "$EMR")"
stop_net "$EMR"

# --- kvstore -----------------------------------------------------------------
KV=$WORK/kv
kv_net "$KV"

kv_saturation ""
scrape "$METRICS_PORT" "$OUT/kvstore-node1-metrics.txt"

KV_TPS=$(median_tps "$OUT"/kvstore-saturation*.json)
KV_RATE_EP=$(awk -v t="$KV_TPS" -v f="$RATE_FRACTION" 'BEGIN { r = t * f / 4; printf "%d", (r < 1 ? 1 : r) }')
if [[ $RATE_FRESH == 1 ]]; then
  stop_net "$KV"
  KV=$WORK/kv-rate
  kv_net "$KV"
fi
say "kvstore at $((KV_RATE_EP * 4)) tx/s ($RATE_FRACTION of saturation) for ${DURATION}s"
kv_phase kvstore-rate kvstore-rate "$KV_RATE_EP"
stop_net "$KV"

# --- report ------------------------------------------------------------------
run "$EMRCHAIND" load plot --out "$OUT/bench-chain.png" \
  --title "4 validators on 127.0.0.1, $(nproc) cores: emrchain vs CometBFT kvstore" \
  "emrchain saturation=$OUT/emrchain-saturation.csv" "emrchain $RATE_FRACTION=$OUT/emrchain-rate.csv" \
  "kvstore saturation=$OUT/kvstore-saturation.csv" "kvstore $RATE_FRACTION=$OUT/kvstore-rate.csv"
profile_text "$EMRCHAIND" "$OUT/emrchaind-node1.cpu.pprof" || true
{ echo "network cpu_ms_per_committed_tx"; sort "$WORK/cpu-per-tx.txt"; } >"$OUT/cpu-per-tx.txt"

echo
for f in emrchain-saturation emrchain-rate kvstore-saturation kvstore-rate; do
  jq -r "$JQ_LATENCY"' "\(.name): \(.mode)\(if .target_rate > 0 then " \(.target_rate|floor) tx/s" else "" end): \(.tps|floor) tx/s committed, latency p50 \(lat("p50")), p95 \(lat("p95")), p99 \(lat("p99")); blocks every \(.blocks.mean_interval_ms|floor) ms with \(.blocks.mean_txs|floor) txs"' "$OUT/$f.json"
done
if [[ $REPEAT == 1 ]]; then
  echo "node CPU per committed tx (4 nodes, user+system): emrchain $EMR_CPU ms, kvstore $KV_CPU ms"
else
  # Medians, as for tx/s: round 1 alone is also the round whose emrchain
  # phase had node1 profiled.
  echo "node CPU per committed tx (4 nodes, user+system; medians of the $REPEAT rounds, all in cpu-per-tx.txt):" \
    "emrchain $(median_cpu "$OUT"/emrchain-saturation*.json) ms, kvstore $(median_cpu "$OUT"/kvstore-saturation*.json) ms"
fi
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
if [[ $WARM -gt 0 ]]; then
  printf 'warm-up (not counted): emrchain %.0f tx/s, kvstore %.0f tx/s\n' \
    "$(jq .tps "$OUT/warm-emrchain.json")" "$(jq .tps "$OUT/warm-kvstore.json")"
fi
if [[ $REPEAT == 1 ]]; then
  "$EMRCHAIND" load compare "$OUT/emrchain-saturation.json" "$OUT/kvstore-saturation.json" | tail -n 1
else
  ratios=()
  for r in $(seq 1 "$REPEAT"); do
    sfx=-r$r
    [[ $r == 1 ]] && sfx=
    line=$("$EMRCHAIND" load compare "$OUT/emrchain-saturation$sfx.json" "$OUT/kvstore-saturation$sfx.json" | tail -n 1)
    echo "round $r: $line"
    ratios+=("${line##* }")
  done
  # A round pairs two phases minutes apart; the median of the rounds' own
  # ratios is the steadier figure when the machine's speed drifts.
  printf "median of the rounds' ratios: %.3f\n" "$(printf '%s\n' "${ratios[@]}" | median)"
  echo "medians of the $REPEAT rounds:"
  awk -v n="$EMR_TPS" -v m="$KV_TPS" 'BEGIN { printf "emrchain %.0f tx/s, kvstore %.0f tx/s, ratio %.3f\n", n, m, n / m }'
fi
