#!/usr/bin/env bash
# Restart of a large ledger: time from `cairn server` start to the first answered
# sys/seal-status, with a full replay and with a projection snapshot.
#
# Usage: bench/restart.sh [EVENTS] [DIR]   (defaults: 10000000, a new temp dir)
# Builds cairn (release) and the replay benchmark, writes a synthetic ledger of EVENTS
# events into DIR/ledger (mostly access events; projections/benches/support/synth.rs),
# then:
#   1. starts cairn in config mode on DIR with no snapshot (full replay), times it to the
#      first 200 from sys/seal-status, waits for the snapshot the start writes in the
#      background, stops it (SIGTERM);
#   2. starts it again (newest snapshot + the events after it: none), times it the same way.
# The ledger is sealed with made-up keys: the server answers seal-status (initialized,
# sealed), which needs the whole state, but cannot be unsealed. DIR is removed at the end
# unless it was given.
set -euo pipefail
EVENTS=${1:-10000000}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${2:-}" ]; then DIR=$2; KEEP=1; else DIR=$(mktemp -d /tmp/cairn-restart.XXXXXX); KEEP=0; fi
PORT=${PORT:-18299}
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

cd "$ROOT"
cargo build --release -p cairn-api --bin cairn
if [ ! -d "$DIR/ledger" ]; then
  CAIRN_REPLAY_EVENTS=$EVENTS cargo bench -p cairn-projections --bench replay -- --keep "$DIR" --generate-only
fi
du -sh "$DIR/ledger"
cat > "$DIR/cairn.hcl" <<HCL
storage "sled" { path = "$DIR" }
listener "tcp" {
  address     = "127.0.0.1:$PORT"
  tls_disable = true
}
HCL

# Starts the server and sets ELAPSED to the seconds to the first answered seal-status
# (not through $(…): the server's PID must stay in this shell for `stop`).
start() {
  local t0 t1
  t0=$(date +%s.%N)
  "$TARGET/release/cairn" server -config="$DIR/cairn.hcl" >>"$DIR/server.log" 2>&1 &
  PID=$!
  until curl -sf "http://127.0.0.1:$PORT/v1/sys/seal-status" >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/server.log"; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  ELAPSED=$(echo "$t1 - $t0" | bc)
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }

rm -rf "$DIR/snapshots"
start
full=$ELAPSED
echo "start, full replay: ${full} s to seal-status"
curl -s "http://127.0.0.1:$PORT/v1/sys/seal-status"; echo
# The start folded more than a million events: it writes a snapshot in the background.
for _ in $(seq 1 600); do
  ls "$DIR/snapshots"/state-*.snap >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 1
stop
ls -l "$DIR/snapshots"
start
snap=$ELAPSED
echo "start, from the snapshot: ${snap} s to seal-status"
grep "state rebuilt" "$DIR/server.log" || true
stop
