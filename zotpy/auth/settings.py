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
from zotpy.jsontypes import json_type as _json_type

ACTIONS = ("read", "create", "update", "delete")
#: zot's behaviour action (may a user see that a pushed manifest exists elsewhere); zotpy has no
#: such check, so it is accepted in a list and means nothing.
_BEHAVIOUR_ACTIONS = frozenset({"detectManifestCollision"})

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


class _Reader:
    def __init__(self, base: str) -> None:
        self.base = base
        self.problems: Problems = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append((f"{self.base}.{path}" if path else self.base, message))

    def mapping(self, value: Any, path: str, known: Mapping[str, str]) -> dict[str, Any]:
        """``value``'s keys under zot's spelling (``known`` maps lower-case to zot's), unknown ones
        reported; a value that is not an object is reported and reads as empty."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be an object, not {_json_type(value)}")
            return {}
        result = {}
        for key, item in value.items():
            name = known.get(key)
            if name is None:
                self.problem(_join(path, key), "unknown key")
                continue
            if item is not None:
                result[name] = item
        return result

    def strings(self, value: Any, path: str) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(path, f"must be an array of strings, not {_json_type(value)}")
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
                _join(path, "conditions"),
                "policy conditions (CEL expressions) are not implemented in zotpy; ignoring them would "
                "grant the policy's actions unconditionally: remove the conditions or the policy",
            )
        return Policy(
            users=self.strings(fields["users"], _join(path, "users")) if "users" in fields else frozenset(),
            groups=self.strings(fields["groups"], _join(path, "groups")) if "groups" in fields else frozenset(),
            actions=self.actions(fields["actions"], _join(path, "actions")) if "actions" in fields else frozenset(),
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


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


def read_auth(raw: Any) -> tuple[AuthSettings | None, Problems, list[str]]:
    """``http.auth`` -> settings (None when it configures nothing), problems, warnings."""
    r = _Reader("http.auth")
    warnings: list[str] = []
    fields = r.mapping(raw, "", _AUTH_KEYS)
    for name, reason in _NOT_YET.items():
        if name in fields and fields[name] not in ({}, False):
            r.problem(name, f"{reason}; ignoring it would refuse every user it should let in, or let in "
                      "users it should refuse: remove it, or use htpasswd")
    for name in ("sessionKeysFile", "sessionHashKey", "sessionEncryptKey", "sessionDriver", "secureSession"):
        if name in fields:
            warnings.append(f"http.auth.{name}: sessions belong to the web UI's logins, which zotpy does not have; ignored")
    htpasswd = None
    if "htpasswd" in fields:
        section = r.mapping(fields["htpasswd"], "htpasswd", {"path": "path"})
        path = section.get("path")
        if not isinstance(path, str) or not path:
            r.problem("htpasswd.path", "required: the htpasswd file (bcrypt entries, e.g. made with htpasswd -B)")
        else:
            try:
                read_htpasswd(path)
                htpasswd = HtpasswdSettings(path)
            except HtpasswdError as error:
                r.problem("htpasswd.path", str(error))
    bearer = _read_bearer(r, fields["bearer"]) if fields.get("bearer") else None
    ldap = _read_ldap(r, fields["ldap"]) if fields.get("ldap") else None
    if bearer is not None and htpasswd is not None:
        warnings.append(
            "http.auth.htpasswd: with http.auth.bearer, zot authenticates with tokens only (the token "
            "service checks passwords); the htpasswd file is not used"
        )
    fail_delay = 0.0
    if "failDelay" in fields:
        value = fields["failDelay"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
            r.problem("failDelay", f"must be a number of seconds from 0 to 60, not {value!r}")
        else:
            fail_delay = float(value)
    settings = AuthSettings(htpasswd=htpasswd, bearer=bearer, ldap=ldap, fail_delay=fail_delay)
    return (settings if settings.enabled else None), r.problems, warnings


def _read_bearer(r: _Reader, raw: Any) -> BearerSettings | None:
    section = r.mapping(raw, "bearer", {"realm": "realm", "service": "service", "cert": "cert"})
    values = {}
    for key, what in (
        ("realm", "the token service's URL, given to clients in the challenge"),
        ("service", "the name tokens must carry as their audience (aud)"),
        ("cert", "the certificate (or public key) whose key signs the tokens, PEM"),
    ):
        value = section.get(key)
        if not isinstance(value, str) or not value:
            r.problem(f"bearer.{key}", f"required: {what}")
        else:
            values[key] = value
    if "cert" in values:
        from zotpy.auth.bearer import VerificationKeyError, load_verification_key  # jwt: only with bearer

        try:
            load_verification_key(values["cert"])
        except OSError as error:
            r.problem("bearer.cert", f"cannot read {values['cert']!r}: {error.strerror}")
            return None
        except VerificationKeyError as error:
            r.problem("bearer.cert", str(error))
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
    fields = r.mapping(raw, "ldap", _LDAP_KEYS)
    problems_before = len(r.problems)
    values: dict[str, Any] = {}
    for key in ("address", "baseDN", "userAttribute", "userFilter", "userGroupAttribute", "credentialsFile",
                "bindDN", "bindPassword", "caCert"):
        value = fields.get(key, "")
        if not isinstance(value, str):
            r.problem(f"ldap.{key}", f"must be a string, not {_json_type(value)}")
            value = ""
        values[key] = value
    for key in ("address", "baseDN", "userAttribute"):
        if not values[key]:
            r.problem(f"ldap.{key}", "required")
    for key in ("insecure", "startTLS", "skipVerify", "subtreeSearch"):
        value = fields.get(key, False)
        if not isinstance(value, bool):
            r.problem(f"ldap.{key}", f"must be a boolean (true or false), not {_json_type(value)}")
            value = False
        values[key] = value
    port = fields.get("port", 389 if values["insecure"] or values["startTLS"] else 636)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        r.problem("ldap.port", f"must be a port number from 1 to 65535, not {port!r}")
        port = 0
    if values["userFilter"]:
        from ldaptor import ldapfilter  # pyparsing: paid only by configs with LDAP (startup time)

        try:
            ldapfilter.parseFilter(values["userFilter"])
        except ldapfilter.InvalidLDAPFilter as error:
            r.problem("ldap.userFilter", f"not an LDAP filter: {error}")
    if values["credentialsFile"]:
        try:
            with open(values["credentialsFile"], "rb") as stream:
                credentials = json.loads(stream.read())
            if not isinstance(credentials, dict):
                raise ValueError("not a JSON object")
        except OSError as error:
            r.problem("ldap.credentialsFile", f"cannot read {values['credentialsFile']!r}: {error.strerror}")
        except ValueError as error:
            r.problem("ldap.credentialsFile", f'{values["credentialsFile"]!r} is not {{"bindDN": ..., "bindPassword": ...}}: {error}')
        else:
            lowered = {str(key).lower(): value for key, value in credentials.items()}
            for key in ("bindDN", "bindPassword"):
                value = lowered.get(key.lower(), "")
                if not isinstance(value, str):
                    r.problem("ldap.credentialsFile", f"{key} must be a string")
                elif value:
                    values[key] = value
    if values["caCert"]:
        try:
            with open(values["caCert"], "rb"):
                pass
        except OSError as error:
            r.problem("ldap.caCert", f"cannot read {values['caCert']!r}: {error.strerror}")
    if len(r.problems) > problems_before:
        return None
    return LDAPSettings(
        address=values["address"], port=port, base_dn=values["baseDN"], user_attribute=values["userAttribute"],
        bind_dn=values["bindDN"], bind_password=values["bindPassword"], user_filter=values["userFilter"],
        user_group_attribute=values["userGroupAttribute"], subtree_search=values["subtreeSearch"],
        insecure=values["insecure"], start_tls=values["startTLS"], skip_verify=values["skipVerify"],
        ca_cert=values["caCert"],
    )


_ACCESS_KEYS = {"repositories": "repositories", "adminpolicy": "adminPolicy", "groups": "groups", "metrics": "metrics"}
_GROUP_KEYS = {"policies": "policies", "defaultpolicy": "defaultPolicy", "anonymouspolicy": "anonymousPolicy"}


def read_access(raw: Any) -> tuple[AccessSettings | None, Problems]:
    """``http.accessControl`` -> settings (None when absent or empty), problems."""
    r = _Reader("http.accessControl")
    fields = r.mapping(raw, "", _ACCESS_KEYS)
    if not fields:
        return None, r.problems
    repositories: dict[str, PolicyGroup] = {}
    for glob, value in r.mapping(fields.get("repositories"), "repositories", _Identity()).items():
        path = f"repositories.{glob}"
        group = r.mapping(value, path, _GROUP_KEYS)
        policies_raw = group.get("policies", [])
        policies: list[Policy] = []
        if not isinstance(policies_raw, list):
            r.problem(f"{path}.policies", f"must be an array, not {_json_type(policies_raw)}")
        else:
            policies = [r.policy(item, f"{path}.policies[{i}]") for i, item in enumerate(policies_raw)]
        repositories[glob] = PolicyGroup(
            policies=tuple(policies),
            default_policy=r.actions(group["defaultPolicy"], f"{path}.defaultPolicy")
            if "defaultPolicy" in group else frozenset(),
            anonymous_policy=r.actions(group["anonymousPolicy"], f"{path}.anonymousPolicy")
            if "anonymousPolicy" in group else frozenset(),
        )
    admin = r.policy(fields["adminPolicy"], "adminPolicy") if "adminPolicy" in fields else Policy()
    groups: dict[str, frozenset[str]] = {}
    for name, value in r.mapping(fields.get("groups"), "groups", _Identity()).items():
        members = r.mapping(value, f"groups.{name}", {"users": "users"})
        groups[name] = r.strings(members["users"], f"groups.{name}.users") if "users" in members else frozenset()
    metrics_users = None
    if "metrics" in fields:
        metrics = r.mapping(fields["metrics"], "metrics", {"users": "users"})
        metrics_users = r.strings(metrics["users"], "metrics.users") if "users" in metrics else frozenset()
    settings = AccessSettings(repositories=repositories, admin_policy=admin, groups=groups, metrics_users=metrics_users)
    return settings, r.problems


class _Identity(dict):  # type: ignore[type-arg]
    """A key table that knows every key by its own name (globs, group names)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return key


