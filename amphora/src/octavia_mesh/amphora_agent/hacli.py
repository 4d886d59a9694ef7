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


#: ``show peers`` flags of HAProxy 2.8 (``PEERS_F_RESYNC_LOCAL | PEERS_F_RESYNC_REMOTE``): set once the
#: worker's own resynchronisation is over, from the previous worker or after its timeouts (5 s each).
#: Only then does a stopping worker teach its stick tables to the next one.
PEERS_RESYNC_FINISHED = 0x3


def parse_show_peers(text: str) -> dict[str, int]:
    """The flags of every peers section in a ``show peers`` answer, by section name."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(" ") or " id=" not in line or " flags=" not in line:
            continue  # the indented lines describe peers and tables of the section above
        words = dict(word.split("=", 1) for word in line.split() if "=" in word)
        try:
            out[words["id"]] = int(words["flags"], 16)
        except (KeyError, ValueError):
            continue
    return out


def parse_table_usage(text: str) -> dict[str, int]:
    """Entries in use per stick table, from a ``show table`` answer (``# table: <name>, ..., used:<n>``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("# table: "):
            continue
        parts = [part.strip() for part in line[len("# table: ") :].split(",")]
        used = next((part.split(":", 1)[1] for part in parts if part.startswith("used:")), "0")
        out[parts[0]] = int(used) if used.isdigit() else 0
    return out
