"""How the suite is spread over pytest-xdist workers (``make test`` runs ``pytest -n N --dist loadgroup``).

A whole mesh costs seconds of CPU to start and to stop, so a mesh fixture must start once per run, not once per
worker. Tests are grouped (``xdist_group`` marks, which ``--dist loadgroup`` keeps on one worker):

* a module is never split: its module-scoped fixtures (most meshes) start once;
* modules that use one of the same session- or package-scoped meshes (:data:`SHARED_MESHES`) form one group,
  on one worker, where that mesh starts once;
* the fast tier's light meshes (:data:`PER_WORKER`: three processes, a second or two) start once per worker
  instead, so the modules that use them spread over every worker; a fixture of a shared mesh's name that
  stands for one of them (``tests/api/conftest.py``) does not group either.

The workers compute the groups (only they see the fixtures) and write them to a file the controller's scheduler
(:class:`GroupScheduling`, xdist's ``loadscope`` by group) reads once collection is complete.

Groups are handed out longest first, so that a long group does not start last and keep one worker busy while
the others idle: the controller records how long each group took (in pytest's cache) and the next run sorts by
that. A group the cache has no record of (a fresh clone, as in CI) is weighed by what its modules took in a
measured run (:data:`MODULE_DURATIONS`, refreshed by hand: only the order matters); a group with a module not in
there either goes first, by its number of tests (xdist's own order): nothing says it is short.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

#: Fixtures that start a mesh for the whole session (or a package).
SHARED_MESHES = frozenset(
    {"mesh", "secure_mesh", "envoy_mesh", "envoy_secure_mesh", "acme_mesh", "dataplane_mesh", "noop_mesh"}
    | {"amphora_mesh", "ks_mesh", "barbican_cloud"}
)
#: Session meshes cheap enough to start on every worker that needs one (the fast tier, ``fastedge.py``).
PER_WORKER = frozenset({"fast_mesh", "fast_secure_mesh"})
#: Seconds each test module took in a measured run (its tests' setup, call and teardown), for a fresh clone.
MODULE_DURATIONS = Path(__file__).with_name("module_durations.json")
#: Where the controller keeps each group's duration from the last run.
CACHE_KEY = "octavia-mesh/group-durations"
#: The ``workerinput`` key that names the file where workers write each test's group for the controller.
WORKER_KEY = "octavia_mesh_groups"


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _shared_meshes(item: pytest.Item) -> set[str]:
    """The session/package meshes ``item`` uses (a module's own fixture of the same name does not count)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    used = set()
    for name in SHARED_MESHES.intersection(info.names_closure):
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope in ("session", "package") and not PER_WORKER.intersection(defs[-1].argnames):
            used.add(name)
    return used


def group_items(items: list[pytest.Item]) -> dict[str, str]:
    """Each module's group name: modules sharing a session/package mesh are one group (a union-find)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item in items:
        module = find(_module(item))
        for name in _shared_meshes(item):
            other = find(f"fixture:{name}")
            if other != module:
                parent[max(other, module)] = min(other, module)  # "fixture:..." sorts first: it names the group
                module = find(module)

    members: dict[str, set[str]] = defaultdict(set)
    for key in list(parent):
        members[find(key)].add(key)
    names = {}
    for root, keys in members.items():
        meshes = sorted(k.removeprefix("fixture:") for k in keys if k.startswith("fixture:"))
        name = "+".join(meshes) if meshes else root
        for key in keys:
            if not key.startswith("fixture:"):
                names[key] = name.replace("@", "_").replace("]", "_")
    return names


def mark_and_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: sort the groups longest first (keeping the order within a group), and write every test's
    group where the controller's scheduler reads it (:data:`WORKER_KEY`)."""
    groups = group_items(items)
    count: dict[str, int] = defaultdict(int)
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        group = groups[_module(item)]
        item.add_marker(pytest.mark.xdist_group(group))
        count[group] += 1
        first.setdefault(group, index)
    cache = getattr(config, "cache", None)
    known = dict(cache.get(CACHE_KEY, {})) if cache is not None else {}
    measured = json.loads(MODULE_DURATIONS.read_text()) if MODULE_DURATIONS.exists() else {}
    modules: dict[str, set[str]] = defaultdict(set)
    for module, group in groups.items():
        modules[group].add(module)
    for group, members in modules.items():
        if group not in known and members <= measured.keys():
            known[group] = sum(measured[m] for m in members)

    def weight(group: str) -> tuple[int, float, int]:
        # Unknown groups first (new tests): nothing says they are short.
        return (0, -count[group], first[group]) if group not in known else (1, -float(known[group]), first[group])

    order = {group: rank for rank, group in enumerate(sorted(count, key=weight))}
    items.sort(key=lambda item: order[groups[_module(item)]])
    where = config.workerinput.get(WORKER_KEY)  # type: ignore[attr-defined]
    if where is None:
        return
    path = Path(where)
    scratch = path.with_name(f"{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps({item.nodeid: groups[_module(item)] for item in items}))
    scratch.replace(path)  # every worker writes the same mapping; a reader never sees half of one


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0]) if mark is not None and mark.args else None


def release_finished_group(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """In a worker, after a group's last test: stop the shared meshes the group used, now rather than when the
    worker's last test ends. A group's tests run one after another on one worker and no other group uses its
    meshes, so nothing needs them again; idle, each kept ~5% of a core busy (sweeps, heartbeats, amphorae)
    for the rest of the run. Were one asked for again it would start again (pytest re-runs a finished fixture).
    """
    group = _group(item)
    if group is None or nextitem is None or _group(nextitem) == group:
        return  # mid-group, not grouped, or the session's end (pytest's own teardown follows)
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for name in sorted(_shared_meshes(item) - _shared_meshes(nextitem)):
        info.name2fixturedefs[name][-1].finish(item._request)  # type: ignore[attr-defined]


class GroupScheduling(LoadScopeScheduling):
    """xdist's ``loadscope`` over our groups, in the workers' order (longest first).

    xdist's own ``loadgroup`` reads the group from a suffix of the node id that it cannot add with pytest >= 9.2
    (which no longer takes the id from ``item._nodeid``); if a later xdist adds it, that suffix is used."""

    def __init__(self, config: pytest.Config, log: Any, groups: Callable[[], dict[str, str]]) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False
        self.groups = groups

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.rfind("@") > nodeid.rfind("]"):
            return nodeid.rsplit("@", 1)[1]
        return self.groups().get(nodeid) or nodeid.split("::", 1)[0]


class Controller:
    """The xdist controller's side: hands workers the path for the groups, schedules by them, and records how
    long each group took (in pytest's cache) for the next run's order."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.dir = Path(tempfile.mkdtemp(prefix="octavia-mesh-groups-"))
        self.path = self.dir / "groups.json"
        self._groups: dict[str, str] | None = None
        self.totals: dict[str, float] = defaultdict(float)

    def groups(self) -> dict[str, str]:
        if self._groups is None:
            self._groups = json.loads(self.path.read_text()) if self.path.exists() else {}
        return self._groups

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_KEY] = str(self.path)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
        return GroupScheduling(config, log, self.groups) if config.getvalue("dist") == "loadgroup" else None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        group = self.groups().get(report.nodeid)
        if group is not None:
            self.totals[group] += report.duration

    def pytest_sessionfinish(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.totals:
            known = cache.get(CACHE_KEY, {})
            cache.set(CACHE_KEY, {**known, **{g: round(t, 1) for g, t in self.totals.items()}})
        shutil.rmtree(self.dir, ignore_errors=True)
