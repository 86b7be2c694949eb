"""hvac KV v2 on `secret/`: delete_latest_version_of_secret, undelete, delete of an older
version, destroy, read_secret_metadata of all of it, metadata update, and deleting the
metadata with every version."""

from compat import TIME, UUID, client, envelope, eq, main, raises, redact, status_of, step
from hvac import exceptions

PATH = "lifecycle"


def journey():
    kv = client().secrets.kv.v2
    for n in (1, 2, 3):
        kv.create_or_update_secret(path=PATH, secret={"n": str(n)})

    step("delete_latest_version_of_secret: 204")
    eq(status_of(kv.delete_latest_version_of_secret(path=PATH)), 204, "status of the delete")

    step("reading the deleted latest version: 404 with the version's metadata, data null")
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path=PATH, raise_on_deleted_version=True)
    body = redact(e.json, {"request_id": UUID, "data.metadata.created_time": TIME, "data.metadata.deletion_time": TIME})
    deleted_v3 = envelope(
        {
            "data": None,
            "metadata": {
                "created_time": f"<{TIME}>",
                "custom_metadata": None,
                "deletion_time": f"<{TIME}>",
                "destroyed": False,
                "version": 3,
            },
        }
    )
    eq(body, deleted_v3, "404 body of a deleted version")
    soft = kv.read_secret_version(path=PATH, raise_on_deleted_version=False)
    redact(soft, {"request_id": UUID, "data.metadata.created_time": TIME, "data.metadata.deletion_time": TIME})
    eq(soft, deleted_v3, "read_secret_version(raise_on_deleted_version=False) of a deleted version")

    step("undelete_secret_versions([3]) brings version 3 back")
    eq(status_of(kv.undelete_secret_versions(path=PATH, versions=[3])), 204, "status of the undelete")
    back = kv.read_secret_version(path=PATH, raise_on_deleted_version=True)["data"]
    eq((back["data"], back["metadata"]["version"], back["metadata"]["deletion_time"]), ({"n": "3"}, 3, ""), "version 3 after undelete")

    step("delete_secret_versions([1]) soft-deletes an older version only")
    eq(status_of(kv.delete_secret_versions(path=PATH, versions=[1])), 204, "status of the delete of version 1")
    v1 = kv.read_secret_version(path=PATH, version=1, raise_on_deleted_version=False)["data"]
    eq((v1["data"], v1["metadata"]["destroyed"]), (None, False), "version 1 after delete")
    eq(kv.read_secret_version(path=PATH, raise_on_deleted_version=True)["data"]["data"], {"n": "3"}, "latest after deleting v1")

    step("destroy_secret_versions([2]): version 2 reads as destroyed, with no deletion time")
    eq(status_of(kv.destroy_secret_versions(path=PATH, versions=[2])), 204, "status of the destroy")
    # hvac hands back the body only for a deletion_time; a destroyed version still raises.
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path=PATH, version=2, raise_on_deleted_version=False)
    meta = e.json["data"]["metadata"]
    eq((e.json["data"]["data"], meta["destroyed"], meta["deletion_time"], meta["version"]), (None, True, "", 2), "destroyed version 2")
    eq(status_of(kv.undelete_secret_versions(path=PATH, versions=[2])), 204, "status of an undelete of a destroyed version")
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path=PATH, version=2, raise_on_deleted_version=False)
    eq(e.json["data"]["metadata"]["destroyed"], True, "a destroyed version stays destroyed after undelete")

    step("read_secret_metadata shows each version's state")
    md = kv.read_secret_metadata(path=PATH)
    redact(
        md,
        {
            "request_id": UUID,
            "data.created_time": TIME,
            "data.updated_time": TIME,
            "data.versions.1.created_time": TIME,
            "data.versions.1.deletion_time": TIME,
            "data.versions.2.created_time": TIME,
            "data.versions.3.created_time": TIME,
        },
    )
    eq(
        md,
        envelope(
            {
                "cas_required": False,
                "created_time": f"<{TIME}>",
                "current_metadata_version": 0,
                "current_version": 3,
                "custom_metadata": None,
                "delete_version_after": "0s",
                "max_versions": 0,
                "metadata_cas_required": False,
                "oldest_version": 0,
                "updated_time": f"<{TIME}>",
                "versions": {
                    "1": {"created_time": f"<{TIME}>", "deletion_time": f"<{TIME}>", "destroyed": False},
                    "2": {"created_time": f"<{TIME}>", "deletion_time": "", "destroyed": True},
                    "3": {"created_time": f"<{TIME}>", "deletion_time": "", "destroyed": False},
                },
            }
        ),
        "read_secret_metadata",
    )

    step("update_metadata sets max_versions and custom_metadata, echoed by the next write")
    eq(status_of(kv.update_metadata(path=PATH, max_versions=5, custom_metadata={"owner": "team-a"})), 204, "status of update_metadata")
    md = kv.read_secret_metadata(path=PATH)["data"]
    eq(
        (md["max_versions"], md["custom_metadata"], md["current_metadata_version"]),
        (5, {"owner": "team-a"}, 1),
        "max_versions, custom_metadata, current_metadata_version",
    )
    w4 = kv.create_or_update_secret(path=PATH, secret={"n": "4"})["data"]
    eq((w4["version"], w4["custom_metadata"]), (4, {"owner": "team-a"}), "version 4's metadata")

    step("delete_metadata_and_all_versions removes the secret entirely")
    eq(status_of(kv.delete_metadata_and_all_versions(path=PATH)), 204, "status of the metadata delete")
    e = raises(exceptions.InvalidPath, kv.read_secret_metadata, path=PATH)
    eq(e.json, {"errors": []}, "metadata read after deleting everything")
    e = raises(exceptions.InvalidPath, kv.read_secret_version, path=PATH, raise_on_deleted_version=True)
    eq(e.json, {"errors": []}, "data read after deleting everything")


if __name__ == "__main__":
    main(journey)
