"""``twistd zotpy``: command-line options and the service tree.

``makeService`` turns a zot-shaped config into a ``MultiService``: the storage
thread pool and the HTTP(S) listener. Config problems are reported by
``Options.postOptions`` as a usage error, so twistd exits non-zero with the
message before anything listens. Under twistd the service also logs JSON lines
and reloads the config on SIGHUP (:func:`zotpy.observability.service.for_twistd`).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, Awaitable, Callable

import attrs
from OpenSSL import SSL, crypto
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

from zotpy import __version__
from zotpy.api.site import ConnectionTrackingFactory, registry_resource, registry_site
from zotpy.auth.factory import protected
from zotpy.auth.resource import TagLookup
from zotpy.cluster.agreement import AgreementChecker
from zotpy.cluster.catalog import FanOutCatalog
from zotpy.cluster.fanout import FanOut
from zotpy.cluster.identity import Identity, IdentityError, identify, position
from zotpy.cluster.localreads import LocalReads
from zotpy.cluster.membership import Membership, View
from zotpy.cluster.peers import peer_agent
from zotpy.cluster.proxy import ClusterResource, Forwarder
from zotpy.cluster.pulls import PullReportReceiver, PullReports, PullReportService
from zotpy.cluster.resize import MembersReload
from zotpy.config import Config, ConfigError, HTTPConfig, TLSConfig, embedded_default, load_config
from zotpy.lifecycle.dedupe import BlobLocator
from zotpy.lifecycle.gc import Collector
from zotpy.lifecycle.moved import MovedDropper, owner_client
from zotpy.lifecycle.service import GCService
from zotpy.lifecycle.warmup import LocatorWarmup
from zotpy.meta.details import DetailsReader
from zotpy.meta.keeper import DEFAULT_FLUSH_INTERVAL, MetaFlushService, MetaKeeper
from zotpy.oci.errors import RegistryError
from zotpy.observability.logs import output_problem
from zotpy.observability.service import Operations, for_twistd
from zotpy.search.cluster import ClusterSearch
from zotpy.search.engine import SEARCH_METADATA_AGE, SearchEngine
from zotpy.search.listing import RecentListing
from zotpy.search.resource import SearchResource
from zotpy.ui.resource import UIResource
from zotpy.storage.breaker import BreakerDriver
from zotpy.storage.driver import IStorageDriver
from zotpy.storage.heartbeat import HeartbeatService
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver
from zotpy.storage.rootlock import RootBusy, RootLock
from zotpy.storage.locks import locks_for
from zotpy.storage.s3.driver import S3Driver
from zotpy.sync.moves import Mover, Rebalancer
from zotpy.sync.service import SyncService, ownership
from zotpy.transport.peercerts import member_host
from zotpy.transport.tls import pem_certificates, read_certificates
from zotpy.workers.listening import AdoptedEndpoint, bind
from zotpy.workers.supervisor import SOCKET_FD, ParentWatch, WorkerSupervisor, twistd_argv

log = Logger()


#: ``--workers auto``: one worker per core, at most this many.
MOST_WORKERS = 8


class Options(usage.Options):
    synopsis = "[-c config.json] [--workers N|auto]"
    optParameters = [
        ["config", "c", None, "zot-format JSON config file (default: embedded default, local storage in ./zotpy-data)"],
        ["workers", "w", "auto", f"worker processes sharing the listening socket: a number, or auto (one per "
                                 f"core, at most {MOST_WORKERS}; the default)"],
        # Given by worker 0 to the workers it starts (zotpy.workers.supervisor.twistd_argv), not by operators.
        ["worker-index", None, None, "(internal) this worker's place among the replica's workers"],
        ["worker-locks", None, None, "(internal) the directory of the workers' shared locks"],
    ]

    def postOptions(self) -> None:
        try:
            checked = preflight(self["config"], os.getcwd())
        except ConfigError as error:
            raise usage.UsageError(f"invalid configuration:\n{error}") from None
        self.config, self.identity = checked.config, checked.identity
        if self.config.storage.s3 is None:
            try:  # said here, plainly, rather than as a traceback when the service starts
                RootLock(driver_root(self.config), exclusive=False).release()
            except RootBusy as refusal:
                raise usage.UsageError(str(refusal)) from None
        self.workers = worker_count(self["workers"], os.cpu_count())
        if (self["worker-index"] is None) != (self["worker-locks"] is None):
            raise usage.UsageError("--worker-index and --worker-locks go together (worker 0 gives both)")


def worker_count(value: str, cores: int | None) -> int:
    """``--workers``: a positive number, or ``auto`` for one per core up to :data:`MOST_WORKERS`."""
    if value == "auto":
        return max(1, min(cores or 1, MOST_WORKERS))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise usage.UsageError(f"--workers: {value!r} is neither a positive number nor auto")
    return count


@attrs.frozen
class WorkerPlan:
    """This process's part when the replica runs several workers (``--workers`` above 1)."""

    count: int
    #: 0 for the process twistd started (it binds the socket and starts the others).
    index: int
    #: The directory of the locks every worker takes for a repository's writes.
    locks: str
    #: The listening socket every worker adopts.
    listener: socket.socket

    @property
    def housekeeper(self) -> bool:
        """Whether this worker runs what runs once per replica (GC, periodic sync)."""
        return self.index == 0


