#!/usr/bin/env bash
# Two builds of cairn against each other, interleaved in one session (the machine is
# shared and noisy: only figures from the same run compare): each round starts build A,
# then build B, in config mode with durable storage, and drives each with
# shared/bench/load.sh. Prints one line per build, round and workload, with the server's
# CPU time per request (steadier than the rate on a shared machine).
#
#   bench/ab.sh BINARY_A BINARY_B [SECONDS] [CONNECTIONS] [ROUNDS]
#
# CONFIG_A / CONFIG_B: extra top-level configuration lines for each; LISTENER_A /
# LISTENER_B: the listener's extra lines (default: lib.sh's connection cap for wrk; set one
# to empty for a build from before the caps, which refuses the key).
# WORKLOADS as load.sh (default: kv-write kv-read token-create). Needs wrk, jq, curl, python3.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
a=$1; b=$2; secs=${3:-10}; conns=${4:-32}; rounds=${5:-2}
SHARED=${SHARED_BENCH:-$(pwd)/../../shared/bench}
export WORKLOADS=${WORKLOADS:-"kv-write kv-read token-create"}
one() {
  local name=$1 bin=$2 extra=$3 work
  work=$(mktemp -d /tmp/cairn-ab-XXXXXX)
  if [ -n "${4+set}" ]; then LISTENER_LINES=$4 start_cairn "$bin" "$work" "$extra"; else start_cairn "$bin" "$work" "$extra"; fi
  curl -sf -H "X-Vault-Token: $CTOKEN" -X POST "$CADDR/v1/sys/mounts/secret" -d '{"type":"kv-v2"}' > /dev/null
  # The server's CPU time per request is steadier than its rate on a shared machine.
  local w before after out requests
  for w in $WORKLOADS; do
    before=$(cpu_ticks "$CPID")
    out=$(WORKLOADS=$w "$SHARED/load.sh" "$CADDR" "$CTOKEN" "$secs" "$conns")
    after=$(cpu_ticks "$CPID")
    requests=$(echo "$out" | sed -nE 's/.*requests=([0-9]+).*/\1/p')
    echo "$name round $round: $out server_cpu_us_per_request=$(( (after - before) * 1000000 / $(getconf CLK_TCK) / ${requests:-1} ))"
  done
  kill "$CPID"; wait "$CPID" 2>/dev/null || true
  rm -rf "$work"
}
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq "$rounds"); do
  if [ -n "${LISTENER_A+set}" ]; then one A "$a" "${CONFIG_A:-}" "$LISTENER_A"; else one A "$a" "${CONFIG_A:-}"; fi
  if [ -n "${LISTENER_B+set}" ]; then one B "$b" "${CONFIG_B:-}" "$LISTENER_B"; else one B "$b" "${CONFIG_B:-}"; fi
done
