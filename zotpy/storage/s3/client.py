"""The S3 wire: botocore decides where and how to sign, twisted's Agent moves the bytes.

botocore is the maintained source of S3's endpoint rules (virtual-hosted or path style, dual-stack,
accelerate, regions), of the credential chain (config keys, the ``AWS_*`` environment variables,
shared files, instance roles) and of SigV4 signing. It is used for those alone: requests are sent by
twisted's HTTP/1.1 Agent over one persistent connection pool, so no thread waits on a socket and
large bodies stream in both directions. treq only reads the small replies (:func:`treq.content`):
its request layer (URL normalisation, cookies, redirects, gzip) is nothing S3 needs, and cost about
a third of the Python time of every S3 call; the URL goes out exactly as it was signed. Everything
that may block (loading botocore's data files, asking an instance metadata service for
credentials) runs in the thread pool; signing is cheap and runs on the reactor.

Failures come out as :class:`S3Error` (S3 answered with an error) or :class:`S3Unreachable` (no
answer), both :class:`~zotpy.storage.driver.StorageError`, so the API answers 503 ``UNAVAILABLE``.
Transient ones (5xx, ``SlowDown``, refused or reset connections, timeouts) are retried with
exponential backoff when the call is idempotent.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any, Callable, Iterable, Mapping, Sequence, Union
from urllib.parse import quote, urlsplit

import attrs
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, S3SigV4QueryAuth, _host_from_url
from botocore.awsrequest import AWSRequest
from twisted.internet import defer, error as net_error
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseFailed,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse
from treq import content as read_content
from zope.interface import implementer

from zotpy.transport.endpoints import CachedEndpoints
from zotpy.transport.pools import persistent_pool
from zotpy.transport.tls import client_policy
from zotpy.storage.driver import StorageError, StorageUnavailable
from zotpy.storage.s3.settings import S3Settings
from zotpy.storage.s3.xml import parse_error
from zotpy.transport.failures import describe_failure

log = Logger()

#: How a request body is given: bytes, or a factory of producers (called again for each retry).
Body = Union[bytes, Callable[[], IBodyProducer], None]

CONNECT_TIMEOUT_SECONDS = 10.0
METADATA_TIMEOUT_SECONDS = 10.0
#: seconds a streamed body may stay paused by a connection that S3 does not drain
STALL_TIMEOUT_SECONDS = 30.0
#: bodies up to this size count as metadata-sized
METADATA_BODY_BYTES = 1024 * 1024
#: calls whose reply waits for work proportional to the data on the server's side
_SERVER_SIDE_WORK = frozenset({"CopyObject", "UploadPartCopy", "CompleteMultipartUpload", "DeleteObjects"})
_SAFE_PATH = "/-_.~"
_SAFE_QUERY = "-_.~"
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException"}
)
_TRANSPORT_ERRORS = (
    net_error.ConnectError,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
    net_error.DNSLookupError,
    net_error.TimeoutError,
    defer.TimeoutError,  # our own timeout (a cancellation from outside is not retried: it propagates)
    ResponseFailed,
    RequestTransmissionFailed,
    RequestNotSent,
)


class S3Error(StorageError):
    """S3 answered ``status`` with error ``code`` to ``operation`` on ``key``."""

    def __init__(self, operation: str, key: str, status: int, code: str, message: str) -> None:
        super().__init__(f"S3 {operation} {key!r}: {status} {code or 'error'}: {message}".rstrip(": "))
        self.operation = operation
        self.key = key
        self.status = status
        self.code = code

    @property
    def not_found(self) -> bool:
        return self.status == 404 and self.code in ("NoSuchKey", "NotFound", "")


class S3Unreachable(StorageUnavailable):
    """No answer from S3 (refused, reset, timed out), after the retries the call allowed."""


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with full jitter: ``attempts`` tries, waits of at most
    ``first_delay * 2**n`` seconds in between (0.1 + 0.2 + 0.4 + 0.8 s at most by default)."""

    attempts: int = 5
    first_delay: float = 0.1

    def delay(self, retry: int) -> float:
        return random.uniform(self.first_delay / 2, self.first_delay * 2**retry)


