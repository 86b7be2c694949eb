#!/usr/bin/env bash
# What one client flooding bad tokens costs in ledger space (issue 17): cairn in config
# mode, initialized and unsealed; wrk sends GETs with a new bogus token and a new path each
# time for SECONDS over CONNECTIONS connections; the server is then stopped cleanly (so the
# counts of the last interval are recorded) and the ledger's segment bytes are compared.
# Prints requests, the bytes the ledger gained, and that rate per hour.
#
#   bench/flood.sh BINARY [SECONDS] [CONNECTIONS] [CONFIG_LINES]
#
# Needs wrk, jq, curl, python3. Run the build before a change and the build after in the
# same session: the figure is bytes, not time, but the request rate depends on the machine.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
bin=$1; secs=${2:-10}; conns=${3:-64}; extra=${4:-}
work=$(mktemp -d /tmp/cairn-flood-XXXXXX)
trap 'kill "$CPID" 2>/dev/null || true; rm -rf "$work"' EXIT
start_cairn "$bin" "$work" "$extra"
segments() { du -sb "$work/cairn-data/ledger/segments" | cut -f1; }
curl -sf -H "X-Vault-Token: $CTOKEN" -X PUT "$CADDR/v1/secret/data/app" -d '{"data":{"k":"v"}}' > /dev/null 2>&1 || true
before=$(segments)
result=$(wrk -t2 -c"$conns" -d"${secs}s" -s wrk/flood.lua "$CADDR" | grep RESULT)
kill -TERM "$CPID"; wait "$CPID" 2>/dev/null || true
after=$(segments)
requests=$(echo "$result" | sed -E 's/.*requests=([0-9]+).*/\1/')
python3 - "$requests" "$before" "$after" "$secs" "$result" <<'PY'
import sys
requests, before, after, secs = map(int, sys.argv[1:5])
added = after - before
print(f"{sys.argv[5]}")
print(f"flood requests={requests} ledger_bytes_added={added} bytes_per_request={added / max(requests, 1):.1f} "
      f"bytes_per_hour={added * 3600 / secs:,.0f}")
PY
