"""Which server health states a reload carries over to the new HAProxy worker.

HAProxy starts every checked server UP, so without help a reload would send traffic to a member its
checks had found dead until the next check fails. Before a reload the agent saves the old worker's
``show servers state`` to the ``server-state-file`` that ``load-server-state-from-file global`` reads.

Loaded as it is, that file also carries the old *configuration*: HAProxy restores the server's address,
port, SSL use and check address/port from it, and its admin state and weight whenever its own
change-detection rules consider the configuration unchanged. So the agent filters it down to operational
health only:

* a server keeps its state only if the new configuration still checks it, exactly as the old one did
  (same backend check directives, same server line apart from weight, backup and cookie), and it was
  not in maintenance (a member re-enabled, or a new health monitor, starts afresh as HAProxy would);
* the kept lines carry no address (``-``), admin state 0 and the old configured weight as the running one,
  which HAProxy's rules (``srv_state_srv_update``) then resolve to the new configuration's settings; the
  optional trailing fields (SSL use, check and agent addresses) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

#: ``show servers state`` format version 1, the one HAProxy 2.8 writes and reads.
VERSION = "1"
#: HAProxy reads the first 20 fields of a version-1 line as mandatory, the rest as optional.
MANDATORY_FIELDS = 20
#: srv_admin_state bits meaning "in maintenance" (forced, inherited, configured, resolution).
_MAINT_FLAGS = 0x01 | 0x02 | 0x04 | 0x08
#: Backend directives that shape what a health check sends and expects.
_CHECK_DIRECTIVES = (
    "option httpchk",
    "http-check",
    "timeout check",
    "tcp-check",
    "option tcp-check",
    "option ssl-hello-chk",
    "option external-check",
    "external-check",
    "default-server",
)
#: Server keywords taking one argument that do not change what a check tests.
_NEUTRAL_WITH_VALUE = ("weight", "cookie")
_NEUTRAL_FLAGS = ("backup",)


@dataclass(slots=True)
class _Backend:
    disabled: bool = False
    checks: list[str] = field(default_factory=list)
    servers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> words after the name


def _sections(config: str) -> Iterator[tuple[str, list[str]]]:
    """``(header, body lines)`` of every section, comments and blank lines left out."""
    header, body = "", []
    for raw in config.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            if header:
                yield header, body
            header, body = line.strip(), []
        else:
            body.append(" ".join(line.split()))
    if header:
        yield header, body


def backends(config: str) -> dict[str, _Backend]:
    """The backends of an HAProxy configuration, as far as health checks are concerned."""
    out: dict[str, _Backend] = {}
    for header, body in _sections(config):
        words = header.split()
        if words[0] not in ("backend", "listen") or len(words) < 2:
            continue
        backend = out.setdefault(words[1], _Backend())
        for line in body:
            if line == "disabled":
                backend.disabled = True
            elif line.startswith("server "):
                parts = tuple(line.split())
                if len(parts) >= 3:
                    backend.servers[parts[1]] = parts[2:]
            elif line.startswith(_CHECK_DIRECTIVES):
                backend.checks.append(line)
    return out


def _check_identity(words: tuple[str, ...]) -> tuple[str, ...]:
    """A server line without the keywords that do not change what its check tests."""
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _NEUTRAL_WITH_VALUE:
            skip = True
        elif word not in _NEUTRAL_FLAGS:
            out.append(word)
    return tuple(out)


def _same_check(old: _Backend, new: _Backend, server: str) -> bool:
    if server not in old.servers or server not in new.servers:
        return False
    words = new.servers[server]
    if "check" not in words or old.disabled or new.disabled or old.checks != new.checks:
        return False
    return _check_identity(old.servers[server]) == _check_identity(words)


def carry_over(state: str, old_config: str, new_config: str) -> str:
    """The server-state file the new worker should load; empty when nothing is worth carrying over.

    ``state`` is the old worker's ``show servers state`` answer, ``old_config`` what it runs and
    ``new_config`` what the reload loads.
    """
    lines = state.splitlines()
    if len(lines) < 2 or lines[0].strip() != VERSION or not lines[1].startswith("# "):
        return ""
    names = lines[1][2:].split()
    try:
        at = {name: names.index(name) for name in ("be_name", "srv_name", "srv_addr", "srv_admin_state")}
        at |= {name: names.index(name) for name in ("srv_uweight", "srv_iweight", "srv_fqdn", "srvrecord")}
    except ValueError:
        return ""  # a format this agent does not know: carry nothing over rather than guess
    old, new = backends(old_config), backends(new_config)
    kept: list[str] = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < MANDATORY_FIELDS or len(fields) != len(names):
            continue
        backend, server = fields[at["be_name"]], fields[at["srv_name"]]
        if backend not in old or backend not in new or not _same_check(old[backend], new[backend], server):
            continue
        if not fields[at["srv_admin_state"]].isdigit() or int(fields[at["srv_admin_state"]]) & _MAINT_FLAGS:
            continue
        fields[at["srv_addr"]] = "-"
        fields[at["srv_admin_state"]] = "0"
        fields[at["srv_uweight"]] = fields[at["srv_iweight"]]
        fields[at["srv_fqdn"]] = "-"
        fields[at["srvrecord"]] = "-"
        kept.append(" ".join(fields[:MANDATORY_FIELDS]))
    if not kept:
        return ""
    header = " ".join(names[:MANDATORY_FIELDS])
    return "\n".join([VERSION, f"# {header}", *kept]) + "\n"
