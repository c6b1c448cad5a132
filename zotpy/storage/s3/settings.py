"""zot's ``storage.storageDriver`` mapping for S3, read into :class:`S3Settings`.

zot hands this mapping to distribution's ``s3-aws`` driver, which reads it loosely (booleans and
numbers may be strings, unknown keys are dropped). zotpy reads the same keys with the same
defaults, but says which key is wrong instead of failing at the first request, and refuses the
settings it does not implement when ignoring them would change what lands in the bucket (server-side
encryption, storage class, ACL). This module is pure: :mod:`zotpy.config` calls :func:`read_s3_settings`
and prefixes the key names with ``storage.storageDriver.``.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

import attrs

from zotpy.keypath import KeyPathReader, unknown_key

#: Keys that are read and honoured.
_HONOURED = frozenset(
    {
        "name", "rootdirectory", "region", "regionendpoint", "bucket", "secure", "skipverify",
        "accesskey", "secretkey", "sessiontoken", "forcepathstyle", "usedualstack", "accelerate",
        "useragent", "v4auth", "encrypt", "storageclass", "objectacl",
    }
)

#: Keys distribution knows whose effect zotpy does not need: accepted with a warning.
_IGNORED = {
    "chunksize": "zotpy sends each appended chunk as one part (at least 5 MiB, S3's minimum); ignored",
    "multipartcopychunksize": "zotpy copies with CopyObject up to 5 GiB and in 5 GiB parts beyond; ignored",
    "multipartcopymaxconcurrency": "zotpy copies parts one at a time; ignored",
    "multipartcopythresholdsize": "zotpy copies with CopyObject up to 5 GiB and in 5 GiB parts beyond; ignored",
    "loglevel": "botocore is not used to send requests, so its log level does nothing; ignored",
    "maxrequestspersecond": "zotpy does not rate-limit S3 requests; ignored",
    "maxretries": "zotpy retries transient failures of idempotent calls a few times itself; ignored",
}

#: Keys whose effect zotpy does not implement and cannot ignore.
_REFUSED = {
    "keyid": "KMS server-side encryption is not implemented in zotpy; remove it (a bucket default "
    "encryption policy applies to zotpy's writes too)",
    "checksumalgorithm": "per-request checksums are not implemented in zotpy; remove it",
    "checksumdisabled": "per-request checksums are not implemented in zotpy; remove it",
}


@attrs.frozen
class S3Settings:
    """Where and how to reach the bucket. ``endpoint`` is None for AWS itself (botocore's endpoint
    rules pick the URL from ``region``), else a URL with its scheme."""

    bucket: str
    region: str
    root_directory: str = ""
    endpoint: str | None = None
    secure: bool = True
    skip_verify: bool = False
    force_path_style: bool = False
    use_dual_stack: bool = False
    accelerate: bool = False
    access_key: str | None = attrs.field(default=None, repr=False)
    secret_key: str | None = attrs.field(default=None, repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)
    user_agent: str | None = None


class _Reader(KeyPathReader):
    """The driver's flat section (paths are its keys), with distribution's string and boolean rules."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        super().__init__()
        self.raw = raw

    def string(self, key: str, required: str = "") -> str | None:
        """The string at ``key``; when missing, a problem saying ``required`` (what the key is for)."""
        value = self.raw.get(key)
        if value is None or value == "":
            if required:
                self.problems.append((key, f"required: {required}"))
            return None
        if not isinstance(value, str):
            self.problems.append((key, f"must be a string, not {type(value).__name__}"))
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """distribution's ``parseBool``: a JSON boolean or the strings "true"/"false"."""
        value = self.raw.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.problems.append((key, f"must be true or false, not {value!r}"))
        return default


def _endpoint(reader: _Reader, secure: bool) -> str | None:
    endpoint = reader.string("regionendpoint")
    if endpoint is None:
        return None
    if "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    parts = urlsplit(endpoint)
    try:
        parts.port
    except ValueError:
        reader.problems.append(("regionendpoint", f"{endpoint!r} has an invalid port"))
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problems.append(("regionendpoint", f"{endpoint!r} is not an http(s) URL or host:port"))
        return None
    if parts.path.strip("/") or parts.query:
        reader.problems.append(("regionendpoint", f"{endpoint!r} must not have a path or query"))
        return None
    return f"{parts.scheme}://{parts.netloc}"


def read_s3_settings(raw: Mapping[str, Any]) -> tuple[S3Settings | None, list[tuple[str, str]], list[tuple[str, str]]]:
    """Settings (None if anything is wrong), problems and warnings, each as (key, sentence).

    ``raw`` has lower-cased keys, as zot's config loader hands them to the driver.
    """
    reader = _Reader(raw)
    for key in raw:
        if key in _HONOURED:
            continue
        if key in _IGNORED:
            reader.warnings.append((key, _IGNORED[key]))
        elif key in _REFUSED:
            reader.problems.append((key, _REFUSED[key]))
        else:
            known = {name: name for name in sorted(_HONOURED | set(_IGNORED))}
            reader.problem(key, unknown_key(key, known, ""))

    bucket = reader.string("bucket", required="the name of the bucket that holds the registry")
    region = reader.string("region", required='the bucket\'s AWS region (S3-compatible servers accept e.g. "us-east-1")')
    secure = reader.boolean("secure", True)
    endpoint = _endpoint(reader, secure)
    # zot: "if regionendpoint is provided, forcepathstyle should be set to true" unless it is given.
    force_path_style = reader.boolean("forcepathstyle", endpoint is not None)
    root = reader.string("rootdirectory") or ""
    inner = root.strip("/")
    if inner and any(part in ("", ".", "..") or part != part.strip() for part in inner.split("/")):
        reader.problems.append(("rootdirectory", f"{root!r} is not a clean path"))
    access_key, secret_key = reader.string("accesskey"), reader.string("secretkey")
    if (access_key is None) != (secret_key is None):
        missing = "secretkey" if secret_key is None else "accesskey"
        reader.problems.append((missing, "required when the other half of the key pair is given"))
    if not reader.boolean("v4auth", True):
        reader.problems.append(("v4auth", "zotpy signs with AWS Signature Version 4 only; remove it or set it to true"))
    if reader.boolean("encrypt", False):
        reader.problems.append(
            ("encrypt", "server-side encryption headers are not implemented in zotpy; set a default encryption "
             "policy on the bucket instead and remove encrypt")
        )
    storage_class = reader.string("storageclass")
    if storage_class is not None and storage_class.upper() != "STANDARD":
        reader.problems.append(("storageclass", "only STANDARD is implemented in zotpy"))
    acl = reader.string("objectacl")
    if acl is not None and acl != "private":
        reader.problems.append(("objectacl", "only private is implemented in zotpy"))
    settings = S3Settings(
        bucket=bucket or "",
        region=region or "",
        root_directory=root,
        endpoint=endpoint,
        secure=secure,
        skip_verify=reader.boolean("skipverify", False),
        force_path_style=force_path_style,
        use_dual_stack=reader.boolean("usedualstack", False),
        accelerate=reader.boolean("accelerate", False),
        access_key=access_key,
        secret_key=secret_key,
        session_token=reader.string("sessiontoken"),
        user_agent=reader.string("useragent"),
    )
    return (None if reader.problems else settings), reader.problems, reader.warnings
