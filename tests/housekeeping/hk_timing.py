"""The short intervals the housekeeping tests' meshes run with (see conftest.py)."""

#: How long a change may show PENDING_* with no progress before housekeeping steps in (noop_mesh).
PENDING_TIMEOUT_S = 4.0
#: Validity of amphora certificates, and how long before expiry housekeeping rotates them (amphora_mesh).
CERT_VALIDITY_S = 30.0
CERT_BUFFER_S = 20.0


def spare_vip() -> str:
    """A VIP address for a test's load balancer, away from the low addresses every mesh hands out first (other
    meshes on this machine, and their network namespaces, may hold those)."""
    import random

    return f"127.226.{random.randint(100, 250)}.{random.randint(2, 250)}"