@attrs.frozen
class Reply:
    """A buffered reply: small XML documents, index.json, manifests."""

    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


@attrs.frozen
class _Target:
    """Where the bucket is and how requests to it are signed, resolved once."""

    bucket_url: str
    signing_region: str
    credentials: Any
    #: The Host header for every request, as botocore derives it (its signer would derive it again,
    #: twice per request, from every URL: about a third of the signing time).
    host: str = attrs.field(init=False)

    @host.default
    def _host(self) -> str:
        return str(_host_from_url(self.bucket_url))


class _PayloadSigner(S3SigV4Auth):
    """SigV4 for S3 with the payload hash chosen by the caller: the body's SHA-256 when it is in
    memory, ``UNSIGNED-PAYLOAD`` for streamed bodies (hashing them first would read them twice)."""

    def payload(self, request: AWSRequest) -> str:
        return request.context.get("payload_hash", UNSIGNED_PAYLOAD)

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        """botocore's, with the signing key derived once a day (four HMACs) instead of per request."""
        scope = (self.credentials.secret_key, request.context["timestamp"][0:8], self._region_name, self._service_name)
        key = _signing_keys.get(scope)
        if key is None:
            key = self._sign(f"AWS4{scope[0]}".encode(), scope[1])
            for part in (self._region_name, self._service_name, "aws4_request"):
                key = self._sign(key, part)
            if len(_signing_keys) >= 16:  # credentials rotate and days pass: keep only a few
                _signing_keys.clear()
            _signing_keys[scope] = key
        return self._sign(key, string_to_sign, hex=True)


#: Derived SigV4 signing keys by (secret, day, region, service).
_signing_keys: dict[tuple[str, str, str, str], bytes] = {}


def tls_policy(settings: S3Settings, environ: Mapping[str, str] | None = None) -> IPolicyForHTTPS:
    """``skipverify``, else only the CAs of the ``AWS_CA_BUNDLE`` PEM bundle if set (as the AWS SDKs
    do: on-premises S3 often has a private CA), else the system's trust store."""
    if settings.skip_verify:
        return client_policy(verify=False)
    bundle = (os.environ if environ is None else environ).get("AWS_CA_BUNDLE")
    if bundle:
        return client_policy(extra_ca_paths=[bundle], system_trust=False)
    return BrowserLikePolicyForHTTPS()


def resolve_bucket_url(settings: S3Settings) -> tuple[str, str]:
    """(bucket URL, signing region) from botocore's S3 endpoint rules. Blocking: loads data files."""
    import botocore.session
    from botocore.endpoint_provider import EndpointProvider

    loader = botocore.session.get_session().get_component("data_loader")
    provider = EndpointProvider(
        loader.load_service_model("s3", "endpoint-rule-set-1"), loader.load_data("partitions")
    )
    params: dict[str, Any] = {
        "Bucket": settings.bucket,
        "Region": settings.region,
        "UseFIPS": False,
        "UseDualStack": settings.use_dual_stack,
        "Accelerate": settings.accelerate,
        "ForcePathStyle": settings.force_path_style,
    }
    if settings.endpoint is not None:
        params["Endpoint"] = settings.endpoint
    endpoint = provider.resolve_endpoint(**params)
    url = endpoint.url.rstrip("/")
    if not settings.secure and url.startswith("https://"):
        # The rules know https only; botocore swaps the scheme the same way for use_ssl=False.
        url = "http://" + url[len("https://"):]
    region = settings.region
    for scheme in endpoint.properties.get("authSchemes", []):
        if scheme.get("name") == "sigv4":
            region = scheme.get("signingRegion", region)
            break
    return url, region


