#!/usr/bin/env bash
# KV v2 write and read throughput of one cairn node against a three-node cairn cluster, in
# the same run on the same machine (shared/bench/load.sh, the workloads of vs-openbao.sh).
#
# Usage: bench/cluster.sh [SECONDS] [CONNECTIONS]      (defaults: 10, 32)
# Environment: PIPELINE_DEPTH (the raft stanza's, default 1); CAIRN=path of the cairn binary (default: builds it, release, and uses
#   $CARGO_TARGET_DIR/release/cairn); WORKLOADS (default "kv-write kv-read").
# Needs wrk, jq, curl, python3.
#
# 1. one node in config mode (storage "sled"), init + unseal, kv-v2 at secret/; load; stop.
# 2. three nodes (storage "raft", node2 and node3 retry_join node1) on the same machine,
#    init + unseal, kv-v2 at secret/; the load goes to the leader.
# Every cluster write is fsynced in the raft logs of a majority before its answer (and in
# each node's ledger right after), and the three processes share the machine's cores with wrk.
# Prints rps, p99 and the cluster/single ratio per workload.
set -euo pipefail
SECS=${1:-10}; CONNS=${2:-32}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
WORKLOADS=${WORKLOADS:-"kv-write kv-read"}
for tool in wrk jq curl python3; do command -v $tool >/dev/null || { echo "missing $tool (apt-get install wrk jq curl)" >&2; exit 2; }; done
# shellcheck source=cluster-lib.sh
source "$HERE/cluster-lib.sh"

if [ -z "${CAIRN:-}" ]; then
  echo "building cairn (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p cairn-api)
  CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi

WORK=$(mktemp -d /tmp/cairn-cluster-bench-XXXXXX)
SPID=
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
  cluster_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

# The machine is shared: say what else was busy when each phase started.
busy() { echo "$1: load average $(cut -d' ' -f1-3 /proc/loadavg); busiest other processes: $(ps -eo pcpu=,comm= --sort=-pcpu | grep -vE ' (cairn|wrk|ps|bash)$' | head -n 3 | awk '{printf "%s %s%%  ", $2, $1}')" >&2; }
run() { WORKLOADS="$WORKLOADS" "$SHARED/load.sh" "$1" "$2" "$SECS" "$CONNS"; }
echo "running: $WORKLOADS, ${SECS}s each, $CONNS connections" >&2

# 1. a single node.
SPORT=$(free_port)
mkdir -p "$WORK/single"
cat > "$WORK/single/cairn.hcl" <<HCL
storage "sled" { path = "$WORK/single/data" }
listener "tcp" {
  address = "127.0.0.1:$SPORT"
  tls_disable = true
  # wrk opens every connection from loopback: above cairn's default cap of 256
  max_connections_per_address = 4096
}
disable_mlock = true
log_level = "warn"
HCL
"$CAIRN" server -config="$WORK/single/cairn.hcl" > "$WORK/single/cairn.log" 2>&1 &
SPID=$!
SADDR="http://127.0.0.1:$SPORT"
wait_until 20 "single node answering" curl -s -o /dev/null "$SADDR/v1/sys/health"
INIT=$(curl -sf -X PUT "$SADDR/v1/sys/init" -d '{"secret_shares":1,"secret_threshold":1}')
curl -sf -X PUT "$SADDR/v1/sys/unseal" -d "{\"key\":\"$(echo "$INIT" | jq -r '.keys_base64[0]')\"}" > /dev/null
STOKEN=$(echo "$INIT" | jq -r .root_token)
curl -sf -H "X-Vault-Token: $STOKEN" -X POST "$SADDR/v1/sys/mounts/secret" -d '{"type":"kv-v2"}' > /dev/null
busy "single node ($SADDR)"
SINGLE_OUT=$(run "$SADDR" "$STOKEN")
kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
log_problems "$WORK/single/cairn.log" "single node"

# 2. three nodes, load on the leader.
cluster_start
L=$(find_leader 1 2 3)
busy "cluster, leader node$L (${NODE_ADDR[$L]})"
CLUSTER_OUT=$(run "${NODE_ADDR[$L]}" "$CTOKEN")
LEADER_AFTER=$(find_leader 1 2 3 || echo none)
[ "$LEADER_AFTER" = "$L" ] || echo "WARNING: the leader changed during the load: node$L -> node$LEADER_AFTER" >&2
idx=""; for i in 1 2 3; do idx+="node$i=$(applied_index "$i") "; done
echo "raft applied index after the load: $idx" >&2

field() { echo "$1" | grep "^$2 " | sed -n "s/.*$3=\([0-9.]*\).*/\1/p"; }
printf "%-10s %12s %12s %8s   %10s %10s   %s\n" workload "single rps" "cluster rps" ratio "single p99" "clus. p99" "errors s/c"
for w in $WORKLOADS; do
  srps=$(field "$SINGLE_OUT" "$w" rps); crps=$(field "$CLUSTER_OUT" "$w" rps)
  sp99=$(field "$SINGLE_OUT" "$w" p99_ms); cp99=$(field "$CLUSTER_OUT" "$w" p99_ms)
  serr=$(field "$SINGLE_OUT" "$w" errors); cerr=$(field "$CLUSTER_OUT" "$w" errors)
  ratio=$(python3 -c "print(f'{float(\"${crps:-0}\")/max(float(\"${srps:-1}\"),1)*100:.0f}%')")
  printf "%-10s %12s %12s %8s   %8sms %8sms   %s/%s\n" "$w" "$srps" "$crps" "$ratio" "$sp99" "$cp99" "$serr" "$cerr"
done
for i in 1 2 3; do log_problems "$WORK/n$i/node.log" "node$i"; done
echo "ledger+raft on disk per node: $(du -sh "$WORK"/n1/data | cut -f1) (node1), single node: $(du -sh "$WORK/single/data" | cut -f1)" >&2
