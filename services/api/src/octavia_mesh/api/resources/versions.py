"""Version discovery at ``/`` (and ``/v2``, ``/v2.0``), as keystoneauth reads it."""

from __future__ import annotations

from octavia_mesh.api.app import App, Call, Reply

#: (version, release date) of every v2 minor version; the last one is CURRENT.
VERSIONS = (
    ("2.0", "2016-12-11T00:00:00Z"),
    ("2.1", "2018-04-20T00:00:00Z"),
    ("2.2", "2018-07-31T00:00:00Z"),
    ("2.3", "2018-12-18T00:00:00Z"),
    ("2.4", "2018-12-19T00:00:00Z"),
    ("2.5", "2019-01-21T00:00:00Z"),
    ("2.6", "2019-01-25T00:00:00Z"),
    ("2.7", "2018-01-25T12:00:00Z"),
    ("2.8", "2019-02-12T00:00:00Z"),
    ("2.9", "2019-03-04T00:00:00Z"),
    ("2.10", "2019-03-05T00:00:00Z"),
    ("2.11", "2019-06-24T00:00:00Z"),
    ("2.12", "2019-09-11T00:00:00Z"),
    ("2.13", "2019-09-13T00:00:00Z"),
    ("2.14", "2019-11-10T00:00:00Z"),
    ("2.15", "2020-03-10T00:00:00Z"),
    ("2.16", "2020-03-15T00:00:00Z"),
    ("2.17", "2020-04-29T00:00:00Z"),
    ("2.18", "2020-04-29T01:00:00Z"),
    ("2.19", "2020-05-12T00:00:00Z"),
    ("2.20", "2020-08-02T00:00:00Z"),
    ("2.21", "2020-09-03T00:00:00Z"),
    ("2.22", "2020-09-04T00:00:00Z"),
    ("2.23", "2020-09-07T00:00:00Z"),
    ("2.24", "2020-10-15T00:00:00Z"),
    ("2.25", "2021-10-02T00:00:00Z"),
    ("2.26", "2022-08-29T00:00:00Z"),
    ("2.27", "2023-05-05T00:00:00Z"),
    ("2.28", "2023-11-08T00:00:00Z"),
    ("2.29", "2024-10-15T00:00:00Z"),
    ("2.30", "2025-02-26T00:00:00Z"),
)


async def list_versions(app: App, call: Call) -> Reply:
    href = f"{call.root_url}/v2"
    last = VERSIONS[-1][0]
    return Reply(
        200,
        {
            "versions": [
                {
                    "id": f"v{v}",
                    "status": "CURRENT" if v == last else "SUPPORTED",
                    "updated": updated,
                    "links": [{"href": href, "rel": "self"}],
                }
                for v, updated in VERSIONS
            ]
        },
    )


async def get_version(app: App, call: Call) -> Reply:
    # Octavia answers the bare version path with the JSON string "v2".
    return Reply(200, "v2")


HANDLERS = {"ListVersions": list_versions, "GetVersion": get_version}
