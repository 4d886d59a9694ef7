"""Unit tests of ``build()`` (ORM rows -> view) and of the renderer's environment."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import uuid
from typing import Any

import jinja2
import pytest

from octavia_mesh.common.db import models
from octavia_mesh.worker.haproxy import view as v
from octavia_mesh.worker.haproxy.render import HaproxyRenderer, create_environment
from octavia_mesh.worker.haproxy.syntax import ConfigError, status_regex


def test_view_classes_are_frozen_and_slotted() -> None:
    for cls in (v.LoadBalancerView, v.Globals, v.Frontend, v.FrontendTls, v.TlsParams, v.Hsts, v.Policy, v.Rule):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__
    for cls in (v.Backend, v.Server, v.ServerTls, v.Monitor):
        assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__


def test_environment_settings() -> None:
    env = create_environment()
    assert env.undefined is jinja2.StrictUndefined
    assert env.trim_blocks and env.lstrip_blocks and env.keep_trailing_newline
    assert not env.autoescape


def test_listeners_in_port_order_with_one_backend_per_pool_and_listener(rows: Any) -> None:
    second = rows.listener("HTTP", 8080)
    first = rows.listener("TCP", 22)
    pool = rows.pool("HTTP", "ROUND_ROBIN", second)
    rows.member(pool, "192.0.2.1", 80)
    first_pool = rows.pool("TCP", "SOURCE_IP", first)
    rows.member(first_pool, "192.0.2.2", 22)
    shared = rows.listener("HTTP", 8081)
    shared.default_pool_id = pool.id
    view = rows.build()
    assert [(f.name, f.port, f.mode) for f in view.frontends] == [
        (first.id, 22, v.Mode.TCP),
        (second.id, 8080, v.Mode.HTTP),
        (shared.id, 8081, v.Mode.HTTP),
    ]
    assert [b.name for b in view.backends] == [
        f"{first_pool.id}:{first.id}",
        f"{pool.id}:{second.id}",
        f"{pool.id}:{shared.id}",
    ]
    assert view.frontends[1].default_backend == f"{pool.id}:{second.id}"
    assert view.backends[1].servers == (v.Server(rows.members[0].id, "192.0.2.1", 80, 1, False, True),)


def test_rows_of_other_load_balancers_and_udp_are_ignored(rows: Any) -> None:
    rows.listener("UDP", 53)
    rows.listener("SCTP", 9000)
    foreign = rows.listener("HTTP", 80, load_balancer_id="lb-other")
    rows.pool("HTTP", "ROUND_ROBIN", foreign, load_balancer_id="lb-other")
    assert rows.build().frontends == ()


def test_admin_state(rows: Any) -> None:
    on = rows.listener("HTTP", 80)
    pool = rows.pool("HTTP", "ROUND_ROBIN", on)
    rows.member(pool, "192.0.2.1", 80, admin_state_up=False)
    off = rows.listener("HTTP", 81, admin_state_up=False)
    off.default_pool_id = pool.id
    closed = rows.listener("HTTP", 82)
    rows.pool("HTTP", "ROUND_ROBIN", closed, admin_state_up=False)
    view = rows.build()
    assert [f.enabled for f in view.frontends] == [True, False, True]
    assert [b.enabled for b in view.backends] == [True, False]
    assert view.frontends[2].default_backend is None  # a disabled pool is not served
    assert not view.backends[0].servers[0].enabled

    rows.lb.admin_state_up = False
    view = rows.build()
    assert not any(f.enabled for f in view.frontends) and not any(b.enabled for b in view.backends)


@pytest.mark.parametrize(
    ("limit", "expected"), [(-1, 5000), (None, 5000), (0, 5000), (1, 1), (4999, 4999), (5000, 5000), (10**6, 5000)]
)
def test_connection_limit_is_clamped_to_the_cap(rows: Any, limit: int | None, expected: int) -> None:
    rows.listener("HTTP", 80, connection_limit=limit)
    view = rows.build(max_connections=5000)
    assert (view.frontends[0].maxconn, view.globals.maxconn) == (expected, 5000)


def test_connection_cap() -> None:
    assert v.connection_cap(20000) == 9500
    assert v.connection_cap(20000, reserved_fds=100) == 9950
    assert v.connection_cap(100) == 1
    assert v.connection_cap() == max(1, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - v.DEFAULT_RESERVED_FDS) // 2)
    with pytest.raises(ConfigError):
        v.build(models.LoadBalancer(id="x"), [], [], [], [], [], [], vip_address="192.0.2.1", tls_files={},
                runtime_dir="/run", max_connections=0)  # fmt: skip


def test_octavia_defaults_fill_nulls(rows: Any) -> None:
    listener = rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www")
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener, tls_enabled=True)
    rows.monitor(
        pool, "HTTP", max_retries_down=None, http_method=None, url_path=None, expected_codes=None, http_version=None
    )
    view = rows.build(runtime_dir="/run/amp")
    frontend, backend = view.frontends[0], view.backends[0]
    assert (frontend.timeout_client_ms, frontend.timeout_tcp_inspect_ms) == (50000, 0)
    assert (backend.timeout_connect_ms, backend.timeout_server_ms) == (5000, 50000)
    assert frontend.tls is not None and backend.tls is not None
    assert frontend.tls.params == v.TlsParams(("TLSv1.2", "TLSv1.3"), None, None, ("h2", "http/1.1", "http/1.0"))
    assert frontend.tls.crt_list == f"/run/amp/{listener.id}.crt-list"
    assert backend.tls.params == frontend.tls.params
    assert backend.monitor == v.Monitor(v.MonitorType.HTTP, 5, 3, 2, 3, "GET", "/", "200", "1.0", None)
    assert view.globals == v.Globals(
        9000, "/run/amp/haproxy.sock", "/run/amp/servers.state", 60, None, "/run/amp/peers.sock"
    )


def test_tls_files_and_client_authentication(rows: Any) -> None:
    listener = rows.listener(
        "TERMINATED_HTTPS",
        443,
        default_tls_container_ref="ref:www",
        sni_container_refs=["ref:api", "ref:www", "ref:api"],
        client_authentication="MANDATORY",
        client_ca_tls_container_ref="ref:client-ca",
        client_crl_container_ref="ref:client-crl",
        tls_versions=["TLSv1.3", "TLSv1.2"],
        tls_ciphers="TLS_AES_256_GCM_SHA384:ECDHE-RSA-AES128-GCM-SHA256::TLS_AES_128_GCM_SHA256",
        alpn_protocols=["http/1.1", "h2", "h2"],
    )
    tls = rows.build(tls_files={"ref:www": "/c/www.pem", "ref:api": "/c/api.pem", "ref:client-ca": "/c/ca.pem",
                                "ref:client-crl": "/c/crl.pem"}).frontends[0].tls  # fmt: skip
    assert tls is not None
    assert tls.certificates == ("/c/www.pem", "/c/api.pem")  # default first, no duplicates
    assert (tls.client_auth, tls.client_ca, tls.client_crl) == (v.ClientAuth.MANDATORY, "/c/ca.pem", "/c/crl.pem")
    assert tls.params == v.TlsParams(
        ("TLSv1.2", "TLSv1.3"),
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
        ("http/1.1", "h2"),
    )
    with pytest.raises(ConfigError, match="no PEM file"):
        rows.build(tls_files={"ref:www": "/c/www.pem"})
    listener.client_authentication = "NONE"  # the CA and CRL are then unused, and not required
    assert rows.build(tls_files={"ref:www": "/c/www.pem", "ref:api": "/c/api.pem"}).frontends[0].tls.client_ca is None
    listener.client_authentication = "OPTIONAL"
    listener.client_ca_tls_container_ref = None
    with pytest.raises(ConfigError, match="no client CA"):
        rows.build()
    listener.client_authentication = "NONE"
    listener.default_tls_container_ref = None
    with pytest.raises(ConfigError, match="no default certificate"):
        rows.build()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tls_versions", ["TLSv1.4"]),
        ("tls_versions", []),
        ("alpn_protocols", ["spdy/3"]),
        ("client_authentication", "ON"),
    ],
)
def test_invalid_tls_settings_are_refused(rows: Any, field: str, value: Any) -> None:
    rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www", **{field: value})
    with pytest.raises(ConfigError):
        rows.build()


def test_reencryption(rows: Any) -> None:
    terminated = rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www")
    pool = rows.pool(
        "HTTP",
        "ROUND_ROBIN",
        terminated,
        tls_enabled=True,
        tls_container_ref="ref:member-client",
        crl_container_ref="ref:member-crl",
    )
    plain = rows.listener("TCP", 8443)
    plain.default_pool_id = rows.pool("TCP", "ROUND_ROBIN", tls_enabled=True, ca_tls_container_ref="ref:member-ca").id
    first, second = (b.tls for b in rows.build().backends)
    assert first is not None and second is not None
    assert (first.client_cert, first.ca, first.crl, first.forward_sni) == (
        "/var/lib/octavia-mesh/amphora/certs/member-client.pem",
        None,
        None,  # a CRL without a CA verifies nothing
        True,
    )
    assert (second.ca is not None, second.forward_sni, second.params.alpn) == (True, False, ())  # no ALPN in TCP mode
    pool.tls_enabled = False
    assert rows.build().backends[0].tls is None


def test_insert_headers(rows: Any) -> None:
    every = {h.value: "true" for h in v.InsertHeader}
    http = rows.listener("HTTP", 80, insert_headers={**every, "X-Forwarded-Port": "False", "x-real-ip": True})
    terminated = rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www", insert_headers=every)
    tcp = rows.listener("TCP", 22, insert_headers=every)
    headers = {f.name: f.insert_headers for f in rows.build().frontends}
    assert v.InsertHeader.X_FORWARDED_PORT not in headers[http.id]
    assert v.InsertHeader.X_REAL_IP in headers[http.id]
    assert not v.CLIENT_CERT_HEADERS & set(headers[http.id])
    assert headers[terminated.id] == tuple(v.InsertHeader)
    assert headers[tcp.id] == ()


def test_hsts_only_on_terminated_https(rows: Any) -> None:
    rows.listener("HTTP", 80, hsts_max_age=100)
    rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www", hsts_max_age=100, hsts_preload=True)
    assert [f.hsts for f in rows.build().frontends] == [None, v.Hsts(100, False, True)]


def test_l7_policies(rows: Any) -> None:
    listener = rows.listener("HTTP", 80)
    target = rows.pool("HTTP", "ROUND_ROBIN")
    closed = rows.pool("HTTP", "ROUND_ROBIN", admin_state_up=False)
    late = rows.policy(listener, "REJECT", position=3)
    late_rule = rows.rule(late, "PATH", "EQUAL_TO", "/late")
    rows.rule(late, "PATH", "EQUAL_TO", "/off", admin_state_up=False)
    early = rows.policy(listener, "REDIRECT_TO_POOL", position=1, redirect_pool_id=target.id)
    early_rule = rows.rule(early, "HOST_NAME", "EQUAL_TO", "a.example.com", invert=True)
    url = rows.policy(listener, "REDIRECT_TO_URL", position=2, redirect_url="https://x", redirect_http_code=None)
    rows.rule(url, "PATH", "EQUAL_TO", "/url")
    rows.rule(rows.policy(listener, "REJECT", position=4, admin_state_up=False), "PATH", "EQUAL_TO", "/a")
    rows.rule(
        rows.policy(listener, "REDIRECT_TO_POOL", position=5, redirect_pool_id=closed.id), "PATH", "EQUAL_TO", "/b"
    )
    rows.rule(
        rows.policy(listener, "REDIRECT_TO_POOL", position=6, redirect_pool_id="missing"), "PATH", "EQUAL_TO", "/c"
    )
    rows.policy(listener, "REJECT", position=7)  # no rules
    view = rows.build()
    policies = view.frontends[0].policies
    assert [(p.id, p.action) for p in policies] == [
        (early.id, v.L7Action.REDIRECT_TO_POOL),
        (url.id, v.L7Action.REDIRECT_TO_URL),
        (late.id, v.L7Action.REJECT),
    ]
    assert policies[0].rules == (
        v.Rule(early_rule.id, v.RuleType.HOST_NAME, v.CompareType.EQUAL_TO, None, "a.example.com", True),
    )
    assert policies[0].backend == f"{target.id}:{listener.id}"
    assert (policies[1].redirect_url, policies[1].redirect_code) == ("https://x", 302)
    assert [r.id for r in policies[2].rules] == [late_rule.id]
    assert [b.name for b in view.backends] == [f"{target.id}:{listener.id}"]  # only pools in use get a backend


def test_l7_policies_need_an_http_listener(rows: Any) -> None:
    tcp = rows.listener("TCP", 22)
    rows.rule(rows.policy(tcp, "REJECT"), "PATH", "EQUAL_TO", "/")
    assert rows.build().frontends[0].policies == ()


@pytest.mark.parametrize(
    ("action", "fields"), [("REDIRECT_TO_URL", {"redirect_url": None}), ("REDIRECT_PREFIX", {"redirect_prefix": ""})]
)
def test_redirect_without_a_target_is_refused(rows: Any, action: str, fields: dict[str, Any]) -> None:
    rows.rule(rows.policy(rows.listener("HTTP", 80), action, **fields), "PATH", "EQUAL_TO", "/")
    with pytest.raises(ConfigError):
        rows.build()


@pytest.mark.parametrize(
    ("listener", "pool", "mode"),
    [("HTTP", "PROXY", "http"), ("TCP", "PROXYV2", "tcp"), ("TCP", "HTTP", "http"), ("HTTPS", "HTTPS", "tcp")],
)
def test_pool_modes(rows: Any, listener: str, pool: str, mode: str) -> None:
    rows.pool(pool, "ROUND_ROBIN", rows.listener(listener, 80))
    backend = rows.build().backends[0]
    assert backend.mode == mode
    assert backend.proxy_protocol == {"PROXY": v.ProxyProtocol.V1, "PROXYV2": v.ProxyProtocol.V2}.get(pool)


def test_an_http_listener_cannot_use_a_tcp_pool(rows: Any) -> None:
    rows.pool("TCP", "ROUND_ROBIN", rows.listener("HTTP", 80))
    with pytest.raises(ConfigError, match="cannot serve"):
        rows.build()


def test_persistence(rows: Any) -> None:
    pool = rows.pool(
        "HTTP", "ROUND_ROBIN", rows.listener("HTTP", 80), session_persistence={"type": "APP_COOKIE", "cookie_name": "S"}
    )
    assert (rows.build().backends[0].persistence, rows.build().backends[0].cookie_name) == (
        v.Persistence.APP_COOKIE,
        "S",
    )
    pool.session_persistence = {"type": "APP_COOKIE"}
    with pytest.raises(ConfigError, match="cookie_name"):
        rows.build()
    pool.session_persistence = {"type": None}
    assert rows.build().backends[0].persistence is None
    tcp = rows.pool("TCP", "ROUND_ROBIN", rows.listener("TCP", 81), session_persistence={"type": "HTTP_COOKIE"})
    with pytest.raises(ConfigError, match="needs an HTTP pool"):
        rows.build()
    tcp.session_persistence = {"type": "SOURCE_IP"}
    assert rows.build().backends[1].persistence is v.Persistence.SOURCE_IP


def test_monitors(rows: Any) -> None:
    pool = rows.pool("HTTP", "ROUND_ROBIN", rows.listener("HTTP", 80))
    monitor = rows.monitor(pool, "HTTPS", http_version=1.1, domain_name="h.example.com", expected_codes="200-204")
    rows.member(pool, "192.0.2.1", 80, monitor_address="192.0.2.9", monitor_port=9000, weight=0, backup=True)
    backend = rows.build().backends[0]
    assert backend.monitor == v.Monitor(v.MonitorType.HTTPS, 5, 3, 2, 3, "GET", "/", "200-204", "1.1", "h.example.com")
    assert backend.servers[0] == v.Server(rows.members[0].id, "192.0.2.1", 80, 0, True, True, "192.0.2.9", 9000)
    monitor.admin_state_up = False
    assert rows.build().backends[0].monitor is None
    monitor.admin_state_up, monitor.type = True, "UDP-CONNECT"
    with pytest.raises(ConfigError, match="health monitor type"):
        rows.build()


def test_prometheus_listeners_have_no_backend(rows: Any) -> None:
    rows.pool("HTTP", "ROUND_ROBIN", rows.listener("PROMETHEUS", 9100))
    view = rows.build()
    assert (view.frontends[0].default_backend, view.backends, view.frontends[0].mode) == (None, (), v.Mode.HTTP)


def test_uuid_ids_render(rows: Any, renderer: HaproxyRenderer) -> None:
    rows.lb.id = str(uuid.uuid4())
    listener = rows.listener("HTTP", 80, id=str(uuid.uuid4()), load_balancer_id=rows.lb.id)
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener, id=str(uuid.uuid4()), load_balancer_id=rows.lb.id)
    listener.default_pool_id = pool.id
    rows.member(pool, "192.0.2.1", 80, id=str(uuid.uuid4()))
    config = renderer.render(rows.build()).config
    assert f"backend {pool.id}:{listener.id}\n" in config and f"server {rows.members[0].id} " in config


@pytest.mark.parametrize(
    ("codes", "regex"),
    [("200", "^200$"), ("200,202", "^(200|202)$"), ("200, 202", "^(200|202)$"), ("200-202,204", "^(200|201|202|204)$")],
)
def test_expected_codes(codes: str, regex: str) -> None:
    assert status_regex(codes) == regex


def test_hard_stop_after_may_be_left_to_the_agent(rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    """The agent loads its own global fragment first (stats socket, hard-stop-after); both files together pass."""
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", rows.listener("HTTP", 80)), "192.0.2.1", 80)
    rendered = renderer.render(rows.build(hard_stop_after_s=None))
    assert "hard-stop-after" not in rendered.config
    fragment = haproxy_check.root / "agent.cfg"
    fragment.write_text(f"global\n    stats socket {haproxy_check.root}/run/agent.sock mode 600 level admin\n"
                        "    hard-stop-after 30s\n")  # fmt: skip
    config = haproxy_check.materialize(rendered, "with-fragment")
    result = subprocess.run(
        [str(haproxy_check.binary), "-c", "-dW", "-f", str(fragment), "-f", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("target", "line"),
    [
        ("stdout", "log stdout format raw local0"),
        ("/dev/log", "log /dev/log local0"),
        ("192.0.2.5:514", "log 192.0.2.5:514 local0"),
        ("[2001:db8::5]:514", "log [2001:db8::5]:514 local0"),
    ],
)
def test_log_targets(rows: Any, renderer: HaproxyRenderer, haproxy_check: Any, target: str, line: str) -> None:
    rows.member(rows.pool("TCP", "ROUND_ROBIN", rows.listener("TCP", 22)), "192.0.2.1", 22)
    rendered = renderer.render(rows.build(log_target=target))
    assert f"    {line}\n" in rendered.config and "    option tcplog\n" in rendered.config
    haproxy_check(rendered, "log-target")
