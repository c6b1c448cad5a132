"""What a scenario runs: zotpy (one replica or a cluster behind HAProxy), CNCF distribution, SeaweedFS
(also behind HAProxy, as a relay's ceiling) and the in-memory null registry, all on loopback, each
stopped again whatever happens.

The process fixtures of the integration tests (:mod:`tests.integration.daemon`, ``cluster``,
``haproxy``, :mod:`tests.seaweed`) are Twisted code; the benchmark runs on Twisted's asyncio
reactor, so the load client is plain asyncio and :func:`tw` awaits a fixture's Deferred or coroutine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import urllib.request
import uuid
from typing import Any, Awaitable, Callable, Coroutine

import attrs
import bcrypt
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.internet import defer

from tests.integration.cluster import ZotpyCluster
from tests.integration.daemon import REPO_ROOT, DockerRegistry, ServerProcess, ZotpyDaemon, free_port
from tests.integration.haproxy import HAProxy, haproxy_binary
from tests.seaweed import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, SeaweedServer

#: zot's default log level; the tests' daemons log at debug, which a benchmark should not pay for.
LOG_INFO = {"log": {"level": "info"}}


def tw(work: Coroutine[Any, Any, Any] | defer.Deferred[Any]) -> asyncio.Future[Any]:
    """A fixture's Twisted coroutine or Deferred as something asyncio can await."""
    deferred = defer.ensureDeferred(work) if not isinstance(work, defer.Deferred) else work
    return deferred.asFuture(asyncio.get_running_loop())


@attrs.define
class Target:
    """Where the load goes, and the processes whose CPU and memory count for it."""

    name: str
    host: str
    port: int
    pids: dict[str, int]
    #: for the cluster scenario: each replica's (host, port), and which owns what
    replicas: list[tuple[str, int]] = attrs.field(factory=list)
    cluster: ZotpyCluster | None = None
    #: sent with every request to it (the auth scenario's Authorization)
    headers: dict[str, str] = attrs.field(factory=dict)


