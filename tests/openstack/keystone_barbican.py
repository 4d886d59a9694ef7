"""Real Keystone and Barbican from PyPI, started for the tests (never faked).

Both come from one cached virtual environment (``~/.cache/octavia-mesh/openstack-services-<hash>``: Keystone
30.0.0 and Barbican 23.0.0, pinned by ``../shared/tools/tempest/constraints-keystone.txt`` when present,
created on first use) and run under gunicorn on free loopback ports, each with its own SQLite database:

* Keystone with fernet tokens (``keystone-manage bootstrap``: admin on project ``admin``), then project
  ``service`` with users ``barbican`` (Barbican's keystonemiddleware) and ``octavia`` (the mesh's service
  user: ``admin`` and ``service`` roles there, as Octavia's), project ``demo`` with user ``alice``
  (``member``), the user who owns the certificates;
* Barbican with keystone auth (``authtoken`` pipeline), the ``store_crypto`` secret store and its
  ``simple_crypto`` plugin (a fresh KEK per run).

Barbican reads its configuration from ``~/.barbican/barbican.conf`` (oslo.config's search path; every one of
its plugins parses its own copy), so its process gets the state directory as ``HOME``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KEYSTONE = "keystone==30.0.0"
BARBICAN = "barbican==23.0.0"


def _constraints() -> Path:
    """``../shared/tools/tempest/constraints-keystone.txt`` beside the checkout (or beside the main checkout
    of a git worktree)."""
    root = Path(__file__).resolve().parents[2]
    common = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    for base in (root, Path(common).parent if common else root):
        candidate = base.parent / "shared" / "tools" / "tempest" / "constraints-keystone.txt"
        if candidate.is_file():
            return candidate
    return root / "no-constraints"


CONSTRAINTS = _constraints()
ADMIN_PASSWORD = "admin-secret"
PASSWORDS = {"barbican": "barbican-secret", "octavia": "octavia-secret", "alice": "alice-secret"}


def _venv() -> Path:
    """The cached environment with both services (created once; later runs reuse it)."""
    pins = [KEYSTONE, BARBICAN, "gunicorn"]
    constraints = CONSTRAINTS.read_bytes() if CONSTRAINTS.is_file() else b""
    digest = hashlib.sha256("\n".join(pins).encode() + constraints).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "octavia-mesh"
    venv = cache / f"openstack-services-{digest}"
    if (venv / ".complete").exists():
        return venv
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f".building-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    extra = ["-c", str(CONSTRAINTS)] if constraints else []
    subprocess.run([str(building / "bin" / "pip"), "install", "-q", *extra, *pins], check=True, timeout=1800)
    (building / ".complete").touch()
    # Built aside and renamed whole, so a concurrent or killed build never leaves a half environment under the
    # final name. Its scripts' shebangs name the build path: everything runs as ``bin/python -m ...``.
    try:
        building.rename(venv)
    except OSError:  # another session finished first
        subprocess.run(["rm", "-rf", str(building)], check=False)
    return venv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _provision(keystone: str, barbican: str) -> dict[str, str]:
    admin = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}},
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    _, headers, _ = _call("POST", f"{keystone}/auth/tokens", admin)
    token = headers["X-Subject-Token"]
    roles = {r["name"]: r["id"] for r in _call("GET", f"{keystone}/roles", token=token)[2]["roles"]}
    for name in ("service", "creator"):
        if name not in roles:
            roles[name] = _call("POST", f"{keystone}/roles", {"role": {"name": name}}, token)[2]["role"]["id"]
    ids: dict[str, str] = {}
    for project in ("service", "demo"):
        ids[project] = _call(
            "POST", f"{keystone}/projects", {"project": {"name": project, "domain_id": "default"}}, token
        )[2]["project"]["id"]
    grants = {"barbican": ("service", ["admin", "service"]), "octavia": ("service", ["admin", "service"]),
              "alice": ("demo", ["member", "creator"])}  # fmt: skip
    for user, (project, user_roles) in grants.items():
        body = {"user": {"name": user, "password": PASSWORDS[user], "domain_id": "default"}}
        ids[user] = _call("POST", f"{keystone}/users", body, token)[2]["user"]["id"]
        for role in user_roles:
            _call("PUT", f"{keystone}/projects/{ids[project]}/users/{ids[user]}/roles/{roles[role]}", token=token)
    service = _call("POST", f"{keystone}/services", {"service": {"type": "key-manager", "name": "barbican"}}, token)
    for interface in ("public", "internal", "admin"):
        endpoint = {"service_id": service[2]["service"]["id"], "interface": interface, "url": barbican,
                    "region_id": "RegionOne"}  # fmt: skip
        _call("POST", f"{keystone}/endpoints", {"endpoint": endpoint}, token)
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
    venv = _venv()
    bindir = venv / "bin"
    ks_port, bb_port = _free_port(), _free_port()
    keystone, barbican = f"http://127.0.0.1:{ks_port}/v3", f"http://127.0.0.1:{bb_port}"
    ks_state = state / "keystone"
    ks_state.mkdir(parents=True)
    conf = ks_state / "keystone.conf"
    conf.write_text(
        f"[database]\nconnection = sqlite:///{ks_state}/keystone.db\n[token]\nprovider = fernet\n"
        f"[fernet_tokens]\nkey_repository = {ks_state}/fernet-keys\n[fernet_receipts]\n"
        f"key_repository = {ks_state}/fernet-keys\n[credential]\nkey_repository = {ks_state}/credential-keys\n"
        "[identity]\npassword_hash_rounds = 4\n"
    )
    python = str(bindir / "python")
    manage = [python, "-c", "import sys; from keystone.cmd.manage import main; sys.exit(main())"]
    manage += ["--config-file", str(conf)]
    me = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    log = ks_state / "keystone.log"
    with open(log, "ab") as out:
        for step in (["db_sync"], ["fernet_setup", *me], ["credential_setup", *me]):
            subprocess.run([*manage, *step], check=True, stdout=out, stderr=subprocess.STDOUT, timeout=600)
        subprocess.run(
            [*manage, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-region-id", "RegionOne",
             "--bootstrap-public-url", keystone, "--bootstrap-internal-url", keystone],
            check=True, stdout=out, stderr=subprocess.STDOUT, timeout=600,
        )  # fmt: skip
    (ks_state / "keystone_wsgi.py").write_text(
        # keystone parses sys.argv (gunicorn's) with oslo.config: clear it first.
        "import sys\nsys.argv = sys.argv[:1]\nfrom keystone.server import wsgi\n"
        "application = wsgi.initialize_public_application()\n"
    )
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf), "PYTHONPATH": str(ks_state)}
    processes = []
    try:
        with open(log, "ab") as out:
            processes.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "gunicorn",
                        "--bind",
                        f"127.0.0.1:{ks_port}",
                        "--workers",
                        "1",
                        "--timeout",
                        "120",
                        "keystone_wsgi:application",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=ks_state,
                )  # fmt: skip
            )
        _wait(keystone, processes[-1], log)
        bb_state = state / "barbican"
        (bb_state / ".barbican").mkdir(parents=True)
        kek = base64.b64encode(secrets.token_bytes(32)).decode()
        (bb_state / ".barbican" / "barbican.conf").write_text(
            f"[DEFAULT]\nhost_href = {barbican}\ndb_auto_create = True\n"
            f"[database]\nconnection = sqlite:///{bb_state}/barbican.db\n"
            "[secretstore]\nenabled_secretstore_plugins = store_crypto\n"
            "[crypto]\nenabled_crypto_plugins = simple_crypto\n"
            f"[simple_crypto_plugin]\nkek = {kek}\n"
            f"[keystone_authtoken]\nwww_authenticate_uri = {keystone}\nauth_url = {keystone}\nauth_type = password\n"
            f"username = barbican\npassword = {PASSWORDS['barbican']}\nproject_name = service\n"
            "user_domain_name = Default\nproject_domain_name = Default\nservice_token_roles_required = True\n"
        )
        paste = (venv / "etc" / "barbican" / "barbican-api-paste.ini").read_text()  # keystone auth on /v1
        (bb_state / "barbican-api-paste.ini").write_text(paste)
        (bb_state / "barbican_wsgi.py").write_text(
            "import sys\nsys.argv = sys.argv[:1]\nfrom paste import deploy\n"
            f"application = deploy.loadapp('config:{bb_state}/barbican-api-paste.ini')\n"
        )
        ids = _provision(keystone, barbican)
        env = {**os.environ, "HOME": str(bb_state), "PYTHONPATH": str(bb_state)}
        blog = bb_state / "barbican.log"
        with open(blog, "ab") as out:
            processes.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "gunicorn",
                        "--bind",
                        f"127.0.0.1:{bb_port}",
                        "--workers",
                        "1",
                        "--timeout",
                        "120",
                        "barbican_wsgi:application",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=bb_state,
                )  # fmt: skip
            )
        _wait(barbican, processes[-1], blog)
        yield Cloud(keystone, barbican, ids)
    finally:
        for process in reversed(processes):
            _stop(process)
