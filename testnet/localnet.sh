#!/usr/bin/env bash
# localnet.sh — run a consortium of emrchain validators on this machine.
#
#   testnet/localnet.sh start    write the testnet into $LOCALNET_DIR unless it
#                                exists, start every validator (and MinIO with
#                                BLOB=minio) in the background, wait for blocks
#   testnet/localnet.sh stop     stop what start started (pid files), wait
#   testnet/localnet.sh status   show which processes run and the heights
#
# Environment (defaults in brackets):
#   LOCALNET_DIR  directory of the testnet [./localnet]
#   EMRCHAIND     the node binary [./bin/emrchaind]
#   VALIDATORS    number of validators of a new testnet [4]
#   BASE_PORT     first port of a new testnet; node i uses BASE_PORT+10i.. [26600]
#   CHAIN_ID      chain id of a new testnet [emrchain-localnet]
#   BLOB          blob store of a new testnet's sidecars: fs or minio [fs]
#   MINIO         the MinIO server binary, for BLOB=minio [./bin/minio]
#   MINIO_ADDR    where MinIO listens, for BLOB=minio [127.0.0.1:9000]
#   WAIT          seconds to wait for the first blocks [60]
#
# Everything listens on 127.0.0.1. Logs go to $LOCALNET_DIR/logs, pid files to
# $LOCALNET_DIR/pids. The registrars' dev keys are in $LOCALNET_DIR/keys and
# the addresses of every node in $LOCALNET_DIR/testnet.json.
set -euo pipefail

DIR=${LOCALNET_DIR:-./localnet}
EMRCHAIND=${EMRCHAIND:-./bin/emrchaind}
VALIDATORS=${VALIDATORS:-4}
BASE_PORT=${BASE_PORT:-26600}
CHAIN_ID=${CHAIN_ID:-emrchain-localnet}
BLOB=${BLOB:-fs}
MINIO=${MINIO:-./bin/minio}
MINIO_ADDR=${MINIO_ADDR:-127.0.0.1:9000}
WAIT=${WAIT:-60}
STOP_WAIT=20
# Development credentials of the local MinIO server: for this machine only.
MINIO_DEV_USER=emrchain-dev
MINIO_DEV_PASSWORD=emrchain-dev-secret

die() { echo "localnet: $*" >&2; exit 1; }
say() { echo "localnet: $*"; }

# alive PID: the process runs and is one this localnet started (its command
# line names the localnet directory), so a recycled pid is never signalled.
alive() {
  local pid=$1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$ABS_DIR"
}

# rpc_ports: the RPC port of every node, from testnet.json.
rpc_ports() {
  grep -o '"rpc": *"tcp://127\.0\.0\.1:[0-9]*"' "$DIR/testnet.json" | grep -o '[0-9]*"$' | tr -d '"'
}

# height PORT: the node's latest block height, or nothing.
height() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/status" 2>/dev/null |
    grep -o '"latest_block_height": *"[0-9]*"' | grep -o '[0-9]*' || true
}

# network PORT: the chain id of the node answering on the RPC port.
network() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/status" 2>/dev/null |
    grep -o '"network": *"[^"]*"' | cut -d'"' -f4 || true
}

nodes() { ls -d "$DIR"/node* 2>/dev/null | sort -V; }

