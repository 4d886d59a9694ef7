import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("amphora_id", "hostname", "agent_version", "haproxy_version", "api_version", "load_balancer_ids")
    AMPHORA_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HAPROXY_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCER_IDS_FIELD_NUMBER: _ClassVar[int]
    amphora_id: str
    hostname: str
    agent_version: str
    haproxy_version: str
    api_version: str
    load_balancer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, amphora_id: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., haproxy_version: _Optional[str] = ..., api_version: _Optional[str] = ..., load_balancer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PutConfigRequest(_message.Message):
    __slots__ = ("load_balancer_id", "config")
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    config: str
    def __init__(self, load_balancer_id: _Optional[str] = ..., config: _Optional[str] = ...) -> None: ...

class PutConfigResponse(_message.Message):
    __slots__ = ("config_sha256", "warnings")
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    config_sha256: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, config_sha256: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class PutCertificateRequest(_message.Message):
    __slots__ = ("load_balancer_id", "name", "pem")
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEM_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    name: str
    pem: bytes
    def __init__(self, load_balancer_id: _Optional[str] = ..., name: _Optional[str] = ..., pem: _Optional[bytes] = ...) -> None: ...

class PutCertificateResponse(_message.Message):
    __slots__ = ("path", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class DeleteCertificateRequest(_message.Message):
    __slots__ = ("load_balancer_id", "name", "allow_missing")
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    name: str
    allow_missing: bool
    def __init__(self, load_balancer_id: _Optional[str] = ..., name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class DeleteCertificateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("load_balancer_id",)
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    def __init__(self, load_balancer_id: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("reloaded", "process")
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    reloaded: bool
    process: HaproxyProcess
    def __init__(self, reloaded: _Optional[bool] = ..., process: _Optional[_Union[HaproxyProcess, _Mapping]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("load_balancer_id",)
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    def __init__(self, load_balancer_id: _Optional[str] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("process",)
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    process: HaproxyProcess
    def __init__(self, process: _Optional[_Union[HaproxyProcess, _Mapping]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("load_balancer_id",)
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    def __init__(self, load_balancer_id: _Optional[str] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("process",)
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    process: HaproxyProcess
    def __init__(self, process: _Optional[_Union[HaproxyProcess, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("load_balancer_id",)
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    def __init__(self, load_balancer_id: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("process", "frontends", "backends")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    FRONTENDS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    process: HaproxyProcess
    frontends: _containers.RepeatedCompositeFieldContainer[FrontendStatus]
    backends: _containers.RepeatedCompositeFieldContainer[BackendStatus]
    def __init__(self, process: _Optional[_Union[HaproxyProcess, _Mapping]] = ..., frontends: _Optional[_Iterable[_Union[FrontendStatus, _Mapping]]] = ..., backends: _Optional[_Iterable[_Union[BackendStatus, _Mapping]]] = ...) -> None: ...

class DeleteLoadBalancerRequest(_message.Message):
    __slots__ = ("load_balancer_id", "allow_missing")
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    allow_missing: bool
    def __init__(self, load_balancer_id: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class DeleteLoadBalancerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateCertificateRequest(_message.Message):
    __slots__ = ("certificate", "private_key")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    private_key: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., private_key: _Optional[bytes] = ...) -> None: ...

class RotateCertificateResponse(_message.Message):
    __slots__ = ("certificate_sha256",)
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    certificate_sha256: str
    def __init__(self, certificate_sha256: _Optional[str] = ...) -> None: ...

class PutVrrpConfigRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: str
    def __init__(self, config: _Optional[str] = ...) -> None: ...

class PutVrrpConfigResponse(_message.Message):
    __slots__ = ("config_sha256",)
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    config_sha256: str
    def __init__(self, config_sha256: _Optional[str] = ...) -> None: ...

class StartVrrpRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartVrrpResponse(_message.Message):
    __slots__ = ("reloaded", "status")
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    reloaded: bool
    status: VrrpStatus
    def __init__(self, reloaded: _Optional[bool] = ..., status: _Optional[_Union[VrrpStatus, _Mapping]] = ...) -> None: ...

class StopVrrpRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopVrrpResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: VrrpStatus
    def __init__(self, status: _Optional[_Union[VrrpStatus, _Mapping]] = ...) -> None: ...

class GetVrrpStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VrrpStatus(_message.Message):
    __slots__ = ("running", "pid", "state", "state_time", "config_sha256", "restart_count", "last_error")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[VrrpStatus.State]
        STATE_BACKUP: _ClassVar[VrrpStatus.State]
        STATE_MASTER: _ClassVar[VrrpStatus.State]
        STATE_FAULT: _ClassVar[VrrpStatus.State]
        STATE_STOP: _ClassVar[VrrpStatus.State]
    STATE_UNSPECIFIED: VrrpStatus.State
    STATE_BACKUP: VrrpStatus.State
    STATE_MASTER: VrrpStatus.State
    STATE_FAULT: VrrpStatus.State
    STATE_STOP: VrrpStatus.State
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    running: bool
    pid: int
    state: VrrpStatus.State
    state_time: _timestamp_pb2.Timestamp
    config_sha256: str
    restart_count: int
    last_error: str
    def __init__(self, running: _Optional[bool] = ..., pid: _Optional[int] = ..., state: _Optional[_Union[VrrpStatus.State, str]] = ..., state_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., config_sha256: _Optional[str] = ..., restart_count: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class InterfaceAddress(_message.Message):
    __slots__ = ("address", "prefix_length")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    address: str
    prefix_length: int
    def __init__(self, address: _Optional[str] = ..., prefix_length: _Optional[int] = ...) -> None: ...

class HostRoute(_message.Message):
    __slots__ = ("destination", "next_hop")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_FIELD_NUMBER: _ClassVar[int]
    destination: str
    next_hop: str
    def __init__(self, destination: _Optional[str] = ..., next_hop: _Optional[str] = ...) -> None: ...

class PlugVipRequest(_message.Message):
    __slots__ = ("mac_address", "addresses", "vips", "gateway", "host_routes", "mtu", "vrrp_managed")
    MAC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    HOST_ROUTES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    VRRP_MANAGED_FIELD_NUMBER: _ClassVar[int]
    mac_address: str
    addresses: _containers.RepeatedCompositeFieldContainer[InterfaceAddress]
    vips: _containers.RepeatedCompositeFieldContainer[InterfaceAddress]
    gateway: str
    host_routes: _containers.RepeatedCompositeFieldContainer[HostRoute]
    mtu: int
    vrrp_managed: bool
    def __init__(self, mac_address: _Optional[str] = ..., addresses: _Optional[_Iterable[_Union[InterfaceAddress, _Mapping]]] = ..., vips: _Optional[_Iterable[_Union[InterfaceAddress, _Mapping]]] = ..., gateway: _Optional[str] = ..., host_routes: _Optional[_Iterable[_Union[HostRoute, _Mapping]]] = ..., mtu: _Optional[int] = ..., vrrp_managed: _Optional[bool] = ...) -> None: ...

class PlugVipResponse(_message.Message):
    __slots__ = ("interface",)
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    interface: str
    def __init__(self, interface: _Optional[str] = ...) -> None: ...

class PlugNetworkRequest(_message.Message):
    __slots__ = ("mac_address", "addresses", "host_routes", "mtu")
    MAC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    HOST_ROUTES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    mac_address: str
    addresses: _containers.RepeatedCompositeFieldContainer[InterfaceAddress]
    host_routes: _containers.RepeatedCompositeFieldContainer[HostRoute]
    mtu: int
    def __init__(self, mac_address: _Optional[str] = ..., addresses: _Optional[_Iterable[_Union[InterfaceAddress, _Mapping]]] = ..., host_routes: _Optional[_Iterable[_Union[HostRoute, _Mapping]]] = ..., mtu: _Optional[int] = ...) -> None: ...

class PlugNetworkResponse(_message.Message):
    __slots__ = ("interface",)
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    interface: str
    def __init__(self, interface: _Optional[str] = ...) -> None: ...

class HaproxyProcess(_message.Message):
    __slots__ = ("state", "master_pid", "worker_pid", "old_worker_pids", "config_sha256", "start_time", "reload_count", "restart_count", "last_error")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[HaproxyProcess.State]
        STATE_STOPPED: _ClassVar[HaproxyProcess.State]
        STATE_STARTING: _ClassVar[HaproxyProcess.State]
        STATE_RUNNING: _ClassVar[HaproxyProcess.State]
        STATE_RESTARTING: _ClassVar[HaproxyProcess.State]
        STATE_FAILED: _ClassVar[HaproxyProcess.State]
    STATE_UNSPECIFIED: HaproxyProcess.State
    STATE_STOPPED: HaproxyProcess.State
    STATE_STARTING: HaproxyProcess.State
    STATE_RUNNING: HaproxyProcess.State
    STATE_RESTARTING: HaproxyProcess.State
    STATE_FAILED: HaproxyProcess.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    MASTER_PID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    OLD_WORKER_PIDS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RELOAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    state: HaproxyProcess.State
    master_pid: int
    worker_pid: int
    old_worker_pids: _containers.RepeatedScalarFieldContainer[int]
    config_sha256: str
    start_time: _timestamp_pb2.Timestamp
    reload_count: int
    restart_count: int
    last_error: str
    def __init__(self, state: _Optional[_Union[HaproxyProcess.State, str]] = ..., master_pid: _Optional[int] = ..., worker_pid: _Optional[int] = ..., old_worker_pids: _Optional[_Iterable[int]] = ..., config_sha256: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reload_count: _Optional[int] = ..., restart_count: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class FrontendStatus(_message.Message):
    __slots__ = ("name", "status", "counters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    counters: ProxyCounters
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., counters: _Optional[_Union[ProxyCounters, _Mapping]] = ...) -> None: ...

class BackendStatus(_message.Message):
    __slots__ = ("name", "status", "counters", "servers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    counters: ProxyCounters
    servers: _containers.RepeatedCompositeFieldContainer[ServerStatus]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., counters: _Optional[_Union[ProxyCounters, _Mapping]] = ..., servers: _Optional[_Iterable[_Union[ServerStatus, _Mapping]]] = ...) -> None: ...

class ServerStatus(_message.Message):
    __slots__ = ("name", "address", "status", "check_status", "check_description", "weight", "last_change_seconds", "downtime_seconds", "check_failures", "counters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECK_STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECK_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DOWNTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHECK_FAILURES_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    status: str
    check_status: str
    check_description: str
    weight: int
    last_change_seconds: int
    downtime_seconds: int
    check_failures: int
    counters: ProxyCounters
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., status: _Optional[str] = ..., check_status: _Optional[str] = ..., check_description: _Optional[str] = ..., weight: _Optional[int] = ..., last_change_seconds: _Optional[int] = ..., downtime_seconds: _Optional[int] = ..., check_failures: _Optional[int] = ..., counters: _Optional[_Union[ProxyCounters, _Mapping]] = ...) -> None: ...

class ProxyCounters(_message.Message):
    __slots__ = ("current_sessions", "max_sessions", "session_limit", "total_sessions", "bytes_in", "bytes_out", "total_requests", "request_errors", "connection_errors", "response_errors", "denied_requests")
    CURRENT_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    DENIED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    current_sessions: int
    max_sessions: int
    session_limit: int
    total_sessions: int
    bytes_in: int
    bytes_out: int
    total_requests: int
    request_errors: int
    connection_errors: int
    response_errors: int
    denied_requests: int
    def __init__(self, current_sessions: _Optional[int] = ..., max_sessions: _Optional[int] = ..., session_limit: _Optional[int] = ..., total_sessions: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., total_requests: _Optional[int] = ..., request_errors: _Optional[int] = ..., connection_errors: _Optional[int] = ..., response_errors: _Optional[int] = ..., denied_requests: _Optional[int] = ...) -> None: ...
