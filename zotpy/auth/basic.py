"""``Authorization: Basic``: decoding the credentials and checking them against password sources."""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from zope.interface import implementer

from zotpy.auth.identity import ANONYMOUS, AuthenticationFailed, IAuthenticator, Identity, IPasswordChecker

#: Longer credentials are refused without decoding: no real user name and password come near it.
MAX_CREDENTIALS_BYTES = 4096


def decode_basic(credentials: bytes) -> tuple[str, str]:
    """``user:password`` from the base64 part of a Basic header (``("", "")`` for the empty ``:``);
    AuthenticationFailed for anything else (not base64, not UTF-8, no colon, empty user name, too long)."""
    token = credentials.strip()
    if not token or len(token) > MAX_CREDENTIALS_BYTES:
        raise AuthenticationFailed("malformed basic credentials")
    try:
        text = b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("malformed basic credentials") from None
    username, colon, password = text.partition(":")
    if text == ":":
        return "", ""  # what clients told to send no credentials send after a challenge (skopeo --no-creds)
    if not colon or not username:
        raise AuthenticationFailed("malformed basic credentials")
    return username, password


@implementer(IAuthenticator)
class BasicAuthenticator:
    """Tries each password source in zot's order (htpasswd, then LDAP); the first that knows the
    user and password wins. A source that cannot answer (LDAP down) fails the whole check with its
    error rather than letting a later source decide, so an outage never looks like a wrong password."""

    scheme = b"basic"

    def __init__(self, checkers: Sequence[IPasswordChecker]) -> None:
        self.checkers = tuple(checkers)

    def challenge(self, realm: str, scope: str | None = None) -> str:
        return f'Basic realm="{_quoted(realm)}"'

    def authenticate(self, credentials: bytes) -> Deferred[Identity]:
        return Deferred.fromCoroutine(self._authenticate(credentials))

    async def _authenticate(self, credentials: bytes) -> Identity:
        username, password = decode_basic(credentials)
        if not username and not password:
            return ANONYMOUS  # the resource decides whether anonymous may go on
        for checker in self.checkers:
            try:
                identity: Identity = await checker.check(username, password)
                return identity
            except AuthenticationFailed:
                continue
        raise AuthenticationFailed("wrong credentials")


def _quoted(text: str) -> Any:
    return text.replace("\\", "\\\\").replace('"', '\\"')
