"""Mutual TLS identities (``http.tls.cacert``): the verified client certificate's subject CN.

The listener verifies client certificates against ``http.tls.cacert`` during the handshake; this
module only reads the result. In a cluster, a request forwarded to the owner arrives over the peer
connection, whose certificate is the forwarding replica's, not the user's. The receiving replica
therefore states the user's identity in ``X-Zotpy-Client-Identity``, and the owner believes that
header only from a connection whose verified client certificate names a cluster member (an IP or
DNS subject alternative name, or the CN, equal to a member's host): replicas' certificates name
their addresses, users' certificates do not. A client cannot forge it: every replica drops the
header from any other connection, and sets it itself from the certificate it verified before
forwarding.
"""

from __future__ import annotations

from typing import Collection

import attrs
from twisted.web.iweb import IRequest

from zotpy.auth.identity import Identity
from zotpy.transport.peercerts import certificate_names, common_name, member_host, peer_certificate

IDENTITY_HEADER = b"X-Zotpy-Client-Identity"


@attrs.define
class ClientCertificates:
    """Who the TLS client is. ``member_hosts``: the hosts of ``cluster.members``."""

    member_hosts: frozenset[str]

    @classmethod
    def for_members(cls, members: Collection[str]) -> ClientCertificates:
        return cls(frozenset(member_host(member) for member in members))

    def identify(self, request: IRequest) -> Identity | None:
        """The request's certificate identity, and the identity header set for forwarding: the
        forwarded identity when a member sent it, the certificate's CN otherwise."""
        headers = request.requestHeaders
        certificate = peer_certificate(request)
        forwarded = headers.getRawHeaders(IDENTITY_HEADER)
        headers.removeHeader(IDENTITY_HEADER)
        if certificate is None:
            return None
        if certificate_names(certificate) & self.member_hosts:
            if not forwarded:
                return None  # the member forwarded a request that had no certificate identity
            name = forwarded[0].decode("utf-8", "replace")
        else:
            name = common_name(certificate)
        if not name:
            return None
        headers.setRawHeaders(IDENTITY_HEADER, [name.encode("utf-8")])
        return Identity(name)

    def from_member(self, request: IRequest) -> bool:
        """Whether the TLS handshake verified a client certificate naming a member. Only the
        certificate counts, never the source address: an address proves nothing about who sent."""
        certificate = peer_certificate(request)
        return certificate is not None and bool(certificate_names(certificate) & self.member_hosts)