start() {
  [[ -x $EMRCHAIND ]] || die "$EMRCHAIND not found: run make build (or set EMRCHAIND)"
  command -v curl >/dev/null || die "curl is needed to watch the nodes"
  if [[ ! -f $DIR/testnet.json ]]; then
    local force=()
    if [[ -f $DIR/testnet.partial ]]; then
      say "$DIR holds a testnet whose writing stopped part way: writing it again"
      force=(--force)
    fi
    "$EMRCHAIND" testnet --output "$DIR" --validators "$VALIDATORS" --base-port "$BASE_PORT" \
      --chain-id "$CHAIN_ID" --blob "$BLOB" --minio-addr "$MINIO_ADDR" ${force[@]+"${force[@]}"}
  else
    say "using the existing testnet in $DIR (delete it, or make localnet-stop and rm -rf it, for a new one)"
  fi
  ABS_DIR=$(cd "$DIR" && pwd)
  mkdir -p "$DIR/logs" "$DIR/pids"

  if grep -q '"kind": *"minio"' "$DIR/testnet.json"; then
    start_minio
    export MINIO_ACCESS_KEY=$MINIO_DEV_USER MINIO_SECRET_KEY=$MINIO_DEV_PASSWORD
  fi

  # Every RPC port must be free (or ours): a node that cannot bind exits, and
  # another chain answering on the port must not pass for this one.
  local chain port
  chain=$(grep -o '"chain_id": *"[^"]*"' "$DIR/testnet.json" | cut -d'"' -f4)
  for port in $(rpc_ports); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$port/status" >/dev/null 2>&1 && [[ $(network "$port") != "$chain" ]]; then
      die "port $port already serves chain \"$(network "$port")\", not $chain: stop it, or use another BASE_PORT"
    fi
  done

  local home name pidf
  for home in $(nodes); do
    name=$(basename "$home")
    pidf="$DIR/pids/$name.pid"
    if [[ -f $pidf ]] && alive "$(cat "$pidf")"; then
      say "$name already runs (pid $(cat "$pidf"))"
      continue
    fi
    # setsid: the node outlives make and the terminal's signals.
    setsid "$EMRCHAIND" start --home "$ABS_DIR/$name" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pidf"
    say "started $name (pid $!, log $DIR/logs/$name.log)"
  done

  local deadline=$((SECONDS + WAIT)) port h ready
  while :; do
    ready=0
    for port in $(rpc_ports); do
      h=$(height "$port")
      [[ -n $h && $h -ge 2 && $(network "$port") == "$chain" ]] && ready=$((ready + 1))
    done
    [[ $ready -eq $(rpc_ports | wc -l) ]] && break
    for pidf in "$DIR"/pids/node*.pid; do
      alive "$(cat "$pidf")" || die "$(basename "$pidf" .pid) exited; see $DIR/logs/$(basename "$pidf" .pid).log"
    done
    ((SECONDS < deadline)) || die "no blocks on every node after ${WAIT}s; see $DIR/logs"
    sleep 1
  done
  say "the chain makes blocks: height $(height "$(rpc_ports | head -1)") on node0"
  status
  # LOCALNET_HINT=0: a script that runs its own story and stops the net (make demo).
  [[ ${LOCALNET_HINT:-1} == 0 ]] ||
    say "registrar keys: $DIR/keys; addresses: $DIR/testnet.json; try: make demo-localnet (the emrcli story on this net; README, \"By hand on the localnet\"); stop with: make localnet-stop"
}

start_minio() {
  local pidf="$DIR/pids/minio.pid"
  if [[ -f $pidf ]] && alive "$(cat "$pidf")"; then
    say "minio already runs (pid $(cat "$pidf"))"
    return
  fi
  [[ -x $MINIO ]] || die "BLOB=minio needs the MinIO server at $MINIO: run make minio (or set MINIO)"
  local addr
  addr=$(grep -o '"minio_addr": *"[^"]*"' "$DIR/testnet.json" | cut -d'"' -f4)
  mkdir -p "$DIR/minio-data"
  MINIO_ROOT_USER=$MINIO_DEV_USER MINIO_ROOT_PASSWORD=$MINIO_DEV_PASSWORD \
    setsid "$MINIO" server "$ABS_DIR/minio-data" --address "$addr" --console-address 127.0.0.1:0 \
    >>"$DIR/logs/minio.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  local deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 "http://$addr/minio/health/live" >/dev/null 2>&1; do
    alive "$(cat "$pidf")" || die "minio exited; see $DIR/logs/minio.log"
    ((SECONDS < deadline)) || die "minio not ready after 30s; see $DIR/logs/minio.log"
    sleep 1
  done
  say "started minio on $addr (pid $(cat "$pidf"), user $MINIO_DEV_USER)"
}

stop() {
  [[ -d $DIR/pids ]] || { say "nothing to stop in $DIR"; return; }
  ABS_DIR=$(cd "$DIR" && pwd)
  local pidf pid name left=()
  # Validators first, MinIO last (the sidecars use it until they stop).
  for pidf in $(ls "$DIR"/pids/node*.pid 2>/dev/null | sort -V) "$DIR/pids/minio.pid"; do
    [[ -f $pidf ]] || continue
    pid=$(cat "$pidf")
    name=$(basename "$pidf" .pid)
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      left+=("$pidf")
      say "stopping $name (pid $pid)"
    else
      rm -f "$pidf"
    fi
  done
  local deadline=$((SECONDS + STOP_WAIT))
  for pidf in "${left[@]}"; do
    pid=$(cat "$pidf")
    while alive "$pid"; do
      if ((SECONDS >= deadline)); then
        say "$(basename "$pidf" .pid) did not stop within ${STOP_WAIT}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
        break
      fi
      sleep 0.2
    done
    rm -f "$pidf"
  done
  say "stopped"
}

status() {
  [[ -f $DIR/testnet.json ]] || { say "no testnet in $DIR"; return; }
  ABS_DIR=$(cd "$DIR" && pwd)
  local i=0 port pidf state
  for port in $(rpc_ports); do
    pidf="$DIR/pids/node$i.pid"
    state=stopped
    [[ -f $pidf ]] && alive "$(cat "$pidf")" && state="running (pid $(cat "$pidf"))"
    printf '  node%-3s %-22s rpc http://127.0.0.1:%s  height %s\n' "$i" "$state" "$port" "$(height "$port")"
    i=$((i + 1))
  done
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
