"""End-to-end: push, inspect, list, pull back and delete an image with skopeo
against the real zotpy daemon (``twistd -n zotpy -c config.json``).

Needs ``skopeo`` (``apt-get install skopeo``; ``.ci/run`` installs it): the
test fails, rather than skips, when it is missing.

The scenario lives in :class:`SkopeoRoundTripMixin`, parameterised by
:meth:`~SkopeoRoundTripMixin.start_registry` and
:meth:`~SkopeoRoundTripMixin.check_storage`, so the same steps can be run
against a reference registry (e.g. :class:`tests.integration.daemon.DockerRegistry`)
to validate the harness.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration import ocilayout
from tests.integration.daemon import (
    ServerProcess,
    ZotpyDaemon,
    http_request,
    require_binary,
    tail,
)

REPO = "e2e/app"
MIRROR_REPO = "e2e/mirror"


class SkopeoRoundTripMixin:
    """The skopeo scenario; mix into a :class:`unittest.TestCase`.

    Subclasses provide :meth:`start_registry` (returning a started
    :class:`ServerProcess` with a ``hostport`` attribute) and may override
    :meth:`check_storage`.
    """

    #: Seconds for the whole test (daemon start, several skopeo runs).
    timeout = 300

    registry: Any
    skopeo_bin: str
    tmp: str

    # -- to be provided by the concrete test case ---------------------------

    async def start_registry(self) -> ServerProcess:
        raise NotImplementedError

    def check_storage(
        self, images: dict[str, ocilayout.OCIImage]
    ) -> None:  # pragma: no cover - optional
        """Check the registry's on-disk layout after ``images`` were pushed."""

    # -- helpers ------------------------------------------------------------

    async def skopeo(self, *args: str, expect_ok: bool = True) -> tuple[bytes, bytes, int]:
        """Run ``skopeo --debug --insecure-policy ARGS`` as a child process
        (``getProcessOutputAndValue``: the reactor keeps running meanwhile).

        With ``expect_ok`` (default) a non-zero exit fails the test with
        skopeo's stderr and the registry's log.
        """
        argv = [self.skopeo_bin, "--debug", "--insecure-policy", *args]
        env = dict(os.environ)
        # Keep skopeo away from any credentials of the user running the tests.
        env["REGISTRY_AUTH_FILE"] = os.path.join(self.tmp, "auth.json")
        env.setdefault("HOME", self.tmp)
        out, err, code = await getProcessOutputAndValue(
            argv[0], argv[1:], env=env, path=self.tmp
        )
        if expect_ok and code != 0:
            self.fail(  # type: ignore[attr-defined]
                f"skopeo {' '.join(args)} exited {code}\n"
                f"--- skopeo stdout ---\n{tail(out.decode('utf-8', 'replace'))}\n"
                f"--- skopeo stderr ---\n{tail(err.decode('utf-8', 'replace'))}\n"
                f"{self.registry.describe()}"
            )
        return out, err, code

    def ref(self, tag_or_digest: str, repo: str = REPO) -> str:
        """``docker://HOST:PORT/repo:tag`` (or ``@sha256:...``)."""
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"docker://{self.registry.hostport}/{repo}{sep}{tag_or_digest}"

    async def push(self, image: ocilayout.OCIImage, tag: str) -> None:
        await self.skopeo(
            "copy", "--dest-tls-verify=false", "--dest-no-creds", image.reference(), self.ref(tag)
        )

    async def list_tags(self) -> list[str]:
        out, _, _ = await self.skopeo(
            "list-tags", "--tls-verify=false", "--no-creds", f"docker://{self.registry.hostport}/{REPO}"
        )
        listing = json.loads(out)
        self.assertEqual(  # type: ignore[attr-defined]
            listing.get("Repository"), f"{self.registry.hostport}/{REPO}", listing
        )
        return sorted(listing.get("Tags") or [])

    async def inspect_raw(self, tag_or_digest: str) -> bytes:
        out, _, _ = await self.skopeo(
            "inspect", "--raw", "--tls-verify=false", "--no-creds", self.ref(tag_or_digest)
        )
        return out

    def assertImageEqual(
        self, pulled_dir: str, tag: str, original: ocilayout.OCIImage
    ) -> None:
        """The layout at ``pulled_dir`` holds exactly ``original``'s blobs under ``tag``."""
        digest = ocilayout.tagged_manifest_digest(pulled_dir, tag)
        self.assertEqual(digest, original.manifest_digest)  # type: ignore[attr-defined]
        assert digest is not None
        manifest_bytes = ocilayout.read_blob(pulled_dir, digest)
        self.assertEqual(manifest_bytes, original.manifest_bytes)  # type: ignore[attr-defined]
        manifest = json.loads(manifest_bytes)
        self.assertEqual(  # type: ignore[attr-defined]
            manifest["config"]["digest"], original.config_digest
        )
        self.assertEqual(  # type: ignore[attr-defined]
            [l["digest"] for l in manifest["layers"]], list(original.layer_digests)
        )
        for blob in (original.config_digest, *original.layer_digests):
            self.assertEqual(  # type: ignore[attr-defined]
                ocilayout.read_blob(pulled_dir, blob),
                ocilayout.read_blob(original.path, blob),
                f"blob {blob} differs after the round trip",
            )

    # -- the scenario -------------------------------------------------------

    async def test_push_inspect_list_pull_delete(self) -> None:
        """skopeo copy/inspect/list-tags/copy back/delete against the registry."""
        self.skopeo_bin = require_binary("skopeo", "skopeo")
        self.tmp = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(self.tmp)
        self.registry = await self.start_registry()

        # Two images in one source layout: v1 has 3 layers (the last one
        # 3 MiB, so uploads span many reads), v2 has 2 and shares its first
        # layer with v1 (exercises "blob already exists").
        src = os.path.join(self.tmp, "src")
        v1 = ocilayout.build_image(
            src,
            tag="v1",
            layers=[
                ocilayout.default_layer_files(0, "app"),
                ocilayout.default_layer_files(1, "app"),
                ocilayout.default_layer_files(2, "app", payload_size=3 * 1024 * 1024),
            ],
            name="app",
        )
        v2 = ocilayout.build_image(
            src,
            tag="v2",
            layers=[
                ocilayout.default_layer_files(0, "app"),
                ocilayout.default_layer_files(1, "app-v2"),
            ],
            name="app-v2",
        )
        self.assertEqual(v1.layer_digests[0], v2.layer_digests[0])
        self.assertNotEqual(v1.manifest_digest, v2.manifest_digest)

        # Push v1.
        await self.push(v1, "v1")

        # inspect --raw gives back the very manifest bytes.
        raw = await self.inspect_raw("v1")
        self.assertEqual("sha256:" + hashlib.sha256(raw).hexdigest(), v1.manifest_digest)
        self.assertEqual(raw, v1.manifest_bytes)
        self.assertEqual(await self.inspect_raw(v1.manifest_digest), v1.manifest_bytes)

        # inspect (parsed) shows the digest, platform and layers.
        out, _, _ = await self.skopeo(
            "inspect", "--tls-verify=false", "--no-creds", self.ref("v1")
        )
        info = json.loads(out)
        self.assertEqual(info["Digest"], v1.manifest_digest)
        self.assertEqual(info["Layers"], list(v1.layer_digests))
        self.assertEqual((info["Architecture"], info["Os"]), ("amd64", "linux"))
        self.assertIn("v1", info.get("RepoTags") or [])

        # inspect --config gives the config blob.
        out, _, _ = await self.skopeo(
            "inspect", "--config", "--raw", "--tls-verify=false", "--no-creds", self.ref("v1")
        )
        self.assertEqual(out, ocilayout.read_blob(src, v1.config_digest))

        # The registry also answers directly with the digest header.
        head = await http_request(
            "HEAD",
            f"http://{self.registry.hostport}/v2/{REPO}/manifests/v1",
            headers={"Accept": ocilayout.MEDIA_TYPE_MANIFEST},
        )
        self.assertEqual(head.code, 200, head)
        self.assertEqual(head.header("Docker-Content-Digest"), v1.manifest_digest)

        self.assertEqual(await self.list_tags(), ["v1"])

        # Push v2 and see both tags.
        await self.push(v2, "v2")
        self.assertEqual(await self.list_tags(), ["v1", "v2"])

        self.check_storage({"v1": v1, "v2": v2})

        # Push v1 into a second repository of the same registry: skopeo's
        # blob-info cache now knows the layers live in e2e/app, so it tries
        # cross-repository mounts (POST .../uploads/?mount=<digest>&from=e2e/app;
        # a registry that answers 202 must then accept DELETE of that upload).
        await self.skopeo(
            "copy", "--dest-tls-verify=false", "--dest-no-creds",
            v1.reference(), self.ref("v1", repo=MIRROR_REPO),
        )
        out, _, _ = await self.skopeo(
            "inspect", "--raw", "--tls-verify=false", "--no-creds",
            self.ref("v1", repo=MIRROR_REPO),
        )
        self.assertEqual(out, v1.manifest_bytes)

        # Copy v1 back out into a fresh OCI layout and compare every blob.
        dst = os.path.join(self.tmp, "dst")
        await self.skopeo(
            "copy", "--src-tls-verify=false", "--src-no-creds", self.ref("v1"), f"oci:{dst}:v1"
        )
        self.assertImageEqual(dst, "v1", v1)

        # Delete v1: the manifest is gone, v2 stays.
        await self.skopeo("delete", "--tls-verify=false", "--no-creds", self.ref("v1"))
        for reference in ("v1", v1.manifest_digest):
            _, err, code = await self.skopeo(
                "inspect", "--raw", "--tls-verify=false", "--no-creds", self.ref(reference),
                expect_ok=False,
            )
            self.assertNotEqual(
                code, 0, f"inspect {reference} still succeeds after delete:\n{err[-4000:]!r}"
            )
        self.assertEqual(await self.list_tags(), ["v2"])
        self.assertEqual(await self.inspect_raw("v2"), v2.manifest_bytes)


