"""Applying a new ``cluster.members`` from a reloaded config (SIGHUP) to a running replica.

The reloader (:mod:`zotpy.observability.reload`) asks :meth:`MembersReload.check` first: a list with
a duplicate member, a changed ``hashKey`` (it would move every repository at once: a restart of the
whole cluster is the honest way), a list without this replica, or dropping the cluster section refuse
the whole reload with the key path. Otherwise :meth:`MembersReload.apply` hands the new view to the
:class:`~zotpy.cluster.membership.Membership`, which everything that routes or decides ownership reads.
The replica keeps the address it listens on: the new list is matched against the running
``http.address``/``http.port``, not the file's (those need a restart anyway).
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from zotpy.cluster.identity import position
from zotpy.cluster.membership import Membership, reload_problems
from zotpy.config import Config

log = Logger()


@attrs.define(eq=False)
class MembersReload:
    """The check and the hook the reloader runs for ``cluster.members``."""

    membership: Membership
    address: str
    port: int

    def _judge(self, config: Config) -> tuple[list[tuple[str, str]], object, object]:
        cluster = config.cluster
        return reload_problems(
            self.membership,
            None if cluster is None else cluster.members,
            None if cluster is None else cluster.hash_key,
            self.address,
            self.port,
        )

    def check(self, config: Config) -> list[tuple[str, str]]:
        return self._judge(config)[0]

    def apply(self, config: Config) -> None:
        problems, view, identity = self._judge(config)
        if problems or view is None or identity is None:  # checked just before; the file is read once
            return
        before = self.membership.view
        self.membership.change(view, identity)  # type: ignore[arg-type]
        log.warn(
            "cluster members changed: view {before} -> {after}; this replica is now {position} ({member}); "
            "members: {members}",
            before=before.fingerprint, after=view.fingerprint,  # type: ignore[attr-defined]
            position=position(identity.index, len(view.members)),  # type: ignore[attr-defined]
            member=identity.member, members=list(view.members),  # type: ignore[attr-defined]
        )
