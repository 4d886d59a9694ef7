import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
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

class OperatingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATING_STATUS_UNSPECIFIED: _ClassVar[OperatingStatus]
    OPERATING_STATUS_ONLINE: _ClassVar[OperatingStatus]
    OPERATING_STATUS_DEGRADED: _ClassVar[OperatingStatus]
    OPERATING_STATUS_ERROR: _ClassVar[OperatingStatus]
    OPERATING_STATUS_OFFLINE: _ClassVar[OperatingStatus]
    OPERATING_STATUS_NO_MONITOR: _ClassVar[OperatingStatus]
    OPERATING_STATUS_DRAINING: _ClassVar[OperatingStatus]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_LOAD_BALANCER: ResourceKind
RESOURCE_KIND_LISTENER: ResourceKind
RESOURCE_KIND_POOL: ResourceKind
RESOURCE_KIND_MEMBER: ResourceKind
OPERATING_STATUS_UNSPECIFIED: OperatingStatus
OPERATING_STATUS_ONLINE: OperatingStatus
OPERATING_STATUS_DEGRADED: OperatingStatus
OPERATING_STATUS_ERROR: OperatingStatus
OPERATING_STATUS_OFFLINE: OperatingStatus
OPERATING_STATUS_NO_MONITOR: OperatingStatus
OPERATING_STATUS_DRAINING: OperatingStatus

class OperatingStatusChanged(_message.Message):
    __slots__ = ("event_id", "kind", "id", "load_balancer_id", "project_id", "previous_status", "status", "change_time", "amphora_id", "reporter")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    AMPHORA_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: ResourceKind
    id: str
    load_balancer_id: str
    project_id: str
    previous_status: OperatingStatus
    status: OperatingStatus
    change_time: _timestamp_pb2.Timestamp
    amphora_id: str
    reporter: str
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., id: _Optional[str] = ..., load_balancer_id: _Optional[str] = ..., project_id: _Optional[str] = ..., previous_status: _Optional[_Union[OperatingStatus, str]] = ..., status: _Optional[_Union[OperatingStatus, str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amphora_id: _Optional[str] = ..., reporter: _Optional[str] = ...) -> None: ...
