"""Who is at the other end of a connection: its verified client certificate's names, and whether
they (or, without TLS, its address) make it one of the cluster's members.

Replicas' certificates name their addresses (an IP or DNS subject alternative name, or the CN,
equal to a member's host); users' certificates do not. Access control reads this to believe an
identity a member forwards (:mod:`zotpy.auth.mtls`); the cluster's own endpoints read it to accept
member traffic only (:mod:`zotpy.cluster.pulls`).
"""

from __future__ import annotations

import ipaddress
from typing import Collection

from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.web.iweb import IRequest


def peer_certificate(request: IRequest) -> x509.Certificate | None:
    """The client certificate the TLS handshake verified, or None (plain HTTP, no certificate)."""
    transport = getattr(getattr(request, "channel", None), "transport", None)
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        certificate = get()
    except Exception:
        return None
    if certificate is None:
        return None
    return certificate.to_cryptography()  # type: ignore[no-any-return]


def common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def certificate_names(certificate: x509.Certificate) -> set[str]:
    """The CN and every DNS and IP subject alternative name."""
    found = {common_name(certificate)}
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return found
    found.update(alternatives.get_values_for_type(x509.DNSName))
    found.update(str(address) for address in alternatives.get_values_for_type(x509.IPAddress))
    return found


def member_host(member: str) -> str:
    """The host of a ``host:port`` member, an IP in its canonical spelling or a lower-case name."""
    host = member.rpartition(":")[0].strip("[]")
    return _canonical(host)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def from_member(request: IRequest, member_hosts: Collection[str]) -> bool:
    """Whether ``request`` came from a cluster member: its verified certificate names one, or, on a
    connection without a client certificate, its source address is a member's host."""
    certificate = peer_certificate(request)
    if certificate is not None:
        return bool(certificate_names(certificate) & set(member_hosts))
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    return isinstance(host, str) and _canonical(host) in member_hosts