@attrs.frozen
class Checked:
    """A configuration that passed :func:`preflight`, and which cluster member it makes this process."""

    config: Config
    identity: Identity | None


def preflight(path: str | None, cwd: str) -> Checked:
    """Every check made before anything listens, for ``twistd zotpy`` and ``zotpy verify`` alike (so
    verify accepts exactly what the daemon accepts): the file's keys, the files it names, the TLS
    material, this process's cluster identity, the log output. ``path`` None is the embedded default
    under ``cwd``. Raises :class:`ConfigError` with every problem at its key path."""
    config = embedded_default(cwd) if path is None else load_config(path)
    problems = tls_problems(config)
    problem = output_problem(config.log.output)
    if problem is not None:
        problems.append(("log.output", problem))
    problem = output_problem(config.log.audit)
    if problem is not None:
        problems.append(("log.audit", problem))
    identity = None
    try:
        identity = cluster_identity(config)
    except IdentityError as error:
        problems.append(("cluster.members", str(error)))
    if problems:
        raise ConfigError(problems)
    return Checked(config, identity)


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
    """Starts and stops a thread pool with the application. ``drain``: work that needs the pool
    to finish at stop (the metadata keeper's last flush), awaited before the pool stops, since
    a MultiService stops its children all at once."""

    def __init__(self, pool: ThreadPool, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        self.pool = pool
        self.drain = drain

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.drain is not None:
            try:
                await self.drain()
            except Exception:
                log.failure("work left for the storage pool failed at stop")
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
            "zotpy listening on {scheme}://{host}:{port}, {serving} (zotpy {version})",
            scheme=self.scheme, host=address.host, port=address.port, serving=self.serving, version=__version__,
        )

    async def _stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
        await self.factory.close_connections()

    def stopService(self) -> Any:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


def _tls_options(tls: TLSConfig) -> ssl.CertificateOptions:
    """Server certificate (with any chain in the same file); ``cacert`` requires client certificates."""
    with open(tls.cert, "rb") as stream:
        chain = pem_certificates(stream.read())
    with open(tls.key, "rb") as stream:
        key = ssl.KeyPair.load(stream.read(), crypto.FILETYPE_PEM)
    verification: dict[str, Any] = {}
    if tls.cacert is not None:
        authorities = read_certificates(tls.cacert)
        verification = {"verify": True, "caCerts": authorities, "requireCertificate": True}
    return ssl.CertificateOptions(
        privateKey=key.original,
        certificate=chain[0].original,
        extraCertChain=[certificate.original for certificate in chain[1:]] or None,
        **verification,
    )


# Which storage driver a configuration asks for: the one place that knows every driver.
# ``storage.storageDriver`` with name ``"s3"`` selects the S3 driver (``storage.rootDirectory`` is
# then unused: zot keeps a local cache there, zotpy needs none); otherwise repositories live on
# local disk under ``storage.rootDirectory``. Kept in the composition root so that no package
# below ``config`` has to import it.


def make_driver(config: Config, reactor: Any, pool: ThreadPool) -> IStorageDriver:
    """The driver for ``config``, its bulk work in ``pool``. Creating it does not touch S3 (the
    endpoint and credentials are resolved in the pool on first use), so startup stays fast."""
    if config.storage.s3 is not None:
        return S3Driver(config.storage.s3, reactor, pool)
    return LocalDriver(driver_root(config), reactor, pool)


