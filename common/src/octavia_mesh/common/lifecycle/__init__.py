"""One home for the load balancer's lifecycle: its status words, its tree, and the transitions between them.

* :mod:`.status`: the status enums (``StrEnum``: the same strings in the database and on the wire) and the
  named groups of them (``PENDING``, ``FAILOVERABLE``, ...). Importing it pulls no database code.
* :mod:`.tree`: :class:`~.tree.Tree`, a load balancer and every object under it, loaded at once (the one
  loader), and the removal of objects with their descendants.
* :mod:`.transitions`: lock (begin a change), mark parents PENDING_UPDATE, settle, fail, give up, remove a
  subtree, complete commands, claim for failover.

Users: the API (locks, parents, the outbox row; the tree for ``/status`` and a single-call create's body),
the worker (settle, fail, claim after a restart), the driver agent (a provider's reports remove subtrees and
complete commands), housekeeping (give up) and the health service (claim for failover; statuses are evaluated
only for settled load balancers).

Rules decided once (Octavia 19's behaviour, and ours where it differs):

1. **What "pending" means.** Any ``PENDING_*`` provisioning status (``status.PENDING``). A finished change
   turns PENDING_CREATE and PENDING_UPDATE objects ACTIVE and removes PENDING_DELETE ones with their
   children (``status.BECOMES_ACTIVE``). (The worker and housekeeping each had their own ``PENDING``, one
   without PENDING_DELETE.)
2. **A failed change** (:func:`.transitions.fail`, also used when housekeeping gives up): pending children go
   to ERROR; a load balancer being created or deleted goes to ERROR (provisioning and operating); one in
   PENDING_UPDATE goes back to ACTIVE if the change was a child's, and to ERROR if it was its own (update,
   failover). That is Octavia's (``ListenersToErrorOnRevertTask`` marks the load balancer active,
   ``LoadBalancerToErrorOnRevertTask`` marks it ERROR). The worker used to put the load balancer back to
   ACTIVE in both cases, housekeeping to ERROR; both now follow Octavia.
3. **Locks.** A change takes the load-balancer-wide lock, ACTIVE -> PENDING_UPDATE in one conditional UPDATE
   (Octavia's ``test_and_set_provisioning_status``; ERROR objects may only be deleted). A failover claims the
   load balancer from ACTIVE or ERROR (Octavia's ``FAILOVERABLE_STATUSES`` and ``set_status_for_failover``):
   the operator's load-balancer failover, the health service's automatic failover and the worker's rebuild
   after a restart (which used to take ACTIVE only) all use :func:`.transitions.claim_for_failover`. The
   amphora failover API takes the ordinary lock (ACTIVE only), as Octavia's amphora controller does.
4. **Completion.** A provider command is completed (``completed_at``) by whoever finishes its change: the
   worker after its flow settled or failed, a provider's report once nothing under the load balancer is
   pending, housekeeping when it gives up. Delivery is at least once: a command may be applied again until
   it is stamped, so every step is idempotent (settling twice is a no-op).
5. **A removed load balancer** keeps its row, DELETED and OFFLINE, without tags or VIP, until the purge;
   its quota is given back at once.
"""

from octavia_mesh.common.lifecycle.status import (
    AMPHORA_LIVE,
    AMPHORA_PLUGGED,
    BECOMES_ACTIVE,
    DELETABLE,
    FAILOVERABLE,
    MUTABLE,
    PENDING,
    AmphoraStatus,
    Operating,
    Provisioning,
    is_pending,
)

__all__ = [
    "AMPHORA_LIVE",
    "AMPHORA_PLUGGED",
    "BECOMES_ACTIVE",
    "DELETABLE",
    "FAILOVERABLE",
    "MUTABLE",
    "PENDING",
    "AmphoraStatus",
    "Operating",
    "Provisioning",
    "is_pending",
]
