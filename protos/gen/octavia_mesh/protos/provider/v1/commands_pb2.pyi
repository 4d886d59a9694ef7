import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_LOAD_BALANCER: _ClassVar[ResourceKind]
    RESOURCE_KIND_LISTENER: _ClassVar[ResourceKind]
    RESOURCE_KIND_POOL: _ClassVar[ResourceKind]
    RESOURCE_KIND_MEMBER: _ClassVar[ResourceKind]
    RESOURCE_KIND_HEALTH_MONITOR: _ClassVar[ResourceKind]
    RESOURCE_KIND_L7_POLICY: _ClassVar[ResourceKind]
    RESOURCE_KIND_L7_RULE: _ClassVar[ResourceKind]
    RESOURCE_KIND_AMPHORA: _ClassVar[ResourceKind]

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_CREATE: _ClassVar[Operation]
    OPERATION_UPDATE: _ClassVar[Operation]
    OPERATION_DELETE: _ClassVar[Operation]
    OPERATION_FAILOVER: _ClassVar[Operation]
    OPERATION_BATCH_UPDATE: _ClassVar[Operation]
    OPERATION_ROTATE_CERTIFICATE: _ClassVar[Operation]
    OPERATION_REAP_ORPHANS: _ClassVar[Operation]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_LOAD_BALANCER: ResourceKind
RESOURCE_KIND_LISTENER: ResourceKind
RESOURCE_KIND_POOL: ResourceKind
RESOURCE_KIND_MEMBER: ResourceKind
RESOURCE_KIND_HEALTH_MONITOR: ResourceKind
RESOURCE_KIND_L7_POLICY: ResourceKind
RESOURCE_KIND_L7_RULE: ResourceKind
RESOURCE_KIND_AMPHORA: ResourceKind
OPERATION_UNSPECIFIED: Operation
OPERATION_CREATE: Operation
OPERATION_UPDATE: Operation
OPERATION_DELETE: Operation
OPERATION_FAILOVER: Operation
OPERATION_BATCH_UPDATE: Operation
OPERATION_ROTATE_CERTIFICATE: Operation
OPERATION_REAP_ORPHANS: Operation

class ProviderCommand(_message.Message):
    __slots__ = ("command_id", "provider", "kind", "operation", "resource_id", "load_balancer_id", "cascade", "create_time", "request_id", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    provider: str
    kind: ResourceKind
    operation: Operation
    resource_id: str
    load_balancer_id: str
    cascade: bool
    create_time: _timestamp_pb2.Timestamp
    request_id: str
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, command_id: _Optional[str] = ..., provider: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., operation: _Optional[_Union[Operation, str]] = ..., resource_id: _Optional[str] = ..., load_balancer_id: _Optional[str] = ..., cascade: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...
