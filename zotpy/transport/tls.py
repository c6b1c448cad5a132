"""TLS for zotpy's outgoing connections (peers, S3, sync upstreams) and PEM loading for its listener.

One home for what used to be written per client: splitting a PEM bundle into certificates, trusting
the system's CAs plus extra ones, presenting a client certificate, and zot's ``skipverify`` /
``tlsVerify: false`` (encrypt, verify nothing). Everything takes file paths, not config objects, so
the config, cluster, storage and sync packages each map their own keys onto it and none has to
import another's settings just for TLS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from zotpy.transport.twisted_private import IOpenSSLTrustRoot

__all__ = [
    "SystemAndExtraTrust",
    "VerifyNothing",
    "VerifyingPolicy",
    "client_policy",
    "pem_certificates",
    "read_certificates",
    "read_client_certificate",
]

_END = b"-----END CERTIFICATE-----"


def pem_certificates(data: bytes) -> list[ssl.Certificate]:
    """Every certificate of a PEM bundle, in order (Twisted's ``loadPEM`` reads only the first);
    other blocks (keys, parameters) are skipped."""
    return [ssl.Certificate.loadPEM(block + _END) for block in data.split(_END) if b"BEGIN CERTIFICATE" in block]


def read_certificates(path: str) -> list[crypto.X509]:
    """The certificates of the PEM file at ``path``, as pyOpenSSL objects for a trust store."""
    with open(path, "rb") as stream:
        return [certificate.original for certificate in pem_certificates(stream.read())]


def read_client_certificate(cert_path: str, key_path: str) -> ssl.PrivateCertificate:
    """The certificate and private key a client presents (mutual TLS)."""
    with open(cert_path, "rb") as cert, open(key_path, "rb") as key:
        return ssl.PrivateCertificate.loadPEM(cert.read() + b"\n" + key.read())


@implementer(IOpenSSLTrustRoot)
@attrs.frozen
class SystemAndExtraTrust:
    """The platform's CAs plus extra CA certificates (a cluster's or an upstream's private CA):
    Twisted offers one or the other, not both."""

    extra: tuple[crypto.X509, ...] = ()

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self.extra:
            store.add_cert(certificate)


@implementer(IPolicyForHTTPS)
@attrs.frozen
class VerifyingPolicy:
    """Verify the server against ``trust`` by host name or IP SAN (service-identity), presenting
    ``client_certificate`` when there is one."""

    trust: Any
    client_certificate: ssl.PrivateCertificate | None = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self.trust, clientCertificate=self.client_certificate
        )


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedConnections:
    """Connections that still send the server name (SNI: many servers pick their certificate or
    tenant by it) and the client certificate, but accept any server certificate."""

    def __init__(self, hostname: str, client_certificate: ssl.PrivateCertificate | None) -> None:
        self.context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self.context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        if client_certificate is not None:
            self.context.use_certificate(client_certificate.original)
            self.context.use_privatekey(client_certificate.privateKey.original)
        self.hostname = hostname.encode("idna")

    def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(protocol)
        connection.set_tlsext_host_name(self.hostname)
        return connection


@implementer(IPolicyForHTTPS)
@attrs.frozen
class VerifyNothing:
    """zot's ``skipverify`` (S3) and ``tlsVerify: false`` (sync): encrypted, nothing verified (test
    setups, self-signed servers)."""

    client_certificate: ssl.PrivateCertificate | None = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return _UnverifiedConnections(hostname.decode("ascii"), self.client_certificate)


def client_policy(
    *,
    verify: bool = True,
    extra_ca_paths: Iterable[str] = (),
    client_cert: tuple[str, str] | None = None,
    system_trust: bool = True,
) -> IPolicyForHTTPS:
    """The TLS policy of one kind of outgoing connection, from file paths: trust the system's CAs
    (unless ``system_trust`` is false) plus the PEM files in ``extra_ca_paths``, present
    ``client_cert`` (certificate path, key path) if given, or verify nothing when ``verify`` is false."""
    client = read_client_certificate(*client_cert) if client_cert is not None else None
    if not verify:
        return VerifyNothing(client)
    extra = [certificate for path in extra_ca_paths for certificate in read_certificates(path)]
    if system_trust:
        return VerifyingPolicy(SystemAndExtraTrust(tuple(extra)), client)
    return VerifyingPolicy(ssl.trustRootFromCertificates([ssl.Certificate(x509) for x509 in extra]), client)
