"""Building the access layer from the configuration (what ``twistd zotpy`` puts in front of the registry)."""

from __future__ import annotations

from typing import Any, Callable

from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource

from zotpy.auth.audit import AuditLog, AuditResource
from zotpy.auth.basic import BasicAuthenticator
from zotpy.auth.cache import CredentialCache
from zotpy.auth.htpasswd import HtpasswdChecker
from zotpy.auth.identity import IAuthenticator, IPasswordChecker
from zotpy.auth.mtls import ClientCertificates
from zotpy.auth.policy import AccessPolicy
from zotpy.auth.ratelimit import RateLimiter, RateLimitResource
from zotpy.auth.resource import AuthResource, TagLookup
from zotpy.config import Config


def protected(
    config: Config,
    wrapped: IResource,
    reactor: Any,
    pool: ThreadPool,
    tag_exists: TagLookup | None = None,
    metrics_path: str | None = None,
    on_stop: Callable[[Callable[[], Any]], None] = lambda action: None,
) -> IResource:
    """``wrapped`` behind, from the outside in: ``http.ratelimit`` (cheapest refusal first), the
    audit log (``log.audit``, so refusals are recorded too), ``http.auth`` and ``http.accessControl``.
    Layers that are not configured are left out (nothing to check, nothing to pay). ``on_stop`` is
    given what to run when the service stops (closing the audit log)."""
    resource = _access(config, wrapped, reactor, pool, tag_exists, metrics_path)
    if config.log.audit is not None:
        audit = AuditLog(config.log.audit)
        on_stop(audit.close)
        resource = AuditResource(resource, audit)
    if config.http.ratelimit is not None:
        members = config.cluster.members if config.cluster is not None else ()
        resource = RateLimitResource(resource, RateLimiter(config.http.ratelimit, reactor), members)
    return resource


def _access(
    config: Config,
    wrapped: IResource,
    reactor: Any,
    pool: ThreadPool,
    tag_exists: TagLookup | None,
    metrics_path: str | None,
) -> IResource:
    http = config.http
    if http.auth is None and http.access_control is None:
        return wrapped  # a verified client certificate is then enough by itself
    certificates = None
    if http.tls is not None and http.tls.cacert is not None:
        certificates = ClientCertificates.for_members(config.cluster.members if config.cluster else ())
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
