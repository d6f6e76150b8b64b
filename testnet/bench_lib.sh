# bench_lib.sh — shell functions shared by bench_chain.sh and bench_fill.sh.
# Sourced, not run. The caller sets BENCH_NAME (for messages), OUT (the
# results directory, with commands.txt), LOCALNET, NODE_GOGC, NODE_MEMLIMIT
# (may be empty), TIMEOUT_PROPOSE, TIMEOUT_COMMIT (may be empty), EMRCHAIND
# and BACKEND first.

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
say() { echo "$BENCH_NAME: $*"; }
# check_node_env: refuse settings that would kill every node at start (a
# NODE_GOGC or NODE_MEMLIMIT the Go runtime cannot parse, "1GB"; a
# TIMEOUT_PROPOSE, written into config.toml, CometBFT cannot, "3"), where
# the bench would only fail after waiting for them. TIMEOUT_COMMIT goes to
# `emrchaind testnet --timeout-commit`, which refuses a bad one itself.
check_node_env() {
  [[ -z ${MEMPOOL_SIZE:-} || $MEMPOOL_SIZE =~ ^[1-9][0-9]*$ ]] || die "MEMPOOL_SIZE must be a positive number of transactions"
  # section.key=value (section may be nested, a.b; none for a top-level
  # key), with no |, & or \ in the value: configure writes it with sed.
  local setting item='^([a-z0-9_]+\.)*[a-z0-9_]+=[^|&\\]+$' settings
  # Split on blanks and newlines (-d ''), without globbing.
  read -ra settings -d '' <<<"${NODE_CONFIG:-}" || true
  for setting in "${settings[@]}"; do
    [[ $setting =~ $item ]] ||
      die "NODE_CONFIG: $setting is not [section.]key=value with no |, & or \\ in the value (e.g. mempool.recheck=false)"
  done
  [[ -z ${TIMEOUT_PROPOSE:-} || $TIMEOUT_PROPOSE =~ ^[0-9]+(ms|s)$ ]] || die "TIMEOUT_PROPOSE must be a duration in ms or s (e.g. 3s)"
  [[ $NODE_GOGC =~ ^(off|[0-9]+)$ ]] || die "NODE_GOGC must be a GOGC: a number or off"
  [[ -z ${NODE_MEMLIMIT:-} || $NODE_MEMLIMIT =~ ^(off|[0-9]+(B|[KMGT]iB)?)$ ]] ||
    die "NODE_MEMLIMIT must be a GOMEMLIMIT: bytes, or a number with B, KiB, MiB, GiB or TiB (e.g. 1GiB)"
}
# run: log a command to commands.txt and stdout, then run it.
run() { echo "+ $*" | tee -a "$OUT/commands.txt"; "$@"; }

# free_base: a base port whose block of 40 ports (4 nodes x 10) nobody
# listens on, below the ephemeral range like the test harness.
free_base() {
  local listening base p ok
  listening=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -un)
  for _ in $(seq 50); do
    base=$((20000 + (RANDOM % 1100) * 10))
    ok=1
    for p in $(seq "$base" $((base + 39))); do
      if grep -qx "$p" <<<"$listening"; then ok=0; break; fi
    done
    if [[ $ok == 1 ]]; then echo "$base"; return; fi
  done
  die "no free block of ports found"
}

# node_pids DIR: the pids of the nodes of the network in DIR (its localnet
# pid files), comma-separated, for `emrchaind load --cpu-pids`.
node_pids() { cat "$1"/pids/node*.pid | paste -sd,; }

# configure DIR: the settings this run applies to both networks alike:
# TIMEOUT_PROPOSE, MEMPOOL_SIZE and NODE_CONFIG, each a [section.]key=value
# item written into every node's config.toml (set_config).
configure() {
  local settings setting
  read -ra settings -d '' <<<"${NODE_CONFIG:-}" || true # as check_node_env
  [[ -n ${MEMPOOL_SIZE:-} ]] && settings=("mempool.size=$MEMPOOL_SIZE" "${settings[@]}")
  [[ -n $TIMEOUT_PROPOSE ]] && settings=("consensus.timeout_propose=\"$TIMEOUT_PROPOSE\"" "${settings[@]}")
  for setting in "${settings[@]}"; do set_config "$1" "$setting"; done
}

