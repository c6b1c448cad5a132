"""Reading a JSON section of zot's config while naming every problem by its key path.

``config.py``, the S3 driver's settings and sync's settings all read zot's JSON the same way: keys
matched without regard to case, an unknown key reported with the nearest known one, a value of the
wrong JSON type reported at ``a.b.c`` rather than raised. Kept here, below every package that reads
config, so the three readers cannot drift apart in how they word or place a problem.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from zotpy.jsontypes import json_type

__all__ = ["KeyPathReader", "join", "unknown_key"]


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` alone at the top."""
    return f"{path}.{key}" if path else key


def unknown_key(key: str, names: Mapping[str, str], path: str) -> str:
    """The message for ``key`` not being one of ``names`` (lower-case -> zot's spelling), with the
    nearest known key as a hint, since a typo is the usual cause."""
    close = difflib.get_close_matches(key.lower(), list(names), n=1, cutoff=0.75)
    return "unknown key" + (f"; did you mean {join(path, names[close[0]])}?" if close else "")


class KeyPathReader:
    """Collects problems and warnings as (path, sentence) instead of stopping at the first one, so
    one run of ``zotpy verify`` lists everything wrong with a file."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append((path, message))

    def known(self, raw: Mapping[str, Any], names: Mapping[str, str], path: str) -> dict[str, Any]:
        """``raw``'s items (keys already lower-cased) under zot's spelling; unknown keys are problems
        and null values read as absent (Go's nil)."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = names.get(key)
            if name is None:
                self.problem(join(path, key), unknown_key(key, names, path))
            elif value is not None:
                out[name] = value
        return out

    def typed(self, values: Mapping[str, Any], name: str, path: str, kind: type, what: str) -> Any:
        """``values[name]`` if it has JSON type ``kind`` (a boolean is not a number), else None and a
        problem saying it must be ``what``."""
        value = values.get(name)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(join(path, name), f"must be {what}, not {json_type(value)}")
            return None
        return value