def resolve_credentials(settings: S3Settings) -> Any:
    """The config's key pair, else botocore's chain (environment, shared files, instance role).
    Blocking: the chain may ask a metadata service."""
    import botocore.session
    from botocore.credentials import Credentials

    if settings.access_key and settings.secret_key:
        return Credentials(settings.access_key, settings.secret_key, settings.session_token)
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise StorageError(
            "no S3 credentials: set storage.storageDriver.accesskey and secretkey, or AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or give the host an instance role"
        )
    return credentials


def quote_key(key: str) -> str:
    return quote(key, safe=_SAFE_PATH)


def _query_string(query: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe=_SAFE_QUERY)}={quote(value, safe=_SAFE_QUERY)}" for name, value in query)


def _is_transport_failure(failure: Exception) -> bool:
    if isinstance(failure, (ResponseFailed, RequestTransmissionFailed)):
        # A failure of our own body producer (a local read error) is not the network's.
        return not any(isinstance(reason.value, StorageError) for reason in failure.reasons)
    return isinstance(failure, _TRANSPORT_ERRORS)


class S3Client:
    """Signed requests to one bucket, over one persistent connection pool."""

    def __init__(
        self,
        settings: S3Settings,
        reactor: Any,
        threadpool: ThreadPool,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 60.0,
        metadata_timeout: float = METADATA_TIMEOUT_SECONDS,
        stall_timeout: float = STALL_TIMEOUT_SECONDS,
    ) -> None:
        """``timeout``: seconds for the reply to a call whose body or server-side work is large (plus a
        second per MB of body); ``metadata_timeout``: for every other call (a HEAD, a listing, a small
        object), so that a try that got no answer is retried soon instead of a minute later. A streamed
        body has no total limit (from a slow client it takes what it takes): ``stall_timeout`` seconds
        without S3 taking any of it, or ``timeout`` seconds from its end to the reply, end the try."""
        self.settings = settings
        self.bucket = settings.bucket
        self._reactor = reactor
        self._threadpool = threadpool
        self._retry = retry
        self._timeout = timeout
        self._metadata_timeout = min(metadata_timeout, timeout)
        self._stall_timeout = stall_timeout
        self._target: _Target | None = None
        self._waiting: list[defer.Deferred[_Target]] | None = None
        self.pool = persistent_pool(reactor)
        self.pool.maxPersistentPerHost = 32
        self.pool.cachedConnectionTimeout = 15
        endpoints = CachedEndpoints(reactor, tls_policy(settings), CONNECT_TIMEOUT_SECONDS)
        self._agent = Agent.usingEndpointFactory(reactor, endpoints, pool=self.pool)

    # -- setup ---------------------------------------------------------------------------------------

    async def _resolved(self) -> _Target:
        """Endpoint and credentials, resolved in a thread on first use; a failure is not kept, so
        the next call tries again (an instance metadata service may answer later)."""
        if self._target is not None:
            return self._target
        if self._waiting is None:
            self._waiting = []

            def resolve() -> _Target:
                try:
                    url, region = resolve_bucket_url(self.settings)
                except Exception as failure:
                    raise StorageError(f"cannot resolve the S3 endpoint of {self.bucket!r}: {failure}") from None
                return _Target(url, region, resolve_credentials(self.settings))

            def resolved(result: _Target | Failure) -> None:
                waiting, self._waiting = self._waiting or [], None
                if isinstance(result, _Target):
                    self._target = result
                for waiter in waiting:
                    waiter.callback(result)

            deferToThreadPool(self._reactor, self._threadpool, resolve).addBoth(resolved)
        waiter: defer.Deferred[_Target] = defer.Deferred()
        self._waiting.append(waiter)
        return await waiter

    async def _frozen_credentials(self, credentials: Any) -> Any:
        """Refreshing credentials (instance roles, assumed roles) may call out: do that in a thread."""
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            return await deferToThreadPool(self._reactor, self._threadpool, credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def presigned_get(self, key: str, expires: int) -> str:
        """A URL that GETs ``key`` without credentials for ``expires`` seconds: SigV4 query signing
        (botocore's), the signature and the access key id in the query, never the secret."""
        target = await self._resolved()
        credentials = await self._frozen_credentials(target.credentials)
        request = AWSRequest(method="GET", url=self.url(target, key), headers={"Host": target.host})
        S3SigV4QueryAuth(credentials, "s3", target.signing_region, expires=expires).add_auth(request)
        return str(request.url)

    def url(self, target: _Target, key: str | None, query: Sequence[tuple[str, str]] = ()) -> str:
        base = target.bucket_url
        if key is None:
            url = base if urlsplit(base).path else base + "/"
        else:
            url = f"{base}/{quote_key(key)}"
        return f"{url}?{_query_string(query)}" if query else url

    def copy_source(self, key: str) -> str:
        """The ``x-amz-copy-source`` value naming ``key`` in this bucket."""
        return quote(f"{self.bucket}/{key}", safe=_SAFE_PATH)

    # -- requests ------------------------------------------------------------------------------------

    async def request(
        self,
        operation: str,
        method: str,
        key: str | None,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        length: int = 0,
        payload_hash: str | None = None,
        ok: Iterable[int] = (200,),
        idempotent: bool = True,
        stream: bool = False,
        errors_in_body: bool = False,
    ) -> Any:
        """Send one call, retrying transient failures if ``idempotent``.

        Returns a :class:`Reply`, or with ``stream`` the unbuffered response (its status one of
        ``ok``) for the caller to read. ``length`` is the size of a streamed body, used to allow
        time to send it. ``errors_in_body`` for calls that may answer 200 with an ``<Error>``.
        """
        accepted = frozenset(ok)
        if isinstance(body, bytes) and payload_hash is None and len(body) <= 1024 * 1024:
            payload_hash = _sha256(body)
        retries = self._retry.attempts - 1 if idempotent else 0
        size = len(body) if isinstance(body, bytes) else length
        small = not callable(body) and size <= METADATA_BODY_BYTES and operation not in _SERVER_SIDE_WORK
        patience = self._metadata_timeout if small else self._timeout + size / 1_000_000
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = await self._send(method, key, query, headers or {}, body, length, payload_hash, patience)
            except Exception as failure:
                if not _is_transport_failure(failure):
                    raise
                if last:
                    raise S3Unreachable(
                        f"S3 {operation} {key or self.bucket!r}: no answer from S3 ({describe_failure(failure)})"
                    ) from None
                log.info("S3 {operation} failed ({why}); retrying", operation=operation, why=describe_failure(failure))
                await deferLater(self._reactor, self._retry.delay(attempt), lambda: None)
                continue
            if response.code in accepted and stream:
                return response
            try:
                content = await read_content(response)
            except defer.CancelledError:
                raise
            except Exception as failure:
                if not _is_transport_failure(failure) or last:
                    raise S3Unreachable(f"S3 {operation} {key!r}: reply cut short ({describe_failure(failure)})") from None
                await deferLater(self._reactor, self._retry.delay(attempt), lambda: None)
                continue
            problem = parse_error(content) if response.code not in accepted or errors_in_body else None
            if response.code in accepted and problem is None:
                return Reply(response.code, response.headers, content)
            code, message = (problem.code, problem.message) if problem else ("", _status_text(response))
            failure = S3Error(operation, key or self.bucket, response.code, code, message)
            if last or not (response.code in _TRANSIENT_STATUSES or code in _TRANSIENT_CODES):
                raise failure
            log.info("S3 {operation}: {failure}; retrying", operation=operation, failure=str(failure))
            await deferLater(self._reactor, self._retry.delay(attempt), lambda: None)
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        key: str | None,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Body,
        length: int,
        payload_hash: str | None,
        timeout: float,
    ) -> IResponse:
        """One try; ``timeout``: seconds until the reply's headers when the body is in memory (for a
        large one: the connection, then the body at 1 MB/s at worst); a streamed body is watched by
        :class:`StallWatch` instead."""
        target = await self._resolved()
        credentials = await self._frozen_credentials(target.credentials)
        url = self.url(target, key, query)
        signed = AWSRequest(method=method, url=url, headers={"Host": target.host, **headers})
        signed.context["payload_hash"] = payload_hash or UNSIGNED_PAYLOAD
        _PayloadSigner(credentials, "s3", target.signing_region).add_auth(signed)
        raw = Headers({name: [value] for name, value in signed.headers.items()})
        if self.settings.user_agent:
            raw.setRawHeaders("User-Agent", [self.settings.user_agent])
        producer: IBodyProducer | None
        watch: StallWatch | None = None
        if callable(body):
            producer = watch = StallWatch(body(), self._reactor, self._stall_timeout, self._timeout)
        elif body:
            producer, length = MemoryBody(body), len(body)
        else:
            producer = None  # twisted still says Content-Length: 0 for a PUT or a POST
        sending = self._agent.request(method.encode("ascii"), url.encode("ascii"), raw, producer)

        def timed_out(result: Any, after: float) -> None:
            raise defer.TimeoutError(f"no answer in {after:.0f} s")

        if watch is None:
            sending.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)
        else:
            watch.on_stall = sending.cancel
        try:
            return await sending
        except Exception as failure:
            if watch is not None and watch.stalled:
                raise defer.TimeoutError(watch.stalled) from None
            # Cancelled by the caller (its client left), not by our timeout: not S3's failure,
            # nothing to retry. The Agent reports it wrapped; it goes on as what it is.
            reasons = getattr(failure, "reasons", None) or ()
            if isinstance(failure, defer.CancelledError) or any(r.check(defer.CancelledError) for r in reasons):
                raise defer.CancelledError() from None
            raise
        finally:
            if watch is not None:
                watch.finish()

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()


