from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadBalancer(_message.Message):
    __slots__ = ("loadbalancer_id", "name", "description", "project_id", "admin_state_up", "vip_address", "vip_network_id", "vip_port_id", "vip_subnet_id", "vip_qos_policy_id", "vip_sg_ids", "additional_vips", "availability_zone", "flavor", "listeners", "pools", "provisioning_status", "operating_status")
    LOADBALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    VIP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VIP_NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    VIP_PORT_ID_FIELD_NUMBER: _ClassVar[int]
    VIP_SUBNET_ID_FIELD_NUMBER: _ClassVar[int]
    VIP_QOS_POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VIP_SG_IDS_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_VIPS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    loadbalancer_id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    vip_address: str
    vip_network_id: str
    vip_port_id: str
    vip_subnet_id: str
    vip_qos_policy_id: str
    vip_sg_ids: _containers.RepeatedScalarFieldContainer[str]
    additional_vips: _containers.RepeatedCompositeFieldContainer[AdditionalVip]
    availability_zone: str
    flavor: _struct_pb2.Struct
    listeners: _containers.RepeatedCompositeFieldContainer[Listener]
    pools: _containers.RepeatedCompositeFieldContainer[Pool]
    provisioning_status: str
    operating_status: str
    def __init__(self, loadbalancer_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., vip_address: _Optional[str] = ..., vip_network_id: _Optional[str] = ..., vip_port_id: _Optional[str] = ..., vip_subnet_id: _Optional[str] = ..., vip_qos_policy_id: _Optional[str] = ..., vip_sg_ids: _Optional[_Iterable[str]] = ..., additional_vips: _Optional[_Iterable[_Union[AdditionalVip, _Mapping]]] = ..., availability_zone: _Optional[str] = ..., flavor: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., listeners: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ..., pools: _Optional[_Iterable[_Union[Pool, _Mapping]]] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class AdditionalVip(_message.Message):
    __slots__ = ("subnet_id", "ip_address", "port_id", "network_id")
    SUBNET_ID_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    subnet_id: str
    ip_address: str
    port_id: str
    network_id: str
    def __init__(self, subnet_id: _Optional[str] = ..., ip_address: _Optional[str] = ..., port_id: _Optional[str] = ..., network_id: _Optional[str] = ...) -> None: ...

class TlsContainerData(_message.Message):
    __slots__ = ("certificate", "private_key", "intermediates", "primary_cn")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATES_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_CN_FIELD_NUMBER: _ClassVar[int]
    certificate: str
    private_key: str
    intermediates: _containers.RepeatedScalarFieldContainer[str]
    primary_cn: str
    def __init__(self, certificate: _Optional[str] = ..., private_key: _Optional[str] = ..., intermediates: _Optional[_Iterable[str]] = ..., primary_cn: _Optional[str] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("listener_id", "loadbalancer_id", "name", "description", "project_id", "admin_state_up", "protocol", "protocol_port", "connection_limit", "default_pool_id", "default_pool", "default_tls_container_ref", "default_tls_container_data", "sni_container_refs", "sni_container_data", "insert_headers", "l7policies", "timeout_client_data", "timeout_member_connect", "timeout_member_data", "timeout_tcp_inspect", "client_ca_tls_container_ref", "client_ca_tls_container_data", "client_authentication", "client_crl_container_ref", "client_crl_container_data", "allowed_cidrs", "tls_versions", "tls_ciphers", "alpn_protocols", "hsts_max_age", "hsts_include_subdomains", "hsts_preload", "provisioning_status", "operating_status")
    class InsertHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    LOADBALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_PORT_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POOL_ID_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POOL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TLS_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TLS_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    SNI_CONTAINER_REFS_FIELD_NUMBER: _ClassVar[int]
    SNI_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    INSERT_HEADERS_FIELD_NUMBER: _ClassVar[int]
    L7POLICIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_CLIENT_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MEMBER_CONNECT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MEMBER_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_TCP_INSPECT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CA_TLS_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CA_TLS_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTHENTICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CRL_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CRL_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CIDRS_FIELD_NUMBER: _ClassVar[int]
    TLS_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TLS_CIPHERS_FIELD_NUMBER: _ClassVar[int]
    ALPN_PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    HSTS_MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    HSTS_INCLUDE_SUBDOMAINS_FIELD_NUMBER: _ClassVar[int]
    HSTS_PRELOAD_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    listener_id: str
    loadbalancer_id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    protocol: str
    protocol_port: int
    connection_limit: int
    default_pool_id: str
    default_pool: Pool
    default_tls_container_ref: str
    default_tls_container_data: TlsContainerData
    sni_container_refs: _containers.RepeatedScalarFieldContainer[str]
    sni_container_data: _containers.RepeatedCompositeFieldContainer[TlsContainerData]
    insert_headers: _containers.ScalarMap[str, str]
    l7policies: _containers.RepeatedCompositeFieldContainer[L7Policy]
    timeout_client_data: int
    timeout_member_connect: int
    timeout_member_data: int
    timeout_tcp_inspect: int
    client_ca_tls_container_ref: str
    client_ca_tls_container_data: str
    client_authentication: str
    client_crl_container_ref: str
    client_crl_container_data: str
    allowed_cidrs: _containers.RepeatedScalarFieldContainer[str]
    tls_versions: _containers.RepeatedScalarFieldContainer[str]
    tls_ciphers: str
    alpn_protocols: _containers.RepeatedScalarFieldContainer[str]
    hsts_max_age: int
    hsts_include_subdomains: bool
    hsts_preload: bool
    provisioning_status: str
    operating_status: str
    def __init__(self, listener_id: _Optional[str] = ..., loadbalancer_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., protocol: _Optional[str] = ..., protocol_port: _Optional[int] = ..., connection_limit: _Optional[int] = ..., default_pool_id: _Optional[str] = ..., default_pool: _Optional[_Union[Pool, _Mapping]] = ..., default_tls_container_ref: _Optional[str] = ..., default_tls_container_data: _Optional[_Union[TlsContainerData, _Mapping]] = ..., sni_container_refs: _Optional[_Iterable[str]] = ..., sni_container_data: _Optional[_Iterable[_Union[TlsContainerData, _Mapping]]] = ..., insert_headers: _Optional[_Mapping[str, str]] = ..., l7policies: _Optional[_Iterable[_Union[L7Policy, _Mapping]]] = ..., timeout_client_data: _Optional[int] = ..., timeout_member_connect: _Optional[int] = ..., timeout_member_data: _Optional[int] = ..., timeout_tcp_inspect: _Optional[int] = ..., client_ca_tls_container_ref: _Optional[str] = ..., client_ca_tls_container_data: _Optional[str] = ..., client_authentication: _Optional[str] = ..., client_crl_container_ref: _Optional[str] = ..., client_crl_container_data: _Optional[str] = ..., allowed_cidrs: _Optional[_Iterable[str]] = ..., tls_versions: _Optional[_Iterable[str]] = ..., tls_ciphers: _Optional[str] = ..., alpn_protocols: _Optional[_Iterable[str]] = ..., hsts_max_age: _Optional[int] = ..., hsts_include_subdomains: _Optional[bool] = ..., hsts_preload: _Optional[bool] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class SessionPersistence(_message.Message):
    __slots__ = ("type", "cookie_name", "persistence_timeout", "persistence_granularity")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_NAME_FIELD_NUMBER: _ClassVar[int]
    PERSISTENCE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PERSISTENCE_GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    type: str
    cookie_name: str
    persistence_timeout: int
    persistence_granularity: str
    def __init__(self, type: _Optional[str] = ..., cookie_name: _Optional[str] = ..., persistence_timeout: _Optional[int] = ..., persistence_granularity: _Optional[str] = ...) -> None: ...

class Pool(_message.Message):
    __slots__ = ("pool_id", "loadbalancer_id", "listener_id", "name", "description", "project_id", "admin_state_up", "protocol", "lb_algorithm", "session_persistence", "healthmonitor", "members", "tls_enabled", "tls_container_ref", "tls_container_data", "ca_tls_container_ref", "ca_tls_container_data", "crl_container_ref", "crl_container_data", "tls_versions", "tls_ciphers", "alpn_protocols", "provisioning_status", "operating_status")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    LOADBALANCER_ID_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    LB_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SESSION_PERSISTENCE_FIELD_NUMBER: _ClassVar[int]
    HEALTHMONITOR_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TLS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    TLS_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    TLS_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    CA_TLS_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    CA_TLS_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    CRL_CONTAINER_REF_FIELD_NUMBER: _ClassVar[int]
    CRL_CONTAINER_DATA_FIELD_NUMBER: _ClassVar[int]
    TLS_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TLS_CIPHERS_FIELD_NUMBER: _ClassVar[int]
    ALPN_PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    loadbalancer_id: str
    listener_id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    protocol: str
    lb_algorithm: str
    session_persistence: SessionPersistence
    healthmonitor: HealthMonitor
    members: _containers.RepeatedCompositeFieldContainer[Member]
    tls_enabled: bool
    tls_container_ref: str
    tls_container_data: TlsContainerData
    ca_tls_container_ref: str
    ca_tls_container_data: str
    crl_container_ref: str
    crl_container_data: str
    tls_versions: _containers.RepeatedScalarFieldContainer[str]
    tls_ciphers: str
    alpn_protocols: _containers.RepeatedScalarFieldContainer[str]
    provisioning_status: str
    operating_status: str
    def __init__(self, pool_id: _Optional[str] = ..., loadbalancer_id: _Optional[str] = ..., listener_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., protocol: _Optional[str] = ..., lb_algorithm: _Optional[str] = ..., session_persistence: _Optional[_Union[SessionPersistence, _Mapping]] = ..., healthmonitor: _Optional[_Union[HealthMonitor, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., tls_enabled: _Optional[bool] = ..., tls_container_ref: _Optional[str] = ..., tls_container_data: _Optional[_Union[TlsContainerData, _Mapping]] = ..., ca_tls_container_ref: _Optional[str] = ..., ca_tls_container_data: _Optional[str] = ..., crl_container_ref: _Optional[str] = ..., crl_container_data: _Optional[str] = ..., tls_versions: _Optional[_Iterable[str]] = ..., tls_ciphers: _Optional[str] = ..., alpn_protocols: _Optional[_Iterable[str]] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "pool_id", "name", "project_id", "admin_state_up", "address", "protocol_port", "weight", "backup", "subnet_id", "monitor_address", "monitor_port", "vnic_type", "provisioning_status", "operating_status")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_PORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    SUBNET_ID_FIELD_NUMBER: _ClassVar[int]
    MONITOR_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MONITOR_PORT_FIELD_NUMBER: _ClassVar[int]
    VNIC_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    pool_id: str
    name: str
    project_id: str
    admin_state_up: bool
    address: str
    protocol_port: int
    weight: int
    backup: bool
    subnet_id: str
    monitor_address: str
    monitor_port: int
    vnic_type: str
    provisioning_status: str
    operating_status: str
    def __init__(self, member_id: _Optional[str] = ..., pool_id: _Optional[str] = ..., name: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., address: _Optional[str] = ..., protocol_port: _Optional[int] = ..., weight: _Optional[int] = ..., backup: _Optional[bool] = ..., subnet_id: _Optional[str] = ..., monitor_address: _Optional[str] = ..., monitor_port: _Optional[int] = ..., vnic_type: _Optional[str] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class HealthMonitor(_message.Message):
    __slots__ = ("healthmonitor_id", "pool_id", "name", "project_id", "admin_state_up", "type", "delay", "timeout", "max_retries", "max_retries_down", "http_method", "url_path", "expected_codes", "http_version", "domain_name", "provisioning_status", "operating_status")
    HEALTHMONITOR_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_DOWN_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_PATH_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CODES_FIELD_NUMBER: _ClassVar[int]
    HTTP_VERSION_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    healthmonitor_id: str
    pool_id: str
    name: str
    project_id: str
    admin_state_up: bool
    type: str
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int
    http_method: str
    url_path: str
    expected_codes: str
    http_version: float
    domain_name: str
    provisioning_status: str
    operating_status: str
    def __init__(self, healthmonitor_id: _Optional[str] = ..., pool_id: _Optional[str] = ..., name: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., type: _Optional[str] = ..., delay: _Optional[int] = ..., timeout: _Optional[int] = ..., max_retries: _Optional[int] = ..., max_retries_down: _Optional[int] = ..., http_method: _Optional[str] = ..., url_path: _Optional[str] = ..., expected_codes: _Optional[str] = ..., http_version: _Optional[float] = ..., domain_name: _Optional[str] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class L7Policy(_message.Message):
    __slots__ = ("l7policy_id", "listener_id", "name", "description", "project_id", "admin_state_up", "action", "position", "redirect_pool_id", "redirect_url", "redirect_prefix", "redirect_http_code", "rules", "provisioning_status", "operating_status")
    L7POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_POOL_ID_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_HTTP_CODE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    l7policy_id: str
    listener_id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    action: str
    position: int
    redirect_pool_id: str
    redirect_url: str
    redirect_prefix: str
    redirect_http_code: int
    rules: _containers.RepeatedCompositeFieldContainer[L7Rule]
    provisioning_status: str
    operating_status: str
    def __init__(self, l7policy_id: _Optional[str] = ..., listener_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., action: _Optional[str] = ..., position: _Optional[int] = ..., redirect_pool_id: _Optional[str] = ..., redirect_url: _Optional[str] = ..., redirect_prefix: _Optional[str] = ..., redirect_http_code: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[L7Rule, _Mapping]]] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class L7Rule(_message.Message):
    __slots__ = ("l7rule_id", "l7policy_id", "project_id", "admin_state_up", "type", "compare_type", "key", "value", "invert", "provisioning_status", "operating_status")
    L7RULE_ID_FIELD_NUMBER: _ClassVar[int]
    L7POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_STATE_UP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPARE_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INVERT_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATUS_FIELD_NUMBER: _ClassVar[int]
    l7rule_id: str
    l7policy_id: str
    project_id: str
    admin_state_up: bool
    type: str
    compare_type: str
    key: str
    value: str
    invert: bool
    provisioning_status: str
    operating_status: str
    def __init__(self, l7rule_id: _Optional[str] = ..., l7policy_id: _Optional[str] = ..., project_id: _Optional[str] = ..., admin_state_up: _Optional[bool] = ..., type: _Optional[str] = ..., compare_type: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., invert: _Optional[bool] = ..., provisioning_status: _Optional[str] = ..., operating_status: _Optional[str] = ...) -> None: ...

class Flavor(_message.Message):
    __slots__ = ("id", "name", "description", "enabled", "provider_name", "flavor_data")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAME_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    enabled: bool
    provider_name: str
    flavor_data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., provider_name: _Optional[str] = ..., flavor_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AvailabilityZone(_message.Message):
    __slots__ = ("name", "description", "enabled", "provider_name", "availability_zone_data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    enabled: bool
    provider_name: str
    availability_zone_data: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., provider_name: _Optional[str] = ..., availability_zone_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
