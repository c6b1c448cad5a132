"""Bearer credentials for the spec matrix: what a Docker client does with a registry that wants tokens.

A request goes out with the token kept for its repository (none at first); a 401 whose
``WWW-Authenticate`` is a ``Bearer`` challenge names the scopes the registry wants
(``repository:NAME:pull,push``, ``registry:catalog:*``), the token service grants them, and the
request is sent again with the new token. So the matrix checks the challenges' scopes as well as the
verification of the tokens: a wrong scope in a challenge costs a case.

The token service is :class:`tests.tokenservice.TokenService`'s signer, used in the test process
(the registry never calls the token service; it only verifies what the service signed), granting
whatever is asked, as a service would to a user allowed everything.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urlsplit

from tests.tokenservice import TokenService
from zotpy.api.routes import match

_PARAMETER = re.compile(r'(\w+)="([^"]*)"')


def challenge_scopes(challenge: str) -> list[tuple[str, str, frozenset[str]]] | None:
    """The scopes of a ``Bearer`` challenge as ``(type, name, actions)``; None when the challenge is
    not a Bearer one (a client with tokens has nothing to ask for then)."""
    scheme, _, parameters = challenge.partition(" ")
    if scheme.lower() != "bearer":
        return None
    values = dict(_PARAMETER.findall(parameters))
    scopes = []
    for scope in values.get("scope", "").split():
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        scopes.append((kind, name, frozenset(actions.split(","))))
    return scopes


class BearerCredentials:
    """Tokens per repository, asked for when the registry challenges (see the module's docstring)."""

    def __init__(self, service: TokenService, subject: str) -> None:
        self.service = service
        self.subject = subject
        # repository of the request (None: no repository) -> (type, name) -> actions granted so far
        self._grants: dict[str | None, dict[tuple[str, str], frozenset[str]]] = {}
        self._tokens: dict[str | None, str] = {}

    @staticmethod
    def _key(url: str) -> str | None:
        found = match("GET", urlsplit(url).path)
        return found.repository if found is not None else None

    def headers(self, url: str) -> Mapping[str, str]:
        """What to send with a request to ``url``: the token kept for its repository, if any."""
        token = self._tokens.get(self._key(url))
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    def challenged(self, url: str, challenge: str) -> bool:
        """Learn from a 401's challenge: ask for its scopes (adding to what this repository's token
        already grants); True when there is a new token to send the request again with."""
        scopes = challenge_scopes(challenge)
        if scopes is None:
            return False
        key = self._key(url)
        grants = self._grants.setdefault(key, {})
        for kind, name, actions in scopes:
            grants[kind, name] = grants.get((kind, name), frozenset()) | actions
        access = [{"type": kind, "name": name, "actions": sorted(actions)} for (kind, name), actions in grants.items()]
        self._tokens[key] = self.service.token(self.subject, access)
        return True
