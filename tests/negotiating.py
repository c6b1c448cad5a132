"""Clients that negotiate the application protocol with ALPN, as real registry clients do
(curl, Go's net/http in docker, containerd, crane, helm; Python's requests): each makes one GET
over HTTPS and reports which protocol the server chose and what it answered.

The tests' own client (treq) offers no ALPN, which is how a server that failed every ALPN
handshake went unnoticed. These run outside the reactor thread (curl and openssl as child
processes, Python's ssl in a thread), so an in-process server keeps serving meanwhile.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import attrs
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue

from tests.certs import PemPair
from tests.integration.daemon import require_binary

OFFERED = ("h2", "http/1.1")  # what Go's net/http and curl offer by default


@attrs.frozen
class Exchange:
    """What one negotiating client saw: the ALPN protocol chosen ("" for none) and the reply."""

    alpn: str
    status: int
    body: bytes


def _client_args(flag_cert: str, flag_key: str, client: PemPair | None) -> list[str]:
    return [flag_cert, client.cert_path, flag_key, client.key_path] if client is not None else []


async def curl(url: str, cafile: str, client: PemPair | None = None, http1_only: bool = False) -> Exchange:
    """``curl`` as a user runs it: it offers h2 and http/1.1 unless told ``--http1.1``."""
    args = ["-sS", "--max-time", "20", "--cacert", cafile, "-o", "-", "-w", "\n%{http_version} %{http_code}"]
    args += _client_args("--cert", "--key", client) + (["--http1.1"] if http1_only else []) + ["-v", url]
    out, err, code = await getProcessOutputAndValue(require_binary("curl"), args, reactor=reactor)
    if code != 0:
        raise AssertionError(f"curl {url} exited {code}: {err.decode(errors='replace')}")
    body, _, trailer = out.rpartition(b"\n")
    version, status = trailer.decode().split()
    chosen = next(
        (line.split(b"ALPN: server accepted ", 1)[1].strip().decode()
         for line in err.splitlines() if b"ALPN: server accepted " in line),
        "",
    )
    if version != "1.1":
        raise AssertionError(f"curl spoke HTTP/{version} (ALPN {chosen!r})")
    return Exchange(chosen, int(status), body)


def _request(url: str) -> bytes:
    parts = urlsplit(url)
    return (
        f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nUser-Agent: zotpy-tests\r\nConnection: close\r\n\r\n"
    ).encode()


def _parse(reply: bytes) -> tuple[int, bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 "):
        raise AssertionError(f"not an HTTP/1.1 reply: {reply[:200]!r}")
    lengths = [line.split(b":", 1)[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    if len(lengths) != 1:
        raise AssertionError(f"these clients read fixed-length replies only: {head!r}")
    return int(status_line.split()[1]), body[: int(lengths[0])]


async def openssl_s_client(url: str, cafile: str, client: PemPair | None = None) -> Exchange:
    """``openssl s_client -alpn h2,http/1.1``: the handshake as OpenSSL reports it, then a raw GET."""
    parts = urlsplit(url)
    args = ["s_client", "-connect", parts.netloc, "-servername", parts.hostname or "", "-CAfile", cafile,
            "-verify_return_error", "-alpn", ",".join(OFFERED), "-ign_eof"]
    args += _client_args("-cert", "-key", client)
    out, err, code = await getProcessOutputAndValue(require_binary("openssl"), args, reactor=reactor, stdinBytes=_request(url))
    if code != 0:
        raise AssertionError(f"openssl s_client {parts.netloc} exited {code}: {err.decode(errors='replace')}")
    alpn = next(
        (line.split(b":", 1)[1].strip().decode() for line in out.splitlines() if line.startswith(b"ALPN protocol:")),
        "",
    )
    # The reply follows the session summary (TLS 1.3 session tickets print more after the body,
    # hence the cut at Content-Length).
    status, body = _parse(out[out.find(b"HTTP/1.1 "):])
    return Exchange(alpn, status, body)


def _python_ssl(url: str, cafile: str, client: PemPair | None) -> Exchange:
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(list(OFFERED))
    if client is not None:
        context.load_cert_chain(client.cert_path, client.key_path)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
            tls.sendall(_request(url))
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
            alpn = tls.selected_alpn_protocol() or ""
    status, body = _parse(b"".join(chunks))
    return Exchange(alpn, status, body)


async def python_ssl(url: str, cafile: str, client: PemPair | None = None) -> Exchange:
    """Python's ``ssl`` with ALPN set (what ``requests`` and oras-py do through urllib3)."""
    return await deferToThread(_python_ssl, url, cafile, client)
