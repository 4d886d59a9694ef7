"""Real Keystone and Barbican from PyPI, started for the tests (never faked).

Both come from the tests' OpenStack virtualenv (``tool_venvs.openstack_venv``: Keystone 30.0.0 and Barbican
23.0.0 under ``auth/constraints-keystone.txt``, built once per checkout) and run under gunicorn on free loopback
ports, each with its own SQLite database:

* Keystone as ``keystone_server.Keystone`` starts it (a copy of the bootstrapped template: admin on project
  ``admin``, fernet tokens), then project ``service`` with users ``barbican`` (Barbican's keystonemiddleware) and
  ``octavia`` (the mesh's service user: ``admin`` and ``service`` roles there, as Octavia's), project ``demo``
  with user ``alice`` (``member`` and ``creator``), the user who owns the certificates;
* Barbican with keystone auth (``authtoken`` pipeline), the ``store_crypto`` secret store and its
  ``simple_crypto`` plugin (a fresh KEK per run).

Barbican reads its configuration from ``~/.barbican/barbican.conf`` (oslo.config's search path; every one of
its plugins parses its own copy), so its process gets the state directory as ``HOME``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from keystone_server import ADMIN_PASSWORD, SERVICE_PASSWORD, Keystone, ensure_venv

from octavia_mesh.cli.processes import listen_port

PASSWORDS = {"barbican": "barbican-secret", "octavia": SERVICE_PASSWORD, "alice": "alice-secret"}


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s: {log.read_text()[-3000:]}")


def _call(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status, headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    return status, headers, (json.loads(raw) if raw else {})


@dataclass(frozen=True)
class Cloud:
    keystone_url: str  # .../v3
    barbican_url: str
    ids: dict[str, str]  # project and user ids by name

    def auth(self, user: str, project: str) -> dict[str, object]:
        """openstacksdk connection arguments for ``user`` scoped to ``project``."""
        return {
            "auth_type": "password",
            "auth": {
                "auth_url": self.keystone_url,
                "username": user,
                "password": PASSWORDS.get(user, ADMIN_PASSWORD),
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
        }

    def token(self, user: str, project: str) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": PASSWORDS[user]}},
                },
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
            }
        }
        status, headers, _ = _call("POST", f"{self.keystone_url}/auth/tokens", body)
        assert status == 201, status
        return headers["X-Subject-Token"]


def _provision(keystone: Keystone, barbican: str) -> dict[str, str]:
    """Barbican's users and catalog entry; the ids of the projects and users by name."""
    if "creator" not in keystone.role_ids:  # Barbican's role for storing secrets; Keystone has none by default
        keystone.role_ids["creator"] = keystone.call("POST", "/roles", {"role": {"name": "creator"}})["role"]["id"]
    grants = {"barbican": {"service": ["admin", "service"]}, "octavia": {"service": ["admin", "service"]},
              "alice": {"demo": ["member", "creator"]}}  # fmt: skip
    ids = {user: keystone.user(user, PASSWORDS[user], roles) for user, roles in grants.items()}
    ids.update({project: keystone.project(project) for project in ("service", "demo")})
    keystone.register_endpoint("key-manager", "barbican", barbican)
    return ids


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running(state: Path) -> Iterator[Cloud]:
    bb_port = listen_port()
    barbican = f"http://127.0.0.1:{bb_port}"
    keystone = Keystone(state / "keystone")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        keystone.start()
        bb_state = state / "barbican"
        (bb_state / ".barbican").mkdir(parents=True)
        kek = base64.b64encode(secrets.token_bytes(32)).decode()
        (bb_state / ".barbican" / "barbican.conf").write_text(
            f"[DEFAULT]\nhost_href = {barbican}\ndb_auto_create = True\n"
            f"[database]\nconnection = sqlite:///{bb_state}/barbican.db\n"
            "[secretstore]\nenabled_secretstore_plugins = store_crypto\n"
            "[crypto]\nenabled_crypto_plugins = simple_crypto\n"
            f"[simple_crypto_plugin]\nkek = {kek}\n"
            f"[keystone_authtoken]\nwww_authenticate_uri = {keystone.url}\nauth_url = {keystone.url}\n"
            f"auth_type = password\nusername = barbican\npassword = {PASSWORDS['barbican']}\nproject_name = service\n"
            "user_domain_name = Default\nproject_domain_name = Default\nservice_token_roles_required = True\n"
        )
        bindir = ensure_venv()
        paste = (bindir.parent / "etc" / "barbican" / "barbican-api-paste.ini").read_text()  # keystone auth on /v1
        (bb_state / "barbican-api-paste.ini").write_text(paste)
        (bb_state / "barbican_wsgi.py").write_text(
            "import sys\nsys.argv = sys.argv[:1]\nfrom paste import deploy\n"
            f"application = deploy.loadapp('config:{bb_state}/barbican-api-paste.ini')\n"
        )
        ids = _provision(keystone, barbican)
        env = {**os.environ, "HOME": str(bb_state), "PYTHONPATH": str(bb_state)}
        blog = bb_state / "barbican.log"
        command = [str(bindir / "python"), "-m", "gunicorn", "--bind", f"127.0.0.1:{bb_port}", "--workers", "1",
                   "--timeout", "120", "barbican_wsgi:application"]  # fmt: skip
        with open(blog, "ab") as out:
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=bb_state
                )
            )
        _wait(barbican, processes[-1], blog)
        yield Cloud(keystone.url, barbican, ids)
    finally:
        for process in processes:
            _stop(process)
        keystone.stop()
