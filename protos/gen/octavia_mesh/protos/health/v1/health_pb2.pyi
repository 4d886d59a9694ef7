import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamHostHeartbeatsRequest(_message.Message):
    __slots__ = ("sequence", "joins", "heartbeats", "lost_amphora_ids", "closing")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOINS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    LOST_AMPHORA_IDS_FIELD_NUMBER: _ClassVar[int]
    CLOSING_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    joins: _containers.RepeatedCompositeFieldContainer[HostedAmphora]
    heartbeats: _containers.RepeatedCompositeFieldContainer[StreamHeartbeatsRequest]
    lost_amphora_ids: _containers.RepeatedScalarFieldContainer[str]
    closing: bool
    def __init__(self, sequence: _Optional[int] = ..., joins: _Optional[_Iterable[_Union[HostedAmphora, _Mapping]]] = ..., heartbeats: _Optional[_Iterable[_Union[StreamHeartbeatsRequest, _Mapping]]] = ..., lost_amphora_ids: _Optional[_Iterable[str]] = ..., closing: _Optional[bool] = ...) -> None: ...

class HostedAmphora(_message.Message):
    __slots__ = ("certificate", "proof")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    proof: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class StreamHostHeartbeatsResponse(_message.Message):
    __slots__ = ("sequence", "interval", "ack_interval", "refusals")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ACK_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    interval: _duration_pb2.Duration
    ack_interval: _duration_pb2.Duration
    refusals: _containers.RepeatedCompositeFieldContainer[AmphoraRefusal]
    def __init__(self, sequence: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ack_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., refusals: _Optional[_Iterable[_Union[AmphoraRefusal, _Mapping]]] = ...) -> None: ...

class AmphoraRefusal(_message.Message):
    __slots__ = ("amphora_id", "reason")
    AMPHORA_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    amphora_id: str
    reason: str
    def __init__(self, amphora_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StreamHeartbeatsRequest(_message.Message):
    __slots__ = ("amphora_id", "sequence", "sample_time", "load_balancers", "closing")
    AMPHORA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCERS_FIELD_NUMBER: _ClassVar[int]
    CLOSING_FIELD_NUMBER: _ClassVar[int]
    amphora_id: str
    sequence: int
    sample_time: _timestamp_pb2.Timestamp
    load_balancers: _containers.RepeatedCompositeFieldContainer[LoadBalancerReport]
    closing: bool
    def __init__(self, amphora_id: _Optional[str] = ..., sequence: _Optional[int] = ..., sample_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., load_balancers: _Optional[_Iterable[_Union[LoadBalancerReport, _Mapping]]] = ..., closing: _Optional[bool] = ...) -> None: ...

class LoadBalancerReport(_message.Message):
    __slots__ = ("load_balancer_id", "running", "listeners", "pools")
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    running: bool
    listeners: _containers.RepeatedCompositeFieldContainer[ListenerReport]
    pools: _containers.RepeatedCompositeFieldContainer[PoolReport]
    def __init__(self, load_balancer_id: _Optional[str] = ..., running: _Optional[bool] = ..., listeners: _Optional[_Iterable[_Union[ListenerReport, _Mapping]]] = ..., pools: _Optional[_Iterable[_Union[PoolReport, _Mapping]]] = ...) -> None: ...

class ListenerReport(_message.Message):
    __slots__ = ("name", "status", "counters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    counters: ListenerCounters
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., counters: _Optional[_Union[ListenerCounters, _Mapping]] = ...) -> None: ...

class ListenerCounters(_message.Message):
    __slots__ = ("bytes_in", "bytes_out", "active_connections", "total_connections", "request_errors")
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ERRORS_FIELD_NUMBER: _ClassVar[int]
    bytes_in: int
    bytes_out: int
    active_connections: int
    total_connections: int
    request_errors: int
    def __init__(self, bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., active_connections: _Optional[int] = ..., total_connections: _Optional[int] = ..., request_errors: _Optional[int] = ...) -> None: ...

class PoolReport(_message.Message):
    __slots__ = ("name", "status", "members")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    members: _containers.RepeatedCompositeFieldContainer[MemberReport]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., members: _Optional[_Iterable[_Union[MemberReport, _Mapping]]] = ...) -> None: ...

class MemberReport(_message.Message):
    __slots__ = ("name", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class StreamHeartbeatsResponse(_message.Message):
    __slots__ = ("sequence", "interval", "ack_interval")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ACK_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    interval: _duration_pb2.Duration
    ack_interval: _duration_pb2.Duration
    def __init__(self, sequence: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ack_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
