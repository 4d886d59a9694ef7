"""Helpers of the driver-agent tests: where the acme driver lives, and its journal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SITE = Path(__file__).resolve().parent / "site"
ACME_DESCRIPTION = "Acme: the test suite's out-of-tree provider driver"


class Journal:
    """The acme driver's journal (one JSON document a line)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "journal.jsonl"

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        items = [json.loads(line) for line in lines if line.strip()]
        return [i for i in items if event is None or i["event"] == event]

    def wait_for(self, match: Callable[[dict[str, Any]], bool], event: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.entries(event) if match(e)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no {event} entry matched in {timeout}s; journal: {self.entries(event)[-5:]}")
