"""A real zotpy scale-out cluster for integration tests and benchmarks.

:class:`ZotpyCluster` runs N replicas, each a real ``twistd -n zotpy -c
<config>`` process (:class:`tests.integration.daemon.ZotpyDaemon`), bound to
``127.0.0.1``, ``127.0.0.2``, ``127.0.0.3``... on **one shared port**, with an
identical ``cluster`` section (same ``members`` in the same order, one 16-byte
``hashKey``). Storage is either a local root per replica (the default) or a
shared S3 bucket (pass ``storage_driver``). With :class:`ClusterTLS` every
replica serves https (``http.tls``, client certificates required) and talks to
its peers over verified mutual TLS (``cluster.tls``).

:class:`RegistryClient` is the client side: a treq client on a persistent pool
that never keeps cookies (so a sticky HAProxy cookie is never sent back unless
a test does it on purpose), https with the test CA and a client certificate,
plus the OCI push/pull steps the tests need (blobs monolithic or chunked,
manifests, digest-verified pulls).

Typical use from a trial test::

    cluster = ZotpyCluster(self.mktemp())
    await cluster.start()
    self.addCleanup(cluster.stop)
    client = RegistryClient()
    self.addCleanup(client.close)
    image = small_image("library/alpine")
    await client.push_image(cluster.url(cluster.non_owner("library/alpine")), "library/alpine", image, "v1")

:func:`access_log` parses a replica's log (its JSON access-log lines, see
:mod:`zotpy.observability.access`), so a test can tell which replica received
which request; :func:`log_records` gives every line of a log as a JSON object.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urljoin

import attr
from twisted.internet import defer, reactor, ssl
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from treq.client import HTTPClient
from zope.interface import implementer

from tests.certs import CertificateAuthority, PemPair
from tests.integration.daemon import HTTPResult, ZotpyDaemon, read_result
from tests.integration.ocilayout import pseudo_random_bytes as pseudo_random
from tests.integration.ocilayout import sha256_digest
from zotpy.cluster.ring import Ring

#: The hash key of the tests' clusters (zot's documentation example; 16 bytes).
HASH_KEY = b"loremipsumdolors"

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"


def loopback_addresses(count: int) -> list[str]:
    """``127.0.0.1``, ``127.0.0.2``, ... (Linux routes all of 127/8 to lo)."""
    return [f"127.0.0.{i + 1}" for i in range(count)]


def shared_free_port(addresses: Sequence[str], attempts: int = 50) -> int:
    """A TCP port that was free on every one of ``addresses`` a moment ago."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((addresses[0], 0))
            port = first.getsockname()[1]
            others = []
            try:
                for address in addresses[1:]:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    others.append(s)
                    s.bind((address, port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            finally:
                for s in others:
                    s.close()
            return port
    raise RuntimeError(f"no port free on all of {list(addresses)} after {attempts} attempts")


# --------------------------------------------------------------------------------------------------
# TLS material
# --------------------------------------------------------------------------------------------------


@attr.s(auto_attribs=True)
class ClusterTLS:
    """Certificates for a TLS cluster, generated into ``directory``.

    Every replica gets a certificate for its address (IP SAN) from the cluster
    CA, used both to serve (``http.tls``) and as its client certificate toward
    peers (``cluster.tls.cert``/``key``); ``cluster.tls.cacert`` and
    ``http.tls.cacert`` (client certificates required) are the cluster CA.

    :ivar rogue: replica indexes whose certificate comes from **another** CA
        (``other_ca``) instead: their peers must refuse them.
    :ivar peer_client_cert: whether ``cluster.tls`` names a client certificate
        (without it, peers that require one refuse the forwarded requests).
    :ivar require_client_cert: whether replicas require client certificates
        (``http.tls.cacert``).
    """

    directory: str
    rogue: frozenset[int] = frozenset()
    peer_client_cert: bool = True
    require_client_cert: bool = True
    ca: CertificateAuthority = attr.ib(init=False)
    other_ca: CertificateAuthority = attr.ib(init=False)
    client: PemPair = attr.ib(init=False)
    bundle_path: str = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        self.directory = os.path.abspath(self.directory)
        self.ca = CertificateAuthority(os.path.join(self.directory, "ca"), name="zotpy cluster CA")
        self.other_ca = CertificateAuthority(os.path.join(self.directory, "other-ca"), name="some other CA")
        # The tests' own client certificate (from the cluster CA).
        self.client = self.ca.issue("test-client", [], client=True)
        # What the test client trusts: both CAs, so it can talk to a rogue replica directly.
        self.bundle_path = os.path.join(self.directory, "trusted-by-tests.crt")
        with open(self.bundle_path, "wb") as f:
            f.write(self.ca.pair.cert_pem() + self.other_ca.pair.cert_pem())

    def replica_sections(self, index: int, address: str) -> dict[str, Any]:
        """The ``http.tls`` and ``cluster.tls`` of replica ``index``."""
        issuer = self.other_ca if index in self.rogue else self.ca
        pair = issuer.issue(f"replica{index}", [address])
        http_tls = {"cert": pair.cert_path, "key": pair.key_path}
        if self.require_client_cert:
            http_tls["cacert"] = self.ca.pair.cert_path
        cluster_tls = {"cacert": self.ca.pair.cert_path}
        if self.peer_client_cert:
            cluster_tls.update(cert=pair.cert_path, key=pair.key_path)
        return {"http_tls": http_tls, "cluster_tls": cluster_tls}


# --------------------------------------------------------------------------------------------------
# Shared storage
# --------------------------------------------------------------------------------------------------


def seaweed_storage_driver(root_directory: str | None = None) -> dict[str, Any]:
    """A zot ``storage.storageDriver`` section for the test run's SeaweedFS (started on first
    use, blocking for a few seconds), under a fresh ``rootdirectory`` of the shared bucket."""
    import uuid

    from tests.seaweed import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, shared_server

    server = shared_server()
    return {
        "name": "s3",
        "rootdirectory": root_directory or f"/cluster-{uuid.uuid4().hex[:12]}",
        "region": REGION,
        "regionendpoint": server.endpoint,
        "bucket": BUCKET,
        "secure": False,
        "accesskey": ACCESS_KEY,
        "secretkey": SECRET_KEY,
    }


# --------------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------------


class ZotpyCluster:
    """N real replicas sharing one port on distinct loopback addresses.

    :param workdir: a fresh directory; replica ``i`` lives in ``<workdir>/replica<i>``
        (its config, log ``replica<i>.log`` and, with local storage, ``data/``).
    :param size: the number of replicas (members).
    :param tls: certificates and TLS mode; ``None`` serves plain http.
    :param storage_driver: a zot ``storage.storageDriver`` section (e.g. S3)
        shared by every replica; ``None`` gives each replica its own local root.
    :param hash_key: ``cluster.hashKey`` (16 bytes).
    :param extra: more top-level config merged into every replica's config.
    """

    def __init__(
        self,
        workdir: str,
        size: int = 3,
        tls: ClusterTLS | None = None,
        storage_driver: Mapping[str, Any] | None = None,
        hash_key: bytes = HASH_KEY,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = os.path.abspath(workdir)
        self.addresses = loopback_addresses(size)
        self.port = shared_free_port(self.addresses)
        self.members = [f"{address}:{self.port}" for address in self.addresses]
        self.hash_key = hash_key
        self.ring = Ring(tuple(self.members), hash_key)
        self.tls = tls
        self.shared_storage = storage_driver is not None
        self.replicas: list[ZotpyDaemon] = []
        for index, address in enumerate(self.addresses):
            cluster_section: dict[str, Any] = {
                "members": list(self.members),
                "hashKey": hash_key.decode("latin-1"),
            }
            config: dict[str, Any] = {"cluster": cluster_section}
            if tls is not None:
                sections = tls.replica_sections(index, address)
                config["http"] = {"tls": sections["http_tls"]}
                cluster_section["tls"] = sections["cluster_tls"]
            if storage_driver is not None:
                config["storage"] = {"storageDriver": dict(storage_driver)}
            for key, value in (extra or {}).items():
                if isinstance(value, dict) and isinstance(config.get(key), dict):
                    config[key].update(value)
                else:
                    config[key] = value
            self.replicas.append(
                ZotpyDaemon(
                    os.path.join(self.workdir, f"replica{index}"),
                    config,
                    address=address,
                    port=self.port,
                    name=f"replica{index}",
                )
            )

    # -- processes ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every replica in parallel; if any fails, stop them all and raise."""
        results = await defer.DeferredList(
            [defer.ensureDeferred(r.start()) for r in self.replicas], consumeErrors=True
        )
        failures = [result for ok, result in results if not ok]
        if failures:
            await self.stop()
            failures[0].raiseException()

    async def stop(self) -> None:
        """Stop every replica (in parallel). Safe to call more than once."""
        await defer.gatherResults([defer.ensureDeferred(r.stop()) for r in self.replicas])

    async def stop_replica(self, index: int) -> None:
        await self.replicas[index].stop()

    async def start_replica(self, index: int) -> None:
        await self.replicas[index].start()

    async def restart_replica(self, index: int) -> None:
        await self.replicas[index].restart()

    def rewrite_config(self, index: int, change: Callable[[dict[str, Any]], None]) -> None:
        """Let ``change`` edit replica ``index``'s config dict, and write it again (takes
        effect when the replica next starts), e.g. to misconfigure one replica."""
        replica = self.replicas[index]
        change(replica.config)
        with open(replica.config_path, "w") as f:
            json.dump(replica.config, f, indent=2)

    def describe(self) -> str:
        """Every replica's command line and log tail, for failure messages."""
        return "\n".join(r.describe() for r in self.replicas)

    # -- addressing --------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def url(self, index: int) -> str:
        """``http(s)://127.0.0.N:PORT`` of replica ``index``."""
        return f"{self.scheme}://{self.members[index]}"

    def owner(self, repository: str) -> int:
        """The index of the replica that owns ``repository``."""
        return self.ring.owner_index(repository)

    def non_owner(self, repository: str, offset: int = 1) -> int:
        """A replica that does not own ``repository`` (``offset`` 1 or 2 picks which)."""
        assert offset % len(self.members), "offset 0 would be the owner"
        return (self.owner(repository) + offset) % len(self.members)

    def repositories_owned_by_each(self, names: Iterable[str]) -> dict[int, list[str]]:
        owned: dict[int, list[str]] = {i: [] for i in range(len(self.members))}
        for name in names:
            owned[self.owner(name)].append(name)
        return owned

    def spread_names(self, prefix: str, per_member: int) -> list[str]:
        """Repository names ``prefix-<n>``, ``per_member`` owned by each replica."""
        owned: dict[int, list[str]] = {i: [] for i in range(len(self.members))}
        n = 0
        while any(len(v) < per_member for v in owned.values()):
            name = f"{prefix}-{n}"
            n += 1
            bucket = owned[self.owner(name)]
            if len(bucket) < per_member:
                bucket.append(name)
        return [name for i in sorted(owned) for name in owned[i]]

    def repo_dir(self, index: int, repository: str) -> str:
        """Where replica ``index`` keeps ``repository`` on disk (local storage)."""
        return self.replicas[index].repo_dir(repository)

    def access_log(self, index: int) -> list["AccessEntry"]:
        """The requests replica ``index`` has logged (all its runs)."""
        return access_log(self.replicas[index].log_text())


# --------------------------------------------------------------------------------------------------
# Access logs
# --------------------------------------------------------------------------------------------------


@attr.s(auto_attribs=True, frozen=True)
class AccessEntry:
    method: str
    path: str  # with the query
    status: int
    user_agent: str


def log_records(text: str, strict: bool = True) -> list[dict[str, Any]]:
    """Every line of a replica's log as the JSON object it must be: ValueError names a line that is
    not one (unless not ``strict``: such lines are then skipped)."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif strict:
            raise ValueError(f"log line {number} is not a JSON object: {line[:500]!r}")
    return records


def access_log(text: str) -> list[AccessEntry]:
    """The access-log lines (``"message": "HTTP API"``) in a replica's log, oldest first."""
    return [
        AccessEntry(r["method"], r["path"], int(r["statusCode"]), r.get("userAgent", ""))
        for r in log_records(text, strict=False)
        if r.get("message") == "HTTP API" and "statusCode" in r
    ]


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


@attr.s(auto_attribs=True, frozen=True)
class SmallImage:
    """An OCI image manifest and its blobs, all in memory."""

    manifest: bytes
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every blob the manifest references, by digest (config first)."""
        blobs = {sha256_digest(self.config): self.config}
        for layer in self.layers:
            blobs[sha256_digest(layer)] = layer
        return blobs


def small_image(name: str, layer_sizes: Sequence[int] = (1024, 70_000)) -> SmallImage:
    """A deterministic image unique to ``name``: a config blob and pseudo-random layers."""
    layers = tuple(pseudo_random(f"{name}/layer{i}", size) for i, size in enumerate(layer_sizes))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.zotpy.test": name}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [
                {"mediaType": MEDIA_TYPE_LAYER, "digest": sha256_digest(layer), "size": len(layer)}
                for layer in layers
            ],
            "annotations": {"org.opencontainers.image.title": name},
        },
        sort_keys=True,
    ).encode()
    return SmallImage(manifest, config, layers)


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


class RegistryError(AssertionError):
    """The registry answered something the OCI flow did not expect."""


class _NoCookies(CookieJar):
    """Accepts no cookie: every request goes out cookie-less (HAProxy's sticky cookie is ignored)."""

    def __init__(self) -> None:
        super().__init__(DefaultCookiePolicy(allowed_domains=[]))


@implementer(IPolicyForHTTPS)
class _TestTLSPolicy:
    def __init__(self, trust_pem: bytes, client: PemPair | None) -> None:
        end = b"-----END CERTIFICATE-----"
        self.trust = ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(block + end) for block in trust_pem.split(end) if b"BEGIN" in block]
        )
        self.client = (
            ssl.PrivateCertificate.loadPEM(client.cert_pem() + b"\n" + client.key_pem()) if client else None
        )

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self.trust, clientCertificate=self.client
        )


class RegistryClient:
    """An OCI client for the tests: persistent connections, no cookies, optional TLS.

    :param tls: trust the cluster's CAs and present the tests' client certificate.
    :param client_certificate: present it (``False`` to test a refusal).
    :param persistent: keep connections open between requests (close with :meth:`close`).
    """

    def __init__(
        self,
        tls: ClusterTLS | None = None,
        client_certificate: bool = True,
        persistent: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.pool.maxPersistentPerHost = 16
        policy = None
        if tls is not None:
            with open(tls.bundle_path, "rb") as f:
                policy = _TestTLSPolicy(f.read(), tls.client if client_certificate else None)
        agent = Agent(reactor, contextFactory=policy, pool=self.pool) if policy else Agent(reactor, pool=self.pool)
        self.http = HTTPClient(agent, cookiejar=_NoCookies())
        self.timeout = timeout

    async def close(self) -> None:
        await self.pool.closeCachedConnections()

    # -- raw requests ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> HTTPResult:
        """One request, the whole answer read."""
        response = await self.http.request(
            method,
            url,
            headers={k: [v] for k, v in (headers or {}).items()},
            data=data,
            timeout=self.timeout,
        )
        return await read_result(response)

    async def expect(
        self,
        code: int,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> HTTPResult:
        """:meth:`request`, raising :class:`RegistryError` unless the status is ``code``."""
        result = await self.request(method, url, headers, data)
        if result.code != code:
            raise RegistryError(
                f"{method} {url}: expected {code}, got {result.code} {result.headers} {result.body[:2000]!r}"
            )
        return result

    # -- the OCI flows -----------------------------------------------------------------------

    async def start_upload(self, base: str, repository: str) -> str:
        """POST a new upload session; its absolute URL."""
        result = await self.expect(202, "POST", f"{base}/v2/{repository}/blobs/uploads/")
        location = result.header("Location")
        if not location:
            raise RegistryError(f"POST upload to {base} gave no Location: {result.headers}")
        return urljoin(base + "/", location)

    async def push_blob(self, base: str, repository: str, data: bytes) -> str:
        """POST a session then PUT the whole blob (two requests); the digest."""
        digest = sha256_digest(data)
        location = await self.start_upload(base, repository)
        result = await self.expect(
            201,
            "PUT",
            with_query(location, digest=digest),
            headers={"Content-Type": "application/octet-stream"},
            data=data,
        )
        _check_digest(result, digest, f"PUT blob {digest}")
        return digest

    async def push_blob_chunked(self, bases: Sequence[str], repository: str, chunks: Sequence[bytes]) -> str:
        """A chunked upload: POST to ``bases[0]``, PATCH chunk ``i`` to ``bases[i + 1]``,
        the final PUT to ``bases[len(chunks) + 1]`` (indexes wrap around); the digest.

        Every step uses the absolute path of the previous answer's ``Location``
        on the next base, as a client behind a load balancer would.
        """
        data = b"".join(chunks)
        digest = sha256_digest(data)

        def on(step: int, location: str) -> str:
            base = bases[step % len(bases)]
            return urljoin(base + "/", location_path(location))

        location = await self.start_upload(bases[0], repository)
        offset = 0
        for i, chunk in enumerate(chunks):
            result = await self.expect(
                202,
                "PATCH",
                on(i + 1, location),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                data=chunk,
            )
            offset += len(chunk)
            if result.header("Range") != f"0-{offset - 1}":
                raise RegistryError(f"PATCH chunk {i}: Range {result.header('Range')}, expected 0-{offset - 1}")
            location = result.header("Location") or location
        result = await self.expect(201, "PUT", with_query(on(len(chunks) + 1, location), digest=digest), data=b"")
        _check_digest(result, digest, f"PUT chunked blob {digest}")
        return digest

    async def push_manifest(self, base: str, repository: str, reference: str, manifest: bytes) -> None:
        result = await self.expect(
            201,
            "PUT",
            f"{base}/v2/{repository}/manifests/{reference}",
            headers={"Content-Type": MEDIA_TYPE_MANIFEST},
            data=manifest,
        )
        _check_digest(result, sha256_digest(manifest), f"PUT manifest {repository}:{reference}")

    async def push_image(self, base: str, repository: str, image: SmallImage, tag: str) -> None:
        """Every blob (POST + PUT each), then the manifest under ``tag``."""
        for data in image.blobs.values():
            await self.push_blob(base, repository, data)
        await self.push_manifest(base, repository, tag, image.manifest)

    async def pull_blob(self, base: str, repository: str, digest: str) -> bytes:
        """GET a blob and check its bytes hash to ``digest``."""
        result = await self.expect(200, "GET", f"{base}/v2/{repository}/blobs/{digest}")
        if sha256_digest(result.body) != digest:
            raise RegistryError(
                f"GET {base}/v2/{repository}/blobs/{digest}: {len(result.body)} bytes hashing to "
                f"{sha256_digest(result.body)}"
            )
        return result.body

    async def pull_image(self, base: str, repository: str, reference: str, expected: SmallImage) -> None:
        """GET the manifest (digest-checked) and every blob it names (digest-checked)."""
        result = await self.expect(
            200,
            "GET",
            f"{base}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MEDIA_TYPE_MANIFEST},
        )
        if result.body != expected.manifest:
            raise RegistryError(f"GET manifest {repository}:{reference} from {base}: other bytes {result.body[:500]!r}")
        _check_digest(result, expected.digest, f"GET manifest {repository}:{reference} from {base}")
        manifest = json.loads(result.body)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            await self.pull_blob(base, repository, descriptor["digest"])

    async def tags(self, base: str, repository: str) -> list[str]:
        result = await self.expect(200, "GET", f"{base}/v2/{repository}/tags/list")
        return list(result.json()["tags"] or [])

    async def catalog(self, base: str) -> list[str]:
        result = await self.expect(200, "GET", f"{base}/v2/_catalog")
        return list(result.json()["repositories"] or [])


def _check_digest(result: HTTPResult, digest: str, what: str) -> None:
    if result.header("Docker-Content-Digest") != digest:
        raise RegistryError(f"{what}: Docker-Content-Digest {result.header('Docker-Content-Digest')}, expected {digest}")


@attr.s(auto_attribs=True, frozen=True)
class RawResponse:
    """A reply exactly as it came off the wire: every header line, in order."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_map(self, ignore: Iterable[str] = ("date",)) -> dict[str, list[str]]:
        skip = {name.lower() for name in ignore}
        out: dict[str, list[str]] = {}
        for name, value in self.headers:
            if name.lower() not in skip:
                out.setdefault(name.lower(), []).append(value)
        return out


async def raw_request(
    method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> RawResponse:
    """One plain-HTTP request with the standard library's ``http.client`` (in a thread), which,
    unlike Twisted's client, shows the reply's ``Content-Length``/``Transfer-Encoding`` and adds
    no header of its own beyond ``Host`` and ``Accept-Encoding: identity``."""
    import http.client
    from urllib.parse import urlsplit

    from twisted.internet.threads import deferToThread

    parts = urlsplit(url)

    def run() -> RawResponse:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            data = response.read()
            return RawResponse(response.status, tuple(response.getheaders()), data)
        finally:
            connection.close()

    return await deferToThread(run)


def location_path(location: str) -> str:
    """The path and query of a ``Location`` (relative or absolute)."""
    if location.startswith("/"):
        return location
    match = re.match(r"[a-z]+://[^/]+(/.*)", location)
    if not match:
        raise RegistryError(f"unexpected Location {location!r}")
    return match.group(1)


def with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


def oci_error_codes(result: HTTPResult) -> list[str]:
    """The ``code`` of every error in an OCI error body (empty if it is not one)."""
    try:
        return [e.get("code") for e in result.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []
