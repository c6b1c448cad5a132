"""The twisted.web Site that serves the registry resource."""

from __future__ import annotations

from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from zotpy.api.registry import RegistryApp
from zotpy.api.responses import API_VERSION_HEADER
from zotpy.storage.imagestore import ImageStore

# A connection idle this long is closed; transfers in progress are not idle.
IDLE_TIMEOUT_SECONDS = 300


class RegistryRequest(Request):
    """Every reply says which API it speaks: clients sniff the header, on errors too."""

    def process(self) -> None:
        self.setHeader(*API_VERSION_HEADER)
        super().process()


class RegistryChannel(HTTPChannel):
    """An HTTP/1.1 channel that hangs up at once on a TLS handshake sent to a plain HTTP port.

    Clients told not to verify TLS (skopeo, containerd, docker with insecure
    registries) try HTTPS first and fall back to HTTP. A TLS ClientHello holds no
    CRLF, so a plain HTTP parser would wait for a request line until the client's
    handshake timeout (10 s per call for skopeo). Closing tells the client at once.
    """

    _TLS_HANDSHAKE_RECORD = 0x16
    _first_bytes_seen = False

    def dataReceived(self, data: bytes) -> None:
        if not self._first_bytes_seen and data:
            self._first_bytes_seen = True
            if data[0] == self._TLS_HANDSHAKE_RECORD:
                self.transport.abortConnection()
                return
        super().dataReceived(data)


def registry_resource(store: ImageStore) -> IResource:
    return RegistryApp(store).resource()


def registry_site(resource: IResource) -> Site:
    site = Site(resource, requestFactory=RegistryRequest, timeout=IDLE_TIMEOUT_SECONDS)
    site.protocol = RegistryChannel
    site.displayTracebacks = False
    return site
