"""Run real server processes (the zotpy daemon, or a reference registry) for
integration tests.

Everything here is Twisted-friendly: processes are started with
``reactor.spawnProcess``, readiness is polled over HTTP with treq on a
non-persistent pool (no connections are left behind for trial to complain
about) and waiting is done with ``deferLater``; nothing sleeps on the reactor
thread.

Typical use from a trial test::

    class MyTest(unittest.TestCase):
        timeout = 300

        async def test_something(self) -> None:
            daemon = ZotpyDaemon(self.mktemp())
            await daemon.start()
            self.addCleanup(daemon.stop)
            ...  # talk to daemon.base_url / daemon.hostport

The child's stdout and stderr go straight (by file descriptor) to
``<tempdir>/<name>.log``; :meth:`ServerProcess.log_text` reads it back for
failure messages.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from typing import Any, Mapping, Sequence

import attr
import treq
from twisted.internet import defer, error, protocol, reactor, task
from twisted.python import failure
from twisted.trial import unittest

#: The repository checkout this file lives in (``tests/integration/..``/..).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Seconds to wait for ``/v2/`` to answer after spawning.
DEFAULT_START_TIMEOUT = 20.0
#: Seconds to wait for the process to exit after SIGTERM before SIGKILL.
DEFAULT_STOP_GRACE = 10.0
#: How much of the end of a log to put in failure messages.
LOG_TAIL_CHARS = 20_000


class ServerProcessError(Exception):
    """The server process did not start, or did not stop, as expected."""


def require_binary(name: str, apt_package: str | None = None) -> str:
    """Return the path of executable ``name``, or FAIL the running test.

    A missing tool is a broken environment, not a reason to skip: this
    raises :class:`twisted.trial.unittest.FailTest` (reported by trial as a
    failure) with e.g. ``skopeo is not installed: apt-get install skopeo
    (.ci/run installs it)``.
    """
    path = shutil.which(name)
    if path is None:
        raise unittest.FailTest(
            f"{name} is not installed: apt-get install {apt_package or name} "
            "(.ci/run installs it)"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(text: str, limit: int = LOG_TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``."""
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


@attr.s(auto_attribs=True, frozen=True)
class HTTPResult:
    """A whole HTTP response, as returned by :func:`http_request`."""

    code: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), if present."""
        for key, values in self.headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


async def http_request(
    method: str,
    url: str,
    headers: Mapping[str, str | Sequence[str]] | None = None,
    data: bytes | None = None,
    timeout: float = 10.0,
) -> HTTPResult:
    """Do one HTTP request on a fresh connection and read the whole answer.

    Uses a non-persistent pool so no connection outlives the call (trial
    would report it as a dirty reactor).
    """
    hdrs = {k: [v] if isinstance(v, str) else list(v) for k, v in (headers or {}).items()}
    response = await treq.request(
        method, url, headers=hdrs, data=data, persistent=False, timeout=timeout
    )
    return await read_result(response)


async def read_result(response: Any) -> HTTPResult:
    """Read a treq response whole into an :class:`HTTPResult`."""
    body = await treq.content(response)
    return HTTPResult(
        code=response.code,
        headers={
            k.decode("latin-1"): [v.decode("latin-1") for v in vs]
            for k, vs in response.headers.getAllRawHeaders()
        },
        body=body,
    )


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` without blocking the reactor."""
    await task.deferLater(reactor, seconds, lambda: None)


class _ExitWatcher(protocol.ProcessProtocol):
    """Records the exit reason and fires the waiters when the child exits."""

    def __init__(self) -> None:
        self.reason: failure.Failure | None = None
        self._waiters: list[defer.Deferred[None]] = []

    def wait_ended(self) -> defer.Deferred[None]:
        """A Deferred that fires (with ``None``) once the child has exited."""
        if self.reason is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        return d

    def processEnded(self, reason: failure.Failure) -> None:
        self.reason = reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


