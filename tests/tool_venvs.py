"""The tools some tests run from virtualenvs of their own, and the one place that builds them.

* :func:`openstack_venv`: Keystone 30.0.0 and Barbican 23.0.0 under gunicorn (``keystone_server.py`` and
  ``openstack/keystone_barbican.py``; Keystone alone would be the same build minus Barbican, so one environment
  serves both), pinned by ``auth/constraints-keystone.txt``;
* :func:`ansible_venv`: ansible with its openstack.cloud collection (``clients/test_ansible.py``).

Both live in the project's ignored ``.cache``, are built with ``uv`` (``uv venv`` + ``uv pip install``, then byte
code compiled once, so that no test compiles what it imports) and are rebuilt when their pins
change. A build holds an exclusive ``fcntl`` lock on ``.cache/<name>.lock``: a test that needs an environment
another process is building waits for that build instead of starting its own.

``scripts/test.sh`` runs this file first, in the background (``python tests/tool_venvs.py``), so that the builds
and Keystone's bootstrapped template overlap the lint and type checks instead of a test's set-up.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import uv_command

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
PYTHON = "3.11"
KEYSTONE_VERSION = "30.0.0"
BARBICAN_VERSION = "23.0.0"
KEYSTONE_CONSTRAINTS = ROOT / "tests" / "auth" / "constraints-keystone.txt"
OPENSTACK_PACKAGES = (f"keystone=={KEYSTONE_VERSION}", f"barbican=={BARBICAN_VERSION}", "gunicorn")
#: ansible 12.3.0's openstack.cloud collection reads ``openstack.version`` after importing only ``openstack``,
#: which openstacksdk stopped providing in 4.15.0: the environment keeps 4.14.0, not our lock's.
ANSIBLE_PACKAGES = ("ansible==12.3.0", "openstacksdk==4.14.0")


def _ensure(name: str, packages: tuple[str, ...], constraints: Path | None = None, unused: str = "") -> Path:
    """The ``bin`` directory of ``.cache/<name>`` with ``packages`` installed (built now when missing or when its
    pins changed; waiting for a build another process holds the lock for). ``unused``: a regular expression of
    installed paths no test imports, left without byte code."""
    venv = CACHE / name
    pins = "\n".join(packages).encode() + (constraints.read_bytes() if constraints else b"")
    marker = venv / f".installed-{hashlib.sha256(pins).hexdigest()[:12]}"
    if marker.exists():
        return venv / "bin"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():  # nobody built it while we waited
            uv = uv_command()
            subprocess.run([*uv, "venv", "-q", "--clear", "-p", PYTHON, str(venv)], check=True, capture_output=True)
            install = [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
            install += ["-c", str(constraints)] if constraints else []
            done = subprocess.run([*install, *packages], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"installing {' '.join(packages)} into {venv} failed:\n{done.stderr[-3000:]}")
            # Byte code now: where PYTHONDONTWRITEBYTECODE is set, every run would compile all it imports again.
            # Some packages ship files of another Python's syntax that cannot compile: not an error here.
            compile_all = [str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0"]
            compile_all += ["-x", unused] if unused else []
            subprocess.run([*compile_all, str(venv / "lib")], capture_output=True, check=False)
            marker.touch()
    return venv / "bin"


def openstack_venv() -> Path:
    """Keystone's and Barbican's environment; its ``bin`` directory."""
    return _ensure("openstack-venv", OPENSTACK_PACKAGES, KEYSTONE_CONSTRAINTS)


def ansible_venv() -> Path:
    """Ansible's environment; its ``bin`` directory."""
    # The ansible package bundles ~100 collections; the tests use openstack.cloud only.
    return _ensure("ansible-venv", ANSIBLE_PACKAGES, unused=r"/ansible_collections/(?!openstack/)")


def main() -> None:
    """Build both environments at once (mostly downloads and unpacking), then Keystone's template."""
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(openstack_venv), pool.submit(ansible_venv)]:
            print(future.result(), flush=True)
    from keystone_server import ensure_template  # noqa: PLC0415 - keystone_server imports this module

    print(ensure_template(), flush=True)


if __name__ == "__main__":
    main()
