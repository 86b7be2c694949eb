#!/usr/bin/env bash
# Lease expiry and memory per live lease on cairn: LEASES dynamic PostgreSQL credentials
# live at once, each with a TTL of TTL; how long after its expiry each user is gone from
# PostgreSQL, and how much the server's resident memory grew per live lease.
#
# Usage: [REVOCATION=SQL] [PEER=openbao] bench/lease-expiry.sh [LEASES] [TTL] [THREADS]
#        (defaults: 10000 120s 32; REVOCATION unset = the plugin's default revocation)
# e.g.   REVOCATION='DROP ROLE IF EXISTS "{{name}}";' bench/lease-expiry.sh
# Needs python3, jq, curl, psql; PostgreSQL at 127.0.0.1:5432 where `postgres` may log in
# over TCP. The cairn binary is built with cargo (CARGO_TARGET_DIR is honoured).
#
# cairn runs in config mode with durable storage, initialized and unsealed over the API.
# The role `expiry` has default_ttl = max_ttl = TTL, which must leave time to issue and
# look up every lease, and to restart the server once, before the first one expires (the
# script fails otherwise; on this 2-core machine PostgreSQL creates about 200 users/s, so
# 10,000 take about 50 s). Without REVOCATION the users are revoked as Vault's plugin
# does by default: privileges revoked one by one, then DROP ROLE. The measuring is
# bench/lease_expiry.py (its docstring says how); it restarts cairn twice to measure
# memory on a state rebuilt from the ledger. On exit the server is stopped, its data
# removed, and any PostgreSQL role of the role `expiry` left behind is dropped.
#
# PEER=openbao runs the same measurement against a real OpenBao instead (started by
# shared/bench/peer-openbao.sh, raft storage and a file audit device; role `expiryb`;
# no restarts). It issues creds at about 100/s here, so give it a TTL of 180s or more.
set -euo pipefail
LEASES=${1:-10000}; TTL=${2:-120s}; THREADS=${3:-32}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
for tool in jq curl psql python3; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 2; }; done
PEER=${PEER:-}
ROLE=expiry; [ "$PEER" = openbao ] && ROLE=expiryb

WORK=$(mktemp -d /tmp/cairn-expiry-XXXXXX)
cleanup() {
  set +e
  stop_servers "$WORK"
  local left
  left=$(pg_count "$ROLE")
  [ "$left" = 0 ] || { echo "dropping $left PostgreSQL roles left behind..." >&2; pg_drop "$ROLE"; }
  echo "PostgreSQL roles of '$ROLE' left: $(pg_count "$ROLE")" >&2
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(pg_count "$ROLE")" != 0 ]; then
  echo "dropping PostgreSQL roles left by an earlier run..." >&2
  pg_drop "$ROLE"
fi

if [ "$PEER" = openbao ]; then
  BPORT=$(free_port)
  read -r ADDR TOKEN < <("$SHARED/peer-openbao.sh" "$WORK/bao" "$BPORT" | tail -n 1)
  PID=$(cat "$WORK/bao/pid"); RESTART_ARGS=()
else
  echo "building cairn (release)..." >&2
  (cd "$ROOT" && cargo build --release -q -p cairn-api)
  CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
  start_cairn "$CAIRN" "$WORK"
  ADDR=$CADDR; TOKEN=$CTOKEN; PID=$CPID
  # Starts cairn again on the same data (the script then unseals it); prints the new pid.
  RESTART="'$CAIRN' server -config='$WORK/cairn.hcl' >> '$WORK/cairn.log' 2>&1 & echo \$! > '$WORK/cairn.pid'; echo \$!"
  RESTART_ARGS=(--restart-cmd "$RESTART" --unseal-key "$CKEY")
fi
setup_database "$ADDR" "$TOKEN" "$ROLE" "$TTL" "$TTL" "${REVOCATION:-}"
echo "${PEER:-cairn} pid $PID at $ADDR; $LEASES leases, TTL $TTL, $THREADS threads," \
  "revocation: ${REVOCATION:-plugin default}" >&2

python3 "$HERE/lease_expiry.py" --addr "$ADDR" --token "$TOKEN" --pid "$PID" --role "$ROLE" \
  --leases "$LEASES" --threads "$THREADS" "${RESTART_ARGS[@]}" \
  --psql="-h $PG_HOST -p $PG_PORT -U postgres -d postgres"
