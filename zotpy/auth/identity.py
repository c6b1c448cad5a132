"""Who a request comes from, once authenticated, and the boundary every authenticator implements."""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import Attribute, Interface


@attrs.frozen
class Identity:
    """A user name and the groups an authenticator found for it (LDAP groups, for instance).

    Groups from ``accessControl.groups`` are not here: the policy adds those, since they belong to the
    access rules and not to how the user proved who they are. ``name`` "" is the anonymous caller,
    as in zot.
    """

    name: str
    groups: frozenset[str] = frozenset()
    #: For a bearer token: what its ``access`` claim grants, as ``(type, name, action)``
    #: (``("repository", "team/app", "pull")``); access control is then the token's, not the policy's.
    #: None for every other way of authenticating.
    grants: frozenset[tuple[str, str, str]] | None = None
    #: When the credentials stop being valid (seconds since the epoch), if they say so (a token's ``exp``).
    expires: float | None = None

    @property
    def anonymous(self) -> bool:
        return not self.name


ANONYMOUS = Identity("")


class AuthenticationFailed(Exception):
    """The credentials were presented but are wrong or malformed (always answered 401, without
    saying which part was wrong, so the answer never tells whether a user name exists)."""


class IPasswordChecker(Interface):
    """Checks a user name and password (htpasswd, LDAP): what ``Authorization: Basic`` carries."""

    description = Attribute("A few words naming the source, for logs (never a secret).")

    def check(username: str, password: str) -> Any:
        """A Deferred firing with the :class:`Identity`, or failing with :class:`AuthenticationFailed`
        (wrong credentials) or ``RegistryError`` UNAVAILABLE (the source cannot answer now)."""


class IAuthenticator(Interface):
    """One ``Authorization`` scheme (Basic, Bearer): turns the header's credentials into an identity."""

    scheme = Attribute("The scheme's name, lower case (b'basic', b'bearer').")

    def authenticate(credentials: bytes) -> Any:
        """A Deferred firing with the :class:`Identity` for ``credentials`` (the header after the
        scheme and its space), or failing with :class:`AuthenticationFailed` or ``RegistryError``."""

    def challenge(realm: str, scope: str | None) -> str:
        """The ``WWW-Authenticate`` value that asks a client for this scheme's credentials; ``scope``
        is what the request needs in the Docker token notation (``repository:NAME:pull,push``)."""
