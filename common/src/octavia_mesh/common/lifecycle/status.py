"""Octavia's status vocabularies, as ``StrEnum``s: members compare and serialize as the strings stored in the
database and sent on the wire, so using them changes no schema and no document.

Every status word the services write or test lives here (``tests/test_status_literals.py`` fails on a raw
one elsewhere); the rules that move objects between them are in :mod:`.transitions`.
"""

from __future__ import annotations

from enum import StrEnum


class Provisioning(StrEnum):
    """``provisioning_status`` of load balancers and their children (octavia-lib's ``constants``)."""

    ACTIVE = "ACTIVE"
    DELETED = "DELETED"
    ERROR = "ERROR"
    PENDING_CREATE = "PENDING_CREATE"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_DELETE = "PENDING_DELETE"


class Operating(StrEnum):
    """``operating_status`` of load balancers, listeners, pools and members."""

    ONLINE = "ONLINE"
    DRAINING = "DRAINING"
    OFFLINE = "OFFLINE"
    DEGRADED = "DEGRADED"
    ERROR = "ERROR"
    NO_MONITOR = "NO_MONITOR"


class AmphoraStatus(StrEnum):
    """``status`` of an amphora row (Octavia's ``AMPHORA_*`` lifecycle and ``FAILOVER_STOPPED``)."""

    PENDING_CREATE = "PENDING_CREATE"
    BOOTING = "BOOTING"
    ALLOCATED = "ALLOCATED"
    READY = "READY"
    PENDING_DELETE = "PENDING_DELETE"
    DELETED = "DELETED"
    ERROR = "ERROR"
    FAILOVER_STOPPED = "FAILOVER_STOPPED"


#: Another system's vocabulary we answer in or read (Barbican's secret ``status``, Neutron's subnet and
#: network ``status``): not a load-balancer state, but kept here so no status word is spelled twice.
FOREIGN_ACTIVE = "ACTIVE"


class NovaServer(StrEnum):
    """The ``status`` of a Nova server, as the nova compute driver reads it (not ours: Nova's)."""

    ACTIVE = "ACTIVE"
    ERROR = "ERROR"


# Tuples, not sets: they go into SQL ``IN`` lists, whose order should not change between runs.

#: A change is in flight (the API's load-balancer-wide lock is held while any object shows one of these).
PENDING = (Provisioning.PENDING_CREATE, Provisioning.PENDING_UPDATE, Provisioning.PENDING_DELETE)
#: Pending states that a finished change turns ACTIVE (PENDING_DELETE ones are removed instead).
BECOMES_ACTIVE = (Provisioning.PENDING_CREATE, Provisioning.PENDING_UPDATE)
#: Load-balancer states a failover may start from (Octavia's ``FAILOVERABLE_STATUSES``).
FAILOVERABLE = (Provisioning.ACTIVE, Provisioning.ERROR)
#: States in which an object may be changed (Octavia's ``MUTABLE_STATUSES``); ERROR ones may still be deleted.
MUTABLE = (Provisioning.ACTIVE,)
DELETABLE = (Provisioning.ACTIVE, Provisioning.ERROR)
#: Amphorae that exist or are being built for a load balancer (not yet retired).
AMPHORA_LIVE = (AmphoraStatus.PENDING_CREATE, AmphoraStatus.BOOTING, AmphoraStatus.ALLOCATED)
#: Amphorae whose instance may have a VIP port plugged.
AMPHORA_PLUGGED = (AmphoraStatus.BOOTING, AmphoraStatus.ALLOCATED, AmphoraStatus.PENDING_DELETE)


def is_pending(status: str) -> bool:
    """Whether ``status`` is one of the ``PENDING_*`` provisioning states."""
    return status in PENDING
