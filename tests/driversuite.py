"""One behavioural test suite for every :class:`IStorageDriver`.

A driver's test module subclasses :class:`StorageDriverTests` together with
``twisted.trial.unittest.TestCase`` and implements ``make_driver``; the same
assertions then hold for the local disk and for S3.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer
from zope.interface.verify import verifyObject

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
