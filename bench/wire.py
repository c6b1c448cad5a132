"""A lean HTTP/1.1 client on asyncio streams: one keep-alive connection, bodies streamed both ways.

The load client must cost less CPU than the servers it drives (they share two cores), so this is
the minimum a registry client needs and nothing more: ``Content-Length`` request bodies written
1 MiB at a time with backpressure, responses framed by ``Content-Length``, ``chunked`` or the end
of the connection, and each received piece handed to a sink (a hasher) instead of being kept.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Mapping
from urllib.parse import urlsplit

WRITE_PIECE = 1024 * 1024
READ_PIECE = 1024 * 1024


class Reply:
    __slots__ = ("status", "headers", "body", "length")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, length: int) -> None:
        self.status = status
        self.headers = headers  # lower-case names, the last value of each
        self.body = body  # empty when a sink took the bytes
        self.length = length  # body bytes received


class ConnectionFailed(Exception):
    """The connection broke or the reply was not HTTP: counted as status 0."""


def path_of(location: str) -> str:
    """The path and query of a ``Location`` header, absolute (distribution) or relative (zotpy)."""
    if location.startswith("/"):
        return location
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _read_exactly(reader: asyncio.StreamReader, length: int, take: Callable[[bytes], None]) -> None:
    """Hand ``length`` bytes to ``take`` as they arrive (pieces of at most 1 MiB)."""
    while length:
        data = await reader.read(min(length, READ_PIECE))
        if not data:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(data)
        take(data)


class Connection:
    """One persistent connection to ``host:port``, opened on first use and again after a close."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}"
        self.headers = dict(headers or {})  # sent with every request (e.g. Authorization)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=4 * READ_PIECE)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | memoryview = b"",
        sink: Callable[[bytes], object] | None = None,
    ) -> Reply:
        try:
            return await self._request(method, target, headers, body, sink)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            self.close()
            raise ConnectionFailed(f"{method} {target}: {type(error).__name__}: {error}") from error

    async def _request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None,
        body: bytes | memoryview,
        sink: Callable[[bytes], object] | None,
    ) -> Reply:
        if self.writer is None:
            await self._open()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in {**self.headers, **(headers or {})}.items():
            lines.append(f"{name}: {value}")
        if body or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(body) <= WRITE_PIECE:
            writer.write(head + bytes(body) if body else head)
        else:
            writer.write(head)
            view = memoryview(body)
            for offset in range(0, len(view), WRITE_PIECE):
                writer.write(view[offset : offset + WRITE_PIECE])
                await writer.drain()
        await writer.drain()

        raw = await reader.readuntil(b"\r\n\r\n")
        text = raw.decode("latin-1").split("\r\n")
        status = int(text[0].split(" ", 2)[1])
        reply_headers: dict[str, str] = {}
        for line in text[1:]:
            if line:
                name, _, value = line.partition(":")
                reply_headers[name.strip().lower()] = value.strip()

        pieces: list[bytes] = []
        received = 0

        def take(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if sink is not None:
                sink(data)
            else:
                pieces.append(data)

        keep = reply_headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or status < 200:
            pass
        elif "chunked" in reply_headers.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                await _read_exactly(reader, size, take)
                await reader.readexactly(2)
        elif "content-length" in reply_headers:
            await _read_exactly(reader, int(reply_headers["content-length"]), take)
        else:
            while data := await reader.read(READ_PIECE):
                take(data)
            keep = False
        if not keep:
            self.close()
        return Reply(status, reply_headers, b"".join(pieces), received)
