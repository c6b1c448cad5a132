"""``extensions.sync`` read as zot reads it, every problem naming its key; content rules and their
name mappings (doublestar globs, destination, stripPrefix), tag filters, Go durations."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial import unittest

from zotpy.config import ConfigError, parse_config
from zotpy.sync.content import ContentRule, ContentRules, GlobError, TagRules, compile_glob, glob_match, is_semver
from zotpy.sync.settings import parse_go_duration


def document(sync: Any) -> dict[str, Any]:
    return {"storage": {"rootDirectory": "/tmp/zotpy-x", "gc": False, "dedupe": False}, "extensions": {"sync": sync}}


def registry(**keys: Any) -> dict[str, Any]:
    return {"urls": ["https://upstream.example.com"], "onDemand": True, **keys}


class SettingsTests(unittest.TestCase):
    def problems(self, sync: Any) -> list[tuple[str, str]]:
        with self.assertRaises(ConfigError) as raised:
            parse_config(document(sync))
        return list(raised.exception.problems)

    def paths(self, sync: Any) -> list[str]:
        return [path for path, _ in self.problems(sync)]

    def test_a_full_zot_registry_entry(self) -> None:
        credentials = self.mktemp()
        with open(credentials, "w") as stream:
            json.dump({"upstream.example.com": {"username": "u", "password": "p"}}, stream)
        config = parse_config(document({
            "Enable": True,
            "credentialsFile": credentials,
            "registries": [{
                "URLs": ["https://upstream.example.com/", "http://127.0.0.1:5000"],
                "onDemand": True,
                "pollInterval": "1h30m",
                "tlsVerify": False,
                "maxRetries": 3,
                "retryDelay": "5m",
                "onlySigned": False,
                "preserveDigest": True,
                "content": [
                    {"prefix": "/repo1/repo", "destination": "/repo", "stripPrefix": True},
                    {"prefix": "/repo2/**", "tags": {"regex": "^4\\.", "excludeRegex": ".*-rc", "semver": True}},
                ],
            }],
        }))
        assert config.sync is not None
        (first,) = config.sync.registries
        self.assertEqual(first.urls, ("https://upstream.example.com", "http://127.0.0.1:5000"))
        self.assertEqual((first.poll_interval, first.retry_delay, first.max_retries), (5400.0, 300.0, 3))
        self.assertEqual((first.on_demand, first.tls_verify, first.periodic), (True, False, True))
        self.assertEqual(
            first.content.rules[1],
            ContentRule("/repo2/**", TagRules("^4\\.", ".*-rc", True)),
        )
        self.assertEqual(config.sync.credentials["upstream.example.com"].username, "u")
        self.assertEqual(config.warnings, ())

    def test_disabled_is_none(self) -> None:
        self.assertIsNone(parse_config(document({"enable": False, "registries": [registry()]})).sync)

    def test_each_problem_names_its_key(self) -> None:
        problems = self.problems({
            "registries": [
                registry(pollInterval="30", maxRetries=2, urls=["upstream.example.com"]),
                registry(content=[{"prefix": "/a/[b"}, {"tags": {"regex": "(("}}], tlsVerify="yes"),
                registry(onlySigned=True, credentialHelper="ecr", unknownKey=1),
                "https://x",
            ],
            "credentialsFile": "/nonexistent/credentials.json",
        })
        paths = [path for path, _ in problems]
        self.assertEqual(
            sorted(paths),
            sorted([
                "extensions.sync.credentialsFile",
                "extensions.sync.registries[0].urls[0]",
                "extensions.sync.registries[0].pollInterval",
                "extensions.sync.registries[0].retryDelay",
                "extensions.sync.registries[1].content[0].prefix",
                "extensions.sync.registries[1].content[1].prefix",
                "extensions.sync.registries[1].content[1].tags.regex",
                "extensions.sync.registries[1].tlsVerify",
                "extensions.sync.registries[2].unknownkey",
                "extensions.sync.registries[2].onlySigned",
                "extensions.sync.registries[2].credentialHelper",
                "extensions.sync.registries[3]",
            ]),
        )
        by_path = dict(problems)
        self.assertIn("required when maxRetries is set", by_path["extensions.sync.registries[0].retryDelay"])
        self.assertIn('"30s"', by_path["extensions.sync.registries[0].pollInterval"])
        self.assertIn("not implemented in zotpy", by_path["extensions.sync.registries[2].onlySigned"])

    def test_strip_prefix_to_root_needs_a_glob(self) -> None:
        self.assertEqual(
            self.paths({"registries": [registry(content=[{"prefix": "/a/b", "destination": "/", "stripPrefix": True}])]}),
            ["extensions.sync.registries[0].content[0].stripPrefix"],
        )

    def test_harmless_unimplemented_keys_warn(self) -> None:
        config = parse_config(document({
            "downloadDir": "/tmp/d",
            "registries": [registry(preserveDigest=False, syncTimeout="1h", content=[{"prefix": "a", "platforms": ["linux/amd64"]}])],
        }))
        self.assertEqual(
            [warning.split(":")[0] for warning in config.warnings],
            [
                "extensions.sync.downloadDir",
                "extensions.sync.registries[0].content[0].platforms",
                "extensions.sync.registries[0].preserveDigest",
                "extensions.sync.registries[0].syncTimeout",
            ],
        )

    def test_a_registry_that_does_nothing_is_warned_about(self) -> None:
        config = parse_config(document({"registries": [{"urls": ["https://x.example"], "pollInterval": "1h"}]}))
        self.assertEqual(len(config.warnings), 1)
        self.assertIn("neither onDemand nor periodic sync", config.warnings[0])

    def test_credentials_file_shape(self) -> None:
        path = self.mktemp()
        with open(path, "w") as stream:
            json.dump({"upstream.example.com": {"username": "u"}}, stream)
        (problem,) = self.problems({"credentialsFile": path, "registries": [registry()]})
        self.assertEqual(problem[0], "extensions.sync.credentialsFile")
        self.assertIn("'upstream.example.com'", problem[1])

    def test_cert_dir(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        open(os.path.join(directory, "client.cert"), "w").close()
        (problem,) = self.problems({"registries": [registry(certDir=directory)]})
        self.assertEqual(problem[0], "extensions.sync.registries[0].certDir")
        self.assertIn("client.key is missing", problem[1])
        self.assertEqual(self.paths({"registries": [registry(certDir=directory + "-none")]}),
                         ["extensions.sync.registries[0].certDir"])


class DurationTests(unittest.TestCase):
    def test_go_durations(self) -> None:
        for text, seconds in [("30s", 30), ("5m", 300), ("6h", 21600), ("1h30m", 5400), ("1.5h", 5400),
                              ("250ms", 0.25), ("0", 0), ("2h45m30.5s", 9930.5), ("1us", 1e-6)]:
            self.assertAlmostEqual(parse_go_duration(text), seconds, msg=text)
        for text in ["", "30", "5 m", "h", "1d", "1h30"]:
            self.assertRaises(ValueError, parse_go_duration, text)


class GlobTests(unittest.TestCase):
    def test_doublestar(self) -> None:
        cases = [
            ("repo", "repo", True), ("repo", "repo/x", False),
            ("repo*", "repo-a", True), ("repo*", "repo/a", False),
            ("repo/**", "repo", True), ("repo/**", "repo/a/b", True), ("repo/**", "repox/a", False),
            ("**/app", "a/b/app", True), ("**/app", "app", True), ("a/**/z", "a/z", True), ("a/**/z", "a/b/c/z", True),
            ("a/?", "a/b", True), ("a/?", "a/bc", False),
            ("a/[bc]x", "a/cx", True), ("a/[!bc]x", "a/cx", False), ("a/[a-c]", "a/b", True), ("a/[a-c]", "a/d", False),
            ("{alpine,busybox}", "busybox", True), ("{a,b/c}/d", "b/c/d", True), ("lib/{x,y}*", "lib/yz", True),
            ("a\\*", "a*", True), ("a\\*", "ab", False),
        ]
        for pattern, name, expected in cases:
            self.assertEqual(glob_match(pattern, name), expected, (pattern, name))
        for bad in ["a/[b", "{a,b", "a\\"]:
            self.assertRaises(GlobError, compile_glob, bad)

    def test_semver(self) -> None:
        self.assertEqual([is_semver(t) for t in ["1.2.3", "v1.2", "1", "1.2.3-rc.1+b5", "latest", "1.2.3.4", "v"]],
                         [True, True, True, True, False, False, False])

    def test_tag_rules(self) -> None:
        tags = ["v1.0", "v1.1-rc1", "v2", "latest", "4.1"]
        self.assertEqual(TagRules(regex="^v").select(tags), ["v1.0", "v1.1-rc1", "v2"])
        self.assertEqual(TagRules(regex="^v", exclude_regex="-rc").select(tags), ["v1.0", "v2"])
        self.assertEqual(TagRules(semver=True).select(tags), ["v1.0", "v1.1-rc1", "v2", "4.1"])
        self.assertEqual(TagRules(regex="1").select(tags), ["v1.0", "v1.1-rc1", "4.1"])  # searched, as Go does
        self.assertEqual(TagRules(regex="").select(tags), [])  # zot: an empty regex selects nothing


class MappingTests(unittest.TestCase):
    def test_zot_examples(self) -> None:
        rules = ContentRules((
            ContentRule("/repo1/repo", destination="/repo", strip_prefix=True),
            ContentRule("/repo2/repo"),
            ContentRule("/repo3/**", destination="/mirror", strip_prefix=True),
            ContentRule("/repo4/**", destination="/kept"),
        ))
        forward = {
            "repo1/repo": "repo", "repo2/repo": "repo2/repo", "repo3/a/b": "mirror/a/b", "repo4/x": "kept/repo4/x",
        }
        for upstream, local in forward.items():
            mapping = rules.for_upstream(upstream)
            assert mapping is not None, upstream
            self.assertEqual(mapping.local, local)
            back = rules.for_local(local)
            assert back is not None, local
            self.assertEqual(back.upstream, upstream)
        self.assertIsNone(rules.for_upstream("repo5/x"))
        self.assertIsNone(rules.for_local("elsewhere/x"))

    def test_no_rules_means_same_names(self) -> None:
        mapping = ContentRules().for_local("any/thing")
        assert mapping is not None
        self.assertEqual((mapping.upstream, mapping.local), ("any/thing", "any/thing"))

    def test_a_local_name_maps_back_only_when_it_maps_forward_to_itself(self) -> None:
        # zot maps repo2/repo-a to d/-a, and d/-a back to repo2/repo/-a: such a pair is not followed.
        rules = ContentRules((ContentRule("repo2/repo*", destination="/d", strip_prefix=True),))
        self.assertEqual(rules.for_upstream("repo2/repo-a").local, "d/-a")  # type: ignore[union-attr]
        self.assertIsNone(rules.for_local("d/-a"))


class ExampleTests(unittest.TestCase):
    def test_the_sync_example_loads_cleanly(self) -> None:
        from zotpy.config import load_config

        example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "sync.json")
        config = load_config(example)
        self.assertEqual(config.warnings, ())
        assert config.sync is not None
        hub, internal = config.sync.registries
        self.assertEqual((hub.on_demand, hub.periodic, internal.periodic), (True, False, True))
        self.assertEqual(hub.content.for_local("docker/library/alpine").upstream, "library/alpine")  # type: ignore[union-attr]
        self.assertEqual(internal.content.for_upstream("team/web").local, "mirror/web")  # type: ignore[union-attr]
