"""zotpy.transport.tls: PEM bundles read whole, policies built from file paths."""

from __future__ import annotations

import os

from OpenSSL import SSL
from twisted.trial.unittest import TestCase

from tests.certs import CertificateAuthority
from zotpy.transport.tls import (
    SystemAndExtraTrust,
    VerifyingPolicy,
    VerifyNothing,
    client_policy,
    pem_certificates,
    read_certificates,
)


class TLSTests(TestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.first = CertificateAuthority(os.path.join(self.directory, "one"), name="first CA")
        self.second = CertificateAuthority(os.path.join(self.directory, "two"), name="second CA")
        self.bundle = os.path.join(self.directory, "bundle.pem")
        with open(self.bundle, "wb") as stream:  # a key block between the certificates is skipped
            stream.write(self.first.pair.cert_pem() + self.first.pair.key_pem() + self.second.pair.cert_pem())

    def test_every_certificate_of_a_bundle(self) -> None:
        with open(self.bundle, "rb") as stream:
            names = [cert.getSubject().commonName for cert in pem_certificates(stream.read())]
        names = [name.decode() for name in names]
        self.assertEqual(names, ["first CA", "second CA"])
        self.assertEqual([x509.get_subject().CN for x509 in read_certificates(self.bundle)], names)

    def test_system_plus_extra_trust_and_client_certificate(self) -> None:
        client = self.first.issue("client", [], client=True)
        policy = client_policy(extra_ca_paths=[self.bundle], client_cert=(client.cert_path, client.key_path))
        self.assertIsInstance(policy, VerifyingPolicy)
        self.assertIsInstance(policy.trust, SystemAndExtraTrust)
        self.assertEqual([x509.get_subject().CN for x509 in policy.trust.extra], ["first CA", "second CA"])
        self.assertEqual(policy.client_certificate.getSubject().commonName, b"client")

    def test_bundle_alone_replaces_the_system_store(self) -> None:
        policy = client_policy(extra_ca_paths=[self.bundle], system_trust=False)
        self.assertIsInstance(policy, VerifyingPolicy)
        self.assertNotIsInstance(policy.trust, SystemAndExtraTrust)

    def test_verify_nothing_still_names_the_server_and_presents_the_client(self) -> None:
        client = self.first.issue("client", [], client=True)
        policy = client_policy(
            verify=False, extra_ca_paths=["/nonexistent"], client_cert=(client.cert_path, client.key_path)
        )
        self.assertIsInstance(policy, VerifyNothing)
        creator = policy.creatorForNetloc(b"registry.example", 443)
        self.assertEqual(creator.context.get_verify_mode(), SSL.VERIFY_NONE)
        self.assertEqual(creator.hostname, b"registry.example")
        connection = creator.clientConnectionForTLS(object())
        self.assertEqual(connection.get_certificate().get_subject().CN, "client")
