from google.api import field_behavior_pb2 as _field_behavior_pb2
from octavia_mesh.protos.driveragent.v1 import models_pb2 as _models_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusUpdate(_message.Message):
    __slots__ = ("id", "provisioning_status", "operating_status")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    provisioning_status: str
    operating_status: str
    def __init__(self, id: _Optional[str] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class UpdateStatusesRequest(_message.Message):
    __slots__ = ("load_balancers", "listeners", "pools", "members", "health_monitors", "l7_policies", "l7_rules", "provider")
    LOAD_BALANCERS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_MONITORS_FIELD_NUMBER: _ClassVar[int]
    L7_POLICIES_FIELD_NUMBER: _ClassVar[int]
    L7_RULES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    load_balancers: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    listeners: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    pools: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    members: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    health_monitors: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    l7_policies: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    l7_rules: _containers.RepeatedCompositeFieldContainer[StatusUpdate]
    provider: str
    def __init__(self, load_balancers: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., pools: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., members: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., health_monitors: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., l7_policies: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., l7_rules: _Optional[_Iterable[_Union[StatusUpdate, _Mapping]]] = ..., provider: _Optional[str] = ...) -> None: ...

class UpdateStatusesResponse(_message.Message):
    __slots__ = ("completed_load_balancer_ids",)
    COMPLETED_LOAD_BALANCER_IDS_FIELD_NUMBER: _ClassVar[int]
    completed_load_balancer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, completed_load_balancer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListenerStatistics(_message.Message):
    __slots__ = ("id", "amphora_id", "active_connections", "bytes_in", "bytes_out", "request_errors", "total_connections")
    ID_FIELD_NUMBER: _ClassVar[int]
    AMPHORA_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    amphora_id: str
    active_connections: int
    bytes_in: int
    bytes_out: int
    request_errors: int
    total_connections: int
    def __init__(self, id: _Optional[str] = ..., amphora_id: _Optional[str] = ..., active_connections: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., request_errors: _Optional[int] = ..., total_connections: _Optional[int] = ...) -> None: ...

class UpdateStatisticsRequest(_message.Message):
    __slots__ = ("listeners", "provider")
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    listeners: _containers.RepeatedCompositeFieldContainer[ListenerStatistics]
    provider: str
    def __init__(self, listeners: _Optional[_Iterable[_Union[ListenerStatistics, _Mapping]]] = ..., provider: _Optional[str] = ...) -> None: ...

class UpdateStatisticsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLoadBalancerRequest(_message.Message):
    __slots__ = ("load_balancer_id",)
    LOAD_BALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    load_balancer_id: str
    def __init__(self, load_balancer_id: _Optional[str] = ...) -> None: ...

class GetLoadBalancerResponse(_message.Message):
    __slots__ = ("load_balancer",)
    LOAD_BALANCER_FIELD_NUMBER: _ClassVar[int]
    load_balancer: _models_pb2.LoadBalancer
    def __init__(self, load_balancer: _Optional[_Union[_models_pb2.LoadBalancer, _Mapping]] = ...) -> None: ...

class GetListenerRequest(_message.Message):
    __slots__ = ("listener_id",)
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    listener_id: str
    def __init__(self, listener_id: _Optional[str] = ...) -> None: ...

class GetListenerResponse(_message.Message):
    __slots__ = ("listener",)
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    listener: _models_pb2.Listener
    def __init__(self, listener: _Optional[_Union[_models_pb2.Listener, _Mapping]] = ...) -> None: ...

class GetPoolRequest(_message.Message):
    __slots__ = ("pool_id",)
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    def __init__(self, pool_id: _Optional[str] = ...) -> None: ...

class GetPoolResponse(_message.Message):
    __slots__ = ("pool",)
    POOL_FIELD_NUMBER: _ClassVar[int]
    pool: _models_pb2.Pool
    def __init__(self, pool: _Optional[_Union[_models_pb2.Pool, _Mapping]] = ...) -> None: ...

class GetMemberRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class GetMemberResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: _models_pb2.Member
    def __init__(self, member: _Optional[_Union[_models_pb2.Member, _Mapping]] = ...) -> None: ...

class GetHealthMonitorRequest(_message.Message):
    __slots__ = ("health_monitor_id",)
    HEALTH_MONITOR_ID_FIELD_NUMBER: _ClassVar[int]
    health_monitor_id: str
    def __init__(self, health_monitor_id: _Optional[str] = ...) -> None: ...

class GetHealthMonitorResponse(_message.Message):
    __slots__ = ("health_monitor",)
    HEALTH_MONITOR_FIELD_NUMBER: _ClassVar[int]
    health_monitor: _models_pb2.HealthMonitor
    def __init__(self, health_monitor: _Optional[_Union[_models_pb2.HealthMonitor, _Mapping]] = ...) -> None: ...

class GetL7PolicyRequest(_message.Message):
    __slots__ = ("l7_policy_id",)
    L7_POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    l7_policy_id: str
    def __init__(self, l7_policy_id: _Optional[str] = ...) -> None: ...

class GetL7PolicyResponse(_message.Message):
    __slots__ = ("l7_policy",)
    L7_POLICY_FIELD_NUMBER: _ClassVar[int]
    l7_policy: _models_pb2.L7Policy
    def __init__(self, l7_policy: _Optional[_Union[_models_pb2.L7Policy, _Mapping]] = ...) -> None: ...

class GetL7RuleRequest(_message.Message):
    __slots__ = ("l7_rule_id",)
    L7_RULE_ID_FIELD_NUMBER: _ClassVar[int]
    l7_rule_id: str
    def __init__(self, l7_rule_id: _Optional[str] = ...) -> None: ...

class GetL7RuleResponse(_message.Message):
    __slots__ = ("l7_rule",)
    L7_RULE_FIELD_NUMBER: _ClassVar[int]
    l7_rule: _models_pb2.L7Rule
    def __init__(self, l7_rule: _Optional[_Union[_models_pb2.L7Rule, _Mapping]] = ...) -> None: ...

class GetFlavorRequest(_message.Message):
    __slots__ = ("flavor_id",)
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    flavor_id: str
    def __init__(self, flavor_id: _Optional[str] = ...) -> None: ...

class GetFlavorResponse(_message.Message):
    __slots__ = ("flavor",)
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    flavor: _models_pb2.Flavor
    def __init__(self, flavor: _Optional[_Union[_models_pb2.Flavor, _Mapping]] = ...) -> None: ...

class GetAvailabilityZoneRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAvailabilityZoneResponse(_message.Message):
    __slots__ = ("availability_zone",)
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    availability_zone: _models_pb2.AvailabilityZone
    def __init__(self, availability_zone: _Optional[_Union[_models_pb2.AvailabilityZone, _Mapping]] = ...) -> None: ...
