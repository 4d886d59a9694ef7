"""Octavia Mesh health service: amphora heartbeats, operating status, statistics and failover detection."""
