"""A cascade delete leaves nothing behind: no agent or HAProxy process, no listening VIP, no amphora files."""

from __future__ import annotations

import time

from dataplane_helpers import (
    AMPHORAE,
    LBS,
    amphora_base,
    amphora_home,
    amphorae_of,
    create_lb,
    delete_lb,
    get,
    listening,
    processes_mentioning,
)
from support import Rest

from octavia_mesh.cli.mesh import Mesh


def test_cascade_delete_leaves_nothing(api: Rest, dataplane_mesh: Mesh, backends, tcp_backends) -> None:
    (member,) = backends(1)
    (tcp_member,) = tcp_backends(1)
    tree = {
        "listeners": [
            {
                "protocol": "HTTP",
                "protocol_port": 8081,
                "default_pool": {
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": member.address, "protocol_port": member.port}],
                    "healthmonitor": {
                        "type": "HTTP",
                        "delay": 1,
                        "timeout": 1,
                        "max_retries": 1,
                        "url_path": "/health",
                    },
                },
                "l7policies": [
                    {"action": "REJECT", "rules": [{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/deny"}]}
                ],
            },
            {
                "protocol": "TCP",
                "protocol_port": 8082,
                "default_pool": {
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": tcp_member.address, "protocol_port": tcp_member.port}],
                },
            },
        ]
    }
    lb = create_lb(api, "cascade", **tree)
    try:
        vip = lb["vip_address"]
        assert get(vip, 8081).who == "member0"
        assert get(vip, 8081, "/deny").status == 403
        assert listening(vip, 8082)
        (amphora,) = amphorae_of(api, lb["id"])
        home = amphora_home(dataplane_mesh, amphora["id"])
        needles = (amphora["id"], str(home), lb["id"], vip)
        before = processes_mentioning(*needles)
        # The agent, HAProxy's master and its worker: what the checks below must not find any more.
        assert len(before) >= 3, before
        assert any("haproxy" in cmd for cmd in before.values()) and any(
            "amphora_agent" in cmd for cmd in before.values()
        )
        assert any(home.rglob("*")), f"no files under {home}"
    except BaseException:
        delete_lb(api, lb["id"])
        raise

    started = time.monotonic()
    assert api.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204
    api.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED", timeout=30)
    took = time.monotonic() - started
    print(f"\ncascade delete -> 404: {took:.2f}s")

    assert processes_mentioning(*needles) == {}
    assert not listening(vip, 8081) and not listening(vip, 8082)
    assert not home.exists(), sorted(str(p) for p in home.rglob("*"))
    live = {
        a["id"].replace("-", "")[:12] for a in api.ok("GET", AMPHORAE)["amphorae"] if a["status"] not in ("DELETED",)
    }
    leftovers = [p for p in amphora_base(dataplane_mesh).iterdir() if p.name not in live]
    assert leftovers == [], leftovers
    statuses = {a["status"] for a in amphorae_of(api, lb["id"])}
    assert statuses <= {"DELETED"}, statuses
