"""``http.auth.bearer``: JSON Web Tokens from an external token service (the Docker token flow).

A client without a token gets 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``,
asks the token service at ``realm`` for a token for that scope, and comes back with
``Authorization: Bearer <jwt>``. The token is accepted when its signature verifies with the public
key of the configured certificate (asymmetric algorithms only, chosen by the key's type, so a token
can never choose ``none`` or an HMAC keyed with the public key), it has not expired (``exp`` is
required; ``nbf`` is honoured), and its ``aud`` is the configured ``service``. What it may do is its
``access`` claim: ``[{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]``.
"""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.internet.defer import Deferred, fail, succeed
from OpenSSL import crypto
from zope.interface import implementer

from zotpy.auth.identity import AuthenticationFailed, IAuthenticator, Identity
from zotpy.transport.tls import pem_certificates

#: Longer tokens are refused without parsing.
MAX_TOKEN_BYTES = 16384
#: Seconds of clock difference tolerated on ``exp`` and ``nbf``.
LEEWAY_SECONDS = 30


class VerificationKeyError(ValueError):
    """The file holds no certificate or public key zotpy can verify tokens with."""


def load_verification_key(path: str) -> Any:
    """The public key of the PEM certificate (the first of a bundle: the signer's, with its chain
    after it) or PEM public key at ``path``."""
    with open(path, "rb") as stream:
        data = stream.read()
    try:
        certificates = pem_certificates(data)
        if certificates:
            key = certificates[0].original.to_cryptography().public_key()
        else:
            key = load_pem_public_key(data)
    except (ValueError, crypto.Error) as error:
        raise VerificationKeyError(f"{path!r} holds no PEM certificate or public key: {error}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise VerificationKeyError(f"{path!r}: the key must be RSA, EC or Ed25519")
    return key


def _algorithms(key: Any) -> list[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ["ES256", "ES384", "ES512"]
    return ["EdDSA"]


def scope_grants(access: Any) -> frozenset[tuple[str, str, str]]:
    """The ``access`` claim as ``(type, name, action)`` triples; anything malformed grants nothing."""
    grants: set[tuple[str, str, str]] = set()
    if not isinstance(access, list):
        return frozenset()
    for entry in access:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
            grants.update((kind, name, action) for action in actions if isinstance(action, str))
    return frozenset(grants)


@implementer(IAuthenticator)
class BearerAuthenticator:
    scheme = b"bearer"

    def __init__(self, realm: str, service: str, key: Any) -> None:
        self.realm = realm
        self.service = service
        self.key = key
        self.algorithms = _algorithms(key)

    def challenge(self, realm: str, scope: str | None = None) -> str:
        """The Docker token challenge (``realm`` here is the token service's, not ``http.realm``)."""
        parts = [f'realm="{self.realm}"', f'service="{self.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        return "Bearer " + ",".join(parts)

    def authenticate(self, credentials: bytes) -> Deferred[Identity]:
        token = credentials.strip()
        if not token or len(token) > MAX_TOKEN_BYTES:
            return fail(AuthenticationFailed("malformed token"))
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.service,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "aud"]},
            )
        except jwt.PyJWTError:
            # expired, not yet valid, wrong audience, bad signature, not a JWT: all the same to the client
            return fail(AuthenticationFailed("token refused"))
        subject = claims.get("sub")
        expires = claims.get("exp")
        return succeed(
            Identity(
                subject if isinstance(subject, str) else "",
                grants=scope_grants(claims.get("access")),
                expires=float(expires) if isinstance(expires, (int, float)) else None,
            )
        )
