"""SIGHUP: read the config file again and apply what can change while serving.

What changed is found by comparing the new config with the running one, key by key, in zot's
spelling (``log.level``, ``http.port``, ``extensions.sync``). Keys some part of zotpy registered a
hook for are applied by calling the hook with the new config (``log.level`` by the log observer;
the sync extension registers ``extensions.sync``). Every other key that differs from the config the
process started with needs a restart, and the log says which, on every reload until the restart.
A file that no longer reads (bad JSON, a bad value) changes nothing: the errors are logged and the
replica keeps serving with what it has.

SIGHUP is also logrotate's signal: files zotpy appends to (``log.output``, ``log.audit``) register
a reopener (:meth:`Reloader.register_reopen`), run on every SIGHUP before the config is read, so
nothing is written to a rotated file after the signal.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Iterable

import attrs
from twisted.application.service import Service
from twisted.logger import Logger

from zotpy.config import Config, ConfigError, load_config

log = Logger()

Hook = Callable[[Config], Any]
#: Says why a new config cannot be applied while serving: problems by key path (none: it can).
Check = Callable[[Config], list[tuple[str, str]]]

# The sections of Config read from the file (the others are derived from them, or bookkeeping).
_SECTIONS = ("dist_spec_version", "storage", "http", "log", "cluster")
_DERIVED = frozenset({"s3"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _diff(old: Any, new: Any, path: str) -> list[str]:
    if old == new:
        return []
    if attrs.has(type(old)) and type(old) is type(new):
        changed: list[str] = []
        for field in attrs.fields(type(old)):
            if field.name not in _DERIVED:
                changed += _diff(getattr(old, field.name), getattr(new, field.name), f"{path}.{_camel(field.name)}")
        return changed
    return [path]


def config_changes(old: Config, new: Config) -> list[str]:
    """The key paths whose values differ between two configs, e.g. ``["http.port", "log.level"]``."""
    changed: list[str] = []
    for section in _SECTIONS:
        changed += _diff(getattr(old, section), getattr(new, section), _camel(section))
    for name in sorted(set(old.extensions) | set(new.extensions)):
        if old.extensions.get(name) != new.extensions.get(name):
            changed.append(f"extensions.{name}")
    return changed


def _covers(keys: Iterable[str], path: str) -> bool:
    return any(path == key or path.startswith(key + ".") for key in keys)


class Reloader:
    """Keeps the running config and the hooks that apply parts of a new one."""

    def __init__(self, config: Config, load: Callable[[str], Config] = load_config) -> None:
        self.started = config
        self.current = config
        self.load = load
        self._hooks: list[tuple[tuple[str, ...], Hook]] = []
        self._reopeners: list[Callable[[], Any]] = []
        self._checks: list[tuple[tuple[str, ...], Check]] = []

    def register(self, keys: Iterable[str], hook: Hook, check: Check | None = None) -> None:
        """Call ``hook(new_config)`` on each reload where a key in ``keys`` (or below one) changed.
        ``check``, when given, is asked first: any problem it names refuses the whole reload (nothing
        applied, as for a file that does not read), with the problem logged at its key path."""
        self._hooks.append((tuple(keys), hook))
        if check is not None:
            self._checks.append((tuple(keys), check))

    def register_reopen(self, reopen: Callable[[], Any]) -> None:
        """Call ``reopen()`` on every SIGHUP (:meth:`reopen`): a file the process appends to."""
        self._reopeners.append(reopen)

    def reopen(self) -> None:
        """Reopen every registered file (logrotate renamed them); one that fails does not stop the others."""
        for reopen in self._reopeners:
            try:
                reopen()
            except Exception:
                log.failure("reopening a log file on SIGHUP failed")

    def reloadable(self, path: str) -> bool:
        return any(_covers(keys, path) for keys, _ in self._hooks)

    def reload(self) -> list[str]:
        """Read the file again and apply it; the keys applied."""
        source = self.current.source
        if source is None:
            log.warn("reload: no config file was given (embedded default); nothing to reload")
            return []
        try:
            new = self.load(source)
        except ConfigError as error:
            log.error("reload: {path} not applied, it has problems:\n{problems}", path=source, problems=str(error))
            return []
        changed = config_changes(self.current, new)
        refused = [
            problem for keys, check in self._checks if any(_covers(keys, path) for path in changed)
            for problem in check(new)
        ]
        if refused:
            log.error(
                "reload: {path} not applied, it cannot change while serving:\n{problems}",
                path=source, problems=str(ConfigError(refused)),
            )
            return []
        applied: list[str] = []
        for keys, hook in self._hooks:
            relevant = [path for path in changed if _covers(keys, path)]
            if not relevant:
                continue
            try:
                hook(new)
            except Exception:
                log.failure("reload: applying {keys} failed", keys=", ".join(relevant))
            else:
                applied += relevant
        pending = [path for path in config_changes(self.started, new) if not self.reloadable(path)]
        self.current = new
        log.info(
            "reload: read {path}; applied: {applied}",
            path=source, applied=", ".join(applied) or "nothing changed that can change at run time",
        )
        if pending:
            log.warn(
                "reload: changed but not applied until a restart: {keys}",
                keys=", ".join(pending), restartKeys=pending,
            )
        return applied


class SighupService(Service):
    """Runs ``on_hup`` (on the reactor thread) when the process receives SIGHUP, while running."""

    def __init__(self, reactor: Any, on_hup: Callable[[], Any]) -> None:
        self.reactor = reactor
        self.on_hup = on_hup
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._received)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _received(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._run)

    def _run(self) -> None:
        log.info("SIGHUP received")
        try:
            self.on_hup()
        except Exception:
            log.failure("handling SIGHUP failed")


def level_hook(observer: Any) -> Hook:
    """The hook that applies ``log.level`` to a :class:`~zotpy.observability.logs.JSONLogObserver`."""

    def apply(config: Config) -> None:
        before = observer.level
        observer.level = config.log.level
        log.warn("log level changed from {before} to {after}", before=before, after=config.log.level)

    return apply
