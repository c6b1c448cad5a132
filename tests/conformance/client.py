"""An HTTP client that looks, to a server, like the Go clients the official
conformance suite uses (``net/http`` directly on ``main``, resty via reggie in
the v1.1.x Ginkgo suite).

What is reproduced, because a registry can observe it:

* Body framing.  Go sends ``Content-Length`` only when the request's
  ``ContentLength`` field is set; a body given as a plain ``io.Reader`` (the
  ``main`` suite's ``apiWithBody`` without ``apiWithContentLength``: the
  streamed PATCH and every manifest PUT) goes out with
  ``Transfer-Encoding: chunked``, and so does a zero-length body set with an
  explicit ``ContentLength`` of 0 (the empty blob).  A ``Content-Length`` put
  in the header map by hand is dropped by Go (``reqWriteExcludeHeader``).
  reggie (>= 0.6) hands ``[]byte`` bodies to resty, which buffers them, so
  the Ginkgo suite always sends ``Content-Length``.  POST, PUT, PATCH and
  DELETE without a body carry ``Content-Length: 0``; GET and HEAD carry none.
  Use ``framing="chunked"`` / ``"length"`` to pick.
* ``Accept-Encoding: gzip`` is added (unless the request has a ``Range``
  header or is a HEAD) and a gzip response is decompressed transparently,
  with its ``Content-Encoding`` and ``Content-Length`` headers removed, as
  Go's default transport does (``compression=True``; reggie's transport sets
  ``DisableCompression``, so the Ginkgo port passes ``compression=False``).
* ``User-Agent`` defaults to ``Go-http-client/1.1``.
* Redirects are followed like ``http.Client``: 301/302/303 turn into GET
  without a body (HEAD stays HEAD), 307/308 repeat the method and body; at
  most 10.
* Connections are kept alive (one pool per client, closed by :meth:`close`).

Every exchange can be written, Go-``printRequest``-style, to an ``out`` list
so failures show what was sent and received.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Iterable, Sequence
from urllib.parse import urljoin

import attr
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

#: Go's ``truncateBody`` in the ``main`` suite's config.go.
TRUNCATE_BODY = 4096
GO_USER_AGENT = "Go-http-client/1.1"
REQUEST_TIMEOUT = 120.0


class RequestError(Exception):
    """The request could not be completed (Go's ``client.Do`` returned an error)."""


@implementer(IBodyProducer)
class _BytesProducer:
    def __init__(self, data: bytes, chunked: bool) -> None:
        self._data = data
        self.length = UNKNOWN_LENGTH if chunked else len(data)

    def startProducing(self, consumer):  # noqa: N802 (Twisted API)
        if self._data:
            consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


@attr.s(auto_attribs=True)
class HTTPResponse:
    """A complete response.  Header lookups are case-insensitive."""

    method: str
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: set when the body ended early (Go: reading resp.Body returns an error)
    body_error: str | None = None

    def values(self, name: str) -> list[str]:
        """All values of header ``name`` (Go's ``Header.Values``)."""
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def get(self, name: str) -> str:
        """First value of header ``name`` or ``""`` (Go's ``Header.Get``)."""
        vals = self.values(name)
        return vals[0] if vals else ""

    def describe(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


def format_body(body: bytes) -> str:
    """Go's ``printBody``: show JSON/text up to 4096 bytes, summarise the rest."""
    if not body:
        return "--- Empty body ---\n"
    text: str | None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text[:TRUNCATE_BODY]):
        out = text[:TRUNCATE_BODY] + "\n"
        if len(body) > TRUNCATE_BODY:
            out += f"--- Truncated body from {len(body)} to {TRUNCATE_BODY} bytes ---\n"
        return out
    return f"--- Output of application/octet-stream not supported, {len(body)} bytes not shown ---\n"


def format_headers(headers: Iterable[tuple[str, str]]) -> str:
    merged: dict[str, list[str]] = {}
    for k, v in headers:
        merged.setdefault(k, []).append(v)
    lines = ["Headers:"]
    for k in sorted(merged):
        lines.append(f"  {k:>25}: {merged[k]}")
    return "\n".join(lines) + "\n"


def _is_text_redirect(status: int) -> bool:
    return status in (301, 302, 303, 307, 308)


class GoHTTPClient:
    """See the module docstring."""

    def __init__(self, reactor: IReactorTime, user_agent: str = GO_USER_AGENT, compression: bool = True) -> None:
        self._reactor = reactor
        self.compression = compression
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        self._pool.retryAutomatically = False
        self._agent = Agent(reactor, pool=self._pool)
        self.user_agent = user_agent

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        framing: str = "length",
        out: list[str] | None = None,
    ) -> HTTPResponse:
        """Send one request (following redirects) and read the whole response.

        ``framing`` applies when ``body`` is not None: ``"length"`` sends
        ``Content-Length``, ``"chunked"`` sends ``Transfer-Encoding: chunked``.
        Raises :class:`RequestError` where Go's ``client.Do`` (or reading
        the body) would return an error.
        """
        hdrs = [(k, v) for k, v in headers if k.lower() not in ("content-length", "host", "transfer-encoding")]
        if not any(k.lower() == "user-agent" for k, _ in hdrs):
            hdrs.append(("User-Agent", self.user_agent))
        for _ in range(11):
            resp = await self._once(method, url, hdrs, body, framing, out)
            if not _is_text_redirect(resp.status):
                return resp
            loc = resp.get("Location")
            if not loc:
                return resp
            url = urljoin(url, loc)
            if resp.status in (301, 302, 303):
                if method not in ("GET", "HEAD"):
                    method = "GET"
                body = None
        raise RequestError("stopped after 10 redirects")

    async def _once(
        self,
        method: str,
        url: str,
        hdrs: list[tuple[str, str]],
        body: bytes | None,
        framing: str,
        out: list[str] | None,
    ) -> HTTPResponse:
        send = list(hdrs)
        requested_gzip = False
        body_error: str | None = None
        if (
            self.compression
            and method != "HEAD"
            and not any(k.lower() == "accept-encoding" for k, _ in send)
            and not any(k.lower() == "range" for k, _ in send)
        ):
            send.append(("Accept-Encoding", "gzip"))
            requested_gzip = True
        producer: _BytesProducer | None
        if body is None:
            # Go: POST/PUT/PATCH always, and any method but GET/HEAD with a
            # zero length, get "Content-Length: 0".
            producer = None if method in ("GET", "HEAD") else _BytesProducer(b"", chunked=False)
        else:
            producer = _BytesProducer(body, chunked=(framing == "chunked"))
        if out is not None:
            shown = list(send)
            if producer is not None:
                if producer.length is UNKNOWN_LENGTH:
                    shown.append(("Transfer-Encoding", "chunked"))
                else:
                    shown.append(("Content-Length", str(producer.length)))
            out.append(
                "=" * 80 + "\n~~~ REQUEST ~~~\n"
                + f"Method: {method}\nURL: {url}\n"
                + format_headers(shown)
                + format_body(body or b"")
            )
        theaders = Headers()
        for k, v in send:
            theaders.addRawHeader(k.encode("latin-1"), v.encode("latin-1"))
        try:
            d = self._agent.request(method.encode("ascii"), url.encode("ascii"), theaders, producer)
            d.addTimeout(REQUEST_TIMEOUT, self._reactor)
            response = await d
            status = response.code
            rheaders = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, vs in response.headers.getAllRawHeaders()
                for v in vs
            ]
            # Twisted files Content-Length (of a body-bearing response) among
            # the connection-control headers; Go keeps it in resp.Header.
            if (
                method != "HEAD"
                and status not in (204, 304)
                and response.length is not UNKNOWN_LENGTH
                and not any(k.lower() == "content-length" for k, _ in rheaders)
            ):
                rheaders.append(("Content-Length", str(response.length)))
            if method == "HEAD":
                raw = b""
                response.deliverBody(_Discard())
            else:
                collector = _Collect()
                response.deliverBody(collector)
                bd = collector.done
                bd.addTimeout(REQUEST_TIMEOUT, self._reactor)
                raw, lost = await bd
                if lost is not None:
                    # Go returns the response; the error only surfaces when
                    # (and if) the caller reads the body.
                    body_error = f"unexpected EOF reading the body of {method} {url} (got {len(raw)} bytes): {lost}"
        except RequestError as e:
            if out is not None:
                out.append("-" * 80 + f"\n~~~ Error ~~~\n{e}\n" + "=" * 80 + "\n")
            raise
        except Exception as e:  # connection refused/reset, timeout, bad response...
            if out is not None:
                out.append("-" * 80 + f"\n~~~ Error ~~~\n{e!r}\n" + "=" * 80 + "\n")
            raise RequestError(f"{method} {url}: {e!r}") from e
        if requested_gzip and body_error is None and any(
            k.lower() == "content-encoding" and v.strip().lower() == "gzip" for k, v in rheaders
        ):
            try:
                raw = gzip.decompress(raw) if raw else raw
            except (OSError, EOFError, zlib.error) as e:
                raise RequestError(f"gzip: invalid response body for {method} {url}: {e}") from e
            rheaders = [(k, v) for k, v in rheaders if k.lower() not in ("content-encoding", "content-length")]
        resp = HTTPResponse(method=method, url=url, status=status, headers=rheaders, body=raw, body_error=body_error)
        if out is not None:
            out.append(
                "-" * 80 + "\n~~~ RESPONSE ~~~\n"
                + f"Status: {status}\n"
                + format_headers(rheaders)
                + format_body(raw)
                + (f"~~~ Error ~~~\n{body_error}\n" if body_error else "")
                + "=" * 80 + "\n"
            )
        return resp


class _Discard(Protocol):
    """Sink for HEAD responses (they have no body)."""


class _Collect(Protocol):
    """Collects a body; ``done`` fires with (bytes, None) or (partial bytes, reason)."""

    def __init__(self) -> None:
        self.done: Deferred = Deferred()
        self._chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        data = b"".join(self._chunks)
        if reason.check(ResponseDone):
            self.done.callback((data, None))
        else:
            self.done.callback((data, reason.getErrorMessage() or repr(reason.value)))
