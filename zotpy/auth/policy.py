"""zot's access rules (``http.accessControl``): may this identity do this action on this repository.

The repository's rules are those of the longest glob that matches its name (zot compares the
patterns' lengths, so ``infra/*`` beats ``**`` for ``infra/a``); within them a user is allowed by a
policy naming the user or one of its groups with the action, else by ``defaultPolicy`` when
authenticated or ``anonymousPolicy`` when not. ``adminPolicy`` grants its actions everywhere. A
repository no glob matches allows nothing but the admin's actions.
"""

from __future__ import annotations

from typing import Callable

from zotpy.doublestar import glob_match
from zotpy.auth.identity import Identity
from zotpy.auth.settings import AccessSettings, Policy, PolicyGroup


class AccessPolicy:
    def __init__(self, settings: AccessSettings) -> None:
        self.settings = settings
        # Longest first, ties in a fixed order, so the first match is zot's choice.
        self._globs = sorted(settings.repositories, key=lambda glob: (-len(glob), glob))

    def groups_of(self, identity: Identity) -> frozenset[str]:
        """The identity's own groups plus the ``accessControl.groups`` that list its name."""
        if identity.anonymous:
            return identity.groups
        listed = {name for name, users in self.settings.groups.items() if identity.name in users}
        return identity.groups | listed

    def rules_for(self, repository: str) -> PolicyGroup | None:
        for glob in self._globs:
            if glob_match(glob, repository):
                return self.settings.repositories[glob]
        return None

    def can(self, identity: Identity, action: str, repository: str) -> bool:
        groups = self.groups_of(identity)
        rules = self.rules_for(repository)
        if rules is not None and _permitted(rules, identity, groups, action):
            return True
        return self._admin(identity, groups, action)

    def _admin(self, identity: Identity, groups: frozenset[str], action: str) -> bool:
        admin = self.settings.admin_policy
        return action in admin.actions and _names(admin, identity, groups)

    def reader(self, identity: Identity) -> Callable[[str], bool]:
        """A predicate for the repositories ``identity`` may read (to filter the catalog)."""
        groups = self.groups_of(identity)
        if self._admin(identity, groups, "read"):
            return lambda repository: True

        def may_read(repository: str) -> bool:
            rules = self.rules_for(repository)
            return rules is not None and _permitted(rules, identity, groups, "read")

        return may_read

    def may_scrape_metrics(self, identity: Identity) -> bool:
        users = self.settings.metrics_users
        return users is None or identity.name in users


def _names(policy: Policy, identity: Identity, groups: frozenset[str]) -> bool:
    return (not identity.anonymous and identity.name in policy.users) or bool(policy.groups & groups)


def _permitted(rules: PolicyGroup, identity: Identity, groups: frozenset[str], action: str) -> bool:
    for policy in rules.policies:
        if action in policy.actions and _names(policy, identity, groups):
            return True
    if identity.anonymous:
        return action in rules.anonymous_policy
    return action in rules.default_policy
