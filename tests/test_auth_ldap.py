"""LDAP authentication (zotpy.auth.ldap) against a real slapd started by the test."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from tests.certs import CertificateAuthority
from tests.ldapserver import SEARCH_DN, SEARCH_PASSWORD, SUFFIX, Slapd
from tests.support import http_client, local_store, serve
from tests.test_api import async_test
from zotpy.api.site import registry_resource
from zotpy.auth.factory import protected
from zotpy.auth.identity import AuthenticationFailed, Identity
from zotpy.auth.ldap import LDAPChecker
from zotpy.config import ConfigError, parse_config
from zotpy.oci.errors import RegistryError


def ldap_section(server: Slapd, credentials_file: str, **extra: Any) -> dict[str, Any]:
    return {
        "address": "127.0.0.1", "port": server.port, "insecure": True, "credentialsFile": credentials_file,
        "baseDN": f"ou=Users,{SUFFIX}", "userAttribute": "uid", "userGroupAttribute": "memberOf",
        "userFilter": "(objectClass=inetOrgPerson)", "subtreeSearch": True, **extra,
    }


def start_directory(testcase: unittest.TestCase, server: Slapd) -> str:
    """Start ``server`` for the test; the path of a zot ``credentialsFile`` for its search user."""
    server.start()
    testcase.addCleanup(server.stop)
    credentials = os.path.join(server.directory, "ldap-credentials.json")
    with open(credentials, "w") as stream:
        json.dump({"bindDN": SEARCH_DN, "bindPassword": SEARCH_PASSWORD}, stream)
    return credentials


class LDAPTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.server = Slapd(os.path.join(self.directory, "slapd"),
                            {"alice": "alice-pw", "bob": "bob-pw"}, {"devs": ["alice"]})
        self.credentials = start_directory(self, self.server)

    def config(self, **http: Any) -> Any:
        return parse_config({
            "storage": {"rootDirectory": "/unused", "gc": False, "dedupe": False},
            "http": {"auth": {"ldap": ldap_section(self.server, self.credentials)}, **http},
        })

    def checker(self) -> LDAPChecker:
        return LDAPChecker(self.config().http.auth.ldap, reactor)

    @async_test
    async def test_bind_search_bind(self) -> None:
        checker = self.checker()
        self.assertEqual(await checker.check("alice", "alice-pw"),
                         Identity("alice", frozenset({f"cn=devs,ou=Groups,{SUFFIX}"})))
        self.assertEqual(await checker.check("bob", "bob-pw"), Identity("bob"))
        for user, password in [("alice", "wrong"), ("nobody", "x"), ("alice", ""), ("*", "alice-pw"),
                                ("alice)(uid=*", "alice-pw"), ("searcher", SEARCH_PASSWORD)]:
            with self.assertRaises(AuthenticationFailed, msg=user):
                await checker.check(user, password)

    @async_test
    async def test_directory_down_is_503(self) -> None:
        config = self.config(accessControl={"repositories": {"**": {"policies": [
            {"groups": [f"cn=devs,ou=Groups,{SUFFIX}"], "actions": ["read", "create"]}], "defaultPolicy": []}}})
        base = await serve(self, protected(config, registry_resource(local_store(os.path.join(self.directory, "root"))),
                                           reactor, reactor.getThreadPool()))
        http = http_client(self)

        async def get(user: str, password: str, path: str = "/v2/team/x/tags/list") -> tuple[int, Any]:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            response = await http.get(base + path, headers={"Authorization": f"Basic {token}"})
            return response.code, json.loads(await response.content())

        self.assertEqual((await get("alice", "alice-pw"))[0], 404)  # allowed (group), no such repository
        self.assertEqual((await get("bob", "bob-pw"))[0], 403)  # authenticated, no policy for him
        self.assertEqual((await get("bob", "wrong"))[0], 401)
        self.server.stop()
        status, body = await get("carol", "carol-pw")
        self.assertEqual((status, body["errors"][0]["code"]), (503, "UNAVAILABLE"))
        # Still cached from before the outage: alice keeps working.
        self.assertEqual((await get("alice", "alice-pw"))[0], 404)

    def test_settings(self) -> None:
        error = self.assertRaises(ConfigError, parse_config, {
            "storage": {"rootDirectory": "/unused"},
            "http": {"auth": {"ldap": {"address": "x", "port": "ldap", "userFilter": "(((",
                                       "credentialsFile": "/nonexistent.json"}}},
        })
        self.assertEqual(sorted(path for path, _ in error.problems), [
            "http.auth.ldap.baseDN", "http.auth.ldap.credentialsFile", "http.auth.ldap.port",
            "http.auth.ldap.userAttribute", "http.auth.ldap.userFilter",
        ])
        settings = self.config().http.auth.ldap
        self.assertEqual((settings.bind_dn, settings.port, settings.insecure), (SEARCH_DN, self.server.port, True))
        self.assertNotIn(SEARCH_PASSWORD, repr(settings))


class LDAPTLSTests(unittest.TestCase):
    """zot's TLS keys against slapd serving a certificate from a test CA: LDAPS (the default), StartTLS
    on the plain port, ``caCert`` (the CA to trust), ``skipVerify``. A server that cannot be verified
    is unavailable (503), not a wrong password."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        authority = CertificateAuthority(os.path.join(self.directory, "certs"))
        self.ca = authority.pair.cert_path
        self.server = Slapd(os.path.join(self.directory, "slapd"), {"alice": "alice-pw"}, {},
                            tls=authority.issue("ldap", ["127.0.0.1"]))
        self.credentials = start_directory(self, self.server)

    def checker(self, **tls: Any) -> LDAPChecker:
        section = {**ldap_section(self.server, self.credentials), "insecure": False, **tls}
        config = parse_config({"storage": {"rootDirectory": "/unused"}, "http": {"auth": {"ldap": section}}})
        return LDAPChecker(config.http.auth.ldap, reactor)

    @async_test
    async def test_ldaps_and_starttls_verified_by_ca_cert(self) -> None:
        for tls in ({"port": self.server.tls_port, "caCert": self.ca},
                    {"port": self.server.port, "startTLS": True, "caCert": self.ca},
                    {"port": self.server.tls_port, "skipVerify": True}):
            checker = self.checker(**tls)
            self.assertEqual(await checker.check("alice", "alice-pw"), Identity("alice"), tls)
            with self.assertRaises(AuthenticationFailed, msg=str(tls)):
                await checker.check("alice", "wrong")

    @async_test
    async def test_unverifiable_server_is_unavailable(self) -> None:
        for tls in ({"port": self.server.tls_port}, {"port": self.server.port, "startTLS": True}):
            error = await self.assertFailure(self.checker(**tls).check("alice", "alice-pw"), RegistryError)
            self.assertEqual(error.code, "UNAVAILABLE", tls)
