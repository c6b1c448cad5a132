"""Asking every cluster member at once, for what each answers from its own repositories.

The catalog (:mod:`zotpy.cluster.catalog`) and the search API (:mod:`zotpy.search`) both answer a
cluster-wide question by asking each member about the repositories it holds: itself directly, the
others in parallel over the peer connections, with a scope header saying "yours only" so that a
member never fans out again, and with the caller's credentials so that each member shows only
what the caller may read. :class:`FanOut` does the asking; the callers merge.

A member that does not answer, or answers anything but 200 with a body the caller can read, makes
the whole answer an ``UNAVAILABLE`` error naming every member that failed and why: a partial answer
would look complete to every client.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence, TypeVar

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import StorageError
from zotpy.transport.failures import describe_failure

log = Logger()

T = TypeVar("T")

RETRY_AFTER_SECONDS = 5
TIMEOUT_SECONDS = 30.0
LOCAL_SCOPE = b"local"
#: The caller's credentials, carried to each member (see zotpy.auth.mtls for the second).
_CREDENTIAL_HEADERS = (b"Authorization", b"X-Zotpy-Client-Identity")


class MemberFailed(Exception):
    """A member gave no usable answer."""


def is_local_scope(request: IRequest, header: bytes) -> bool:
    """Whether ``request`` asks for this member's own part only (it came from a fanning-out member)."""
    return request.requestHeaders.getRawHeaders(header, [b""])[0].strip().lower() == LOCAL_SCOPE


@attrs.define(eq=False)
class FanOut:
    """The cluster's members as seen from member ``me``; ``peer_error`` is told ``(member, operation)``
    for each member that failed (metrics)."""

    members: Sequence[str]
    me: int
    client: HTTPClient
    scheme: str = "http"
    timeout: float = TIMEOUT_SECONDS
    peer_error: Callable[[str, str], None] = lambda member, operation: None

    def url(self, index: int, path: str) -> str:
        return f"{self.scheme}://{self.members[index]}{path}"

    async def ask(
        self,
        request: IRequest,
        index: int,
        scope_header: bytes,
        path: str,
        parse: Callable[[bytes], T],
        body: bytes | None = None,
    ) -> T:
        """One member's part: GET ``path`` (POST ``body`` as JSON when given) with the scope header
        and the caller's credentials; ``parse`` reads a 200's body (ValueError: unusable)."""
        headers = {scope_header: [LOCAL_SCOPE]}
        for name in _CREDENTIAL_HEADERS:
            values = request.requestHeaders.getRawHeaders(name)
            if values:
                headers[name] = values
        try:
            if body is None:
                response = await self.client.get(self.url(index, path), headers=headers, timeout=self.timeout)
            else:
                headers[b"Content-Type"] = [b"application/json"]
                response = await self.client.post(
                    self.url(index, path), data=body, headers=headers, timeout=self.timeout
                )
            content = await response.content()
        except Exception as error:
            raise MemberFailed(describe_failure(error)) from None
        if response.code != 200:
            raise MemberFailed(f"answered {response.code}: {content[:200].decode('utf-8', 'replace')}")
        try:
            return parse(content)
        except (ValueError, KeyError, TypeError):
            raise MemberFailed(f"answered something unexpected: {content[:200]!r}") from None

    async def gather(
        self,
        operation: str,
        local: Callable[[], Awaitable[T]],
        remote: Callable[[int], Awaitable[T]],
    ) -> list[T]:
        """Every member's part, in member order: ``local()`` for this member, ``remote(index)`` for
        the others, all at once. A storage failure here is raised as it is (the caller answers it
        as its own); any member's failure raises ``UNAVAILABLE`` naming them all."""
        results = await DeferredList(
            [
                ensureDeferred(local() if index == self.me else remote(index))
                for index in range(len(self.members))
            ],
            consumeErrors=True,
        )
        parts: list[T] = []
        failed: dict[str, str] = {}
        for index, (ok, result) in enumerate(results):
            if ok:
                parts.append(result)
                continue
            if index == self.me and result.check(StorageError, RegistryError):
                result.raiseException()
            member = self.members[index]
            failed[member] = str(result.value)[:300] or result.type.__name__
            self.peer_error(member, operation)
        if failed:
            log.warn("{operation}: members did not answer: {failed}", operation=operation, failed=failed)
            raise unavailable(operation, failed)
        return parts


def unavailable(operation: str, failed: dict[str, Any]) -> RegistryError:
    return RegistryError(
        "UNAVAILABLE",
        f"the {operation} needs every cluster member, and some did not answer: " + ", ".join(sorted(failed)),
        detail={"members": failed},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
