"""Fixtures of the OpenStack drivers' tests: the faked Nova/Glance/Neutron (``fake_cloud.py``), and one real
Keystone + Barbican (``keystone_barbican.py``) for the whole session: its modules only add secrets of their own, and
``tests/grouping.py`` keeps them on one worker (``barbican_cloud`` is in its ``SHARED_MESHES``), where it starts
once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_cloud  # noqa: E402
import keystone_barbican  # noqa: E402


@pytest.fixture
def cloud() -> Iterator[fake_cloud.FakeCloud]:
    with fake_cloud.running() as fake:
        yield fake


@pytest.fixture(scope="session")
def barbican_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keystone_barbican.Cloud]:
    with keystone_barbican.running(tmp_path_factory.mktemp("openstack")) as started:
        yield started
