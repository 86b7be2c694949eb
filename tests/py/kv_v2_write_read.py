"""hvac KV v2 on `secret/`: create_or_update_secret with and without cas,
read_secret_version of the latest and of an older version, patch, list_secrets, and the
404s of what does not exist."""

from compat import TIME, UUID, client, envelope, eq, main, raises, redact, step
from hvac import exceptions

CAS_MISMATCH = ["check-and-set parameter did not match the current version"]


def version_metadata(version):
    return {"created_time": f"<{TIME}>", "custom_metadata": None, "deletion_time": "", "destroyed": False, "version": version}


def journey():
    kv = client().secrets.kv.v2

    step("create_or_update_secret: version 1, full envelope")
    w1 = kv.create_or_update_secret(path="app/db", secret={"user": "alice", "pass": "one"})
    redact(w1, {"request_id": UUID, "data.created_time": TIME})
    eq(w1, envelope(version_metadata(1)), "answer to the first write")

    step("cas=1 on version 1 writes version 2")
    w2 = kv.create_or_update_secret(path="app/db", secret={"user": "alice", "pass": "two"}, cas=1)
    eq(w2["data"]["version"], 2, "version written with cas=1")

    step("cas=1 again is refused: 400 InvalidRequest")
    e = raises(exceptions.InvalidRequest, kv.create_or_update_secret, path="app/db", secret={"x": "y"}, cas=1)
    eq(e.errors, CAS_MISMATCH, "errors of a stale cas")

    step("cas=0 creates a new secret only once")
    eq(kv.create_or_update_secret(path="app/new", secret={"k": "v"}, cas=0)["data"]["version"], 1, "cas=0 on a new path")
    e = raises(exceptions.InvalidRequest, kv.create_or_update_secret, path="app/new", secret={"k": "w"}, cas=0)
    eq(e.errors, CAS_MISMATCH, "errors of cas=0 on an existing path")

    step("read_secret_version(version=1) returns version 1's data")
    r1 = kv.read_secret_version(path="app/db", version=1, raise_on_deleted_version=True)
    redact(r1, {"request_id": UUID, "data.metadata.created_time": TIME})
    eq(r1, envelope({"data": {"user": "alice", "pass": "one"}, "metadata": version_metadata(1)}), "read of version 1")

    step("read_secret_version() returns the latest")
    latest = kv.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]
    eq((latest["data"], latest["metadata"]["version"]), ({"user": "alice", "pass": "two"}, 2), "latest data and version")

    step("patch merges into the latest version and writes version 3")
    p = kv.patch(path="app/db", secret={"pass": "three"})
    eq(p["data"]["version"], 3, "version written by patch")
    latest = kv.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]
    eq((latest["data"], latest["metadata"]["version"]), ({"user": "alice", "pass": "three"}, 3), "data after patch")

    step("missing path and missing version: 404 InvalidPath with no error text")
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path="app/none", raise_on_deleted_version=True)
    eq(e.json, {"errors": []}, "body of a read of a missing path")
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path="app/db", version=99, raise_on_deleted_version=True)
    eq(e.json, {"errors": []}, "body of a read of version 99")

    step("list_secrets lists immediate children, folders with a trailing slash")
    kv.create_or_update_secret(path="app/sub/leaf", secret={"a": "b"})
    listing = kv.list_secrets(path="app")
    redact(listing, {"request_id": UUID})
    eq(listing, envelope({"keys": ["db", "new", "sub/"]}), "list_secrets('app')")
    eq(kv.list_secrets(path="")["data"]["keys"], ["app/"], "list_secrets('') at the mount root")
    e = raises(exceptions.InvalidPath, kv.list_secrets, path="nothing-here")
    eq(e.json, {"errors": []}, "body of a list of an empty prefix")


if __name__ == "__main__":
    main(journey)
