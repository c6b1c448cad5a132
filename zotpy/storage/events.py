"""What the image store tells whoever keeps track of repositories: pushes, pulls, deletions.

The store calls these synchronously on the reactor thread after the change is stored, and never
waits on them: a listener that needs I/O schedules it (the metadata keeper batches pulls in
memory). The store knows nothing of who listens (dependencies point downward).
"""

from __future__ import annotations

from zope.interface import Interface, implementer

from zotpy.oci.digest import Digest
from zotpy.oci.manifest import Manifest


class IStoreEvents(Interface):
    def pushed(repo: str, digest: Digest, size: int, tags: tuple[str, ...], manifest: Manifest) -> None:
        """A manifest of ``size`` bytes was stored and recorded in index.json (with ``tags``)."""

    def pulled(repo: str, digest: Digest) -> None:
        """A manifest's bytes were read for a client (a GET, not a HEAD)."""

    def untagged(repo: str, tag: str) -> None:
        """A tag was deleted; its manifest stays."""

    def deleted(repo: str, digests: tuple[Digest, ...]) -> None:
        """Manifests were removed from index.json (with every tag pointing at them)."""


@implementer(IStoreEvents)
class NoEvents:
    """Nobody listens: a store used by a tool, or a test of the store alone."""

    def pushed(self, repo: str, digest: Digest, size: int, tags: tuple[str, ...], manifest: Manifest) -> None:
        pass

    def pulled(self, repo: str, digest: Digest) -> None:
        pass

    def untagged(self, repo: str, tag: str) -> None:
        pass

    def deleted(self, repo: str, digests: tuple[Digest, ...]) -> None:
        pass
