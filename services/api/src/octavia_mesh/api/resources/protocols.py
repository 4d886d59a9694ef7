"""What listeners, pools and L7 policies share: the listener/pool protocol matrix and the TLS options.

Octavia's ``VALID_LISTENER_POOL_PROTOCOL_MAP``, its default TLS versions,
ALPN protocols and ciphers, the checks of the TLS lists it runs on both
listeners and pools, and the validation of their certificate references
against the local secret store (Octavia's ``_validate_tls_refs`` and
``_validate_client_ca_and_crl_refs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import tls_refs
from octavia_mesh.api.app import App
from octavia_mesh.api.errors import InvalidInput, ValidationFailure
from octavia_mesh.api.resources import providers
from octavia_mesh.common import secrets

#: Which pool protocols a listener protocol may forward to.
PROTOCOL_MAP: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTP", "PROXY", "PROXYV2"),
    "HTTPS": ("HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TCP": ("HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TERMINATED_HTTPS": ("HTTP", "PROXY", "PROXYV2"),
    "UDP": ("UDP",),
    "SCTP": ("SCTP",),
    "PROMETHEUS": (),
}
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
ALPN_PROTOCOLS = ("http/1.0", "http/1.1", "h2")
DEFAULT_TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
DEFAULT_ALPN = ("h2", "http/1.1", "http/1.0")
#: Octavia's default_listener_ciphers / default_pool_ciphers (OWASP suite B).
DEFAULT_CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)

#: The ``alpn_protocols`` attribute of listeners and pools.
alpn_list = s.choices_list(ALPN_PROTOCOLS, "Value should be a valid ALPN protocol ID")


def tls_defaults() -> dict[str, str | list[str]]:
    """Fresh copies of the TLS defaults (lists are stored in rows, so never shared)."""
    return {
        "tls_ciphers": DEFAULT_CIPHERS,
        "tls_versions": list(DEFAULT_TLS_VERSIONS),
        "alpn_protocols": list(DEFAULT_ALPN),
    }


def check_protocols(listener_protocol: str, pool_protocol: str) -> None:
    """The listener/pool protocol matrix (400 as Octavia words it)."""
    if listener_protocol == "PROMETHEUS":
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if pool_protocol not in PROTOCOL_MAP.get(listener_protocol, ()):
        raise ValidationFailure(
            f"The pool protocol '{pool_protocol}' is invalid while the listener protocol is '{listener_protocol}'."
        )


def check_tls_versions(versions: list[str] | None) -> None:
    if versions == []:
        raise ValidationFailure(
            "Empty TLS version list. Either specify at least one TLS version or remove this parameter to use "
            "the default."
        )
    bad = [v for v in versions or [] if v not in TLS_VERSIONS]
    if bad:
        raise ValidationFailure(f"Invalid TLS versions: {', '.join(bad)}")


def check_alpn(protocols: list[str] | None) -> None:
    if protocols == []:
        raise ValidationFailure(
            "Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this parameter to use "
            "the default."
        )


# --- certificate references --------------------------------------------------


async def _checks_certificates(app: App, provider: str) -> bool:
    """Whether ``provider`` uses the certificates it is given: one that uses none (the noop provider, like
    Octavia's no-op certificate manager) takes any reference (octavia-tempest-plugin's noop jobs create TLS
    listeners with made-up refs). A fact the provider publishes (``Facts.checks_certificates``)."""
    return (await providers.facts_of(app, provider)).checks_certificates


async def check_certificate_refs(
    app: App, session: AsyncSession, project_id: str | None, refs: Iterable[str | None], *, provider: str
) -> None:
    """Every reference names a usable certificate bundle of ``project_id`` (Octavia's ``_validate_tls_refs``)."""
    given = [r for r in refs if r]  # Octavia lists a bad reference as often as it is given
    if not given or not await _checks_certificates(app, provider):
        return
    bad = []
    for ref in given:
        try:
            await tls_refs.resolve_bundle(app, session, ref, project_id)
        except secrets.UnreadablePkcs12 as exc:
            raise InvalidInput(
                "The PKCS12 bundle is unreadable. Please check the PKCS12 bundle validity. In addition, make sure it "
                f"does not require a pass phrase. Error: {exc.error}"
            ) from None
        except secrets.BadReference:
            bad.append(ref)
    if bad:
        raise InvalidInput(f"Could not retrieve certificate: {bad!r}")


async def check_ca_and_crl(
    app: App, session: AsyncSession, project_id: str | None, ca_ref: str | None, crl_ref: str | None, *, provider: str
) -> None:
    """A CA certificate and its optional CRL (Octavia's ``_validate_client_ca_and_crl_refs``, same wording)."""
    if not await _checks_certificates(app, provider):
        return
    payloads: dict[str, bytes] = {}
    bad = []
    for ref in (ca_ref, crl_ref):
        if ref:
            try:
                payloads[ref] = await tls_refs.resolve_secret(app, session, ref, project_id)
            except secrets.BadReference:
                bad.append(ref)
    if bad:
        raise InvalidInput(f"Could not retrieve certificate: {bad!r}")
    if not ca_ref:
        return
    try:
        ca = x509.load_pem_x509_certificate(payloads[ca_ref])
    except ValueError as exc:
        raise ValidationFailure(
            "The client authentication CA certificate is invalid. It must be a valid x509 PEM format certificate. "
            f"Error: {exc}"
        ) from None
    if not crl_ref:
        return
    try:
        crl = x509.load_pem_x509_crl(payloads[crl_ref])
    except ValueError as exc:
        raise ValidationFailure(
            "The client authentication certificate revocation list is invalid. It must be a valid x509 PEM format "
            f"certificate revocation list. Error: {exc}"
        ) from None
    try:
        # A CA key that cannot sign (X25519, X448) is refused here with a TypeError, as an invalid CRL.
        valid = crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, ca.public_key()))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValidationFailure("The CRL specified is not valid for client certificate authority reference supplied.")


async def check_listener_refs(
    app: App, session: AsyncSession, project_id: str | None, values: dict[str, Any], row: Any = None, *, provider: str
) -> None:
    """The certificate references resolve in the local secret store, within the listener's project.

    As Octavia: the SNI and default certificates given, then the client CA with its CRL. On update the CA and
    CRL are checked again (with the stored one standing in for the other) only when the request changes one.
    """
    await check_certificate_refs(
        app,
        session,
        project_id,
        [*(values.get("sni_container_refs") or []), values.get("default_tls_container_ref")],
        provider=provider,
    )
    if row is not None and "client_ca_tls_container_ref" not in values and "client_crl_container_ref" not in values:
        return
    ca = values.get("client_ca_tls_container_ref") or getattr(row, "client_ca_tls_container_ref", None)
    crl = values.get("client_crl_container_ref") or getattr(row, "client_crl_container_ref", None)
    if ca or crl:
        await check_ca_and_crl(app, session, project_id, ca, crl, provider=provider)
