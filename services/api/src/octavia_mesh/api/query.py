"""Octavia's list semantics: filters, tags, sorting, ``limit``/``marker`` pagination, links and ``fields``.

The edge forwards a REST call's raw query string; :func:`parse_query` splits
it the way Octavia's pecan controllers see it, and :class:`ListQuery` turns it
into SQL and ``*_links``.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, exists, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from octavia_mesh.api.errors import InvalidInput, NotFound
from octavia_mesh.common.db.models import Tag

PAGINATION_KEYS = {"limit", "marker", "page_reverse", "sort", "sort_key", "sort_dir", "fields"}
TAG_KEYS = {"tags", "tags-any", "not-tags", "not-tags-any"}


def parse_query(raw: str) -> dict[str, list[str]]:
    """Split a query string into repeated values per key (``+`` is a space)."""
    try:
        return urllib.parse.parse_qs(raw, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise InvalidInput("Invalid query string") from None


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "t", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "f", "no", "n", "off"):
        return False
    raise InvalidInput(f"Invalid input for field/attribute {name}. Value: '{value}'. Value should be a boolean")


@dataclass(frozen=True, slots=True)
class Filter:
    """A filterable attribute: its column and how a query value becomes a column value."""

    column: InstrumentedAttribute[Any]
    convert: Callable[[str, str], Any] = lambda _n, v: v


def time_filter(column: InstrumentedAttribute[Any]) -> Filter:
    """A timestamp filter; a value that is no ISO 8601 time is a 400, not a database error."""

    def convert(name: str, value: str) -> dt.datetime:
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"Invalid input for field/attribute {name}. Value: '{value}'.") from None

    return Filter(column, convert)


def bool_filter(column: InstrumentedAttribute[Any]) -> Filter:
    return Filter(column, _bool)


def int_filter(column: InstrumentedAttribute[Any]) -> Filter:
    def convert(name: str, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise InvalidInput(f"Invalid input for field/attribute {name}. Value: '{value}'.") from None

    return Filter(column, convert)


@dataclass(frozen=True, slots=True)
class ListSpec:
    """How one collection is listed."""

    collection: str  # "loadbalancers": the response key and the link path's last segment
    id_column: InstrumentedAttribute[Any]
    created_column: InstrumentedAttribute[Any] | None
    filters: Mapping[str, Filter]
    sort_keys: Mapping[str, InstrumentedAttribute[Any]]
    taggable: bool = True
    ignored: frozenset[str] = field(default_factory=frozenset)  # accepted and ignored, as Octavia does


@dataclass(slots=True)
class Page:
    rows: list[Any]
    links: list[dict[str, str]]
    fields: list[str] | None


class ListQuery:
    """One list request, parsed and checked against a :class:`ListSpec`."""

    def __init__(self, spec: ListSpec, params: Mapping[str, list[str]], max_limit: int) -> None:
        self.spec = spec
        self.params = params
        self.fields = self._fields()
        self.limit = self._limit(max_limit)
        self.marker = self._last("marker")
        self.page_reverse = _bool("page_reverse", self._last("page_reverse") or "false")
        self.sort = self._sort()
        unknown = [
            k
            for k in params
            if k not in spec.filters and k not in PAGINATION_KEYS and k not in TAG_KEYS and k not in spec.ignored
        ]
        if unknown:
            raise InvalidInput(
                f"Invalid filter argument(s): {', '.join(sorted(unknown))}"
                if len(unknown) > 1
                else f"Invalid filter argument: {unknown[0]}"
            )

    def _last(self, key: str) -> str | None:
        values = self.params.get(key)
        return values[-1] if values else None

    def _fields(self) -> list[str] | None:
        values = [v for raw in self.params.get("fields", []) for v in raw.split(",") if v]
        return values or None

    def _limit(self, max_limit: int) -> int | None:
        raw = self._last("limit")
        if raw is None:
            return max_limit if max_limit > 0 else None
        try:
            limit = int(raw)
        except ValueError:
            raise InvalidInput(
                f"Invalid input for field/attribute limit. Value: '{raw}'. Value should be an integer"
            ) from None
        if limit < 1:
            return max_limit if max_limit > 0 else None
        return min(limit, max_limit) if max_limit > 0 else limit

    def _sort(self) -> list[tuple[str, bool]]:
        keys: list[tuple[str, str]] = []
        for raw in self.params.get("sort", []):
            for part in raw.split(","):
                if not part:
                    continue
                key, _, direction = part.partition(":")
                keys.append((key.strip(), (direction or "asc").strip()))
        sort_keys = [k for raw in self.params.get("sort_key", []) for k in raw.split(",")]
        sort_dirs = [d for raw in self.params.get("sort_dir", []) for d in raw.split(",")]
        for i, key in enumerate(sort_keys):
            keys.append((key, sort_dirs[i] if i < len(sort_dirs) else (sort_dirs[-1] if sort_dirs else "asc")))
        out: list[tuple[str, bool]] = []
        for key, direction in keys:
            if key not in self.spec.sort_keys:
                raise InvalidInput(f"Supplied sort key '{key}' is not valid.")
            if direction not in ("asc", "desc"):
                raise InvalidInput(f"Supplied sort dir '{direction}' is not valid.")
            out.append((key, direction == "asc"))
        return out

    def where(self, statement: Select[Any]) -> Select[Any]:
        """Apply the attribute and tag filters."""
        for name, values in self.params.items():
            flt = self.spec.filters.get(name)
            if flt is None:
                continue
            converted = [flt.convert(name, v) for v in values]
            statement = statement.where(flt.column.in_(converted) if len(converted) > 1 else flt.column == converted[0])
        if self.spec.taggable:
            statement = self._tags(statement)
        return statement

    def _tags(self, statement: Select[Any]) -> Select[Any]:
        id_col = self.spec.id_column

        def has(tag: str) -> Any:
            return exists().where(and_(Tag.resource_id == id_col, Tag.tag == tag))

        def tag_list(key: str) -> list[str]:
            return [t for raw in self.params.get(key, []) for t in raw.split(",") if t]

        if tags := tag_list("tags"):
            statement = statement.where(and_(*[has(t) for t in tags]))
        if tags := tag_list("tags-any"):
            statement = statement.where(or_(*[has(t) for t in tags]))
        if tags := tag_list("not-tags"):
            statement = statement.where(not_(and_(*[has(t) for t in tags])))
        if tags := tag_list("not-tags-any"):
            statement = statement.where(not_(or_(*[has(t) for t in tags])))
        return statement

    def order(self) -> list[tuple[InstrumentedAttribute[Any], bool]]:
        """Sort columns with ascending flags, always ending in the id so that pages are stable."""
        cols = [(self.spec.sort_keys[k], asc) for k, asc in self.sort]
        if not cols and self.spec.created_column is not None:
            cols.append((self.spec.created_column, True))
        if not any(c is self.spec.id_column for c, _ in cols):
            cols.append((self.spec.id_column, cols[-1][1] if cols else True))
        return cols

    async def page(self, session: Any, statement: Select[Any], base_url: str) -> Page:
        """Run the query and build Octavia's ``*_links``."""
        statement = self.where(statement)
        order = self.order()
        forward = not self.page_reverse
        if self.marker:
            marker_row = (
                await session.execute(select(*[c for c, _ in order]).where(self.spec.id_column == self.marker))
            ).first()
            if marker_row is None:
                raise NotFound("Marker", self.marker)
            statement = statement.where(_after(order, list(marker_row), forward))
        statement = statement.order_by(*[(c.asc() if asc == forward else c.desc()) for c, asc in order])
        if self.limit is not None:
            statement = statement.limit(self.limit + 1)
        rows = list((await session.execute(statement)).scalars().all())
        more = self.limit is not None and len(rows) > self.limit
        rows = rows[: self.limit] if self.limit is not None else rows
        if not forward:
            rows.reverse()
        return Page(rows, self._links(base_url, rows, more), self.fields)

    def _links(self, base_url: str, rows: Sequence[Any], more: bool) -> list[dict[str, str]]:
        if not rows:
            return []
        keep = [(k, v) for k, vs in self.params.items() if k not in ("marker", "page_reverse", "limit") for v in vs]
        url = f"{base_url}/{self.spec.collection}" if not base_url.endswith(self.spec.collection) else base_url
        links = []
        limit_param = [("limit", str(self.limit))] if self.limit is not None and "limit" in self.params else []
        key = self.spec.id_column.key
        first_id, last_id = getattr(rows[0], key), getattr(rows[-1], key)
        forward = not self.page_reverse
        has_next = more if forward else bool(self.marker)
        has_prev = bool(self.marker) if forward else more
        if has_next:
            query = urllib.parse.urlencode([*limit_param, *keep, ("marker", last_id)])
            links.append({"href": f"{url}?{query}", "rel": "next"})
        if has_prev:
            query = urllib.parse.urlencode([*limit_param, *keep, ("marker", first_id), ("page_reverse", "True")])
            links.append({"href": f"{url}?{query}", "rel": "previous"})
        return links


def _after(order: list[tuple[InstrumentedAttribute[Any], bool]], marker: list[Any], forward: bool) -> Any:
    """Keyset condition: rows strictly after ``marker`` in ``order`` (before it when paging back)."""
    clauses = []
    for i, (col, asc) in enumerate(order):
        prefix = [order[j][0] == marker[j] for j in range(i)]
        value = marker[i]
        later = (col > value) if asc == forward else (col < value)
        if value is None:
            later = col.is_not(None) if asc == forward else func.false()
        clauses.append(and_(*prefix, later))
    return or_(*clauses)


def select_fields(view: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Keep only the requested ``fields`` of a resource view (unknown names are ignored, as Octavia does)."""
    if not fields:
        return view
    return {k: v for k, v in view.items() if k in fields}
