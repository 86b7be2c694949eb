"""hvac `client.auth.token`: create, lookup, renew, tokens creating child tokens, and
revoke taking every descendant with it while unrelated tokens survive."""

from compat import ACCESSOR, NO_TOKEN, TIME, TOKEN, UNIX, UUID, check, client, eq, main, raises, redact, status_of, step
from hvac import exceptions

TOKEN_MAKER = 'path "auth/token/create" {\n  capabilities = ["create", "update"]\n}\n'
BAD_TOKEN = ["bad token"]
TTL_1H = range(3590, 3601)  # a 1 h TTL a few seconds later


def lookup_shapes(ttl_range):
    return {
        "request_id": UUID,
        "data.accessor": ACCESSOR,
        "data.creation_time": UNIX,
        "data.expire_time": TIME,
        "data.id": TOKEN,
        "data.issue_time": TIME,
        "data.ttl": ttl_range,
    }


def journey():
    root = client()
    root.sys.create_or_update_acl_policy(name="token-maker", policy=TOKEN_MAKER)

    step("create: an auth block with the token, its accessor and its policies")
    created = root.auth.token.create(policies=["token-maker"], ttl="1h", meta={"team": "a"})
    parent, parent_accessor = created["auth"]["client_token"], created["auth"]["accessor"]
    redact(created, {"request_id": UUID, "auth.client_token": TOKEN, "auth.accessor": ACCESSOR})
    eq(
        created,
        {
            "request_id": f"<{UUID}>",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": None,
            "warnings": None,
            "auth": {
                "client_token": f"<{TOKEN}>",
                "accessor": f"<{ACCESSOR}>",
                "policies": ["default", "token-maker"],
                "token_policies": ["default", "token-maker"],
                "metadata": {"team": "a"},
                "lease_duration": 3600,
                "renewable": True,
                "entity_id": "",
                "token_type": "service",
                "orphan": False,
                "mfa_requirement": None,
                "num_uses": 0,
            },
        },
        "answer to token create",
    )

    step("lookup: the token's properties (hvac sends display_name 'token')")
    looked = root.auth.token.lookup(parent)
    eq((looked["data"]["id"], looked["data"]["accessor"]), (parent, parent_accessor), "id and accessor")
    redact(looked, lookup_shapes(TTL_1H))
    eq(
        looked["data"],
        {
            "accessor": f"<{ACCESSOR}>",
            "creation_time": f"<{UNIX}>",
            "creation_ttl": 3600,
            "display_name": "token-token",
            "entity_id": "",
            "expire_time": f"<{TIME}>",
            "explicit_max_ttl": 0,
            "id": f"<{TOKEN}>",
            "issue_time": f"<{TIME}>",
            "meta": {"team": "a"},
            "num_uses": 0,
            "orphan": False,
            "path": "auth/token/create",
            "policies": ["default", "token-maker"],
            "renewable": True,
            "ttl": f"<{TTL_1H}>",
            "type": "service",
        },
        "lookup data",
    )

    step("renew(increment='2h'): the TTL is now 2 h, counted from now")
    renewed = root.auth.token.renew(parent, increment="2h")
    eq((renewed["auth"]["client_token"], renewed["auth"]["lease_duration"]), (parent, 7200), "renew answer")
    after = root.auth.token.lookup(parent)["data"]
    check(7190 <= after["ttl"] <= 7200, f"ttl after renew should be about 7200, got {after['ttl']}")
    eq(after["creation_ttl"], 3600, "creation_ttl is unchanged by a renew")
    redact(after, {"last_renewal": TIME, "last_renewal_time": UNIX})
    eq(client(parent).auth.token.renew_self()["auth"]["lease_duration"], 7200, "renew-self reuses the last TTL")

    step("the parent creates a child, the child a grandchild")
    child = client(parent).auth.token.create(policies=["token-maker"], ttl="30m")["auth"]
    eq((child["policies"], child["lease_duration"], child["orphan"]), (["default", "token-maker"], 1800, False), "child")
    grandchild = client(child["client_token"]).auth.token.create(policies=["default"], ttl="10m")["auth"]
    eq((grandchild["policies"], grandchild["lease_duration"]), (["default"], 600), "grandchild")
    e = raises(exceptions.InvalidRequest, client(child["client_token"]).auth.token.create, policies=["root"])
    eq(e.errors, ["child policies must be subset of parent"], "errors of asking for more than the parent has")
    sibling = root.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    me = client(child["client_token"]).auth.token.lookup_self()["data"]
    eq((me["id"], me["policies"], me["creation_ttl"]), (child["client_token"], ["default", "token-maker"], 1800), "lookup-self of the child")

    step("revoke(parent): 204; parent, child and grandchild are gone, the sibling is not")
    eq(status_of(root.auth.token.revoke(parent)), 204, "status of the revoke")
    for name, tok in (("parent", parent), ("child", child["client_token"]), ("grandchild", grandchild["client_token"])):
        e = raises(exceptions.Forbidden, root.auth.token.lookup, tok)
        eq(e.errors, BAD_TOKEN, f"errors of looking up the revoked {name}")
        orphaned = client(tok)
        eq(orphaned.is_authenticated(), False, f"is_authenticated() of the revoked {name}")
        e = raises(exceptions.Forbidden, orphaned.auth.token.lookup_self)
        eq(e.errors, NO_TOKEN, f"errors of lookup-self with the revoked {name}")
    eq(root.auth.token.lookup(sibling)["data"]["id"], sibling, "the sibling survives")

    step("renewing the revoked parent: 400 token not found")
    e = raises(exceptions.InvalidRequest, root.auth.token.renew, parent)
    eq(e.errors, ["token not found"], "errors of renewing a revoked token")
    eq(status_of(root.auth.token.revoke(parent)), 204, "revoking it again is still 204")


if __name__ == "__main__":
    main(journey)
