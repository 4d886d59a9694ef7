"""Golden renders of an ACTIVE_STANDBY amphora's ``vrrp_instance``; each is also checked by
``keepalived --config-test`` behind the agent's own part (as root, in a throw-away namespace with an ``eth0``).

Regenerate with ``uv run pytest tests/worker --update-golden`` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from octavia_mesh.worker.vrrp.render import UnsafeValue, VrrpRenderer, VrrpView, create_environment

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "vrrp"
LB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
BASE = VrrpView(
    amphora_id="5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    load_balancer_id=LB,
    name=f"lb_{LB.replace('-', '')}",
    interface="eth0",
    vrrp_id=1,
    priority=100,
    advert_int_s=0.1,
    own_ip="169.254.64.2",
    peers=("169.254.64.3",),
    vip="127.226.0.5",
)
CASES = {
    "master.conf": BASE,
    "backup_1s.conf": replace(BASE, priority=90, advert_int_s=1.0, own_ip="169.254.64.3", peers=("169.254.64.2",)),
    "alone.conf": replace(BASE, peers=()),  # its peer lost and not rebuilt yet
}
# What the agent puts before the controller's part (see amphora_agent/keepalived.py).
AGENT_PART = """global_defs {
    script_user root
    enable_script_security
}
vrrp_script check_haproxy {
    script "/bin/true"
    interval 1
}
"""


@pytest.fixture(scope="module")
def vrrp_renderer() -> VrrpRenderer:
    return VrrpRenderer(create_environment())


@pytest.mark.parametrize("filename", sorted(CASES))
def test_golden(vrrp_renderer: VrrpRenderer, filename: str, request: pytest.FixtureRequest) -> None:
    text = vrrp_renderer.render(CASES[filename])
    path = GOLDEN_DIR / filename
    if request.config.getoption("--update-golden", default=False) or os.environ.get("OCTAVIA_MESH_UPDATE_GOLDEN"):
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run pytest tests/worker --update-golden"
    assert text == path.read_text(), f"render differs from {path} (run pytest tests/worker --update-golden)"


def _keepalived() -> str | None:
    return shutil.which("keepalived", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


@pytest.mark.skipif(os.geteuid() != 0 or _keepalived() is None, reason="keepalived --config-test in a namespace: root")
def test_keepalived_accepts_every_render(vrrp_renderer: VrrpRenderer, tmp_path: Path) -> None:
    netns = f"om-vrrp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
        for filename, view in CASES.items():
            config = tmp_path / filename
            config.write_text(AGENT_PART + vrrp_renderer.render(view))
            result = subprocess.run(
                ["ip", "netns", "exec", netns, str(_keepalived()), "--config-test", "-f", str(config)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{filename}: {result.stderr}"
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "lb 1\n}\nvrrp_instance evil {"),
        ("interface", "eth0 dev lo"),
        ("own_ip", "169.254.64.2\n    unicast_peer {"),
        ("vip", "127.226.0.5/8"),
        ("peers", ("169.254.64.3 169.254.64.4",)),
        ("priority", 255),
        ("vrrp_id", 0),
        ("advert_int_s", 0.001),
        ("peers", ("169.254.64.2",)),  # its own address as a peer
    ],
)
def test_unsafe_values_are_refused(vrrp_renderer: VrrpRenderer, field: str, value: object) -> None:
    with pytest.raises(UnsafeValue):
        vrrp_renderer.render(replace(BASE, **{field: value}))
