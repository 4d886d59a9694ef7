"""Octavia Mesh housekeeping: purges, certificate rotation, stuck-object recovery, orphan cleanup."""
