"""The spec matrix with authentication and access control on, where auth must not cost a single case:

- ``Auth``: htpasswd (bcrypt) and a policy that allows the one user everything, every request
  sending its credentials;
- ``Bearer``: ``http.auth.bearer``, every request sending the token the client got for the scope the
  registry's challenge named (:mod:`tests.spec.credentials`: the Docker token dance, so a wrong
  scope in a challenge fails a case too).

sha256 on local storage, direct and through a non-owner (the storage and digest columns do not meet
the auth code; through a non-owner, both replicas verify the credentials)."""

from __future__ import annotations

import base64
import os
import tempfile

import attr
import bcrypt

from tests.spec.credentials import BearerCredentials
from tests.spec.deployments import DIRECT, LOCAL, NON_OWNER, Variant
from tests.spec.matrix import variants_of
from tests.spec.test_delete import DeleteBehaviours
from tests.spec.test_errors import ErrorBehaviours
from tests.spec.test_listing import ListingBehaviours
from tests.spec.test_manifests import ManifestBehaviours
from tests.spec.test_pull import PullBehaviours
from tests.spec.test_push import PushBehaviours
from tests.spec.test_ranges import RangeBehaviours
from tests.spec.test_referrers import ReferrerBehaviours
from tests.spec.test_uploads import UploadBehaviours
from tests.tokenservice import TokenService

USER, PASSWORD = "spec", "spec-password"


def _htpasswd() -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="zotpy-spec-auth-"), "htpasswd")
    with open(path, "wb") as stream:
        stream.write(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)) + b"\n")
    return path


_CONFIG = {
    "http": {
        "auth": {"htpasswd": {"path": _htpasswd()}},
        "accessControl": {
            "repositories": {"**": {"policies": [{"users": [USER], "actions": ["read", "create", "update", "delete"]}]}},
        },
    }
}
_HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

AUTH_VARIANTS = tuple(
    attr.evolve(Variant("sha256", LOCAL, path), config=_CONFIG, headers=_HEADERS, label="Auth")
    for path in (DIRECT, NON_OWNER)
)

_TOKENS = TokenService(tempfile.mkdtemp(prefix="zotpy-spec-tokens-"), {}, service="zotpy-spec")
_BEARER_CONFIG = {
    "http": {
        # The realm is only handed to clients in challenges: the test signs the tokens itself.
        "auth": {"bearer": {"realm": "https://tokens.invalid/token", "service": _TOKENS.service,
                            "cert": _TOKENS.cert_path}},
    }
}
BEARER_VARIANTS = tuple(
    attr.evolve(Variant("sha256", LOCAL, path), config=_BEARER_CONFIG, credentials=BearerCredentials(_TOKENS, USER),
                label="Bearer")
    for path in (DIRECT, NON_OWNER)
)

for _behaviours in (
    DeleteBehaviours, ErrorBehaviours, ListingBehaviours, ManifestBehaviours, PullBehaviours, PushBehaviours,
    RangeBehaviours, ReferrerBehaviours, UploadBehaviours,
):
    for _name, _case in variants_of(_behaviours, AUTH_VARIANTS + BEARER_VARIANTS).items():
        _case.__module__ = __name__  # trial -j loads each test by module and class name
        globals()[_name] = _case
del _behaviours, _name, _case  # else trial finds the last case a second time, under ``_case``
