"""Availability-zone profiles: ``/v2/lbaas/availabilityzoneprofiles`` (admin only).

They behave like flavor profiles (see :class:`flavorprofiles.Profiles`), with
``availability_zone_data`` checked against the provider's zone capabilities.
"""

from __future__ import annotations

from octavia_mesh.api.resources.flavorprofiles import Profiles
from octavia_mesh.common.db.models import AvailabilityZone, AvailabilityZoneProfile

PROFILES = Profiles(
    model=AvailabilityZoneProfile,
    data="availability_zone_data",
    wrapper="availability_zone_profile",
    argument="availability_zone_profile_",
    collection="availabilityzoneprofiles",
    list_key="availability_zone_profiles",
    links_key="availability_zone_profile_links",
    label="Availability Zone Profile",
    delete_label="Availability Zone Profile",
    zone=True,
    user_column=AvailabilityZone.availability_zone_profile_id,
    # Octavia 19.0.0 names flavor_data when an update's zone data is not JSON; kept for byte-compatibility.
    put_data_option="flavor_data",
)

HANDLERS = PROFILES.handlers("AvailabilityZoneProfile")
