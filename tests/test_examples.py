"""The example files under etc/ stay valid: operators copy them."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests import negotiating
from tests.driversuite import async_test
from tests.integration.daemon import require_binary
from zotpy.cluster.identity import identify
from zotpy.config import ConfigError, load_config, parse_config
from zotpy.tap import ListenerService, build_service

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


class WalkthroughTests(unittest.TestCase):
    """The README's HTTPS steps as a user runs them: etc/make-tls-cert.sh makes what
    etc/config-tls.json names, the daemon serves it, and curl, Python's ssl and skopeo (trusting
    the certificate the way the README says) push an image made by etc/make-image.py."""

    timeout = 120

    @async_test
    async def test_tls_example_with_the_shipped_certificate_and_image(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        script = ETC / "make-tls-cert.sh"
        out, err, code = await getProcessOutputAndValue("/bin/sh", [str(script)], path=workdir, env=dict(os.environ))
        self.assertEqual(code, 0, err.decode())
        self.assertIn(b"wrote etc/tls/server.crt and etc/tls/server.key", out)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(workdir, "etc/tls/server.key")).st_mode), 0o600)

        document = json.loads((ETC / "config-tls.json").read_text())
        document["storage"]["rootDirectory"] = os.path.join(workdir, "data")
        document["http"].update(address="127.0.0.1", port="0")
        for key in ("cert", "key"):  # relative to where zotpy starts, as in the README
            document["http"]["tls"][key] = os.path.join(workdir, document["http"]["tls"][key])
        service = build_service(parse_config(document))
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        base = f"https://localhost:{listener.port.getHost().port}"
        cafile = os.path.join(workdir, "etc/tls/server.crt")
        for exchange in (await negotiating.curl(f"{base}/v2/", cafile), await negotiating.python_ssl(f"{base}/v2/", cafile)):
            self.assertEqual((exchange.alpn, exchange.status, exchange.body), ("http/1.1", 200, b"{}"))

        out, err, code = await getProcessOutputAndValue(
            sys.executable, [str(ETC / "make-image.py"), "image", "v1"], path=workdir, env=dict(os.environ)
        )
        self.assertEqual(code, 0, err.decode())
        layout, digest = out.decode().split()
        self.assertEqual(layout, "oci:image:v1")
        certs = os.path.join(workdir, "certs")
        os.makedirs(certs)
        shutil.copy(cafile, os.path.join(certs, "ca.crt"))
        skopeo = require_binary("skopeo")
        target = f"docker://{base.removeprefix('https://')}/library/hello:v1"
        out, err, code = await getProcessOutputAndValue(
            skopeo, ["copy", "--dest-cert-dir", certs, layout, target], path=workdir, env=dict(os.environ)
        )
        self.assertEqual(code, 0, err.decode())
        tags = await negotiating.python_ssl(f"{base}/v2/library/hello/tags/list", cafile)
        self.assertEqual(json.loads(tags.body), {"name": "library/hello", "tags": ["v1"]})
        index = json.loads(pathlib.Path(workdir, "data", "library", "hello", "index.json").read_text())
        self.assertEqual([entry["digest"] for entry in index["manifests"]], [digest])
