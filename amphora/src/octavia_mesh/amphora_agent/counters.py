"""Listener counters that never go backwards: HAProxy's, carried across its reloads and restarts.

HAProxy's counters live in its worker process, so every reload or restart starts them from zero (and the
agent sees only the current worker). The ledger keeps, per load balancer and frontend, a *base* (what
earlier workers counted) and the *last* values read from the current worker, and reports ``base + last``.
When the worker changes (a new pid in ``show info``), or a counter goes down, the last values are folded
into the base. The agent reads the counters once more right before it reloads or stops HAProxy itself, so
only traffic since the last read is lost when HAProxy dies unexpectedly (at most one heartbeat interval).

The ledger is saved in the agent's state directory after every change, so the totals also survive agent
restarts: the health service can store them as they are, and a lost or repeated heartbeat changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: The accumulated ``show stat`` fields, in the order the ledger stores them.
FIELDS = ("bin", "bout", "stot", "ereq")
#: Worker pids remembered as retired per load balancer, so a read that raced a reload is not taken as new.
_RETIRED_KEPT = 8

Values = tuple[int, ...]


@dataclass(slots=True)
class _Book:
    pid: int = 0
    base: dict[str, list[int]] = field(default_factory=dict)
    last: dict[str, list[int]] = field(default_factory=dict)
    retired: list[int] = field(default_factory=list)

    def fold(self) -> None:
        for name, values in self.last.items():
            total = self.base.setdefault(name, [0] * len(FIELDS))
            for i, value in enumerate(values):
                total[i] += value
        self.last = {}


class CounterLedger:
    """Per load balancer and frontend totals since the amphora was created (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._books: dict[str, _Book] = {}
        self._generations: dict[str, int] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.error("counters in %s unreadable (%s): starting from zero", self._path, exc)
            return
        for lb_id, book in raw.items():
            self._books[lb_id] = _Book(
                pid=int(book.get("pid", 0)),
                base={k: [int(x) for x in v] for k, v in book.get("base", {}).items()},
                last={k: [int(x) for x in v] for k, v in book.get("last", {}).items()},
                retired=[int(p) for p in book.get("retired", [])],
            )

    def generation(self, lb_id: str) -> int:
        """Changes whenever a read taken before a reload must no longer be observed."""
        return self._generations.get(lb_id, 0)

    def bump(self, lb_id: str) -> None:
        self._generations[lb_id] = self.generation(lb_id) + 1

    def observe(self, lb_id: str, worker_pid: int, current: dict[str, Values]) -> None:
        """Record what worker ``worker_pid`` reports now (frontend name -> :data:`FIELDS` values)."""
        book = self._books.setdefault(lb_id, _Book())
        if worker_pid <= 0 or worker_pid in book.retired:
            return
        went_down = any(
            value < previous
            for name, values in current.items()
            for value, previous in zip(values, book.last.get(name, ()), strict=False)
        )
        if worker_pid != book.pid or went_down:
            book.fold()
            if book.pid and book.pid != worker_pid:
                book.retired = [*book.retired, book.pid][-_RETIRED_KEPT:]
            book.pid = worker_pid
        fresh = {name: list(values) for name, values in current.items()}
        if fresh != book.last:
            book.last = fresh
            self._dirty = True

    def totals(self, lb_id: str, name: str) -> Values:
        """``base + last`` of one frontend."""
        book = self._books.get(lb_id)
        if book is None:
            return (0,) * len(FIELDS)
        base = book.base.get(name, [0] * len(FIELDS))
        last = book.last.get(name, [0] * len(FIELDS))
        return tuple(b + c for b, c in zip(base, last, strict=True))

    def forget(self, lb_id: str) -> None:
        """The load balancer left the amphora: its counters go with it."""
        if self._books.pop(lb_id, None) is not None:
            self._dirty = True

    def keep_only(self, lb_ids: set[str]) -> None:
        for lb_id in set(self._books) - lb_ids:
            self.forget(lb_id)

    def save(self) -> None:
        """Write the ledger if it changed (renamed into place; no fsync: a lost second of counts is acceptable)."""
        if not self._dirty:
            return
        data = {
            lb_id: {"pid": b.pid, "base": b.base, "last": b.last, "retired": b.retired}
            for lb_id, b in self._books.items()
        }
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, separators=(",", ":"))
            os.replace(tmp, self._path)
            self._dirty = False
        except OSError as exc:
            logger.warning("could not save counters to %s: %s", self._path, exc)
