"""Unit tests of the pure OCI rules: digests, names, tags, manifests, errors."""

from __future__ import annotations

import hashlib
import json

from twisted.trial import unittest

from zotpy.oci.digest import digest_of, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)
from zotpy.oci.names import is_valid_tag, validate_name

SHA = "sha256:" + "a" * 64


def descriptor(media_type: str = "application/octet-stream", digest: str = SHA, size: int = 3, **extra: object) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


class DigestTests(unittest.TestCase):
    def test_valid_sha256_and_sha512(self) -> None:
        self.assertEqual(str(parse_digest(SHA)), SHA)
        self.assertEqual(parse_digest("sha512:" + "0" * 128).algorithm, "sha512")

    def test_invalid_digests_are_digest_invalid(self) -> None:
        for text in (
            "sha256:" + "A" * 64,  # uppercase
            "sha256:" + "a" * 63,
            "sha256:" + "g" * 64,
            "sha512:" + "a" * 64,
            "md5:" + "a" * 32,
            "sha256",
            ":abc",
            SHA + "\n",
            "",
        ):
            with self.assertRaises(RegistryError, msg=text) as caught:
                parse_digest(text)
            self.assertEqual(caught.exception.code, "DIGEST_INVALID")
            self.assertEqual(caught.exception.status, 400)

    def test_digest_of(self) -> None:
        self.assertEqual(digest_of(b"x").encoded, hashlib.sha256(b"x").hexdigest())
        self.assertEqual(digest_of(b"x", "sha512").encoded, hashlib.sha512(b"x").hexdigest())


class NameTests(unittest.TestCase):
    def test_valid_names(self) -> None:
        for name in ("a", "library/alpine", "a.b_c__d---e/f0", "x/y/z"):
            self.assertEqual(validate_name(name), name)

    def test_invalid_names(self) -> None:
        for name in ("A", "a//b", "/a", "a/", "-a", "a..b", "a/blobs/c", "a/.uploads", "a" * 256, "a\n", "_catalog"):
            with self.assertRaises(RegistryError, msg=name) as caught:
                validate_name(name)
            self.assertEqual(caught.exception.code, "NAME_INVALID")

    def test_tags(self) -> None:
        self.assertTrue(is_valid_tag("v1.0_rc-1"))
        self.assertTrue(is_valid_tag("a" * 128))
        for tag in ("", ".a", "-a", "a" * 129, "a/b", "a:b", "v1\n"):
            self.assertFalse(is_valid_tag(tag), tag)


class ManifestTests(unittest.TestCase):
    def manifest(self, **fields: object) -> bytes:
        document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor("application/vnd.oci.image.config.v1+json"), "layers": [descriptor()]}
        document.update(fields)
        return json.dumps({k: v for k, v in document.items() if v is not None}).encode()

    def assertInvalid(self, body: bytes, content_type: str | None = OCI_MANIFEST) -> RegistryError:
        with self.assertRaises(RegistryError) as caught:
            parse_manifest(body, content_type)
        self.assertEqual(caught.exception.code, "MANIFEST_INVALID")
        return caught.exception

    def test_image_manifest(self) -> None:
        parsed = parse_manifest(self.manifest(), OCI_MANIFEST)
        self.assertFalse(parsed.is_index)
        self.assertEqual(len(parsed.required_blobs()), 2)
        self.assertEqual(parsed.artifact_type, "application/vnd.oci.image.config.v1+json")

    def test_artifact_type_and_subject(self) -> None:
        parsed = parse_manifest(
            self.manifest(artifactType="application/x-sbom", subject=descriptor(OCI_MANIFEST), annotations={"k": "v"}),
            OCI_MANIFEST,
        )
        self.assertEqual(parsed.artifact_type, "application/x-sbom")
        self.assertEqual(str(parsed.subject.digest), SHA)
        self.assertEqual(parsed.annotations, {"k": "v"})

    def test_media_type_from_header_when_body_has_none(self) -> None:
        self.assertEqual(parse_manifest(self.manifest(mediaType=None), DOCKER_MANIFEST).media_type, DOCKER_MANIFEST)

    def test_media_type_from_body_when_header_is_generic(self) -> None:
        self.assertEqual(parse_manifest(self.manifest(), "application/json").media_type, OCI_MANIFEST)

    def test_index_and_manifest_list(self) -> None:
        for media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
            body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [descriptor(OCI_MANIFEST)]}).encode()
            parsed = parse_manifest(body, media_type)
            self.assertTrue(parsed.is_index)
            self.assertEqual([str(d.digest) for d in parsed.required_manifests()], [SHA])
            self.assertEqual(parsed.required_blobs(), [])

    def test_foreign_layers_are_not_required(self) -> None:
        layers = [
            descriptor("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            descriptor(urls=["https://example.com/layer"]),
        ]
        self.assertEqual(len(parse_manifest(self.manifest(layers=layers), OCI_MANIFEST).required_blobs()), 1)

    def test_structural_faults(self) -> None:
        self.assertInvalid(b"{not json")
        self.assertInvalid(b"[]")
        self.assertInvalid(self.manifest(schemaVersion=1))
        self.assertInvalid(self.manifest(config=None))
        self.assertInvalid(self.manifest(layers=[descriptor(digest="sha256:bad")]))
        self.assertInvalid(self.manifest(layers=[descriptor(size=-1)]))
        self.assertInvalid(self.manifest(layers=[descriptor(size=True)]))
        self.assertInvalid(self.manifest(layers="x"))
        self.assertInvalid(self.manifest(annotations={"k": 1}))
        self.assertInvalid(self.manifest(), DOCKER_MANIFEST)  # body says OCI, header says Docker
        self.assertInvalid(self.manifest(mediaType="application/vnd.unknown+json"), None)
        self.assertInvalid(self.manifest(mediaType=None), None)
        self.assertInvalid(self.manifest(mediaType=None), "application/vnd.docker.distribution.manifest.v1+prettyjws")

    def test_index_without_manifests_list(self) -> None:
        self.assertInvalid(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode(), OCI_INDEX)


class ErrorTests(unittest.TestCase):
    def test_body_and_defaults(self) -> None:
        error = RegistryError("BLOB_UNKNOWN", detail={"digest": SHA})
        self.assertEqual(error.status, 404)
        self.assertEqual(
            error.body(), {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": {"digest": SHA}}]}
        )
        self.assertEqual(RegistryError("SIZE_INVALID", status=413).status, 413)
