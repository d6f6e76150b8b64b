#!/usr/bin/env bash
# demo.sh — an oncology story through emrcli, across two hospitals, on a
# running localnet (make localnet; `make demo` starts a fresh one, runs this
# and stops it):
#
#   1. each hospital's registrar registers its clinician, through its own
#      hospital's node: dr-alice, oncologist at hospital-a; dr-bob,
#      radiologist at hospital-b;
#   2. a patient, ada, enrolls and consents: dr-alice may read and write all
#      her records for a year, dr-bob may read her radiation-dose records for
#      a week;
#   3. dr-alice encrypts a radiation dose report and uploads it through
#      hospital-a's sidecar; its metadata (hash, wrapped key) goes on chain;
#      every other hospital's sidecar copies the ciphertext as a storage
#      service once the record commits;
#   4. dr-bob downloads it through hospital-b's own sidecar (from its copy;
#      a sidecar without one fetches the ciphertext from a peer on his
#      authorization): the read is logged on chain first, the ciphertext is
#      checked against the proven hash, then decrypted;
#   5. break-glass: hospital-a's registrar registers its emergency service
#      (er-hospital-a; a sidecar of hospital-a is started as that service,
#      holding its key) and dr-carol, an emergency physician ada granted
#      nothing; ada opts in to break-glass reads of her radiation-dose
#      records by hospital-a (the emergency right, granted to the service);
#      dr-carol's emergency download is logged on chain as an emergency
#      read, the ciphertext comes from hospital-a's sidecar and the data key
#      from the emergency service, sealed to her;
#   6. ada reads her audit log (the emergency read is flagged, with the
#      service); hospital-a's auditor reviews every break-glass read
#      through its emergency service, across patients; ada revokes hospital-b's access (her key rotates) and
#      dr-bob's next download is refused with the chain's reason.
#
# Every query is verified by the light client against a root of trust taken
# from the genesis. Environment: LOCALNET_DIR [./localnet], EMRCLI
# [./bin/emrcli], EMRCHAIND [./bin/emrchaind] (the emergency service's
# sidecar), ER_SIDECAR_PORT [node0's sidecar port + 50]. The demo's keys and
# light store live in $LOCALNET_DIR/demo, written afresh on each run (keyring
# backend "test": unencrypted, for scripts only).
set -euo pipefail

DIR=${LOCALNET_DIR:-./localnet}
EMRCLI=${EMRCLI:-./bin/emrcli}
EMRCHAIND=${EMRCHAIND:-./bin/emrchaind}

