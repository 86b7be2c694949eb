#!/usr/bin/env python3
"""Lease expiry and memory per live lease, against a running cairn (or any Vault-API server
whose database role is already set up). Called by bench/lease-expiry.sh, which starts the
server, configures the role and cleans up; see there for usage.

Steps:
 1. warm-up: WARMUP creds, so pools, caches and allocator arenas exist, then
    WARMUP_LOOKUPS lease lookups, so that the ledger index cache and the allocator reach
    the size they keep under load (--warmup-lookups 0 to skip);
 2. VmRSS of the server (before), then LEASES creds issued concurrently (THREADS at once),
    then VmRSS again (after): (after - before) / LEASES is the memory per live lease
    (each VmRSS figure is the median of 5 readings 1 s apart);
 3. every lease's exact expire_time from `PUT sys/leases/lookup` (ns precision);
    with --restart-cmd, the server is then restarted (it rebuilds its state from the
    ledger) and its VmRSS read again, with every lease live; and once more at the end,
    with none: the difference over LEASES is the memory per lease without what the
    requests themselves left behind (allocator high-water, sled's index cache);
 4. PostgreSQL is polled every POLL s from just before the first expiry; a user's
    disappearance time is the start of the first poll that no longer sees it (an upper
    bound: it was still there at the poll before);
 5. (disappearance - expire_time) per lease: median, p90, p99, max, how many over 2 s;
 6. `LIST sys/leases/lookup/database/creds/<role>/` must end up 404 or empty; while
    polling, it is also compared about once a second with the users left in PostgreSQL
    (api_lag_max: the most leases still listed whose users were gone, and when).
Needs only the standard library and psql. Prints a report; exits 1 if something failed
(a non-2xx answer, a user that never appeared or never went, a lease left in the API).
"""
import argparse
import calendar
import concurrent.futures as cf
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, addr, token):
        u = urlparse(addr)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.local = threading.local()

    def request(self, method, path, body=None):
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                data = None if body is None else json.dumps(body)
                conn.request(method, path, body=data, headers={"X-Vault-Token": self.token,
                                                                "Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise


class Psql:
    """One psql session kept open; a query's rows end at a marker line."""

    def __init__(self, args):
        self.p = subprocess.Popen(["psql", *args, "-XAtq", "-v", "ON_ERROR_STOP=0"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def rows(self, sql):
        self.p.stdin.write(sql.rstrip(";") + ";\n\\echo __END__\n")
        self.p.stdin.flush()
        out = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "__END__":
                return out
            out.append(line)
        raise RuntimeError("psql ended")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def rfc3339_ns(s):
    """'2026-11-23T10:00:00.123456789Z' (or with +hh:mm) -> ns since the epoch (datetime
    stops at µs)."""
    offset = 0
    if s.endswith("Z"):
        s = s[:-1]
    elif s[-6] in "+-" and s[-3] == ":":
        sign = 1 if s[-6] == "+" else -1
        offset = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
        s = s[:-6]
    whole, _, frac = s.partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - offset
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def restart(a, client):
    """Stops the server (SIGTERM), runs --restart-cmd (which starts it again and prints its
    pid), unseals it with --unseal-key; returns (new pid, VmRSS in KiB after SETTLE s)."""
    os.kill(a.pid, signal.SIGTERM)
    for _ in range(300):
        if not os.path.exists(f"/proc/{a.pid}"):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("the server did not stop")
    t0 = time.time()
    a.pid = int(subprocess.run(a.restart_cmd, shell=True, check=True, capture_output=True, text=True).stdout.split()[-1])
    for _ in range(300):
        try:
            status, body = client.request("PUT", "/v1/sys/unseal", {"key": a.unseal_key})
            if status == 200 and not body["sealed"]:
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("the server did not unseal")
    log(f"restarted and unsealed in {time.time() - t0:.1f} s (pid {a.pid})")
    # Replay's transient memory goes back to the OS within seconds.
    time.sleep(SETTLE)
    return steady_rss_kib(a.pid)


SETTLE = 8


def steady_rss_kib(pid, n=5):
    """Median of n VmRSS readings 1 s apart."""
    xs = []
    for i in range(n):
        if i:
            time.sleep(1)
        xs.append(rss_kib(pid))
    return int(statistics.median(xs))


def pct(xs, p):
    """Nearest-rank percentile of a sorted list."""
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True, help="server process, for VmRSS")
    ap.add_argument("--role", required=True)
    ap.add_argument("--leases", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--warmup-lookups", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--poll", type=float, default=0.1)
    ap.add_argument("--limit", type=float, default=2.0, help="seconds after expiry a user may live")
    ap.add_argument("--psql", default="-h 127.0.0.1 -p 5432 -U postgres -d postgres")
    ap.add_argument("--restart-cmd", help="shell command that starts the server again and prints its pid")
    ap.add_argument("--unseal-key")
    a = ap.parse_args()

    client = Client(a.addr, a.token)
    pg = Psql(a.psql.split())
    like = f"v-%-{a.role}-%"
    failures = []

    def issue(_):
        t0 = time.time_ns()
        status, body = client.request("GET", f"/v1/database/creds/{a.role}")
        t1 = time.time_ns()
        if status != 200:
            return {"status": status, "body": body}
        return {"status": status, "lease_id": body["lease_id"], "username": body["data"]["username"],
                "lease_duration": body["lease_duration"], "sent": t0, "received": t1}

    def issue_many(n):
        with cf.ThreadPoolExecutor(a.threads) as ex:
            return list(ex.map(issue, range(n)))

    # 1. warm-up
    warm = issue_many(a.warmup)
    bad = [r for r in warm if r["status"] != 200]
    if bad:
        log(f"warm-up: {len(bad)} non-200 answers, first: {bad[0]}")
        return 1
    rss_warm = rss_kib(a.pid)

    def warm_lookup(i):
        client.request("PUT", "/v1/sys/leases/lookup", {"lease_id": warm[i % len(warm)]["lease_id"]})

    with cf.ThreadPoolExecutor(a.threads) as ex:
        list(ex.map(warm_lookup, range(a.warmup_lookups)))
    time.sleep(2)

    # 2. memory before and after LEASES live leases
    rss_before = steady_rss_kib(a.pid)
    t0 = time.time()
    leases = issue_many(a.leases)
    create_s = time.time() - t0
    rss_after = steady_rss_kib(a.pid)
    bad = [r for r in leases if r["status"] != 200]
    if bad:
        failures.append(f"{len(bad)} of {a.leases} creds requests failed, first: {bad[0]}")
        leases = [r for r in leases if r["status"] == 200]
    ttl = leases[0]["lease_duration"]
    log(f"issued {len(leases)} creds in {create_s:.1f} s ({len(leases) / create_s:.0f}/s); lease_duration {ttl} s")

    # 3. exact expiry of every lease
    t0 = time.time()

    def lookup(r):
        status, body = client.request("PUT", "/v1/sys/leases/lookup", {"lease_id": r["lease_id"]})
        if status != 200:
            raise RuntimeError(f"lookup {r['lease_id']}: {status} {body}")
        r["expire"] = rfc3339_ns(body["data"]["expire_time"])

    with cf.ThreadPoolExecutor(a.threads) as ex:
        list(ex.map(lookup, leases))
    lookup_s = time.time() - t0
    rss_lookups = rss_kib(a.pid)
    first_expiry = min(r["expire"] for r in leases) / 1e9
    last_expiry = max(r["expire"] for r in leases) / 1e9
    # the estimate from the answer alone, to compare: sent + lease_duration <= expire <= received + ttl
    skew = [r["expire"] - (r["received"] + ttl * 1_000_000_000) for r in leases]
    log(f"looked up {len(leases)} leases in {lookup_s:.1f} s; expiries span {last_expiry - first_expiry:.1f} s; "
        f"first in {first_expiry - time.time():.1f} s")
    if time.time() >= first_expiry - 1:
        failures.append("the first lease expired before all were issued and looked up: use a longer TTL")
    # The warm-up leases expire first; the restart must be over well before that.
    warm_expiry = min(r["received"] for r in warm) / 1e9 + ttl
    rss_live_restarted = None
    if a.restart_cmd and time.time() < warm_expiry - SETTLE - 25:
        rss_live_restarted = restart(a, client)
    elif a.restart_cmd:
        log("no time left to restart before the first expiry: skipped")

    # every user must exist now
    users = {r["username"]: r for r in leases}
    present = set(pg.rows(f"SELECT rolname FROM pg_roles WHERE rolname LIKE '{like}'"))
    missing = [u for u in users if u not in present]
    if missing:
        failures.append(f"{len(missing)} users missing in PostgreSQL before expiry, e.g. {missing[:3]}")

    # 4. poll
    time.sleep(max(0.0, first_expiry - 1 - time.time()))
    pending = {u for u in users if u in present}
    last_seen = {}
    deadline = last_expiry + 120
    polls = 0
    lag = []  # (s since the first expiry, users left in PostgreSQL, leases the API still lists)
    while pending and time.time() < deadline:
        tq = time.time_ns()
        now = set(pg.rows(f"SELECT rolname FROM pg_roles WHERE rolname LIKE '{like}'"))
        polls += 1
        if polls % 10 == 0:  # about once a second: does the API agree with the database?
            status, body = client.request("LIST", f"/v1/sys/leases/lookup/database/creds/{a.role}/")
            listed = len(body["data"]["keys"]) if status == 200 else 0
            lag.append((tq / 1e9 - first_expiry, len(now), listed))
        for u in list(pending):
            if u in now:
                last_seen[u] = tq
            else:
                users[u]["gone"] = tq
                pending.discard(u)
        time.sleep(max(0.0, a.poll - (time.time_ns() - tq) / 1e9))
    all_gone_at = time.time()
    if pending:
        failures.append(f"{len(pending)} users still in PostgreSQL 120 s after the last expiry")
    rss_revoked = rss_kib(a.pid)

    # 5. delays
    gone = [r for r in leases if "gone" in r]
    delays = sorted((r["gone"] - r["expire"]) / 1e9 for r in gone)
    lower = sorted((last_seen.get(r["username"], r["expire"]) - r["expire"]) / 1e9 for r in gone)
    too_early = sum(1 for r in gone if r["gone"] < r["expire"])
    over = sum(1 for d in delays if d > a.limit)

    # 6. the API must agree
    t0 = time.time()
    listing = None
    while time.time() < t0 + 30:
        status, body = client.request("LIST", f"/v1/sys/leases/lookup/database/creds/{a.role}/")
        listing = (status, (body or {}).get("data", {}).get("keys") if status == 200 else None)
        if status == 404 or (status == 200 and not listing[1]):
            break
        time.sleep(0.1)
    api_s = time.time() - t0
    if not (listing[0] == 404 or (listing[0] == 200 and not listing[1])):
        failures.append(f"leases still listed 30 s after the users were gone: {listing[0]}, "
                        f"{len(listing[1] or [])} keys")
    pg.close()
    rss_none_restarted = restart(a, client) if rss_live_restarted is not None else None

    per_lease = (rss_after - rss_before) * 1024 / len(leases)
    per_lease_restarted = None
    if rss_live_restarted is not None:
        per_lease_restarted = round((rss_live_restarted - rss_none_restarted) * 1024 / len(leases))
    report = {
        "leases": len(leases),
        "create_s": round(create_s, 2),
        "create_per_s": round(len(leases) / create_s),
        "lookup_s": round(lookup_s, 2),
        "expiry_span_s": round(last_expiry - first_expiry, 2),
        "expire_minus_received_ms_median": round(statistics.median(skew) / 1e6, 1),
        "polls": polls,
        "revoked_seen": len(gone),
        "delay_s": {
            "min": round(delays[0], 3), "median": round(statistics.median(delays), 3),
            "p90": round(pct(delays, 90), 3), "p99": round(pct(delays, 99), 3), "max": round(delays[-1], 3),
        } if delays else None,
        "delay_lower_bound_s": {"median": round(statistics.median(lower), 3), "p99": round(pct(lower, 99), 3),
                                "max": round(lower[-1], 3)} if lower else None,
        "over_limit": over,
        "gone_before_expiry": too_early,
        "last_user_gone_after_last_expiry_s": round(all_gone_at - last_expiry, 2),
        "api_listing": f"{listing[0]} after {api_s:.1f} s",
        # the most leases the API still listed whose users were already gone from PostgreSQL
        "api_lag_max": max(((l - u), round(t, 1)) for t, u, l in lag) if lag else None,
        "rss_kib": {"after_warmup_creds": rss_warm, "before": rss_before, "after": rss_after, "after_lookups": rss_lookups,
                    "after_revocation": rss_revoked, "restarted_all_live": rss_live_restarted,
                    "restarted_none_live": rss_none_restarted},
        "rss_bytes_per_lease": round(per_lease),
        "rss_bytes_per_lease_restarted": per_lease_restarted,
        "failures": failures,
    }
    print(json.dumps(report, indent=1))
    print(f"SUMMARY leases={len(leases)} create_s={create_s:.1f} delay_median_s={report['delay_s']['median']} "
          f"p99_s={report['delay_s']['p99']} max_s={report['delay_s']['max']} over_{a.limit:g}s={over} "
          f"bytes_per_lease={per_lease:.0f} restarted={per_lease_restarted}" if delays else "SUMMARY no delays measured")
    for f in failures:
        log("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