@attr.s(auto_attribs=True)
class ServerProcess:
    """A generic long-running server child process with an HTTP readiness URL.

    :ivar name: short name, used for the log file and in messages.
    :ivar argv: the command line; ``argv[0]`` must be an absolute path.
    :ivar workdir: directory that holds the log (and is the child's cwd).
    :ivar ready_url: polled until it answers ``ready_codes``.
    :ivar env: the child's whole environment (default: a copy of ours).
    :ivar ready_codes: HTTP status codes that mean "serving".
    :ivar ready_log: when set, readiness is this text appearing in the log
        (written by the current run, not an earlier one) instead of an HTTP
        answer from ``ready_url``; for servers the test cannot easily reach
        over HTTP, e.g. https with client certificates.
    """

    name: str
    argv: list[str]
    workdir: str
    ready_url: str
    env: dict[str, str] | None = None
    ready_codes: tuple[int, ...] = (200,)
    ready_log: str | None = None

    _watcher: _ExitWatcher | None = attr.ib(default=None, init=False)
    _transport: Any = attr.ib(default=None, init=False)
    _log_offset: int = attr.ib(default=0, init=False)

    @property
    def log_path(self) -> str:
        """Where the child's stdout and stderr are written."""
        return os.path.join(self.workdir, f"{self.name}.log")

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._transport.pid if self.running else None

    def rss_bytes(self) -> int:
        """The child's resident memory now (Linux ``/proc``)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise ServerProcessError(f"no VmRSS for {self.name} (pid {self.pid})")

    @property
    def running(self) -> bool:
        """Whether the child was spawned and has not exited yet."""
        return self._watcher is not None and self._watcher.reason is None

    def log_text(self, since_last_spawn: bool = False) -> str:
        """Everything the child has written so far (empty if nothing); with
        ``since_last_spawn``, only what the current (latest) run wrote."""
        try:
            with open(self.log_path, "rb") as f:
                if since_last_spawn:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        """Command line plus the tail of the log, for failure messages."""
        return (
            f"{self.name} command: {' '.join(self.argv)}\n"
            f"--- {self.name} log ({self.log_path}) ---\n{tail(self.log_text())}\n"
            f"--- end of {self.name} log ---"
        )

    def spawn(self) -> None:
        """Start the child; its stdout/stderr append to :attr:`log_path`.

        A child that has exited may be spawned again (see :meth:`restart`).
        """
        if self.running:
            raise ServerProcessError(f"{self.name} is already running")
        os.makedirs(self.workdir, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._log_offset = os.fstat(log_fd).st_size
        null_fd = os.open(os.devnull, os.O_RDONLY)
        self._watcher = _ExitWatcher()
        try:
            self._transport = reactor.spawnProcess(
                self._watcher,
                self.argv[0],
                self.argv,
                env=dict(os.environ) if self.env is None else self.env,
                path=self.workdir,
                childFDs={0: null_fd, 1: log_fd, 2: log_fd},
            )
        finally:
            os.close(log_fd)
            os.close(null_fd)

    async def wait_ready(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Poll :attr:`ready_url` until it answers, the child dies, or timeout."""
        assert self._watcher is not None, "spawn() first"
        deadline = reactor.seconds() + timeout
        last = "no answer yet"
        while True:
            if self._watcher.reason is not None:
                raise ServerProcessError(
                    f"{self.name} exited before serving "
                    f"({self._watcher.reason.value}).\n{self.describe()}"
                )
            if self.ready_log is not None:
                if self.ready_log in self.log_text(since_last_spawn=True):
                    return
                last = f"no {self.ready_log!r} in the log yet"
            else:
                try:
                    result = await http_request("GET", self.ready_url, timeout=2.0)
                except Exception as e:  # connection refused, timeout, ...
                    last = f"{type(e).__name__}: {e}"
                else:
                    if result.code in self.ready_codes:
                        return
                    last = f"HTTP {result.code}: {result.body[:500]!r}"
            if reactor.seconds() >= deadline:
                raise ServerProcessError(
                    f"{self.name} did not answer {self.ready_url} within {timeout:.0f}s "
                    f"(last: {last}).\n{self.describe()}"
                )
            await sleep(0.1)

    async def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Spawn the child and wait until it serves; on failure, stop it."""
        self.spawn()
        try:
            await self.wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    async def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Stop the child if it runs, then start it again (same command, same log)."""
        await self.stop()
        await self.start(timeout)

    async def wait_exit(self, timeout: float = DEFAULT_START_TIMEOUT) -> int | None:
        """Wait for the child to exit by itself; its exit code (``None``: a signal).

        Raises :class:`ServerProcessError` if it still runs after ``timeout``
        seconds (the child is left running: call :meth:`stop`).
        """
        watcher = self._watcher
        assert watcher is not None, "spawn() first"
        deadline = reactor.seconds() + timeout
        while watcher.reason is None:
            if reactor.seconds() >= deadline:
                raise ServerProcessError(
                    f"{self.name} still runs after {timeout:.0f}s.\n{self.describe()}"
                )
            await sleep(0.05)
        return getattr(watcher.reason.value, "exitCode", None)

    async def stop(self, grace: float = DEFAULT_STOP_GRACE) -> int | None:
        """SIGTERM the child, SIGKILL it after ``grace`` seconds; wait for exit.

        Returns the exit code (``None`` if it died from a signal or was never
        started). Safe to call more than once.
        """
        watcher = self._watcher
        if watcher is None:
            return None
        if watcher.reason is None:
            try:
                self._transport.signalProcess("TERM")
            except error.ProcessExitedAlready:
                pass
            timer = reactor.callLater(grace, self._kill)
            await watcher.wait_ended()
            if timer.active():
                timer.cancel()
        reason = watcher.reason
        assert reason is not None
        return getattr(reason.value, "exitCode", None)

    def _kill(self) -> None:
        try:
            self._transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass


