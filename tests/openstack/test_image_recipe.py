"""The amphora image recipe (``amphora/image``) agrees with the nova driver's user data and the agent.

(Every boot in ``fake_nova.py`` also runs the recipe's unit command with the user data's files; building
the image itself needs root, KVM and diskimage-builder.)
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path

from fake_nova import UNIT, image_unit

from octavia_mesh.amphora_agent.settings import PREFIX, AgentSettings
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import InstanceSpec
from octavia_mesh.worker.drivers.openstack_compute import NovaOptions, user_data

IMAGE = UNIT.parents[6]


def test_unit_runs_the_agent_module_with_the_user_data_settings(tmp_path: Path) -> None:
    command, env_file = image_unit()
    assert command[1:] == ["-m", "octavia_mesh.amphora_agent"]  # the module the local driver runs too
    assert command[0].startswith("/opt/octavia-mesh/")  # the venv install.d builds

    identity = LocalCertificateDriver(tmp_path / "ca").issue_amphora_certificate("a1", dt.timedelta(days=1))
    text = user_data(InstanceSpec("a1", identity), NovaOptions("tag", "flavor", "net", health_endpoints=("h:1",)))
    files = {f["path"]: f["content"] for f in json.loads(text.split("\n", 1)[1])["write_files"]}
    assert env_file in files
    env = dict(line.split("=", 1) for line in files[env_file].splitlines())
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(AgentSettings)}
    assert set(env) <= known, set(env) - known  # the agent refuses unknown settings
    for key in ("SERVER_CERT", "SERVER_KEY", "CLIENT_CA"):
        assert env[PREFIX + key] in files  # every file the settings name is written
    assert env[PREFIX + "STATE_DIR"] == "/var/lib/octavia-mesh"
    assert base64.b64encode(text.encode())  # fits Nova's base64 user_data


def test_recipe_scripts_parse_and_are_executable() -> None:
    scripts = [IMAGE / "build.sh", *(IMAGE / "elements/octavia-mesh-amphora").glob("*.d/*")]
    assert len(scripts) == 3
    for script in scripts:
        assert script.stat().st_mode & 0o111, script
        subprocess.run(["bash", "-n", str(script)], check=True)
    deps = (IMAGE / "elements/octavia-mesh-amphora/package-installs.yaml").read_text()
    assert "keepalived:" in deps
