"""zot's ``extensions.sync`` mapping, read into :class:`SyncSettings`.

The mapping arrives from :mod:`zotpy.config` with its keys lower-cased (as viper hands it to zot);
problems and warnings are returned as ``(key path below extensions.sync, sentence)`` in zot's
spelling (``registries[0].pollInterval``), for the config module to prefix and report. This module is
pure apart from reading ``credentialsFile`` and looking at ``certDir``, so a missing file stops the
start naming its key instead of failing the first poll.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from zotpy.jsontypes import json_type as _json_type
from zotpy.keypath import KeyPathReader
from zotpy.keypath import join as _join
from zotpy.doublestar import GlobError, compile_glob
from zotpy.sync.content import ContentRule, ContentRules, TagRules

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string ("30s", "5m", "1h30m", "1.5h", "0")."""
    rest = text.strip()
    sign = -1.0 if rest.startswith("-") else 1.0
    rest = rest.lstrip("+-")
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"{text!r} is not a duration")
    total = 0.0
    while rest:
        match = _DURATION_PART.match(rest)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f'{text!r} is not a duration: write e.g. "30s", "5m", "6h" or "1h30m"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        rest = rest[match.end() :]
    return sign * total


@attrs.frozen
class Credentials:
    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class RegistrySettings:
    """One ``registries[]`` entry. Durations are in seconds; ``poll_interval`` 0 means no periodic sync."""

    urls: tuple[str, ...]
    content: ContentRules = ContentRules()
    on_demand: bool = False
    poll_interval: float = 0.0
    tls_verify: bool = True
    cert_dir: str | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    max_retry_delay: float | None = None
    #: The position in ``registries``, to name the registry in logs.
    index: int = 0

    @property
    def periodic(self) -> bool:
        """zot polls only when both ``content`` and ``pollInterval`` are given."""
        return bool(self.content.rules) and self.poll_interval > 0


@attrs.frozen
class SyncSettings:
    registries: tuple[RegistrySettings, ...]
    #: Upstream ``host[:port]`` -> credentials, read from ``credentialsFile``.
    credentials: Mapping[str, Credentials] = attrs.field(factory=dict, repr=False)
    credentials_file: str | None = None


_TOP_KEYS = {"enable": "enable", "credentialsfile": "credentialsFile", "downloaddir": "downloadDir", "registries": "registries"}
_REGISTRY_KEYS = {
    name.lower(): name
    for name in (
        "urls", "pollInterval", "content", "tlsVerify", "onDemand", "certDir", "maxRetries", "retryDelay",
        "maxRetryDelay", "onlySigned", "syncLegacyCosignTags", "credentialHelper", "oauth2CredentialHelper",
        "preserveDigest", "syncTimeout", "platforms",
    )
}
_CONTENT_KEYS = {name.lower(): name for name in ("prefix", "tags", "destination", "stripPrefix", "platforms")}
_TAGS_KEYS = {name.lower(): name for name in ("regex", "excludeRegex", "semver")}

_PLATFORMS_IGNORED = "platform filtering is not implemented in zotpy: every platform of a multi-arch image is mirrored; ignored"


class _Reader(KeyPathReader):
    """zot's sync keys, adding Go durations to the shared key-path reader."""

    def duration(self, values: Mapping[str, Any], name: str, path: str) -> float | None:
        value = self.typed(values, name, path, str, 'a Go duration string such as "30s", "5m" or "6h"')
        if value is None:
            return None
        try:
            seconds = parse_go_duration(value)
        except ValueError as error:
            self.problems.append((_join(path, name), str(error)))
            return None
        if seconds < 0:
            self.problems.append((_join(path, name), f"{value!r} is negative"))
            return None
        return seconds



def _url(r: _Reader, value: object, path: str) -> str | None:
    if not isinstance(value, str):
        r.problems.append((path, f'must be a URL string such as "https://registry.example.com", not {_json_type(value)}'))
        return None
    parts = urlsplit(value.strip())
    try:
        parts.port
    except ValueError:
        r.problems.append((path, f"{value!r} has an invalid port"))
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problems.append((path, f'{value!r} is not an http(s) URL: write e.g. "https://{value.strip()}"'))
        return None
    if parts.path.strip("/") or parts.query or parts.fragment:
        r.problems.append((path, f"{value!r} must be the registry's base URL, without a path or query"))
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _read_tags(r: _Reader, raw: object, path: str) -> TagRules | None:
    if not isinstance(raw, dict):
        r.problems.append((path, f"must be an object, not {_json_type(raw)}"))
        return None
    values = r.known(raw, _TAGS_KEYS, path)
    found: dict[str, str | None] = {}
    for name in ("regex", "excludeRegex"):
        pattern = r.typed(values, name, path, str, "a regular expression string")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                r.problems.append((_join(path, name), f"{pattern!r} is not a valid regular expression: {error}"))
                pattern = None
        found[name] = pattern
    semver = r.typed(values, "semver", path, bool, "a boolean (true or false)")
    return TagRules(regex=found["regex"], exclude_regex=found["excludeRegex"], semver=bool(semver))


