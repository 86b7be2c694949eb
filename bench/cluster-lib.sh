# Helpers for the cluster benchmarks (sourced, not run): bench/cluster.sh and
# bench/failover.sh. They need curl, jq and python3.
#
# A three-node cluster lives under one work directory WORK: node i (1..3) has its config in
# WORK/nI/node.hcl, its data in WORK/nI/data, its log in WORK/nI/node.log and its pid in
# WORK/nI/pid. Arrays (index 1..3): NODE_ADDR (API address), NODE_PID. After cluster_start:
# CTOKEN (root token) and CKEY (the unseal key).
#
# CLUSTER_KIND=cairn (default) or openbao picks the server; CAIRN and BAO name the binaries;
# PIPELINE_DEPTH sets cairn's `pipeline_depth` (default 1).

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys;print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 50 ms until it succeeds; fails
# (status 1, message on stderr) after SECONDS.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( ${EPOCHREALTIME/./} + secs * 1000000 ))
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    if (( ${EPOCHREALTIME/./} > deadline )); then echo "timed out after ${secs}s: $what" >&2; return 1; fi
    sleep 0.05
  done
}

CLUSTER_KIND=${CLUSTER_KIND:-cairn}
declare -a NODE_ADDR NODE_PID NODE_CPORT

# node_config I: writes WORK/nI/node.hcl (node1 joins nobody, node2 and node3 retry_join node1).
node_config() {
  local i=$1 dir="$WORK/n$1" port=${NODE_ADDR[$1]##*:} join=""
  mkdir -p "$dir/data"
  [ "$i" = 1 ] || join="  retry_join {
    leader_api_addr = \"${NODE_ADDR[1]}\"
  }"
  cat > "$dir/node.hcl" <<HCL
storage "raft" {
  path    = "$dir/data"
  node_id = "node$i"
  pipeline_depth = ${PIPELINE_DEPTH:-1}
$join
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
  # wrk opens every connection from loopback: above cairn's default cap of 256
  max_connections_per_address = 4096
}
api_addr      = "${NODE_ADDR[$i]}"
cluster_addr  = "http://127.0.0.1:${NODE_CPORT[$i]}"
disable_mlock = true
log_level     = "warn"
HCL
  if [ "$CLUSTER_KIND" = openbao ]; then
    # OpenBao: a file audit device, as bench/vs-openbao.sh's peer (cairn's ledger records
    # every request anyway). The same path on every node: OpenBao refuses an active node
    # whose config differs from the audit table; only the active node writes.
    cat >> "$dir/node.hcl" <<HCL
audit "file" "file" {
  options { file_path = "$WORK/bao-audit.log" }
}
HCL
    # Its listener's cluster port defaults to the API port + 1: make it cluster_addr's.
    sed -i "s|^  tls_disable = true|  tls_disable = true\n  cluster_address = \"127.0.0.1:${NODE_CPORT[$i]}\"|" "$dir/node.hcl"
  fi
}

# node_start I: starts node I in the background (appending to its log).
node_start() {
  local i=$1 dir="$WORK/n$1" bin
  if [ "$CLUSTER_KIND" = openbao ]; then bin=$BAO; else bin=$CAIRN; fi
  "$bin" server -config="$dir/node.hcl" >> "$dir/node.log" 2>&1 &
  NODE_PID[$i]=$!; echo "${NODE_PID[$i]}" > "$dir/pid"
  wait_until 20 "node$i answering sys/health" curl -s -o /dev/null "${NODE_ADDR[$i]}/v1/sys/health"
}

node_unseal() {
  curl -sf -X PUT "${NODE_ADDR[$1]}/v1/sys/unseal" -d "{\"key\":\"$CKEY\"}" | jq -e '.sealed == false' > /dev/null
}

node_kill() { kill -9 "${NODE_PID[$1]}" 2>/dev/null || true; wait "${NODE_PID[$1]}" 2>/dev/null || true; }

