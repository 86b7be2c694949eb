"""hvac `client.sys` ACL policies: create_or_update, read (new and legacy endpoints), list,
update, and a token holding the policy: allowed on its path, denied (403) elsewhere."""

from compat import ACL_DENIED, TIME, UUID, client, envelope, eq, main, raises, redact, status_of, step
from hvac import exceptions

POLICY_V1 = 'path "secret/data/app/*" {\n  capabilities = ["read"]\n}\n'
POLICY_V2 = POLICY_V1 + '\npath "secret/metadata/app/*" {\n  capabilities = ["list"]\n}\n'


def journey():
    c = client()

    step("create_or_update_acl_policy: 204")
    eq(status_of(c.sys.create_or_update_acl_policy(name="app-read", policy=POLICY_V1)), 204, "status of the write")

    step("read_acl_policy returns the text verbatim with OpenBao's extra fields")
    got = redact(c.sys.read_acl_policy(name="app-read"), {"request_id": UUID, "data.modified": TIME})
    eq(
        got,
        envelope(
            {
                "allow_slashes_in_identity_templates": False,
                "allow_wildcards_in_identity_templates": False,
                "cas_required": False,
                "modified": f"<{TIME}>",
                "name": "app-read",
                "policy": POLICY_V1,
                "version": 1,
            }
        ),
        "read_acl_policy",
    )

    step("the legacy read_policy has the text under `rules`, also copied to the top level")
    legacy = c.sys.read_policy(name="app-read")
    eq((legacy["rules"], legacy["data"]["rules"], legacy["name"]), (POLICY_V1, POLICY_V1, "app-read"), "read_policy")

    step("list_acl_policies and list_policies: sorted, root last")
    eq(c.sys.list_acl_policies()["data"]["keys"], ["app-read", "default", "root"], "list_acl_policies")
    legacy = c.sys.list_policies()
    eq(legacy["data"]["policies"], ["app-read", "default", "root"], "list_policies data.policies")
    eq(legacy["policies"], ["app-read", "default", "root"], "list_policies top-level copy")

    step("an update bumps the version")
    eq(status_of(c.sys.create_or_update_acl_policy(name="app-read", policy=POLICY_V2)), 204, "status of the update")
    got = c.sys.read_acl_policy(name="app-read")["data"]
    eq((got["policy"], got["version"]), (POLICY_V2, 2), "text and version after the update")

    step("read of an unknown policy: 404 InvalidPath")
    e = raises(exceptions.InvalidPath, c.sys.read_acl_policy, name="nope")
    eq(e.json, {"errors": []}, "body of a read of an unknown policy")

    step("a token with only app-read reads secret/app/* and nothing else")
    c.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"password": "hunter2"})
    c.secrets.kv.v2.create_or_update_secret(path="other/db", secret={"password": "other"})
    token = c.auth.token.create(policies=["app-read"], ttl="1h")["auth"]["client_token"]
    limited = client(token)
    got = limited.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
    eq(got["data"]["data"], {"password": "hunter2"}, "the limited token's read of its own path")
    eq(limited.secrets.kv.v2.list_secrets(path="app")["data"]["keys"], ["db"], "the limited token's list")
    e = raises(exceptions.Forbidden, limited.secrets.kv.v2.read_secret_version, path="other/db", raise_on_deleted_version=True)
    eq(e.errors, ACL_DENIED, "errors of a read outside the policy")
    e = raises(exceptions.Forbidden, limited.secrets.kv.v2.create_or_update_secret, path="app/db", secret={"password": "x"})
    eq(e.errors, ACL_DENIED, "errors of a write with only read")
    e = raises(exceptions.Forbidden, limited.sys.list_acl_policies)
    eq(e.errors, ACL_DENIED, "errors of listing policies")

    step("delete_acl_policy: 204, and the token loses access at once")
    eq(status_of(c.sys.delete_acl_policy(name="app-read")), 204, "status of the delete")
    eq(c.sys.list_acl_policies()["data"]["keys"], ["default", "root"], "list after the delete")
    e = raises(exceptions.Forbidden, limited.secrets.kv.v2.read_secret_version, path="app/db", raise_on_deleted_version=True)
    eq(e.errors, ACL_DENIED, "errors of a read after the policy was deleted")


if __name__ == "__main__":
    main(journey)
