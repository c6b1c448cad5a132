"""``AuthResource``: authenticate and authorize a request before anything else sees it.

It wraps the whole registry (probes, metrics, the cluster's forwarding resource and the API), so a
request that will be refused is refused by the replica that received it, before it is forwarded,
before its body is stored, and the owner, which receives the forwarded request with its
``Authorization`` header, checks again with the same configuration: reaching a replica directly is
never a way around the policy.

Answers: 401 ``UNAUTHORIZED`` with ``WWW-Authenticate`` when credentials are missing, malformed or
wrong (after ``failDelay`` for wrong ones), or when an anonymous caller is not allowed; 403
``DENIED`` when an authenticated caller is not allowed. Neither says whether the user name exists.

A member's own-copy read (``GET``/``HEAD`` of the catalog, a tags list, a manifest or a blob with
``X-Zotpy-Scope: local``, or for the catalog ``X-Zotpy-Catalog-Scope: local`` with
``X-Zotpy-Catalog-For-Member``, since the catalog fan-out sends the scope alone on a user's behalf
and must stay filtered by that user's policy) over a connection
whose verified TLS client certificate names a cluster member is admitted without credentials, as
:data:`MEMBER` reading everything: the rebalancer of per-instance storage and the ``dropMoved``
check ask the previous owner, or the owner, that way and hold no user's credentials. Nothing else
is: not a write, not another route, not a request from a member's address without its certificate.

A cached verdict decides synchronously, so an authenticated request costs a hash and a dictionary
look-up; only a first sight of a header waits for bcrypt (in a thread pool).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api import routes
from zotpy.api.responses import reply_error
from zotpy.api.routes import match_request
from zotpy.api.visibility import set_reader
from zotpy.auth import actions
from zotpy.auth.cache import CredentialCache
from zotpy.auth.identity import ANONYMOUS, AuthenticationFailed, IAuthenticator, Identity
from zotpy.auth.mtls import IDENTITY_HEADER, ClientCertificates
from zotpy.auth.policy import AccessPolicy
from zotpy.cluster.catalog import FOR_MEMBER_HEADER
from zotpy.cluster.catalog import SCOPE_HEADER as CATALOG_SCOPE_HEADER
from zotpy.cluster.fanout import is_local_scope
from zotpy.cluster.membership import STATUS_PATH, local_scope
from zotpy.oci.errors import RegistryError
from zotpy.transport.twisted_private import request_disconnected

log = Logger()

DEFAULT_REALM = "zot"
# The probes, and the cluster view the members ask each other for (they hold no credentials of
# their own; it says which members there are and no more, see zotpy.cluster.membership).
_OPEN_PATHS = frozenset({b"/livez", b"/readyz", b"/startupz", STATUS_PATH})

#: Who a member's own-copy read is logged as (the access and audit logs).
MEMBER = Identity("cluster member")
#: The routes a member reads another's own copy through (:mod:`zotpy.sync.moves`, :mod:`zotpy.lifecycle.moved`).
_MEMBER_READ_ROUTES = (routes.TAGS, routes.MANIFEST, routes.BLOB)

#: ``(repository, tag)`` -> whether the tag exists here; None when this replica cannot tell (it does
#: not own the repository: the owner decides create against update when the request reaches it).
TagLookup = Callable[[str, str], Awaitable[bool | None]]


def _forward(result: Any, waiter: Deferred[Any]) -> Any:
    """Hand one shared result to a waiter, keeping it for the next ones."""
    waiter.callback(result)
    return result


class _Unauthorized(Exception):
    """Credentials wrong: answered 401 after the fail delay."""


@implementer(IResource)
class AuthResource:
    isLeaf = True

    def __init__(
        self,
        wrapped: IResource,
        clock: IReactorTime,
        authenticators: Sequence[IAuthenticator] = (),
        policy: AccessPolicy | None = None,
        cache: CredentialCache | None = None,
        realm: str = DEFAULT_REALM,
        fail_delay: float = 0.0,
        tag_exists: TagLookup | None = None,
        metrics_path: bytes | None = None,
        certificates: ClientCertificates | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.clock = clock
        self.authenticators = {authenticator.scheme: authenticator for authenticator in authenticators}
        self.policy = policy
        self.cache = cache if cache is not None else CredentialCache(clock)
        self.realm = realm
        self.fail_delay = fail_delay
        self.tag_exists = tag_exists
        self.metrics_path = metrics_path
        self.certificates = certificates
        self._pending: dict[bytes, Deferred[Identity | None]] = {}

    # -- the request's path -------------------------------------------------------------------------

    def render(self, request: IRequest) -> Any:
        if request.path in _OPEN_PATHS or request.method == b"OPTIONS":
            return self.wrapped.render(request)
        outcome: list[Any] = []

        def capture(result: Any) -> Any:
            outcome.append(result)
            return None  # handled below, now or when it comes

        decided = Deferred.fromCoroutine(self._admit(request)).addBoth(capture)
        if outcome:  # decided without waiting (a cached verdict, no tag to look up)
            return self._continue(request, outcome[0])
        decided.addCallback(lambda _: self._resume(request, outcome[0]))
        decided.addErrback(lambda failure: log.failure("answering after authentication failed", failure))
        return NOT_DONE_YET

    def _continue(self, request: IRequest, result: Any) -> Any:
        if isinstance(result, Failure):
            error = result.value
            if not isinstance(error, RegistryError):
                log.failure("authentication failed unexpectedly", result)
                error = RegistryError("UNAVAILABLE", "authentication could not be completed")
            return reply_error(request, error)
        return self.wrapped.render(request)

    def _resume(self, request: IRequest, result: Any) -> None:
        if request.finished or request_disconnected(request):
            return
        body = self._continue(request, result)
        if body is NOT_DONE_YET:
            return
        if body:
            request.write(body)
        request.finish()

    async def _admit(self, request: IRequest) -> None:
        """Returns when the request may go on; raises the RegistryError to answer otherwise."""
        found = match_request(request)
        if self._member_read(request, found):
            request.requestHeaders.removeHeader(IDENTITY_HEADER)  # served here, never forwarded as anyone
            request.zotpy_user = MEMBER.name  # type: ignore[attr-defined]
            return
        need = actions.need(found, request.args or {})
        try:
            identity = await self._identify(request, need)
        except _Unauthorized:
            if self.fail_delay > 0:
                await deferLater(self.clock, self.fail_delay)
            raise self._unauthorized("authentication failed", need) from None
        request.zotpy_user = identity.name  # type: ignore[attr-defined]  # for the access and audit logs
        await self._authorize(request, identity, need)

    def _member_read(self, request: IRequest, found: routes.Match | None) -> bool:
        """Whether ``request`` is a member's read of this replica's own copy (see the module)."""
        if self.certificates is None or found is None or request.method not in (b"GET", b"HEAD"):
            return False
        if found.route is routes.CATALOG:
            # The catalog fan-out asks with the same scope on a user's behalf: that one stays filtered.
            scoped = is_local_scope(request, CATALOG_SCOPE_HEADER) and request.requestHeaders.hasHeader(FOR_MEMBER_HEADER)
        elif any(found.route is route for route in _MEMBER_READ_ROUTES):
            scoped = local_scope(request)
        else:
            return False
        return scoped and self.certificates.from_member(request)

    async def _identify(self, request: IRequest, need: actions.Need) -> Identity:
        """The caller. Without credentials, anonymous where an ``anonymousPolicy`` may allow it, but
        never on ``/v2/``: clients (containers/image, docker) decide from that ping whether to send
        credentials at all, so it must challenge whenever authentication is configured (zot lets
        it through, and then skopeo with credentials never sends them)."""
        header = request.getHeader(b"authorization")
        certified = self.certificates.identify(request) if self.certificates is not None else None
        if header is None or not self.authenticators:
            if certified is not None:
                return certified  # a verified client certificate (zot: when no other credentials)
            if not self.authenticators:
                return ANONYMOUS  # no http.auth: everyone is anonymous, as in zot
        anonymous_allowed = need.kind != actions.BASE and self.policy is not None and self.policy.settings.anonymous_allowed
        if header is None:
            if anonymous_allowed:
                return ANONYMOUS
            raise self._unauthorized("authentication required", need)
        identity = await self._verify(header)
        if identity.anonymous and identity.grants is None and not anonymous_allowed:
            raise self._unauthorized("authentication required", need)
        return identity

    async def _verify(self, header: bytes) -> Identity:
        key = self.cache.key(header)
        verdict = self.cache.get(key)
        if verdict is not None:
            if verdict.identity is None:
                raise _Unauthorized()
            return verdict.identity
        scheme, _, credentials = header.partition(b" ")
        authenticator = self.authenticators.get(scheme.lower())
        if authenticator is None:
            raise _Unauthorized()
        # One check per header at a time: a client opening 8 connections at once with the same
        # credentials costs one bcrypt, not 8 (they would all miss the cache together).
        pending = self._pending.get(key)
        if pending is None:
            pending = Deferred.fromCoroutine(self._check(key, authenticator, credentials))
            if not pending.called:
                self._pending[key] = pending
                pending.addBoth(self._settled, key)
        waiter: Deferred[Any] = Deferred()
        pending.addCallback(_forward, waiter)
        outcome = await waiter
        if isinstance(outcome, RegistryError):
            raise outcome
        if outcome is None:
            raise _Unauthorized()
        identity: Identity = outcome
        return identity

    def _settled(self, result: Any, key: bytes) -> Any:
        self._pending.pop(key, None)
        return result

    async def _check(self, key: bytes, authenticator: IAuthenticator, credentials: bytes) -> Any:
        """The identity, None for wrong credentials, or the RegistryError to answer (returned, not
        raised: the result is shared by every request waiting for the same header)."""
        try:
            identity: Identity = await authenticator.authenticate(credentials)
        except AuthenticationFailed:
            self.cache.put(key, None)
            return None
        except RegistryError as error:
            return error
        except Exception:
            log.failure("authentication failed unexpectedly")
            return RegistryError("UNAVAILABLE", "authentication could not be completed")
        self.cache.put(key, identity)
        return identity

    async def _authorize(self, request: IRequest, identity: Identity, need: actions.Need) -> None:
        if self.metrics_path is not None and request.path == self.metrics_path:
            if self.policy is not None and identity.grants is None and not self.policy.may_scrape_metrics(identity):
                raise self._refusal(identity, need)
            return
        if identity.grants is not None:
            self._authorize_token(identity.grants, need)
            if need.kind == actions.SEARCH:
                set_reader(request, actions.token_reader(identity.grants))
            return
        if self.policy is None:
            return  # authentication alone: every authenticated user may do everything (zot)
        if need.kind in (actions.CATALOG, actions.SEARCH):
            set_reader(request, self.policy.reader(identity))
            return
        if need.kind != actions.REPOSITORY:
            return
        if need.mount_from is not None and not self.policy.can(identity, "read", need.mount_from):
            raise self._refusal(identity, need)
        action = need.action
        if need.tag is not None:
            action = await self._create_or_update(identity, need.repository, need.tag)
        if not self.policy.can(identity, action, need.repository):
            raise self._refusal(identity, need)

    def _authorize_token(self, grants: frozenset[tuple[str, str, str]], need: actions.Need) -> None:
        """A bearer token's own ``access`` claim decides (zot skips accessControl for tokens)."""
        missing = [
            (kind, name, action) for kind, name, action in actions.token_scopes(need)
            if (kind, name, action) not in grants and (kind, name, "*") not in grants
        ]
        if missing:
            error = self._unauthorized("the token does not grant this", need)
            error.headers["WWW-Authenticate"] += ',error="insufficient_scope"'
            raise error

    async def _create_or_update(self, identity: Identity, repository: str, tag: str) -> str:
        """Which action a manifest PUT by tag needs. Looked up only when it matters: a user who may
        do both, or neither, needs no look-up; a replica that cannot tell lets through a user who may
        do either (the owner, which can tell, decides)."""
        assert self.policy is not None
        may_create = self.policy.can(identity, "create", repository)
        may_update = self.policy.can(identity, "update", repository)
        if may_create == may_update or self.tag_exists is None:
            return "create"
        exists = await self.tag_exists(repository, tag)
        if exists is None:
            return "create" if may_create else "update"
        return "update" if exists else "create"

    # -- answers ------------------------------------------------------------------------------------

    def _challenge(self, need: actions.Need | None) -> str:
        scope = actions.scope_text(need) if need is not None else None
        return ", ".join(a.challenge(self.realm, scope) for a in self.authenticators.values()) or (
            f'Basic realm="{self.realm}"'
        )

    def _unauthorized(self, message: str, need: actions.Need | None = None) -> RegistryError:
        return RegistryError("UNAUTHORIZED", message, headers={"WWW-Authenticate": self._challenge(need)})

    def _refusal(self, identity: Identity, need: actions.Need) -> RegistryError:
        if identity.anonymous:
            return self._unauthorized("authentication required", need)
        return RegistryError("DENIED")

    # -- resource plumbing --------------------------------------------------------------------------

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("AuthResource is a leaf")
