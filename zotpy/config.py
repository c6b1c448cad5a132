"""Read zot's JSON configuration into frozen objects.

An operator moving from zot keeps their config file, so zotpy reads zot's format (the file ``zot serve``
takes) and follows zot's reading rules: keys match case-insensitively (zot lower-cases them through viper)
and a key zot does not know is an error (zot unmarshals with ``UnmarshalExact``).

zotpy implements only part of what zot can be configured to do. A key zot knows but zotpy does not
implement is never silently dropped:

- *refused* when ignoring it would change what the registry does or who may use it
  (``http.auth.ldap``, ``storage.subPaths``...), with what to do instead;
- *warned about* when ignoring it is harmless (``http.compat``, ``storage.commit``...):
  the sentence lands in :attr:`Config.warnings` for the caller to log.

Every problem found is reported, not just the first one, in one :class:`ConfigError`, each naming the key
path in zot's spelling (``storage.rootDirectory``, ``cluster.members[2]``), so one edit-and-restart cycle
fixes a whole file.

Reading happens in two passes. :class:`_Walker` checks the document against :data:`_SCHEMA`, a table of
zot's keys, and returns the known keys under their canonical names with the right JSON types; the
``_read_*`` functions then turn that into the attrs objects and check what needs more than a type
(ranges, host names, files, rules spanning several keys).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

import attrs

from zotpy.auth.settings import (
    AccessSettings,
    AuthSettings,
    RateLimitSettings,
    read_access,
    read_auth,
    read_ratelimit,
)
from zotpy.jsontypes import json_type as _json_type
from zotpy.keypath import join as _join
from zotpy.keypath import unknown_key
from zotpy.lifecycle.settings import LifecycleSettings, read_lifecycle_settings
from zotpy.search.settings import SearchSettings, read_search_settings
from zotpy.storage.s3.settings import S3Settings, read_s3_settings
from zotpy.sync.settings import SyncSettings, parse_go_duration, read_sync_settings

__all__ = [
    "ClusterConfig",
    "ClusterTLSConfig",
    "Config",
    "ConfigError",
    "DEFAULT_DIST_SPEC_VERSION",
    "DEFAULT_READ_HEADER_TIMEOUT",
    "HTTPConfig",
    "LogConfig",
    "MetricsConfig",
    "STORAGE_DRIVERS",
    "StorageConfig",
    "TLSConfig",
    "embedded_default",
    "load_config",
    "parse_config",
]

#: The OCI distribution-spec version zot writes in its sample configs and uses when the key is absent.
DEFAULT_DIST_SPEC_VERSION = "1.1.0"

#: Where zotpy listens and how much it logs when the file does not say. zot's own defaults are
#: 127.0.0.1:8080 and "debug"; zotpy's are those of its embedded default configuration.
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_LOG_LEVEL = "info"
#: The realm of authentication challenges when ``http.realm`` is not given.
DEFAULT_REALM = "zot"
DEFAULT_READ_HEADER_TIMEOUT = 30.0

#: Values of ``storage.storageDriver.name`` this version of zotpy can serve (zot knows only ``"s3"``).
STORAGE_DRIVERS: frozenset[str] = frozenset({"s3"})

#: Extensions zot knows (``pkg/extensions/config``). zotpy implements ``sync`` (see :data:`IMPLEMENTED_EXTENSIONS`).
ZOT_EXTENSIONS: frozenset[str] = frozenset(
    {"search", "sync", "metrics", "scrub", "lint", "ui", "mgmt", "apikey", "trust", "events"}
)

#: Extensions read by a module of their own rather than warned about here.
IMPLEMENTED_EXTENSIONS: frozenset[str] = frozenset({"sync", "metrics", "search", "ui"})


# --------------------------------------------------------------------------------------------------
# The objects the rest of zotpy consumes
# --------------------------------------------------------------------------------------------------


@attrs.frozen
class TLSConfig:
    """``http.tls``: the server certificate; with ``cacert``, client certificates are required and
    verified against it (zot's mutual TLS)."""

    cert: str
    key: str
    cacert: str | None = None


@attrs.frozen
class HTTPConfig:
    """``http``: where to listen. ``port`` 0 asks for an ephemeral port, which tests use."""

    address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT
    tls: TLSConfig | None = None
    #: ``realm``: named in ``WWW-Authenticate`` challenges.
    realm: str = DEFAULT_REALM
    #: ``auth`` when it configures an authenticator (None: everyone is anonymous).
    auth: AuthSettings | None = None
    #: ``accessControl`` when present (None: whoever is authenticated may do everything).
    access_control: AccessSettings | None = None
    #: ``ratelimit`` when present (None: no limit).
    ratelimit: RateLimitSettings | None = None
    #: ``readHeaderTimeout`` (zotpy's own key, a Go duration): seconds a client has to send a
    #: request's line and headers, however slowly the bytes trickle in (Go's ReadHeaderTimeout).
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT


@attrs.frozen
class StorageConfig:
    """``storage``. The driver mappings are kept raw (keys lower-cased, as viper hands them to zot)
    because their keys belong to the driver, not to this module."""

    root_directory: str
    dedupe: bool = True
    gc: bool = True
    remote_cache: bool = False
    storage_driver: Mapping[str, Any] | None = None
    cache_driver: Mapping[str, Any] | None = None
    #: The S3 settings read from ``storage_driver`` when its name is ``"s3"``.
    s3: S3Settings | None = None
    #: ``gc``, ``gcDelay``, ``gcInterval``, ``gcTimeWindow`` and ``retention``.
    lifecycle: LifecycleSettings = LifecycleSettings()
    #: ``redirectBlobURL`` (zot's): a whole-blob GET answers 307 to a presigned S3 URL of the
    #: object instead of sending the bytes (S3 only; ranged GETs and HEADs are answered as before).
    redirect_blob_url: bool = False

    @property
    def shared(self) -> bool:
        """Whether every cluster member sees the same repositories: an S3 bucket is one store for
        all members (zotpy keeps no local cache beside it), a ``rootDirectory`` is each member's
        own disk (per-instance storage: a member holds only the repositories it owns)."""
        return self.s3 is not None


@attrs.frozen
class LogConfig:
    """``log``. ``level`` is one of ``debug``, ``info``, ``warn``, ``error``; ``output`` None is stdout."""

    level: str = DEFAULT_LOG_LEVEL
    output: str | None = None
    #: ``audit``: a file that gets one JSON line per write and delete (None: no audit log).
    audit: str | None = None


#: Paths the metrics endpoint may not take: the probes' and the registry API's.
_RESERVED_PATHS = ("/livez", "/readyz", "/startupz")


@attrs.frozen
class MetricsConfig:
    """``extensions.metrics`` when enabled: Prometheus metrics served at ``path``
    (``prometheus.path``, ``/metrics`` by default, as in zot)."""

    path: str = "/metrics"


@attrs.frozen
class ClusterTLSConfig:
    """``cluster.tls``: how this replica talks to its peers (CA to verify them, client certificate)."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None


@attrs.frozen
class ClusterConfig:
    """``cluster``: zot's scale-out. ``members`` lists every replica, this one included, in the same
    order on every replica; ``hash_key`` is the 16-byte SipHash key that maps repositories to them."""

    members: tuple[str, ...]
    hash_key: bytes
    tls: ClusterTLSConfig | None = None
    #: ``localReads`` (zotpy's own key): reads by digest answered by the member that receives
    #: them, from the shared storage, instead of forwarded (:mod:`zotpy.cluster.localreads`).
    #: On by default with shared storage; refused with per-instance storage.
    local_reads: bool = False
    #: ``rebalance.dropMoved`` (zotpy's own key): with per-instance storage, the previous owner's
    #: garbage collection removes a repository the new owner holds intact (:mod:`zotpy.lifecycle.moved`).
    #: Off by default: the previous owner keeps its copy, as before.
    drop_moved: bool = False


@attrs.frozen
class Config:
    """A whole configuration. ``warnings`` are sentences about settings zotpy ignores, each starting
    with the key path, for the caller to log once the logger is set up."""

    dist_spec_version: str
    storage: StorageConfig
    http: HTTPConfig
    log: LogConfig
    cluster: ClusterConfig | None
    extensions: Mapping[str, Any]
    warnings: tuple[str, ...]
    source: str | None = None
    #: ``extensions.sync`` when present and enabled.
    sync: SyncSettings | None = None
    #: ``extensions.metrics`` when present and enabled (None: no metrics endpoint).
    metrics: MetricsConfig | None = None
    #: ``extensions.search`` when present and enabled (with ``ui``: ``extensions.ui`` too).
    search: SearchSettings | None = None


class ConfigError(Exception):
    """One or more problems; str() gives one line per problem: '<key.path>: <what is wrong>'.

    Problems about the file as a whole (missing, not JSON) have an empty key path and their line is the
    message alone.
    """

    problems: tuple[tuple[str, str], ...]

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(f"{path}: {message}" if path else message for path, message in self.problems)


# --------------------------------------------------------------------------------------------------
# zot's keys
# --------------------------------------------------------------------------------------------------


@attrs.frozen
class _Key:
    """How one key of zot's format is read.

    kind is a JSON type to check (``string``, ``boolean``, ``port``, ``array``), ``object`` (a mapping
    kept raw), ``section`` (an object whose own keys are in ``children``), ``ignored`` (accepted with
    ``note`` as a warning) or ``refused`` (``note`` is the problem).
    """

    kind: str
    children: Mapping[str, _Key] = attrs.field(factory=dict)
    note: str = ""


def _section(children: Mapping[str, _Key]) -> _Key:
    return _Key("section", children)


def _ignored(note: str) -> _Key:
    return _Key("ignored", note=note)


def _refused(note: str) -> _Key:
    return _Key("refused", note=note)


#: The warning for ``storage.cacheDriver`` with dedupe on.
DEDUPE_CACHE_IGNORED = "ignored: zotpy keeps no dedupe cache database (it remembers stored blobs in memory)"

_STRING = _Key("string")
_BOOLEAN = _Key("boolean")
_OBJECT = _Key("object")

_ZOT_BUILD = "describes a zot build, not a setting; ignored"

_TLS = _section({"cert": _STRING, "key": _STRING, "cacert": _STRING})

# Every key of zot's Config struct (pkg/api/config/config.go), in zot's spelling. A key missing here
# would make a valid zot file fail with "unknown key", so the table follows zot's struct, not zotpy.
_SCHEMA = _section(
    {
        "distSpecVersion": _STRING,
        "goVersion": _ignored(_ZOT_BUILD),
        "commit": _ignored(_ZOT_BUILD),
        "releaseTag": _ignored(_ZOT_BUILD),
        "binaryType": _ignored(_ZOT_BUILD),
        "storage": _section(
            {
                "rootDirectory": _STRING,
                "dedupe": _BOOLEAN,
                "gc": _BOOLEAN,
                "remoteCache": _BOOLEAN,
                "storageDriver": _OBJECT,
                "cacheDriver": _OBJECT,
                "commit": _ignored(
                    "syncing each write to disk is not configurable in zotpy; ignored"
                ),
                "gcDelay": _STRING,
                "gcInterval": _STRING,
                "gcTimeWindow": _STRING,
                "retention": _OBJECT,  # read by zotpy.lifecycle.settings
                "remoteSessionCache": _ignored(
                    "sessions belong to authentication, which zotpy does not implement; ignored"
                ),
                "sessionDriver": _ignored(
                    "sessions belong to authentication, which zotpy does not implement; ignored"
                ),
                "redirectBlobURL": _BOOLEAN,
                "subPaths": _refused(
                    "storage per repository path is not available in this version of zotpy; remove "
                    "storage.subPaths to store every repository under storage.rootDirectory, or run one "
                    "zotpy per sub-path"
                ),
            }
        ),
        "http": _section(
            {
                "address": _STRING,
                "port": _Key("port"),
                "tls": _TLS,
                "externalUrl": _ignored(
                    "zotpy answers with relative Location headers and does not need it; ignored"
                ),
                "allowOrigin": _ignored(
                    "CORS headers are not implemented in zotpy; ignored (browser pages on other "
                    "origins cannot call the registry)"
                ),
                "realm": _STRING,
                "compat": _ignored("media type compatibility modes are not configurable in zotpy; ignored"),
                "auth": _OBJECT,  # read by zotpy.auth.settings
                "accessControl": _OBJECT,
                "ratelimit": _OBJECT,
                "readHeaderTimeout": _STRING,  # zotpy's own (zot has none): read by _read_http
            }
        ),
        "log": _section(
            {
                "level": _STRING,
                "output": _STRING,
                "audit": _STRING,  # the audit log file (zotpy.auth.audit)
            }
        ),
        "cluster": _section(
            {
                "members": _Key("array"), "hashKey": _STRING, "tls": _TLS,
                "localReads": _BOOLEAN,  # zotpy's
                "rebalance": _section({"dropMoved": _BOOLEAN}),  # zotpy's (per-instance storage resizes)
            }
        ),
        "extensions": _OBJECT,
        "scheduler": _ignored("zotpy has no background task scheduler to size; ignored"),
    }
)

# zot's log levels are zerolog's; zotpy logs at four, so the others map to the nearest one.
_LOG_LEVELS: Mapping[str, str] = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "error": "error",
    "fatal": "error",
    "panic": "error",
    # zerolog also reads its level numbers.
    "-1": "debug",
    "0": "debug",
    "1": "info",
    "2": "warn",
    "3": "error",
    "4": "error",
    "5": "error",
}

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]+\Z")


# --------------------------------------------------------------------------------------------------
# Pass 1: keys and types
# --------------------------------------------------------------------------------------------------


class _JSONObject(dict):  # type: ignore[type-arg]
    """A JSON object that remembers keys repeated verbatim, which a plain dict would silently drop
    (the last one winning). ``duplicates`` holds each repetition after the first."""

    duplicates: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> _JSONObject:
    obj = _JSONObject()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


_ABSENT = object()

_EXPECTED: Mapping[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string"),
    "boolean": ((bool,), "a boolean (true or false)"),
    "port": ((int, str), "an integer or a numeric string"),
    "array": ((list,), "an array"),
}


class _Walker:
    """Collects problems and warnings while reading; nothing stops at the first problem."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def failed(self, path: str) -> bool:
        """Whether a problem was already reported at exactly this path (to avoid reporting twice)."""
        return any(problem_path == path for problem_path, _ in self.problems)

    def section(self, value: object, path: str, spec: _Key) -> dict[str, Any] | None:
        """Read one object of zot's format: the known keys under their canonical names (None if
        ``value`` is not an object)."""
        if not isinstance(value, dict):
            if path:
                self.problem(path, f"must be an object, not {_json_type(value)}")
            else:
                self.problem(path, f"the configuration must be a JSON object, not {_json_type(value)}")
            return None
        canonical = {name.lower(): name for name in spec.children}
        result: dict[str, Any] = {}
        for key, item in self._unique_items(value, path, lambda key: canonical.get(key.lower(), key)):
            name = canonical.get(key.lower())
            if name is None:
                self.problem(_join(path, key), unknown_key(key, canonical, path))
                continue
            checked = self._value(item, _join(path, name), spec.children[name])
            if checked is not _ABSENT:
                result[name] = checked
        return result

    def _value(self, item: object, path: str, spec: _Key) -> Any:
        # null is Go's nil: the same as leaving the key out (an empty object too, for keys zotpy
        # does not implement: zot treats `"auth": {}` as no authentication configured; and false
        # for a switch zotpy ignores: left off, it asks for zot's default).
        if item is None:
            return _ABSENT
        if spec.kind == "section":
            read = self.section(item, path, spec)
            return _ABSENT if read is None else read
        if spec.kind in ("ignored", "refused"):
            if item != {} and not (item is False and spec.kind == "ignored"):
                if spec.kind == "ignored":
                    self.warn(path, spec.note)
                else:
                    self.problem(path, spec.note)
            return _ABSENT
        if spec.kind == "object":
            if not isinstance(item, dict):
                self.problem(path, f"must be an object, not {_json_type(item)}")
                return _ABSENT
            return self.raw(item, path)
        types_, description = _EXPECTED[spec.kind]
        if not isinstance(item, types_) or (isinstance(item, bool) and spec.kind != "boolean"):
            self.problem(path, f"must be {description}, not {_json_type(item)}")
            return _ABSENT
        return self.raw(item, path)

    def raw(self, value: Any, path: str) -> Any:
        """Copy a value zotpy keeps uninterpreted, lower-casing object keys at every depth as viper
        does for zot (so a driver reads ``rootdirectory`` however the file spells it)."""
        if isinstance(value, dict):
            return {
                key.lower(): self.raw(item, _join(path, key.lower()))
                for key, item in self._unique_items(value, path, str.lower)
            }
        if isinstance(value, list):
            return [self.raw(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    def _unique_items(
        self, obj: dict[str, Any], path: str, display: Callable[[str], str]
    ) -> Iterator[tuple[str, Any]]:
        """The items of ``obj`` whose key appears once, ignoring case. A key given twice is a problem
        rather than a guess: viper would keep one of them, and which one is not obvious from the file."""
        spellings: dict[str, list[str]] = {}
        for key in [*obj, *getattr(obj, "duplicates", ())]:
            spellings.setdefault(key.lower(), []).append(key)
        for keys in spellings.values():
            if len(keys) > 1:
                given = ", ".join(json.dumps(key) for key in keys)
                self.problem(
                    _join(path, display(keys[0])),
                    f"given more than once ({given}); keys are case-insensitive, keep one",
                )
            else:
                yield keys[0], obj[keys[0]]


# --------------------------------------------------------------------------------------------------
# Pass 2: values
# --------------------------------------------------------------------------------------------------


def _host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a DNS host name, or None if it is one."""
    if not host:
        return "the host is empty"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if ":" in host:
        return f"{host!r} is not a valid IPv6 address"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return None
    return f"{host!r} is neither an IP address nor a valid host name"


def _check_file(w: _Walker, path: str, filename: str) -> None:
    """Report at ``path`` unless ``filename`` can be opened for reading now: a TLS file that is missing
    should stop the start, naming the key, rather than fail the first handshake."""
    if not filename:
        w.problem(path, "must not be empty")
        return
    where = "" if os.path.isabs(filename) else f" (relative to the current directory, {os.getcwd()})"
    try:
        with open(filename, "rb"):
            pass
    except FileNotFoundError:
        w.problem(path, f"file {filename!r} does not exist{where}")
    except IsADirectoryError:
        w.problem(path, f"{filename!r} is a directory, not a file{where}")
    except OSError as e:
        w.problem(path, f"cannot read {filename!r}: {e.strerror}{where}")


def _read_storage(w: _Walker, doc: Mapping[str, Any]) -> StorageConfig | None:
    section = doc.get("storage", {})
    root = section.get("rootDirectory")
    if root is None:
        if not w.failed("storage") and not w.failed("storage.rootDirectory"):
            w.problem("storage.rootDirectory", "required: the directory where zotpy stores repositories")
    elif not root.strip():
        w.problem("storage.rootDirectory", "must not be empty")
    dedupe = section.get("dedupe", True)
    gc = section.get("gc", True)

    # zot treats an empty driver mapping as no driver.
    storage_driver = section.get("storageDriver") or None
    s3: S3Settings | None = None
    if storage_driver is not None:
        name = storage_driver.get("name")
        if not isinstance(name, str) or not name:
            w.problem("storage.storageDriver.name", 'required: the storage driver, e.g. "s3"')
        elif name == "s3" and name in STORAGE_DRIVERS:
            s3, problems, warnings = read_s3_settings(storage_driver)
            for key, message in problems:
                w.problem(f"storage.storageDriver.{key}", message)
            for key, message in warnings:
                w.warn(f"storage.storageDriver.{key}", message)
        elif name not in STORAGE_DRIVERS:
            w.problem(
                "storage.storageDriver",
                f"unsupported storage driver {name!r} (zot knows only \"s3\"); remove "
                "storage.storageDriver to store under storage.rootDirectory",
            )

    cache_driver = section.get("cacheDriver") or None
    if cache_driver is not None:
        # zotpy keeps its dedupe map in memory (zotpy.lifecycle.dedupe), so ignoring the cache
        # database loses nothing, whatever dedupe says.
        if dedupe:
            w.warn("storage.cacheDriver", DEDUPE_CACHE_IGNORED)
        else:
            w.warn("storage.cacheDriver", "ignored: no cache is needed with dedupe false")

    lifecycle, problems, warnings = read_lifecycle_settings(section)
    for key, message in problems:
        w.problem(key, message)
    for key, message in warnings:
        w.warn(key, message)
    # Warned on the effective value: an operator coming from zot gets it by default.
    if dedupe and s3 is not None:
        w.warn(
            "storage.dedupe",
            "on S3 zotpy copies a blob another repository holds server-side instead of receiving it "
            "again, but stores it per repository (zot stores it once, with placeholders); "
            "set it to false to silence this",
        )
    redirect = section.get("redirectBlobURL", False)
    if redirect and s3 is None:
        w.warn("storage.redirectBlobURL", "only S3 storage has URLs to redirect to; blobs on local disk are "
               "served by zotpy (as zot does)")
    if root is None:
        return None
    return StorageConfig(
        root_directory=root,
        dedupe=dedupe,
        gc=gc,
        lifecycle=lifecycle,
        remote_cache=section.get("remoteCache", False),
        storage_driver=storage_driver,
        cache_driver=cache_driver,
        s3=s3,
        redirect_blob_url=bool(redirect) and s3 is not None,
    )


def _read_port(w: _Walker, value: int | str) -> int:
    if isinstance(value, str):
        if not _PORT.match(value):
            w.problem("http.port", f"{value!r} is not a port number")
            return 0
        value = int(value)
    if not 0 <= value <= 65535:
        w.problem("http.port", f"{value} is out of range: a port is 0 to 65535 (0 picks a free one)")
    return value


def _read_http(w: _Walker, doc: Mapping[str, Any]) -> HTTPConfig:
    section = doc.get("http", {})
    address = section.get("address", DEFAULT_ADDRESS)
    problem = _host_problem(address)
    if problem:
        hint = " (use 0.0.0.0 or :: to listen on every interface)" if not address else ""
        w.problem("http.address", f"{problem}{hint}")
    port = _read_port(w, section.get("port", DEFAULT_PORT))

    tls = None
    if "tls" in section:
        # zot serves plain HTTP when cert or key is missing; zotpy refuses instead, because an
        # operator who wrote a tls section expects TLS.
        files = section["tls"]
        for name in ("cert", "key"):
            if name not in files and not w.failed(f"http.tls.{name}"):
                w.problem(f"http.tls.{name}", "required when http.tls is present")
        for name in ("cert", "key", "cacert"):
            if name in files:
                _check_file(w, f"http.tls.{name}", files[name])
        if "cert" in files and "key" in files:
            tls = TLSConfig(cert=files["cert"], key=files["key"], cacert=files.get("cacert"))
    auth, problems, warnings = read_auth(section.get("auth"))
    access, access_problems = read_access(section.get("accessControl"))
    ratelimit, ratelimit_problems = read_ratelimit(section.get("ratelimit"))
    for path, message in problems + access_problems + ratelimit_problems:
        w.problem(path, message)
    for path, message in warnings:
        w.warn(path, message)
    realm = section.get("realm") or DEFAULT_REALM
    return HTTPConfig(
        address=address, port=port, tls=tls, realm=realm, auth=auth, access_control=access, ratelimit=ratelimit,
        read_header_timeout=_read_header_timeout(w, section.get("readHeaderTimeout")),
    )


def _read_header_timeout(w: _Walker, given: str | None) -> float:
    if not isinstance(given, str):  # absent, or not a string (the schema walk said so)
        return DEFAULT_READ_HEADER_TIMEOUT
    try:
        seconds = parse_go_duration(given)
    except ValueError as error:
        w.problem("http.readHeaderTimeout", str(error))
        return DEFAULT_READ_HEADER_TIMEOUT
    if seconds <= 0:
        w.problem("http.readHeaderTimeout", f"{given!r}: must be longer than 0 (slow clients would hold connections)")
        return DEFAULT_READ_HEADER_TIMEOUT
    return seconds


def _read_log(w: _Walker, doc: Mapping[str, Any]) -> LogConfig:
    section = doc.get("log", {})
    given = section.get("level", DEFAULT_LOG_LEVEL)
    level = _LOG_LEVELS.get(given.lower())
    if level is None:
        if given.lower() == "disabled":
            level = "error"
            w.warn("log.level", 'zotpy cannot turn logging off; "disabled" logs errors only')
        elif given.lower() == "warning":
            w.problem("log.level", 'zot does not accept "warning"; write "warn"')
        else:
            w.problem("log.level", f"{given!r} is not a log level: use debug, info, warn or error")
    return LogConfig(
        level=level or DEFAULT_LOG_LEVEL, output=section.get("output") or None, audit=section.get("audit") or None
    )


def _member_problem(member: str) -> str | None:
    """Why ``member`` is not a "host:port" zot can dial, or None."""
    if member.startswith("["):
        host, sep, port = member[1:].partition("]:")
        if not sep:
            return f"{member!r} has no port: write it as \"[address]:port\""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    else:
        host, sep, port = member.rpartition(":")
        if not sep:
            return f"{member!r} has no port: write it as \"host:port\", e.g. \"{member}:9000\""
        if ":" in host:
            return f"{member!r}: write an IPv6 address in brackets, e.g. \"[::1]:9000\""
        problem = _host_problem(host)
        if problem:
            return problem
    if not _PORT.match(port) or not 1 <= int(port) <= 65535:
        return f"{port!r} is not a port number from 1 to 65535"
    return None


def _read_cluster(w: _Walker, doc: Mapping[str, Any], storage: StorageConfig | None) -> ClusterConfig | None:
    if "cluster" not in doc:
        return None
    section = doc["cluster"]
    members = section.get("members", [])
    if not members and not w.failed("cluster.members"):
        w.problem(
            "cluster.members",
            'cannot have 0 members in a scale out cluster: list every replica as "host:port", '
            "this one included",
        )
    for index, member in enumerate(members):
        path = f"cluster.members[{index}]"
        if not isinstance(member, str):
            w.problem(path, f'must be a string "host:port", not {_json_type(member)}')
            continue
        problem = _member_problem(member)
        if problem:
            w.problem(path, problem)
        elif member in members[:index]:
            w.problem(path, f"{member!r} is already cluster.members[{members.index(member)}]: list each replica once")

    hash_key = section.get("hashKey")
    if hash_key is None:
        if not w.failed("cluster.hashKey"):
            w.problem("cluster.hashKey", "required: hashKey for scale out cluster must have 16 characters")
        key = b""
    else:
        key = hash_key.encode("utf-8")
        if len(key) != 16:
            w.problem(
                "cluster.hashKey",
                f"hashKey for scale out cluster must have 16 characters; this one is {len(key)} "
                "bytes long in UTF-8",
            )

    tls = None
    if "tls" in section:
        files = section["tls"]
        if ("cert" in files) != ("key" in files) and not (
            w.failed("cluster.tls.cert") or w.failed("cluster.tls.key")
        ):
            given, missing = ("cert", "key") if "cert" in files else ("key", "cert")
            w.problem(
                f"cluster.tls.{missing}",
                f"required with cluster.tls.{given}: the client certificate needs both",
            )
        for name in ("cacert", "cert", "key"):
            if name in files:
                _check_file(w, f"cluster.tls.{name}", files[name])
        tls = ClusterTLSConfig(cacert=files.get("cacert"), cert=files.get("cert"), key=files.get("key"))
    shared = storage is not None and storage.shared
    local_reads = section.get("localReads", shared)
    if local_reads and not shared and not w.failed("cluster.localReads"):
        w.problem(
            "cluster.localReads",
            "needs storage every member shares (storage.storageDriver of name s3): with per-instance "
            "storage a member holds only the repositories it owns, so reads must go to the owner",
        )
    drop_moved = (section.get("rebalance") or {}).get("dropMoved", False)
    if drop_moved is True and shared and not w.failed("cluster.rebalance.dropMoved"):
        w.problem(
            "cluster.rebalance.dropMoved",
            "needs per-instance storage: on storage every member shares, no repository is ever copied",
        )
    return ClusterConfig(
        members=tuple(m for m in members if isinstance(m, str)), hash_key=key, tls=tls,
        local_reads=bool(local_reads) and shared, drop_moved=drop_moved is True and not shared,
    )


def _read_extensions(w: _Walker, doc: Mapping[str, Any]) -> Mapping[str, Any]:
    extensions = doc.get("extensions", {})
    for name, settings in extensions.items():
        path = f"extensions.{name}"
        # zot enables an extension that is present unless it says "enable": false.
        if settings is not None and not isinstance(settings, dict):
            w.problem(path, f"must be an object, not {_json_type(settings)}")
            continue
        enable = (settings or {}).get("enable", True)
        if not isinstance(enable, bool):
            w.problem(f"{path}.enable", f"must be a boolean (true or false), not {_json_type(enable)}")
        elif enable and name not in IMPLEMENTED_EXTENSIONS:
            known = name in ZOT_EXTENSIONS
            w.warn(path, "not implemented yet, ignored" if known else "unknown extension, ignored")
    return types.MappingProxyType(extensions)


def _read_sync(w: _Walker, extensions: Mapping[str, Any]) -> SyncSettings | None:
    raw = extensions.get("sync")
    if not isinstance(raw, dict) and raw is not None:
        return None  # reported by _read_extensions
    settings, problems, warnings = read_sync_settings(raw or {})
    for key, message in problems:
        if key != "enable":  # _read_extensions reports it
            w.problem(_join("extensions.sync", key), message)
    for key, message in warnings:
        w.warn(_join("extensions.sync", key), message)
    return settings


def _read_metrics(w: _Walker, extensions: Mapping[str, Any]) -> MetricsConfig | None:
    """zot's ``{"enable": true, "prometheus": {"path": "/metrics"}}``; other keys are problems."""
    if "metrics" not in extensions:
        return None
    raw = extensions["metrics"] or {}  # zot enables `"metrics": null` like `"metrics": {}`
    if not isinstance(raw, dict) or raw.get("enable", True) is not True:
        return None  # absent, disabled, or reported by _read_extensions
    for key in sorted(set(raw) - {"enable", "prometheus"}):
        w.problem(f"extensions.metrics.{key}", 'unknown key: zot\'s metrics extension has "enable" and "prometheus"')
    prometheus = raw.get("prometheus") or {}
    if not isinstance(prometheus, dict):
        w.problem("extensions.metrics.prometheus", f"must be an object, not {_json_type(prometheus)}")
        return None
    for key in sorted(set(prometheus) - {"path"}):
        w.problem(f"extensions.metrics.prometheus.{key}", 'unknown key: "path" is the only one')
    path = prometheus.get("path") or "/metrics"
    if not isinstance(path, str):
        w.problem("extensions.metrics.prometheus.path", f"must be a string, not {_json_type(path)}")
        return None
    if not path.startswith("/") or "?" in path or "#" in path:
        w.problem("extensions.metrics.prometheus.path", f"{path!r} must be a path starting with /, e.g. /metrics")
        return None
    if path in _RESERVED_PATHS or path == "/v2" or path.startswith("/v2/"):
        w.problem("extensions.metrics.prometheus.path", f"{path!r} is taken by the probes or the registry API")
        return None
    return MetricsConfig(path=path)


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def parse_config(document: object, source: str | None = None) -> Config:
    """Turn a parsed JSON document in zot's format into a :class:`Config`.

    Raises :class:`ConfigError` listing every problem found.
    """
    w = _Walker()
    doc = w.section(document, "", _SCHEMA)
    if doc is None:
        raise ConfigError(w.problems)
    dist_spec_version = doc.get("distSpecVersion", DEFAULT_DIST_SPEC_VERSION)
    storage = _read_storage(w, doc)
    http = _read_http(w, doc)
    log = _read_log(w, doc)
    cluster = _read_cluster(w, doc, storage)
    extensions = _read_extensions(w, doc)
    sync = _read_sync(w, extensions) if "sync" in extensions else None
    metrics = _read_metrics(w, extensions)
    search, problems = read_search_settings(extensions)
    for key, message in problems:
        w.problem(key, message)
    if w.problems or storage is None:
        raise ConfigError(w.problems)
    return Config(
        dist_spec_version=dist_spec_version,
        storage=storage,
        http=http,
        log=log,
        cluster=cluster,
        extensions=extensions,
        warnings=tuple(w.warnings),
        source=source,
        sync=sync,
        metrics=metrics,
        search=search,
    )


def load_config(path: str) -> Config:
    """Read and check the zot-format JSON file at ``path``.

    Raises :class:`ConfigError` when the file cannot be read, is not JSON (the message gives line and
    column) or does not hold a valid configuration.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([("", f"cannot read config file {path!r}: {e.strerror}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([("", f"config file {path!r} is not UTF-8 text (byte {e.start})")]) from None
    try:
        document = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as e:
        hint = ""
        if os.path.splitext(path)[1].lower() in (".yaml", ".yml", ".toml"):
            hint = " (zotpy reads zot's JSON format only)"
        where = f"line {e.lineno}, column {e.colno}"
        raise ConfigError([("", f"config file {path!r} is not valid JSON: {where}: {e.msg}{hint}")]) from None
    return parse_config(document, source=path)


def embedded_default(cwd: str) -> Config:
    """The configuration used when no file is given: a single node on 127.0.0.1:5000 storing under
    ``<cwd>/zotpy-data``, so ``twistd zotpy`` runs out of the box for a try-out. It carries no
    warnings: nobody asked for the zot features it leaves out."""
    return Config(
        dist_spec_version=DEFAULT_DIST_SPEC_VERSION,
        storage=StorageConfig(root_directory=os.path.join(cwd, "zotpy-data")),
        http=HTTPConfig(),
        log=LogConfig(),
        cluster=None,
        extensions=types.MappingProxyType({}),
        warnings=(),
        source=None,
    )
