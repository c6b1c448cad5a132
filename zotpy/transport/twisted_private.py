"""Every touch of Twisted's private names (modules, classes, attributes behind an underscore), in one place.

Twisted may rename or drop any of them in a release. Kept here, each with the reason zotpy needs it,
and checked by tests/test_twisted_private.py, an upgrade that breaks one fails that test with the name
in it instead of silently breaking forwarding, splicing, pools or TLS at run time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

# The interface of what optionsForClientTLS accepts as trustRoot: its use is documented, but it is
# defined only in the private module. zotpy implements it to trust the system's CAs *and* extra ones.
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http import _IdentityTransferDecoder

__all__ = [
    "HTTP11ClientFactory",
    "IOpenSSLTrustRoot",
    "accept_one_at_a_time",
    "finish_client_body",
    "request_disconnected",
    "response_producer",
    "set_pool_factory",
    "unsent_bytes",
]

#: The factory of an HTTP connection pool's connections (subclassed to silence its log lines).
HTTP11ClientFactory = _HTTP11ClientFactory


def accept_one_at_a_time(port: tcp.Port) -> None:
    """Have a listening ``port`` accept one connection each time its socket is readable. A TCP port
    accepts up to ``numberAccepts`` at once (100 at first, growing while the queue stays full): right
    for a lone process, but where several processes share one socket (``--workers``) the first to
    wake takes a whole burst of connections and the others get none. One at a time, a worker takes
    the next connection only when its event loop comes round again, and a busy worker comes round
    later than an idle one: connections go where there is room. (Not a documented attribute.)"""
    read = port.doRead

    def one_at_a_time() -> Any:
        port.numberAccepts = 1
        return read()

    port.doRead = one_at_a_time  # type: ignore[method-assign]


def set_pool_factory(pool: HTTPConnectionPool, factory: type) -> None:
    """Have ``pool`` build its connections with ``factory``: the pool has no public hook for it."""
    pool._factory = factory


def request_disconnected(request: Any) -> bool:
    """Whether twisted.web already knows the client of ``request`` is gone (no public accessor;
    ``notifyFinish`` only tells it once, to one caller)."""
    return bool(getattr(request, "_disconnected", False))


def response_producer(response: Any) -> Any:
    """What the transport proxy of a twisted.web client response wraps (its connection), or None."""
    proxy = getattr(response, "_transport", None)  # twisted.web._newclient.TransportProxyProducer
    return getattr(proxy, "_producer", None)


def unsent_bytes(connection: tcp.Connection) -> int:
    """Bytes a TCP transport holds and has not handed to the kernel yet."""
    return len(connection.dataBuffer) - connection.offset + connection._tempDataLen


def finish_client_body(source: tcp.Connection, length: int) -> bool:
    """Tell twisted's HTTP/1.1 client on ``source`` that the ``length`` bytes its reply still owed
    were read (by a splice): the reply ends as if they had been parsed, and a keep-alive
    connection goes back to its pool for the next request instead of being closed. False, and
    nothing done, unless the reply is exactly that far along in a body of declared length and the
    parser holds no bytes of its own (it is not in the middle of a read)."""
    protocol = getattr(source.protocol, "_wrappedProtocol", source.protocol)  # endpoints wrap it
    parser = getattr(protocol, "_parser", None)
    decoder = getattr(parser, "bodyDecoder", None)
    if not isinstance(decoder, _IdentityTransferDecoder) or decoder.contentLength != length:
        return False
    if getattr(parser, "_busyReceiving", True) or getattr(parser, "_buffer", b"x"):
        return False
    decoder.contentLength = 0
    decoder.dataReceived(b"")  # the end of the body: the parser finishes the reply
    return True
