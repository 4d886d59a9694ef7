"""Fixtures of the OpenStack drivers' tests: the faked Nova/Glance/Neutron (``fake_cloud.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_cloud  # noqa: E402


@pytest.fixture
def cloud() -> Iterator[fake_cloud.FakeCloud]:
    with fake_cloud.running() as fake:
        yield fake