# Stops every node still running (SIGTERM, then SIGKILL after 10 s).
cluster_stop() {
  local i pid
  for i in 1 2 3; do
    pid=${NODE_PID[$i]:-}; [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for i in 1 2 3; do
    pid=${NODE_PID[$i]:-}; [ -n "$pid" ] || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

leader_json() { curl -s --max-time 2 "${NODE_ADDR[$1]}/v1/sys/leader"; }
is_leader() { leader_json "$1" | jq -e '.is_self == true' > /dev/null; }
applied_index() { leader_json "$1" | jq -r '.raft_applied_index // 0'; }

# leader_of_running I...: prints the index (1..3) of the node among I... that says it leads.
find_leader() {
  local i
  for i in "$@"; do is_leader "$i" && { echo "$i"; return 0; }; done
  return 1
}

voters() {
  curl -sf --max-time 2 -H "X-Vault-Token: $CTOKEN" "${NODE_ADDR[1]}/v1/sys/storage/raft/configuration" |
    jq -e '[.data.config.servers[] | select(.voter == true)] | length == 3' > /dev/null
}
initialized() { curl -sf --max-time 2 "${NODE_ADDR[$1]}/v1/sys/init" | jq -e '.initialized == true' > /dev/null; }
active() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${NODE_ADDR[$1]}/v1/sys/health" | grep -qE '^(200|429)$'; }

# cluster_start: three nodes on free ports; node1 initialised and unsealed, node2 and node3
# joined by retry_join and unsealed, kv-v2 mounted at secret/. Sets CTOKEN, CKEY.
cluster_start() {
  local i init
  for i in 1 2 3; do NODE_ADDR[$i]="http://127.0.0.1:$(free_port)"; NODE_CPORT[$i]=$(free_port); done
  for i in 1 2 3; do node_config "$i"; done
  node_start 1
  init=$(curl -sf -X PUT "${NODE_ADDR[1]}/v1/sys/init" -d '{"secret_shares":1,"secret_threshold":1}')
  CKEY=$(echo "$init" | jq -r '(.keys_base64 // .keys)[0]')
  CTOKEN=$(echo "$init" | jq -r .root_token)
  node_unseal 1
  wait_until 30 "node1 leading" is_leader 1
  node_start 2; node_start 3
  if [ "$CLUSTER_KIND" = openbao ]; then
    # OpenBao joins (retry_join) once a node is unsealed with the cluster's key.
    # The unseal answers sealed=true while the join completes: give the key, then wait.
    bao_unseal_joined() { curl -s -X PUT "${NODE_ADDR[$1]}/v1/sys/unseal" -d "{\"key\":\"$CKEY\"}" > /dev/null; sleep 1; active "$1"; }
    for i in 2 3; do
      wait_until 60 "node$i joined and unsealed" bao_unseal_joined "$i"
    done
    wait_until 60 "three voters" voters
  else
    # A joining node shows as initialized once it holds the cluster's seal material; its
    # unseal completes the join and answers once the cluster's ledger has reached it.
    for i in 2 3; do
      wait_until 30 "node$i holding the cluster's seal material" initialized "$i"
      node_unseal "$i"
    done
    wait_until 60 "three voters" voters
  fi
  for i in 2 3; do wait_until 30 "node$i unsealed standby" active "$i"; done
  wait_until 30 "kv-v2 mounted at secret/" curl -sf -H "X-Vault-Token: $CTOKEN" -X POST \
    "${NODE_ADDR[1]}/v1/sys/mounts/secret" -d '{"type":"kv","options":{"version":"2"}}'
}

# log_problems FILE NAME: how many warn/error lines a server log holds, and the first few.
log_problems() {
  local n
  n=$(grep -ciE '\b(warn|error|fatal|panic)' "$1" || true)
  echo "$2 log: $n warn/error line(s)" >&2
  [ "$n" = 0 ] || grep -iE '\b(warn|error|fatal|panic)' "$1" | sed 's/\x1b\[[0-9;]*m//g' | head -n 5 | cut -c1-400 >&2
}
