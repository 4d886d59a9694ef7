"""Octavia Mesh shared library: what more than one service needs, and nothing service-specific."""
