"""One behavioural test suite for every :class:`IStorageDriver`.

A driver's test module subclasses :class:`StorageDriverTests` together with
``twisted.trial.unittest.TestCase`` and implements ``make_driver``; the same
assertions then hold for the local disk and for S3.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from zotpy.api.streaming import BodyIncomplete, StreamedBody
from zotpy.storage.driver import ContentMismatch, IByteReader, InvalidPath, IStorageDriver, PathNotFound


def async_test(function: Any) -> Any:
    """Let trial run an ``async def`` test method."""

    def wrapper(self: Any) -> defer.Deferred[Any]:
        return defer.ensureDeferred(function(self))

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@implementer(IConsumer)
class CollectingConsumer:
    """An IConsumer that gathers what a producer writes: a pull producer is asked for more each
    time, a push (streaming) producer writes by itself until it unregisters."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.producer: Any = None
        self.unregistered = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        while self.producer is not None and not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None
        self.unregistered = True

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@implementer(IPushProducer)
class Sender:
    """A client sending a body into a :class:`StreamedBody`, 256 KiB per reactor turn, stopping
    while the body says it is full; ``stop_after``: go away after that many bytes."""

    PIECE = 256 * 1024

    def __init__(self, data: bytes, stop_after: int | None = None, declared: bool = True) -> None:
        self.data = data
        self.stop_after = stop_after
        self.body = StreamedBody(len(data) if declared else None, self)
        self.sent = 0
        self.paused = False
        self.pauses = 0
        reactor.callLater(0, self._send)

    def _send(self) -> None:
        if self.paused:
            return
        end = min(len(self.data), self.sent + self.PIECE)
        if self.stop_after is not None and end > self.stop_after:
            self.body.close()
            return
        self.body.feed(self.data[self.sent : end])
        self.sent = end
        if self.sent == len(self.data):
            self.body.end()
        else:
            reactor.callLater(0, self._send)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            reactor.callLater(0, self._send)

    def stopProducing(self) -> None:
        pass


STREAMED = bytes(range(256)) * (26 * 1024 + 5)  # ~6.5 MiB: past S3's 5 MiB part minimum


