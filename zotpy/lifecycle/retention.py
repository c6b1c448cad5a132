"""Which tags a retention policy keeps (zot's ``keepTags`` semantics), from repository metadata.

For the first policy whose ``repositories`` globs match the repository: each tag belongs to the
first ``keepTags`` entry whose ``patterns`` (regular expressions, searched as Go's ``MatchString``
does; none means every tag) match it, and a tag no entry matches goes. Within an entry the tag
stays if any of its rules keeps it (``mostRecentlyPushedCount`` / ``mostRecentlyPulledCount``
among the entry's tags, ``pushedWithin``, ``pulledWithin`` — which also keeps what was pushed
within the period, as in zot), or if the entry sets no rule. A tag the metadata does not know is
kept ("tag statistics not found"); a repository without a matching policy, or whose policy has no
``keepTags``, keeps every tag. ``keepUntagged`` applies the same rules to untagged manifests.
"""

from __future__ import annotations

import re
from typing import Iterable

import attrs

from zotpy.lifecycle.settings import KeepRule, LifecycleSettings
from zotpy.meta.model import ImageMeta, RepositoryMeta


@attrs.frozen
class Candidate:
    """A tag (or an untagged manifest, ``tag`` None) with its manifest's push and last pull times."""

    tag: str | None
    digest: str
    pushed_at: float
    pulled_at: float  # 0 when never pulled


def candidates(meta: RepositoryMeta, tags: Iterable[str]) -> tuple[list[Candidate], list[str]]:
    """Candidates for the tags the metadata knows, and the tags it does not know."""
    by_tag = meta.tagged()
    known, unknown = [], []
    for tag in tags:
        image = by_tag.get(tag)
        if image is None:
            unknown.append(tag)
        else:
            known.append(_candidate(tag, image))
    return known, unknown


def _candidate(tag: str | None, image: ImageMeta) -> Candidate:
    return Candidate(tag, image.digest, image.pushed_at, image.last_pulled_at or 0.0)


def _matches(patterns: tuple[str, ...], tag: str) -> bool:
    return not patterns or any(re.search(pattern, tag) for pattern in patterns)


def kept_by_rule(rule: KeepRule, group: list[Candidate], now: float) -> list[Candidate]:
    """The members of ``group`` that ``rule`` keeps: any of its limits, or all when it sets none."""
    limits = []
    if rule.most_recently_pulled_count:
        limits.append(sorted(group, key=lambda c: c.pulled_at, reverse=True)[: rule.most_recently_pulled_count])
    if rule.most_recently_pushed_count:
        limits.append(sorted(group, key=lambda c: c.pushed_at, reverse=True)[: rule.most_recently_pushed_count])
    if rule.pulled_within is not None:
        since = now - rule.pulled_within
        limits.append([c for c in group if c.pulled_at > since or c.pushed_at > since])
    if rule.pushed_within is not None:
        since = now - rule.pushed_within
        limits.append([c for c in group if c.pushed_at > since])
    if not limits:
        return list(group)
    kept: dict[tuple[str | None, str], Candidate] = {}
    for chosen in limits:
        kept.update(((c.tag, c.digest), c) for c in chosen)
    return list(kept.values())


def retained_tags(settings: LifecycleSettings, repo: str, meta: RepositoryMeta, tags: list[str], now: float) -> set[str]:
    """The tags of ``repo`` that stay (every one when no policy with ``keepTags`` applies)."""
    policy = settings.policy_for(repo)
    if policy is None or not policy.keep_tags:
        return set(tags)
    known, unknown = candidates(meta, tags)
    groups: dict[int, list[Candidate]] = {}
    for candidate in known:
        assert candidate.tag is not None
        position = next((i for i, rule in enumerate(policy.keep_tags) if _matches(rule.patterns, candidate.tag)), None)
        if position is not None:
            groups.setdefault(position, []).append(candidate)
    kept = set(unknown)
    for position, group in groups.items():
        kept.update(c.tag for c in kept_by_rule(policy.keep_tags[position], group, now) if c.tag is not None)
    return kept


def retained_untagged(settings: LifecycleSettings, repo: str, meta: RepositoryMeta, digests: Iterable[str], now: float) -> set[str]:
    """Untagged manifests ``keepUntagged`` keeps (none when the policy has no such rule)."""
    policy = settings.policy_for(repo)
    if policy is None or policy.keep_untagged is None:
        return set()
    group = [_candidate(None, meta.images[d]) for d in digests if d in meta.images]
    return {c.digest for c in kept_by_rule(policy.keep_untagged, group, now)}
