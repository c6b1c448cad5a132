"""Health probes (``/livez``, ``/readyz``, ``/startupz``) and the metrics endpoint, in front of the registry.

zot's probes: ``/livez`` answers 200 ``ok`` while the process runs; ``/startupz`` and ``/readyz``
answer 200 ``ok`` once the replica listens and its storage answers, else 500 ``not ready yet``.
``/readyz`` follows the storage: it goes back to 500 while the backend (an S3 bucket) does not
answer and to 200 when it does again, so a load balancer stops sending requests that could only
fail. ``/startupz`` stays 200 once it was (a startup probe is done once it succeeded).

Storage is probed by :class:`CachedCheck`: one check at a time, its result kept for a couple of
seconds, so a storm of probes from several load balancers costs S3 at most one HeadBucket per
period, and a probe never waits longer than the check's timeout.

:class:`OperationsResource` sits in front of everything else (the cluster's forwarding resource
included), so probes and scrapes are always answered by the replica that receives them, are never
forwarded and never pass through anything a request to the registry passes through.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.transport.twisted_private import request_disconnected

log = Logger()

LIVE_PATH = b"/livez"
READY_PATH = b"/readyz"
STARTUP_PATH = b"/startupz"
PROBE_PATHS = frozenset({LIVE_PATH, READY_PATH, STARTUP_PATH})

OK = b"ok"
NOT_READY = b"not ready yet"


class CachedCheck:
    """Runs ``check`` at most once per ``ttl`` seconds, sharing one run between concurrent callers.

    A check that raises, or takes longer than ``timeout`` seconds, counts as a failure. Changes of
    state are logged (a warning when the storage stops answering, with the reason).
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[Any] | Deferred[Any]],
        clock: IReactorTime,
        ttl: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.check = check
        self.clock = clock
        self.ttl = ttl
        self.timeout = timeout
        self.runs = 0
        self._result: bool | None = None
        self._checked_at = 0.0
        self._waiting: list[Deferred[bool]] | None = None

    def __call__(self) -> Deferred[bool]:
        if self._result is not None and self.clock.seconds() - self._checked_at < self.ttl:
            return succeed(self._result)
        waiter: Deferred[bool] = Deferred()
        if self._waiting is None:
            self._waiting = [waiter]
            self._run()
        else:
            self._waiting.append(waiter)
        return waiter

    def _run(self) -> None:
        self.runs += 1
        running = maybeDeferred(self._start)
        running.addTimeout(self.timeout, self.clock)
        running.addCallbacks(lambda _: self._done(True, None), lambda failure: self._done(False, failure))

    def _start(self) -> Any:
        result = self.check()
        return ensureDeferred(result) if not isinstance(result, Deferred) else result

    def _done(self, ok: bool, failure: Failure | None) -> None:
        if failure is not None and self._result is not False:
            log.warn("storage does not answer, not ready: {reason}", reason=_reason(failure, self.timeout))
        elif ok and self._result is False:
            log.info("storage answers again, ready")
        self._result = ok
        self._checked_at = self.clock.seconds()
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            waiter.callback(ok)


def _reason(failure: Failure, timeout: float) -> str:
    if failure.check(TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(failure.value)[:300] or failure.type.__name__


class Health(Service):
    """The replica's state for the probes. As a child of the service tree placed after the listener,
    it is started once the listener listens and stopped before it stops listening (so ``/readyz``
    turns 500 as soon as a shutdown begins)."""

    def __init__(self, storage: CachedCheck) -> None:
        self.storage = storage
        self.started = False

    def startService(self) -> None:
        super().startService()
        self.storage()  # the first check at once: ready about as soon as the storage answers

    async def ready(self) -> bool:
        if not self.running:
            return False
        ok = await self.storage()
        if ok:
            self.started = True
        return ok

    async def startup(self) -> bool:
        return self.started or await self.ready()


@implementer(IResource)
class OperationsResource:
    """Answers the probes and ``metrics_path``; hands every other request to ``registry``."""

    isLeaf = True

    def __init__(
        self,
        registry: IResource,
        health: Health,
        metrics: CollectorRegistry | None = None,
        metrics_path: str | None = None,
        reactor: Any = None,
        pool: ThreadPool | None = None,
    ) -> None:
        self.registry = registry
        self.health = health
        self.metrics = metrics
        self.metrics_path = metrics_path.encode("utf-8") if metrics_path and metrics is not None else None
        self.reactor = reactor
        self.pool = pool

    def handles(self, path: bytes) -> bool:
        return path in PROBE_PATHS or (self.metrics_path is not None and path == self.metrics_path)

    def render(self, request: IRequest) -> Any:
        path = request.path
        if not self.handles(path):
            return self.registry.render(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader("Allow", "GET, HEAD")
            return _text(request, 405, b"method not allowed")
        if path == LIVE_PATH:
            return _text(request, 200, OK)
        if path == self.metrics_path:
            answer: Deferred[Any] = ensureDeferred(self._metrics(request))
        else:
            answer = ensureDeferred(self._probe(request, path))
        answer.addErrback(lambda failure: log.failure("probe {path} failed", failure, path=path))
        return NOT_DONE_YET

    async def _probe(self, request: IRequest, path: bytes) -> None:
        ok = await (self.health.ready() if path == READY_PATH else self.health.startup())
        _finish(request, _text(request, 200 if ok else 500, OK if ok else NOT_READY))

    async def _metrics(self, request: IRequest) -> None:
        assert self.metrics is not None
        encoder, content_type = choose_encoder(request.getHeader("accept"))
        if self.pool is not None:
            body = await deferToThreadPool(self.reactor, self.pool, encoder, self.metrics)
        else:
            body = encoder(self.metrics)
        request.setResponseCode(200)
        request.setHeader("Content-Type", content_type)
        request.setHeader("Content-Length", str(len(body)))
        _finish(request, b"" if request.method == b"HEAD" else body)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("OperationsResource is a leaf")


def _text(request: IRequest, status: int, body: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader("Content-Type", "text/plain; charset=utf-8")
    request.setHeader("Content-Length", str(len(body)))
    request.setHeader("Cache-Control", "no-store")
    return b"" if request.method == b"HEAD" else body


def _finish(request: IRequest, body: bytes) -> None:
    if request.finished or request_disconnected(request):
        return
    request.write(body)
    request.finish()
