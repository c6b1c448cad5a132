"""Building the access layer from the configuration (what ``twistd zotpy`` puts in front of the registry)."""

from __future__ import annotations

from typing import Any, Callable

from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from zotpy.auth.audit import AuditLog, AuditResource
from zotpy.auth.basic import BasicAuthenticator
from zotpy.auth.cache import CredentialCache
from zotpy.auth.htpasswd import HtpasswdChecker
from zotpy.auth.identity import IAuthenticator, IPasswordChecker
from zotpy.auth.mtls import ClientCertificates
from zotpy.auth.policy import AccessPolicy
from zotpy.auth.ratelimit import RateLimiter, RateLimitResource
from zotpy.auth.resource import AuthResource, TagLookup
from zotpy.cluster.membership import Membership
from zotpy.config import Config, HTTPConfig
from zotpy.observability.reload import Reloader


#: The keys a SIGHUP applies to the running access layer (the others under ``http`` need a restart).
RELOADED_KEYS = ("http.auth", "http.accessControl", "http.realm")


def protected(
    config: Config,
    wrapped: IResource,
    reactor: Any,
    pool: ThreadPool,
    tag_exists: TagLookup | None = None,
    metrics_path: str | None = None,
    on_stop: Callable[[Callable[[], Any]], None] = lambda action: None,
    reloader: Reloader | None = None,
    membership: Membership | None = None,
) -> IResource:
    """``wrapped`` behind, from the outside in: ``http.ratelimit`` (cheapest refusal first), the
    audit log (``log.audit``, so refusals are recorded too), ``http.auth`` and ``http.accessControl``.
    Layers that are not configured are left out (nothing to check, nothing to pay). ``on_stop`` is
    given what to run when the service stops (closing the audit log).

    With a ``reloader`` (the daemon's SIGHUP), a changed ``http.auth``, ``http.accessControl`` or
    ``http.realm`` replaces the authentication and access layer as a whole, made from the new
    config (new checkers, an empty credential cache: a removed user or a changed password is
    refused at once); requests already admitted finish as they were. A config that does not read
    changes nothing (the reloader refuses it before any hook runs). The audit log is reopened on
    every SIGHUP.

    With a ``membership``, the members whose certificates are believed follow its list as
    ``cluster.members`` is reloaded (the current list and the previous one: a member added by the
    roll copies what it gained from a previous owner, a leaving one still forwards until it stops)."""
    certificates = _certificates(config)
    if certificates is not None and membership is not None:
        membership.listeners.append(lambda changed: _follow_members(certificates, changed))

    def access(http: HTTPConfig) -> IResource:
        return _access(http, certificates, wrapped, reactor, pool, tag_exists, metrics_path)

    resource = access(config.http)
    if reloader is not None:
        switch = Switch(resource)
        reloader.register(RELOADED_KEYS, lambda new: switch.replace(access(new.http)))
        resource = switch
    if config.log.audit is not None:
        audit = AuditLog(config.log.audit)
        on_stop(audit.close)
        if reloader is not None:
            reloader.register_reopen(audit.reopen)
        resource = AuditResource(resource, audit)
    if config.http.ratelimit is not None:
        members = config.cluster.members if config.cluster is not None else ()
        resource = RateLimitResource(resource, RateLimiter(config.http.ratelimit, reactor), members)
    return resource


@implementer(IResource)
class Switch:
    """Hands each request to the access layer in force when the request arrives."""

    isLeaf = True

    def __init__(self, current: IResource) -> None:
        self.current = current

    def replace(self, current: IResource) -> None:
        self.current = current

    def render(self, request: IRequest) -> Any:
        return self.current.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("Switch is a leaf")


def _certificates(config: Config) -> ClientCertificates | None:
    """Where client-certificate identities come from: with ``http.tls.cacert`` (fixed while the
    listener runs: a change of TLS needs a restart)."""
    if config.http.tls is None or config.http.tls.cacert is None:
        return None
    return ClientCertificates.for_members(config.cluster.members if config.cluster else ())


def _follow_members(certificates: ClientCertificates, membership: Membership) -> None:
    previous = membership.previous.members if membership.previous is not None else ()
    certificates.member_hosts = ClientCertificates.for_members((*membership.view.members, *previous)).member_hosts


def _access(
    http: HTTPConfig,
    certificates: ClientCertificates | None,
    wrapped: IResource,
    reactor: Any,
    pool: ThreadPool,
    tag_exists: TagLookup | None,
    metrics_path: str | None,
) -> IResource:
    if http.auth is None and http.access_control is None:
        return wrapped  # a verified client certificate is then enough by itself
    cache = CredentialCache(reactor)
    authenticators: list[IAuthenticator] = []
    if http.auth is not None and http.auth.bearer is not None:
        # zot: with bearer configured, tokens are the only way in (the token service checks passwords).
        from zotpy.auth.bearer import BearerAuthenticator, load_verification_key  # jwt: only with bearer

        bearer = http.auth.bearer
        authenticators.append(BearerAuthenticator(bearer.realm, bearer.service, load_verification_key(bearer.cert)))
    elif http.auth is not None:
        checkers: list[IPasswordChecker] = []
        if http.auth.htpasswd is not None:
            checkers.append(HtpasswdChecker(http.auth.htpasswd.path, reactor, pool, on_change=cache.clear))
        if http.auth.ldap is not None:
            from zotpy.auth.ldap import LDAPChecker  # ldaptor: imported only when LDAP is configured

            checkers.append(LDAPChecker(http.auth.ldap, reactor))  # after htpasswd, as in zot
        if checkers:
            authenticators.append(BasicAuthenticator(checkers))
    policy = AccessPolicy(http.access_control) if http.access_control is not None else None
    return AuthResource(
        wrapped,
        reactor,
        authenticators,
        policy,
        cache,
        realm=http.realm,
        fail_delay=http.auth.fail_delay if http.auth is not None else 0.0,
        tag_exists=tag_exists,
        metrics_path=metrics_path.encode() if metrics_path else None,
        certificates=certificates,
    )
