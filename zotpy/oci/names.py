"""Repository name and tag grammar.

Names are validated before anything else touches them: they become storage
paths, so a name outside the grammar must never reach a driver.
"""

from __future__ import annotations

import re

from zotpy.oci.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

# Generous: the spec only notes that clients commonly limit host+name to 255.
MAX_NAME_LENGTH = 255

# Path components the on-disk layout uses inside a repository; a repository
# called ``x/blobs`` would live inside repository ``x``'s blob store.
RESERVED_COMPONENTS = frozenset({"blobs", ".uploads"})


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``NAME_INVALID``."""
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", detail={"name": name[:300]})
    if any(part in RESERVED_COMPONENTS for part in name.split("/")[1:]):
        raise RegistryError(
            "NAME_INVALID",
            "repository name component is reserved by the storage layout",
            detail={"name": name},
        )
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_PATTERN.fullmatch(tag) is not None
