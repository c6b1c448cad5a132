"""Subjects and the referrers API (spec: "Pushing manifests with subject", "Listing referrers")."""

from __future__ import annotations

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of

SBOM = "application/vnd.example.sbom"
SIGNATURE = "application/vnd.example.signature"


class ReferrerBehaviours(SpecBehaviours):
    async def referrers(self, repository: str, subject: str, query: str = "") -> tuple[dict, dict[str, str]]:
        result = await self.expect(200, "GET", self.url(repository, f"referrers/{subject}{query}"))
        self.assertEqual(result.header("Content-Type"), images.OCI_INDEX)
        document = result.json()
        self.assertEqual((document["schemaVersion"], document["mediaType"]), (2, images.OCI_INDEX))
        return document, {"OCI-Filters-Applied": result.header("OCI-Filters-Applied") or ""}

    async def test_subject_header(self) -> None:
        """PUT of a manifest with ``subject``: the reply names the subject in ``OCI-Subject``."""
        repository, subject = await self.pushed_image("referrers")
        result = await self.push_manifest(repository, "sbom", images.artifact(self.algorithm, SBOM, subject))
        self.assertEqual(result.header("OCI-Subject"), subject.digest)

    async def test_missing_subject(self) -> None:
        """A subject that is not (yet) in the repository is accepted and listed once it is asked for."""
        repository = self.fresh_repository("referrers")
        absent = images.image(self.algorithm)
        sbom = images.artifact(self.algorithm, SBOM, absent)
        result = await self.push_manifest(repository, sbom.digest, sbom)
        self.assertEqual(result.header("OCI-Subject"), absent.digest)
        document, _ = await self.referrers(repository, absent.digest)
        self.assertEqual([d["digest"] for d in document["manifests"]], [sbom.digest])

    async def test_listing(self) -> None:
        """Each referrer's descriptor: media type, digest, size, artifact type and annotations."""
        repository, subject = await self.pushed_image("referrers")
        sbom = images.artifact(self.algorithm, SBOM, subject, annotations={"com.example.kind": "sbom"})
        signature = images.artifact(self.algorithm, SIGNATURE, subject)
        for referrer in (sbom, signature):
            await self.push_manifest(repository, referrer.digest, referrer)
        document, _ = await self.referrers(repository, subject.digest)
        listed = {d["digest"]: d for d in document["manifests"]}
        self.assertEqual(set(listed), {sbom.digest, signature.digest})
        self.assertEqual(listed[sbom.digest]["artifactType"], SBOM)
        self.assertEqual(listed[sbom.digest]["size"], len(sbom.body))
        self.assertEqual(listed[sbom.digest]["mediaType"], images.OCI_MANIFEST)
        self.assertEqual(listed[sbom.digest]["annotations"], {"com.example.kind": "sbom"})
        self.assertEqual(listed[signature.digest]["artifactType"], SIGNATURE)

    async def test_artifact_type_from_config(self) -> None:
        """A referrer without ``artifactType`` is listed with its config's media type as artifact type."""
        repository, subject = await self.pushed_image("referrers")
        config = images.Blob(b'{"kind": "attestation"}', "application/vnd.example.attestation.config", self.algorithm)
        referrer = images.image(self.algorithm, config=config, subject=subject.descriptor())
        await self.push_manifest(repository, referrer.digest, referrer)
        document, _ = await self.referrers(repository, subject.digest)
        self.assertEqual(
            [d["artifactType"] for d in document["manifests"]], ["application/vnd.example.attestation.config"]
        )

    async def test_index_as_referrer(self) -> None:
        repository, subject = await self.pushed_image("referrers")
        referrer = images.index([images.image(self.algorithm)], artifactType=SBOM, subject=subject.descriptor())
        await self.push_manifest(repository, referrer.digest, referrer)
        document, _ = await self.referrers(repository, subject.digest)
        self.assertEqual([(d["digest"], d["mediaType"]) for d in document["manifests"]], [(referrer.digest, images.OCI_INDEX)])

    async def test_artifact_type_filter(self) -> None:
        """?artifactType= keeps the matching referrers, and says so in ``OCI-Filters-Applied``."""
        repository, subject = await self.pushed_image("referrers")
        sbom = images.artifact(self.algorithm, SBOM, subject)
        signature = images.artifact(self.algorithm, SIGNATURE, subject)
        for referrer in (sbom, signature):
            await self.push_manifest(repository, referrer.digest, referrer)
        document, headers = await self.referrers(repository, subject.digest, f"?artifactType={SIGNATURE}")
        self.assertEqual([d["digest"] for d in document["manifests"]], [signature.digest])
        self.assertEqual(headers["OCI-Filters-Applied"], "artifactType")

    async def test_none(self) -> None:
        """A digest nothing refers to: 200 and an empty index (not 404)."""
        repository, subject = await self.pushed_image("referrers")
        document, _ = await self.referrers(repository, subject.digest)
        self.assertEqual(document["manifests"], [])

    async def test_deleted_referrer_not_listed(self) -> None:
        repository, subject = await self.pushed_image("referrers")
        sbom = images.artifact(self.algorithm, SBOM, subject)
        await self.push_manifest(repository, sbom.digest, sbom)
        await self.expect(202, "DELETE", self.url(repository, f"manifests/{sbom.digest}"))
        document, _ = await self.referrers(repository, subject.digest)
        self.assertEqual(document["manifests"], [])

    async def test_invalid_digest(self) -> None:
        repository, _ = await self.pushed_image("referrers")
        result = await self.request("GET", self.url(repository, "referrers/sha256:nothex"))
        self.assert_error(result, 400, "DIGEST_INVALID")


globals().update(variants_of(ReferrerBehaviours))
