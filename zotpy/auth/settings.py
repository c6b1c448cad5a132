"""zot's ``http.auth`` and ``http.accessControl`` mappings, read into frozen objects.

The mappings arrive from :mod:`zotpy.config` with keys lower-cased (as viper hands them to zot,
repository globs included: OCI repository names are lower case anyway). Problems come back as
``(key path below http, sentence)`` in zot's spelling, for the config module to report; the
htpasswd file is read here, so a missing or malformed file stops the start naming its key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from zotpy.auth.htpasswd import HtpasswdError, read_htpasswd
from zotpy.jsontypes import json_type
from zotpy.keypath import KeyPathReader, join

ACTIONS = ("read", "create", "update", "delete")
#: zot's behaviour action (may a user see that a pushed manifest exists elsewhere); zotpy has no
#: such check, so it is accepted in a list and means nothing.
_BEHAVIOUR_ACTIONS = frozenset({"detectManifestCollision"})

#: ``(key path, sentence)``: what :mod:`zotpy.config` reports (problems) or logs (warnings).
Problems = list[tuple[str, str]]


@attrs.frozen
class HtpasswdSettings:
    path: str


@attrs.frozen
class BearerSettings:
    """``bearer``: the token service's URL (``realm``), the audience tokens must name (``service``),
    and the certificate whose key signs them (``cert``)."""

    realm: str
    service: str
    cert: str


@attrs.frozen
class LDAPSettings:
    """``ldap``, zot's keys. ``insecure``: plain LDAP; else ``startTLS`` or LDAPS. The search user's
    ``bindDN``/``bindPassword`` come from ``credentialsFile`` (or, as older zot wrote them, inline)."""

    address: str
    port: int
    base_dn: str
    user_attribute: str
    bind_dn: str = ""
    bind_password: str = attrs.field(default="", repr=False)
    user_filter: str = ""
    user_group_attribute: str = ""
    subtree_search: bool = False
    insecure: bool = False
    start_tls: bool = False
    skip_verify: bool = False
    ca_cert: str = ""


@attrs.frozen
class AuthSettings:
    """``http.auth``: which authenticators are on, and ``failDelay`` in seconds."""

    htpasswd: HtpasswdSettings | None = None
    bearer: BearerSettings | None = None
    ldap: LDAPSettings | None = None
    fail_delay: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.htpasswd is not None or self.bearer is not None or self.ldap is not None


@attrs.frozen
class Policy:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()


@attrs.frozen
class PolicyGroup:
    """One ``repositories`` entry."""

    policies: tuple[Policy, ...] = ()
    default_policy: frozenset[str] = frozenset()
    anonymous_policy: frozenset[str] = frozenset()


@attrs.frozen
class AccessSettings:
    """``http.accessControl``. ``groups`` maps a group to its users; ``metrics_users`` None means
    the ``metrics`` key is absent."""

    repositories: Mapping[str, PolicyGroup] = attrs.field(factory=dict)
    admin_policy: Policy = Policy()
    groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    metrics_users: frozenset[str] | None = None

    @property
    def anonymous_allowed(self) -> bool:
        """Whether any repository has an ``anonymousPolicy`` (zot then lets requests without
        credentials through authentication, to be judged by the policy)."""
        return any(group.anonymous_policy for group in self.repositories.values())


@attrs.frozen
class RateLimitSettings:
    """``rate`` for every request (None: no overall limit); ``methods`` per upper-case method."""

    rate: float | None = None
    methods: Mapping[str, float] = attrs.field(factory=dict)


class _Reader(KeyPathReader):
    """zot's auth keys on the shared key-path reader (:mod:`zotpy.keypath`): paths are whole
    (``http.auth.htpasswd.path``), unknown keys come with the nearest known one."""

    def mapping(self, value: Any, path: str, names: Mapping[str, str]) -> dict[str, Any]:
        """``value``'s keys under zot's spelling; a value that is not an object is a problem and
        reads as empty."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be an object, not {json_type(value)}")
            return {}
        return self.known(value, names, path)

    def strings(self, value: Any, path: str) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(path, f"must be an array of strings, not {json_type(value)}")
            return frozenset()
        return frozenset(value)

    def actions(self, value: Any, path: str) -> frozenset[str]:
        actions = self.strings(value, path)
        for action in sorted(actions - set(ACTIONS) - _BEHAVIOUR_ACTIONS):
            self.problem(path, f"{action!r} is not an action: use {', '.join(ACTIONS)}")
        return actions & frozenset(ACTIONS)

    def policy(self, value: Any, path: str) -> Policy:
        known = {"users": "users", "groups": "groups", "actions": "actions", "conditions": "conditions"}
        fields = self.mapping(value, path, known)
        if "conditions" in fields and fields["conditions"]:
            self.problem(
                join(path, "conditions"),
                "policy conditions (CEL expressions) are not implemented in zotpy; ignoring them would "
                "grant the policy's actions unconditionally: remove the conditions or the policy",
            )
        return Policy(
            users=self.strings(fields["users"], join(path, "users")) if "users" in fields else frozenset(),
            groups=self.strings(fields["groups"], join(path, "groups")) if "groups" in fields else frozenset(),
            actions=self.actions(fields["actions"], join(path, "actions")) if "actions" in fields else frozenset(),
        )