def _read_content(r: _Reader, raw: object, path: str) -> ContentRule | None:
    if not isinstance(raw, dict):
        r.problems.append((path, f"must be an object, not {_json_type(raw)}"))
        return None
    values = r.known(raw, _CONTENT_KEYS, path)
    prefix = r.typed(values, "prefix", path, str, "a string (a glob over upstream repository names)")
    if prefix is None or not prefix.strip("/"):
        if not any(p == _join(path, "prefix") for p, _ in r.problems):
            r.problems.append((_join(path, "prefix"), 'required: the upstream repositories to mirror, e.g. "/library/**"'))
        prefix = None
    else:
        try:
            compile_glob(prefix.removeprefix("/"))
        except GlobError as error:
            r.problems.append((_join(path, "prefix"), f"not a valid glob pattern: {error}"))
            prefix = None
    tags = _read_tags(r, values["tags"], _join(path, "tags")) if "tags" in values else None
    destination = r.typed(values, "destination", path, str, "a string (the local repository path)") or ""
    strip_prefix = bool(r.typed(values, "stripPrefix", path, bool, "a boolean (true or false)"))
    if "platforms" in values:
        r.warnings.append((_join(path, "platforms"), _PLATFORMS_IGNORED))
    if prefix is not None and strip_prefix and "/*" not in prefix and destination == "/":
        r.problems.append(
            (_join(path, "stripPrefix"),
             "can not use stripPrefix true and destination '/' without using glob patterns in prefix")
        )
    if prefix is None:
        return None
    return ContentRule(prefix=prefix, tags=tags, destination=destination, strip_prefix=strip_prefix)


def _read_cert_dir(r: _Reader, cert_dir: str, path: str) -> None:
    try:
        names = os.listdir(cert_dir)
    except OSError as error:
        r.problems.append((path, f"cannot read directory {cert_dir!r}: {error.strerror}"))
        return
    certs = {n[: -len(".cert")] for n in names if n.endswith(".cert")}
    keys = {n[: -len(".key")] for n in names if n.endswith(".key")}
    for lonely in sorted(certs ^ keys):
        missing = f"{lonely}.key" if lonely in certs else f"{lonely}.cert"
        r.problems.append((path, f"{missing} is missing: a client certificate needs both <name>.cert and <name>.key"))


def _read_registry(r: _Reader, raw: object, index: int) -> RegistrySettings | None:
    path = f"registries[{index}]"
    if not isinstance(raw, dict):
        r.problems.append((path, f"must be an object, not {_json_type(raw)}"))
        return None
    values = r.known(raw, _REGISTRY_KEYS, path)
    before = len(r.problems)

    urls: list[str] = []
    listed = r.typed(values, "urls", path, list, 'an array of URLs, e.g. ["https://registry.example.com"]')
    if not listed and not any(p == _join(path, "urls") for p, _ in r.problems):
        r.problems.append((_join(path, "urls"), 'required: the upstream registry, e.g. ["https://registry.example.com"]'))
    for position, item in enumerate(listed or ()):
        url = _url(r, item, f"{path}.urls[{position}]")
        if url is not None:
            urls.append(url)

    rules: list[ContentRule] = []
    content = r.typed(values, "content", path, list, "an array of rules")
    for position, item in enumerate(content or ()):
        rule = _read_content(r, item, f"{path}.content[{position}]")
        if rule is not None:
            rules.append(rule)

    poll_interval = r.duration(values, "pollInterval", path) or 0.0
    on_demand = bool(r.typed(values, "onDemand", path, bool, "a boolean (true or false)"))
    tls_verify = r.typed(values, "tlsVerify", path, bool, "a boolean (true or false)")
    cert_dir = r.typed(values, "certDir", path, str, "a directory path")
    if cert_dir:
        _read_cert_dir(r, cert_dir, _join(path, "certDir"))

    max_retries = r.typed(values, "maxRetries", path, int, "a whole number")
    if max_retries is not None and max_retries < 0:
        r.problems.append((_join(path, "maxRetries"), f"{max_retries} is negative"))
    retry_delay = r.duration(values, "retryDelay", path)
    max_retry_delay = r.duration(values, "maxRetryDelay", path)
    if "maxRetries" in values and "retryDelay" not in values:
        r.problems.append((_join(path, "retryDelay"), "required when maxRetries is set (the pause between retries)"))
    if max_retry_delay is not None and retry_delay is not None and max_retry_delay < retry_delay:
        r.problems.append((_join(path, "maxRetryDelay"), "must not be shorter than retryDelay"))

    if r.typed(values, "onlySigned", path, bool, "a boolean (true or false)"):
        r.problems.append(
            (_join(path, "onlySigned"),
             "mirroring only signed images is not implemented in zotpy, and ignoring it would mirror unsigned "
             "images too; remove it or set it to false")
        )
    for name, what in (("credentialHelper", "credential helpers"), ("oauth2CredentialHelper", "OAuth2 credential helpers")):
        if values.get(name) not in (None, "", {}):
            r.problems.append(
                (_join(path, name), f"{what} are not implemented in zotpy; put the upstream's username and password "
                 "in extensions.sync.credentialsFile instead")
            )
    if values.get("preserveDigest") is False:
        r.warnings.append(
            (_join(path, "preserveDigest"), "zotpy never converts manifests to OCI: digests are always preserved; ignored")
        )
    if "syncLegacyCosignTags" in values:
        r.warnings.append(
            (_join(path, "syncLegacyCosignTags"),
             "zotpy mirrors cosign's sha256-<digest>.sig tags like any other tag the content rules select; ignored")
        )
    if "syncTimeout" in values:
        r.duration(values, "syncTimeout", path)
        r.warnings.append(
            (_join(path, "syncTimeout"), "zotpy has no overall limit per sync; an upstream silent for 2 minutes is cut; ignored")
        )
    if "platforms" in values:
        r.warnings.append((_join(path, "platforms"), _PLATFORMS_IGNORED))

    if len(r.problems) > before:
        return None
    settings = RegistrySettings(
        urls=tuple(urls),
        content=ContentRules(tuple(rules)),
        on_demand=on_demand,
        poll_interval=poll_interval,
        tls_verify=True if tls_verify is None else tls_verify,
        cert_dir=cert_dir or None,
        max_retries=max_retries or 0,
        retry_delay=retry_delay or 0.0,
        max_retry_delay=max_retry_delay,
        index=index,
    )
    if not settings.on_demand and not settings.periodic:
        missing = "content" if not rules else "pollInterval"
        r.warnings.append(
            (path, f"neither onDemand nor periodic sync (which needs both content and pollInterval; {missing} is "
             "missing): this registry is never used")
        )
    return settings