class StorageDriverTests:
    """Mixin: the contract of IStorageDriver."""

    def make_driver(self) -> IStorageDriver:
        raise NotImplementedError

    def setUp(self) -> None:
        self.driver = self.make_driver()

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IStorageDriver, self.driver))

    @async_test
    async def test_put_then_get_content(self) -> None:
        await self.driver.put_content("repo/index.json", b'{"a":1}')
        self.assertEqual(await self.driver.get_content("repo/index.json"), b'{"a":1}')

    @async_test
    async def test_put_replaces_whole_content(self) -> None:
        await self.driver.put_content("r/f", b"a much longer first version")
        await self.driver.put_content("r/f", b"short")
        self.assertEqual(await self.driver.get_content("r/f"), b"short")

    @async_test
    async def test_missing_paths_raise_path_not_found(self) -> None:
        for call in (
            lambda: self.driver.get_content("nope/x"),
            lambda: self.driver.stat("nope/x"),
            lambda: self.driver.list("nope"),
            lambda: self.driver.reader("nope/x"),
            lambda: self.driver.delete("nope/x"),
            lambda: self.driver.hash("nope/x", "sha256"),
            lambda: self.driver.move("nope/x", "nope/y"),
            lambda: self.driver.copy("nope/x", "nope/y"),
        ):
            with self.assertRaises(PathNotFound):
                await call()

    @async_test
    async def test_paths_never_escape_the_root(self) -> None:
        for path in ("../x", "/etc/passwd", "a/../../x", "a//b", "a/./b", ""):
            with self.assertRaises(InvalidPath, msg=path):
                await self.driver.get_content(path)

    @async_test
    async def test_stat_reports_size_and_kind(self) -> None:
        await self.driver.put_content("d/f", b"12345")
        info = await self.driver.stat("d/f")
        self.assertEqual((info.size, info.is_dir), (5, False))
        self.assertTrue((await self.driver.stat("d")).is_dir)

    @async_test
    async def test_size_is_for_objects_only(self) -> None:
        await self.driver.put_content("d/f", b"12345")
        self.assertEqual(await self.driver.size("d/f"), 5)
        for missing in ("d", "d/g", "e/f"):  # a directory is no object
            with self.assertRaises(PathNotFound):
                await self.driver.size(missing)

    @async_test
    async def test_list_gives_immediate_children(self) -> None:
        await self.driver.put_content("top/a", b"1")
        await self.driver.put_content("top/sub/b", b"22")
        children = {info.path: info for info in await self.driver.list("top")}
        self.assertEqual(sorted(children), ["top/a", "top/sub"])
        self.assertTrue(children["top/sub"].is_dir)
        self.assertEqual(children["top/a"].size, 1)
        self.assertIn("top", [info.path for info in await self.driver.list("")])

    @async_test
    async def test_append_creates_extends_and_hashes(self) -> None:
        hasher = hashlib.sha256()
        first = await self.driver.append("up/s", io.BytesIO(b"hello "), hasher)
        second = await self.driver.append("up/s", io.BytesIO(b"world"), hasher)
        self.assertEqual((first, second), (6, 11))
        self.assertEqual(await self.driver.get_content("up/s"), b"hello world")
        self.assertEqual(hasher.hexdigest(), hashlib.sha256(b"hello world").hexdigest())

    @async_test
    async def test_append_large_body(self) -> None:
        body = bytes(range(256)) * (12 * 1024 + 7)  # ~3 MiB, not a multiple of the copy chunk
        size = await self.driver.append("up/big", io.BytesIO(body))
        self.assertEqual(size, len(body))
        self.assertEqual(await self.driver.hash("up/big", "sha512"), hashlib.sha512(body).hexdigest())

    @async_test
    async def test_reader_streams_from_offset(self) -> None:
        body = b"0123456789" * 100_000
        await self.driver.put_content("b/blob", body)
        reader = await self.driver.reader("b/blob", 5)
        self.assertTrue(verifyObject(IByteReader, reader))
        self.assertEqual(reader.size, len(body))
        consumer = CollectingConsumer()
        await reader.send(consumer, 600_000)
        reader.close()
        self.assertEqual(consumer.data, body[5:600_005])
        self.assertTrue(consumer.unregistered)

    @async_test
    async def test_reader_zero_length(self) -> None:
        await self.driver.put_content("b/empty", b"")
        reader = await self.driver.reader("b/empty")
        consumer = CollectingConsumer()
        await reader.send(consumer, 0)
        self.assertEqual(consumer.data, b"")

    @async_test
    async def test_move_replaces_destination(self) -> None:
        await self.driver.put_content("m/src", b"new")
        await self.driver.put_content("m/dst", b"old")
        await self.driver.move("m/src", "m/dst")
        self.assertEqual(await self.driver.get_content("m/dst"), b"new")
        with self.assertRaises(PathNotFound):
            await self.driver.stat("m/src")

    @async_test
    async def test_copy_keeps_source(self) -> None:
        await self.driver.put_content("c/src", b"data")
        await self.driver.copy("c/src", "other/repo/dst")
        self.assertEqual(await self.driver.get_content("other/repo/dst"), b"data")
        self.assertEqual(await self.driver.get_content("c/src"), b"data")

    @async_test
    async def test_delete_file_and_tree(self) -> None:
        await self.driver.put_content("t/a/b", b"1")
        await self.driver.put_content("t/c", b"2")
        await self.driver.delete("t/c")
        with self.assertRaises(PathNotFound):
            await self.driver.stat("t/c")
        await self.driver.delete("t")
        with self.assertRaises(PathNotFound):
            await self.driver.get_content("t/a/b")

    @async_test
    async def test_hash_of_content(self) -> None:
        await self.driver.put_content("h/x", b"abc")
        self.assertEqual(await self.driver.hash("h/x", "sha256"), hashlib.sha256(b"abc").hexdigest())

    @async_test
    async def test_write_appears_only_when_the_digest_matches(self) -> None:
        body = b"layer" * 1000
        size = await self.driver.write("w/blob", io.BytesIO(body), hashlib.sha256(), hashlib.sha256(body).hexdigest())
        self.assertEqual(size, len(body))
        self.assertEqual(await self.driver.get_content("w/blob"), body)
        with self.assertRaises(ContentMismatch) as raised:
            await self.driver.write("w/other", io.BytesIO(body), hashlib.sha256(), "0" * 64)
        self.assertEqual(raised.exception.actual, hashlib.sha256(body).hexdigest())
        with self.assertRaises(PathNotFound):
            await self.driver.stat("w/other")

    @async_test
    async def test_write_large_body(self) -> None:
        """Past S3's 5 MiB part minimum (one streamed PUT there), and refused when it mismatches."""
        body = bytes(range(256)) * (24 * 1024 + 3)  # ~6 MiB
        expected = hashlib.sha256(body).hexdigest()
        self.assertEqual(await self.driver.write("w/big", io.BytesIO(body), hashlib.sha256(), expected), len(body))
        self.assertEqual(await self.driver.hash("w/big", "sha256"), expected)
        with self.assertRaises(ContentMismatch):
            await self.driver.write("w/bad", io.BytesIO(body), hashlib.sha256(), "1" * 64)
        with self.assertRaises(PathNotFound):
            await self.driver.stat("w/bad")

    # -- bodies still arriving (IStreamedSource) -------------------------------------------------------

    async def leftovers(self, directory: str) -> list[str]:
        """What a failed write may not leave in ``directory`` (a driver checks its own way)."""
        return []

    @async_test
    async def test_streamed_write_is_stored_as_it_arrives(self) -> None:
        sender = Sender(STREAMED)
        expected = hashlib.sha256(STREAMED).hexdigest()
        self.assertEqual(await self.driver.write("s/blob", sender.body, hashlib.sha256(), expected), len(STREAMED))
        self.assertEqual(await self.driver.hash("s/blob", "sha256"), expected)
        self.assertEqual((await self.driver.stat("s/blob")).size, len(STREAMED))

    @async_test
    async def test_small_streamed_write(self) -> None:
        data = STREAMED[: 2 * 1024 * 1024 + 1]
        expected = hashlib.sha256(data).hexdigest()
        self.assertEqual(await self.driver.write("s/small", Sender(data).body, hashlib.sha256(), expected), len(data))
        self.assertEqual(await self.driver.hash("s/small", "sha256"), expected)

    @async_test
    async def test_streamed_write_of_other_bytes_leaves_nothing(self) -> None:
        with self.assertRaises(ContentMismatch) as raised:
            await self.driver.write("s/wrong", Sender(STREAMED).body, hashlib.sha256(), "0" * 64)
        self.assertEqual(raised.exception.actual, hashlib.sha256(STREAMED).hexdigest())
        with self.assertRaises(PathNotFound):
            await self.driver.stat("s/wrong")
        self.assertEqual(await self.leftovers("s"), [])

    @async_test
    async def test_streamed_write_cut_short_leaves_nothing(self) -> None:
        sender = Sender(STREAMED, stop_after=3 * 1024 * 1024)
        with self.assertRaises(BodyIncomplete):
            await self.driver.write("s/short", sender.body, hashlib.sha256(), hashlib.sha256(STREAMED).hexdigest())
        with self.assertRaises(PathNotFound):
            await self.driver.stat("s/short")
        self.assertEqual(await self.leftovers("s"), [])

    @async_test
    async def test_streamed_append_is_all_or_nothing(self) -> None:
        hasher = hashlib.sha256()
        self.assertEqual(await self.driver.append("s/upload", Sender(STREAMED).body, hasher), len(STREAMED))
        with self.assertRaises(BodyIncomplete):
            await self.driver.append("s/upload", Sender(STREAMED, stop_after=1024 * 1024).body)
        self.assertEqual((await self.driver.stat("s/upload")).size, len(STREAMED))
        tail = STREAMED[: 1024 * 1024 + 7]  # a small chunk after a streamed one
        self.assertEqual(await self.driver.append("s/upload", Sender(tail).body, hasher), len(STREAMED) + len(tail))
        self.assertEqual(await self.driver.append("s/upload", Sender(STREAMED).body, hasher), 2 * len(STREAMED) + len(tail))
        whole = STREAMED + tail + STREAMED
        self.assertEqual(hasher.hexdigest(), hashlib.sha256(whole).hexdigest())
        self.assertEqual(await self.driver.hash("s/upload", "sha256"), hashlib.sha256(whole).hexdigest())

    @async_test
    async def test_streamed_append_of_a_length_nobody_declared(self) -> None:
        """A chunk sent with chunked transfer coding (docker's PATCH of a whole layer)."""
        hasher = hashlib.sha256()
        self.assertEqual(await self.driver.append("s/docker", Sender(STREAMED, declared=False).body, hasher), len(STREAMED))
        with self.assertRaises(BodyIncomplete):
            await self.driver.append("s/docker", Sender(STREAMED, stop_after=2 * 1024 * 1024, declared=False).body)
        self.assertEqual((await self.driver.stat("s/docker")).size, len(STREAMED))
        self.assertEqual(hasher.hexdigest(), hashlib.sha256(STREAMED).hexdigest())
        self.assertEqual(await self.driver.hash("s/docker", "sha256"), hashlib.sha256(STREAMED).hexdigest())

    @async_test
    async def test_a_slow_driver_pauses_the_sender(self) -> None:
        """The sender outruns nothing: it is stopped while more than a few MiB wait unread."""
        data = STREAMED * 3  # ~20 MiB
        sender = Sender(data)
        sender.PIECE = 2 * 1024 * 1024
        expected = hashlib.sha256(data).hexdigest()
        self.assertEqual(await self.driver.write("s/paced", sender.body, hashlib.sha256(), expected), len(data))
        self.assertGreater(sender.pauses, 0)
