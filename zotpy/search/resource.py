"""``/v2/_zot/ext/search``: zot's GraphQL search endpoint, GET and POST.

GET takes ``query``, ``variables`` (JSON) and ``operationName`` from the URL; POST a JSON body with
the same keys (zot's clients, the zui UI and curl scripts use both). Replies are gqlgen's, so zot's
clients read them unchanged: 200 with ``data`` (and ``errors`` for fields that failed: not found,
a cluster member down); 422 with ``errors`` for a document that does not parse, validate or fit
the limits (:mod:`zotpy.search.query`); 400 for a request that is not GraphQL at all. Never a 500:
a failure nobody expected is logged and answered as a field error.

The caller sees only repositories they may read: access control leaves its decision on the
request (:mod:`zotpy.api.visibility`), as for the catalog.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from graphql import GraphQLError
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api.responses import reply_json
from zotpy.api.visibility import reader
from zotpy.cluster.fanout import is_local_scope
from zotpy.oci.errors import RegistryError
from zotpy.search.cluster import SCOPE_HEADER, SEARCH_PATH, ClusterSearch, local_part
from zotpy.search.engine import MayRead, SearchEngine, SearchError
from zotpy.search.query import Prepared, QueryRefused, answer, prepare
from zotpy.storage.driver import StorageError
from zotpy.transport.twisted_private import request_disconnected

log = Logger()

#: A search request's body: a query, its variables, an operation name.
MAX_BODY_BYTES = 256 * 1024


def _json_argument(request: IRequest, name: bytes) -> Any:
    values = request.args.get(name)
    if not values:
        return None
    text = values[0].decode("utf-8", "replace")
    if name != b"variables":
        return text
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise QueryRefused("variables is not valid JSON", 400) from None


def _body(request: IRequest) -> dict[str, Any]:
    content = request.content
    content.seek(0)
    data = content.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise QueryRefused(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise QueryRefused("json request body could not be decoded", 400) from None
    if not isinstance(document, dict):
        raise QueryRefused("the request body must be a JSON object", 400)
    return document


def _field_error(error: Exception) -> GraphQLError:
    if isinstance(error, RegistryError):
        return GraphQLError(error.message, extensions={"code": error.code, **(error.detail or {})})
    return GraphQLError(str(error))


@implementer(IResource)
@attrs.define(eq=False)
class SearchResource:
    """Serves the search path; every other request goes to ``local`` unchanged. ``cluster`` is
    set when this member is one of several (then fields are asked of their owners)."""

    local: IResource
    engine: SearchEngine
    cluster: ClusterSearch | None = None
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        if request.path != SEARCH_PATH.encode():
            return self.local.render(request)
        if request.method not in (b"GET", b"POST"):
            request.setHeader("Allow", "GET, POST")
            return reply_json(request, 405, {"errors": [{"message": "the search API takes GET and POST"}]})
        answered = ensureDeferred(self._serve(request))
        answered.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: IRequest) -> None:
        """A fault of ours, not of the query: logged, and the client still gets an answer (a
        request left open would hold its connection until the client gives up)."""
        log.failure("search request failed", failure)
        if not request.finished and not request_disconnected(request):
            request.write(reply_json(request, 500, {"errors": [{"message": "the search failed on the server; see its log"}]}))
            request.finish()

    async def _serve(self, request: IRequest) -> None:
        may_read = reader(request)
        try:
            if request.method == b"POST" and is_local_scope(request, SCOPE_HEADER):
                part = _body(request)
                status, document = 200, await self._part(part, may_read)
            else:
                status, document = 200, await self._query(request, may_read)
        except QueryRefused as refused:
            status, document = refused.status, refused.body()
        if not request.finished and not request_disconnected(request):
            request.write(reply_json(request, status, document))
            request.finish()

    async def _part(self, part: dict[str, Any], may_read: MayRead) -> dict[str, Any]:
        field, args = part.get("field"), part.get("args")
        if not isinstance(field, str) or not isinstance(args, dict):
            raise QueryRefused("a search part names a field and its args", 400)
        try:
            return await local_part(self.engine, field, args, may_read)
        except (StorageError, RegistryError) as error:
            return {"error": f"{type(error).__name__}: {error}"}
        except Exception as error:
            # A member sends args its own GraphQL validation passed; anyone else can send the
            # scope header with args of any shape, which the resolvers were never meant to
            # check: whatever they raise is an answer about that input, not a server failure.
            log.warn("search: a local part of {field} could not be resolved: {error}", field=field, error=repr(error)[:300])
            return {"error": f"{field} failed: {type(error).__name__}"}

    async def _query(self, request: IRequest, may_read: MayRead) -> dict[str, Any]:
        if request.method == b"POST":
            body = _body(request)
            prepared = prepare(body.get("query"), body.get("variables"), body.get("operationName"))
        else:
            prepared = prepare(
                _json_argument(request, b"query"), _json_argument(request, b"variables"),
                _json_argument(request, b"operationName"),
            )
        return answer(prepared, await self._resolve_all(request, prepared, may_read))

    async def _resolve_all(self, request: IRequest, prepared: Prepared, may_read: MayRead) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for planned in prepared.fields:
            try:
                if self.cluster is not None:
                    results[planned.key] = await self.cluster.resolve(request, planned.field, planned.args, may_read)
                else:
                    results[planned.key] = await self.engine.resolve(planned.field, planned.args, may_read)
            except (SearchError, RegistryError) as error:
                results[planned.key] = _field_error(error)
            except StorageError as error:
                log.warn("search: storage failed: {error}", error=str(error))
                results[planned.key] = GraphQLError(f"the storage backend failed: {str(error)[:300]}")
            except Exception as error:
                log.failure("search: {field} failed", field=planned.field)
                results[planned.key] = GraphQLError(f"{planned.field} failed: {type(error).__name__}")
        return results

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("SearchResource is a leaf")
