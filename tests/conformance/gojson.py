"""JSON encoding the way Go's ``encoding/json`` does it, plus small helpers
shared by both suite ports (digests, Go's ``crypto/rand.Text``)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def go_json(obj: Any, indent: bool = False) -> bytes:
    """``json.Marshal`` (compact) or ``json.MarshalIndent(v, "", "\\t")``.

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 and otherwise writes
    UTF-8; dict order is kept as given (callers build dicts in Go struct
    field order, with map keys sorted as Go sorts them).
    """
    if indent:
        text = json.dumps(obj, indent="\t", ensure_ascii=False)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return text.encode("utf-8")


def b64(data: bytes) -> str:
    """Go marshals ``[]byte`` as standard base64."""
    return base64.b64encode(data).decode("ascii")


def sorted_map(m: dict[str, str] | None) -> dict[str, str] | None:
    """A Go ``map[string]string`` marshals with sorted keys."""
    if m is None:
        return None
    return {k: m[k] for k in sorted(m)}


def digest_of(data: bytes, algo: str = "sha256") -> str:
    """``algo.FromBytes(data).String()``."""
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


def rand_text() -> str:
    """Go 1.24 ``crypto/rand.Text()``: 26 random base32 characters."""
    return "".join(secrets.choice(_BASE32) for _ in range(26))
