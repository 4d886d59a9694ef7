"""One place that opens openstacksdk connections for the OpenStack drivers (Nova, Neutron, Barbican).

Credentials and endpoints come from ``clouds.yaml`` (``OS_CLIENT_CONFIG_FILE`` or its usual places) under the
cloud name a service's settings give, or from ``OS_*`` variables when the name is empty: openstacksdk's own
configuration, so operators configure the mesh as any OpenStack client. These are the service's credentials
(Octavia's ``[service_auth]``), never a user's.
"""

from __future__ import annotations

from typing import Any


def connect(cloud: str = "", **overrides: Any) -> Any:
    """An ``openstack.connection.Connection`` for ``cloud`` (imported here: only OpenStack drivers need it)."""
    import openstack

    return openstack.connect(cloud=cloud or None, app_name="octavia-mesh", **overrides)
