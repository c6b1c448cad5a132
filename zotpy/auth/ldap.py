"""``http.auth.ldap``: user names and passwords checked against an LDAP directory, with ldaptor.

zot's procedure: bind as the search user (``bindDN``/``bindPassword``, from ``credentialsFile``),
find the one entry under ``baseDN`` whose ``userAttribute`` is the user name and that also matches
``userFilter`` (subtree or one level, ``subtreeSearch``), bind as that entry with the password, and
take the groups from its ``userGroupAttribute`` values. Everything is asynchronous (ldaptor on the
reactor, one short connection per check; the credential cache makes checks rare). The user name
goes into the filter as a value object, never as text, so it cannot change the filter.

A directory that does not answer (refused, timed out, the search bind failing) is not a wrong
password: the check fails with 503 ``UNAVAILABLE``, so clients keep their credentials and retry.
"""

from __future__ import annotations

from typing import Any

from ldaptor import ldapfilter
from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldaperrors
from ldaptor.protocols.ldap.ldapclient import LDAPClient
from ldaptor.protocols.ldap.ldapsyntax import LDAPEntry
from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.logger import Logger
from zope.interface import implementer

from zotpy.auth.identity import AuthenticationFailed, Identity, IPasswordChecker
from zotpy.auth.settings import LDAPSettings
from zotpy.oci.errors import RegistryError
from zotpy.transport.tls import read_certificates

log = Logger()

TIMEOUT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 5


class _Unavailable(Exception):
    pass


@implementer(IPasswordChecker)
class LDAPChecker:
    def __init__(self, settings: LDAPSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.description = f"LDAP {settings.address}:{settings.port}"
        self.user_filter = ldapfilter.parseFilter(settings.user_filter) if settings.user_filter else None
        # caCert: every CA of the bundle (None: the system's CAs); read once, not per check
        self._trust = (
            ssl.trustRootFromCertificates([ssl.Certificate(ca) for ca in read_certificates(settings.ca_cert)])
            if settings.ca_cert else None
        )

    def _tls(self) -> ssl.IOpenSSLClientConnectionCreator | None:
        settings = self.settings
        if settings.insecure:
            return None
        if settings.skip_verify:
            return ssl.CertificateOptions(verify=False)  # type: ignore[return-value]
        return ssl.optionsForClientTLS(settings.address, trustRoot=self._trust)

    def check(self, username: str, password: str) -> Deferred[Identity]:
        if not password:
            # An empty password would be an unauthenticated bind, which LDAP servers accept.
            return fail(AuthenticationFailed("empty password"))
        checking = Deferred.fromCoroutine(self._check(username, password))
        checking.addTimeout(TIMEOUT_SECONDS, self.reactor)
        return checking.addErrback(self._translate)

    def _translate(self, failure: Any) -> Any:
        if failure.check(AuthenticationFailed, RegistryError):
            return failure
        log.warn("LDAP server {server} did not answer: {error}", server=self.description, error=failure.getErrorMessage())
        raise RegistryError(
            "UNAVAILABLE", "the authentication directory is unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def _connect(self) -> LDAPClient:
        settings = self.settings
        tls = self._tls()
        if tls is not None and not settings.start_tls:
            endpoint: Any = SSL4ClientEndpoint(self.reactor, settings.address, settings.port, tls, timeout=TIMEOUT_SECONDS)
        else:
            endpoint = TCP4ClientEndpoint(self.reactor, settings.address, settings.port, timeout=TIMEOUT_SECONDS)
        client: LDAPClient = await connectProtocol(endpoint, LDAPClient())
        if tls is not None and settings.start_tls:
            await client.startTLS(tls)
        return client

    async def _check(self, username: str, password: str) -> Identity:
        settings = self.settings
        client = await self._connect()
        try:
            try:
                await client.bind(settings.bind_dn, settings.bind_password)
            except ldaperrors.LDAPException as error:
                raise _Unavailable(f"the search bind as {settings.bind_dn!r} failed: {error}") from None
            wanted: Any = pureldap.LDAPFilter_equalityMatch(
                attributeDesc=pureldap.LDAPAttributeDescription(settings.user_attribute),
                assertionValue=pureldap.LDAPAssertionValue(username),
            )
            if self.user_filter is not None:
                wanted = pureldap.LDAPFilter_and([wanted, self.user_filter])
            scope = pureldap.LDAP_SCOPE_wholeSubtree if settings.subtree_search else pureldap.LDAP_SCOPE_singleLevel
            attributes = [settings.user_group_attribute] if settings.user_group_attribute else ["1.1"]
            entries = await LDAPEntry(client, settings.base_dn).search(
                filterObject=wanted, scope=scope, attributes=attributes
            )
            if len(entries) != 1:
                raise AuthenticationFailed("no such user, or not exactly one")
            entry = entries[0]
            try:
                await client.bind(str(entry.dn), password)
            except ldaperrors.LDAPInvalidCredentials:
                raise AuthenticationFailed("wrong password") from None
            groups: frozenset[str] = frozenset()
            if settings.user_group_attribute:
                values = entry.get(settings.user_group_attribute, ())
                groups = frozenset(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values)
            return Identity(username, groups)
        finally:
            client.transport.loseConnection()
