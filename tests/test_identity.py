"""Which member am I: zot's rule, and zotpy's http.address rule before it."""

from __future__ import annotations

from twisted.trial import unittest

from zotpy.cluster.identity import IdentityError, identify, local_addresses, resolve, split_member

LOCAL = {"127.0.0.1", "::1", "10.1.2.3"}


def fake_dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolver(host: str) -> list[str]:
        if host in table:
            return table[host]
        if host.replace(".", "").isdigit() or ":" in host:
            return [host]
        raise OSError(f"no such host {host}")

    return resolver


class IdentityTests(unittest.TestCase):
    def test_zot_rule_matches_the_first_local_member(self) -> None:
        members = ["10.9.9.1:9000", "10.9.9.2:9000", "10.1.2.3:9000", "127.0.0.1:9000"]
        identity = identify(members, "0.0.0.0", 9000, lambda: LOCAL, fake_dns({}))
        self.assertEqual((identity.index, identity.member), (2, "10.1.2.3:9000"))

    def test_host_names_are_resolved(self) -> None:
        dns = fake_dns({"zot-server1": ["10.9.9.1"], "zot-server2": ["10.9.9.2"], "zot-server3": ["10.9.9.9", "10.1.2.3"]})
        members = ["zot-server1:9000", "zot-server2:9000", "zot-server3:9000"]
        self.assertEqual(identify(members, "0.0.0.0", 9000, lambda: LOCAL, dns).index, 2)

    def test_port_must_match(self) -> None:
        members = ["127.0.0.1:9001", "127.0.0.1:9000"]
        self.assertEqual(identify(members, "0.0.0.0", 9000, lambda: LOCAL, fake_dns({})).index, 1)

    def test_no_match_refuses_and_lists_members_and_addresses(self) -> None:
        members = ["10.9.9.1:9000", "10.9.9.2:9000"]
        with self.assertRaises(IdentityError) as caught:
            identify(members, "0.0.0.0", 9000, lambda: LOCAL, fake_dns({}))
        message = str(caught.exception)
        self.assertIn("10.9.9.1:9000", message)
        self.assertIn("10.1.2.3", message)

    def test_dns_failure_before_the_match_refuses(self) -> None:
        members = ["unknown-host:9000", "127.0.0.1:9000"]
        with self.assertRaises(IdentityError) as caught:
            identify(members, "0.0.0.0", 9000, lambda: LOCAL, fake_dns({}))
        self.assertIn("unknown-host", str(caught.exception))

    def test_dns_failure_after_the_match_is_not_visited(self) -> None:
        members = ["127.0.0.1:9000", "unknown-host:9000"]
        self.assertEqual(identify(members, "0.0.0.0", 9000, lambda: LOCAL, fake_dns({})).index, 0)

    def test_specific_address_wins_over_zot_rule(self) -> None:
        """Three replicas share port 9000 on 127.0.0.1-3: zot's rule alone would make all of them member 0."""
        members = ["127.0.0.1:9000", "127.0.0.2:9000", "127.0.0.3:9000"]
        for index, address in enumerate(["127.0.0.1", "127.0.0.2", "127.0.0.3"]):
            identity = identify(members, address, 9000, lambda: LOCAL, fake_dns({}))
            self.assertEqual(identity.index, index)
            self.assertIn("http.address", identity.rule)

    def test_specific_address_matches_a_resolved_member(self) -> None:
        dns = fake_dns({"zot-server1": ["10.9.9.1"], "zot-server2": ["10.9.9.2"]})
        members = ["zot-server1:9000", "zot-server2:9000"]
        self.assertEqual(identify(members, "10.9.9.2", 9000, lambda: LOCAL | {"10.9.9.2"}, dns).index, 1)

    def test_specific_address_of_no_member_refuses(self) -> None:
        """Bound to 127.0.0.4 only: claiming 127.0.0.1:9000 (zot's rule) would steal member 0's repositories."""
        members = ["127.0.0.1:9000", "127.0.0.2:9000"]
        with self.assertRaises(IdentityError) as caught:
            identify(members, "127.0.0.4", 9000, lambda: LOCAL, fake_dns({}))
        self.assertIn("127.0.0.4:9000", str(caught.exception))

    def test_specific_address_with_another_port_refuses(self) -> None:
        with self.assertRaises(IdentityError):
            identify(["127.0.0.1:9000", "127.0.0.2:9000"], "127.0.0.1", 9001, lambda: LOCAL, fake_dns({}))

    def test_unspecified_address_uses_zot_rule(self) -> None:
        members = ["127.0.0.2:9000", "127.0.0.1:9000"]
        identity = identify(members, "::", 9000, lambda: LOCAL, fake_dns({}))
        self.assertEqual(identity.index, 1)
        self.assertIn("local interface", identity.rule)

    def test_ipv6_member(self) -> None:
        self.assertEqual(split_member("[::1]:9000"), ("::1", 9000))
        self.assertEqual(identify(["10.9.9.1:9000", "[::1]:9000"], "::", 9000, lambda: LOCAL, fake_dns({})).index, 1)


class RealMachineTests(unittest.TestCase):
    def test_local_addresses_include_loopback(self) -> None:
        addresses = local_addresses()
        self.assertIn("127.0.0.1", addresses)
        self.assertTrue(all(":" in a or a.count(".") == 3 for a in addresses), addresses)

    def test_resolve_ip_literal_and_localhost(self) -> None:
        self.assertEqual(resolve("127.0.0.2"), ["127.0.0.2"])
        self.assertIn("127.0.0.1", resolve("localhost"))
