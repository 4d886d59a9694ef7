"""HAProxy configuration of a load balancer, rendered from its objects with Jinja2."""
