"""The twistd entry point: options, the embedded default, HTTPS, and the service tree."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import bcrypt

from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.error import ConnectionDone
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from treq.client import HTTPClient
from zope.interface import implementer

from tests import negotiating
from tests.certs import CertificateAuthority
from tests.driversuite import async_test
from tests.support import http_client
from zotpy.config import parse_config
from zotpy.tap import MOST_WORKERS, ListenerService, Options, build_service, worker_count, worker_logging


def config_for(root: str, **http: object) -> dict:
    return {
        "storage": {"rootDirectory": root, "dedupe": False, "gc": False},
        "http": {"address": "127.0.0.1", "port": 0, **http},
    }


@implementer(IPolicyForHTTPS)
class _TrustPolicy:
    """Verify the server against one CA, optionally presenting a client certificate."""

    def __init__(self, ca_pem: bytes, client: ssl.PrivateCertificate | None = None) -> None:
        self.trust = ssl.Certificate.loadPEM(ca_pem)
        self.client = client

    def creatorForNetloc(self, hostname: bytes, port: int):  # type: ignore[no-untyped-def]
        return ssl.optionsForClientTLS(hostname.decode(), self.trust, clientCertificate=self.client)


class OptionsTests(unittest.TestCase):
    def test_workers(self) -> None:
        """``--workers``: a number, or auto (the default): one per core up to MOST_WORKERS."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.workers, worker_count("auto", os.cpu_count()))
        options = Options()
        options.parseOptions(["--workers", "3"])
        self.assertEqual(options.workers, 3)
        self.assertEqual(worker_count("auto", 2), 2)
        self.assertEqual(worker_count("auto", 64), MOST_WORKERS)
        self.assertEqual(worker_count("auto", None), 1)
        for wrong in ("0", "-2", "many"):
            error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--workers", wrong])
            self.assertIn(f"--workers: {wrong!r}", str(error))
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--worker-index", "1"])
        self.assertIn("--worker-locks", str(error))

    def test_workers_log_where_worker_0_logs(self) -> None:
        self.assertEqual(worker_logging({"nodaemon": True, "logfile": None}), [])  # stdout, inherited
        self.assertEqual(worker_logging({"nodaemon": False, "logfile": None}), [f"--logfile={os.path.abspath('twistd.log')}"])
        self.assertEqual(worker_logging({"logfile": "zotpy.log"}), [f"--logfile={os.path.abspath('zotpy.log')}"])
        self.assertEqual(worker_logging({"logfile": "-"}), ["--logfile=-"])
        self.assertEqual(worker_logging({"syslog": True, "prefix": "zotpy"}), ["--syslog", "--prefix=zotpy"])
        self.assertEqual(worker_logging({"logger": "my.observer"}), ["--logger=my.observer"])

    def test_no_config_is_the_embedded_default(self) -> None:
        cwd = os.getcwd()
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.config.storage.root_directory, os.path.join(cwd, "zotpy-data"))
        self.assertEqual((options.config.http.address, options.config.http.port), ("127.0.0.1", 5000))

    def test_config_problems_are_a_usage_error_naming_the_key(self) -> None:
        path = self.mktemp()
        with open(path, "w") as stream:
            stream.write('{"storage": {"rootDirectory": "/tmp/x"}, "http": {"port": "eighty"}}')
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", path])
        self.assertIn("http.port", str(error))

    def test_process_that_is_no_member_is_a_usage_error(self) -> None:
        """Decided in postOptions, so twistd prints the message (no traceback) and exits non-zero."""
        path = self.mktemp()
        with open(path, "w") as stream:
            json.dump({
                "storage": {"rootDirectory": self.mktemp(), "dedupe": False, "gc": False},
                "http": {"address": "127.0.0.4", "port": "9000"},
                "cluster": {"members": ["127.0.0.1:9000", "127.0.0.2:9000"], "hashKey": "loremipsumdolors"},
            }, stream)
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", path])
        self.assertIn("none of cluster.members", str(error))

    def test_tls_key_of_another_certificate_is_a_usage_error(self) -> None:
        """TLS material is checked before anything listens (the same preflight as ``zotpy verify``),
        so a key that does not match its certificate is a message with its key path, not a traceback."""
        authority = CertificateAuthority(self.mktemp())
        server, other = authority.issue("server", ["127.0.0.1"]), authority.issue("other", ["127.0.0.1"])
        path = self.mktemp()
        with open(path, "w") as stream:
            json.dump({
                "storage": {"rootDirectory": self.mktemp(), "dedupe": False, "gc": False},
                "http": {"address": "127.0.0.1", "port": "0", "tls": {"cert": server.cert_path, "key": other.key_path}},
            }, stream)
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", path])
        self.assertIn("http.tls.key: does not match the certificate in http.tls.cert", str(error))

    def test_missing_config_file(self) -> None:
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", "/nonexistent/zot.json"])
        self.assertIn("/nonexistent/zot.json", str(error))


