"""``twistd zotpy``: command-line options and the service tree.

``makeService`` turns a zot-shaped config into a ``MultiService``: the storage
thread pool and the HTTP(S) listener. Config problems are reported by
``Options.postOptions`` as a usage error, so twistd exits non-zero with the
message before anything listens. Under twistd the service also logs JSON lines
and reloads the config on SIGHUP (:func:`zotpy.observability.service.for_twistd`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from OpenSSL import crypto
from twisted.application.service import IService, MultiService, Service
from twisted.internet import reactor as global_reactor
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource
from twisted.web.server import Site
from treq.client import HTTPClient

from zotpy.api.site import ConnectionTrackingFactory, registry_resource, registry_site
from zotpy.cluster.catalog import FanOutCatalog
from zotpy.cluster.identity import Identity, IdentityError, identify
from zotpy.cluster.peers import peer_agent
from zotpy.cluster.proxy import ClusterResource, Forwarder
from zotpy.cluster.ring import Ring
from zotpy.config import Config, ConfigError, HTTPConfig, TLSConfig, embedded_default, load_config
from zotpy.observability.logs import output_problem
from zotpy.observability.service import Operations, for_twistd
from zotpy.storage.factory import describe_storage, make_driver
from zotpy.storage.imagestore import ImageStore
from zotpy.sync.service import SyncService, ownership

log = Logger()


class Options(usage.Options):
    synopsis = "[-c config.json]"
    optParameters = [
        ["config", "c", None, "zot-format JSON config file (default: embedded default, local storage in ./zotpy-data)"],
    ]

    def postOptions(self) -> None:
        try:
            if self["config"] is None:
                self.config = embedded_default(os.getcwd())
            else:
                self.config = load_config(self["config"])
        except ConfigError as error:
            raise usage.UsageError(f"invalid configuration:\n{error}") from None
        try:
            self.identity = cluster_identity(self.config)
        except IdentityError as error:
            raise usage.UsageError(str(error)) from None
        problem = output_problem(self.config.log.output)
        if problem is not None:
            raise usage.UsageError(f"invalid configuration:\nlog.output: {problem}")


def cluster_identity(config: Config) -> Identity | None:
    """Which member this process is, when clustering is on (2+ members); IdentityError if none.

    Decided before anything listens: a process that is none of the members must not
    start, since it would route every request wrongly.
    """
    cluster = config.cluster
    if cluster is None or len(cluster.members) < 2:
        return None
    return identify(cluster.members, config.http.address, config.http.port)


class ThreadPoolService(Service):
    """Starts and stops a thread pool with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class ListenerService(Service):
    """Listens when started (raising at once if it cannot) and logs where, and what it serves."""

    def __init__(self, endpoint: IStreamServerEndpoint, site: Site, scheme: str, serving: str) -> None:
        self.endpoint = endpoint
        self.factory = ConnectionTrackingFactory(site)
        self.scheme = scheme
        self.serving = serving
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        failures: list[Any] = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        log.info(
            "zotpy listening on {scheme}://{host}:{port}, {serving}",
            scheme=self.scheme, host=address.host, port=address.port, serving=self.serving,
        )

    async def _stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
        await self.factory.close_connections()

    def stopService(self) -> Any:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


def _pem_certificates(data: bytes) -> list[ssl.Certificate]:
    end = b"-----END CERTIFICATE-----"
    return [ssl.Certificate.loadPEM(block + end) for block in data.split(end) if b"BEGIN CERTIFICATE" in block]


def _tls_options(tls: TLSConfig) -> ssl.CertificateOptions:
    """Server certificate (with any chain in the same file); ``cacert`` requires client certificates."""
    with open(tls.cert, "rb") as stream:
        chain = _pem_certificates(stream.read())
    with open(tls.key, "rb") as stream:
        key = ssl.KeyPair.load(stream.read(), crypto.FILETYPE_PEM)
    verification: dict[str, Any] = {}
    if tls.cacert is not None:
        with open(tls.cacert, "rb") as stream:
            authorities = [certificate.original for certificate in _pem_certificates(stream.read())]
        verification = {"verify": True, "caCerts": authorities, "requireCertificate": True}
    return ssl.CertificateOptions(
        privateKey=key.original,
        certificate=chain[0].original,
        extraCertChain=[certificate.original for certificate in chain[1:]] or None,
        **verification,
    )


