"""Handlers of the edge RPCs, one module per Octavia resource."""
