"""A registry that keeps everything in memory and checks nothing: the load client's ceiling.

Run as its own process (``python -m bench.nullregistry PORT``), it answers exactly the requests the
load client sends, as cheaply as Python allows (a thread per connection, bodies received straight
into one buffer and sent from it without copies), so what the client reaches against it is what the
client can drive: if that is well above what zotpy and distribution reach, the client is not what
limits them. It is not a registry: no validation, no persistence, no digest checks.
"""

from __future__ import annotations

import hashlib
import re
import socket
import socketserver
import sys
import threading
import uuid

_UPLOADS = re.compile(r"/v2/(.+)/blobs/uploads/([^?]*)(?:\?(.*))?")
_BLOB = re.compile(r"/v2/(.+)/blobs/([^/?]+)")
_MANIFEST = re.compile(r"/v2/(.+)/manifests/([^/?]+)")

blobs: dict[str, memoryview] = {}
manifests: dict[tuple[str, str], bytes] = {}
sessions: dict[str, list[memoryview]] = {}
lock = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            data = self.request.recv(65536)
            if not data:
                return None
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head

    def body(self, length: int) -> memoryview:
        body = bytearray(length)
        view = memoryview(body)
        taken = min(length, len(self.buffer))
        view[:taken] = self.buffer[:taken]
        self.buffer = self.buffer[taken:]
        while taken < length:
            received = self.request.recv_into(view[taken:], length - taken)
            if not received:
                raise ConnectionError("short body")
            taken += received
        return view

    def reply(self, status: int, headers: dict[str, str] | None = None, body: bytes | memoryview = b"",
              length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body) if length is None else length}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body:
            self.request.sendall(body)

    def handle(self) -> None:
        try:
            while (head := self.head()) is not None:
                self.answer(head)
        except (ConnectionError, OSError):
            pass

    def answer(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == "content-length:":
                length = int(line[15:])
        body = self.body(length) if length else memoryview(b"")
        digest = target.partition("?")[2].partition("digest=")[2].partition("&")[0]
        if match := _UPLOADS.fullmatch(target):
            location = {"Location": f"/v2/{match.group(1)}/blobs/uploads/{match.group(2) or uuid.uuid4()}"}
            session = location["Location"].rsplit("/", 1)[1]
            with lock:
                pieces = sessions.setdefault(session, [])
                if len(body):
                    pieces.append(body)
                if method == "PUT":
                    del sessions[session]
                    blobs[digest] = pieces[0] if len(pieces) == 1 else memoryview(b"".join(pieces))
            if method == "PUT":
                self.reply(201, {"Docker-Content-Digest": digest})
            else:
                self.reply(202, location)
        elif match := _MANIFEST.fullmatch(target):
            key = (match.group(1), match.group(2))
            if method == "PUT":
                manifests[key] = bytes(body)
                self.reply(201, {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
            elif key in manifests:
                self.reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, manifests[key])
            else:
                self.reply(404)
        elif match := _BLOB.fullmatch(target):
            data = blobs.get(match.group(2))
            if data is None:
                self.reply(404)
            elif method == "HEAD":
                self.reply(200, length=len(data))
            else:
                self.reply(200, None, data)
        elif method == "DELETE" and target == "/v2/":  # forget everything (between rounds)
            with lock:
                blobs.clear()
                manifests.clear()
                sessions.clear()
            self.reply(202)
        else:
            self.reply(200, None, b"{}")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs of concurrent connects: 1 s retransmits
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
        server.serve_forever()