class Resources:
    """Everything started for a run, stopped in reverse order by :meth:`close` (also on Ctrl-C:
    :mod:`bench.__main__` calls it from a reactor shutdown trigger)."""

    def __init__(self, workdir: str, parent: Resources | None = None) -> None:
        self.workdir = workdir
        self.parent = parent  # holds the run's SeaweedFS, which outlives one scenario's servers
        self._stops: list[tuple[str, Callable[[], Awaitable[Any] | None]]] = []
        self.seaweed: SeaweedServer | None = None

    def directory(self, name: str) -> str:
        path = os.path.join(self.workdir, f"{name}-{uuid.uuid4().hex[:6]}")
        os.makedirs(path)
        return path

    def on_close(self, what: str, stop: Callable[[], Awaitable[Any] | None]) -> None:
        self._stops.append((what, stop))

    async def close(self) -> None:
        while self._stops:
            what, stop = self._stops.pop()
            try:
                result = stop()
                if result is not None:
                    await result
            except Exception as error:  # keep stopping the others
                print(f"stopping {what}: {error}", file=sys.stderr)

    # -- SeaweedFS -----------------------------------------------------------------------------

    def s3(self) -> SeaweedServer:
        """The run's SeaweedFS, started on first use (blocking a few seconds)."""
        if self.parent is not None:
            return self.parent.s3()
        if self.seaweed is None:
            server = SeaweedServer(volume_size_limit_mb=30 * 1024)  # no volume growth mid-run
            server.start()
            self.seaweed = server
            self.on_close("SeaweedFS", server.stop)
            _warm_up(server)
        return self.seaweed

    def zot_s3_driver(self) -> dict[str, Any]:
        server = self.s3()
        return {
            "name": "s3", "rootdirectory": f"/zotpy-{uuid.uuid4().hex[:8]}", "region": REGION,
            "regionendpoint": server.endpoint, "bucket": BUCKET, "secure": False,
            "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY,
        }

    # -- servers -------------------------------------------------------------------------------

    async def _start(self, process: ServerProcess) -> None:
        self.on_close(process.name, lambda: tw(process.stop()))
        await tw(process.start(timeout=60))

    async def zotpy(
        self, storage: str, name: str = "zotpy", http: dict[str, Any] | None = None,
        storage_keys: dict[str, Any] | None = None, workers: int = 1,
    ) -> Target:
        """``storage_keys``: more of the ``storage`` section (``redirectBlobURL``). With ``workers``
        above 1, the replica runs as that many processes (``--workers``), every one of them counted
        (and listening) before the load starts."""
        config: dict[str, Any] = dict(LOG_INFO)
        if http:
            config["http"] = http
        if storage == "s3":
            config["storage"] = {"storageDriver": self.zot_s3_driver(), **(storage_keys or {})}
        daemon = ZotpyDaemon(self.directory(name), config, name=name, workers=workers)
        await self._start(daemon)
        assert daemon.pid is not None
        pids = {name: daemon.pid}
        for index in range(1, workers):
            pids[f"{name} w{index}"] = await _worker_pid(daemon, index)
        return Target(name, daemon.address, daemon.port, pids)

    async def zotpy_with_auth(self, storage: str, name: str = "zotpy-auth") -> Target:
        """zotpy with an htpasswd user (bcrypt at its usual cost, 10) allowed everything through
        ``accessControl``: every layer of authentication and authorization is paid."""
        htpasswd = os.path.join(self.directory("htpasswd"), "htpasswd")
        with open(htpasswd, "wb") as stream:
            stream.write(b"bench:" + bcrypt.hashpw(b"bench-password", bcrypt.gensalt(10)) + b"\n")
        http = {
            "auth": {"htpasswd": {"path": htpasswd}},
            "accessControl": {"repositories": {"**": {"policies": [
                {"users": ["bench"], "actions": ["read", "create", "update", "delete"]}]}}},
        }
        target = await self.zotpy(storage, name, http)
        target.headers = {"Authorization": "Basic " + base64.b64encode(b"bench:bench-password").decode()}
        return target

    async def distribution(self, storage: str) -> Target:
        """docker-registry 2.8 on the same storage: a directory, or the same bucket through its s3
        driver (``regionendpoint`` makes it use path-style requests). Redirects of blob GETs to S3 are
        off, so both registries move the bytes themselves (the raw S3 ceiling shows the other case)."""
        registry = DockerRegistry(self.directory("distribution"))
        if storage == "s3":
            server = self.s3()
            driver: dict[str, Any] = {
                "s3": {
                    "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "region": REGION,
                    "regionendpoint": server.endpoint, "bucket": BUCKET, "secure": False, "v4auth": True,
                    "rootdirectory": f"/distribution-{uuid.uuid4().hex[:8]}",
                },
                "redirect": {"disable": True},
            }
        else:
            driver = {"filesystem": {"rootdirectory": registry.root_dir}}
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {**driver, "delete": {"enabled": True}, "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{registry.port}", "secret": "zotpy-bench"},
        }
        with open(registry.config_path, "w") as stream:
            json.dump(config, stream, indent=2)
        # The AWS SDK in it refuses to start when AWS_CA_BUNDLE is set but its transport is custom.
        registry.env = {name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"}
        await self._start(registry)
        assert registry.pid is not None
        return Target("distribution", "127.0.0.1", registry.port, {"distribution": registry.pid})

    async def null_registry(self) -> Target:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        process = ServerProcess(
            name="null-registry",
            argv=[sys.executable, "-m", "bench.nullregistry", str(port)],
            workdir=self.directory("null"),
            ready_url=f"http://127.0.0.1:{port}/v2/",
            env=env,
        )
        await self._start(process)
        assert process.pid is not None
        return Target("null", "127.0.0.1", port, {"null-registry": process.pid})

    async def haproxy(self, name: str, servers: list[str], pids: dict[str, int]) -> Target:
        proxy = HAProxy(self.directory(f"haproxy-{name}"), servers)
        await self._start(proxy)
        assert proxy.pid is not None
        return Target(name, "127.0.0.1", proxy.port, {**pids, "haproxy": proxy.pid})

    async def s3_relay(self) -> Target:
        """HAProxy in front of the run's SeaweedFS, relaying every request as it is: what any server
        between a client and S3 costs on this machine, measured with the best relay at hand (C,
        HTTP mode, the bodies moved with splice(2) as zotpy moves them). Its health is S3's own."""
        server = self.s3()
        workdir = self.directory("s3-relay")
        port = free_port()
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as stream:
            stream.write(_relay_config(port, f"127.0.0.1:{server.port}"))
        relay = ServerProcess(
            name="haproxy", argv=[haproxy_binary(), "-db", "-f", config], workdir=workdir,
            ready_url=f"http://127.0.0.1:{port}/", ready_codes=(200, 403),  # S3 refuses an anonymous listing
        )
        await self._start(relay)
        assert relay.pid is not None
        return Target("s3-via-haproxy", "127.0.0.1", port, {"haproxy": relay.pid})

    async def zotpy_cluster(self, storage: str, size: int = 3) -> Target:
        """``size`` replicas (shared bucket with s3, a local root each with fs) behind HAProxy."""
        driver = self.zot_s3_driver() if storage == "s3" else None
        cluster = ZotpyCluster(self.directory("cluster"), size=size, storage_driver=driver, extra=LOG_INFO)
        self.on_close("zotpy cluster", lambda: tw(cluster.stop()))
        await tw(cluster.start())
        pids = {replica.name: replica.pid for replica in cluster.replicas if replica.pid is not None}
        target = await self.haproxy(f"zotpy x{size}", cluster.members, pids)
        target.cluster = cluster
        target.replicas = [(member.rsplit(":", 1)[0], int(member.rsplit(":", 1)[1])) for member in cluster.members]
        return target


def _relay_config(port: int, server: str) -> str:
    return "\n".join([
        "global",
        "    maxconn 1000",
        "defaults",
        "    mode http",
        "    option splice-auto",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "frontend s3",
        f"    bind 127.0.0.1:{port}",
        "    default_backend seaweedfs",
        "backend seaweedfs",
        f"    server seaweedfs {server}",
        "",
    ])


def _warm_up(server: SeaweedServer) -> None:
    """Write (and delete) a few large objects before anything is measured: SeaweedFS allocates its
    volumes on the first bulk writes, which took seconds, and the first target of the first round
    paid for it (zotpy's round-1 push of ``large/s3`` ran at half its later rate)."""
    body = os.urandom(8 * 1024 * 1024)
    for number in range(8):
        for method, data in (("PUT", body), ("DELETE", b"")):
            request = AWSRequest(method=method, url=f"{server.endpoint}/{BUCKET}/bench-warm-up/{number}", data=data)
            S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
            headers = dict(request.headers)
            prepared = urllib.request.Request(request.url, data=data or None, method=method, headers=headers)
            urllib.request.urlopen(prepared, timeout=60).read()


async def _worker_pid(daemon: ZotpyDaemon, index: int, timeout: float = 30.0) -> int:
    """The pid of ``daemon``'s worker ``index``, once that worker logged that it listens."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        pid = None
        for line in daemon.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message", "").startswith(f"worker {index} started"):
                pid = event.get("pid")
            elif pid is not None and event.get("worker") == str(index) and "zotpy listening" in event.get("message", ""):
                return int(pid)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker {index} of {daemon.name} did not start:\n{daemon.describe()}")