@implementer(IBodyProducer)
class StallWatch:
    """A streamed request body that ends its call when S3 stops taking it (an idle timeout, not a
    total one): paused by the connection for ``idle`` seconds, or no reply ``reply`` seconds after
    the body's last byte. The connection pauses the producer it registered, so the pauses seen
    here are S3 not draining the socket, never the body's own source being slow."""

    def __init__(self, producer: IBodyProducer, reactor: Any, idle: float, reply: float) -> None:
        self.producer = producer
        self.length = producer.length
        self.reactor = reactor
        self.idle = idle
        self.reply = reply
        self.stalled = ""  # why the call was ended, once it was
        self.on_stall: Callable[[], object] | None = None
        self._timer: Any = None
        self._finished = False

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        def sent(result: None) -> None:
            self._arm(self.reply, f"no reply within {self.reply:g} s of the body's end")
            return result

        return self.producer.startProducing(consumer).addCallback(sent)

    def pauseProducing(self) -> None:
        self._arm(self.idle, f"S3 took no bytes of the body for {self.idle:g} s")
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._disarm()
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self._disarm()
        self.producer.stopProducing()

    def finish(self) -> None:
        """The call ended (a reply, or a failure): no more timers."""
        self._finished = True
        self._disarm()

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        if not self._finished:
            self._timer = self.reactor.callLater(seconds, self._stall, why)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _stall(self, why: str) -> None:
        self._timer = None
        self.stalled = why
        if self.on_stall is not None:
            self.on_stall()


@implementer(IBodyProducer)
@attrs.frozen
class MemoryBody:
    """Bytes already in memory, handed to the connection in one write (its buffer holds them anyway)."""

    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _status_text(response: IResponse) -> str:
    phrase = response.phrase.decode("latin-1") if isinstance(response.phrase, bytes) else str(response.phrase)
    return phrase or f"HTTP {response.code}"

