"""What each in-tree provider's workers can build, in one registry the API asks.

Whether a provider can build an ACTIVE_STANDBY load balancer depends on the machines its workers run on (the
amphora provider needs network namespaces, keepalived and root there), which only the workers can see. Each
worker announces, per provider it applies, the topologies it can build, in the NATS key-value bucket
:data:`BUCKET` under ``<provider>.<worker id>``; it refreshes the entry while it runs and deletes it when it
stops, and an entry not refreshed for :data:`TTL_S` (a worker killed) expires. The API asks
:func:`of_provider` before it accepts a load balancer: the topologies *every* live worker of the provider can
build (a command may reach any of them). A provider no worker announced (an out-of-tree provider, whose
agent takes its commands itself) is not limited here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

logger = logging.getLogger(__name__)

#: Octavia's load-balancer topologies (``loadbalancer_topology`` of a flavor profile).
SINGLE, ACTIVE_STANDBY = "SINGLE", "ACTIVE_STANDBY"

BUCKET = "OCTAVIA_PROVIDER_CAPABILITIES"
#: An entry not refreshed for this long is gone (its worker died without deleting it).
TTL_S = 30.0
#: How often a worker refreshes its entries.
REFRESH_S = 10.0


async def bucket(js: JetStreamContext) -> KeyValue:
    """The registry's bucket, created on first use."""
    try:
        return await js.key_value(BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(bucket=BUCKET, ttl=TTL_S, storage=StorageType.FILE))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider's worker can build: its topologies, and for those it cannot, why (for the API's 501)."""

    topologies: frozenset[str]
    why_not: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"topologies": sorted(self.topologies), "why_not": self.why_not}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Capabilities:
        data = json.loads(raw or b"{}")
        return cls(frozenset(data.get("topologies", [])), dict(data.get("why_not", {})))


class Announcer:
    """A worker's entries: put at start, refreshed every :data:`REFRESH_S`, deleted at stop."""

    def __init__(self, js: JetStreamContext, worker_id: str, providers: dict[str, Capabilities]) -> None:
        self._js = js
        self._entries = {f"{provider}.{worker_id}": caps.encode() for provider, caps in providers.items()}
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Announce now (the API may ask as soon as the worker reports healthy), then keep refreshing."""
        self._kv = await bucket(self._js)
        await self._put()
        self._task = asyncio.create_task(self._refresh(), name="capabilities")

    async def _put(self) -> None:
        assert self._kv is not None
        for key, value in self._entries.items():
            await self._kv.put(key, value)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self._put()
            except Exception:  # NATS away for a moment: the next refresh (well within the TTL) puts them back
                logger.warning("could not refresh the provider capabilities", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._kv is not None:
            for key in self._entries:
                try:
                    await self._kv.delete(key)
                except Exception:  # it expires anyway
                    logger.info("could not withdraw capability entry %s", key)


async def of_provider(js: JetStreamContext, provider: str) -> Capabilities | None:
    """What every live worker of ``provider`` can build; None when none announced itself."""
    kv = await bucket(js)
    try:
        keys = [key for key in await kv.keys() if key.startswith(f"{provider}.")]  # a handful of workers
    except NoKeysError:
        return None
    found: Capabilities | None = None
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:  # deleted or expired since the listing
            continue
        own = Capabilities.decode(entry.value)
        found = own if found is None else Capabilities(found.topologies & own.topologies, found.why_not | own.why_not)
    return found
