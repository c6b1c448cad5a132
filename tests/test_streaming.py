"""zotpy.api.streaming.StreamedBody: between a connection that feeds it and a handler that reads it;
and the StreamedPart that sends such a body on, all or nothing when asked."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer
from twisted.trial import unittest
from zope.interface import implementer

from tests.driversuite import async_test
from zotpy.api.routes import match
from zotpy.api.streaming import HIGH_WATER, BodyIncomplete, StreamedBody, streams
from zotpy.storage.driver import ContentMismatch
from zotpy.storage.streamed import StreamedPart


@implementer(IPushProducer)
class Connection:
    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class StreamedBodyTests(unittest.TestCase):
    def setUp(self) -> None:
        self.connection = Connection()
        self.body = StreamedBody(10, self.connection)

    def test_reads_what_came_then_waits(self) -> None:
        self.body.feed(b"abc")
        self.body.feed(b"de")
        self.assertEqual(self.successResultOf(self.body.read()), b"abcde")
        waiting = self.body.read()
        self.assertNoResult(waiting)
        self.body.feed(b"fghij")
        self.assertEqual(self.successResultOf(waiting), b"fghij")
        self.body.end()
        self.assertEqual(self.successResultOf(self.body.read()), b"")

    def test_the_connection_is_paused_while_too_much_waits(self) -> None:
        self.body.feed(b"x" * HIGH_WATER)
        self.assertFalse(self.connection.paused)
        self.body.feed(b"y")
        self.assertTrue(self.connection.paused)
        self.assertEqual(len(self.successResultOf(self.body.read())), HIGH_WATER + 1)
        self.assertFalse(self.connection.paused)

    def test_a_client_gone_midway_fails_the_reader(self) -> None:
        waiting = self.body.read()
        self.body.close()
        self.failureResultOf(waiting, BodyIncomplete)
        self.failureResultOf(self.body.read(), BodyIncomplete)

    def test_a_whole_body_is_read_even_after_its_client_left(self) -> None:
        self.body.feed(b"0123456789")
        self.body.end()
        self.body.close()
        self.assertEqual(self.successResultOf(self.body.read()), b"0123456789")
        self.assertEqual(self.successResultOf(self.body.read()), b"")

    def test_discarded_bytes_are_dropped_and_reading_ends(self) -> None:
        self.body.feed(b"x" * (HIGH_WATER + 1))
        self.body.discard()
        self.assertFalse(self.connection.paused)
        self.body.feed(b"more")
        self.assertEqual(self.successResultOf(self.body.read()), b"")
        self.assertEqual(self.body.received, HIGH_WATER + 5)

    def test_one_reader_at_a_time(self) -> None:
        self.body.read()
        self.assertRaises(RuntimeError, self.body.read)

    def test_a_reader_that_gives_up_leaves_room_for_the_next(self) -> None:
        gave_up = self.body.read()
        gave_up.cancel()
        self.failureResultOf(gave_up, CancelledError)
        self.body.feed(b"abc")
        self.assertEqual(self.successResultOf(self.body.read()), b"abc")


def _streams(method: bytes, uri: bytes, length: int | None, ranged: bool) -> bool:
    """:func:`streams` for a request line, matched as the channel matches it (path without query)."""
    return streams(match(method, uri.partition(b"?")[0]), length, ranged)


class WhichBodiesStreamTests(unittest.TestCase):
    def test_uploads_of_a_mebibyte_or_more(self) -> None:
        upload = b"/v2/a/b/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f"
        self.assertTrue(_streams(b"PATCH", upload, 1024 * 1024, True))
        self.assertTrue(_streams(b"PUT", upload + b"?digest=sha256:" + b"a" * 64, 5 << 20, False))
        self.assertTrue(_streams(b"POST", b"/v2/a/blobs/uploads/?digest=sha256:" + b"a" * 64, 5 << 20, False))
        self.assertFalse(_streams(b"PATCH", upload, 1024 * 1024 - 1, False))
        self.assertFalse(_streams(b"PUT", b"/v2/a/manifests/latest", 5 << 20, False))
        self.assertFalse(_streams(b"GET", upload, 5 << 20, False))
        self.assertFalse(_streams(b"PUT", b"/v2/a/blobs/sha256:" + b"a" * 64, 5 << 20, False))
        self.assertFalse(_streams(b"PUT", b"/elsewhere", 5 << 20, False))

    def test_chunked_coding_for_a_patch_without_a_range(self) -> None:
        upload = b"/v2/a/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f"
        self.assertTrue(_streams(b"PATCH", upload, None, False))
        self.assertFalse(_streams(b"PATCH", upload, None, True))
        self.assertFalse(_streams(b"PUT", upload + b"?digest=sha256:" + b"a" * 64, None, False))


class _Collecting:
    """An HTTP client's body consumer: what was written to it."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class HeldBackTests(unittest.TestCase):
    """A body that must reach its receiver all or nothing keeps its last byte until verified."""

    def part(self, verify: Any) -> tuple[StreamedBody, StreamedPart]:
        body = StreamedBody(10, Connection())
        return body, StreamedPart(body, 10, reactor, reactor.getThreadPool(), hashlib.sha256(), verify)

    @async_test
    async def test_the_last_byte_goes_once_verified(self) -> None:
        seen: list[bytes] = []
        consumer = _Collecting()
        body, part = self.part(lambda: seen.append(consumer.data))
        body.feed(b"0123")
        body.feed(b"456789")
        body.end()
        await part.startProducing(consumer)
        self.assertEqual(seen, [b"012345678"])  # verified with every byte but the last sent
        self.assertEqual(consumer.data, b"0123456789")

    @async_test
    async def test_a_refusal_keeps_the_last_byte_and_fails_the_body(self) -> None:
        consumer = _Collecting()

        def refuse() -> None:
            raise ContentMismatch("p", "other")

        body, part = self.part(refuse)
        body.feed(b"0123456789")
        body.end()
        with self.assertRaises(ContentMismatch):
            await part.startProducing(consumer)
        self.assertEqual(consumer.data, b"012345678")

    def test_only_a_declared_length_can_be_held_back(self) -> None:
        with self.assertRaises(ValueError):
            StreamedPart(StreamedBody(None, Connection()), None, reactor, reactor.getThreadPool(), None, lambda: None)
