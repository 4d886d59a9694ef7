"""Quotas: not implemented yet (answers 501)."""

from __future__ import annotations

from octavia_mesh.api.edge import not_yet
from octavia_mesh.protos.lbaas.v2 import quotas_pb2

HANDLERS = not_yet(quotas_pb2, "Quotas")
