"""Worker 0's side: start workers 1..N-1 with the shared socket, restart one that dies, stop them all.

Each worker gets the listening socket as its file descriptor 3 and, as its standard input, a pipe
from worker 0 that it watches (:class:`ParentWatch`): when worker 0 is gone, however it went (a
SIGKILL included), the pipe ends and the worker stops instead of serving on as an orphan.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

#: The descriptor a worker finds the listening socket on.
SOCKET_FD = 3
#: Seconds before a worker that died is started again (a worker dying at once must not spin).
RESTART_DELAY = 1.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0

ArgvFor = Callable[[int], Sequence[str]]


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        log.info("worker {index} started (pid {pid})", index=self.index, pid=self.transport.pid)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor._ended(self, reason)


class WorkerSupervisor(Service):
    """Keeps workers 1..``count``-1 running while the service runs; ``argv_for(index)`` is a
    worker's command line."""

    def __init__(
        self, reactor: Any, count: int, listener_fd: int, argv_for: ArgvFor,
        after_stop: Callable[[], Any] = lambda: None,
    ) -> None:
        """``after_stop``: run once every worker ended (worker 0 removes the locks' directory)."""
        self.after_stop = after_stop
        self.reactor = reactor
        self.count = count
        self.listener_fd = listener_fd
        self.argv_for = argv_for
        self.workers: dict[int, _Worker] = {}
        self._restarts: dict[int, Any] = {}

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        self._restarts.pop(index, None)
        worker = _Worker(self, index)
        argv = list(self.argv_for(index))
        self.workers[index] = worker
        self.reactor.spawnProcess(
            worker, argv[0], argv, env=dict(os.environ), path=os.getcwd(),
            childFDs={0: "w", 1: 1, 2: 2, SOCKET_FD: self.listener_fd},
        )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is not worker:
            return
        del self.workers[worker.index]
        if not self.running:
            return
        log.error(
            "worker {index} ended ({why}): starting it again in {delay:g} s",
            index=worker.index, why=reason.getErrorMessage(), delay=RESTART_DELAY,
        )
        self._restarts[worker.index] = self.reactor.callLater(RESTART_DELAY, self._start, worker.index)

    def signal_all(self, name: str) -> None:
        """Pass a signal on (``HUP``: each worker reloads its config and reopens its log)."""
        for worker in list(self.workers.values()):
            _signal(worker, name)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ending = []
        for worker in list(self.workers.values()):
            ending.append(worker.ended)
            _signal(worker, "TERM")
            kill = self.reactor.callLater(STOP_GRACE, _signal, worker, "KILL")
            worker.ended.addBoth(lambda result, kill=kill: kill.cancel() if kill.active() else None)
        return DeferredList(ending).addCallback(lambda _: self.after_stop())


def _signal(worker: _Worker, name: str) -> None:
    try:
        worker.transport.signalProcess(name)
    except error.ProcessExitedAlready:
        pass


@implementer(IReadDescriptor)
class _EndOfInput:
    """Reads standard input (the pipe from worker 0) only to learn when it ends."""

    def __init__(self, on_end: Callable[[], Any]) -> None:
        self.on_end = on_end

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Any:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        return None if data else error.ConnectionDone()

    def connectionLost(self, reason: Failure) -> None:
        self.on_end()

    def logPrefix(self) -> str:
        return "worker-0-pipe"


class ParentWatch(Service):
    """In workers 1..N-1: stop the reactor when worker 0 is gone (its pipe on stdin ends)."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._reader: _EndOfInput | None = None

    def startService(self) -> None:
        super().startService()
        os.set_blocking(0, False)
        self._reader = _EndOfInput(self._parent_gone)
        self.reactor.addReader(self._reader)

    def _parent_gone(self) -> None:
        if self.running:
            log.warn("worker 0 is gone: stopping")
            self.reactor.stop()

    def stopService(self) -> None:
        super().stopService()
        if self._reader is not None:
            self.reactor.removeReader(self._reader)
            self._reader = None


def twistd_argv(config_path: str | None, index: int, count: int, locks: str, logging: Sequence[str]) -> list[str]:
    """A worker's command line: this Python running twistd in the foreground, no pid file (worker
    0 has it), the same config and logging options, its place among the workers and the locks'
    directory."""
    argv = [sys.executable, "-c", TWISTD_BOOTSTRAP, "--pidfile=", "-n", *logging, "zotpy"]
    if config_path is not None:
        argv += ["-c", os.path.abspath(config_path)]
    return argv + ["--workers", str(count), "--worker-index", str(index), "--worker-locks", locks]


TWISTD_BOOTSTRAP = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"
