"""The listening socket the workers share: made once by worker 0, adopted by every worker."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from zotpy.transport.twisted_private import accept_one_at_a_time

#: Connections the kernel queues before some worker accepts them (Twisted's own default is 50).
BACKLOG = 1024


def bind(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address``:``port``, inheritable by the workers; OSError if the
    port cannot be had (raised before any worker starts)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's own ports do
        listener.bind((address, port))
        listener.listen(BACKLOG)
        listener.setblocking(False)
        listener.set_inheritable(True)
    except BaseException:
        listener.close()
        raise
    return listener


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """Listens by adopting ``listener`` (a bound, listening socket), with TLS when ``tls`` is given
    (the same context options an SSL endpoint would use)."""

    def __init__(self, reactor: Any, listener: socket.socket, tls: Any = None) -> None:
        self.reactor = reactor
        self.listener = listener
        self.tls = tls

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        # The reactor takes a duplicate of the descriptor; this one stays open for the workers
        # still to be started (and restarted).
        port = self.reactor.adoptStreamPort(self.listener.fileno(), self.listener.family, factory)
        accept_one_at_a_time(port)  # connections go to the worker with room for them
        return succeed(port)