AUTH = "http.auth"
ACCESS = "http.accessControl"
RATELIMIT = "http.ratelimit"

_AUTH_KEYS = {
    "htpasswd": "htpasswd",
    "faildelay": "failDelay",
    "ldap": "ldap",
    "bearer": "bearer",
    "openid": "openid",
    "apikey": "apikey",
    "sessionkeysfile": "sessionKeysFile",
    "sessionhashkey": "sessionHashKey",
    "sessionencryptkey": "sessionEncryptKey",
    "sessiondriver": "sessionDriver",
    "securesession": "secureSession",
}
_NOT_YET = {
    "openid": "OpenID Connect logins are not available in zotpy (the web UI's logins)",
    "apikey": "API keys are not available in zotpy",
}


def read_auth(raw: Any) -> tuple[AuthSettings | None, Problems, Problems]:
    """``http.auth`` -> settings (None when it configures nothing), problems, warnings."""
    r = _Reader()
    fields = r.mapping(raw, AUTH, _AUTH_KEYS)
    for name, reason in _NOT_YET.items():
        if name in fields and fields[name] not in ({}, False):
            r.problem(join(AUTH, name), f"{reason}; ignoring it would refuse every user it should let in, or "
                      "let in users it should refuse: remove it, or use htpasswd")
    for name in ("sessionKeysFile", "sessionHashKey", "sessionEncryptKey", "sessionDriver", "secureSession"):
        if name in fields:
            r.warn(join(AUTH, name), "sessions belong to the web UI's logins, which zotpy does not have; ignored")
    htpasswd = _read_htpasswd(r, fields["htpasswd"]) if "htpasswd" in fields else None
    bearer = _read_bearer(r, fields["bearer"]) if fields.get("bearer") else None
    ldap = _read_ldap(r, fields["ldap"]) if fields.get("ldap") else None
    if bearer is not None and htpasswd is not None:
        r.warn(
            join(AUTH, "htpasswd"),
            "with http.auth.bearer, zot authenticates with tokens only (the token service checks "
            "passwords); the htpasswd file is not used",
        )
    fail_delay = 0.0
    if "failDelay" in fields:
        value = fields["failDelay"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
            r.problem(join(AUTH, "failDelay"), f"must be a number of seconds from 0 to 60, not {value!r}")
        else:
            fail_delay = float(value)
    settings = AuthSettings(htpasswd=htpasswd, bearer=bearer, ldap=ldap, fail_delay=fail_delay)
    return (settings if settings.enabled else None), r.problems, r.warnings


def _read_htpasswd(r: _Reader, raw: Any) -> HtpasswdSettings | None:
    """The file is read now: a missing or malformed one stops the start naming its key."""
    path = join(AUTH, "htpasswd.path")
    file = r.mapping(raw, join(AUTH, "htpasswd"), {"path": "path"}).get("path")
    if not isinstance(file, str) or not file:
        r.problem(path, "required: the htpasswd file (bcrypt entries, e.g. made with htpasswd -B)")
        return None
    try:
        read_htpasswd(file)
    except HtpasswdError as error:
        r.problem(path, str(error))
        return None
    return HtpasswdSettings(file)


def _read_bearer(r: _Reader, raw: Any) -> BearerSettings | None:
    base = join(AUTH, "bearer")
    section = r.mapping(raw, base, {"realm": "realm", "service": "service", "cert": "cert"})
    values = {}
    for key, what in (
        ("realm", "the token service's URL, given to clients in the challenge"),
        ("service", "the name tokens must carry as their audience (aud)"),
        ("cert", "the certificate (or public key) whose key signs the tokens, PEM"),
    ):
        value = section.get(key)
        if not isinstance(value, str) or not value:
            r.problem(join(base, key), f"required: {what}")
        else:
            values[key] = value
    if "cert" in values:
        from zotpy.auth.bearer import VerificationKeyError, load_verification_key  # jwt: only with bearer

        try:
            load_verification_key(values["cert"])
        except OSError as error:
            r.problem(join(base, "cert"), f"cannot read {values['cert']!r}: {error.strerror}")
            return None
        except VerificationKeyError as error:
            r.problem(join(base, "cert"), str(error))
            return None
    if len(values) < 3:
        return None
    return BearerSettings(values["realm"], values["service"], values["cert"])


_LDAP_KEYS = {
    name.lower(): name
    for name in (
        "credentialsFile", "port", "insecure", "startTLS", "skipVerify", "subtreeSearch", "address", "bindDN",
        "bindPassword", "userGroupAttribute", "baseDN", "userAttribute", "userFilter", "caCert",
    )
}


def _read_ldap(r: _Reader, raw: Any) -> LDAPSettings | None:
    base = join(AUTH, "ldap")
    fields = r.mapping(raw, base, _LDAP_KEYS)
    problems_before = len(r.problems)
    values: dict[str, Any] = {}
    for key in ("address", "baseDN", "userAttribute", "userFilter", "userGroupAttribute", "credentialsFile",
                "bindDN", "bindPassword", "caCert"):
        values[key] = r.typed(fields, key, base, str, "a string") or ""
    for key in ("address", "baseDN", "userAttribute"):
        if not values[key]:
            r.problem(join(base, key), "required")
    for key in ("insecure", "startTLS", "skipVerify", "subtreeSearch"):
        values[key] = r.typed(fields, key, base, bool, "a boolean (true or false)") or False
    port = fields.get("port", 389 if values["insecure"] or values["startTLS"] else 636)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        r.problem(join(base, "port"), f"must be a port number from 1 to 65535, not {port!r}")
        port = 0
    if values["userFilter"]:
        from ldaptor import ldapfilter  # pyparsing: paid only by configs with LDAP (startup time)

        try:
            ldapfilter.parseFilter(values["userFilter"])
        except ldapfilter.InvalidLDAPFilter as error:
            r.problem(join(base, "userFilter"), f"not an LDAP filter: {error}")
    if values["credentialsFile"]:
        _read_ldap_credentials(r, values, join(base, "credentialsFile"))
    if values["caCert"]:
        try:
            with open(values["caCert"], "rb"):
                pass
        except OSError as error:
            r.problem(join(base, "caCert"), f"cannot read {values['caCert']!r}: {error.strerror}")
    if len(r.problems) > problems_before:
        return None
    return LDAPSettings(
        address=values["address"], port=port, base_dn=values["baseDN"], user_attribute=values["userAttribute"],
        bind_dn=values["bindDN"], bind_password=values["bindPassword"], user_filter=values["userFilter"],
        user_group_attribute=values["userGroupAttribute"], subtree_search=values["subtreeSearch"],
        insecure=values["insecure"], start_tls=values["startTLS"], skip_verify=values["skipVerify"],
        ca_cert=values["caCert"],
    )


def _read_ldap_credentials(r: _Reader, values: dict[str, Any], path: str) -> None:
    """``bindDN``/``bindPassword`` from zot's ``credentialsFile`` (a JSON object) into ``values``."""
    name = values["credentialsFile"]
    try:
        with open(name, "rb") as stream:
            credentials = json.loads(stream.read())
        if not isinstance(credentials, dict):
            raise ValueError("not a JSON object")
    except OSError as error:
        r.problem(path, f"cannot read {name!r}: {error.strerror}")
        return
    except ValueError as error:
        r.problem(path, f'{name!r} is not {{"bindDN": ..., "bindPassword": ...}}: {error}')
        return
    lowered = {str(key).lower(): value for key, value in credentials.items()}
    for key in ("bindDN", "bindPassword"):
        value = lowered.get(key.lower(), "")
        if not isinstance(value, str):
            r.problem(path, f"{key} must be a string")
        elif value:
            values[key] = value


_ACCESS_KEYS = {"repositories": "repositories", "adminpolicy": "adminPolicy", "groups": "groups", "metrics": "metrics"}
_GROUP_KEYS = {"policies": "policies", "defaultpolicy": "defaultPolicy", "anonymouspolicy": "anonymousPolicy"}


def read_access(raw: Any) -> tuple[AccessSettings | None, Problems]:
    """``http.accessControl`` -> settings (None when absent or empty), problems."""
    r = _Reader()
    fields = r.mapping(raw, ACCESS, _ACCESS_KEYS)
    if not fields:
        return None, r.problems
    repositories: dict[str, PolicyGroup] = {}
    for glob, value in r.mapping(fields.get("repositories"), join(ACCESS, "repositories"), _Identity()).items():
        repositories[glob] = _read_policy_group(r, value, join(ACCESS, f"repositories.{glob}"))
    admin = r.policy(fields["adminPolicy"], join(ACCESS, "adminPolicy")) if "adminPolicy" in fields else Policy()
    groups: dict[str, frozenset[str]] = {}
    for name, value in r.mapping(fields.get("groups"), join(ACCESS, "groups"), _Identity()).items():
        path = join(ACCESS, f"groups.{name}")
        members = r.mapping(value, path, {"users": "users"})
        groups[name] = r.strings(members["users"], join(path, "users")) if "users" in members else frozenset()
    metrics_users = None
    if "metrics" in fields:
        metrics = r.mapping(fields["metrics"], join(ACCESS, "metrics"), {"users": "users"})
        metrics_users = r.strings(metrics["users"], join(ACCESS, "metrics.users")) if "users" in metrics else frozenset()
    settings = AccessSettings(repositories=repositories, admin_policy=admin, groups=groups, metrics_users=metrics_users)
    return settings, r.problems


def _read_policy_group(r: _Reader, raw: Any, path: str) -> PolicyGroup:
    """One ``repositories`` entry."""
    group = r.mapping(raw, path, _GROUP_KEYS)
    listed = r.typed(group, "policies", path, list, "an array") or []
    return PolicyGroup(
        policies=tuple(r.policy(item, join(path, f"policies[{i}]")) for i, item in enumerate(listed)),
        default_policy=r.actions(group["defaultPolicy"], join(path, "defaultPolicy"))
        if "defaultPolicy" in group else frozenset(),
        anonymous_policy=r.actions(group["anonymousPolicy"], join(path, "anonymousPolicy"))
        if "anonymousPolicy" in group else frozenset(),
    )


class _Identity(dict):  # type: ignore[type-arg]
    """A key table that knows every key by its own name (globs, group names)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return key


def read_ratelimit(raw: Any) -> tuple[RateLimitSettings | None, Problems]:
    """``http.ratelimit``: ``rate`` (requests per second) and ``methods`` ([{method, rate}])."""
    r = _Reader()
    fields = r.mapping(raw, RATELIMIT, {"rate": "rate", "methods": "methods"})
    if not fields:
        return None, r.problems

    def rate_at(value: Any, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            r.problem(path, f"must be a number of requests per second above 0, not {value!r}")
            return None
        return float(value)

    rate = rate_at(fields["rate"], join(RATELIMIT, "rate")) if "rate" in fields else None
    methods: dict[str, float] = {}
    listed = r.typed(fields, "methods", RATELIMIT, list, "an array") or []
    for index, item in enumerate(listed):
        path = join(RATELIMIT, f"methods[{index}]")
        if not isinstance(item, dict):
            r.problem(path, f'must be an object {{"method": ..., "rate": ...}}, not {json_type(item)}')
            continue
        entry = r.mapping(item, path, {"method": "method", "rate": "rate"})
        method = entry.get("method")
        if not isinstance(method, str) or not method.strip():
            r.problem(join(path, "method"), 'required: an HTTP method, e.g. "GET"')
            continue
        if "rate" not in entry:
            r.problem(join(path, "rate"), "required: requests per second for this method")
            continue
        method_rate = rate_at(entry["rate"], join(path, "rate"))
        if method_rate is not None:
            methods[method.strip().upper()] = method_rate
    return RateLimitSettings(rate=rate, methods=methods), r.problems
