# Helpers shared by the benchmarks (sourced, not run): bench/db-creds-vs-openbao.sh,
#   bench/lease-expiry.sh and bench/login-vs-openbao.sh.
# They need curl, jq, python3 and psql, and PostgreSQL at 127.0.0.1:5432 where the user
# postgres may log in over TCP (trust, or PGPASSWORD).

PG_HOST=${PG_HOST:-127.0.0.1}; PG_PORT=${PG_PORT:-5432}
psql_pg() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -XAtq "$@"; }

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_cairn BINARY WORKDIR [CONFIG_LINES]: cairn in config mode (LISTENER_LINES: the
# listener stanza's extra lines) with durable storage under WORKDIR,
# initialized (1 share) and unsealed over the API as an operator would. Sets CADDR,
# CTOKEN, CKEY (the unseal key) and CPID; the log is WORKDIR/cairn.log, the pid also in
# WORKDIR/cairn.pid.
start_cairn() {
  local bin=$1 work=$2 extra=${3:-} port
  port=$(free_port)
  cat > "$work/cairn.hcl" <<HCL
storage "sled" { path = "$work/cairn-data" }
listener "tcp" {
  address = "127.0.0.1:$port"
  tls_disable = true
  # wrk opens every connection from loopback: above cairn's default cap of 256. A build
  # from before the caps refuses the key: LISTENER_LINES= (empty) leaves it out.
${LISTENER_LINES-  max_connections_per_address = 4096}
}
disable_mlock = true
log_level = "warn"
$extra
HCL
  "$bin" server -config="$work/cairn.hcl" > "$work/cairn.log" 2>&1 &
  CPID=$!; echo "$CPID" > "$work/cairn.pid"
  CADDR="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -s -o /dev/null "$CADDR/v1/sys/health" && break; sleep 0.1; done
  local init
  init=$(curl -sf -X PUT "$CADDR/v1/sys/init" -d '{"secret_shares":1,"secret_threshold":1}')
  CKEY=$(echo "$init" | jq -r '.keys[0]')
  curl -sf -X PUT "$CADDR/v1/sys/unseal" -d "{\"key\":\"$CKEY\"}" > /dev/null
  CTOKEN=$(echo "$init" | jq -r .root_token)
}

# setup_database ADDR TOKEN ROLE DEFAULT_TTL MAX_TTL [REVOCATION_STATEMENT]: mounts
# `database`, configures the PostgreSQL connection `bench` (allowed_roles ROLE) and the
# dynamic role ROLE. The password goes in its own field: cairn refuses a literal password
# in connection_url. Without a revocation statement, users are revoked the way Vault's
# plugin does by default (revoke privileges one by one, then DROP ROLE).
setup_database() {
  local addr=$1 token=$2 role=$3 ttl=$4 max=$5 revoke=${6:-}
  local h=(-H "X-Vault-Token: $token" -H "Content-Type: application/json")
  curl -sf "${h[@]}" -X POST "$addr/v1/sys/mounts/database" -d '{"type":"database"}' > /dev/null
  curl -sf "${h[@]}" -X POST "$addr/v1/database/config/bench" -d "$(jq -nc --arg role "$role" '{
      plugin_name: "postgresql-database-plugin",
      connection_url: "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
      username: "postgres", password: "unused", allowed_roles: $role}')" > /dev/null
  curl -sf "${h[@]}" -X POST "$addr/v1/database/roles/$role" -d "$(jq -nc --arg ttl "$ttl" --arg max "$max" --arg revoke "$revoke" '{
      db_name: "bench", default_ttl: $ttl, max_ttl: $max,
      creation_statements: "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"';"}
      + (if $revoke == "" then {} else {revocation_statements: $revoke} end)')" > /dev/null
}

# Dynamic usernames are v-<display name, 8>-<role, 8>-<20 random>-<unix time> on both
# servers, so a role name of at most 8 characters picks out one server's users.
pg_pattern() { echo "v-%-$1-%"; }

# pg_count ROLE: how many PostgreSQL roles were made for this Vault role.
pg_count() { psql_pg -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE '$(pg_pattern "$1")'"; }

# pg_drop ROLE...: drops every PostgreSQL role made for these Vault roles, in one session,
# committing every 500 drops (one transaction for all would run out of lock slots).
pg_drop() {
  local role where=""
  for role in "$@"; do where+="${where:+ OR }rolname LIKE '$(pg_pattern "$role")'"; done
  psql_pg <<SQL
DO \$\$
DECLARE r text; n int := 0;
BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE $where LOOP
    EXECUTE format('DROP ROLE IF EXISTS %I', r);
    n := n + 1;
    IF n % 500 = 0 THEN COMMIT; END IF;
  END LOOP;
END
\$\$;
SQL
}

# stop_servers WORKDIR: stops the cairn and the OpenBao a benchmark started under WORKDIR
# (either may be missing), then counts the warnings and errors each one logged.
stop_servers() {
  local work=$1
  [ -f "$work/cairn.pid" ] && kill "$(cat "$work/cairn.pid")" 2>/dev/null
  [ -f "$work/bao/pid" ] && kill "$(cat "$work/bao/pid")" 2>/dev/null
  sleep 1
  [ -f "$work/cairn.log" ] && log_problems "$work/cairn.log" cairn
  [ -f "$work/bao/server.log" ] && log_problems "$work/bao/server.log" OpenBao
  return 0
}

# log_problems FILE NAME: prints how many warn/error lines a server log holds, and the
# first few of them, to stderr.
log_problems() {
  local n
  n=$(grep -ciE '\b(warn|error|fatal|panic)' "$1" || true)
  echo "$2 log: $n warn/error line(s)" >&2
  [ "$n" = 0 ] || grep -iE '\b(warn|error|fatal|panic)' "$1" | head -n 5 | cut -c1-400 >&2
}