def _read_credentials(r: _Reader, filename: str) -> dict[str, Credentials]:
    path = "credentialsFile"
    try:
        with open(filename, "rb") as stream:
            document = json.loads(stream.read().decode("utf-8-sig"))
    except OSError as error:
        r.problems.append((path, f"cannot read {filename!r}: {error.strerror}"))
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        r.problems.append((path, f"{filename!r} is not JSON: {error}"))
        return {}
    if not isinstance(document, dict):
        r.problems.append((path, f'{filename!r} must hold an object {{"host[:port]": {{"username": ..., "password": ...}}}}'))
        return {}
    found: dict[str, Credentials] = {}
    for host, entry in document.items():
        fields = {key.lower(): value for key, value in entry.items()} if isinstance(entry, dict) else {}
        username, password = fields.get("username"), fields.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            r.problems.append(
                (path, f'{filename!r}: the entry for {host!r} must be {{"username": "...", "password": "..."}}')
            )
            continue
        found[host] = Credentials(username, password)
    return found


def read_sync_settings(
    raw: Mapping[str, Any],
) -> tuple[SyncSettings | None, list[tuple[str, str]], list[tuple[str, str]]]:
    """Settings (None when disabled or anything is wrong), problems and warnings, each as (key, sentence)."""
    r = _Reader()
    values = r.known(raw, _TOP_KEYS, "")
    enable = values.get("enable", True)  # zot enables an extension that is present unless told otherwise
    if not isinstance(enable, bool):
        r.problems.append(("enable", f"must be a boolean (true or false), not {_json_type(enable)}"))
    if "downloadDir" in values:
        r.warnings.append(("downloadDir", "zotpy streams upstream blobs straight into its storage; ignored"))
    credentials_file = r.typed(values, "credentialsFile", "", str, "a file path")
    credentials = _read_credentials(r, credentials_file) if credentials_file else {}
    listed = r.typed(values, "registries", "", list, "an array of upstream registries")
    registries = [_read_registry(r, item, index) for index, item in enumerate(listed or ())]
    if not listed and enable is True:
        r.warnings.append(("registries", "no upstream registry is configured: nothing is mirrored"))
    if r.problems or enable is not True:
        return None, r.problems, r.warnings
    known_hosts = {urlsplit(url).netloc for registry in registries if registry for url in registry.urls}
    for host in sorted(set(credentials) - known_hosts):
        r.warnings.append(("credentialsFile", f"{host!r} is none of the registries' hosts; its credentials are unused"))
    settings = SyncSettings(
        registries=tuple(registry for registry in registries if registry is not None),
        credentials=credentials,
        credentials_file=credentials_file,
    )
    return settings, r.problems, r.warnings
