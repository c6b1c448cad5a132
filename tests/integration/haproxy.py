"""Real HAProxy (``/usr/sbin/haproxy``, Debian package ``haproxy``) in front of replicas.

The generated configuration is the one zot documents for a scale-out cluster
(``tests/fixtures/configs/haproxy-scaleout.cfg``), adapted to a test: HTTP
mode, ``balance roundrobin``, the sticky ``cookie SERVER insert indirect
nocache``, health checks ``GET /v2/`` on every server, a frontend on a free
loopback port; no chroot, no ``/dev/log`` (HAProxy logs its HTTP log lines to
stdout, which goes to ``<workdir>/haproxy.log``), ``-db`` to stay in the
foreground. A missing binary FAILS the test (``.ci/run`` installs it).

Each server is named ``zot<i>`` (``i`` = the replica index) and its cookie
value is the same name, so :meth:`HAProxy.served_by` tells from HAProxy's own
log which replica got each request.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Collection, Sequence

import attr

from tests.integration.daemon import LocalHTTPServer, free_port, require_binary

HAPROXY = "/usr/sbin/haproxy"


def haproxy_binary() -> str:
    """The HAProxy executable, or FAIL the running test."""
    if os.access(HAPROXY, os.X_OK):
        return HAPROXY
    return require_binary("haproxy", "haproxy")


def haproxy_config(
    port: int,
    servers: Sequence[str],
    check_interval_ms: int = 500,
    timeout_server_s: int = 60,
    admin_socket: str | None = None,
    disabled: Collection[int] = (),
) -> str:
    """The configuration text: ``servers`` are ``host:port`` of the replicas, in order. With
    ``admin_socket``, HAProxy's runtime API listens there (to drain or enable servers); servers whose
    index is in ``disabled`` start in maintenance (no traffic until enabled)."""
    lines = [
        "global",
        "    maxconn 1000",
        "    log stdout format raw local0",
        *([f"    stats socket {admin_socket} level admin"] if admin_socket else []),
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    timeout connect 5s",
        "    timeout client 60s",
        f"    timeout server {timeout_server_s}s",
        "",
        "frontend zot",
        f"    bind 127.0.0.1:{port}",
        "    default_backend zot-cluster",
        "",
        "backend zot-cluster",
        "    balance roundrobin",
        "    cookie SERVER insert indirect nocache",
        "    option httpchk GET /readyz",  # as etc/cluster/haproxy.cfg: no credentials needed
        "    http-check expect status 200",
    ]
    for index, server in enumerate(servers):
        lines.append(
            f"    server zot{index} {server} check inter {check_interval_ms} fall 2 rise 2 cookie zot{index}"
            + (" disabled" if index in disabled else "")
        )
    return "\n".join(lines) + "\n"


@attr.s(auto_attribs=True, frozen=True)
class HAProxyLogEntry:
    server: str  # "zot0"... or "<NOSRV>"
    status: int
    method: str
    path: str


# frontend backend/server Tq/Tw/Tc/Tr/Ta status bytes ... "METHOD PATH HTTP/1.1"
_LOG_LINE = re.compile(
    r" zot zot-cluster/(?P<server>\S+) \S+ (?P<status>-?\d+) .*\"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+\""
)


class HAProxy(LocalHTTPServer):
    """HAProxy on ``127.0.0.1:<free port>`` balancing over ``servers``.

    :param workdir: a fresh directory for the config and the log.
    :param servers: ``host:port`` of each replica (plain HTTP).
    """

    def __init__(
        self, workdir: str, servers: Sequence[str], check_interval_ms: int = 500, disabled: Collection[int] = ()
    ) -> None:
        workdir = os.path.abspath(workdir)
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.servers = list(servers)
        self.config_path = os.path.join(workdir, "haproxy.cfg")
        # An abstract Unix socket (Linux): no path-length limit, nothing left on disk.
        self.admin_socket = f"abns@zotpy-haproxy-{os.getpid()}-{self.port}"
        with open(self.config_path, "w") as f:
            f.write(haproxy_config(self.port, self.servers, check_interval_ms, admin_socket=self.admin_socket,
                                   disabled=disabled))
        super().__init__(
            name="haproxy",
            argv=[haproxy_binary(), "-db", "-f", self.config_path],
            workdir=workdir,
            ready_url=f"http://127.0.0.1:{self.port}/livez",
        )

    async def set_state(self, index: int, state: str) -> str:
        """``set server zot-cluster/zot<index> state <state>`` on the runtime API (``ready``,
        ``drain``, ``maint``), as an operator adds or retires a replica; HAProxy's answer."""
        from twisted.internet.threads import deferToThread

        def send() -> str:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(5)
                # HAProxy binds the abstract name padded with NULs to the whole sun_path (108 bytes).
                connection.connect(("\0" + self.admin_socket.removeprefix("abns@")).ljust(108, "\0"))
                connection.sendall(f"set server zot-cluster/zot{index} state {state}\n".encode())
                answer = b""
                while chunk := connection.recv(4096):
                    answer += chunk
                return answer.decode("utf-8", "replace").strip()

        answer = await deferToThread(send)
        if answer:
            raise AssertionError(f"HAProxy refused 'set server zot{index} state {state}': {answer}")
        return answer

    def entries(self) -> list[HAProxyLogEntry]:
        """HAProxy's HTTP log lines so far (health checks are not logged)."""
        return [
            HAProxyLogEntry(m["server"], int(m["status"]), m["method"], m["path"])
            for m in _LOG_LINE.finditer(self.log_text())
        ]

    def served_by(self) -> dict[str, int]:
        """How many logged requests each server answered."""
        counts: dict[str, int] = {}
        for entry in self.entries():
            counts[entry.server] = counts.get(entry.server, 0) + 1
        return counts
