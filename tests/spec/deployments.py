"""The registries the spec matrix runs against, started once per test process.

Trial cleans the reactor after every test (listening ports and child-process pipes left behind are
errors), so a daemon shared by many tests cannot be a reactor child. These daemons are plain
``subprocess.Popen`` children instead: started on first use (blocking for a second or two, like
:mod:`tests.seaweed`), reused by every test of the same deployment, stopped when the test process exits.
Tests keep apart by pushing to repositories of their own (:meth:`Deployment.fresh_repository`).

The configs come from :class:`~tests.integration.daemon.ZotpyDaemon` and
:class:`~tests.integration.cluster.ZotpyCluster` (which write them and know the command line); only the
way of running the processes differs.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Mapping

import attr

from tests.integration.cluster import ZotpyCluster, seaweed_storage_driver
from tests.integration.daemon import ServerProcess, ZotpyDaemon

START_TIMEOUT = 30.0
STOP_GRACE = 3.0

LOCAL = "local"
S3 = "s3"
DIRECT = "direct"
NON_OWNER = "nonowner"


@attr.s(auto_attribs=True, frozen=True)
class Variant:
    """One column of the matrix.

    :ivar algorithm: the digest algorithm of the blobs the tests push (and of manifests pushed by digest).
    :ivar storage: :data:`LOCAL` or :data:`S3`.
    :ivar path: :data:`DIRECT` (one daemon) or :data:`NON_OWNER` (a 3-member cluster, every repository
        reached through a replica that does not own it).
    :ivar config: extra top-level zot config merged into every daemon's config (e.g. ``http.auth`` and
        ``http.accessControl`` for the matrix with auth on); part of the deployment's identity, so
        variants with different configs run different daemons.
    :ivar headers: sent with every request of the matrix (e.g. ``Authorization``).
    :ivar credentials: for credentials that change with the request, as bearer tokens do: an object
        with ``headers(url)`` (sent with the request) and ``challenged(url, www_authenticate)`` (a 401
        came back: True when the request is to be sent again), as
        :class:`tests.spec.credentials.BearerCredentials`.
    :ivar label: names variants with a ``config``/``headers`` apart (``"Auth"``: ``PullAuthSha256LocalDirect``).
    :ivar workers: the daemon's worker processes (``--workers``; :data:`DIRECT` only).

    The matrix with auth on, say, is ``attr.evolve(v, config={"http": {...}}, headers={"Authorization":
    ...}, label="Auth")`` for each ``v`` of :data:`VARIANTS`, given to
    :func:`tests.spec.matrix.variants_of` with each module's behaviours.
    """

    algorithm: str
    storage: str
    path: str
    config: Mapping[str, Any] = attr.ib(factory=dict, eq=False, hash=False)
    headers: Mapping[str, str] = attr.ib(factory=dict, eq=False, hash=False)
    label: str = ""
    credentials: Any = attr.ib(default=None, eq=False, hash=False)
    workers: int = 1

    @property
    def name(self) -> str:
        """``Sha256LocalDirect`` and the like: the suffix of the variant's TestCase class."""
        return self.label + "".join(part.capitalize() for part in (self.algorithm, self.storage, self.path))

    def deployment_key(self) -> str:
        """Variants that differ only by digest algorithm share their daemons."""
        return json.dumps([self.storage, self.path, self.config, self.workers], sort_keys=True)


#: The matrix: every digest algorithm, storage and path.
VARIANTS: tuple[Variant, ...] = tuple(
    Variant(algorithm, storage, path)
    for algorithm in ("sha256", "sha512")
    for storage in (LOCAL, S3)
    for path in (DIRECT, NON_OWNER)
)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (no atexit then)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _launch(process: ServerProcess) -> subprocess.Popen[bytes]:
    """Start ``process``'s command line outside the reactor, its output appended to its log."""
    os.makedirs(process.workdir, exist_ok=True)
    with open(process.log_path, "ab") as log:
        return subprocess.Popen(
            process.argv,
            env=process.env,
            cwd=process.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except urllib.error.HTTPError:
        return True  # 401 with auth on: serving all the same
    except OSError:
        return False
    return True


class Deployment:
    """Running daemons for one storage x path x config, and how the tests address them."""

    def __init__(self, variant: Variant) -> None:
        self.directory = tempfile.mkdtemp(prefix="zotpy-spec-")
        config: dict[str, Any] = {"log": {"level": "info"}}
        config.update(variant.config)
        storage_driver = seaweed_storage_driver(f"/spec-{uuid.uuid4().hex[:12]}") if variant.storage == S3 else None
        self.cluster: ZotpyCluster | None = None
        self.single: ZotpyDaemon | None = None
        if variant.path == NON_OWNER:
            self.cluster = ZotpyCluster(self.directory, size=3, storage_driver=storage_driver, extra=config)
            self.servers: list[ServerProcess] = list(self.cluster.replicas)
        else:
            if storage_driver is not None:
                config["storage"] = {**config.get("storage", {}), "storageDriver": storage_driver}
            self.single = ZotpyDaemon(os.path.join(self.directory, "zotpy"), config, workers=variant.workers)
            self.servers = [self.single]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes = [_launch(server) for server in self.servers]
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        for server, process in zip(self.servers, self.processes):
            while not _answers(server.ready_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    message = f"a spec-matrix daemon did not start:\n{server.describe()}"
                    self.stop()
                    raise RuntimeError(message)
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the daemons (SIGTERM, then SIGKILL) and remove their directory."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.processes = []
        shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> str:
        """The daemons' command lines and log tails, for failure messages."""
        return "\n".join(server.describe() for server in self.servers)

    def base_for(self, repository: str) -> str:
        """Where a request about ``repository`` goes: the daemon, or a cluster replica that does not own it."""
        if self.single is not None:
            return self.single.base_url
        assert self.cluster is not None
        return self.cluster.url(self.cluster.non_owner(repository))

    @property
    def any_base(self) -> str:
        """Where repository-less requests (``/v2/``, the catalog) go."""
        return self.cluster.url(1) if self.cluster is not None else self.base_for("")


_running: dict[str, Deployment] = {}
_failed: dict[str, str] = {}


def deployment(variant: Variant) -> Deployment:
    """The running deployment for ``variant``, started on first use; a start that failed fails every
    later test of it with the same message, without trying again."""
    key = variant.deployment_key()
    if key in _failed:
        raise RuntimeError(_failed[key])
    if key not in _running:
        started = Deployment(variant)
        try:
            started.start()
        except Exception as failure:
            _failed[key] = str(failure)
            raise
        _running[key] = started
    return _running[key]
