"""zot's audit log (``log.audit``): one JSON line per write or delete, saying who did it.

Recorded when the request finishes, refused ones included (a refused push is worth an auditor's
eye), with the user name the access layer admitted ("" for anonymous or refused before
authentication), the client address, the method, the path (secret-looking query values redacted)
and the status. Headers are never written, so neither are credentials. In a cluster the replica
that received the request and the owner that served it both write a line; the owner's says
``"forwarded": true``. SIGHUP reopens the file (logrotate's ``postrotate``, see etc/logrotate.d/zotpy).
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Callable

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from zotpy.cluster.proxy import HOP_HEADER
from zotpy.observability.access import redact_uri

AUDITED_METHODS = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})


class AuditLog:
    """Appends JSON lines to ``path`` (opened once, line-buffered: each line is one small write)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._stream: IO[str] = open(path, "a", buffering=1, encoding="utf-8")

    def record(self, request: IRequest) -> None:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
            "level": "info",
            "message": "audit",
            "subject": getattr(request, "zotpy_user", None) or "",
            "clientIP": getattr(request.getClientAddress(), "host", ""),
            "action": request.method.decode("ascii", "replace"),
            "object": redact_uri(request.uri),
            "status": request.code,
            "forwarded": request.requestHeaders.hasHeader(HOP_HEADER),
        }
        self._stream.write(json.dumps(line) + "\n")

    def reopen(self) -> None:
        """Append to ``path`` anew (logrotate renamed the file, then sent SIGHUP). The new file is
        opened before the old one is closed: if it cannot be opened, lines keep going to the old."""
        stream = open(self.path, "a", buffering=1, encoding="utf-8")
        self._stream, old = stream, self._stream
        old.close()

    def close(self) -> None:
        self._stream.close()


@implementer(IResource)
class AuditResource:
    """Has every write and delete that reaches ``wrapped`` recorded once it finishes."""

    isLeaf = True

    def __init__(self, wrapped: IResource, audit: AuditLog) -> None:
        self.wrapped = wrapped
        self.audit = audit

    def render(self, request: IRequest) -> Any:
        if request.method in AUDITED_METHODS:
            request.notifyFinish().addBoth(lambda _: self.audit.record(request))
        return self.wrapped.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("AuditResource is a leaf")
