"""Host-wide locks (zotpy.storage.locks.HostLocks): what the worker processes of one replica take
around a repository's writes. Two HostLocks on one directory stand for two processes here (a
``flock`` belongs to an open file, so two opens of one file conflict as two processes would); a
real second process holds one in the last test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from zotpy.storage.locks import HostLocks, KeyedLocks, locks_for


class HostLocksTests(TestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.clock = Clock()

    def test_a_key_held_by_one_process_waits_in_the_other(self) -> None:
        first, second = (HostLocks(self.directory, "repository", self.clock) for _ in range(2))
        release: defer.Deferred[None] = defer.Deferred()
        order: list[str] = []

        async def hold() -> None:
            order.append("first in")
            await release
            order.append("first out")

        async def after() -> None:
            order.append("second in")

        held = defer.ensureDeferred(first.run("library/alpine", hold))
        waiting = defer.ensureDeferred(second.run("library/alpine", after))
        self.clock.advance(1)
        self.assertEqual(order, ["first in"])
        self.assertFalse(waiting.called)
        release.callback(None)
        self.successResultOf(held)
        self.clock.advance(1)  # the next try
        self.successResultOf(waiting)
        self.assertEqual(order, ["first in", "first out", "second in"])

    def test_other_keys_and_namespaces_do_not_wait(self) -> None:
        first = HostLocks(self.directory, "repository", self.clock)
        blocked: defer.Deferred[None] = defer.Deferred()
        holding = defer.ensureDeferred(first.run("a", lambda: blocked))
        other_key = defer.ensureDeferred(HostLocks(self.directory, "repository", self.clock).run("b", _done))
        other_namespace = defer.ensureDeferred(HostLocks(self.directory, "session", self.clock).run("a", _done))
        self.assertEqual(self.successResultOf(other_key), "done")
        self.assertEqual(self.successResultOf(other_namespace), "done")
        blocked.callback(None)
        self.successResultOf(holding)

    def test_a_failing_section_releases_the_lock(self) -> None:
        locks = HostLocks(self.directory, "repository", self.clock)

        async def fail() -> None:
            raise ValueError("broken")

        self.failureResultOf(defer.ensureDeferred(locks.run("a", fail)), ValueError)
        self.assertEqual(self.successResultOf(defer.ensureDeferred(HostLocks(self.directory, "repository", self.clock).run("a", _done))), "done")
        self.assertEqual(len(locks), 0)

    def test_one_process_is_in_process_locks(self) -> None:
        self.assertIsInstance(locks_for(None, "repository", self.clock), KeyedLocks)
        self.assertIsInstance(locks_for(self.directory, "repository", self.clock), HostLocks)

    async def test_another_process_holding_the_lock(self) -> None:
        """A second process takes the key's lock file and lets it go when it dies: the wait ends."""
        path = HostLocks(self.directory, "repository", reactor)._path("team/app")
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import fcntl, sys, time
                stream = open({path!r}, "a")
                fcntl.flock(stream, fcntl.LOCK_EX)
                print("held", flush=True)
                sys.stdin.read()
            """)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self.addCleanup(holder.wait)
        self.addCleanup(holder.stdout.close)  # type: ignore[union-attr]
        self.addCleanup(holder.stdin.close)  # type: ignore[union-attr]
        self.assertEqual(holder.stdout.readline().strip(), b"held")  # type: ignore[union-attr]
        waiting = defer.ensureDeferred(HostLocks(self.directory, "repository", reactor).run("team/app", _done))
        await deferLater(reactor, 0.2, lambda: None)
        self.assertFalse(waiting.called, "the lock another process holds was taken")
        holder.kill()
        self.assertEqual(await waiting, "done")


async def _done() -> str:
    return "done"
