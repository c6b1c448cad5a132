"""The sync service: periodic mirroring of upstream registries, and on-demand fetches.

:class:`SyncService` is a child of the twistd ``MultiService``. For every registry with ``content``
rules and a ``pollInterval`` it runs a ``LoopingCall`` (on the injected clock): list the upstream
catalog, map each repository through the content rules to its local name, skip the names this
replica does not own, and copy the tags the rules select whose digest differs from the local one.
One repository failing is logged with its name and the poll goes on with the next.

In a cluster every replica runs the same loops, and each mirrors only the repositories it owns. The
owner is decided on the **local** name (after ``destination``/``stripPrefix``), the name clients use
and the cluster routes on, so the replica that writes a repository is the one that serves it. (zot
hashes the upstream name, which lands repositories on the wrong replica when the names differ.)

On demand: :meth:`SyncService.manifest` and :meth:`SyncService.referrers` are called by the API
before it answers a manifest or referrers GET; concurrent calls for the same (repository,
reference) share one fetch, which goes on when the client hangs up. They never fail: the API then
answers from what is stored, or 404. In a cluster those routes are forwarded to the owner, so only
the owner fetches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from zotpy.api.registry import IOnDemand
from zotpy.cluster.ring import Ring
from zotpy.observability.metrics import ISyncCounters
from zotpy.oci.digest import Digest, is_digest_reference, parse_digest
from zotpy.storage.imagestore import ImageStore
from zotpy.sync.client import USER_AGENT, UpstreamClient, UpstreamError, UpstreamNotFound, make_http_client
from zotpy.sync.coalesce import Coalescer
from zotpy.sync.content import NameMapping
from zotpy.sync.mirror import Mirror, local_manifest_digest
from zotpy.sync.settings import Credentials, RegistrySettings, SyncSettings
from zotpy.transport.failures import describe_failure

log = Logger()


def _everything(name: str) -> bool:
    return True


@implementer(ISyncCounters)
class _NoCounters:
    def repository_synced(self, registry: str) -> None:
        pass

    def image_synced(self, registry: str) -> None:
        pass

    def failed(self, registry: str) -> None:
        pass


def ownership(members: tuple[str, ...], hash_key: bytes, index: int) -> Callable[[str], bool]:
    """Whether cluster member ``index`` owns a repository name (zot's ring)."""
    ring = Ring(members, hash_key)
    return lambda name: ring.owner_index(name) == index


class ReferenceGone(UpstreamNotFound):
    """The tag or digest asked for does not exist upstream (as opposed to something it needs)."""


@attrs.define(eq=False)
class PollReport:
    """What one poll of one registry did."""

    repositories: int = 0
    skipped_not_owner: int = 0
    tags_copied: int = 0
    tags_unchanged: int = 0
    failed: list[str] = attrs.field(factory=list)


@attrs.define(eq=False)
class RegistrySync:
    """Sync from one ``registries[]`` entry."""

    settings: RegistrySettings
    client: UpstreamClient
    store: ImageStore
    owns: Callable[[str], bool] = _everything
    counters: ISyncCounters = attrs.field(factory=_NoCounters)
    mirror: Mirror = attrs.field(init=False)
    last_poll: PollReport | None = None

    def __attrs_post_init__(self) -> None:
        self.mirror = Mirror(self.client, self.store)

    @property
    def name(self) -> str:
        return self.client.name

    # -- periodic -------------------------------------------------------------------------------

    async def poll(self) -> PollReport:
        """One pass over the upstream catalog. Never raises: everything is logged."""
        report = PollReport()
        try:
            upstream_names = await self.client.catalog()
        except UpstreamError as error:
            log.error("sync: {upstream}: cannot list the catalog: {error}", upstream=self.name, error=error)
            report.failed.append("(catalog)")
            self.last_poll = report
            return report
        for upstream_name in upstream_names:
            mapping = self.settings.content.for_upstream(upstream_name)
            if mapping is None:
                continue
            if not self.owns(mapping.local):
                report.skipped_not_owner += 1
                log.debug(
                    "sync: {upstream}: skipping {repository}: another cluster member owns it",
                    upstream=self.name, repository=mapping.local,
                )
                continue
            report.repositories += 1
            try:
                await self.sync_repository(mapping, report)
                self.counters.repository_synced(self.name)
            except Exception as error:  # one repository must never stop the poll
                report.failed.append(mapping.local)
                self.counters.failed(self.name)
                log.error(
                    "sync: {upstream}: repository {repository} (upstream {source}) failed: {error}",
                    upstream=self.name, repository=mapping.local, source=mapping.upstream, error=describe_failure(error),
                )
        log.info(
            "sync: {upstream}: poll done: {repositories} repositories, {copied} tags copied, {unchanged} unchanged, "
            "{skipped} owned by other members, {failures} failed",
            upstream=self.name, repositories=report.repositories, copied=report.tags_copied,
            unchanged=report.tags_unchanged, skipped=report.skipped_not_owner, failures=len(report.failed),
        )
        self.last_poll = report
        return report

    async def sync_repository(self, mapping: NameMapping, report: PollReport | None = None) -> None:
        """Copy the selected tags of one repository that are missing or changed here."""
        report = report if report is not None else PollReport()
        tags = self.settings.content.select_tags(mapping, await self.client.tags(mapping.upstream))
        failures: list[str] = []
        for tag in tags:
            try:
                if await self.sync_tag(mapping, tag):
                    report.tags_copied += 1
                else:
                    report.tags_unchanged += 1
            except ReferenceGone:
                continue  # deleted upstream since the list was made
            except Exception as error:
                failures.append(tag)
                log.error(
                    "sync: {upstream}: {repository}:{tag} failed: {error}",
                    upstream=self.name, repository=mapping.local, tag=tag, error=describe_failure(error),
                )
        if failures:
            raise UpstreamError(f"{len(failures)} of {len(tags)} tags failed ({', '.join(failures[:5])})")

    async def sync_tag(self, mapping: NameMapping, tag: str) -> bool:
        """Copy ``tag`` unless the local tag already has the upstream digest; whether it copied."""
        try:
            remote = await self.client.manifest_digest(mapping.upstream, tag)
        except UpstreamNotFound as error:
            raise ReferenceGone(str(error)) from None
        local = await local_manifest_digest(self.store, mapping.local, tag)
        if remote is not None and remote == local:
            await self._referrers(mapping, remote)
            return False
        digest = await self.mirror.image(mapping.upstream, mapping.local, tag)
        self.counters.image_synced(self.name)
        log.info(
            "sync: {upstream}: mirrored {source}:{tag} as {repository}:{tag} ({digest})",
            upstream=self.name, source=mapping.upstream, repository=mapping.local, tag=tag, digest=str(digest),
        )
        await self._referrers(mapping, digest)
        return True

    async def _referrers(self, mapping: NameMapping, subject: Digest) -> None:
        copied = await self.mirror.referrers(mapping.upstream, mapping.local, subject)
        if copied:
            log.info(
                "sync: {upstream}: mirrored {count} referrers of {repository}@{digest}",
                upstream=self.name, count=copied, repository=mapping.local, digest=str(subject),
            )

    # -- on demand -------------------------------------------------------------------------------

    def maps(self, local: str, reference: str | None = None) -> NameMapping | None:
        """The upstream of ``local`` when this registry syncs on demand and its rules take it (and,
        for a tag, select the tag), else None."""
        if not self.settings.on_demand:
            return None
        mapping = self.settings.content.for_local(local)
        if mapping is None:
            return None
        if reference is not None and not is_digest_reference(reference):
            if not self.settings.content.select_tags(mapping, [reference]):
                return None
        return mapping

    async def fetch_manifest(self, mapping: NameMapping, reference: str) -> None:
        if is_digest_reference(reference):
            if await local_manifest_digest(self.store, mapping.local, reference) is None:
                try:
                    fetched = await self.client.manifest(mapping.upstream, reference)
                except UpstreamNotFound as error:
                    raise ReferenceGone(str(error)) from None
                await self.mirror.store_image(mapping.upstream, mapping.local, reference, fetched)
                self.counters.image_synced(self.name)
                log.info(
                    "sync: {upstream}: fetched {source}@{reference} on demand as {repository}",
                    upstream=self.name, source=mapping.upstream, reference=reference, repository=mapping.local,
                )
            return
        if await self.sync_tag(mapping, reference):
            log.info(
                "sync: {upstream}: fetched {source}:{tag} on demand as {repository}:{tag}",
                upstream=self.name, source=mapping.upstream, tag=reference, repository=mapping.local,
            )

    async def fetch_referrers(self, mapping: NameMapping, subject: Digest) -> None:
        await self._referrers(mapping, subject)


ClientFactory = Callable[[RegistrySettings, Mapping[str, Credentials]], UpstreamClient]


@implementer(IOnDemand)
class SyncService(Service):
    """All of ``extensions.sync``: one :class:`RegistrySync` per registry, their loops, on demand.

    :meth:`reconfigure` applies new settings while running (SIGHUP): the loops stop, the registries
    are rebuilt, the loops start again; on-demand fetches already running finish with the old ones.
    """

    name = "sync"

    def __init__(
        self,
        settings: SyncSettings,
        store: ImageStore,
        clock: Any,
        owns: Callable[[str], bool] = _everything,
        counters: ISyncCounters | None = None,
        make_client: ClientFactory | None = None,
        periodic: bool = True,
    ) -> None:
        """``make_client`` replaces the real HTTP clients (tests). ``periodic`` False: on-demand
        fetches only, no polling (the replica's other worker processes: one of them polls)."""
        self.periodic = periodic
        self.store = store
        self.clock = clock
        self.counters: ISyncCounters = counters or _NoCounters()
        self._owns = owns
        self._user_agent = USER_AGENT
        self._make_client = make_client or self._real_client
        self._pools: list[HTTPConnectionPool] = []
        self._loops: list[tuple[LoopingCall, Deferred[Any]]] = []
        self._polls: dict[int, Deferred[Any]] = {}
        self._on_demand: Coalescer[bool] = Coalescer()
        self._build(settings)

    def _real_client(self, registry: RegistrySettings, credentials: Mapping[str, Credentials]) -> UpstreamClient:
        http, pool = make_http_client(self.clock, registry)
        self._pools.append(pool)
        return UpstreamClient(registry, http, self.clock, credentials)

    def _build(self, settings: SyncSettings) -> None:
        self.settings = settings
        self.registries = []
        for registry in settings.registries:
            client = self._make_client(registry, settings.credentials)
            client.user_agent = self._user_agent
            self.registries.append(RegistrySync(registry, client, self.store, self._owns, self.counters))

    def set_ownership(self, owns: Callable[[str], bool], member: str | None = None) -> None:
        """Which local repository names this replica owns (in a cluster, known once it is identified);
        ``member`` is named in the User-Agent of its upstream requests."""
        self._owns = owns
        if member is not None:
            self._user_agent = f"{USER_AGENT} (cluster member {member})"
        for registry in self.registries:
            registry.owns = owns
            registry.client.user_agent = self._user_agent

    def handles(self, repo: str) -> bool:
        """Whether an on-demand registry's rules map the local name ``repo`` (the API asks first)."""
        return any(registry.maps(repo) for registry in self.registries)

    # -- service ---------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._start_loops()

    def _start_loops(self) -> None:
        for registry in self.registries:
            if not registry.settings.periodic or not self.periodic:
                continue
            loop = LoopingCall(self._poll, registry)
            loop.clock = self.clock
            log.info(
                "sync: {upstream}: polling every {interval}s", upstream=registry.name,
                interval=registry.settings.poll_interval,
            )
            self._loops.append((loop, loop.start(registry.settings.poll_interval, now=True)))

    def _poll(self, registry: RegistrySync) -> Deferred[Any]:
        running = ensureDeferred(registry.poll())
        self._polls[id(registry)] = running

        def forget(result: object) -> None:
            self._polls.pop(id(registry), None)

        # A poll that fails (it should not) is logged; the loop keeps its schedule.
        running.addErrback(lambda failure: log.failure("sync: {upstream}: poll crashed", failure, upstream=registry.name))
        return running.addBoth(forget)

    async def _stop_loops(self) -> None:
        for loop, _ in self._loops:
            if loop.running:
                loop.stop()
        for poll in list(self._polls.values()):
            poll.cancel()
        await DeferredList([finished for _, finished in self._loops], consumeErrors=True)
        self._loops = []
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.closeCachedConnections()

    def reconfigure(self, settings: SyncSettings | None) -> Deferred[None]:
        """Apply new settings (None: sync disabled) from now on."""

        async def apply() -> None:
            await self._stop_loops()
            self._build(settings or SyncSettings(registries=()))
            log.info("sync: new settings applied: {count} registries", count=len(self.registries))
            if self.running:
                self._start_loops()

        return ensureDeferred(apply())

    def idle(self) -> Deferred[None]:
        """Fires once the polls running now have ended."""
        return DeferredList(list(self._polls.values()), consumeErrors=True).addCallback(lambda _: None)

    async def _stop(self) -> None:
        await self._stop_loops()
        await self._on_demand.cancel_all()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._stop())

    # -- on demand -------------------------------------------------------------------------------

    def manifest(self, repo: str, reference: str) -> Deferred[bool]:
        """Bring ``repo:reference`` from the first on-demand registry that has it; True if one did.
        Never fails (failures are logged); the caller then serves what is stored."""
        if not any(registry.maps(repo, reference) for registry in self.registries):
            return succeed(False)
        return self._on_demand.run(("manifest", repo, reference), lambda: self._manifest(repo, reference))

    async def _manifest(self, repo: str, reference: str) -> bool:
        for registry in self.registries:
            mapping = registry.maps(repo, reference)
            if mapping is None:
                continue
            try:
                await registry.fetch_manifest(mapping, reference)
                return True
            except ReferenceGone:
                log.info(
                    "sync: {upstream}: {source}:{reference} is not there (for {repository})",
                    upstream=registry.name, source=mapping.upstream, reference=reference, repository=repo,
                )
            except Exception as error:
                registry.counters.failed(registry.name)
                log.error(
                    "sync: {upstream}: on-demand {repository}:{reference} failed: {error}",
                    upstream=registry.name, repository=repo, reference=reference, error=describe_failure(error),
                )
        return False

    def referrers(self, repo: str, digest: str) -> Deferred[bool]:
        """Bring the referrers of ``repo@digest`` from the on-demand registries. Never fails."""
        if not is_digest_reference(digest) or not any(registry.maps(repo) for registry in self.registries):
            return succeed(False)
        return self._on_demand.run(("referrers", repo, digest), lambda: self._referrers(repo, parse_digest(digest)))

    async def _referrers(self, repo: str, subject: Digest) -> bool:
        for registry in self.registries:
            mapping = registry.maps(repo)
            if mapping is None:
                continue
            try:
                await registry.fetch_referrers(mapping, subject)
                return True
            except Exception as error:
                log.error(
                    "sync: {upstream}: on-demand referrers of {repository}@{digest} failed: {error}",
                    upstream=registry.name, repository=repo, digest=str(subject), error=describe_failure(error),
                )
        return False