# set_config DIR [SECTION.]KEY=VALUE: writes the setting into every node's
# config.toml of the network in DIR, and dies if one has no such key there
# (it would be ignored, and the bench would say it was set).
set_config() {
  local key=${2%%=*} value=${2#*=} section="" range f where="before the first section"
  if [[ $key == *.* ]]; then section=${key%.*} key=${key##*.}; fi
  # The lines of [section] (dots escaped for sed), or those before the
  # first section for a top-level key.
  range="1,/^\[/"
  if [[ -n $section ]]; then range="/^\[${section//./\\.}\]/,/^\[/" where="under [$section]"; fi
  note "config.toml of every node of $1: ${section:+[$section] }$key = $value"
  for f in "$1"/node*/config/config.toml; do
    sed -i "$range s|^$key = .*|$key = $value|" "$f"
    grep -qxF "$key = $value" <(sed -n "${range}p" "$f") ||
      die "$f: no $key = line $where to set $2 in"
  done
}

# write_net DIR CHAIN_ID: writes a 4-validator network into DIR with
# `emrchaind testnet` on a free block of ports and applies configure; sets
# BASE, and PPROF_PORT and METRICS_PORT to spare ports of node1's block
# (enable_pprof, enable_metrics turn them on).
write_net() {
  BASE=$(free_base)
  # --replicate=false: the load uploads no blobs, and a storage service would
  # ask its peers for every record's (bench_chain.sh's header; bench_fill.sh
  # writes its net here too).
  run "$EMRCHAIND" testnet --output "$1" --base-port "$BASE" --chain-id "$2" --backend "$BACKEND" --replicate=false \
    ${TIMEOUT_COMMIT:+--timeout-commit "$TIMEOUT_COMMIT"} >/dev/null
  configure "$1"
  METRICS_PORT=$((BASE + 17))
  PPROF_PORT=$((BASE + 18))
}

# enable_pprof DIR NODE PORT
enable_pprof() {
  note "config.toml of $1/node$2: pprof_laddr = \"127.0.0.1:$3\""
  sed -i "s|^pprof_laddr = .*|pprof_laddr = \"127.0.0.1:$3\"|" "$1/node$2/config/config.toml"
}

# enable_metrics DIR NODE PORT: CometBFT's Prometheus metrics on node NODE.
enable_metrics() {
  note "config.toml of $1/node$2: prometheus = true, prometheus_listen_addr = \"127.0.0.1:$3\""
  sed -i "s|^prometheus = .*|prometheus = true|; s|^prometheus_listen_addr = .*|prometheus_listen_addr = \"127.0.0.1:$3\"|" \
    "$1/node$2/config/config.toml"
}

# scrape PORT FILE: the mempool, ABCI timing and consensus counters.
scrape() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    grep -E '^cometbft_(mempool_|abci_connection_method_timing_seconds_(sum|count)|consensus_(rounds|total_txs|block_interval_seconds_(sum|count))|state_block_processing_time_(sum|count))' >"$2" || true
}

# rpc DIR I: the RPC URL of node I.
rpc() { jq -r ".nodes[$2].rpc" "$1/testnet.json" | sed 's|^tcp://|http://|'; }

# start_net DIR BINARY: every node with GOGC=$NODE_GOGC and, when
# NODE_MEMLIMIT is set, GOMEMLIMIT=$NODE_MEMLIMIT.
start_net() {
  echo "+ GOGC=$NODE_GOGC GOMEMLIMIT=${NODE_MEMLIMIT:-} LOCALNET_DIR=$1 EMRCHAIND=$2 WAIT=90 $LOCALNET start" | tee -a "$OUT/commands.txt"
  GOGC=$NODE_GOGC GOMEMLIMIT=${NODE_MEMLIMIT:-} LOCALNET_DIR=$1 EMRCHAIND=$2 WAIT=90 "$LOCALNET" start | tail -n 6
}

stop_net() {
  echo "+ LOCALNET_DIR=$1 $LOCALNET stop" >>"$OUT/commands.txt"
  LOCALNET_DIR=$1 "$LOCALNET" stop | tail -n 1
}

# note: a line for commands.txt about an edit made without a command line.
note() { echo "# $*" >>"$OUT/commands.txt"; }

# cpu_per_tx SUMMARY: node CPU ms per committed tx, as the load tool
# measured it with --cpu-pids over the measured window only (after the
# warm-up, to the end of the measured phase; not setup, signing or drain).
cpu_per_tx() {
  jq -r '.node_cpu_ms_per_tx // "n/a"' "$1"
}

# profile_later PORT FILE DELAY SECONDS: after DELAY seconds, a CPU profile
# of SECONDS from the node whose pprof listens on PORT, into FILE.
profile_later() {
  sleep "$3" && curl -fsS -o "$2" "http://127.0.0.1:$1/debug/pprof/profile?seconds=$4"
}

# profile_text BINARY FILE: FILE's top functions, flat and cumulative, next
# to it as FILE without .pprof plus -top.txt and -cum.txt.
profile_text() {
  [[ -s $2 ]] || return 1
  go tool pprof -top -nodecount=40 "$1" "$2" >"${2%.pprof}-top.txt" 2>/dev/null || true
  go tool pprof -top -cum -nodecount=60 "$1" "$2" >"${2%.pprof}-cum.txt" 2>/dev/null || true
}

# JQ_LATENCY defines lat(k) for jq over a load summary: statistic k of
# latency_ms with its unit, "≥" before it when it is a lower bound (txs that
# never committed fall on it: latency_ms.at_least), and "n/a" when the run
# has no latency at all (count 0), whose 0 would read as a met target.
JQ_LATENCY='def lat($k): if (.latency_ms.count // 0) == 0 then "n/a" else (if ((.latency_ms.at_least // []) | any(.[]; . == $k)) then "≥" else "" end) + "\(.latency_ms[$k]) ms" end;'
