"""L7Rules: not implemented yet (answers 501)."""

from __future__ import annotations

from octavia_mesh.api.edge import not_yet
from octavia_mesh.protos.lbaas.v2 import l7rules_pb2

HANDLERS = not_yet(l7rules_pb2, "L7Rules")