def read_ratelimit(raw: Any) -> tuple[RateLimitSettings | None, Problems]:
    """``http.ratelimit``: ``rate`` (requests per second) and ``methods`` ([{method, rate}])."""
    r = _Reader("http.ratelimit")
    fields = r.mapping(raw, "", {"rate": "rate", "methods": "methods"})
    if not fields:
        return None, r.problems

    def rate_at(value: Any, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            r.problem(path, f"must be a number of requests per second above 0, not {value!r}")
            return None
        return float(value)

    rate = rate_at(fields["rate"], "rate") if "rate" in fields else None
    methods: dict[str, float] = {}
    listed = fields.get("methods", [])
    if not isinstance(listed, list):
        r.problem("methods", f"must be an array, not {_json_type(listed)}")
        listed = []
    for index, item in enumerate(listed):
        path = f"methods[{index}]"
        if not isinstance(item, dict):
            r.problem(path, f'must be an object {{"method": ..., "rate": ...}}, not {_json_type(item)}')
            continue
        entry = r.mapping(item, path, {"method": "method", "rate": "rate"})
        method = entry.get("method")
        if not isinstance(method, str) or not method.strip():
            r.problem(f"{path}.method", 'required: an HTTP method, e.g. "GET"')
            continue
        if "rate" not in entry:
            r.problem(f"{path}.rate", "required: requests per second for this method")
            continue
        method_rate = rate_at(entry["rate"], f"{path}.rate")
        if method_rate is not None:
            methods[method.strip().upper()] = method_rate
    return RateLimitSettings(rate=rate, methods=methods), r.problems
