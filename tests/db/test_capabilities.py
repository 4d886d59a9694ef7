"""The provider-capability registry on real NATS: workers announce, the API asks (and never probes itself)."""

from __future__ import annotations

from nats.js import JetStreamContext

from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.api.topology import active_standby_refusal
from octavia_mesh.common import capabilities
from octavia_mesh.common.capabilities import ACTIVE_STANDBY, SINGLE, Capabilities

PAIRS = Capabilities(frozenset({SINGLE, ACTIVE_STANDBY}))
NO_ROOT = Capabilities(frozenset({SINGLE}), {ACTIVE_STANDBY: "it needs root privileges on the machine"})


async def test_the_api_follows_what_every_worker_announced(js: JetStreamContext) -> None:
    settings = ApiSettings()
    ask = lambda provider: capabilities.of_provider(js, provider)  # noqa: E731

    assert await capabilities.of_provider(js, "amphora") is None
    assert await active_standby_refusal(settings, "amphora", ask) is None  # nobody announced: not limited

    able = capabilities.Announcer(js, "w1", {"amphora": PAIRS, "noop": PAIRS})
    await able.start()
    assert await capabilities.of_provider(js, "amphora") == PAIRS
    assert await active_standby_refusal(settings, "amphora", ask) is None

    unable = capabilities.Announcer(js, "w2", {"amphora": NO_ROOT})
    await unable.start()  # a command may reach either worker: only what both can build is accepted
    assert await active_standby_refusal(settings, "amphora", ask) == "it needs root privileges on the machine"
    assert await active_standby_refusal(settings, "noop", ask) is None
    assert await active_standby_refusal(ApiSettings(active_standby="enabled"), "amphora", ask) is None
    assert (
        await active_standby_refusal(ApiSettings(active_standby="disabled"), "noop", ask)
        == "it is disabled in this deployment (OCTAVIA_MESH_API_ACTIVE_STANDBY=disabled)"
    )

    await unable.stop()  # a worker that stops withdraws its entry
    assert await active_standby_refusal(settings, "amphora", ask) is None
    await able.stop()
    assert await capabilities.of_provider(js, "amphora") is None


async def test_a_dead_workers_entry_expires(js: JetStreamContext) -> None:
    kv = await capabilities.bucket(js)
    status = await kv.status()
    assert status.ttl == capabilities.TTL_S  # entries of a worker killed without stop() go away
    assert capabilities.REFRESH_S * 2 < capabilities.TTL_S  # a live worker refreshes well within it
