"""doublestar globs (``bmatcuk/doublestar``, what zot matches repository names with): ``*`` within a
path segment, ``**`` across segments (``a/**`` also matches ``a``), ``?``, ``[...]``, ``{a,b}``.

Used by sync's ``content`` prefixes and by access control's ``repositories`` keys, which zot reads
with the same library.
"""

from __future__ import annotations

import functools
import re

__all__ = ["GlobError", "compile_glob", "glob_match"]


class GlobError(ValueError):
    """A prefix pattern doublestar would refuse (an unclosed ``[`` or ``{``, a trailing ``\\``)."""


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    """The regex for the ``[...]`` at ``start`` and the index after it. Classes never match ``/``."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] in "!^"
    if negated:
        i += 1
    body = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        char = pattern[i]
        if char == "\\":
            i += 1
            if i == len(pattern):
                break
            char = pattern[i]
        body.append("-" if char == "-" else re.escape(char))  # "-" stays a range
        first = False
        i += 1
    if i >= len(pattern):
        raise GlobError(f"unclosed [ in {pattern!r}")
    inner = "".join(body)
    return (f"[^/{inner}]" if negated else f"(?!/)[{inner}]"), i + 1


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex matching exactly the names doublestar's ``Match(pattern, name)`` matches."""
    out: list[str] = []
    depth = 0
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            whole_segment = (i == 0 or pattern[i - 1] == "/") and pattern[i : i + 2] == "**"
            if whole_segment and i + 2 == n:
                # "a/**" matches "a" itself and everything below it.
                if out and out[-1] == "/":
                    out[-1] = "(?:/.*)?"
                else:
                    out.append(".*")
                i += 2
                continue
            if whole_segment and pattern[i + 2] == "/":
                out.append("(?:[^/]*/)*")  # "**/": zero or more directories
                i += 3
                continue
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            regex, i = _char_class(pattern, i)
            out.append(regex)
            continue
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        elif char == "\\":
            i += 1
            if i == n:
                raise GlobError(f"{pattern!r} ends with an escaping backslash")
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    if depth:
        raise GlobError(f"unclosed {{ in {pattern!r}")
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error as error:
        raise GlobError(f"{pattern!r}: {error}") from None


def glob_match(pattern: str, name: str) -> bool:
    return compile_glob(pattern).match(name) is not None


