"""Octavia Mesh driver agent: status and statistics from out-of-tree provider drivers."""
