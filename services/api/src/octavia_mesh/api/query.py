"""Octavia's query strings: list filters, tags, sorting, ``limit``/``marker`` pagination, links and ``fields``.

The edge forwards a REST call's raw query string; :func:`parse_query` splits
it the way Octavia's pecan controllers see it, and :class:`ListQuery` turns it
into SQL and ``*_links``. :func:`list_query` and :func:`page_reply` are the
list handlers' common steps; :func:`show_fields` and :func:`refuse_query_args`
serve show and write calls.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Text, and_, cast, distinct, false, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, NotFound
from octavia_mesh.api.reads import records
from octavia_mesh.api.schema import FALSE_WORDS, TRUE_WORDS
from octavia_mesh.api.schema.checks import INT_MAX, INT_MIN
from octavia_mesh.common.db.models import Tag

#: Views of many rows, built with the session (bulk queries for their relations): an ``AsyncSession`` and ORM
#: instances, or a :class:`~octavia_mesh.api.reads.ReadConnection` and Core rows (``ProjectCollection.core_rows``).
Views = Callable[[Any, list[Any]], Awaitable[list[dict[str, Any]]]]
#: Like :data:`Views`, each view already encoded (``json.dumps(view).encode()``).
Documents = Callable[[Any, list[Any]], Awaitable[list[bytes]]]

PAGINATION_KEYS = {"limit", "marker", "page_reverse", "sort", "sort_key", "sort_dir", "fields"}
TAG_KEYS = {"tags", "tags-any", "not-tags", "not-tags-any"}
#: The longest query string read (the edge refuses longer ones first; any filter list that fits works).
MAX_QUERY_CHARS = 32768


def parse_query(raw: str) -> dict[str, list[str]]:
    """Split a query string into repeated values per key (``+`` is a space)."""
    if len(raw) > MAX_QUERY_CHARS:
        raise InvalidInput(f"Invalid query string: longer than {MAX_QUERY_CHARS} characters")
    try:
        # errors="strict": a %-escape that is not UTF-8 (%ff) is a 400, never a value with U+FFFD in it
        return urllib.parse.parse_qs(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput("Invalid query string: a value is not valid UTF-8 text") from None
    except ValueError:
        raise InvalidInput("Invalid query string") from None


def refuse_query_args(raw: str, allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """WSME refuses the query parameters a create, update or delete does not declare."""
    params = parse_query(raw)
    for key in params:
        if key not in allowed:
            raise InvalidInput(f'Unknown argument: "{key}"')
    return params


def show_fields(raw: str, *, comma_separated: bool = True) -> list[str] | None:
    """The ``fields`` of a show call; Octavia ignores every other parameter there.

    Octavia itself does not split ``fields=a,b`` on commas (``comma_separated=False``); most of our resources do.
    """
    return _fields_of(parse_query(raw), comma_separated)


def _fields_of(params: Mapping[str, list[str]], comma_separated: bool) -> list[str] | None:
    values = params.get("fields", [])
    if comma_separated:
        values = [v for raw in values for v in raw.split(",") if v]
    return list(values) or None


def _invalid_value(name: str, value: str, reason: str = "") -> InvalidInput:
    return InvalidInput(f"Invalid input for field/attribute {name}. Value: '{value}'.{reason}")


# Converters of query values into column values: ``convert(name, value)``. The strict ones answer a 400 for a
# value that cannot match; Octavia itself checks no filter value, and the lenient ones answer as it does, with an
# empty match. Resources differ (tests pin both), so each filter names its own.


def as_text(_name: str, value: str) -> str:
    return value


def strict_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise _invalid_value(name, value, " Value should be a boolean")


def strict_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _invalid_value(name, value) from None
    if not INT_MIN <= number <= INT_MAX:  # no column holds it; the database would fail on the parameter
        raise _invalid_value(name, value, f" Value should be between {INT_MIN} and {INT_MAX}")
    return number


def strict_time(name: str, value: str) -> dt.datetime:
    """An ISO 8601 time; anything else is a 400, not a database error."""
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise _invalid_value(name, value) from None


def lenient_bool(_name: str, value: str) -> bool:
    """oslo's ``bool_from_string``: anything but a true word is false (``backup=maybe`` lists non-backups)."""
    return value.strip().lower() in TRUE_WORDS


