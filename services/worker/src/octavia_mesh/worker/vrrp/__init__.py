"""keepalived (VRRP) configuration of ACTIVE_STANDBY amphorae, rendered from a Jinja2 template."""
