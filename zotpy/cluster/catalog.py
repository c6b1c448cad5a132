"""``/v2/_catalog`` across a cluster whose members each keep their own storage (zot issue 2434).

With a local root per replica, each member holds only the repositories it owns, so a catalog
read from one member's storage would show a third of the registry. :class:`FanOutCatalog` answers
``GET /v2/_catalog`` on any member by asking every member (itself directly, the others over the
peer connections, in parallel) for its own repositories, then merges, de-duplicates and sorts
them. The requests to peers carry ``X-Zotpy-Catalog-Scope: local``: a member receiving it answers
from its own storage only and never fans out again.

Pagination stays exact across members without fetching whole lists: for ``?n=N&last=L`` each
member is asked for its first ``N + 1`` names after ``L``. The merged page is the first ``N`` of
their union; since every member's list is sorted, any name of the true page is among its member's
first ``N`` after ``L``, and there is a next page exactly when the union holds more than ``N``
names. The ``Link`` header then points at ``last`` = the page's final name, as on a single node.

When a member does not answer (or answers anything but 200), the reply is ``503`` with the OCI
error ``UNAVAILABLE`` naming every member that failed and why, and ``Retry-After`` (the asking is
:class:`~zotpy.cluster.fanout.FanOut`'s, shared with the search API). A partial list
would look complete to every client that does not know about a special header, and a mirroring or
cleanup tool paging through it would conclude that the missing member's repositories are gone; a
503 is what clients already retry, and is what the distribution API answers for the repositories
of a member that is down.

With shared storage (S3) every member sees every repository: no fan-out is set up then.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

import attrs
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api.pagination import next_link, paginate, parse_page_size
from zotpy.api.responses import reply_error, reply_json
from zotpy.api.visibility import visible
from zotpy.cluster.fanout import RETRY_AFTER_SECONDS, FanOut, is_local_scope
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import StorageError
from zotpy.transport.twisted_private import request_disconnected

log = Logger()

SCOPE_HEADER = b"X-Zotpy-Catalog-Scope"
#: Sent with :data:`SCOPE_HEADER` by a member that asks for another's whole own catalog for itself
#: (the rebalancer), not on a user's behalf as the fan-out does: only such a request, from a verified
#: member certificate, is answered without the user's filter (:mod:`zotpy.auth.resource`).
FOR_MEMBER_HEADER = b"X-Zotpy-Catalog-For-Member"
CATALOG_PATH = b"/v2/_catalog"


def _argument(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _repositories(body: bytes) -> list[str]:
    repositories = json.loads(body)["repositories"] or []
    return [name for name in repositories if isinstance(name, str)]


@implementer(IResource)
@attrs.define(eq=False)
class FanOutCatalog:
    """Serves the cluster-wide catalog; every other request goes to ``local`` unchanged.

    :ivar members: who to ask (:class:`FanOut`: the peer client, TLS and pool shared with forwarding).
    :ivar own_repositories: this member's repositories, sorted (the image store's).
    """

    local: IResource
    members: FanOut
    own_repositories: Callable[[], Awaitable[list[str]]]
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        if request.method != b"GET" or request.path != CATALOG_PATH or is_local_scope(request, SCOPE_HEADER):
            return self.local.render(request)
        answer = ensureDeferred(self._serve(request))
        answer.addErrback(lambda failure: log.failure("catalog fan-out failed", failure))
        return NOT_DONE_YET

    async def _serve(self, request: IRequest) -> None:
        try:
            body = await self._page(request)
        except RegistryError as error:
            body = reply_error(request, error)
        except StorageError as error:
            body = reply_error(
                request,
                RegistryError(
                    "UNAVAILABLE", "the storage backend failed", detail={"error": str(error)[:300]},
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ),
            )
        if not request.finished and not request_disconnected(request):
            request.write(body)
            request.finish()

    async def _page(self, request: IRequest) -> bytes:
        n = parse_page_size(request.args.get(b"n"))
        last = _argument(request, b"last")
        wanted = None if n is None else n + 1

        async def own() -> list[str]:
            page, _ = paginate(visible(request, await self.own_repositories()), wanted, last)
            return page

        query = {key: value for key, value in (("n", wanted), ("last", last)) if value is not None}
        path = "/v2/_catalog" + (f"?{urlencode(query)}" if query else "")
        parts = await self.members.gather(
            "catalog", own, lambda index: self.members.ask(request, index, SCOPE_HEADER, path, _repositories)
        )
        names = {name for part in parts for name in part}
        page, more = paginate(sorted(names), n, last)
        headers = {"Link": next_link("/v2/_catalog", n, page[-1])} if more and n and page else {}
        return reply_json(request, 200, {"repositories": page}, headers)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("FanOutCatalog is a leaf")
