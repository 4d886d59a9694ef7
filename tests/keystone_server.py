"""A real OpenStack Keystone (30.0.0 from PyPI) for the tests and benchmarks: SQLite, fernet tokens, gunicorn.

Keystone pulls in oslo.* and an older SQLAlchemy, so it lives in its own virtualenv, the one Barbican's tests
use too (``tool_venvs.openstack_venv``: ``.cache/openstack-venv``, built on first use or by ``scripts/test.sh``
in the background). Each :class:`Keystone` keeps its database, keys and
logs under a directory the caller gives (pytest's tmp dir) and serves on a free loopback port; bcrypt runs at
its lowest cost, a test-only setting that makes password authentication take milliseconds.

After :meth:`Keystone.start`: ``admin`` / :data:`ADMIN_PASSWORD` (admin on project ``admin``), roles ``admin``,
``member``, ``reader``, ``service`` and Octavia's ``load-balancer_*``; project ``service`` with user ``octavia``
(role ``service`` only: enough to validate tokens) whose password is :data:`SERVICE_PASSWORD`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tool_venvs import KEYSTONE_VERSION, openstack_venv

from octavia_mesh.cli.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "admin-secret"
SERVICE_PASSWORD = "octavia-secret"
#: The tests' own users' password, their Keystone's token lifetime and their mesh's validation cache time.
USER_PASSWORD = "user-secret"
TOKEN_LIFETIME_S = 20
CACHE_TIME_S = 5.0
ROLES = (
    "admin",
    "member",
    "reader",
    "service",
    "load-balancer_admin",
    "load-balancer_member",
    "load-balancer_observer",
    "load-balancer_global_observer",
    "load-balancer_quota_admin",
)
WSGI = '''"""Keystone for gunicorn: oslo.config would parse gunicorn's command line, so argv is cleared first."""
import sys

sys.argv = sys.argv[:1]
from keystone.server import wsgi  # noqa: E402

