"""Golden renders of haproxy.cfg, one case per feature family; every one must pass ``haproxy -c -dW``.

Each case builds real ORM rows in memory (``rows``, see conftest.py) and renders them through
``build()``. Regenerate with ``uv run pytest tests/worker --update-golden`` and review the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from octavia_mesh.worker.haproxy.render import HaproxyRenderer
from octavia_mesh.worker.haproxy.view import LoadBalancerView

Case = Callable[[Any], LoadBalancerView]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


@case
def case_http_basic(rows: Any) -> LoadBalancerView:
    listener = rows.listener("HTTP", 80)
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.11", 8080)
    rows.member(pool, "192.0.2.12", 8080)
    return rows.build()


@case
def case_tcp(rows: Any) -> LoadBalancerView:
    listener = rows.listener("TCP", 5432, timeout_client_data=300000, timeout_member_data=300000)
    pool = rows.pool("TCP", "LEAST_CONNECTIONS", listener)
    rows.monitor(pool, "TCP", delay=2, timeout=1, max_retries=1, max_retries_down=2)
    rows.member(pool, "192.0.2.21", 5432)
    rows.member(pool, "192.0.2.22", 5432)
    # A TCP listener may front an HTTP pool: HAProxy upgrades the connection to HTTP in the backend.
    http_listener = rows.listener("TCP", 8080)
    http_pool = rows.pool("HTTP", "ROUND_ROBIN", http_listener)
    rows.member(http_pool, "192.0.2.23", 80)
    return rows.build()


@case
def case_https_passthrough(rows: Any) -> LoadBalancerView:
    listener = rows.listener("HTTPS", 443)
    pool = rows.pool("HTTPS", "SOURCE_IP", listener, session_persistence={"type": "SOURCE_IP"})
    rows.monitor(pool, "TLS-HELLO")
    rows.member(pool, "192.0.2.31", 443)
    rows.member(pool, "192.0.2.32", 443)
    return rows.build()


@case
def case_terminated_https(rows: Any) -> LoadBalancerView:
    listener = rows.listener(
        "TERMINATED_HTTPS",
        443,
        default_tls_container_ref="ref:www",
        sni_container_refs=["ref:api", "ref:shop", "ref:www"],
        client_authentication="MANDATORY",
        client_ca_tls_container_ref="ref:client-ca",
        client_crl_container_ref="ref:client-crl",
        tls_versions=["TLSv1.2", "TLSv1.3"],
        tls_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384",
        alpn_protocols=["h2", "http/1.1"],
        hsts_max_age=31536000,
        hsts_include_subdomains=True,
        hsts_preload=True,
        insert_headers={
            "X-Forwarded-For": "true",
            "X-Forwarded-Proto": "true",
            "X-SSL-Client-Verify": "true",
            "X-SSL-Client-Has-Cert": "true",
            "X-SSL-Client-DN": "true",
            "X-SSL-Client-CN": "true",
            "X-SSL-Issuer": "true",
            "X-SSL-Client-SHA1": "true",
            "X-SSL-Client-Not-Before": "true",
            "X-SSL-Client-Not-After": "true",
        },
    )
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.41", 80)
    # Client-certificate rules only make sense here, where HAProxy sees the certificate.
    deny = rows.policy(listener, "REJECT")
    rows.rule(deny, "SSL_CONN_HAS_CERT", "EQUAL_TO", "True", invert=True)
    unverified = rows.policy(listener, "REJECT")
    rows.rule(unverified, "SSL_VERIFY_RESULT", "EQUAL_TO", "0", invert=True)
    admins = rows.policy(listener, "REDIRECT_TO_POOL", redirect_pool_id=rows.pool("HTTP").id)
    rows.rule(admins, "SSL_DN_FIELD", "EQUAL_TO", "Platform Admins", key="OU")
    rows.member(rows.pools[-1], "192.0.2.42", 80)
    return rows.build()


@case
def case_terminated_https_optional_auth(rows: Any) -> LoadBalancerView:
    # Octavia's defaults (TLSv1.2+, h2/http1.1/http1.0, OpenSSL's ciphers), optional client auth, no CRL.
    listener = rows.listener(
        "TERMINATED_HTTPS",
        443,
        default_tls_container_ref="ref:www",
        client_authentication="OPTIONAL",
        client_ca_tls_container_ref="ref:client-ca",
        insert_headers={"X-SSL-Client-Verify": "true", "X-Forwarded-Proto": "true"},
    )
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.43", 80)
    # Only TLSv1.3, with its own suites; and a second listener allowing only the legacy TLSv1/1.1 pair.
    modern = rows.listener(
        "TERMINATED_HTTPS",
        8443,
        default_tls_container_ref="ref:api",
        tls_versions=["TLSv1.3"],
        tls_ciphers="TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
        alpn_protocols=["http/1.1"],
        hsts_max_age=0,
    )
    modern.default_pool_id = pool.id
    legacy = rows.listener(
        "TERMINATED_HTTPS",
        9443,
        default_tls_container_ref="ref:shop",
        tls_versions=["TLSv1", "TLSv1.1"],
        alpn_protocols=[],
    )
    legacy.default_pool_id = pool.id
    return rows.build()


@case
def case_prometheus(rows: Any) -> LoadBalancerView:
    rows.listener("PROMETHEUS", 9100, allowed_cidrs=["198.51.100.0/24"])
    rows.listener(
        "PROMETHEUS",
        9443,
        default_tls_container_ref="ref:www",
        client_authentication="MANDATORY",
        client_ca_tls_container_ref="ref:client-ca",
    )
    return rows.build()


@case
def case_algorithms(rows: Any) -> LoadBalancerView:
    for port, algorithm in enumerate(("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"), start=8001):
        for protocol in ("HTTP", "TCP"):
            listener = rows.listener(protocol, port + (100 if protocol == "TCP" else 0))
            pool = rows.pool(protocol, algorithm, listener)
            rows.member(pool, "192.0.2.51", 80)
            rows.member(pool, "192.0.2.52", 80, weight=3)
    return rows.build()


@case
def case_persistence(rows: Any) -> LoadBalancerView:
    kinds = (
        ("HTTP", {"type": "SOURCE_IP"}),
        ("HTTP", {"type": "HTTP_COOKIE"}),
        ("HTTP", {"type": "APP_COOKIE", "cookie_name": "JSESSIONID"}),
        ("TCP", {"type": "SOURCE_IP", "persistence_timeout": 360, "persistence_granularity": "255.255.255.255"}),
    )
    for port, (protocol, persistence) in enumerate(kinds, start=8001):
        listener = rows.listener(protocol, port)
        pool = rows.pool(protocol, "ROUND_ROBIN", listener, session_persistence=persistence)
        rows.member(pool, "192.0.2.61", 80)
        rows.member(pool, "192.0.2.62", 80)
    return rows.build()


@case
def case_monitors(rows: Any) -> LoadBalancerView:
    monitors: list[tuple[str, str, dict[str, Any]]] = [
        ("HTTP", "HTTP", {}),
        (
            "HTTP",
            "HTTP",
            {
                "http_method": "HEAD",
                "url_path": "/healthz?full=1",
                "expected_codes": "200,202",
                "http_version": 1.1,
                "domain_name": "health.example.com",
            },
        ),
        ("HTTP", "HTTPS", {"url_path": "/status", "expected_codes": "200-204", "domain_name": "www.example.com"}),
        ("TCP", "TCP", {"delay": 0, "timeout": 0}),
        ("HTTPS", "TLS-HELLO", {"delay": 10, "timeout": 5, "max_retries": 10, "max_retries_down": 10}),
        ("TCP", "PING", {}),
        ("HTTP", "HTTP", {"admin_state_up": False}),
        ("TCP", "HTTP", {"url_path": "/ping"}),  # HTTP checks on a TCP pool
    ]
    for port, (protocol, kind, fields) in enumerate(monitors, start=8001):
        listener = rows.listener("HTTPS" if protocol == "HTTPS" else ("HTTP" if protocol == "HTTP" else "TCP"), port)
        pool = rows.pool(protocol, "ROUND_ROBIN", listener)
        rows.monitor(pool, kind, **fields)
        rows.member(pool, "192.0.2.71", 80)
        rows.member(pool, "192.0.2.72", 80, monitor_address="198.51.100.72", monitor_port=9090)
        rows.member(pool, "2001:db8::73", 80, monitor_port=9090)
    return rows.build()


@case
def case_l7(rows: Any) -> LoadBalancerView:
    listener = rows.listener("HTTP", 80)
    default = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(default, "192.0.2.81", 80)
    images = rows.pool("HTTP", "ROUND_ROBIN")
    rows.member(images, "192.0.2.82", 80)
    api = rows.pool("HTTP", "LEAST_CONNECTIONS")
    rows.member(api, "192.0.2.83", 80)
    # Positions deliberately out of creation order: the render follows position.
    to_api = rows.policy(listener, "REDIRECT_TO_POOL", position=2, redirect_pool_id=api.id)
    rows.rule(to_api, "HOST_NAME", "EQUAL_TO", "api.example.com")
    rows.rule(to_api, "PATH", "STARTS_WITH", "/v2/")
    rows.rule(to_api, "HEADER", "CONTAINS", "json", key="Accept")
    rows.rule(to_api, "COOKIE", "EQUAL_TO", "beta", key="channel", invert=True)
    banned = rows.policy(listener, "REJECT", position=1)
    rows.rule(banned, "HEADER", "REGEX", "^(curl|wget)/", key="User-Agent")
    rows.rule(banned, "PATH", "ENDS_WITH", ".php")
    to_images = rows.policy(listener, "REDIRECT_TO_POOL", position=3, redirect_pool_id=images.id)
    rows.rule(to_images, "FILE_TYPE", "EQUAL_TO", "jpg")
    moved = rows.policy(
        listener, "REDIRECT_TO_URL", position=4, redirect_url="https://www.example.com/moved", redirect_http_code=301
    )
    rows.rule(moved, "HOST_NAME", "ENDS_WITH", ".old.example.com")
    rows.rule(moved, "PATH", "CONTAINS", "/legacy/")
    secure = rows.policy(
        listener, "REDIRECT_PREFIX", position=5, redirect_prefix="https://www.example.com", redirect_http_code=308
    )
    rows.rule(secure, "HOST_NAME", "REGEX", r"^www\.example\.(com|net)$")
    rows.rule(secure, "COOKIE", "STARTS_WITH", "v1-", key="session")
    # Every other compare type on FILE_TYPE and HOST_NAME.
    files = rows.policy(listener, "REJECT", position=6)
    rows.rule(files, "FILE_TYPE", "REGEX", r"\.(exe|bat)$")
    rows.rule(files, "FILE_TYPE", "STARTS_WITH", "ph")
    rows.rule(files, "FILE_TYPE", "ENDS_WITH", "ml", invert=True)
    rows.rule(files, "FILE_TYPE", "CONTAINS", "s")
    rows.rule(files, "HOST_NAME", "STARTS_WITH", "internal.")
    rows.rule(files, "HOST_NAME", "CONTAINS", "staging")
    rows.rule(files, "PATH", "EQUAL_TO", "/")
    rows.rule(files, "PATH", "REGEX", "^/[a-z]+$")
    rows.rule(files, "HEADER", "STARTS_WITH", "Bearer ", key="Authorization")
    rows.rule(files, "HEADER", "ENDS_WITH", "-test", key="X-Env")
    rows.rule(files, "HEADER", "EQUAL_TO", "1", key="X-Debug")
    rows.rule(files, "COOKIE", "REGEX", "^[0-9]+$", key="uid")
    rows.rule(files, "COOKIE", "CONTAINS", "admin", key="roles")
    rows.rule(files, "COOKIE", "ENDS_WITH", "x", key="flavor")
    # Ignored: a disabled policy, a policy whose only rule is disabled, a policy without rules, a
    # redirect to a disabled pool, and a disabled rule inside an active policy.
    off = rows.policy(listener, "REJECT", position=7, admin_state_up=False)
    rows.rule(off, "PATH", "EQUAL_TO", "/off")
    dark = rows.policy(listener, "REJECT", position=8)
    rows.rule(dark, "PATH", "EQUAL_TO", "/dark", admin_state_up=False)
    rows.policy(listener, "REJECT", position=9)
    closed = rows.pool("HTTP", "ROUND_ROBIN", admin_state_up=False)
    to_closed = rows.policy(listener, "REDIRECT_TO_POOL", position=10, redirect_pool_id=closed.id)
    rows.rule(to_closed, "PATH", "EQUAL_TO", "/closed")
    rows.rule(to_images, "PATH", "EQUAL_TO", "/disabled-rule", admin_state_up=False)
    return rows.build()


@case
def case_reencryption(rows: Any) -> LoadBalancerView:
    terminated = rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www")
    full = rows.pool(
        "HTTP",
        "ROUND_ROBIN",
        terminated,
        tls_enabled=True,
        tls_container_ref="ref:member-client",
        ca_tls_container_ref="ref:member-ca",
        crl_container_ref="ref:member-crl",
        tls_versions=["TLSv1.2", "TLSv1.3"],
        tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256",
        alpn_protocols=["h2", "http/1.1"],
    )
    rows.monitor(full, "HTTPS", url_path="/health")
    rows.member(full, "192.0.2.91", 443)
    rows.member(full, "192.0.2.92", 443)
    # Over plain HTTP: no SNI to forward, no CA (verify none), Octavia's default versions and ALPN,
    # and an HTTP monitor that still needs check-alpn because the pool offers h2.
    plain = rows.listener("HTTP", 80)
    unverified = rows.pool("HTTP", "ROUND_ROBIN", plain, tls_enabled=True)
    rows.monitor(unverified, "HTTP")
    rows.member(unverified, "192.0.2.93", 443)
    # In TCP mode HAProxy does not speak HTTP to members, so no ALPN is offered.
    tcp = rows.listener("TCP", 8443)
    wrapped = rows.pool("TCP", "ROUND_ROBIN", tcp, tls_enabled=True, ca_tls_container_ref="ref:member-ca")
    rows.monitor(wrapped, "TLS-HELLO")
    rows.member(wrapped, "192.0.2.94", 443)
    return rows.build()


@case
def case_proxy_protocol(rows: Any) -> LoadBalancerView:
    for port, (listener_protocol, pool_protocol) in enumerate(
        (("HTTP", "PROXY"), ("HTTP", "PROXYV2"), ("TCP", "PROXY"), ("TCP", "PROXYV2"), ("TERMINATED_HTTPS", "PROXYV2")),
        start=8001,
    ):
        extra = {"default_tls_container_ref": "ref:www"} if listener_protocol == "TERMINATED_HTTPS" else {}
        listener = rows.listener(listener_protocol, port, **extra)
        pool = rows.pool(pool_protocol, "ROUND_ROBIN", listener)
        # Checks carry the PROXY header too (HAProxy does this unless a monitor address or port is set).
        rows.monitor(pool, "HTTP" if listener_protocol == "HTTP" else "TCP")
        rows.member(pool, "192.0.2.101", 80)
    return rows.build()


@case
def case_headers(rows: Any) -> LoadBalancerView:
    listener = rows.listener(
        "HTTP",
        80,
        insert_headers={
            "X-Forwarded-For": "true",
            "X-Forwarded-Port": "True",
            "X-Forwarded-Proto": "true",
            "X-Real-IP": "true",
            "X-Client-IP": "true",
            "X-Forwarded-IP": "true",
            # Ignored: switched off, or about a client certificate this listener cannot see.
            "X-Forwarded-Host": "false",
            "X-SSL-Client-CN": "true",
        },
    )
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.111", 80)
    return rows.build()


@case
def case_allowed_cidrs(rows: Any) -> LoadBalancerView:
    cidrs = [f"10.{i}.0.0/16" for i in range(20)] + ["2001:db8::/32", "192.0.2.7/24", "198.51.100.1"]
    http = rows.listener("HTTP", 80, allowed_cidrs=cidrs)
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", http), "192.0.2.121", 80)
    tcp = rows.listener("TCP", 22, allowed_cidrs=["203.0.113.0/24"])
    rows.member(rows.pool("TCP", "ROUND_ROBIN", tcp), "192.0.2.122", 22)
    return rows.build()


@case
def case_disabled_objects(rows: Any) -> LoadBalancerView:
    live = rows.listener("HTTP", 80)
    pool = rows.pool("HTTP", "ROUND_ROBIN", live)
    rows.monitor(pool, "HTTP")
    rows.member(pool, "192.0.2.131", 80)
    rows.member(pool, "192.0.2.132", 80, admin_state_up=False)
    rows.member(pool, "192.0.2.133", 80, weight=0)  # draining
    rows.member(pool, "192.0.2.134", 80, backup=True)
    rows.member(pool, "192.0.2.135", 80, backup=True, weight=2)
    stopped = rows.listener("HTTP", 81, admin_state_up=False)
    stopped.default_pool_id = pool.id
    orphan = rows.listener("HTTP", 82)  # its default pool is disabled: HAProxy answers 503
    rows.pool("HTTP", "ROUND_ROBIN", orphan, admin_state_up=False)
    rows.listener("UDP", 53)  # served by keepalived, not HAProxy
    return rows.build()


@case
def case_lb_disabled(rows: Any) -> LoadBalancerView:
    rows.lb.admin_state_up = False
    listener = rows.listener("HTTP", 80)
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.monitor(pool, "TCP")
    rows.member(pool, "192.0.2.141", 80)
    return rows.build()


@case
def case_empty(rows: Any) -> LoadBalancerView:
    return rows.build()


@case
def case_maxconn(rows: Any) -> LoadBalancerView:
    for port, limit in ((80, -1), (81, 100), (82, 100000), (83, 0), (84, 5000)):
        listener = rows.listener("HTTP", port, connection_limit=limit)
        rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), "192.0.2.151", 80)
    return rows.build(max_connections=5000)


@case
def case_timeouts_and_vips(rows: Any) -> LoadBalancerView:
    listener = rows.listener(
        "HTTP",
        80,
        timeout_client_data=1000,
        timeout_member_connect=250,
        timeout_member_data=2073600000,
        timeout_tcp_inspect=500,
    )
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), "2001:db8::161", 80)
    # Octavia's 0 means "no timeout": HAProxy would warn about an infinite one, so it gets Octavia's 24 days.
    unbounded = rows.listener(
        "TCP", 22, timeout_client_data=0, timeout_member_connect=0, timeout_member_data=0, timeout_tcp_inspect=0
    )
    rows.member(rows.pool("TCP", "ROUND_ROBIN", unbounded), "2001:db8::162", 22)
    return rows.build(
        vip_address="2001:db8:100::10",
        additional_vip_addresses=["203.0.113.20"],
        hard_stop_after_s=300,
        log_target="stdout",
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, rows: Any, renderer: HaproxyRenderer, haproxy_check: Any, golden: Any) -> None:
    view = CASES[name](rows)
    rendered = renderer.render(view)
    haproxy_check(rendered, name)
    golden(f"{name}.cfg", rendered.config)
    for path, content in rendered.files.items():
        golden(f"{name}.{path.rsplit('/', 1)[-1]}", content)
