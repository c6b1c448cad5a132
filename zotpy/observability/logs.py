"""Logs as one JSON object per line, as zot writes them, through ``twisted.logger``.

Every line has ``time`` (RFC 3339, UTC), ``level`` (``debug``, ``info``, ``warn``, ``error``),
``message``, ``module`` (the logger's namespace) and the event's own fields; in a cluster also
``clusterMember`` and ``clusterMemberIndex`` (a string, as zot writes it). A failure adds ``error``
(its traceback, on the same line).

Under twistd, :class:`TwistdLogging` hands :class:`JSONLogObserver` to twistd as the
application's ``ILogObserver``, which twistd's ``AppLogger`` prefers to its own text observer:
every event, twistd's and twisted.web's included, is written once, as JSON, where the operator
asked: ``log.output`` when the config names a file, else where twistd would have written
(``--logfile``/``-l``, stdout with ``-n``, ``twistd.log`` when daemonized). An explicit
``twistd --logger`` or ``--syslog`` still wins. Lines below ``log.level`` are dropped; the level can
change at run time (SIGHUP), and a file output is reopened on SIGHUP (for logrotate).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import threading
import time
from typing import Any, Mapping, TextIO

from twisted.application.service import MultiService, Service
from twisted.logger import ILogObserver, LogLevel, formatEvent
from twisted.python.components import Componentized
from zope.interface import implementer

#: zotpy's level names (zot's) for twisted.logger's levels.
LEVEL_NAMES: Mapping[LogLevel, str] = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "error",
}
_PRIORITY = {"debug": 0, "info": 1, "warn": 2, "error": 3}

# Keys of legacy (twisted.python.log) events that repeat what the line already says.
_LEGACY_KEYS = frozenset({"message", "isError", "printed", "format", "time", "system", "why", "failure"})
_RESERVED = frozenset({"time", "level", "message", "module", "error"})


def rfc3339(timestamp: float) -> str:
    fraction, whole = math.modf(timestamp)
    microseconds, second = round(fraction * 1e6), int(whole)
    if microseconds >= 1_000_000:  # rounded up into the next second, as datetime rounds it
        microseconds, second = microseconds - 1_000_000, second + 1
    return _second_text(second) + f"{microseconds // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    """The date and time of a whole second, up to its dot: formatted once per second, not per line."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_record(event: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object for one twisted.logger event (``fields`` added to every line)."""
    level = event.get("log_level", LogLevel.info)
    record: dict[str, Any] = {
        "time": rfc3339(event.get("log_time") or 0.0),
        "level": LEVEL_NAMES.get(level, "info"),
        "message": "",
    }
    failure = event.get("log_failure")
    text = event.get("log_format")
    try:
        if isinstance(text, str) and "{" not in text and "}" not in text and "message" not in event:
            record["message"] = text  # nothing to fill in (the access log's "HTTP API"): as formatEvent would
        else:
            record["message"] = formatEvent(dict(event)) if "log_format" in event or "message" in event else ""
    except Exception:  # formatEvent reports its own problems in the text; never lose the line
        record["message"] = repr(event.get("log_format"))
    if not record["message"] and failure is not None:
        record["message"] = failure.getErrorMessage()
    namespace = event.get("log_namespace")
    if namespace:
        record["module"] = namespace
    record.update(fields)
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in _RESERVED or key in fields:
            continue
        record[key] = value
    if failure is not None:
        record["error"] = failure.getTraceback()
    return record


class LogOutput:
    """Where lines go: a file opened for appending (reopened on demand), or a stream given."""

    def __init__(self, path: str | None = None, stream: TextIO | None = None) -> None:
        assert (path is None) != (stream is None)
        self.path = path
        self._lock = threading.Lock()
        self._stream = stream if stream is not None else self._open()

    def _open(self) -> TextIO:
        assert self.path is not None
        return open(self.path, "a", encoding="utf-8")

    def write(self, line: str) -> None:
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def reopen(self) -> None:
        """Close and open the file again (after logrotate moved it); streams stay as they are."""
        if self.path is None:
            return
        with self._lock:
            self._stream.close()
            self._stream = self._open()

    def close(self) -> None:
        if self.path is not None:
            with self._lock:
                self._stream.close()

    def __repr__(self) -> str:
        return f"LogOutput({self.path or getattr(self._stream, 'name', self._stream)!r})"


@implementer(ILogObserver)
class JSONLogObserver:
    """Writes each event at or above ``level`` as one JSON line to ``output``."""

    def __init__(self, output: LogOutput, level: str = "info", fields: Mapping[str, str] | None = None) -> None:
        self.output = output
        self.level = level
        self.fields: dict[str, str] = dict(fields or {})

    @property
    def level(self) -> str:
        return self._level

    @level.setter
    def level(self, name: str) -> None:
        if name not in _PRIORITY:
            raise ValueError(f"unknown log level {name!r}")
        self._level = name
        self._threshold = _PRIORITY[name]

    def __call__(self, event: Mapping[str, Any]) -> None:
        if _PRIORITY[LEVEL_NAMES.get(event.get("log_level", LogLevel.info), "info")] < self._threshold:
            return
        record = json_record(event, self.fields)
        try:
            line = json.dumps(record, default=_jsonable)
        except (TypeError, ValueError):  # e.g. a field holding a circular structure: keep the line
            line = json.dumps({key: _jsonable(value) for key, value in record.items()})
        self.output.write(line + "\n")


def output_problem(path: str | None) -> str | None:
    """Why the file ``log.output`` names cannot be written (it is created if missing), or None."""
    if path is None:
        return None
    try:
        with open(path, "a", encoding="utf-8"):
            return None
    except OSError as error:
        return f"cannot open {path!r} for writing: {error.strerror}"


def cluster_fields(index: int | None, member: str | None) -> dict[str, str]:
    """zot's fields for a cluster member (the index as a string, as zot writes it)."""
    if index is None or member is None:
        return {}
    return {"clusterMember": member, "clusterMemberIndex": str(index)}


def twistd_output(log_output: str | None, twistd_options: Mapping[str, Any] | None) -> LogOutput | None:
    """Where the JSON lines go under twistd; None to leave logging to twistd (``--logger``, ``--syslog``)."""
    options = twistd_options or {}
    if log_output:
        return LogOutput(path=log_output)
    if options.get("logger") or options.get("syslog"):
        return None
    logfile = options.get("logfile") or ""
    if logfile == "-" or (not logfile and options.get("nodaemon")):
        return LogOutput(stream=sys.stdout)
    return LogOutput(path=logfile or "twistd.log")


class TwistdLogging(MultiService):
    """The service handed to twistd: its only child is the registry; on joining twistd's Application
    it sets ``observer`` as the Application's ``ILogObserver`` (see the module docstring)."""

    def __init__(self, service: Service, observer: JSONLogObserver | None) -> None:
        super().__init__()
        self.observer = observer
        service.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if self.observer is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver) is None:
                parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)


def make_observer(
    level: str, log_output: str | None, twistd_options: Mapping[str, Any] | None, fields: Mapping[str, str]
) -> JSONLogObserver | None:
    output = twistd_output(log_output, twistd_options)
    return None if output is None else JSONLogObserver(output, level, fields)