class ZotpySkopeoTests(SkopeoRoundTripMixin, unittest.TestCase):
    """The skopeo scenario against the real zotpy daemon."""

    async def start_registry(self) -> ServerProcess:
        daemon = ZotpyDaemon(os.path.join(self.tmp, "zotpy"))
        await daemon.start()
        self.addCleanup(daemon.stop)
        return daemon

    def check_storage(self, images: dict[str, ocilayout.OCIImage]) -> None:
        """zot's layout: ``<root>/e2e/app/{oci-layout,index.json,blobs/sha256/<hex>}``."""
        repo_dir = self.registry.repo_dir(REPO)
        log = self.registry.describe()
        self.assertTrue(
            os.path.isdir(repo_dir), f"no repository directory {repo_dir}\n{log}"
        )
        with open(os.path.join(repo_dir, "oci-layout")) as f:
            self.assertEqual(json.load(f).get("imageLayoutVersion"), "1.0.0")
        index = ocilayout.read_index(repo_dir)
        self.assertEqual(index.get("schemaVersion"), 2, index)
        for tag, image in images.items():
            self.assertEqual(
                ocilayout.tagged_manifest_digest(repo_dir, tag),
                image.manifest_digest,
                f"index.json does not map {tag!r} to {image.manifest_digest}: {index}",
            )
            entry = next(
                m for m in index["manifests"] if m["digest"] == image.manifest_digest
            )
            self.assertEqual(entry.get("mediaType"), ocilayout.MEDIA_TYPE_MANIFEST, entry)
            self.assertEqual(entry.get("size"), len(image.manifest_bytes), entry)
            for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
                path = os.path.join(repo_dir, "blobs", "sha256", digest.split(":", 1)[1])
                self.assertTrue(os.path.isfile(path), f"missing blob file {path}\n{log}")
                with open(path, "rb") as f:
                    self.assertEqual(
                        "sha256:" + hashlib.sha256(f.read()).hexdigest(),
                        digest,
                        f"blob file {path} does not hash to its name",
                    )