def driver_root(config: Config) -> str:
    """The local storage root, made if missing (the local driver and the root lock work in it)."""
    root = os.path.abspath(config.storage.root_directory)
    os.makedirs(root, exist_ok=True)
    return root


class RootLockService(Service):
    """Holds the root's shared lock while the daemon runs (:mod:`zotpy.storage.rootlock`): an
    offline ``zotpy gc`` then refuses to collect under it. Started first; refusing to start, with
    the reason, while an offline pass holds the root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.lock: RootLock | None = None

    def startService(self) -> None:
        self.lock = RootLock(self.root, exclusive=False)
        super().startService()

    def release(self) -> None:
        """Called once the storage is closed at stop (the thread pool's drain), not at this
        service's own stop, which comes while the last writes are still running."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def describe_storage(config: Config) -> str:
    """Where repositories are stored, for the startup log line."""
    s3 = config.storage.s3
    if s3 is None:
        return f"storage at {os.path.abspath(config.storage.root_directory)}"
    where = s3.endpoint or f"AWS region {s3.region}"
    root = s3.root_directory.strip("/")
    return f"storage in S3 bucket {s3.bucket!r}" + (f" under {root!r}" if root else "") + f" at {where}"


def tls_problems(config: Config) -> list[tuple[str, str]]:
    """TLS material that would stop the listener (``http.tls``) or the peer client (``cluster.tls``)
    once the daemon starts, by key path: a file holding no PEM certificate, a key that does not load,
    a key that does not match its certificate. (The config loader already checked the files exist.)"""
    problems: list[tuple[str, str]] = []
    if config.http.tls is not None:
        tls = config.http.tls
        problems += _material_problems("http.tls", tls.cert, tls.key, tls.cacert)
    if config.cluster is not None and config.cluster.tls is not None:
        tls = config.cluster.tls
        problems += _material_problems("cluster.tls", tls.cert, tls.key, tls.cacert)
    return problems


def _material_problems(section: str, cert: str | None, key: str | None, cacert: str | None) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    certificates: dict[str, list[ssl.Certificate]] = {}
    for name, path in (("cert", cert), ("cacert", cacert)):
        if path is None:
            continue
        try:
            with open(path, "rb") as stream:
                certificates[name] = pem_certificates(stream.read())
        except OSError as error:
            problems.append((f"{section}.{name}", f"cannot read {path!r}: {error.strerror}"))
            continue
        except (crypto.Error, ValueError) as error:
            problem = f"{path!r} holds a PEM block that is not a certificate: {_reason(error)}"
            problems.append((f"{section}.{name}", problem))
            continue
        if not certificates[name]:
            problems.append((f"{section}.{name}", f"no PEM certificate in {path!r}"))
    private_key = None
    if key is not None:
        try:
            with open(key, "rb") as stream:
                private_key = ssl.KeyPair.load(stream.read(), crypto.FILETYPE_PEM).original
        except OSError as error:
            problems.append((f"{section}.key", f"cannot read {key!r}: {error.strerror}"))
        except crypto.Error as error:
            problems.append((f"{section}.key", f"no PEM private key in {key!r}: {_reason(error)}"))
    if private_key is not None and certificates.get("cert"):
        context = SSL.Context(SSL.TLS_METHOD)
        try:
            context.use_certificate(certificates["cert"][0].original)
            context.use_privatekey(private_key)
            context.check_privatekey()
        except SSL.Error as error:
            problems.append((f"{section}.key", f"does not match the certificate in {section}.cert: {_reason(error)}"))
    return problems


def _reason(error: Exception) -> str:
    """OpenSSL's reasons without the library and function names (``crypto.Error`` holds a list of triples)."""
    details = error.args[0] if error.args else None
    if isinstance(details, list) and all(isinstance(item, tuple) and len(item) == 3 for item in details):
        return "; ".join(str(reason) for _, _, reason in details) or "unknown OpenSSL error"
    return str(error)


def _endpoint(http: HTTPConfig, reactor: Any, workers: WorkerPlan | None = None) -> IStreamServerEndpoint:
    if workers is not None:
        return AdoptedEndpoint(reactor, workers.listener, _tls_options(http.tls) if http.tls else None)
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
    workers: WorkerPlan | None = None,
) -> MultiService:
    """The whole registry for ``config``: thread pool, store, routes, listener; probes, metrics and
    the access log from ``operations`` (made here unless given). With ``workers``, this process is
    one of the replica's worker processes (:mod:`zotpy.workers`)."""
    operations = operations or Operations(config, reactor)
    locks = workers.locks if workers is not None else None
    if workers is not None:
        operations.across_workers(workers.index, workers.count, workers.locks)
    for warning in config.warnings:
        log.warn("config: {warning}", warning=warning)
    pool = ThreadPool(minthreads=2, maxthreads=8, name="zotpy-storage")
    driver = BreakerDriver(operations.meter(make_driver(config, reactor, pool)), reactor)
    identity = identity or cluster_identity(config)
    membership = None
    peers: HTTPClient | None = None  # the client members reach each other with
    if identity is not None and config.cluster is not None:
        membership = Membership(View(config.cluster.members, config.cluster.hash_key), identity)
    owns: Callable[[str], bool] = membership.owns if membership is not None else (lambda name: True)
    keeper = MetaKeeper(driver, reactor, owns, locks=locks_for(locks, "meta", reactor))
    locator = BlobLocator(owns, link_duplicates=config.storage.s3 is None) if config.storage.dedupe else None
    store = ImageStore(driver, events=keeper, blobs=locator, locks=lambda namespace: locks_for(locks, namespace, reactor))
    operations.watch_storage(store.check)
    sync = None
    if config.sync is not None:
        periodic = workers is None or workers.housekeeper
        sync = SyncService(config.sync, store, reactor, counters=operations.metrics.sync, periodic=periodic)
        operations.reloader.register(("extensions.sync",), lambda new: sync.reconfigure(new.sync))
    resource = registry_resource(store, sync, config.storage.redirect_blob_url)
    service = MultiService()
    search = None
    if config.search is not None:
        listing = RecentListing(store.repositories, keeper.seen, reactor, SEARCH_METADATA_AGE)
        search = SearchEngine(
            listing.repositories, lambda repo: keeper.recent(repo, SEARCH_METADATA_AGE), DetailsReader(driver), owns
        )
    if membership is not None:
        operations.cluster_member(membership.me, membership.identity.member)
        membership.listeners.append(lambda changed: operations.cluster_member(changed.me, changed.identity.member))
        resource, peers = cluster_resource(
            config, membership, resource, reactor, service, operations, store, sync, search, keeper,
            housekeeper=workers is None or workers.housekeeper,
        )
    elif search is not None:
        resource = SearchResource(resource, search)
    if config.search is not None and config.search.ui:
        resource = UIResource(resource)  # the page and its assets; it asks the search API like any client
    if membership is not None and sync is not None:
        # Periodic sync mirrors only the repositories this member owns (by local name).
        sync.set_ownership(owns, membership.identity.member)
    guarded = protected(
        config, operations.mount(resource, pool), reactor, pool,
        tag_exists=_tag_lookup(store, membership), metrics_path=operations.metrics_path,
        on_stop=lambda action: _OnStop(action).setServiceParent(service), reloader=operations.reloader,
        membership=membership,
    )
    if membership is not None and config.cluster is not None and config.cluster.local_reads:
        # Pulls other members answered, reported in batches: in front of all, members only.
        receiver = PullReportReceiver(guarded, config.cluster.members, keeper.count_pulls)
        membership.listeners.append(lambda changed: _accept_reports(receiver, changed))
        guarded = receiver
    site = registry_site(
        guarded, access_log=operations.access_log, read_header_timeout=config.http.read_header_timeout
    )

    root_lock = RootLockService(driver_root(config)) if config.storage.s3 is None else None
    heartbeat = None
    if config.storage.s3 is not None and (workers is None or workers.housekeeper):
        # A bucket cannot be locked: an offline gc looks for this (one per replica, not per worker).
        member = identity.member if identity is not None else f"{socket.gethostname()}:{config.http.port}"
        heartbeat = HeartbeatService(
            driver, member.replace("/", "_"), f"{member} (pid {os.getpid()})", reactor
        )

    async def drain() -> None:
        """The last metadata flush, then the storage closes: closing it first (the children of a
        MultiService stop all at once) left the flush a new S3 connection nobody closed. The root
        lock goes last, once nothing more is written."""
        try:
            await keeper.flush()
            if heartbeat is not None:
                await heartbeat.end()
            driver.stop()  # the breaker's checks
            await store.driver.close()
        finally:
            if root_lock is not None:
                root_lock.release()

    if root_lock is not None:  # first: nothing serves a root an offline gc is collecting
        root_lock.setServiceParent(service)
    if heartbeat is not None:
        heartbeat.setServiceParent(service)
    ThreadPoolService(pool, drain=drain).setServiceParent(service)
    scheme = "https" if config.http.tls else "http"
    endpoint = _endpoint(config.http, reactor, workers)
    ListenerService(endpoint, site, scheme, describe_storage(config)).setServiceParent(service)
    operations.setServiceParent(service)  # after the listener: ready only once listening
    if sync is not None:
        sync.setServiceParent(service)
    MetaFlushService(keeper, DEFAULT_FLUSH_INTERVAL, reactor).setServiceParent(service)  # the last flush: drain
    if locator is not None:
        LocatorWarmup(locator, store, reactor).setServiceParent(service)
    if config.storage.gc and (workers is None or workers.housekeeper):
        collector = Collector(store, config.storage.lifecycle, reactor, metadata=keeper)
        dropper = None
        if membership is not None and peers is not None and config.cluster is not None and config.cluster.drop_moved:
            dropper = MovedDropper(
                membership, store, reactor, config.storage.lifecycle.gc_delay, owner_client(peers, reactor, scheme)
            )
        GCService(
            collector, store.repositories, owns, reactor, operations.metrics.gc,
            drop_moved=None if dropper is None else dropper.pass_over,
        ).setServiceParent(service)
    return service


