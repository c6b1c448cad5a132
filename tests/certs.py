"""Certificates generated per test with ``cryptography``: a CA and leaf certificates with IP SANs."""

from __future__ import annotations

import datetime
import ipaddress
import os

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@attrs.frozen
class PemPair:
    cert_path: str
    key_path: str

    def cert_pem(self) -> bytes:
        with open(self.cert_path, "rb") as stream:
            return stream.read()

    def key_pem(self) -> bytes:
        with open(self.key_path, "rb") as stream:
            return stream.read()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: str, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> PemPair:
    os.makedirs(directory, exist_ok=True)
    pair = PemPair(os.path.join(directory, f"{stem}.crt"), os.path.join(directory, f"{stem}.key"))
    with open(pair.cert_path, "wb") as stream:
        stream.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(pair.key_path, "wb") as stream:
        stream.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return pair


@attrs.define
class CertificateAuthority:
    """A throwaway CA that signs server and client certificates into ``directory``."""

    directory: str
    name: str = "zotpy test CA"
    key: ec.EllipticCurvePrivateKey = attrs.field(init=False)
    certificate: x509.Certificate = attrs.field(init=False)
    pair: PemPair = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pair = _write(self.directory, "ca", self.certificate, self.key)

    def issue(self, stem: str, hosts: list[str], client: bool = False) -> PemPair:
        """A leaf certificate for ``hosts`` (IP addresses become IP SANs, others DNS SANs)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0] if hosts else stem))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(usage if client or hosts else usage[1:]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _write(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key)
