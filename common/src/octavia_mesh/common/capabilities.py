"""What each provider is and what its workers can build, in one registry the API asks.

The API knows no provider by name: what it must know of one before it accepts a change comes from here, in two
NATS key-value buckets that the provider's workers write.

* **Facts** (:class:`Facts`, bucket :data:`FACTS_BUCKET`, key ``<provider>``): what the provider's code is,
  whoever runs it: the listener protocols it cannot serve, whether its VIPs come from the deployment's network
  driver, whether TLS references must resolve, and the keys its flavors and availability zones accept. Every
  worker writes them when it starts (and with each refresh); they are kept after the workers stop, so that
  the API answers the same while a worker restarts, as Octavia's API answers from its in-process driver
  whether or not the controller worker runs (changes wait in the queue).
* **Capabilities** (:class:`Capabilities`, bucket :data:`BUCKET`, key ``<provider>.<worker id>``): what the
  machines the workers run on can build. Whether a provider can build an ACTIVE_STANDBY load balancer depends
  on them (the amphora provider needs network namespaces, keepalived and root there), which only the workers
  can see. Each worker refreshes its entry while it runs and deletes it when it stops, and an entry not
  refreshed for :data:`TTL_S` (a worker killed) expires. The API asks :func:`of_provider` before it accepts an
  ACTIVE_STANDBY load balancer: the topologies *every* live worker of the provider can build (a command may
  reach any of them).

**A provider that published nothing** (an out-of-tree provider, whose agent takes its commands itself; an
in-tree one before its first worker ever started) is answered as :data:`UNKNOWN` says: the API does not limit
it (every protocol and topology is accepted, and the provider refuses what it cannot build when it applies the
change, leaving it in ERROR as a failed change), gives it no VIP from the deployment's network (the address
asked for, as Octavia's no-op network driver, since such a provider brings its own network), checks its TLS
references, and takes Octavia's flavor and availability-zone keys (those of Octavia's reference driver), so
that flavors written for Octavia work unchanged. That is what the API answered for such providers before the
registry held facts. (Octavia itself answers ``501 Provider '<name>' was not found.`` when a provider's driver
cannot be loaded into its API; ours has no driver to load: the provider lives in its workers.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

logger = logging.getLogger(__name__)

#: Octavia's load-balancer topologies (``loadbalancer_topology`` of a flavor profile).
SINGLE, ACTIVE_STANDBY = "SINGLE", "ACTIVE_STANDBY"

BUCKET = "OCTAVIA_PROVIDER_CAPABILITIES"
#: Providers' facts, by provider name; no TTL: facts outlive the workers that wrote them.
FACTS_BUCKET = "OCTAVIA_PROVIDER_FACTS"
#: How long the API reuses facts it read (they change only when a worker of another version starts).
FACTS_CACHE_S = 5.0
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


async def facts_bucket(js: JetStreamContext) -> KeyValue:
    """The facts' bucket, created on first use."""
    try:
        return await js.key_value(FACTS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(bucket=FACTS_BUCKET, storage=StorageType.FILE))


# --- facts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One key a flavor profile's ``flavor_data`` (or a zone profile's ``availability_zone_data``) may carry."""

    name: str
    description: str
    type: str  # "string", "boolean" or "array": its JSON-schema type, as in Octavia's driver schemas
    enum: tuple[str, ...] = ()

    def encode(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "type": self.type, "enum": list(self.enum)}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Option:
        return cls(str(data["name"]), str(data["description"]), str(data["type"]), tuple(data.get("enum", ())))


