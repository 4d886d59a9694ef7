"""Talking to HAProxy over its unix sockets: the master CLI (``-S``) and the stats socket."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path


class CliError(OSError):
    """A CLI socket could not be reached or did not answer in time."""


async def command(socket: Path, line: str, timeout: float) -> str:
    """Send one command line and return everything HAProxy answers until it closes the connection.

    The stats socket closes after one command. The master CLI keeps the connection open after most
    commands, so callers append ``;quit`` there (``reload`` closes by itself: the master re-executes).
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(socket))
            try:
                writer.write(line.encode() + b"\n")
                await writer.drain()
                return (await reader.read()).decode(errors="replace")
            finally:
                writer.close()
    except TimeoutError:
        raise CliError(f"{socket.name}: no answer to {line.split()[0]!r} within {timeout:g}s") from None
    except OSError as exc:
        raise CliError(f"{socket.name}: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class Processes:
    """The master's view of its processes (``show proc`` on the master CLI)."""

    master_pid: int = 0
    reloads: int = 0
    worker_pid: int = 0
    old_worker_pids: tuple[int, ...] = field(default_factory=tuple)


def parse_show_proc(text: str) -> Processes:
    master, reloads, workers, old = 0, 0, [], []
    section = "master"
    for line in text.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if parts[1] == "master":
            master, reloads = pid, int(parts[2]) if parts[2].isdigit() else 0
        elif section == "workers":
            workers.append(pid)
        elif section == "old workers":
            old.append(pid)
    # After a reload the newest worker is listed first.
    return Processes(master, reloads, workers[0] if workers else 0, tuple(old))


def reload_succeeded(answer: str) -> bool:
    """Whether a master-CLI ``reload`` answer reports a loaded new worker (HAProxy 2.7+: ``Success=1``)."""
    return answer.lstrip().startswith("Success=1")


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of ``show stat`` (CSV whose header line starts with ``# ``), in configuration order."""
    if not text.startswith("# "):
        raise CliError(f"unexpected 'show stat' answer: {text[:80]!r}")
    return list(csv.DictReader(io.StringIO(text[2:])))


def parse_version(output: str) -> str:
    """The version in ``haproxy -v`` output: ``HAProxy version 2.8.25-5cf5d0683 2026/06/26 - ...``."""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("HAProxy", "HA-Proxy") and words[1] == "version":
            return words[2]
    return "unknown"