def _zot_config(
    root_dir: str, port: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "distSpecVersion": "1.1.0",
        "storage": {"rootDirectory": root_dir, "dedupe": False, "gc": False},
        "http": {"address": "127.0.0.1", "port": str(port)},
        "log": {"level": "debug"},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


#: ``python -c`` program equivalent to the ``twistd`` console script.
#: (``python -m twisted`` is the newer ``twist`` runner, which has no ``-n``
#: and ``--pidfile``; ``twisted.scripts.twistd`` has no ``__main__`` block.)
TWISTD_BOOTSTRAP = (
    "import sys; from twisted.scripts.twistd import run; "
    "sys.argv[0] = 'twistd'; sys.exit(run())"
)


#: What zotpy logs once its listener is up (``zotpy.tap.ListenerService``).
ZOTPY_LISTENING = "zotpy listening on"


class ZotpyDaemon(ServerProcess):
    """The real zotpy daemon: ``twistd -n zotpy -c <tempdir>/config.json``.

    Runs ``python -c <twistd> --pidfile= -n zotpy -c CONFIG`` with the repo
    checkout first on ``PYTHONPATH`` (so both the ``zotpy`` package and the
    ``twisted/plugins/zotpy_plugin.py`` dropin of this checkout are used)
    and the temp dir as its working directory.

    :param workdir: a fresh directory (e.g. ``self.mktemp()``).
    :param config: top-level sections merged into the default config (a dict
        section updates the default one, e.g. ``{"storage": {"gc": True}}``).
    :param address: the IP address to bind (``http.address``); any loopback
        address works on Linux (``127.0.0.2``...).
    :param port: the port (default: one free on ``address``).
    :param name: the process name, used for the log file and in messages.
    :param workers: worker processes sharing the listening socket (``--workers``).

    With ``http.tls`` in ``config`` the daemon serves https: readiness is then
    its ``zotpy listening on`` log line rather than an answer on ``/v2/``,
    and :attr:`base_url` is ``https://...``.
    """

    def __init__(
        self,
        workdir: str,
        config: Mapping[str, Any] | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
        name: str = "zotpy",
        workers: int = 1,
    ) -> None:
        workdir = os.path.abspath(workdir)
        self.workers = workers
        self.address = address
        self.port = free_port(address) if port is None else port
        self.root_dir = os.path.join(workdir, "data")
        self.config = _zot_config(self.root_dir, self.port, config)
        self.config["http"]["address"] = address
        self.tls = "tls" in self.config["http"]
        self.config_path = os.path.join(workdir, "config.json")
        os.makedirs(workdir, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        env["PYTHONUNBUFFERED"] = "1"
        super().__init__(
            name=name,
            argv=[
                sys.executable,
                "-c",
                TWISTD_BOOTSTRAP,
                "--pidfile=",
                "-n",
                "zotpy",
                "-c",
                self.config_path,
                "--workers",  # given even when 1: the daemon's default is one per core
                str(workers),
            ],
            workdir=workdir,
            ready_url=f"http://{address}:{self.port}/livez",  # answers with http.auth on too
            env=env,
            ready_log=ZOTPY_LISTENING if self.tls else None,
        )

    @property
    def hostport(self) -> str:
        """``ADDRESS:PORT``, as used in ``docker://HOSTPORT/repo:tag``."""
        return f"{self.address}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://ADDRESS:PORT`` (``https://`` when serving TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.hostport}"

    def repo_dir(self, repo: str) -> str:
        """Where zot's layout keeps repository ``repo`` on disk."""
        return os.path.join(self.root_dir, *repo.split("/"))


class LocalHTTPServer(ServerProcess):
    """A server on ``127.0.0.1:<self.port>`` (plain HTTP)."""

    port: int

    @property
    def hostport(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.hostport}"


class DockerRegistry(LocalHTTPServer):
    """CNCF distribution (Debian's ``docker-registry`` package, 2.8) with
    filesystem storage in ``<workdir>/data`` and deletes enabled.

    Useful as a reference registry to validate test harnesses and as an
    upstream for sync tests.
    """

    BINARY = "/usr/bin/docker-registry"

    def __init__(self, workdir: str, binary: str | None = None) -> None:
        workdir = os.path.abspath(workdir)
        self.port = free_port()
        self.root_dir = os.path.join(workdir, "data")
        self.config_path = os.path.join(workdir, "config.yml")
        os.makedirs(workdir, exist_ok=True)
        # JSON is valid YAML, so no YAML library is needed.
        config = {
            "version": 0.1,
            "log": {"level": "debug", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": self.root_dir},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "zotpy-tests"},
        }
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)
        super().__init__(
            name="docker-registry",
            argv=[binary or self.BINARY, "serve", self.config_path],
            workdir=workdir,
            ready_url=f"http://127.0.0.1:{self.port}/v2/",
        )
