"""What the image store tells whoever keeps track of repositories (pushes, pulls, deletions), and
what it asks about blobs stored elsewhere (dedupe).

The store calls these synchronously on the reactor thread after the change is stored, and never
waits on them: a listener that needs I/O schedules it (the metadata keeper batches pulls in
memory). The store knows nothing of who listens (dependencies point downward).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer

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


class IBlobLocator(Interface):
    """Where else a blob is stored (dedupe): asked by the store before it stores a blob again."""

    def source(repo: str, digest: Digest) -> str | None:
        """Another repository believed to hold ``digest``, to link or copy from into ``repo``; None
        when none is known or ``repo`` is not this replica's to write."""

    def stored(repo: str, digest: Digest) -> None:
        """``repo`` holds ``digest`` now."""

    def forget(repo: str, digest: Digest) -> None:
        """``repo`` turned out not to hold ``digest`` (collected, or deleted)."""

    link_duplicates = Attribute("Whether a blob written again is replaced by a link to the stored copy.")
