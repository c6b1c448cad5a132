"""Reads by digest answered by the member that receives them, when every member shares the storage.

zot forwards every request that names a repository to the repository's owner. For a GET or HEAD of
``/v2/<name>/blobs/<digest>`` or ``/v2/<name>/manifests/<digest>`` on shared storage (one S3
bucket, ``cluster.localReads``, on by default there) the hop buys nothing: what a digest names
never changes, every member reads the same bucket, and S3 is read-after-write consistent, so the
owner would read the very bytes this member can read. The receiving member answers through its own
registry app, so the reply is the owner's, header for header, error for error: a blob is looked up
under the repository's own path (``<name>/blobs/...``) and a manifest in the repository's
``index.json``, so what the repository does not hold is ``BLOB_UNKNOWN``/``MANIFEST_UNKNOWN`` here
as there, whatever else the bucket holds.

Still forwarded, because only the owner may answer them or its answer may differ:

- reads by tag (a tag moves: the owner serialises the writes that move it, and a non-owner's read
  racing a tag push could answer the old manifest after the push returned; the owner never does),
  tag lists and referrers (listings the owner's writes change);
- every write and upload (the owner serialises a repository's writes);
- repositories whose pulls sync fetches on demand (only the owner fetches, and a digest missing
  here is fetched there);
- with dedupe on, a blob missing here: the owner may link it from another repository (the link
  is a write), so the miss goes to the owner (``RegistryRequest.on_miss``) and the owner answers.

The manifest pulls answered here are counted for the owner's metadata and reported to it in
batches (:mod:`zotpy.cluster.pulls`). Access control is unchanged: the authorising resource wraps the cluster resource, so a read
answered here was authorised exactly as a forwarded one would have been before forwarding.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api.routes import BLOB, MANIFEST, READ_BY_DIGEST, Match, match_request


class Forwarder(Protocol):
    """What is needed of :class:`zotpy.cluster.proxy.Forwarder` (which imports this module)."""

    def forward(self, request: IRequest, member: str) -> Any: ...


@implementer(IResource)
@attrs.frozen
class OwnerAnswers:
    """Forwards the request it renders to ``member``: the owner answers a miss read here."""

    forwarder: Forwarder
    member: str
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        self.forwarder.forward(request, self.member)
        return NOT_DONE_YET

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("OwnerAnswers is a leaf")


@attrs.frozen
class LocalReads:
    """Which of the requests this member would forward it answers from the shared storage itself.

    ``fetched_on_demand``: whether sync fetches pulls of a repository from upstream (those stay the
    owner's). ``blob_misses_to_owner``: whether the owner may answer a missing blob otherwise
    (dedupe links it from another repository).
    """

    fetched_on_demand: Callable[[str], bool] | None = None
    blob_misses_to_owner: bool = False

    def serves(self, found: Match) -> bool:
        return (
            found.kind == READ_BY_DIGEST
            and found.method in ("GET", "HEAD")
            and found.route in (BLOB, MANIFEST)
            and found.repository is not None
            and not (self.fetched_on_demand is not None and self.fetched_on_demand(found.repository))
        )

    def take(self, request: IRequest, forwarder: Forwarder, owner: str) -> bool:
        """Whether this member answers ``request`` itself; if so, a miss that the owner may answer
        otherwise is set to go to ``owner`` through ``forwarder``."""
        found = match_request(request)
        if found is None or not self.serves(found):
            return False
        if self.blob_misses_to_owner and found.route is BLOB:
            request.on_miss = OwnerAnswers(forwarder, owner)  # type: ignore[attr-defined]
        return True
