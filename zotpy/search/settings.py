"""zot's ``extensions.search`` and ``extensions.ui`` mappings.

``search`` has ``enable`` and ``cve``; zotpy has no vulnerability scanner, so ``cve`` is refused by
name rather than ignored (an operator relying on it must know it does nothing here). ``ui`` has
``enable`` and, as in zot, needs search: the UI is built on the search API. Keys arrive lower-cased
(:mod:`zotpy.config`); problems come back as ``(key path, sentence)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from zotpy.keypath import KeyPathReader

_SEARCH_KEYS = {"enable": "enable", "cve": "cve"}
_UI_KEYS = {"enable": "enable"}


@attrs.frozen
class SearchSettings:
    """``extensions.search`` enabled; ``ui``: ``extensions.ui`` enabled too."""

    ui: bool = False


def _enabled(r: KeyPathReader, raw: Any, names: Mapping[str, str], path: str) -> bool:
    if raw is None:  # zot enables `"search": null` like `"search": {}`
        return True
    if not isinstance(raw, Mapping):
        return False  # reported by the config's extension check
    values = r.known(raw, names, path)
    enable = values.get("enable", True)
    return enable is True


def read_search_settings(extensions: Mapping[str, Any]) -> tuple[SearchSettings | None, list[tuple[str, str]]]:
    """The settings (None: search disabled) and problems, from the whole ``extensions`` mapping."""
    r = KeyPathReader()
    search = "search" in extensions and _enabled(r, extensions["search"], _SEARCH_KEYS, "extensions.search")
    if isinstance(extensions.get("search"), Mapping) and extensions["search"].get("cve") is not None:
        r.problem(
            "extensions.search.cve",
            "zotpy has no vulnerability scanner: remove the cve section (search works without it)",
        )
    ui = "ui" in extensions and _enabled(r, extensions["ui"], _UI_KEYS, "extensions.ui")
    if ui and not search:
        r.problem("extensions.ui", "the UI is built on the search API: enable extensions.search too")
    return (SearchSettings(ui=ui) if search else None), r.problems