class ServiceTests(unittest.TestCase):
    def start(self, document: dict) -> str:
        service = build_service(parse_config(document))
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        return f"{listener.port.getHost().host}:{listener.port.getHost().port}"

    def tls_material(self) -> tuple[CertificateAuthority, dict]:
        authority = CertificateAuthority(self.mktemp())
        server = authority.issue("server", ["127.0.0.1", "localhost"])
        return authority, {"cert": server.cert_path, "key": server.key_path}

    @async_test
    async def test_serves_plain_http_and_creates_the_root(self) -> None:
        root = os.path.join(self.mktemp(), "data")
        address = self.start(config_for(root))
        response = await http_client(self).get(f"http://{address}/v2/")
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.json(), {})
        self.assertTrue(os.path.isdir(root))

    @async_test
    async def test_http_auth_guards_everything_but_the_probes(self) -> None:
        """http.auth wraps the whole site: the API asks for credentials, the probes do not."""
        directory = self.mktemp()
        os.makedirs(directory)
        htpasswd = os.path.join(directory, "htpasswd")
        with open(htpasswd, "wb") as stream:
            stream.write(b"admin:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)) + b"\n")
        address = self.start(config_for(os.path.join(directory, "data"), auth={"htpasswd": {"path": htpasswd}}))
        client = http_client(self)
        refused = await client.get(f"http://{address}/v2/")
        self.assertEqual(refused.code, 401)
        self.assertEqual(refused.headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="zot"'])
        self.assertEqual(json.loads(await refused.content())["errors"][0]["code"], "UNAUTHORIZED")
        probe = await client.get(f"http://{address}/livez")
        await probe.content()
        self.assertEqual(probe.code, 200)
        allowed = await client.get(f"http://{address}/v2/", headers={"Authorization": "Basic YWRtaW46cHc="})
        self.assertEqual(await allowed.json(), {})
        self.assertEqual(allowed.code, 200)

    @async_test
    async def test_serves_https(self) -> None:
        authority, tls = self.tls_material()
        address = self.start(config_for(self.mktemp(), tls=tls))
        client = self.tls_client(authority.pair.cert_pem())
        response = await client.get(f"https://{address}/v2/")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Docker-Distribution-API-Version"), ["registry/2.0"])
        # A blob large enough to be streamed in (zotpy.api.streaming) comes through TLS whole.
        blob = os.urandom(3 * 1024 * 1024 + 17)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        pushed = await client.post(f"https://{address}/v2/big/blobs/uploads/?digest={digest}", data=blob)
        self.assertEqual(pushed.code, 201, await pushed.text())
        pulled = await client.get(f"https://{address}/v2/big/blobs/{digest}")
        self.assertEqual(hashlib.sha256(await pulled.content()).hexdigest(), digest.split(":")[1])

    @async_test
    async def test_clients_that_offer_alpn_get_http_1_1(self) -> None:
        """curl (with and without --http1.1), openssl s_client and Python's ssl all offer ALPN
        (h2 and http/1.1, as Go's net/http does); each must get http/1.1 and a reply, not an alert."""
        authority, tls = self.tls_material()
        address = self.start(config_for(self.mktemp(), tls=tls))
        url, ca = f"https://{address}/v2/", authority.pair.cert_path
        exchanges = {
            "curl": await negotiating.curl(url, ca),
            "curl --http1.1": await negotiating.curl(url, ca, http1_only=True),
            "openssl s_client": await negotiating.openssl_s_client(url, ca),
            "python ssl": await negotiating.python_ssl(url, ca),
        }
        for client, exchange in exchanges.items():
            self.assertEqual((exchange.alpn, exchange.status, exchange.body), ("http/1.1", 200, b"{}"), client)

    @async_test
    async def test_cacert_requires_a_client_certificate(self) -> None:
        authority, tls = self.tls_material()
        address = self.start(config_for(self.mktemp(), tls={**tls, "cacert": authority.pair.cert_path}))
        anonymous = self.tls_client(authority.pair.cert_pem())
        with self.assertRaises(ResponseNeverReceived):
            await anonymous.get(f"https://{address}/v2/")

        client_pair = authority.issue("client", [], client=True)
        identity = ssl.PrivateCertificate.loadPEM(client_pair.cert_pem() + client_pair.key_pem())
        known = self.tls_client(authority.pair.cert_pem(), identity)
        self.assertEqual((await known.get(f"https://{address}/v2/")).code, 200)

    @async_test
    async def test_client_certificate_from_another_ca_is_refused(self) -> None:
        authority, tls = self.tls_material()
        address = self.start(config_for(self.mktemp(), tls={**tls, "cacert": authority.pair.cert_path}))
        stranger = CertificateAuthority(self.mktemp(), name="another CA").issue("client", [], client=True)
        identity = ssl.PrivateCertificate.loadPEM(stranger.cert_pem() + stranger.key_pem())
        with self.assertRaises(ResponseNeverReceived):
            await self.tls_client(authority.pair.cert_pem(), identity).get(f"https://{address}/v2/")

    @async_test
    async def test_port_in_use_fails_at_start(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        service = build_service(parse_config(config_for(self.mktemp(), port=taken.getsockname()[1])))
        self.assertRaises(Exception, service.startService)
        await service.stopService()

    @async_test
    async def test_tls_handshake_on_plain_port_gets_400_and_an_orderly_close(self) -> None:
        """A client probing https on the plain port gets an HTTP reply and a FIN at once, not a reset
        (go-containerregistry retries a reset twice before it falls back to http) and not silence.
        The ClientHello comes in two writes, as a large one does: the rest must not cause a reset."""
        host, port = self.start(config_for(self.mktemp())).split(":")
        closed: defer.Deferred[BaseException] = defer.Deferred()
        received: list[bytes] = []
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500  # no CRLF anywhere

        class Probe(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(hello[:11])

            def dataReceived(self, data: bytes) -> None:
                if not received:
                    self.transport.write(hello[11:])
                received.append(data)

            def connectionLost(self, reason: Failure) -> None:
                closed.callback(reason.value)  # the exception itself: a Failure would errback

        await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), Probe())
        timeout = reactor.callLater(2, closed.cancel)
        reason = await closed
        self.assertTrue(timeout.active(), "the server waited for a request line")
        timeout.cancel()
        reply = b"".join(received)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply)
        self.assertIn(b"Connection: close", reply)
        self.assertIsInstance(reason, ConnectionDone, "closed by a reset, not a FIN")

    def tls_client(self, ca_pem: bytes, identity: ssl.PrivateCertificate | None = None) -> HTTPClient:
        pool = HTTPConnectionPool(reactor, persistent=False)
        return HTTPClient(Agent(reactor, contextFactory=_TrustPolicy(ca_pem, identity), pool=pool))
