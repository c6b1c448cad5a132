"""Content digests: parsing, validation and incremental hashing.

The spec's grammar is ``algorithm ":" encoded``; zotpy verifies content for the
algorithms it can compute (sha256, required, and sha512) and refuses any other
with ``DIGEST_INVALID`` before a storage path is ever built from the string.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import attrs

from zotpy.oci.errors import RegistryError

_GRAMMAR = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")

# algorithm -> length of its lowercase hex encoding
SUPPORTED_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
CANONICAL_ALGORITHM = "sha256"


class Hasher(Protocol):
    """A running hash (``hashlib``'s objects). A typing Protocol, the one exception to zope.interface
    at boundaries: hashlib's built-in types cannot declare an interface, and nothing else implements it."""

    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@attrs.frozen
class Digest:
    """A validated digest of a supported algorithm."""

    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    def hasher(self) -> Hasher:
        """A fresh hash object computing this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def matches(self, hasher: Hasher) -> bool:
        return hasher.hexdigest() == self.encoded


def parse_digest(text: str) -> Digest:
    """Parse and validate ``text``; raise ``DIGEST_INVALID`` if it is malformed or unsupported."""
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise RegistryError("DIGEST_INVALID", "invalid digest", detail={"digest": text[:200]})
    algorithm, encoded = match.groups()
    length = SUPPORTED_ALGORITHMS.get(algorithm)
    if length is None:
        raise RegistryError(
            "DIGEST_INVALID",
            f"unsupported digest algorithm {algorithm!r}",
            detail={"digest": text[:200], "supported": sorted(SUPPORTED_ALGORITHMS)},
        )
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise RegistryError(
            "DIGEST_INVALID",
            f"a {algorithm} digest is {length} lowercase hex characters",
            detail={"digest": text[:200]},
        )
    return Digest(algorithm, encoded)


def is_digest_reference(reference: str) -> bool:
    """True when a manifest reference looks like a digest rather than a tag (tags never contain ':')."""
    return ":" in reference


def digest_of(data: bytes, algorithm: str = CANONICAL_ALGORITHM) -> Digest:
    """The digest of a small in-memory body (manifests); blobs are hashed off the reactor thread."""
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
