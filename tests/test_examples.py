"""The example files under etc/ stay valid: operators copy them."""

from __future__ import annotations

import pathlib

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.integration.daemon import require_binary
from zotpy.cluster.identity import identify
from zotpy.config import ConfigError, load_config

ETC = pathlib.Path(__file__).resolve().parents[1] / "etc"


class ExampleConfigTests(unittest.TestCase):
    def test_single_node_example_loads(self) -> None:
        config = load_config(str(ETC / "config.json"))
        self.assertEqual(config.warnings, ())
        self.assertIsNone(config.cluster)

    def test_tls_example_names_only_its_certificate_files(self) -> None:
        """The TLS example points at files an operator provides; nothing else in it is wrong."""
        error = self.assertRaises(ConfigError, load_config, str(ETC / "config-tls.json"))
        self.assertEqual({path for path, _ in error.problems}, {"http.tls.cert", "http.tls.key"})

    def test_cluster_replicas_agree_and_each_finds_itself(self) -> None:
        configs = [load_config(str(ETC / "cluster" / f"replica{i}.json")) for i in (1, 2, 3)]
        self.assertEqual(len({(c.cluster.members, c.cluster.hash_key) for c in configs}), 1)
        self.assertEqual(len({c.storage.s3 for c in configs}), 1, "replicas must share one bucket")
        for index, config in enumerate(configs):
            identity = identify(config.cluster.members, config.http.address, config.http.port)
            self.assertEqual(identity.index, index)

    @async_test
    async def test_haproxy_example_is_valid(self) -> None:
        haproxy = require_binary("haproxy", "haproxy")
        out, err, code = await getProcessOutputAndValue(haproxy, ["-c", "-f", str(ETC / "cluster" / "haproxy.cfg")])
        self.assertEqual(code, 0, (out + err).decode())
        self.assertNotIn(b"WARNING", out + err)
