"""Which member of ``cluster.members`` this process is.

zot's rule: pair every local interface address with ``http.port``, walk the members
in order resolving host names, and take the first member whose address and port
match; no match, or a name that cannot be resolved before the match, refuses the
start. zotpy applies it when ``http.address`` is unspecified (``0.0.0.0``, ``::``).
When the address is a specific IP, the member whose resolved address and port equal
``http.address:http.port`` is this process, and no other rule applies: the process
receives connections on that address only, so claiming any other member (as zot's
rule would, e.g. ``127.0.0.1:PORT`` for a replica bound to 127.0.0.4) would make it
serve another member's repositories. This is also what lets replicas share a port
on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (zot's rule alone makes all of them member 0).
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import socket
import struct
from typing import Callable, Iterable

import attrs

Resolver = Callable[[str], list[str]]

_UNSPECIFIED = {"", "0.0.0.0", "::"}


class IdentityError(Exception):
    """No member is this process: the start is refused with this message."""


@attrs.frozen
class Identity:
    index: int
    member: str
    rule: str  # how the member was chosen, for the startup log


def position(index: int, count: int) -> str:
    """``member 2 of 3`` for index 1: logs and commands count members from 1, as people do
    (the index is what the code and ``cluster.members[i]`` in config errors use)."""
    return f"member {index + 1} of {count}"


def split_member(member: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = member.rpartition(":")
    return host.strip("[]"), int(port)


def resolve(host: str) -> list[str]:
    """Every address of ``host`` (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux; the IPv4 address sits at bytes 20..24


def local_addresses() -> set[str]:
    """The addresses of this host's interfaces, loopback included (Linux: SIOCGIFCONF and /proc)."""
    addresses = {"127.0.0.1", "::1"}
    buffer = array.array("B", bytes(_IFREQ_SIZE * 128))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        request = struct.pack("iL", len(buffer), buffer.buffer_info()[0])
        length = struct.unpack("iL", fcntl.ioctl(probe.fileno(), _SIOCGIFCONF, request))[0]
        table = buffer.tobytes()
        for offset in range(0, length, _IFREQ_SIZE):
            addresses.add(socket.inet_ntoa(table[offset + 20 : offset + 24]))
    except OSError:
        pass
    finally:
        probe.close()
    try:
        with open("/proc/net/if_inet6") as stream:
            addresses.update(str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in stream)
    except OSError:
        pass
    return addresses


def identify(
    members: Iterable[str],
    address: str,
    port: int,
    local: Callable[[], set[str]] = local_addresses,
    resolver: Resolver = resolve,
) -> Identity:
    """Find this process in ``members`` (see the module docstring); raise IdentityError if absent."""
    members = list(members)
    parsed = [split_member(member) for member in members]
    if address not in _UNSPECIFIED:
        bound = set(_resolve_or_refuse("http.address", address, resolver))
        for index, (host, member_port) in enumerate(parsed):
            if member_port == port and bound & set(_resolve_or_refuse(members[index], host, resolver)):
                return Identity(index, members[index], f"http.address {address}:{port}")
        raise IdentityError(
            f"this process is none of cluster.members {members}: it listens on {address}:{port} "
            "only, and no member is that address and port"
        )
    sockets = {(ip, port) for ip in local()}
    for index, (host, member_port) in enumerate(parsed):
        if any((ip, member_port) in sockets for ip in _resolve_or_refuse(members[index], host, resolver)):
            return Identity(index, members[index], f"local interface address and port {port}")
    raise IdentityError(
        f"this process is none of cluster.members {members}: it listens on "
        f"{address or '*'}:{port} and the local addresses are {sorted(local())}"
    )


def _resolve_or_refuse(member: str, host: str, resolver: Resolver) -> list[str]:
    try:
        return resolver(host)
    except OSError as error:
        raise IdentityError(f"cannot resolve cluster member {member!r}: {error}") from None
