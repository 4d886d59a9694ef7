"""Render the ``vrrp_instance`` an ACTIVE_STANDBY amphora's keepalived runs (see ``templates/keepalived.conf.j2``).

As for HAProxy, the template sees a flat, typed view (:class:`VrrpView`), never database rows, and every value
passes a filter that refuses anything that could change the configuration's structure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import jinja2

__all__ = ["VrrpOptions", "VrrpRenderer", "VrrpView", "create_environment"]

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class VrrpView:
    """What one amphora's VRRP instance needs."""

    amphora_id: str
    load_balancer_id: str
    name: str  # the instance's name (one per load balancer, the same on both amphorae)
    interface: str  # the amphora's interface on the load balancer's link
    vrrp_id: int
    priority: int
    advert_int_s: float
    own_ip: str
    peers: tuple[str, ...]
    vip: str
    garp_refresh_s: int = 5  # Octavia's vrrp_garp_refresh_interval ...
    garp_refresh_repeat: int = 2  # ... and vrrp_garp_refresh_count


class UnsafeValue(ValueError):
    """A value that would not stay a single token of keepalived's configuration."""


def _ident(value: object) -> str:
    text = str(value)
    if not _IDENT.fullmatch(text):
        raise UnsafeValue(f"not an identifier: {text!r}")
    return text


def _ipv4(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise UnsafeValue(f"not an IPv4 address: {value!r}") from None


def _bounded(low: int, high: int, what: str):  # noqa: ANN202 - a filter factory
    def check(value: object) -> str:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UnsafeValue(f"{what} must be an integer from {low} to {high}, not {value!r}")
        return str(value)

    return check


def _advert(value: object) -> str:
    # VRRPv3 counts centiseconds: 0.01 s to 40.95 s.
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.01 <= value <= 40.95:
        raise UnsafeValue(f"advert_int must be from 0.01 to 40.95 seconds, not {value!r}")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def create_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("octavia_mesh.worker.vrrp", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a configuration file; the filters keep values single tokens
    )
    env.filters.update(
        ident=_ident,
        ipv4=_ipv4,
        vrid=_bounded(1, 255, "virtual_router_id"),
        priority=_bounded(1, 254, "priority"),
        count=_bounded(0, 3600, "count"),
        advert=_advert,
    )
    return env


class VrrpRenderer:
    """Renders :class:`VrrpView` objects with an injected environment."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self._template = environment.get_template("keepalived.conf.j2")

    def render(self, view: VrrpView) -> str:
        if view.own_ip in view.peers:
            raise UnsafeValue(f"{view.own_ip} is both the amphora's own address and a peer")
        return self._template.render(v=view)


@dataclass(frozen=True, slots=True)
class VrrpOptions:
    """What the ACTIVE_STANDBY flows need besides the provider's other dependencies."""

    renderer: VrrpRenderer
    advert_int_s: float = 0.1
    #: How long a pair may take to elect a master, beyond the protocol's own 3 advertisements and skew.
    election_timeout_s: float = 10.0
