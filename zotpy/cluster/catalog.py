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
error ``UNAVAILABLE`` naming every member that failed and why, and ``Retry-After``. A partial list
would look complete to every client that does not know about a special header, and a mirroring or
cleanup tool paging through it would conclude that the missing member's repositories are gone; a
503 is what clients already retry, and is what the distribution API answers for the repositories
of a member that is down.

With shared storage (S3) every member sees every repository: no fan-out is set up then.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlencode

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api.pagination import next_link, paginate, parse_page_size
from zotpy.api.responses import reply_error, reply_json
from zotpy.api.visibility import visible
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import StorageError
from zotpy.transport.failures import describe_failure
from zotpy.transport.twisted_private import request_disconnected

log = Logger()

SCOPE_HEADER = b"X-Zotpy-Catalog-Scope"
LOCAL_SCOPE = b"local"
CATALOG_PATH = b"/v2/_catalog"
RETRY_AFTER_SECONDS = 5
TIMEOUT_SECONDS = 30.0


class MemberFailed(Exception):
    """A member gave no usable catalog."""


def _argument(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


@implementer(IResource)
@attrs.define(eq=False)
class FanOutCatalog:
    """Serves the cluster-wide catalog; every other request goes to ``local`` unchanged.

    :ivar members: ``cluster.members``; ``me`` is this member's index in it.
    :ivar own_repositories: this member's repositories, sorted (the image store's).
    :ivar client: the peer client (TLS and connection pool shared with forwarding).
    :ivar peer_error: told ``(member, "catalog")`` for each member that failed (metrics).
    """

    local: IResource
    members: Sequence[str]
    me: int
    own_repositories: Callable[[], Awaitable[list[str]]]
    client: HTTPClient
    scheme: str = "http"
    timeout: float = TIMEOUT_SECONDS
    peer_error: Callable[[str, str], None] = lambda member, operation: None
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        if (
            request.method != b"GET"
            or request.path != CATALOG_PATH
            or request.requestHeaders.getRawHeaders(SCOPE_HEADER, [b""])[0].strip().lower() == LOCAL_SCOPE
        ):
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
        results = await DeferredList(
            [
                ensureDeferred(self._member(request, index, wanted, last))
                for index in range(len(self.members))
            ],
            consumeErrors=True,
        )
        names: set[str] = set()
        failed: dict[str, str] = {}
        for index, (ok, result) in enumerate(results):
            if ok:
                names.update(result)
                continue
            if result.check(StorageError) and index == self.me:
                result.raiseException()
            member = self.members[index]
            failed[member] = str(result.value)[:300] or result.type.__name__
            self.peer_error(member, "catalog")
        if failed:
            log.warn("catalog: members did not answer: {failed}", failed=failed)
            raise RegistryError(
                "UNAVAILABLE",
                "the catalog needs every cluster member, and some did not answer",
                detail={"members": failed},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        page, more = paginate(sorted(names), n, last)
        headers = {"Link": next_link("/v2/_catalog", n, page[-1])} if more and n and page else {}
        return reply_json(request, 200, {"repositories": page}, headers)

    async def _member(self, request: IRequest, index: int, wanted: int | None, last: str | None) -> list[str]:
        if index == self.me:
            page, _ = paginate(visible(request, await self.own_repositories()), wanted, last)
            return page
        query = {key: value for key, value in (("n", wanted), ("last", last)) if value is not None}
        url = f"{self.scheme}://{self.members[index]}/v2/_catalog" + (f"?{urlencode(query)}" if query else "")
        try:
            # The caller's credentials go along: each member lists only what the caller may read.
            headers = {SCOPE_HEADER: [LOCAL_SCOPE]}
            for name in (b"Authorization", b"X-Zotpy-Client-Identity"):  # see zotpy.auth.mtls
                values = request.requestHeaders.getRawHeaders(name)
                if values:
                    headers[name] = values
            response = await self.client.get(url, headers=headers, timeout=self.timeout)
            body = await response.content()
        except Exception as error:
            raise MemberFailed(describe_failure(error)) from None
        if response.code != 200:
            raise MemberFailed(f"answered {response.code}: {body[:200].decode('utf-8', 'replace')}")
        try:
            repositories = json.loads(body)["repositories"] or []
        except (ValueError, KeyError, TypeError):
            raise MemberFailed(f"answered something that is not a catalog: {body[:200]!r}") from None
        return [name for name in repositories if isinstance(name, str)]

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("FanOutCatalog is a leaf")