application = wsgi.initialize_public_application()
'''


def write_config(state: Path, token_expiration_s: int = 3600) -> Path:
    conf = state / "keystone.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"log_file = {state / 'keystone.log'}\n"
        "[database]\n"
        f"connection = sqlite:///{state / 'keystone.db'}\n"
        "[token]\n"
        "provider = fernet\n"
        f"expiration = {token_expiration_s}\n"
        "[fernet_tokens]\n"
        f"key_repository = {state / 'fernet-keys'}\n"
        "[fernet_receipts]\n"
        f"key_repository = {state / 'fernet-keys'}\n"
        "[credential]\n"
        f"key_repository = {state / 'credential-keys'}\n"
        "[cache]\n"
        # In-process cache (one worker, so coherent): without it every validation re-reads revocation events.
        "enabled = True\n"
        "backend = dogpile.cache.memory\n"
        "[identity]\n"
        "password_hash_rounds = 4\n"
    )
    return conf


def ensure_template() -> Path:
    """A migrated, bootstrapped Keystone state (database, fernet and credential keys), made once and copied by
    every :class:`Keystone`: each ``keystone-manage`` step imports all of Keystone, ~5 CPU-seconds apiece."""
    template = ROOT / ".cache" / f"keystone-template-{KEYSTONE_VERSION}"
    done = template / ".bootstrapped"
    if done.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.parent / "keystone.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        bin_dir = ensure_venv()
        if done.exists():
            return template
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        conf = write_config(template)
        manage = [str(bin_dir / "keystone-manage"), "--config-file", str(conf)]
        user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
        bootstrap = ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-username", "admin"]
        bootstrap += ["--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin"]
        bootstrap += ["--bootstrap-service-name", "keystone", "--bootstrap-region-id", "RegionOne"]
        bootstrap += ["--bootstrap-public-url", "http://127.0.0.1:5000/v3"]  # the port is set per server
        for step in (["db_sync"], ["fernet_setup", *user], ["credential_setup", *user], bootstrap):
            subprocess.run([*manage, *step], check=True, capture_output=True)
        done.touch()
    return template


def ensure_venv() -> Path:
    """Keystone's virtualenv (``tool_venvs.openstack_venv``, built on first use); returns its ``bin`` directory."""
    return openstack_venv()


@dataclass
class Keystone:
    """One Keystone server and what it was provisioned with."""

    state: Path
    token_expiration_s: int = 3600
    # In the kernel's ephemeral range, apart from the meshes' ports (``listen_port``): tests stop a Keystone and
    # start it again on its port, which a mesh starting meanwhile would otherwise be free to take.
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    role_ids: dict[str, str] = field(default_factory=dict)
    _admin: tuple[str, float] = ("", 0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    def _config(self) -> Path:
        return write_config(self.state, self.token_expiration_s)

    def start(self, timeout: float = 90.0) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        template = ensure_template()
        for name in ("keystone.db", "fernet-keys", "credential-keys"):
            source = template / name
            if source.is_dir():
                shutil.copytree(source, self.state / name)
            else:
                shutil.copy2(source, self.state / name)
        self._config()
        (self.state / "keystone_wsgi.py").write_text(WSGI)
        self.serve(timeout)
        self._provision()

    def serve(self, timeout: float = 90.0) -> None:
        """Start gunicorn (again, after :meth:`stop`) and wait until Keystone answers."""
        log = open(self.state / "gunicorn.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                str(ensure_venv() / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "1",  # SQLite: concurrent requests fail with "database is locked"
                "--timeout",
                "120",
                "--chdir",
                str(self.state),
                "keystone_wsgi:application",
            ],
            env={**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.state / "keystone.conf")},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url, timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.state / "gunicorn.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"keystone did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    # --- the Keystone API, as an admin ---------------------------------------------------------------------

    @property
    def admin_token(self) -> str:
        """The admin's token, renewed once half its life is gone."""
        token, issued = self._admin
        if not token or time.monotonic() - issued > self.token_expiration_s / 2:
            self._admin = (self.token("admin", ADMIN_PASSWORD, "admin")[0], time.monotonic())
        return self._admin[0]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"X-Auth-Token": token or self.admin_token, **kwargs.pop("headers", {})}
        response = requests.request(method, self.url + path, json=body, headers=headers, timeout=30, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response.json() if response.content else None

    def token(
        self, user: str, password: str, project: str | None = None, system: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """A token for ``user`` scoped to ``project`` (by name) or the system; returns it and its body."""
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
            }
        }
        if system:
            auth["scope"] = {"system": {"all": True}}
        elif project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        response = requests.post(self.url + "/auth/tokens", json={"auth": auth}, timeout=30)
        assert response.status_code == 201, f"token for {user}: {response.status_code} {response.text[:300]}"
        return response.headers["X-Subject-Token"], response.json()["token"]

    def token_of(self, user: str, project: str | None = None, system: bool = False) -> str:
        """A fresh token of a test user (``admin``: the bootstrap admin; others: :data:`USER_PASSWORD`)."""
        password = ADMIN_PASSWORD if user == "admin" else USER_PASSWORD
        return self.token(user, password, project, system=system)[0]

    def revoke(self, token: str) -> None:
        self.call("DELETE", "/auth/tokens", headers={"X-Subject-Token": token})

    def _provision(self) -> None:
        existing = {r["name"]: r["id"] for r in self.call("GET", "/roles")["roles"]}
        for name in ROLES:
            if name not in existing:
                existing[name] = self.call("POST", "/roles", {"role": {"name": name}})["role"]["id"]
        self.role_ids = existing
        self.user("octavia", SERVICE_PASSWORD, {"service": ["service"]})
        self.register_endpoint("identity", "keystone", self.url)  # the template's names another port

    def project(self, name: str) -> str:
        """The id of project ``name`` (domain Default), created when missing."""
        found = self.call("GET", f"/projects?name={name}")["projects"]
        if found:
            return found[0]["id"]
        return self.call("POST", "/projects", {"project": {"name": name, "domain_id": "default"}})["project"]["id"]

    def user(self, name: str, password: str, roles: dict[str, list[str]], system_roles: tuple[str, ...] = ()) -> str:
        """Create user ``name`` with ``roles`` per project name (projects created when missing); its id."""
        found = self.call("GET", f"/users?name={name}")["users"]
        if found:
            user_id = found[0]["id"]
        else:
            body = {"user": {"name": name, "password": password, "domain_id": "default"}}
            user_id = self.call("POST", "/users", body)["user"]["id"]
        for project, names in roles.items():
            project_id = self.project(project)
            for role in names:
                self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role_ids[role]}")
        for role in system_roles:
            self.call("PUT", f"/system/users/{user_id}/roles/{self.role_ids[role]}")
        return user_id

    def register_endpoint(self, service_type: str, name: str, url: str) -> None:
        """A catalog entry (public, RegionOne), so that clients find ``service_type`` at ``url``."""
        services = self.call("GET", f"/services?type={service_type}")["services"]
        if services:
            service_id = services[0]["id"]
        else:
            body = {"service": {"type": service_type, "name": name}}
            service_id = self.call("POST", "/services", body)["service"]["id"]
        for endpoint in self.call("GET", f"/endpoints?service_id={service_id}")["endpoints"]:
            self.call("DELETE", f"/endpoints/{endpoint['id']}")
        for interface in ("public", "internal"):
            endpoint = {"service_id": service_id, "interface": interface, "url": url, "region_id": "RegionOne"}
            self.call("POST", "/endpoints", {"endpoint": endpoint})


def keystone_env(keystone: Keystone, cache_time_s: float = 300.0) -> dict[str, str]:
    """The API service's settings for keystone mode against ``keystone``."""
    return {
        "OCTAVIA_MESH_API_KEYSTONE_AUTH_URL": keystone.url,
        "OCTAVIA_MESH_API_KEYSTONE_USERNAME": "octavia",
        "OCTAVIA_MESH_API_KEYSTONE_PASSWORD": SERVICE_PASSWORD,
        "OCTAVIA_MESH_API_KEYSTONE_PROJECT_NAME": "service",
        "OCTAVIA_MESH_API_KEYSTONE_TOKEN_CACHE_TIME_S": str(cache_time_s),
    }


@contextlib.contextmanager
def running_keystone(state: Path, token_expiration_s: int = 3600) -> Iterator[Keystone]:
    keystone = Keystone(state, token_expiration_s)
    keystone.start()
    try:
        yield keystone
    finally:
        keystone.stop()
