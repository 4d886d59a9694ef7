"""Orphans are removed: an amphora process whose row is gone, an amphora whose load balancer is gone, VIP
allocations of no live load balancer, and amphora directories left behind; live ones are untouched.

Real amphorae of the amphora provider; the orphans are made the way a bug or a restored database would
leave them, by changing rows in the database (the API cannot do it, by design).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from dataplane_helpers import amphora_base, amphora_home, amphorae_of, create_lb, delete_lb, processes_mentioning
from hk_timing import spare_vip
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from support import Rest, mesh_engine

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.db.models import Amphora, LoadBalancer, VipAllocation


def _amphora(db: Engine, amphora_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(select(Amphora.status).where(Amphora.id == amphora_id)).scalar_one_or_none()


def _vips(db: Engine) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(select(VipAllocation.address)).scalars())


def _running(home: Path) -> bool:
    return bool(processes_mentioning(str(home)))


def test_orphans_are_removed_and_live_amphorae_kept(amphora_mesh: Mesh, amphora_api: Rest) -> None:
    api, db = amphora_api, mesh_engine(amphora_mesh)
    try:
        live = create_lb(api, "live", vip_address=spare_vip(api))
        rowless = create_lb(api, "rowless", vip_address=spare_vip(api))
        homeless = create_lb(api, "homeless", vip_address=spare_vip(api))
        (live_amp,), (rowless_amp,), (homeless_amp,) = (amphorae_of(api, lb["id"]) for lb in (live, rowless, homeless))
        homes = {
            name: amphora_home(amphora_mesh, a["id"])
            for name, a in (("live", live_amp), ("rowless", rowless_amp), ("homeless", homeless_amp))
        }
        assert all(_running(home) for home in homes.values())
        stray_vip = spare_vip(api)
        leftover = amphora_base(amphora_mesh) / uuid.uuid4().hex[:12]
        leftover.mkdir()
        (leftover / "agent.log").write_text("an amphora that never finished booting\n")
        os.utime(leftover, (time.time() - 600, time.time() - 600))

        with db.begin() as conn:
            # A process with no row; an amphora whose load balancer was deleted without it; an address no load
            # balancer holds.
            conn.execute(delete(Amphora).where(Amphora.id == rowless_amp["id"]))
            conn.execute(
                update(LoadBalancer).where(LoadBalancer.id == homeless["id"]).values(provisioning_status="DELETED")
            )
            subnet = conn.execute(select(VipAllocation.subnet_id).limit(1)).scalar_one()
            conn.execute(
                insert(VipAllocation).values(subnet_id=subnet, address=stray_vip, load_balancer_id=str(uuid.uuid4()))
            )
        assert {stray_vip, homeless["vip_address"], live["vip_address"]} <= _vips(db)

        deadline = time.monotonic() + 30
        while True:
            left = {
                "rowless process": _running(homes["rowless"]),
                "rowless directory": homes["rowless"].exists(),
                "homeless process": _running(homes["homeless"]),
                "homeless row": _amphora(db, homeless_amp["id"]) != "DELETED",
                "stray VIP": stray_vip in _vips(db),
                "homeless VIP": homeless["vip_address"] in _vips(db),
                "leftover directory": leftover.exists(),
            }
            if not any(left.values()):
                break
            assert time.monotonic() < deadline, f"orphans left: {[k for k, v in left.items() if v]}"
            time.sleep(0.2)
        assert not homes["homeless"].exists()
        # The live amphora is untouched: running, allocated, its address held.
        assert _running(homes["live"]) and homes["live"].exists()
        assert _amphora(db, live_amp["id"]) == "ALLOCATED" and live["vip_address"] in _vips(db)
        assert [a["id"] for a in amphorae_of(api, live["id"])] == [live_amp["id"]]
    finally:
        db.dispose()
    for lb in (live, rowless):
        delete_lb(api, lb["id"])
