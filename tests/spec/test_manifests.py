"""Pushing manifests of every shape the image spec defines (spec: "Pushing manifests"), and the ones a
registry must refuse."""

from __future__ import annotations

import json

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of


class ManifestBehaviours(SpecBehaviours):
    async def round_trip(self, manifest: images.Manifest, reference: str = "v1") -> str:
        """Push ``manifest`` as ``reference`` (201, Location, digest), read it back byte for byte."""
        repository = self.fresh_repository("manifest")
        result = await self.push_manifest(repository, reference, manifest)
        self.assertTrue(result.header("Location"))
        self.assertEqual(result.header("Docker-Content-Digest"), manifest.digest)
        got = await self.expect(200, "GET", self.url(repository, f"manifests/{reference}"))
        self.assertEqual(got.body, manifest.body)
        self.assertEqual(got.header("Content-Type"), manifest.media_type)
        return repository

    async def test_image(self) -> None:
        await self.round_trip(images.image(self.algorithm))

    async def test_docker_schema2_image(self) -> None:
        await self.round_trip(images.docker_image(self.algorithm))

    async def test_index(self) -> None:
        await self.round_trip(images.index([images.image(self.algorithm), images.image(self.algorithm)]))

    async def test_nested_index(self) -> None:
        inner = images.index([images.image(self.algorithm)])
        await self.round_trip(images.index([inner, images.image(self.algorithm)]))

    async def test_artifact(self) -> None:
        """An artifact: ``artifactType``, the empty config ``{}``, a payload blob."""
        await self.round_trip(images.artifact(self.algorithm, "application/vnd.example.sbom"))

    async def test_no_layers(self) -> None:
        await self.round_trip(images.image(self.algorithm, config=images.empty_blob(self.algorithm), layers=[]))

    async def test_custom_fields_kept(self) -> None:
        """Fields the spec does not define, and annotations, come back exactly as pushed."""
        await self.round_trip(
            images.image(
                self.algorithm,
                annotations={"org.opencontainers.image.title": "spec", "com.example.z": "1"},
                **{"com.example.extension": {"nested": [1, 2, 3]}},
            )
        )

    async def test_data_field(self) -> None:
        """A descriptor carrying its content in ``data`` (the blob is pushed too, as the spec asks)."""
        config = images.config_blob(self.algorithm)
        layer = images.layer_blob(self.algorithm, 64)
        document = {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "config": images.inline_data(config),
            "layers": [images.inline_data(layer)],
        }
        await self.round_trip(images.Manifest(images.encode(document), images.OCI_MANIFEST, blobs=(config, layer)))

    async def test_non_distributable_layer(self) -> None:
        """A non-distributable layer (with ``urls``) need not be in the registry."""
        foreign = images.layer_blob(self.algorithm, 500, images.OCI_NONDISTRIBUTABLE_LAYER)
        manifest = images.image(
            self.algorithm, layer_descriptors=[foreign.descriptor(urls=["https://example.com/layer.tar"])]
        )
        await self.round_trip(manifest)

    async def test_push_by_digest(self) -> None:
        """PUT by the manifest's digest in the variant's algorithm: readable by that digest."""
        manifest = images.image(self.algorithm)
        repository = self.fresh_repository("manifest")
        reference = manifest.digest_as(self.algorithm)
        await self.push_manifest(repository, reference, manifest)
        got = await self.expect(200, "GET", self.url(repository, f"manifests/{reference}"))
        self.assertEqual(got.body, manifest.body)

    async def test_retag(self) -> None:
        """Pushing another manifest under a tag moves the tag; the first stays readable by digest."""
        repository, first = await self.pushed_image("manifest")
        second = images.image(self.algorithm)
        await self.push_manifest(repository, "v1", second)
        got = await self.expect(200, "GET", self.url(repository, "manifests/v1"))
        self.assertEqual(got.body, second.body)
        await self.expect(200, "GET", self.url(repository, f"manifests/{first.digest}"))

    async def test_missing_blob_refused(self) -> None:
        """A manifest naming a layer the repository lacks: 400 MANIFEST_BLOB_UNKNOWN."""
        manifest = images.image(self.algorithm)
        repository = self.fresh_repository("manifest")
        await self.push_blob(repository, manifest.blobs[0])  # the config, not the layers
        result = await self.put_manifest(repository, "v1", manifest, code=None)
        self.assert_error(result, 400, "MANIFEST_BLOB_UNKNOWN")
        missing = await self.request("GET", self.url(repository, "manifests/v1"))
        self.assertEqual(missing.code, 404)

    async def test_sparse_index_refused(self) -> None:
        """An index naming a manifest the repository lacks is refused (zot checks an index's manifests
        too, so zotpy does: no sparse indexes)."""
        repository, present = await self.pushed_image("manifest")
        sparse = images.index([present, images.image(self.algorithm)])
        result = await self.put_manifest(repository, "multi", sparse, code=None)
        self.assert_error(result, 400, "MANIFEST_BLOB_UNKNOWN")

    async def test_invalid_json_refused(self) -> None:
        repository, _ = await self.pushed_image("manifest")
        broken = images.Manifest(b'{"schemaVersion": 2, "mediaType": ', images.OCI_MANIFEST)
        self.assert_error(await self.put_manifest(repository, "v2", broken, code=None), 400, "MANIFEST_INVALID")

    async def test_digest_mismatch_refused(self) -> None:
        """PUT by a digest the body does not have: 400 DIGEST_INVALID."""
        repository, manifest = await self.pushed_image("manifest")
        other = images.digest_of(b"not this manifest", self.algorithm)
        self.assert_error(await self.put_manifest(repository, other, manifest, code=None), 400, "DIGEST_INVALID")

    async def test_too_large_refused(self) -> None:
        """Over the 4 MiB the spec lets a registry set as its limit: 413."""
        repository, manifest = await self.pushed_image("manifest")
        document = manifest.document
        document["annotations"] = {"padding": "x" * (4 * 1024 * 1024 + 10)}
        result = await self.put_refused_manifest(repository, "huge", json.dumps(document).encode())
        self.assertEqual(result.code, 413, result.body[:300])


globals().update(variants_of(ManifestBehaviours))
