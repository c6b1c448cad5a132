"""Every Twisted private name zotpy uses (all reached through zotpy.transport.twisted_private) still exists.

If a Twisted upgrade drops or renames one, this fails with the name, before forwarding, splicing,
connection pools or TLS fail at run time.
"""

from __future__ import annotations

import os
import re
import socket

from twisted.internet import abstract, endpoints, reactor, tcp
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import TestCase
from twisted.web import _newclient, http
from twisted.web.client import HTTPConnectionPool
from twisted.web.test.requesthelper import DummyChannel
from zope.interface.interface import InterfaceClass

import zotpy
from zotpy.transport import twisted_private


#: How each private touch is spelled in source; anywhere but twisted_private.py it is a stray one.
_PRIVATE_TOUCHES = re.compile(
    r"twisted\.[\w.]*\._\w|\b(_disconnected|_tempDataLen|_HTTP11ClientFactory|_IdentityTransferDecoder|"
    r"_wrappedProtocol)\b|(?<!self)\._(factory|transport|producer|parser)\b"
)


class TwistedPrivateNamesTests(TestCase):
    def test_no_private_touch_elsewhere(self) -> None:
        root = os.path.dirname(os.path.abspath(zotpy.__file__))
        stray = []
        for directory, _, files in os.walk(root):
            for name in sorted(files):
                path = os.path.join(directory, name)
                if not name.endswith(".py") or path == os.path.abspath(twisted_private.__file__):
                    continue
                with open(path, encoding="utf-8") as stream:
                    for number, line in enumerate(stream, 1):
                        if _PRIVATE_TOUCHES.search(line.split("#")[0]):
                            stray.append(f"{os.path.relpath(path, root)}:{number}: {line.strip()}")
        self.assertEqual(stray, [], "reach Twisted's private names through zotpy.transport.twisted_private")

    def test_trust_root_interface(self) -> None:
        self.assertIsInstance(twisted_private.IOpenSSLTrustRoot, InterfaceClass)
        self.assertIn("_addCACertsToContext", twisted_private.IOpenSSLTrustRoot.names())

    def test_accept_one_at_a_time(self) -> None:
        """tcp.Port's accept loop takes numberAccepts connections a turn: one, once adjusted."""
        accepted: list[Protocol] = []
        factory = ServerFactory.forProtocol(Protocol)
        factory.buildProtocol = lambda address: accepted.append(Protocol()) or accepted[-1]  # type: ignore[method-assign]
        port = tcp.Port(0, factory, interface="127.0.0.1", reactor=reactor)
        port.startListening()
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [protocol.transport.abortConnection() for protocol in accepted])
        self.assertEqual(port.numberAccepts, 100)
        twisted_private.accept_one_at_a_time(port)
        clients = [socket.create_connection(("127.0.0.1", port.getHost().port)) for _ in range(3)]
        for client in clients:
            self.addCleanup(client.close)
        port.doRead()
        self.assertEqual(len(accepted), 1)
        port.doRead()
        self.assertEqual(len(accepted), 2)

    def test_pool_connection_factory(self) -> None:
        pool = HTTPConnectionPool(Clock())
        self.assertIs(pool._factory, twisted_private.HTTP11ClientFactory)
        twisted_private.set_pool_factory(pool, object)
        self.assertIs(pool._factory, object)

    def test_request_disconnected(self) -> None:
        request = http.Request(DummyChannel())
        self.assertIs(request._disconnected, False)
        self.assertFalse(twisted_private.request_disconnected(request))
        request.connectionLost(Exception("gone"))
        self.assertTrue(twisted_private.request_disconnected(request))

    def test_response_transport_proxy(self) -> None:
        connection = object()
        proxy = _newclient.TransportProxyProducer(connection)
        response = _newclient.Response((b"HTTP", 1, 1), 200, b"OK", None, proxy)
        self.assertIs(twisted_private.response_producer(response), connection)

    def test_unsent_bytes_of_a_transport(self) -> None:
        transport = abstract.FileDescriptor(Clock())
        self.assertEqual(twisted_private.unsent_bytes(transport), 0)
        transport.connected = True
        transport.startWriting = lambda: None  # no real reactor to register with
        transport.write(b"held")
        self.assertEqual(twisted_private.unsent_bytes(transport), 4)

    def test_client_parser_internals_used_to_end_a_spliced_body(self) -> None:
        self.assertTrue(hasattr(http, "_IdentityTransferDecoder"))
        request = _newclient.Request(b"GET", b"/", _newclient.Headers(), None)
        parser = _newclient.HTTPClientParser(request, lambda rest: None)
        parser.makeConnection(StringTransport())
        for name in ("_busyReceiving", "_buffer", "bodyDecoder"):
            self.assertTrue(hasattr(parser, name), name)
        protocol = _newclient.HTTP11ClientProtocol()
        self.assertTrue(hasattr(protocol, "_parser"), "HTTP11ClientProtocol._parser")
        wrapper = endpoints._WrappingProtocol(Deferred(), protocol)
        self.assertIs(wrapper._wrappedProtocol, protocol)