def lenient_int(_name: str, value: str) -> int:
    """An integer, or one no column holds (text or a number beyond the columns' range matches nothing)."""
    try:
        number = int(value)
    except ValueError:
        return INT_MIN
    return number if INT_MIN <= number <= INT_MAX else INT_MIN


def lenient_float(_name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return -1.0


def lenient_time(_name: str, value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return dt.datetime(1, 1, 1)


#: How a query value becomes a column value: ``convert(name, value)``.
Convert = Callable[[str, str], Any]


@dataclass(frozen=True, slots=True)
class Filter:
    """A filterable attribute: its column and how a query value becomes a column value.

    ``clause``, when set, builds the whole condition from the column and every value given instead.
    """

    column: InstrumentedAttribute[Any]
    convert: Convert = as_text
    clause: Callable[[InstrumentedAttribute[Any], list[str]], Any] | None = None


def _scalar_list(column: InstrumentedAttribute[Any], values: list[str]) -> Any:
    """Octavia's ``ScalarListType`` filter: its bind processor joins the parameter with commas, so repeated
    values match a row holding exactly that list, and one value is taken for the list of its characters
    (``tls_versions=TLSv1.2`` matches no listener, as in Octavia). Our column holds JSON as SQLAlchemy wrote it."""
    wanted = values if len(values) > 1 else list(values[0])
    return cast(column, Text) == json.dumps(wanted)


def scalar_list_filter(column: InstrumentedAttribute[Any]) -> Filter:
    return Filter(column, clause=_scalar_list)


def matches_nothing_filter(column: InstrumentedAttribute[Any]) -> Filter:
    """Octavia compares a pickled dict (``insert_headers``) with the query string: never equal, an empty list."""
    return Filter(column, clause=lambda _column, _values: false())


def bool_filter(column: InstrumentedAttribute[Any]) -> Filter:
    return Filter(column, strict_bool)


def int_filter(column: InstrumentedAttribute[Any]) -> Filter:
    return Filter(column, strict_int)


def words(text: str) -> tuple[str, ...]:
    """``"a b c"`` as ``("a", "b", "c")``: long lists of column names, written compactly."""
    return tuple(text.split())


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
    #: Split ``fields=a,b`` on commas (Octavia does not: members and health monitors follow it).
    comma_separated_fields: bool = True


def list_spec(
    collection: str,
    model: Any,
    columns: Mapping[Convert, Iterable[str]],
    *,
    aliases: Mapping[str, Filter] | None = None,
    unsortable: Iterable[str] = (),
    **options: Any,
) -> ListSpec:
    """The :class:`ListSpec` of a table keyed by ``id``, listed in creation order unless sorted.

    ``columns`` names the columns filters may name, grouped by how a query value converts; ``aliases`` are
    filters under other names (``tenant_id``). Every filter but ``unsortable`` is a sort key too.
    """
    filters = {name: Filter(getattr(model, name), convert) for convert, names in columns.items() for name in names}
    filters.update(aliases or {})
    skip = set(unsortable)
    return ListSpec(
        collection=collection,
        id_column=model.id,
        created_column=model.created_at,
        filters=filters,
        sort_keys={name: f.column for name, f in filters.items() if name not in skip},
        **options,
    )


@dataclass(slots=True)
class Page:
    rows: list[Any]
    links: list[dict[str, str]]
    fields: list[str] | None


class ListQuery:
    """One list request, parsed and checked against a :class:`ListSpec`."""

    def __init__(self, spec: ListSpec, params: Mapping[str, list[str]], max_limit: int) -> None:
        known = spec.filters.keys() | PAGINATION_KEYS | TAG_KEYS | spec.ignored
        if any(key not in known for key in params):
            # Octavia's PaginationHelper wording for a filter that is not an attribute of the resource.
            raise InvalidInput("One or more arguments are either duplicate or invalid")
        self.spec = spec
        self.params = params
        self.fields = _fields_of(params, spec.comma_separated_fields)
        self.limit = self._limit(max_limit)
        self.marker = self.last("marker")
        self.page_reverse = strict_bool("page_reverse", self.last("page_reverse") or "false")
        self.sort = self._sort()

    def last(self, key: str) -> str | None:
        """The last value of ``key`` (as a pecan controller's named parameter sees it), or ``None``."""
        values = self.params.get(key)
        return values[-1] if values else None

    def _limit(self, max_limit: int) -> int | None:
        raw = self.last("limit")
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
            if flt.clause is not None:
                statement = statement.where(flt.clause(flt.column, values))
                continue
            converted = [flt.convert(name, v) for v in values]
            statement = statement.where(flt.column.in_(converted) if len(converted) > 1 else flt.column == converted[0])
        if self.spec.taggable:
            statement = self._tags(statement)
        return statement

    def _tags(self, statement: Select[Any]) -> Select[Any]:
        id_col = self.spec.id_column

        def tag_list(key: str) -> list[str]:
            return [t for raw in self.params.get(key, []) for t in raw.split(",") if t]

        # One IN list per key, not one EXISTS per tag: a thousand tags made an expression tree deeper than
        # SQLite allows (a 500). IN lists are bound parameters, which every database takes by the thousand.
        def having_all(tags: list[str]) -> Any:
            wanted = set(tags)
            matching = (
                select(Tag.resource_id)
                .where(Tag.tag.in_(wanted))
                .group_by(Tag.resource_id)
                .having(func.count(distinct(Tag.tag)) == len(wanted))
            )
            return id_col.in_(matching)

        def having_any(tags: list[str]) -> Any:
            return id_col.in_(select(Tag.resource_id).where(Tag.tag.in_(set(tags))))

        if tags := tag_list("tags"):
            statement = statement.where(having_all(tags))
        if tags := tag_list("tags-any"):
            statement = statement.where(having_any(tags))
        if tags := tag_list("not-tags"):
            statement = statement.where(not_(having_all(tags)))
        if tags := tag_list("not-tags-any"):
            statement = statement.where(not_(having_any(tags)))
        return statement

    def order(self) -> list[tuple[InstrumentedAttribute[Any], bool]]:
        """Sort columns with ascending flags, always ending in the id so that pages are stable."""
        cols = [(self.spec.sort_keys[k], asc) for k, asc in self.sort]
        if not cols and self.spec.created_column is not None:
            cols.append((self.spec.created_column, True))
        if not any(c is self.spec.id_column for c, _ in cols):
            cols.append((self.spec.id_column, cols[-1][1] if cols else True))
        return cols

    async def page(self, session: Any, statement: Select[Any], base_url: str, *, rows: bool = False) -> Page:
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
        result = await session.execute(statement)
        found: list[Any] = records(result) if rows else list(result.scalars().all())  # Core rows, or instances
        more = self.limit is not None and len(found) > self.limit
        found = found[: self.limit] if self.limit is not None else found
        if not forward:
            found.reverse()
        return Page(found, self._links(base_url, found, more), self.fields)

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


def list_query(app: App, call: Call, spec: ListSpec) -> ListQuery:
    """The list call's query string, parsed and checked against ``spec``."""
    return ListQuery(spec, parse_query(call.query), app.settings.pagination_max_limit)


async def page_reply(
    session: Any,
    call: Call,
    listing: ListQuery,
    statement: Select[Any],
    views: Views,
    *,
    key: str | None = None,
    links_key: str | None = None,
    rows: bool = False,
    documents: Documents | None = None,
) -> Reply:
    """Run a list and answer Octavia's ``{"<collection>": [...], "<collection>_links": [...]}``.

    ``session``: an ``AsyncSession``, or with ``rows`` a :class:`~octavia_mesh.api.reads.ReadConnection` and a
    Core ``statement``. ``documents``: the items already encoded (each as ``json.dumps`` of its view), used
    when no ``fields`` are asked for; the answer is then the same bytes ``json.dumps`` gives for the whole.
    """
    page = await listing.page(session, statement, call.base_url, rows=rows)
    key = key or listing.spec.collection
    links_key = links_key or f"{key}_links"
    if documents is not None and not page.fields:
        items = b", ".join(await documents(session, page.rows))
        head, links = json.dumps(key).encode(), json.dumps({links_key: page.links}).encode()
        return Reply(200, raw=b"{" + head + b": [" + items + b"], " + links[1:])
    views_ = await views(session, page.rows)
    return Reply(200, {key: [select_fields(v, page.fields) for v in views_], links_key: page.links})


def views_of(view: Callable[[Any], dict[str, Any]]) -> Views:
    """:data:`Views` for a resource whose view needs nothing but its row."""

    async def views(_session: AsyncSession, rows: list[Any]) -> list[dict[str, Any]]:
        return [view(row) for row in rows]

    return views
