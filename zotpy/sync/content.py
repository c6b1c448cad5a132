"""Which upstream repositories and tags a registry's ``content`` rules mirror, and under which names.

zot reads ``content[].prefix`` as a doublestar glob (``*`` within a path segment, ``**`` across
segments, ``?``, ``[...]``, ``{a,b}``) with any leading ``/`` ignored, and maps names with
``destination`` and ``stripPrefix``. The functions here follow zot's rules (``content.go``), so a
zot configuration mirrors the same repositories under the same local names; the one addition is
that a local name is mapped back to an upstream name only when that name maps forward to the same
local name again, so an odd rule never makes on-demand sync fetch a repository the rules would not
have mirrored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from zotpy.doublestar import GlobError, compile_glob, glob_match  # noqa: F401 (re-exported for sync.settings)

_META = "*?[{\\"

#: Masterminds/semver's ``NewVersion`` grammar (what zot's ``tags.semver`` accepts): lenient, "v"
#: optional, minor and patch optional.
_SEMVER = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)


def split_pattern(pattern: str) -> tuple[str, str]:
    """doublestar's ``SplitPattern``: the static directory before the first meta character, and the rest."""
    meta = min((pattern.find(c) for c in _META if c in pattern), default=-1)
    slash = pattern.rfind("/") if meta == -1 else pattern.rfind("/", 0, meta)
    if slash == -1:
        return ".", pattern
    return pattern[:slash], pattern[slash + 1 :]


def is_semver(tag: str) -> bool:
    return _SEMVER.fullmatch(tag) is not None


@attrs.frozen
class TagRules:
    """``content[].tags``: Go regexps (searched, not anchored, as Go's ``MatchString``) and semver."""

    regex: str | None = None
    exclude_regex: str | None = None
    semver: bool = False

    def select(self, tags: Iterable[str]) -> list[str]:
        chosen = list(tags)
        if self.regex is not None:
            wanted = re.compile(self.regex)
            chosen = [tag for tag in chosen if wanted.search(tag)] if self.regex else []
        if self.exclude_regex:
            unwanted = re.compile(self.exclude_regex)
            chosen = [tag for tag in chosen if not unwanted.search(tag)]
        if self.semver:
            chosen = [tag for tag in chosen if is_semver(tag)]
        return chosen


@attrs.frozen
class ContentRule:
    """One ``content[]`` entry."""

    prefix: str
    tags: TagRules | None = None
    destination: str = ""
    strip_prefix: bool = False

    def matches_upstream(self, upstream: str) -> bool:
        return glob_match(self.prefix.removeprefix("/"), upstream)

    def local_name(self, upstream: str) -> str:
        """zot's ``getRepoDestination``."""
        upstream = upstream.strip("/")
        if self.strip_prefix:
            upstream = upstream.removeprefix(self.prefix.strip("/*")).strip("/")
        joined = f"{self.destination.strip('/')}/{upstream}"
        return joined if joined == "/" else joined.strip("/")

    def matches_local(self, local: str) -> bool:
        """zot's ``GetContentByLocalRepo`` test for this rule."""
        prefix = self.prefix.strip("/") + "/"
        rest = split_pattern(prefix)[1] if self.strip_prefix else prefix
        return glob_match(f"{self.destination.strip('/')}/{rest}".strip("/"), local.strip("/"))

    def upstream_name(self, local: str) -> str:
        """zot's ``getRepoSource``."""
        local = local.strip("/").removeprefix(self.destination.strip("/")).strip("/")
        joined = f"{self.prefix.strip('/*')}/{local}" if self.strip_prefix else local
        return joined if joined == "/" else joined.strip("/")

    def select_tags(self, tags: Iterable[str]) -> list[str]:
        return self.tags.select(tags) if self.tags is not None else list(tags)


@attrs.frozen
class NameMapping:
    """An upstream repository, the local name it is mirrored under and the rule that says so."""

    upstream: str
    local: str
    rule: ContentRule | None


@attrs.frozen
class ContentRules:
    """A registry's ``content`` list; empty means "everything, under the same names" (zot's
    on-demand behaviour without content rules)."""

    rules: tuple[ContentRule, ...] = ()

    def for_upstream(self, upstream: str) -> NameMapping | None:
        """How periodic sync mirrors ``upstream`` (the first matching rule wins), or None."""
        if not self.rules:
            return NameMapping(upstream, upstream, None)
        for rule in self.rules:
            if rule.matches_upstream(upstream):
                local = rule.local_name(upstream)
                return None if local in ("", "/") else NameMapping(upstream, local, rule)
        return None

    def for_local(self, local: str) -> NameMapping | None:
        """Where on-demand sync finds ``local`` upstream, or None when no rule maps it."""
        if not self.rules:
            return NameMapping(local, local, None)
        for rule in self.rules:
            if rule.matches_local(local):
                upstream = rule.upstream_name(local)
                forward = self.for_upstream(upstream) if upstream not in ("", "/") else None
                if forward is not None and forward.local == local:
                    return forward
                return None
        return None

    def select_tags(self, mapping: NameMapping, tags: Sequence[str]) -> list[str]:
        return mapping.rule.select_tags(tags) if mapping.rule is not None else list(tags)
