"""The spec's error codes, each provoked once, each answered with its status and JSON error body
(spec: "Error Codes"). UNAUTHORIZED and DENIED need auth on (the variant's ``config``/``headers``);
TOOMANYREQUESTS needs a rate limit: neither is on in the default matrix. The codes that other modules
already provoke (DIGEST_INVALID on a closing PUT, MANIFEST_BLOB_UNKNOWN...) are checked there too."""

from __future__ import annotations

import uuid

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of


class ErrorBehaviours(SpecBehaviours):
    async def test_blob_unknown(self) -> None:
        repository, _ = await self.pushed_image("errors")
        missing = images.digest_of(b"absent", self.algorithm)
        error = self.assert_error(await self.request("GET", self.url(repository, f"blobs/{missing}")), 404, "BLOB_UNKNOWN")
        self.assertIn("message", error)

    async def test_blob_upload_invalid(self) -> None:
        """A chunk with a malformed ``Content-Range``."""
        repository = self.fresh_repository("errors")
        started = await self.expect(202, "POST", self.url(repository, "blobs/uploads/"))
        location = self.follow(repository, started.header("Location") or "")
        result = await self.request("PATCH", location, {"Content-Range": "bytes=nonsense"}, b"abc")
        self.assertIn(result.code, (400, 416))
        self.assert_error(result, result.code, "BLOB_UPLOAD_INVALID")

    async def test_blob_upload_unknown(self) -> None:
        repository, _ = await self.pushed_image("errors")
        result = await self.request("GET", self.url(repository, f"blobs/uploads/{uuid.uuid4()}"))
        self.assert_error(result, 404, "BLOB_UPLOAD_UNKNOWN")

    async def test_digest_invalid(self) -> None:
        """Malformed digests in a blob path and as a monolithic push's ``digest``: 400 DIGEST_INVALID."""
        repository, _ = await self.pushed_image("errors")
        for digest in (f"{self.algorithm}:nothex", f"{self.algorithm}:{'A' * 64}", "md5:d41d8cd98f00b204e9800998ecf8427e"):
            self.assert_error(await self.request("GET", self.url(repository, f"blobs/{digest}")), 400, "DIGEST_INVALID")
        result = await self.request("POST", self.url(repository, "blobs/uploads/?digest=sha256:short"), data=b"abc")
        self.assert_error(result, 400, "DIGEST_INVALID")

    async def test_closing_put_without_digest(self) -> None:
        """The closing PUT must name the digest: without it, 400 (DIGEST_INVALID), and no blob."""
        repository = self.fresh_repository("errors")
        started = await self.expect(202, "POST", self.url(repository, "blobs/uploads/"))
        location = self.follow(repository, started.header("Location") or "")
        self.assert_error(await self.request("PUT", location, data=b"abc"), 400, "DIGEST_INVALID")
        missing = await self.request("HEAD", self.url(repository, f"blobs/{images.digest_of(b'abc', self.algorithm)}"))
        self.assertEqual(missing.code, 404)

    async def test_manifest_blob_unknown(self) -> None:
        repository = self.fresh_repository("errors")
        result = await self.put_manifest(repository, "v1", images.image(self.algorithm), code=None)
        error = self.assert_error(result, 400, "MANIFEST_BLOB_UNKNOWN")
        self.assertIn("message", error)

    async def test_manifest_invalid(self) -> None:
        """Not JSON, the wrong schemaVersion, and a config that is not a descriptor."""
        repository, manifest = await self.pushed_image("errors")
        document = manifest.document
        wrong_version = images.encode({**document, "schemaVersion": 1})
        no_descriptor = images.encode({**document, "config": "sha256:abc"})
        for body in (b"\x00not json", wrong_version, no_descriptor):
            result = await self.put_manifest(repository, "bad", images.Manifest(body, images.OCI_MANIFEST), code=None)
            self.assert_error(result, 400, "MANIFEST_INVALID")

    async def test_manifest_unknown(self) -> None:
        repository, _ = await self.pushed_image("errors")
        for reference in ("nosuchtag", images.digest_of(b"absent", "sha256")):
            result = await self.request("GET", self.url(repository, f"manifests/{reference}"))
            self.assert_error(result, 404, "MANIFEST_UNKNOWN")

    async def test_name_invalid(self) -> None:
        """A repository name outside the spec's grammar (upper case, a trailing separator)."""
        for name in ("spec/UPPER", "spec/trailing-", "spec//double"):
            result = await self.request("GET", f"{self.deployment.base_for(name)}/v2/{name}/tags/list")
            self.assertIn(result.code, (400, 404), result.body)
            self.assert_error(result, result.code, "NAME_INVALID")

    async def test_name_unknown(self) -> None:
        result = await self.request("GET", self.url(self.fresh_repository("errors"), "tags/list"))
        self.assert_error(result, 404, "NAME_UNKNOWN")

    async def test_size_invalid(self) -> None:
        """A manifest over the size limit is answered before the registry reads it all: 413."""
        repository, manifest = await self.pushed_image("errors")
        body = manifest.body[:-1] + b', "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
        self.assert_error(await self.put_refused_manifest(repository, "big", body), 413, "SIZE_INVALID")
        missing = await self.request("GET", self.url(repository, "manifests/big"))
        self.assertEqual(missing.code, 404)

    async def test_unsupported(self) -> None:
        """A method the endpoint does not have: 405 UNSUPPORTED, with ``Allow``."""
        repository, _ = await self.pushed_image("errors")
        result = await self.request("PATCH", self.url(repository, "tags/list"))
        self.assert_error(result, 405, "UNSUPPORTED")
        self.assertIn("GET", result.header("Allow") or "")


globals().update(variants_of(ErrorBehaviours))