die() { echo "demo: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

[[ -x $EMRCLI ]] || die "$EMRCLI not found: run make build (or set EMRCLI)"
[[ -x $EMRCHAIND ]] || die "$EMRCHAIND not found: run make build (or set EMRCHAIND)"
[[ -f $DIR/testnet.json ]] || die "no testnet in $DIR: run make localnet first"
ABS_DIR=$(cd "$DIR" && pwd)

# field NODE KEY: a node's address from testnet.json ("rpc", "sidecar").
field() {
  awk -v n="\"name\": \"$1\"" -v k="\"$2\":" '
    index($0, n) { found = 1 }
    found && index($0, k) { gsub(/[",]/, "", $2); print $2; exit }' "$DIR/testnet.json"
}
rpc() { field "$1" rpc | sed 's#^tcp://#http://#'; }
RPC_A=$(rpc node0) RPC_B=$(rpc node1)
SIDECAR_A=$(field node0 sidecar) SIDECAR_B=$(field node1 sidecar)
[[ -n $RPC_A && -n $RPC_B && -n $SIDECAR_A ]] || die "cannot read the node addresses from $DIR/testnet.json"
curl -fsS --max-time 3 "$RPC_A/status" >/dev/null || die "node0 does not answer at $RPC_A: is the localnet running (make localnet)?"
[[ -n $SIDECAR_B ]] || die "cannot read node1's sidecar address from $DIR/testnet.json"

export EMRCLI_HOME=$ABS_DIR/demo EMRCLI_KEYRING_BACKEND=test
rm -rf "$EMRCLI_HOME"
mkdir -p "$EMRCLI_HOME"
# Printed quoted as a shell would need it, so each line can be copied.
cli() { printf '$ emrcli' >&2; printf ' %q' "$@" >&2; echo >&2; "$EMRCLI" "$@"; }

step "Trust the chain from its genesis (light client root of trust)"
cli light init --genesis "$ABS_DIR/node0/config/genesis.json" --node "$RPC_A" \
  --witness "$RPC_B" --witness "$(rpc node2)" --witness "$(rpc node3)"

step "Keys: the registrars' dev keys, two clinicians and a patient"
cli keys import-dev "$ABS_DIR/keys/registrar-hospital-a.json"
cli keys import-dev "$ABS_DIR/keys/registrar-hospital-b.json"
for k in dr-alice dr-bob ada; do cli keys add "$k"; done

step "Each hospital registers its clinician, through its own node"
cli member register --from registrar-hospital-a --key dr-alice --role clinician --credential oncology:GMC-1001 --node "$RPC_A"
cli member register --from registrar-hospital-b --key dr-bob --role clinician --credential radiology:GMC-2002 --node "$RPC_B"

step "Ada enrolls and consents"
PID=$(cli patient enroll --from ada --name "Ada Lovelace" --birth-date 1815-12-10 --json | grep -o '"patient_id": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')
echo "patient id: $PID"
echo "Dr Alice (oncology, hospital-a): read and write, every category, for a year"
cli grant --from ada --to dr-alice --rights read,write --until "$(date -u -d '+1 year' +%Y-%m-%d)"
echo "Dr Bob (radiology, hospital-b): read radiation-dose records, for a week"
cli grant --from ada --to dr-bob --rights read --categories radiation-dose --until "$(date -u -d '+7 days' +%Y-%m-%d)"

step "Dr Alice (hospital-a) encrypts and uploads a radiation dose report"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '{"course":"breast, left, adjuvant","fractions":15,"dose_per_fraction_gy":2.67,"total_dose_gy":40.05,"date":"%s"}\n' "$(date -u +%F)" >"$WORK/dose.json"
cli upload --from dr-alice --patient "$PID" --category radiation-dose --sidecar "$SIDECAR_A" --node "$RPC_A" "$WORK/dose.json" | tee "$WORK/upload.txt"
SUM=$(grep 'ciphertext sha256' "$WORK/upload.txt" | grep -o '[0-9a-f]\{64\}' | head -1)

step "Every hospital's sidecar keeps a copy of the ciphertext: their storage services copy it once its record commits"
if grep -q '^storage_key = "storage-' "$ABS_DIR/node1/config/app.toml" 2>/dev/null; then
  for n in 1 2 3; do
    for _ in $(seq 100); do
      [[ -n $(find "$ABS_DIR/node$n/data/blobs/blobs" -name "$SUM" 2>/dev/null) ]] && break
      sleep 0.1
    done
    [[ -n $(find "$ABS_DIR/node$n/data/blobs/blobs" -name "$SUM" 2>/dev/null) ]] ||
      die "node$n's sidecar has no copy of $SUM 10 s after its record committed (its log: $ABS_DIR/logs/node$n.log)"
    echo "node$n's sidecar holds ciphertext $SUM"
  done
else
  echo "(this localnet's sidecars have no storage service: MinIO-backed, or written before they had one)"
fi

step "Dr Bob (hospital-b) downloads it through hospital-b's sidecar: read logged, hash checked, decrypted"
cli download --from dr-bob --patient "$PID" --record 1 -o "$WORK/dose-at-b.json" --sidecar "$SIDECAR_B" --node "$RPC_B"
cmp "$WORK/dose.json" "$WORK/dose-at-b.json" || die "the downloaded report differs from the uploaded one"
echo "the report arrived intact at hospital-b"

step "Break-glass: hospital-a registers its emergency service and an emergency physician ada granted nothing"
cli keys add er-hospital-a
cli keys add dr-carol
cli member register --from registrar-hospital-a --key er-hospital-a --role emergency-service --credential er:on-call --node "$RPC_A"
cli member register --from registrar-hospital-a --key dr-carol --role clinician --credential emergency:GMC-3003 --node "$RPC_A"

step "Hospital-a runs its emergency service: a sidecar holding er-hospital-a's key"
SIDECAR_A_PORT=${SIDECAR_A##*:}
ER_SIDECAR=127.0.0.1:${ER_SIDECAR_PORT:-$((SIDECAR_A_PORT + 50))}
"$EMRCHAIND" sidecar --home "$ABS_DIR/node0" --node "$(field node0 rpc)" --listen "$ER_SIDECAR" \
  --backend fs --dir "$WORK/er-blobs" --ref-index-dir "$WORK/er-refs" \
  --emergency-key er-hospital-a --emergency-keyring-home "$EMRCLI_HOME" --emergency-keyring-backend test --storage-key "" \
  >"$WORK/er-sidecar.log" 2>&1 &
ER_PID=$!
trap 'kill "$ER_PID" 2>/dev/null; wait "$ER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  curl -fsS --max-time 1 "http://$ER_SIDECAR/healthz" >/dev/null 2>&1 && break
  kill -0 "$ER_PID" 2>/dev/null || { cat "$WORK/er-sidecar.log" >&2; die "the emergency service's sidecar exited"; }
  sleep 0.2
done
echo "emergency service of hospital-a at http://$ER_SIDECAR"

step "Ada opts in to break-glass reads of her radiation-dose records by hospital-a"
cli grant --from ada --to er-hospital-a --rights emergency --categories radiation-dose --until "$(date -u -d '+1 year' +%Y-%m-%d)"

step "Dr Carol (hospital-a, no consent) reads the report in an emergency: logged as a break-glass read, with its reason"
cli download --from dr-carol --patient "$PID" --record 1 --purpose emergency --reason patient-incapacitated -o "$WORK/dose-er.json" \
  --sidecar "$SIDECAR_A" --sidecar "$ER_SIDECAR" --node "$RPC_A"
cmp "$WORK/dose.json" "$WORK/dose-er.json" || die "the report read in an emergency differs from the uploaded one"
echo "the report arrived intact; the data key came from hospital-a's emergency service, sealed to Dr Carol"

step "Ada's audit log"
cli audit --from ada

step "Hospital-a's auditor reviews its clinicians' break-glass reads, across patients"
cli keys add auditor-hospital-a
cli member register --from registrar-hospital-a --key auditor-hospital-a --role auditor --credential audit:compliance --node "$RPC_A"
LOG=$(cli break-glass-log --from auditor-hospital-a --node "$RPC_A")
echo "$LOG"
grep -q "dr-carol" <<<"$LOG" || die "the break-glass log does not show Dr Carol's emergency read"

step "Ada revokes hospital-b (Dr Bob); her key rotates"
cli revoke --from ada --to dr-bob

step "Dr Bob's next download is refused by the chain"
if cli download --from dr-bob --patient "$PID" --record 1 -o "$WORK/again.json" --sidecar "$SIDECAR_B" --node "$RPC_B"; then
  die "the download after the revocation succeeded"
fi
echo
echo "demo: done — the records, consents and the audit log are on chain; the report itself only ever left a sidecar encrypted."