def _endpoint(http: HTTPConfig, reactor: Any) -> IStreamServerEndpoint:
    if http.tls is not None:
        return SSL4ServerEndpoint(reactor, http.port, _tls_options(http.tls), interface=http.address)
    if ":" in http.address:
        return TCP6ServerEndpoint(reactor, http.port, interface=http.address)
    return TCP4ServerEndpoint(reactor, http.port, interface=http.address)


def build_service(
    config: Config,
    reactor: Any = global_reactor,
    identity: Identity | None = None,
    operations: Operations | None = None,
) -> MultiService:
    """The whole registry for ``config``: thread pool, store, routes, listener; probes, metrics and
    the access log from ``operations`` (made here unless given)."""
    operations = operations or Operations(config, reactor)
    for warning in config.warnings:
        log.warn("config: {warning}", warning=warning)
    pool = ThreadPool(minthreads=2, maxthreads=8, name="zotpy-storage")
    store = ImageStore(operations.meter(make_driver(config, reactor, pool)))
    operations.watch_storage(store.check)
    sync = None
    if config.sync is not None:
        sync = SyncService(config.sync, store, reactor, counters=operations.metrics.sync)
        operations.reloader.register(("extensions.sync",), lambda new: sync.reconfigure(new.sync))
    resource = registry_resource(store, sync)
    service = MultiService()
    identity = identity or cluster_identity(config)
    if identity is not None:
        operations.cluster_member(identity.index, identity.member)
        resource = cluster_resource(config, identity, resource, reactor, service, operations, store)
        if sync is not None and config.cluster is not None:
            # Periodic sync mirrors only the repositories this member owns (by local name).
            sync.set_ownership(
                ownership(config.cluster.members, config.cluster.hash_key, identity.index), identity.member
            )
    site = registry_site(operations.mount(resource, pool), access_log=operations.access_log)

    ThreadPoolService(pool).setServiceParent(service)
    close_driver = getattr(store.driver, "close", None)  # the S3 driver's connection pool
    if close_driver is not None:
        _OnStop(close_driver).setServiceParent(service)  # stops after the listener, before the pool
    scheme = "https" if config.http.tls else "http"
    ListenerService(_endpoint(config.http, reactor), site, scheme, describe_storage(config)).setServiceParent(service)
    operations.setServiceParent(service)  # after the listener: ready only once listening
    if sync is not None:
        sync.setServiceParent(service)
    return service


def cluster_resource(
    config: Config,
    identity: Identity,
    local: IResource,
    reactor: Any,
    service: MultiService,
    operations: Operations,
    store: ImageStore,
) -> IResource:
    """Wrap ``local`` so that other members' repositories are forwarded to them (and, when each
    member has its own storage, so that the catalog gathers every member's repositories)."""
    cluster = config.cluster
    assert cluster is not None
    log.info(
        "cluster member {index} of {count}: {member} (matched by {rule})",
        index=identity.index, count=len(cluster.members), member=identity.member, rule=identity.rule,
    )
    agent, pool = peer_agent(reactor, cluster.tls)
    service.addService(_OnStop(pool.closeCachedConnections))
    scheme = "https" if config.http.tls is not None else "http"
    forwarder = operations.meter_forwarder(Forwarder(agent, reactor, scheme))
    if config.storage.s3 is None:  # per-member storage; with a shared bucket every member sees all
        local = FanOutCatalog(
            local, cluster.members, identity.index, store.repositories, HTTPClient(agent), scheme,
            peer_error=operations.metrics.cluster.peer_error,
        )
    return ClusterResource(local, Ring(cluster.members, cluster.hash_key), identity, forwarder)


class _OnStop(Service):
    """Runs ``action`` when the application stops: closing connection pools (peers, S3)."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def stopService(self) -> Any:
        super().stopService()
        return self.action()


def makeService(options: Options) -> IService:
    operations = Operations(options.config)
    service = build_service(options.config, identity=options.identity, operations=operations)
    return for_twistd(service, operations, options.config, getattr(options, "parent", None))
