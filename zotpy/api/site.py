"""The twisted.web Site that serves the registry resource."""

from __future__ import annotations

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


def registry_resource(store: ImageStore) -> IResource:
    return RegistryApp(store).resource()


def registry_site(resource: IResource) -> Site:
    site = Site(resource, requestFactory=RegistryRequest, timeout=IDLE_TIMEOUT_SECONDS)
    site.displayTracebacks = False
    return site
