"""The twisted.web Site that serves the registry resource."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, parse_qs
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from zotpy.api.hotreads import HotReads, local_root
from zotpy.api.registry import IOnDemand, RegistryApp
from zotpy.api.responses import API_VERSION_HEADER
from zotpy.api.routes import MANIFEST, Match, match
from zotpy.api.streaming import StreamedBody, streams
from zotpy.config import DEFAULT_READ_HEADER_TIMEOUT
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import MAX_MANIFEST_BYTES, too_large
from zotpy.storage.imagestore import ImageStore
from zotpy.transport.twisted_private import request_disconnected

# A connection idle this long is closed; transfers in progress are not idle.
IDLE_TIMEOUT_SECONDS = 300


class RegistryRequest(Request):
    """Every reply says which API it speaks (clients sniff the header, on errors too), and a
    manifest body is refused as soon as it passes the limit, not after it was spooled whole.

    A blob upload's body is *streamed* (:mod:`zotpy.api.streaming`): the request is processed as
    soon as its headers are in, ``content`` being a :class:`StreamedBody` that the handler reads
    as the bytes arrive. A reply finished before the whole body came is written at once, but the
    request ends (and the connection takes its next request) only after the rest was received
    and dropped: twisted.web's channel must see the body through before it parses again.
    """

    #: the most a body may have (a manifest's), known from the request line
    body_limit: int | None = None
    streamed: StreamedBody | None = None
    #: the route the request line falls on (:func:`zotpy.api.routes.match_request`), once matched
    route_match: Match | None = None
    #: in a cluster: the member this request was relayed to, and how relaying it failed
    #: (``unreachable``, ``interrupted``), for the metrics and the access log
    forwarded_to: str | None = None
    forward_failure: str | None = None
    #: the user the access layer (zotpy.auth) admitted the request as ("" anonymous; None: no check),
    #: for the access and audit logs
    zotpy_user: str | None = None
    #: a read answered here for a repository another member owns: who answers instead when the
    #: store lacks what it asks for (the owner, who may link or fetch it; see
    #: :mod:`zotpy.cluster.localreads`); None answers the miss here
    on_miss: IResource | None = None
    _body_received = 0
    _finish_when_received = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the request line arrived: latency counts from here
        self.received_at = time.monotonic()

    def begin_streaming(self, command: bytes, path: bytes, version: bytes, length: int | None) -> None:
        """Process now, with a body that is still to come (what ``requestReceived`` would do later)."""
        if self.content is not None:
            self.content.close()  # the spool twisted.web opened in gotLength, unused
        self.content = self.streamed = StreamedBody(length, self.channel.transport)
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, query = path.partition(b"?")
        self.args = parse_qs(query, 1) if query else {}
        self.process()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.streamed is None:
            super().requestReceived(command, path, version)
            return
        self.streamed.end()  # processing began with the headers
        if self._finish_when_received:
            super().finish()

    def finish(self) -> None:
        if request_disconnected(self):
            # A streamed body fails while its connection is being torn down, before twisted.web
            # tells the resource the request is gone: the handler's answer has nobody to go to.
            return
        if self.streamed is not None and not self.streamed.complete:
            if not self.startedWriting:
                self.write(b"")  # the headers go now; the reply's end waits for the body's
            self.streamed.discard()
            self._finish_when_received = True
            return
        super().finish()

    def handleContentChunk(self, data: bytes) -> None:
        if self.streamed is not None:
            self.streamed.feed(data)
            return
        self._body_received += len(data)
        if self.body_limit is not None and self._body_received > self.body_limit:
            self.channel.refuse(too_large(None))
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        self.setHeader(*API_VERSION_HEADER)
        super().process()


# What a plain HTTP port answers to a TLS handshake: Go's TLS client reads the "HTTP/" and
# reports "server gave HTTP response to HTTPS client", which go-containerregistry, containerd
# and docker take as the sign to retry in plain HTTP.
_TLS_ON_PLAIN_HTTP_BODY = b"This port speaks plain HTTP and received a TLS handshake.\n"
_TLS_ON_PLAIN_HTTP = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TLS_ON_PLAIN_HTTP_BODY), _TLS_ON_PLAIN_HTTP_BODY)
)

# A client that does not hang up after the 400 is closed this long after it.
TLS_ON_PLAIN_LINGER_SECONDS = 5.0

_HEADER_TIMEOUT_BODY = b"the request's headers did not arrive in time\n"
_HEADER_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_HEADER_TIMEOUT_BODY), _HEADER_TIMEOUT_BODY)
)

# After a refusal (RegistryChannel.refuse), how much more of the request is read and dropped,
# and how long a silent client is waited for, before the connection is closed on it.
REFUSED_DRAIN_BYTES = 4 * MAX_MANIFEST_BYTES
REFUSED_LINGER_SECONDS = 2.0


class RegistryChannel(HTTPChannel):
    """An HTTP/1.1 channel that answers a TLS handshake sent to a plain HTTP port at once.

    Clients told not to verify TLS (skopeo, containerd, docker with insecure
    registries, crane) try HTTPS first and fall back to HTTP. A TLS ClientHello holds no
    CRLF, so a plain HTTP parser would wait for a request line until the client's
    handshake timeout (10 s per call for skopeo). The answer is a 400 and an orderly
    close (FIN, not RST): go-containerregistry retries a reset connection twice before
    falling back, but takes a reply at once. The rest of the ClientHello (a post-quantum
    key share spreads it over more than one segment) is read and dropped until the client
    hangs up, since closing a socket with unread bytes makes the kernel send a reset.

    A request's line and headers must all arrive within the site's ``read_header_timeout``
    (``http.readHeaderTimeout``), counted from the connection's start or from the request's
    first byte: the idle timeout alone lets a client that sends one byte every few seconds hold
    a connection (and its file descriptor) forever. Bodies are not under that deadline (a slow
    upload is legitimate); they keep the idle timeout.
    """

    _TLS_HANDSHAKE_RECORD = 0x16
    _first_bytes_seen = False
    _header_deadline: IDelayedCall | None = None
    _refused = False
    _lost = False
    #: A request began in the chunk being read and its headers have not all come yet.
    _headers_pending = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_header_deadline()  # a new connection owes its first request's headers at once

    def connectionLost(self, reason: Failure) -> None:
        self._lost = True
        self._cancel_header_deadline()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if not self._first_bytes_seen and data:
            self._first_bytes_seen = True
            if data[0] == self._TLS_HANDSHAKE_RECORD:
                self._refuse_tls_handshake()
                return
        # The first bytes of a request on a kept-alive connection: its headers are due within the
        # deadline from now. The deadline is set only if they did not all come in this chunk (the
        # usual case for a small request), which spares a timer per request.
        starting = bool(self.line_mode and data and self._header_deadline is None)
        if starting:
            self._headers_pending = True
        super().dataReceived(data)
        if (
            starting and self._headers_pending and self.line_mode and self._header_deadline is None
            and not self._lost and not self._refused
        ):
            self._start_header_deadline()

    def _start_header_deadline(self) -> None:
        seconds = getattr(self.site, "read_header_timeout", DEFAULT_READ_HEADER_TIMEOUT)
        self._header_deadline = self.callLater(seconds, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            if self._header_deadline.active():
                self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        """Answer 408 and close (on TLS listeners too, hence no half-close as for the TLS refusal)."""
        self._header_deadline = None
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.transport.write(_HEADER_TIMEOUT)
        self.transport.loseConnection()
        self.setTimeout(TLS_ON_PLAIN_LINGER_SECONDS)  # a client that reads nothing: aborted soon

    def _refuse_tls_handshake(self) -> None:
        """Answer 400, send FIN, drop what else comes; close for good if the client lingers."""
        self._cancel_header_deadline()
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.transport.write(_TLS_ON_PLAIN_HTTP)
        self.transport.loseWriteConnection()
        self.setTimeout(TLS_ON_PLAIN_LINGER_SECONDS)  # the idle timeout's abort, much sooner

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """The status line and headers as one string, as twisted.web's own writes them but handed to
        the transport in one piece: twisted.web gives it some 40 small pieces (four per header),
        each checked and queued on its own, a measurable share of a small reply's cost."""
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)  # the legacy pairs: Twisted sanitises them
            return
        lines = [version + b" " + code + b" " + reason]
        for name, values in headers.getAllRawHeaders():
            lines.extend(name + b": " + value for value in values)
        lines.append(b"\r\n")
        self.transport.write(b"\r\n".join(lines))

    def allHeadersReceived(self) -> None:
        """Know a manifest PUT's limit before its body: refuse a declared oversize length at once."""
        self._headers_pending = False
        self._cancel_header_deadline()
        request = self.requests[-1]
        route = request.route_match = match(self._command, self._path.partition(b"?")[0])
        if route is not None and route.route is MANIFEST and route.method == "PUT":
            request.body_limit = MAX_MANIFEST_BYTES
            if self.length is not None and self.length > MAX_MANIFEST_BYTES:
                self.refuse(too_large(self.length))
                return
        super().allHeadersReceived()
        ranged = request.requestHeaders.hasHeader(b"content-range")
        if streams(route, self.length, ranged):
            request.begin_streaming(self._command, self._path, self._version, self.length)

    def refuse(self, error: RegistryError) -> None:
        """Answer ``error`` without processing the rest of the request, then close the connection.

        Only the connection's sole request is answered this way; behind pipelined
        requests still being served, the handler's own check answers later instead.
        """
        if len(self.requests) != 1 or self._refused:
            return
        self._refused = True
        body = json.dumps(error.body()).encode()
        head = (
            f"HTTP/1.1 {error.status} {RESPONSES.get(error.status, b'Error').decode()}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{API_VERSION_HEADER[0]}: {API_VERSION_HEADER[1]}\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self._drain_then_close()

    def _drain_then_close(self) -> None:
        """Read and drop the rest of a refused request until the client hangs up.

        Closing a socket with unread bytes makes the kernel send a reset, which can destroy
        the reply before the client reads it: a client still sending its body then sees a
        broken connection instead of the 413 (Twisted's client did, now and then, on a 4 MiB
        manifest). The client was told ``Connection: close``, so it hangs up once it has sent
        its body and read the reply. Refusals stay cheap: nothing is parsed or kept, and a
        client that sends more than :data:`REFUSED_DRAIN_BYTES`, or falls silent for
        :data:`REFUSED_LINGER_SECONDS`, is closed on.
        """
        left = REFUSED_DRAIN_BYTES

        def drop(data: bytes) -> None:
            nonlocal left
            left -= len(data)
            if left < 0:
                self.transport.loseConnection()
            else:
                self.resetTimeout()

        # dataReceived: later reads; rawDataReceived and lineReceived: the rest of the read
        # being parsed now (the refusal comes from inside the parser).
        self.dataReceived = self.rawDataReceived = drop  # type: ignore[method-assign]
        self.lineReceived = lambda line: None  # type: ignore[method-assign]
        self.setTimeout(REFUSED_LINGER_SECONDS)

    def allContentReceived(self) -> None:
        """A refused request's body may end in the read that refused it: it is not served."""
        if not self._refused:
            super().allContentReceived()


def registry_resource(
    store: ImageStore, on_demand: IOnDemand | None = None, redirect_blobs: bool = False
) -> IResource:
    """The registry's routes; on local disk with the hot reads answered in front of them.
    ``redirect_blobs``: ``storage.redirectBlobURL``."""
    app = RegistryApp(store, on_demand, redirect_blobs).resource()
    root = local_root(store)
    return app if root is None else HotReads(app, store, root, on_demand)


def registry_site(
    resource: IResource,
    access_log: Callable[[Request], None] | None = None,
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT,
) -> Site:
    """``access_log`` is called for each finished request instead of writing twisted.web's combined log line;
    ``read_header_timeout`` is how long a client has for a request's line and headers."""
    site = Site(resource, requestFactory=RegistryRequest, timeout=IDLE_TIMEOUT_SECONDS)
    site.read_header_timeout = read_header_timeout  # type: ignore[attr-defined]  # read by RegistryChannel
    site.noisy = False  # the listener logs its own line with the URL and the storage
    site.protocol = RegistryChannel
    site.displayTracebacks = False
    if access_log is not None:
        site.log = access_log  # type: ignore[method-assign]
    return site


# What the TLS listener offers through ALPN. Only HTTP/1.1: the channel above is an HTTP/1.1
# channel (streamed uploads begin in its header hook, a manifest's limit is checked there, blob
# bodies are spliced into its socket), and Twisted's HTTP/2 bypasses all of it (README, "HTTPS").
ALPN_PROTOCOLS = (b"http/1.1",)


@implementer(IProtocolNegotiationFactory)
class ConnectionTrackingFactory(WrappingFactory):
    """Knows the open connections, so a stopping listener can close them and wait until they are gone.

    It is the factory a TLS listener sees, so it also says which protocols ALPN may choose:
    Twisted's ALPN callback asks the wrapped factory, and with none to offer OpenSSL fails the
    handshake of every client that offers ALPN (curl, Go, requests) with an internal-error alert.
    (NPN is gone from pyOpenSSL and Twisted; every client that negotiates uses ALPN.)
    """

    noisy = False

    def acceptableProtocols(self) -> list[bytes]:
        return list(ALPN_PROTOCOLS)

    def __init__(self, wrapped: Site) -> None:
        super().__init__(wrapped)
        self._closed: dict[Protocol, Deferred[None]] = {}

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self._closed[protocol] = Deferred()
        return protocol

    def unregisterProtocol(self, protocol: Protocol) -> None:
        super().unregisterProtocol(protocol)
        closed = self._closed.pop(protocol, None)
        if closed is not None:
            closed.callback(None)

    def close_connections(self) -> Deferred[object]:
        """Abort every open connection; fire once all of them are closed."""
        waiting = list(self._closed.values())
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        return DeferredList(waiting)
