"""An OCI Distribution client for upstream registries, on treq.

What sync needs from an upstream and nothing more: the catalog and tag lists (following ``Link``
pagination), manifests of every media type (by tag or digest, ``HEAD`` for the digest alone), blobs
streamed with backpressure into a sink, and the referrers API where the upstream offers it.

Authentication follows the registry token protocol: a request goes out with what is known for the
host; a ``401`` names the scheme in ``WWW-Authenticate``. ``Basic`` is answered with the host's
credentials (from ``credentialsFile``, keyed by ``host[:port]``), ``Bearer realm=...,service=...,
scope=...`` by fetching a token from the realm (with those credentials, if any) and repeating the
request with it. Tokens are kept per host and scope until refused.

``urls`` are tried in order: the first that answers serves, and keeps serving until it stops
answering (then the next ones are tried). A whole operation that fails for a reason that may pass
(unreachable, 5xx, 429, refused credentials) is retried up to ``maxRetries`` times, ``retryDelay``
apart (doubling up to ``maxRetryDelay`` when that is set).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet import error as internet_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IPolicyForHTTPS, IResponse

from zotpy.oci.digest import Digest, digest_of, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST
from zotpy.transport.pools import persistent_pool
from zotpy.transport.tls import client_policy
from zotpy.sync.settings import Credentials, RegistrySettings
from zotpy.transport.failures import describe_failure

log = Logger()

ACCEPT_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
#: Seconds to wait for an upstream's reply headers, and for the next bytes of a body.
HEADERS_TIMEOUT = 60.0
IDLE_TIMEOUT = 120.0
PAGE_SIZE = 1000
CONNECT_TIMEOUT = 10.0
USER_AGENT = "zotpy-sync"
_CONNECTION_ERRORS = (
    internet_error.ConnectError,
    internet_error.DNSLookupError,
    internet_error.TimeoutError,
    internet_error.ConnectionLost,
    ResponseNeverReceived,
    ResponseFailed,
    CancelledError,
)
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class UpstreamError(Exception):
    """An upstream request failed; ``retryable`` when trying again later may help."""

    retryable = True


class UpstreamNotFound(UpstreamError):
    """The upstream answered 404: the repository or reference does not exist there."""

    retryable = False


class UpstreamAuthError(UpstreamError):
    """The upstream refused access (no credentials, wrong ones, or a token endpoint that said no)."""


class UpstreamUnreachable(UpstreamError):
    """None of the registry's URLs answered."""


class UpstreamInvalid(UpstreamError):
    """The upstream sent something that is not what it claims (digest mismatch, bad JSON...)."""

    retryable = False


@attrs.frozen
class FetchedManifest:
    body: bytes
    media_type: str
    digest: Digest


def tls_policy(settings: RegistrySettings) -> IPolicyForHTTPS:
    """zot's ``certDir``: ``*.crt`` are CAs trusted besides the system's, ``<name>.cert`` with
    ``<name>.key`` is the client certificate."""
    extra: list[str] = []
    client: tuple[str, str] | None = None
    if settings.cert_dir:
        for name in sorted(os.listdir(settings.cert_dir)):
            path = os.path.join(settings.cert_dir, name)
            if name.endswith(".crt"):
                extra.append(path)
            elif name.endswith(".cert") and client is None:
                client = (path, path[: -len(".cert")] + ".key")
    return client_policy(verify=settings.tls_verify, extra_ca_paths=extra, client_cert=client)


def make_http_client(reactor: Any, settings: RegistrySettings) -> tuple[HTTPClient, HTTPConnectionPool]:
    pool = persistent_pool(reactor)
    pool.maxPersistentPerHost = 8
    pool.cachedConnectionTimeout = 60
    agent = Agent(reactor, contextFactory=tls_policy(settings), pool=pool, connectTimeout=CONNECT_TIMEOUT)
    return HTTPClient(agent), pool


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        match.group(1).lower(): (match.group(2).replace('\\"', '"') if match.group(2) is not None else match.group(3))
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def next_link(response: IResponse, current: str) -> str | None:
    for value in response.headers.getRawHeaders(b"link", []):
        match = _LINK_NEXT.search(value.decode("latin-1"))
        if match:
            return urljoin(current, match.group(1))
    return None


async def _text(response: IResponse, limit: int = 2000) -> str:
    body = await treq.content(response)
    return body[:limit].decode("utf-8", "replace").strip()


@attrs.define(eq=False)
class _Auth:
    """What a host asked for, and the tokens it gave."""

    basic: bool = False
    tokens: dict[str, str] = attrs.field(factory=dict)