def _tag_lookup(store: ImageStore, membership: Membership | None) -> TagLookup:
    """Whether a tag exists, for access control's create-or-update decision; None (cannot tell)
    for a repository another member owns: the owner decides when the request reaches it."""

    async def exists(repository: str, tag: str) -> bool | None:
        if membership is not None and not membership.owns(repository):
            return None
        try:
            return tag in await store.tags(repository)
        except RegistryError:
            return False  # no such repository: the push creates it

    return exists


def owned_repositories(config: Config, identity: Identity | None) -> Callable[[str], bool]:
    """Whether this process owns a repository: the one that writes it, keeps its metadata and
    collects its garbage. Without a cluster, every repository."""
    if identity is None or config.cluster is None:
        return lambda name: True
    return ownership(config.cluster.members, config.cluster.hash_key, identity.index)


def cluster_resource(
    config: Config,
    membership: Membership,
    local: IResource,
    reactor: Any,
    service: MultiService,
    operations: Operations,
    store: ImageStore,
    sync: SyncService | None = None,
    search: SearchEngine | None = None,
    keeper: MetaKeeper | None = None,
    housekeeper: bool = True,
) -> tuple[IResource, HTTPClient]:
    """Wrap ``local`` so that other members' repositories are forwarded to them (and, when each
    member has its own storage, so that the catalog gathers every member's repositories; when
    all share it, so that reads by digest are answered here, ``cluster.localReads``); with
    ``search``, serve the search API, asking each field of the members that own its repositories
    (with either storage: metadata is kept by each repository's owner)."""
    cluster = config.cluster
    assert cluster is not None
    identity = membership.identity
    log.info(
        "cluster {position}: {member} (matched by {rule}), view {view}",
        position=position(identity.index, len(cluster.members)), member=identity.member, rule=identity.rule,
        view=membership.view.fingerprint,
    )
    agent, pool = peer_agent(reactor, cluster.tls)
    service.addService(_OnStop(pool.closeCachedConnections))
    scheme = "https" if config.http.tls is not None else "http"
    forwarder = operations.meter_forwarder(Forwarder(agent, reactor, scheme))
    client = HTTPClient(agent)
    members = FanOut(
        cluster.members, identity.index, client, scheme, peer_error=operations.metrics.cluster.peer_error
    )
    if not config.storage.shared:  # per-member storage; with a shared bucket every member sees all
        local = FanOutCatalog(local, members, store.repositories)
    routing = ClusterResource(local, membership, forwarder)
    if not config.storage.shared:  # repositories that changed owner are copied from the previous one
        mover = Mover(membership, store, client, reactor, scheme, report=operations.metrics.cluster.moved)
        routing.arrivals = mover.arrive
        if housekeeper:  # one worker of the replica copies in the background (all copy on demand)
            Rebalancer(mover, operations.metrics.cluster.moves_pending).setServiceParent(service)
    if cluster.local_reads:
        routing.local_reads = LocalReads(
            fetched_on_demand=sync.handles if sync is not None else None,
            blob_misses_to_owner=store.blobs is not None,
        )
        if keeper is not None:  # the pulls answered here go to their owners' metadata in batches
            reports = PullReports(HTTPClient(agent), scheme, _owner_of(membership), keeper.count_pulls)
            keeper.elsewhere = reports.pulled
            PullReportService(reports, DEFAULT_FLUSH_INTERVAL, reactor).setServiceParent(service)
    AgreementChecker(membership, client, reactor, scheme).setServiceParent(service)
    reload = MembersReload(membership, config.http.address, config.http.port)
    operations.reloader.register(("cluster.members", "cluster.hashKey"), reload.apply, check=reload.check)
    resource: IResource = routing
    searching = None
    if search is not None:
        searching = ClusterSearch(search, members, membership.ring)
        resource = SearchResource(resource, search, searching)
    membership.listeners.append(lambda changed: _follow(changed, members, searching))
    return resource, client


