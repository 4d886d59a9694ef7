"""Narrow driver interfaces of the amphora provider, each with a no-op and a local implementation.

``compute`` runs amphorae, ``network`` gives them VIPs, ``amphora`` talks to their agents, and
``certificates`` holds the controller CA. OpenStack implementations (Nova, Neutron, Barbican through
openstacksdk) plug in behind the same protocols.
"""
