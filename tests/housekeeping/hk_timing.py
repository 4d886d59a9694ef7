"""The short intervals the housekeeping tests' meshes run with (see conftest.py)."""

from typing import Any

#: How long a change may show PENDING_* with no progress before housekeeping steps in (noop_mesh).
PENDING_TIMEOUT_S = 4.0
#: Validity of amphora certificates, and how long before expiry housekeeping rotates them (amphora_mesh).
CERT_VALIDITY_S = 30.0
CERT_BUFFER_S = 20.0


def spare_vip(api: Any) -> str:
    """A VIP address of the mesh's own local subnet for a test's load balancer, away from the low addresses the
    mesh hands out first."""
    from support import random_vip_in

    return random_vip_in(api, third=range(100, 251))
