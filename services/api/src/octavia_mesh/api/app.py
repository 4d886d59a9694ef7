"""What a handler works with: the service's settings, database sessions and the command outbox."""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.api.errors import Unavailable
from octavia_mesh.api.identity import Authenticator
from octavia_mesh.api.policy import Caller
from octavia_mesh.api.reads import Reader
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.common.capabilities import Capabilities, Facts
from octavia_mesh.common.commands import OutboxRelay

#: The monotonic time by which the current call's change must have committed (None: no bound). Past it the
#: change is rolled back and the caller told so, rather than committed after the edge answered 504: a client
#: that gets an error must find nothing of its call left behind.
COMMIT_BY: contextvars.ContextVar[float | None] = contextvars.ContextVar("commit_by", default=None)


def check_commit_by() -> None:
    """Raise :class:`Unavailable` when the current call is past its commit deadline."""
    deadline = COMMIT_BY.get()
    if deadline is not None and time.monotonic() > deadline:
        raise Unavailable("The request could not be completed in time and was not carried out. Please retry.")


@dataclass(slots=True)
class App:
    """Shared state of the API service, built once in ``server.create_server``."""

    settings: ApiSettings
    read: async_sessionmaker[AsyncSession]
    write: async_sessionmaker[AsyncSession]
    auth: Authenticator
    relay: OutboxRelay | None = None
    #: Core reads without the ORM for the hot GET paths (``ProjectCollection.core_rows``); None: ORM sessions.
    reader: Reader | None = None
    #: What a provider's workers can build (the registry on NATS); None without NATS.
    provider_capabilities: Callable[[str], Awaitable[Capabilities | None]] | None = None
    #: What a provider is (its facts in the registry, None for one that published none); None without NATS,
    #: when every provider is answered as one that published nothing (``capabilities.static_facts`` gives a
    #: registry-less API its providers' facts).
    provider_facts: Callable[[str], Awaitable[Facts | None]] | None = None
    #: TLS references are Barbican's (``cert_manager`` barbican): checked and granted for the user (tls_refs.py).
    barbican: BarbicanCertManager | None = None

    def commands_committed(self) -> None:
        """Tell the relay that new outbox rows are committed."""
        if self.relay is not None:
            self.relay.wake()

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[AsyncSession]:
        """A write transaction whose provider commands the relay sends as soon as it has committed."""
        async with self.write() as session, session.begin():
            yield session
            check_commit_by()  # the last moment a refusal still rolls everything back
        self.commands_committed()


@dataclass(frozen=True, slots=True)
class Call:
    """One API call as the handlers see it."""

    caller: Caller
    query: str = ""
    body: bytes = b""
    id: str = ""
    parent_id: str = ""
    base_url: str = ""  # scheme://host[/v2 or /v2.0]/..., the collection URL links are built on
    root_url: str = ""  # scheme://host
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: the REST status and the JSON document (``None`` for 204), or that document already
    encoded (``raw``: a list put together from its items' cached encodings)."""

    status: int
    body: Any = None
    raw: bytes | None = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()