def _follow(membership: Membership, members: FanOut, search: ClusterSearch | None) -> None:
    """What asks every member, or a repository's owner, asks by the current list."""
    members.members, members.me = membership.view.members, membership.me
    if search is not None:
        search.ring = membership.ring


def _accept_reports(receiver: PullReportReceiver, membership: Membership) -> None:
    """Pull reports come from the members of the current list, and of the previous one until they
    are gone (a leaving member reports what it answered before it stops)."""
    previous = membership.previous.members if membership.previous is not None else ()
    receiver.member_hosts = frozenset(member_host(member) for member in (*membership.view.members, *previous))


def _owner_of(membership: Membership) -> Callable[[str], str | None]:
    """The member that owns a repository by the cluster's current list; None for this one."""

    def owner(repository: str) -> str | None:
        return None if membership.owns(repository) else membership.view.owner(repository)

    return owner


class _OnStop(Service):
    """Runs ``action`` when the application stops: closing connection pools (peers, S3)."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def stopService(self) -> Any:
        super().stopService()
        return self.action()


def makeService(options: Options) -> IService:
    operations = Operations(options.config)
    twistd_options = getattr(options, "parent", None)
    plan = _worker_plan(options, twistd_options)
    service = build_service(options.config, identity=options.identity, operations=operations, workers=plan)
    also_on_hup = None
    if plan is not None and plan.index == 0:
        logging = worker_logging(twistd_options or {})
        supervisor = WorkerSupervisor(
            global_reactor, plan.count, plan.listener.fileno(),
            lambda index: twistd_argv(options["config"], index, plan.count, plan.locks, logging),
            after_stop=lambda: shutil.rmtree(plan.locks, ignore_errors=True),
        )
        supervisor.setServiceParent(service)
        also_on_hup = lambda: supervisor.signal_all("HUP")  # noqa: E731
    elif plan is not None:
        ParentWatch(global_reactor).setServiceParent(service)
    return for_twistd(service, operations, options.config, twistd_options, also_on_hup)


def worker_logging(twistd_options: Any) -> list[str]:
    """twistd's options that say where worker 0 logs, for the workers it starts (which run in the
    foreground): the same file (a daemonised twistd's default is ``twistd.log``), syslog, observer."""
    if twistd_options.get("logger"):
        return [f"--logger={twistd_options['logger']}"]
    if twistd_options.get("syslog"):
        return ["--syslog", f"--prefix={twistd_options.get('prefix') or 'twisted'}"]
    logfile = twistd_options.get("logfile")
    if not logfile and not twistd_options.get("nodaemon"):
        logfile = "twistd.log"
    return [f"--logfile={os.path.abspath(logfile) if logfile != '-' else '-'}"] if logfile else []


def _worker_plan(options: Options, twistd_options: Any) -> WorkerPlan | None:
    """None for a replica in one process; else this worker's part. Worker 0 binds the socket here,
    before twistd drops privileges and before any worker starts: a port that cannot be had fails
    the start once, as a single process would."""
    if options.workers == 1:
        return None
    http = options.config.http
    if options["worker-index"] is not None:
        listener = socket.socket(fileno=SOCKET_FD)
        return WorkerPlan(options.workers, int(options["worker-index"]), options["worker-locks"], listener)
    try:
        listener = bind(http.address, http.port)
    except OSError as error:
        raise usage.UsageError(f"cannot listen on {http.address}:{http.port}: {error.strerror}") from None
    return WorkerPlan(options.workers, 0, tempfile.mkdtemp(prefix="zotpy-workers-"), listener)
