"""A small library for out-of-tree provider drivers of Octavia Mesh.

A provider driver is a process that takes its commands from JetStream
(:func:`consume`), reads the objects they name and reports statuses and
statistics through the driver agent (:class:`DriverLibrary`, octavia-lib's
driver library over gRPC). Registered under the entry-point group
:data:`ENTRY_POINT_GROUP`, it is found and run by the driver agent
(:class:`ProviderAgentContext` says where everything is). See
``docs/architecture.md``, "Provider drivers out of tree".
"""

from octavia_mesh.provider_sdk.agent import (
    ENTRY_POINT_GROUP,
    ProviderAgent,
    ProviderAgentContext,
)
from octavia_mesh.provider_sdk.client import (
    DriverAgentError,
    DriverLibrary,
    UpdateStatisticsError,
    UpdateStatusError,
)
from octavia_mesh.provider_sdk.commands import consume
from octavia_mesh.provider_sdk.models import to_provider_dict

__all__ = [
    "ENTRY_POINT_GROUP",
    "DriverAgentError",
    "DriverLibrary",
    "ProviderAgent",
    "ProviderAgentContext",
    "UpdateStatisticsError",
    "UpdateStatusError",
    "consume",
    "to_provider_dict",
]
