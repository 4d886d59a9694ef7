"""Availability zones: ``/v2/lbaas/availabilityzones/{name}`` (everyone reads, admins write).

Like flavors (see :class:`flavors.Catalog`), but keyed by name, and only the
description and ``enabled`` change after creation.
"""

from __future__ import annotations

from octavia_mesh.api.resources.flavors import Catalog
from octavia_mesh.common.db.models import AvailabilityZone, AvailabilityZoneProfile, LoadBalancer

CATALOG = Catalog(
    model=AvailabilityZone,
    keyed_by_name=True,
    profile_model=AvailabilityZoneProfile,
    profile_field="availability_zone_profile_id",
    profile_label="Availability Zone Profile",
    wrapper="availability_zone",
    argument="availability_zone_",
    collection="availabilityzones",
    list_key="availability_zones",
    label="Availability Zone",
    duplicate_label="availability zone",
    lb_column=LoadBalancer.availability_zone,
    updatable=("description", "enabled"),
)

HANDLERS = CATALOG.handlers("AvailabilityZone")
