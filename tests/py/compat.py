"""Shared helpers of the hvac compatibility scripts (run by tests/tests/compat_hvac.rs).

Each script drives one user journey through hvac against VAULT_ADDR (token in VAULT_TOKEN
when the server has one), prints each step, and exits 1 with a MISMATCH message on the
first difference from OpenBao's behaviour (exit 2 on an unexpected exception).
"""

import base64
import os
import re
import sys
import traceback

import hvac
from hvac import exceptions

UUID = "uuid"
TIME = "time"
UNIX = "unix seconds"
TOKEN = "service token"
ACCESSOR = "accessor"
CLUSTER_NAME = "cluster name"
NON_EMPTY = "non-empty string"

# Exact error texts of OpenBao 2.7.2 (openbao-api.md section 1.6).
ACL_DENIED = ["1 error occurred:\n\t* permission denied\n\n"]
NO_TOKEN = ["permission denied"]
SEALED = ["Vault is sealed"]

_PATTERNS = {
    UUID: re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    TIME: re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"),
    TOKEN: re.compile(r"^s\.[0-9A-Za-z]{24}$"),
    ACCESSOR: re.compile(r"^[0-9A-Za-z]{24}$"),
    CLUSTER_NAME: re.compile(r"^vault-cluster-[0-9a-f]{8}$"),
    NON_EMPTY: re.compile(r"^.+$", re.S),
}


class Mismatch(Exception):
    """The server answered differently from OpenBao."""


def client(token=None):
    """An hvac client for VAULT_ADDR, with `token` or else VAULT_TOKEN (maybe none)."""
    if token is None:
        token = os.environ.get("VAULT_TOKEN")
    return hvac.Client(url=os.environ["VAULT_ADDR"], token=token, timeout=30)


def step(text):
    print(f"- {text}", flush=True)


def eq(actual, expected, what):
    if actual != expected:
        raise Mismatch(f"{what}:\n  expected {expected!r}\n  got      {actual!r}")


def check(condition, what):
    if not condition:
        raise Mismatch(what)


def matches(value, shape):
    if shape == UNIX:
        return isinstance(value, int) and not isinstance(value, bool) and value > 1_577_836_800
    if isinstance(shape, range):
        return isinstance(value, int) and not isinstance(value, bool) and value in shape
    return isinstance(value, str) and bool(_PATTERNS[shape].match(value))


def redact(obj, shapes):
    """Checks each dotted path of `shapes` ("data.metadata.created_time") has its shape and
    replaces it by "<shape>", so the rest can be compared exactly with `eq`."""
    for path, shape in shapes.items():
        parent, key = obj, None
        parts = path.split(".")
        for part in parts[:-1]:
            check(isinstance(parent, dict) and part in parent, f"no field {path} in {obj!r}")
            parent = parent[part]
        key = parts[-1]
        check(isinstance(parent, dict) and key in parent, f"no field {path} in {obj!r}")
        check(matches(parent[key], shape), f"field {path} should be a {shape}, got {parent[key]!r}")
        parent[key] = f"<{shape}>"
    return obj


def raises(exc_type, fn, *args, **kwargs):
    """Calls fn and returns the hvac exception it must raise (of exactly `exc_type`)."""
    try:
        result = fn(*args, **kwargs)
    except exceptions.VaultError as e:
        if type(e) is not exc_type:
            raise Mismatch(
                f"{fn.__name__} raised {type(e).__name__} ({e}), expected {exc_type.__name__}"
            ) from e
        return e
    raise Mismatch(f"{fn.__name__} returned {result!r}, expected {exc_type.__name__}")


def status_of(response):
    """The HTTP status of a call that hvac returns as a raw `requests.Response` (204s)."""
    check(hasattr(response, "status_code"), f"expected an empty answer, got {response!r}")
    return response.status_code


def b64(text):
    return base64.b64decode(text, validate=True)


def envelope(data, **over):
    """The 8-key response envelope of OpenBao 2.7.2, with request_id redacted."""
    env = {
        "request_id": f"<{UUID}>",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }
    env.update(over)
    return env


def main(journey):
    """Runs `journey()` and turns its outcome into the exit code."""
    try:
        journey()
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - any other failure is reported whole
        print("UNEXPECTED EXCEPTION:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(2)
    print("ok", flush=True)