@attrs.define(eq=False)
class UpstreamClient:
    """One upstream registry (``registries[i]``): its URLs, credentials, TLS and retry policy."""

    settings: RegistrySettings
    http: HTTPClient
    clock: Any
    credentials: Mapping[str, Credentials] = attrs.field(factory=dict, repr=False)
    #: Sent with every request, so the upstream's operators (and tests) see who pulled.
    user_agent: str = USER_AGENT
    #: Whether the upstream answers the referrers API (None: not known yet).
    referrers_supported: bool | None = None
    #: Sent with every request too (a cluster member asks a peer for its own copy this way).
    headers: Mapping[str, str] = attrs.field(factory=dict)
    _current: int = 0
    _auth: dict[str, _Auth] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        """How logs name this upstream: its first URL."""
        return self.settings.urls[0]

    # -- retries and fallbacks ------------------------------------------------------------------

    async def retrying(self, what: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``operation``, again after ``retryDelay`` when it fails retryably, ``maxRetries`` times at most."""
        attempt = 0
        while True:
            try:
                return await operation()
            except UpstreamError as error:
                if not error.retryable or attempt >= self.settings.max_retries:
                    raise
                delay = self.settings.retry_delay
                if self.settings.max_retry_delay is not None:
                    delay = min(delay * 2**attempt, self.settings.max_retry_delay)
                attempt += 1
                log.warn(
                    "sync: {upstream}: {what} failed ({error}); retry {attempt} of {retries} in {delay}s",
                    upstream=self.name, what=what, error=error, attempt=attempt,
                    retries=self.settings.max_retries, delay=delay,
                )
                await deferLater(self.clock, delay, lambda: None)

    async def request(
        self, method: str, path: str, scope: str, headers: Mapping[str, str] | None = None, stream: bool = False
    ) -> IResponse:
        """One request to the first URL that answers, authenticated as the upstream asks; 2xx only.

        ``path`` is absolute (``/v2/...``) or a full URL from a ``Link`` header. Errors are typed.
        """
        if "://" in path:
            return await self._authenticated(method, path, scope, headers, stream)
        failures: list[str] = []
        count = len(self.settings.urls)
        for step in range(count):
            index = (self._current + step) % count
            base = self.settings.urls[index]
            try:
                response = await self._authenticated(method, base + path, scope, headers, stream)
            except UpstreamUnreachable as error:
                failures.append(f"{base}: {error}")
                continue
            if index != self._current:
                log.info("sync: {upstream}: using {url} (earlier URLs did not answer)", upstream=self.name, url=base)
                self._current = index
            return response
        raise UpstreamUnreachable("; ".join(failures))

    async def _send(self, method: str, url: str, headers: dict[str, str], stream: bool) -> IResponse:
        headers = {"User-Agent": self.user_agent, **self.headers, **headers}
        try:
            return await self.http.request(
                method, url, headers={k: [v] for k, v in headers.items()}, unbuffered=stream,
                timeout=HEADERS_TIMEOUT, reactor=self.clock,
            )
        except _CONNECTION_ERRORS as error:
            raise UpstreamUnreachable(describe_failure(error)) from None

    def _credentials(self, url: str) -> Credentials | None:
        return self.credentials.get(urlsplit(url).netloc)

    async def _authenticated(
        self, method: str, url: str, scope: str, extra: Mapping[str, str] | None, stream: bool
    ) -> IResponse:
        host = urlsplit(url).netloc
        auth = self._auth.setdefault(host, _Auth())
        credentials = self._credentials(url)
        refreshed = False
        while True:
            headers = dict(extra or {})
            sent = self._authorization(auth, scope, credentials)
            if sent is not None:
                headers["Authorization"] = sent
            response = await self._send(method, url, headers, stream)
            if response.code != 401 or refreshed:
                break
            challenge = (response.headers.getRawHeaders(b"www-authenticate") or [b""])[0].decode("latin-1")
            scheme, params = parse_challenge(challenge)
            if scheme == "basic" and sent is not None and sent.startswith("Basic "):
                break  # the credentials were refused; sending them again would not help
            await treq.content(response)
            if scheme == "basic":
                if credentials is None:
                    raise UpstreamAuthError(
                        f"{url}: 401, the upstream asks for a username and password and "
                        f"extensions.sync.credentialsFile has none for {host!r}"
                    )
                auth.basic = True
            elif scheme == "bearer" and params.get("realm"):
                auth.tokens[scope] = await self._token(params, scope, credentials, host)
            else:
                raise UpstreamAuthError(f"{url}: 401 with an authentication scheme zotpy does not speak: {challenge!r}")
            refreshed = True
        return await self._checked(response, method, url, sent is not None, credentials)

    def _authorization(self, auth: _Auth, scope: str, credentials: Credentials | None) -> str | None:
        token = auth.tokens.get(scope)
        if token is not None:
            return f"Bearer {token}"
        if auth.basic and credentials is not None:
            pair = f"{credentials.username}:{credentials.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None

    async def _token(self, params: dict[str, str], scope: str, credentials: Credentials | None, host: str) -> str:
        query = {"service": params["service"]} if params.get("service") else {}
        query["scope"] = params.get("scope") or scope
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {}
        if credentials is not None:
            pair = f"{credentials.username}:{credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        response = await self._send("GET", url, headers, False)
        if response.code in (401, 403):
            who = f"user {credentials.username!r}" if credentials else "anonymous access"
            raise UpstreamAuthError(
                f"the token service {realm} refused {who} for {host} ({response.code}: {await _text(response, 300)})"
            )
        if response.code != 200:
            raise UpstreamError(f"the token service {realm} answered {response.code}: {await _text(response, 300)}")
        try:
            document = json.loads(await treq.content(response))
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise UpstreamInvalid(f"the token service {realm} sent no token")
        return token

    async def _checked(
        self, response: IResponse, method: str, url: str, authenticated: bool, credentials: Credentials | None
    ) -> IResponse:
        code = response.code
        if 200 <= code < 300:
            return response
        text = await _text(response, 500) if method != "HEAD" else ""
        detail = f"{method} {url}: {code}" + (f" {text}" if text else "")
        if code == 404:
            raise UpstreamNotFound(detail)
        if code in (401, 403):
            if credentials is not None and authenticated:
                raise UpstreamAuthError(
                    f"{detail} (the credentials of user {credentials.username!r} from "
                    "extensions.sync.credentialsFile were refused)"
                )
            raise UpstreamAuthError(detail)
        error = UpstreamError(detail)
        error.retryable = code >= 500 or code in (408, 429)
        raise error

    # -- the API ----------------------------------------------------------------------------------

    async def _paged(self, path: str, scope: str, key: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            response = await self.request("GET", url, scope)
            try:
                document = json.loads(await treq.content(response))
                page = document.get(key) or []
            except (ValueError, AttributeError):
                raise UpstreamInvalid(f"GET {url}: the reply is not the expected JSON") from None
            items.extend(item for item in page if isinstance(item, str))
            following = next_link(response, url if "://" in url else self.settings.urls[self._current] + url)
            url = following
        return items

    async def catalog(self) -> list[str]:
        return await self.retrying(
            "listing the catalog",
            lambda: self._paged(f"/v2/_catalog?n={PAGE_SIZE}", "registry:catalog:*", "repositories"),
        )

    async def tags(self, repo: str) -> list[str]:
        return await self.retrying(
            f"listing the tags of {repo}",
            lambda: self._paged(f"/v2/{repo}/tags/list?n={PAGE_SIZE}", _pull(repo), "tags"),
        )

    async def manifest_digest(self, repo: str, reference: str) -> Digest | None:
        """The digest ``reference`` names upstream (a HEAD), or None when the upstream does not say."""

        async def head() -> Digest | None:
            response = await self.request("HEAD", f"/v2/{repo}/manifests/{reference}", _pull(repo), {"Accept": ACCEPT_MANIFESTS})
            await treq.content(response)
            value = response.headers.getRawHeaders(b"docker-content-digest")
            try:
                return parse_digest(value[0].decode("ascii")) if value else None
            except (RegistryError, UnicodeDecodeError):
                return None

        return await self.retrying(f"checking {repo}:{reference}", head)

    async def manifest(self, repo: str, reference: str) -> FetchedManifest:
        """A manifest's exact bytes, verified against the digest the reference or the upstream names."""

        async def get() -> FetchedManifest:
            response = await self.request("GET", f"/v2/{repo}/manifests/{reference}", _pull(repo), {"Accept": ACCEPT_MANIFESTS})
            body = await _limited(response, MAX_MANIFEST_BYTES)
            media_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode("latin-1")
            media_type = media_type.split(";")[0].strip()
            if not media_type or media_type in ("application/json", "text/plain"):
                try:
                    media_type = json.loads(body).get("mediaType") or OCI_MANIFEST
                except (ValueError, AttributeError):
                    raise UpstreamInvalid(f"{repo}:{reference}: the manifest is not JSON") from None
            claimed = _claimed_digest(response, reference)
            digest = digest_of(body, claimed.algorithm if claimed is not None else "sha256")
            if claimed is not None and digest != claimed:
                raise UpstreamInvalid(
                    f"{repo}:{reference}: the upstream's manifest hashes to {digest}, not {claimed} as it said"
                )
            return FetchedManifest(body, media_type, digest)

        return await self.retrying(f"fetching manifest {repo}:{reference}", get)

    async def blob(self, repo: str, digest: Digest, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Stream blob ``digest`` into ``sink`` chunk by chunk (the next chunk waits for the sink);
        the number of bytes. Verification is the sink's business (the store checks the digest).
        Not retried here: a transfer cut midway must start again with a fresh sink (see ``retrying``)."""
        response = await self.request("GET", f"/v2/{repo}/blobs/{digest}", _pull(repo), stream=True)
        done: Deferred[int] = Deferred()
        response.deliverBody(_SinkProtocol(sink, done, self.clock))
        try:
            return await done
        except UpstreamError:
            raise
        except Exception as error:
            raise UpstreamError(f"fetching blob {digest} of {repo}: {describe_failure(error)}") from None

    async def referrers(self, repo: str, digest: Digest) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose subject is ``digest``; None when the upstream has no
        referrers API (remembered, so it is asked once)."""
        if self.referrers_supported is False:
            return None

        async def get() -> list[dict[str, Any]] | None:
            try:
                response = await self.request("GET", f"/v2/{repo}/referrers/{digest}", _pull(repo), {"Accept": OCI_INDEX})
            except UpstreamNotFound:
                self.referrers_supported = False
                return None
            try:
                document = json.loads(await _limited(response, MAX_MANIFEST_BYTES))
                manifests = document.get("manifests") or []
            except (ValueError, AttributeError):
                self.referrers_supported = False
                return None
            self.referrers_supported = True
            return [entry for entry in manifests if isinstance(entry, dict) and "digest" in entry]

        return await self.retrying(f"listing the referrers of {repo}@{digest}", get)


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _claimed_digest(response: IResponse, reference: str) -> Digest | None:
    if ":" in reference:
        return parse_digest(reference)
    value = response.headers.getRawHeaders(b"docker-content-digest")
    try:
        return parse_digest(value[0].decode("ascii")) if value else None
    except (RegistryError, UnicodeDecodeError):
        return None


async def _limited(response: IResponse, limit: int) -> bytes:
    if response.length is not None and isinstance(response.length, int) and response.length > limit:
        response.deliverBody(_Discard())
        raise UpstreamInvalid(f"a manifest of {response.length} bytes is over zotpy's {limit}-byte limit")
    body = await treq.content(response)
    if len(body) > limit:
        raise UpstreamInvalid(f"a manifest of {len(body)} bytes is over zotpy's {limit}-byte limit")
    return body


class _Discard(Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()


#: Bytes gathered before the sink is called: large enough for efficient appends (and S3 parts),
#: small enough that a transfer holds little memory.
SINK_CHUNK = 8 * 1024 * 1024


class _SinkProtocol(Protocol):
    """Receives a body and hands it to an async sink in chunks, one at a time and in order, pausing
    the transfer while the sink works.

    Fires ``done`` with the byte count once the last chunk was written, or with the failure (of the
    transfer, of the sink, or ``IDLE_TIMEOUT`` seconds without bytes).
    """

    def __init__(self, sink: Callable[[bytes], Awaitable[None]], done: Deferred[int], clock: Any) -> None:
        self.sink = sink
        self.done = done
        self.clock = clock
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.total = 0
        self.paused = False
        self.ended = False
        self.draining: Deferred[None] | None = None
        self.failed: Failure | None = None
        self.idle: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._touch()

    def _touch(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.reset(IDLE_TIMEOUT)
        else:
            self.idle = self.clock.callLater(IDLE_TIMEOUT, self._expire)

    def _stop_timer(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.cancel()

    def _expire(self) -> None:
        self.failed = Failure(UpstreamError(f"the upstream sent nothing for {IDLE_TIMEOUT:.0f}s"))
        self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.failed is not None:
            return
        self.buffer.append(data)
        self.buffered += len(data)
        self.total += len(data)
        if self.buffered < SINK_CHUNK or self.paused:
            self._touch()
            return
        self.paused = True
        self._stop_timer()
        self.transport.pauseProducing()
        if self.draining is None:
            self.draining = Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        try:
            while self.failed is None and (self.buffered >= SINK_CHUNK or (self.ended and self.buffered)):
                chunk = b"".join(self.buffer)
                self.buffer, self.buffered = [], 0
                await self.sink(chunk)
        except Exception:
            self.failed = Failure()
            if not self.ended:
                self.transport.stopProducing()
        finally:
            self.draining = None
        if self.ended:
            self._report()
        elif self.failed is None:
            self.paused = False
            self._touch()
            self.transport.resumeProducing()

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008
        self._stop_timer()
        self.ended = True
        if self.failed is None and not reason.check(ResponseDone, PotentialDataLoss):
            self.failed = reason
        if self.draining is not None:
            return  # the drain reports when it is done
        if self.failed is None and self.buffered:
            self.draining = Deferred.fromCoroutine(self._drain())
        else:
            self._report()

    def _report(self) -> None:
        if self.done.called:
            return
        if self.failed is not None:
            self.done.errback(self.failed)
        else:
            self.done.callback(self.total)