#: Octavia's flavor keys: its reference (amphora) driver's ``flavor_schema.py``, in its order.
OCTAVIA_FLAVOR_OPTIONS = (
    Option(
        "loadbalancer_topology",
        "The load balancer topology. One of: SINGLE - One amphora per load balancer. "
        "ACTIVE_STANDBY - Two amphora per load balancer.",
        "string",
        (ACTIVE_STANDBY, SINGLE),  # jsonschema prints the enum in this (sorted) order
    ),
    Option("compute_flavor", "The compute driver flavor ID.", "string"),
    Option("amp_image_tag", "The amphora image tag.", "string"),
    Option("sriov_vip", "When true, the VIP port will be created using an SR-IOV VF port.", "boolean"),
    Option(
        "allow_member_sriov",
        "When true, users can request a member port be SR-IOV enabled at member creation time.",
        "boolean",
    ),
)

#: Octavia's availability-zone keys: its reference driver's ``availability_zone_schema.py``.
OCTAVIA_ZONE_OPTIONS = (
    Option("compute_zone", "The compute availability zone.", "string"),
    Option("volume_zone", "The volume availability zone.", "string"),
    Option("management_network", "The management network ID for the amphora.", "string"),
    Option(
        "valid_vip_networks",
        "List of network IDs that are allowed for VIP use. This overrides/replaces the list of allowed "
        "networks configured in `octavia.conf`.",
        "array",
    ),
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the API must know of a provider before it accepts a change for it (the defaults: :data:`UNKNOWN`)."""

    #: Listener protocols the provider cannot serve, each with why (the API's 501 quotes it).
    unsupported_protocols: Mapping[str, str] = field(default_factory=dict)
    #: Its VIPs come from the deployment's network driver (the API's ``network_driver``); else it has no
    #: network of ours: a VIP is the address asked for (Octavia's no-op network driver).
    vip_from_network: bool = False
    #: TLS references must resolve in the secret store (False: like Octavia's no-op certificate manager, any
    #: reference is taken).
    checks_certificates: bool = True
    #: The keys its flavor profiles and availability-zone profiles accept.
    flavor_options: tuple[Option, ...] = OCTAVIA_FLAVOR_OPTIONS
    zone_options: tuple[Option, ...] = OCTAVIA_ZONE_OPTIONS

    def encode(self) -> bytes:
        return json.dumps(
            {
                "unsupported_protocols": dict(self.unsupported_protocols),
                "vip_from_network": self.vip_from_network,
                "checks_certificates": self.checks_certificates,
                "flavor_options": [o.encode() for o in self.flavor_options],
                "zone_options": [o.encode() for o in self.zone_options],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Facts:
        """Facts from their JSON; a key a worker of another version did not write keeps its default."""
        data = json.loads(raw)
        default = UNKNOWN
        return cls(
            unsupported_protocols=dict(data.get("unsupported_protocols", default.unsupported_protocols)),
            vip_from_network=bool(data.get("vip_from_network", default.vip_from_network)),
            checks_certificates=bool(data.get("checks_certificates", default.checks_certificates)),
            flavor_options=tuple(Option.decode(o) for o in data["flavor_options"])
            if "flavor_options" in data
            else default.flavor_options,
            zone_options=tuple(Option.decode(o) for o in data["zone_options"])
            if "zone_options" in data
            else default.zone_options,
        )


#: The answer for a provider that published no facts (see the module's docstring).
UNKNOWN = Facts()


class FactsReader:
    """The API's reader of the facts: one key-value read per provider at most every :data:`FACTS_CACHE_S`.

    A provider with no entry is asked again at the next call (its first worker may be starting). When NATS
    cannot be read, the last answer read is used however old (facts, or that there were none): :meth:`start`
    keeps every provider's answer current through a watch of the bucket; for a provider never read since the
    start, the error is raised.
    """

    def __init__(self, js: JetStreamContext, cache_s: float = FACTS_CACHE_S) -> None:
        self._js = js
        self._cache_s = cache_s
        self._kv: KeyValue | None = None
        self._last: dict[str, tuple[float, Facts | None]] = {}
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Follow the bucket (a watch): every provider's facts are known as soon as a worker writes them, so that
        a call made while NATS is down still finds them (creates wait in the outbox then, as they always did;
        reading a provider only at its first call left a provider not asked before NATS went away unanswerable)."""
        self._watch = asyncio.create_task(self._follow(), name="provider-facts-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _follow(self) -> None:
        delay = 0.5
        while True:
            watcher = None
            try:
                watcher = await (await facts_bucket(self._js)).watchall()
                delay = 0.5
                while True:
                    try:
                        entry = await watcher.updates(timeout=60)
                    except (TimeoutError, NatsTimeoutError):
                        continue  # nothing changed
                    if not isinstance(entry, KeyValue.Entry):  # None: the end of the initial values
                        continue
                    gone = entry.operation in (KV_DEL, KV_PURGE)
                    self._last[entry.key] = (time.monotonic(), None if gone else Facts.decode(entry.value or b"{}"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep what was read, and watch again once it is back
                logger.debug("watching provider facts failed (%s): again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()

    async def __call__(self, provider: str) -> Facts | None:
        now = time.monotonic()
        last = self._last.get(provider)
        if last is not None and last[1] is not None and now - last[0] < self._cache_s:
            return last[1]
        try:
            if self._kv is None:
                self._kv = await facts_bucket(self._js)
            entry = await self._kv.get(provider)
            facts = Facts.decode(entry.value or b"{}")
        except (KeyNotFoundError, KeyDeletedError):  # none written, or deleted since
            facts = None
        except Exception:
            if last is None:
                raise
            logger.warning("could not read the facts of provider %s: using those read before", provider)
            return last[1]
        self._last[provider] = (now, facts)
        return facts


def static_facts(facts: Mapping[str, Facts]) -> Callable[[str], Awaitable[Facts | None]]:
    """A reader answering from ``facts`` (for an API run without NATS, e.g. in a test's process)."""

    async def read(provider: str) -> Facts | None:
        return facts.get(provider)

    return read


# --- capabilities ---------------------------------------------------------------------


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
    """A worker's entries: put at start, refreshed every :data:`REFRESH_S`, deleted at stop (its providers'
    facts are put with them, and kept)."""

    def __init__(
        self,
        js: JetStreamContext,
        worker_id: str,
        providers: dict[str, Capabilities],
        facts: Mapping[str, Facts] | None = None,
    ) -> None:
        self._js = js
        self._entries = {f"{provider}.{worker_id}": caps.encode() for provider, caps in providers.items()}
        self._facts = {provider: f.encode() for provider, f in (facts or {}).items()}
        self._kv: KeyValue | None = None
        self._facts_kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Announce now (the API may ask as soon as the worker reports healthy), then keep refreshing."""
        self._kv = await bucket(self._js)
        self._facts_kv = await facts_bucket(self._js)
        await self._put()
        self._task = asyncio.create_task(self._refresh(), name="capabilities")

    async def _put(self) -> None:
        assert self._kv is not None and self._facts_kv is not None
        for key, value in self._entries.items():
            await self._kv.put(key, value)
        # Put again with every refresh: a bucket lost (NATS' storage replaced) is filled again within seconds.
        for provider, value in self._facts.items():
            await self._facts_kv.put(provider, value)

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
    found: Capabilities | None = None
    for key in await _keys_of(js, provider):
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):  # expired or deleted since the listing
            continue
        own = Capabilities.decode(entry.value)
        found = own if found is None else Capabilities(found.topologies & own.topologies, found.why_not | own.why_not)
    return found


async def _keys_of(js: JetStreamContext, provider: str) -> list[str]:
    """The keys of ``provider``'s entries (a handful of workers), from one stream-info request.

    Not ``KeyValue.keys()``: its watcher can signal "no more keys" before the keys already on their way are
    handed over (nats.py issue #842: it trusts the consumer's pending count), and then answers that there
    are none. Under CI's load the API took a provider's announced workers for absent that way.
    """
    prefix = f"$KV.{BUCKET}."
    info = await js.stream_info(f"KV_{BUCKET}", subjects_filter=f"{prefix}{provider}.>")
    return [subject[len(prefix) :] for subject in sorted(info.state.subjects or {})]
