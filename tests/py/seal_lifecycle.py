"""hvac `client.sys`: initialise a fresh config-mode server with 3 shares / threshold 2,
unseal it share by share, seal it, see every request refused with 503, unseal again and
find the data still there."""

from compat import (
    CLUSTER_NAME,
    SEALED,
    TOKEN,
    UUID,
    b64,
    check,
    client,
    eq,
    main,
    raises,
    redact,
    status_of,
    step,
)
from hvac import exceptions

POLICY = 'path "secret/data/kept/*" {\n  capabilities = ["read"]\n}\n'


def seal_status_core(status):
    """The fields of sys/seal-status that do not depend on the server's build."""
    return {k: status[k] for k in ("type", "initialized", "sealed", "t", "n", "progress", "nonce")}


def journey():
    c = client()

    step("a fresh server is not initialised and is sealed")
    eq(c.sys.is_initialized(), False, "is_initialized() before init")
    eq(
        seal_status_core(c.sys.read_seal_status()),
        {"type": "shamir", "initialized": False, "sealed": True, "t": 0, "n": 0, "progress": 0, "nonce": ""},
        "seal status before init",
    )

    step("initialize(secret_shares=3, secret_threshold=2) returns 3 shares and a root token")
    init = c.sys.initialize(secret_shares=3, secret_threshold=2)
    eq(sorted(init), ["keys", "keys_base64", "root_token"], "keys of the init answer")
    eq(len(init["keys"]), 3, "number of hex shares")
    eq(len(init["keys_base64"]), 3, "number of base64 shares")
    for i, (hex_key, b64_key) in enumerate(zip(init["keys"], init["keys_base64"])):
        eq(len(bytes.fromhex(hex_key)), 33, f"bytes in share {i} (32-byte share + x coordinate)")
        eq(b64(b64_key), bytes.fromhex(hex_key), f"share {i}: base64 and hex forms of the same bytes")
    eq(len(set(init["keys"])), 3, "the 3 shares are distinct")
    root = init["root_token"]
    redact(dict(init), {"root_token": TOKEN})

    step("after init: initialised, still sealed, t=2 n=3")
    eq(c.sys.is_initialized(), True, "is_initialized() after init")
    eq(c.sys.is_sealed(), True, "is_sealed() after init")
    eq(
        seal_status_core(c.sys.read_seal_status()),
        {"type": "shamir", "initialized": True, "sealed": True, "t": 2, "n": 3, "progress": 0, "nonce": ""},
        "seal status after init",
    )
    e = raises(exceptions.InvalidRequest, c.sys.initialize, secret_shares=3, secret_threshold=2)
    eq(e.errors, ["Vault is already initialized"], "errors of a second initialize()")

    step("the first share: progress 1 of 2, an unseal nonce")
    first = c.sys.submit_unseal_key(init["keys"][0])
    nonce = first["nonce"]
    redact(first, {"nonce": UUID})
    eq(
        seal_status_core(first),
        {"type": "shamir", "initialized": True, "sealed": True, "t": 2, "n": 3, "progress": 1, "nonce": f"<{UUID}>"},
        "answer to the first share",
    )

    step("the same share again, in base64, does not count twice")
    again = c.sys.submit_unseal_key(init["keys_base64"][0])
    eq((again["sealed"], again["progress"], again["nonce"]), (True, 1, nonce), "sealed/progress/nonce after a repeat")

    step("a second, different share unseals")
    second = c.sys.submit_unseal_key(init["keys_base64"][2])
    redact(second, {"cluster_name": CLUSTER_NAME, "cluster_id": UUID})
    eq(
        seal_status_core(second),
        {"type": "shamir", "initialized": True, "sealed": False, "t": 2, "n": 3, "progress": 0, "nonce": ""},
        "answer to the second share",
    )
    eq(c.sys.is_sealed(), False, "is_sealed() after 2 shares")

    step("the root token works and is the init root token")
    c.token = root
    check(c.is_authenticated(), "the init root token is not accepted")
    me = c.auth.token.lookup_self()["data"]
    eq(
        {k: me[k] for k in ("display_name", "path", "policies", "orphan", "ttl", "expire_time")},
        {"display_name": "root", "path": "auth/token/root", "policies": ["root"], "orphan": True, "ttl": 0, "expire_time": None},
        "lookup-self of the init root token",
    )

    step("write a policy, then seal: 204")
    eq(status_of(c.sys.create_or_update_acl_policy(name="kept", policy=POLICY)), 204, "status of the policy write")
    eq(status_of(c.sys.seal()), 204, "status of seal()")
    eq(c.sys.is_sealed(), True, "is_sealed() after seal()")

    step("while sealed, requests fail with 503 Vault is sealed (VaultDown), token or not")
    e = raises(exceptions.VaultDown, c.sys.read_acl_policy, name="kept")
    eq(e.errors, SEALED, "errors of a read while sealed")
    e = raises(exceptions.VaultDown, client("").auth.token.lookup_self)
    eq(e.errors, SEALED, "errors of an anonymous request while sealed")
    health = c.sys.read_health_status(method="GET")
    eq(status_of(health), 503, "sys/health status while sealed")
    eq((health.json()["initialized"], health.json()["sealed"]), (True, True), "sys/health body while sealed")

    step("two other shares unseal again; the policy is still there")
    status = c.sys.submit_unseal_keys([init["keys"][1], init["keys_base64"][0]])
    eq((status["sealed"], status["progress"]), (False, 0), "sealed/progress after submit_unseal_keys")
    kept = c.sys.read_acl_policy(name="kept")["data"]
    eq((kept["name"], kept["policy"]), ("kept", POLICY), "the policy after seal and unseal")
    health = c.sys.read_health_status(method="GET")
    eq(
        {k: health[k] for k in ("initialized", "sealed", "standby")},
        {"initialized": True, "sealed": False, "standby": False},
        "sys/health once unsealed",
    )

if __name__ == "__main__":
    main(journey)
