"""``storage.gc``, ``gcDelay``, ``gcInterval``, ``gcTimeWindow`` and ``retention``, read with zot's
meaning and defaults.

zot has two delays: ``gcDelay`` (default 1h) protects blobs and upload sessions, which a push in
progress is about to reference; ``retention.delay`` (default 24h) protects untagged manifests and
referrers, which a multi-arch push uploads before the index that tags them. A repository no
retention policy matches keeps every tag; zot still collects its untagged manifests (that are not
referrers), and keeps referrers whose subject is gone unless a policy says ``deleteReferrers``;
so does zotpy.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Mapping

import attrs

from zotpy.doublestar import GlobError, compile_glob, glob_match
from zotpy.jsontypes import json_type
from zotpy.sync.settings import parse_go_duration

DEFAULT_GC_DELAY = 3600.0
DEFAULT_GC_INTERVAL = 3600.0
DEFAULT_RETENTION_DELAY = 24 * 3600.0

Problems = list[tuple[str, str]]


@attrs.frozen
class TimeWindow:
    """``gcTimeWindow`` ("01:00-08:00", local time as zot reads it): minutes after midnight; a
    window whose end is before its start runs over midnight."""

    start: int
    end: int

    def contains(self, when: float) -> bool:
        moment = datetime.datetime.fromtimestamp(when)
        minute = moment.hour * 60 + moment.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@attrs.frozen
class KeepRule:
    """One ``keepTags`` entry (or ``keepUntagged``): a tag matching ``patterns`` (all tags when
    none) is kept if it satisfies any of the limits set, or when none is set."""

    patterns: tuple[str, ...] = ()
    pulled_within: float | None = None
    pushed_within: float | None = None
    most_recently_pushed_count: int = 0
    most_recently_pulled_count: int = 0


@attrs.frozen
class RetentionPolicy:
    repositories: tuple[str, ...]
    delete_referrers: bool = False
    delete_untagged: bool = True
    keep_tags: tuple[KeepRule, ...] = ()
    keep_untagged: KeepRule | None = None


@attrs.frozen
class LifecycleSettings:
    """Whether GC runs at all is ``storage.gc`` (:attr:`zotpy.config.StorageConfig.gc`)."""

    gc_delay: float = DEFAULT_GC_DELAY
    gc_interval: float = DEFAULT_GC_INTERVAL
    time_window: TimeWindow | None = None
    retention_delay: float = DEFAULT_RETENTION_DELAY
    dry_run: bool = False
    policies: tuple[RetentionPolicy, ...] = ()

    def policy_for(self, repo: str) -> RetentionPolicy | None:
        """The first policy whose ``repositories`` globs match ``repo`` (zot's order), else None."""
        for policy in self.policies:
            if any(glob_match(pattern, repo) for pattern in policy.repositories):
                return policy
        return None

    def deletes_untagged(self, repo: str) -> bool:
        """zot: the matching policy's ``deleteUntagged`` (default true); true without one."""
        policy = self.policy_for(repo)
        return policy is None or policy.delete_untagged

    def deletes_referrers(self, repo: str) -> bool:
        """zot: the matching policy's ``deleteReferrers`` (default false); false without one."""
        policy = self.policy_for(repo)
        return policy is not None and policy.delete_referrers


def read_lifecycle_settings(storage: Mapping[str, Any]) -> tuple[LifecycleSettings, Problems, Problems]:
    """From the ``storage`` section (canonical key names; ``retention`` raw, keys lower-cased):
    the settings, then problems and warnings as (key path, message)."""
    problems: Problems = []
    warnings: Problems = []

    def duration(value: Any, path: str, default: float) -> float:
        if value is None:
            return default
        try:
            seconds = parse_go_duration(value) if isinstance(value, str) else None
        except ValueError as error:
            problems.append((path, str(error)))
            return default
        if seconds is None:
            problems.append((path, f'must be a duration string such as "1h" or "30m", not {json_type(value)}'))
            return default
        if seconds < 0:
            problems.append((path, "must not be negative"))
            return default
        return seconds

    gc_delay = duration(storage.get("gcDelay"), "storage.gcDelay", DEFAULT_GC_DELAY)
    gc_interval = duration(storage.get("gcInterval"), "storage.gcInterval", DEFAULT_GC_INTERVAL)
    window = None
    if storage.get("gcTimeWindow"):
        try:
            window = parse_time_window(storage["gcTimeWindow"])
        except ValueError as error:
            problems.append(("storage.gcTimeWindow", str(error)))
    retention = storage.get("retention") or {}
    if not isinstance(retention, dict):
        problems.append(("storage.retention", f"must be an object, not {json_type(retention)}"))
        retention = {}
    known = {"dryrun", "delay", "policies"}
    for key in retention:
        if key not in known:
            problems.append((f"storage.retention.{key}", "unknown key"))
    dry_run = retention.get("dryrun", False)
    if not isinstance(dry_run, bool):
        problems.append(("storage.retention.dryRun", f"must be true or false, not {json_type(dry_run)}"))
        dry_run = False
    delay = duration(retention.get("delay"), "storage.retention.delay", DEFAULT_RETENTION_DELAY)
    policies = []
    raw_policies = retention.get("policies") or []
    if not isinstance(raw_policies, list):
        problems.append(("storage.retention.policies", f"must be an array, not {json_type(raw_policies)}"))
        raw_policies = []
    for index, raw in enumerate(raw_policies):
        policy = _policy(raw, f"storage.retention.policies[{index}]", problems, duration)
        if policy is not None:
            policies.append(policy)
    settings = LifecycleSettings(
        gc_delay=gc_delay, gc_interval=gc_interval, time_window=window,
        retention_delay=delay, dry_run=dry_run, policies=tuple(policies),
    )
    return settings, problems, warnings


def parse_time_window(text: Any) -> TimeWindow:
    if not isinstance(text, str):
        raise ValueError(f'must be a string such as "01:00-08:00", not {json_type(text)}')
    parts = text.strip().split("-")
    if len(parts) != 2:
        raise ValueError(f'{text!r} is not a time window: write "HH:MM-HH:MM", e.g. "01:00-08:00"')
    minutes = []
    for part in parts:
        try:
            moment = datetime.datetime.strptime(part.strip().replace(".", ":"), "%H:%M")
        except ValueError:
            raise ValueError(f'{part.strip()!r} in {text!r} is not a time of day (HH:MM)') from None
        minutes.append(moment.hour * 60 + moment.minute)
    if minutes[0] == minutes[1]:
        raise ValueError(f"{text!r}: the start and the end must differ")
    return TimeWindow(minutes[0], minutes[1])


_POLICY_KEYS = {"repositories", "deletereferrers", "deleteuntagged", "keeptags", "keepuntagged"}
_RULE_KEYS = {"patterns", "pulledwithin", "pushedwithin", "mostrecentlypushedcount", "mostrecentlypulledcount"}
_SPELLING = {
    "deletereferrers": "deleteReferrers", "deleteuntagged": "deleteUntagged", "keeptags": "keepTags",
    "keepuntagged": "keepUntagged", "pulledwithin": "pulledWithin", "pushedwithin": "pushedWithin",
    "mostrecentlypushedcount": "mostRecentlyPushedCount", "mostrecentlypulledcount": "mostRecentlyPulledCount",
}


def _policy(raw: Any, path: str, problems: Problems, duration: Any) -> RetentionPolicy | None:
    if not isinstance(raw, dict):
        problems.append((path, f"must be an object, not {json_type(raw)}"))
        return None
    for key in raw:
        if key not in _POLICY_KEYS:
            problems.append((f"{path}.{key}", "unknown key"))
    repositories = raw.get("repositories") or []
    if not isinstance(repositories, list) or not all(isinstance(r, str) for r in repositories) or not repositories:
        problems.append((f"{path}.repositories", "required: an array of repository globs, e.g. [\"prod/**\"]"))
        return None
    for pattern in repositories:
        try:
            compile_glob(pattern)
        except GlobError as error:
            problems.append((f"{path}.repositories", f"{pattern!r}: {error}"))
    flags = {}
    for key, default in (("deletereferrers", False), ("deleteuntagged", True)):
        value = raw.get(key, default)
        if not isinstance(value, bool):
            problems.append((f"{path}.{_SPELLING[key]}", f"must be true or false, not {json_type(value)}"))
            value = default
        flags[key] = value
    keep_tags = []
    raw_rules = raw.get("keeptags") or []
    if not isinstance(raw_rules, list):
        problems.append((f"{path}.keepTags", f"must be an array, not {json_type(raw_rules)}"))
        raw_rules = []
    for index, rule in enumerate(raw_rules):
        keep_tags.append(_rule(rule, f"{path}.keepTags[{index}]", problems, duration, patterns=True))
    keep_untagged = None
    if raw.get("keepuntagged") is not None:
        keep_untagged = _rule(raw["keepuntagged"], f"{path}.keepUntagged", problems, duration, patterns=False)
    return RetentionPolicy(
        repositories=tuple(repositories),
        delete_referrers=flags["deletereferrers"],
        delete_untagged=flags["deleteuntagged"],
        keep_tags=tuple(rule for rule in keep_tags if rule is not None),
        keep_untagged=keep_untagged,
    )


def _rule(raw: Any, path: str, problems: Problems, duration: Any, patterns: bool) -> KeepRule | None:
    if not isinstance(raw, dict):
        problems.append((path, f"must be an object, not {json_type(raw)}"))
        return None
    for key in raw:
        if key not in _RULE_KEYS or (key == "patterns" and not patterns):
            problems.append((f"{path}.{key}", "unknown key"))
    found = raw.get("patterns") or []
    if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
        problems.append((f"{path}.patterns", "must be an array of regular expressions"))
        found = []
    for pattern in found:
        try:
            re.compile(pattern)
        except re.error as error:
            problems.append((f"{path}.patterns", f"{pattern!r} is not a regular expression: {error}"))
    counts = {}
    for key in ("mostrecentlypushedcount", "mostrecentlypulledcount"):
        value = raw.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append((f"{path}.{_SPELLING[key]}", "must be a whole number, 0 or more"))
            value = 0
        counts[key] = value
    pulled = raw.get("pulledwithin")
    pushed = raw.get("pushedwithin")
    return KeepRule(
        patterns=tuple(found),
        pulled_within=None if pulled is None else duration(pulled, f"{path}.pulledWithin", 0.0),
        pushed_within=None if pushed is None else duration(pushed, f"{path}.pushedWithin", 0.0),
        most_recently_pushed_count=counts["mostrecentlypushedcount"],
        most_recently_pulled_count=counts["mostrecentlypulledcount"],
    )
