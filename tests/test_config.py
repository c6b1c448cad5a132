"""Tests for zotpy.config: zot's JSON format, its key rules, and what zotpy refuses or warns about."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from zotpy.config import (
    ClusterConfig,
    ClusterTLSConfig,
    DEDUPE_CACHE_IGNORED,
    Config,
    ConfigError,
    HTTPConfig,
    LogConfig,
    StorageConfig,
    TLSConfig,
    embedded_default,
    load_config,
    parse_config,
)
from zotpy.search.settings import SearchSettings
from zotpy.storage.s3.settings import S3Settings

REPO = Path(__file__).resolve().parent.parent
# zot's sample configs, copied into the repository (tests/fixtures/README.md says from where).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "configs"
ETC = REPO / "etc"



def minimal(**sections: Any) -> dict[str, Any]:
    """The smallest valid document that produces no warnings, with ``sections`` merged in."""
    document: dict[str, Any] = {"storage": {"rootDirectory": "/srv/zotpy", "dedupe": False, "gc": False}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return document


class ConfigTestCase(SynchronousTestCase):
    def problems(self, document: object) -> list[tuple[str, str]]:
        """The problems parse_config reports for ``document`` (it must refuse it)."""
        error = self.assertRaises(ConfigError, parse_config, document)
        return list(error.problems)

    def problem_paths(self, document: object) -> list[str]:
        return [path for path, _ in self.problems(document)]

    def message(self, document: object, path: str) -> str:
        """The one problem message reported at ``path``."""
        messages = [message for p, message in self.problems(document) if p == path]
        self.assertEqual(len(messages), 1, f"expected one problem at {path}, got {messages}")
        return messages[0]

    def write(self, text: str | bytes, name: str = "config.json") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        return path

    def pem_files(self, *names: str) -> list[str]:
        """Files standing in for certificates and keys: zotpy only checks they can be read."""
        directory = self.mktemp()
        os.makedirs(directory)
        paths = []
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write("-----BEGIN PLACEHOLDER-----\n")
            paths.append(path)
        return paths


class FixtureTests(ConfigTestCase):
    """The sample zot configs operators arrive with."""

    def fixture(self, name: str) -> dict[str, Any]:
        return json.loads((FIXTURES / name).read_text())

    def test_clustering_s3_loads(self) -> None:
        """The stateless S3 setup loads: AWS itself (no regionendpoint, so virtual-hosted style
        and https), its DynamoDB cache ignored with a warning (zotpy keeps no dedupe cache)."""
        loaded = load_config(str(FIXTURES / "zot-clustering-s3.json"))
        self.assertEqual(
            loaded.storage.s3,
            S3Settings(bucket="zot-storage", region="us-east-2", root_directory="/zot", endpoint=None),
        )
        self.assertIn(
            f"storage.cacheDriver: {DEDUPE_CACHE_IGNORED}",
            loaded.warnings,
        )

    def test_scaleout_replica_refused_only_for_missing_files(self) -> None:
        """The scale-out replica's S3 settings load; only its TLS files, which do not exist here, are
        problems (its cacheDriver with dedupe false is not one)."""
        error = self.assertRaises(ConfigError, load_config, str(FIXTURES / "zot-scaleout-replica.json"))
        self.assertEqual(
            [path for path, _ in error.problems], ["http.tls.cert", "http.tls.key", "cluster.tls.cacert"]
        )
        self.assertIn("test/data/server.cert", dict(error.problems)["http.tls.cert"])

    def test_scaleout_replica_s3_settings(self) -> None:
        """regionendpoint without a scheme takes it from secure (false: http) and, as in zot, turns
        forcepathstyle on when it is not given."""
        document = self.fixture("zot-scaleout-replica.json")
        cert, key, ca = self.pem_files("server.cert", "server.key", "ca.crt")
        document["http"]["tls"].update(cert=cert, key=key)
        document["cluster"]["tls"]["cacert"] = ca
        self.assertEqual(
            parse_config(document).storage.s3,
            S3Settings(
                bucket="zot-storage",
                region="us-east-1",
                root_directory="/zot",
                endpoint="http://localhost:4566",
                secure=False,
                force_path_style=True,
            ),
        )

    def test_clustering_s3_loads_without_s3(self) -> None:
        """Without storageDriver the file loads with its http and log settings; the cache it pairs
        with dedupe: true is kept raw and warned about."""
        document = self.fixture("zot-clustering-s3.json")
        del document["storage"]["storageDriver"]
        loaded = parse_config(document)
        self.assertIn(
            f"storage.cacheDriver: {DEDUPE_CACHE_IGNORED}",
            loaded.warnings,
        )
        self.assertEqual(loaded.storage.root_directory, "/tmp/zot")
        self.assertIsNone(loaded.storage.storage_driver)
        self.assertEqual((loaded.http.address, loaded.http.port), ("127.0.0.1", 8080))
        self.assertEqual(loaded.log.level, "debug")
        self.assertEqual(loaded.dist_spec_version, "1.0.1-dev")
        self.assertIsNone(loaded.cluster)

    def test_scaleout_replica_loads_without_s3(self) -> None:
        document = self.fixture("zot-scaleout-replica.json")
        del document["storage"]["storageDriver"]
        cert, key, ca = self.pem_files("server.cert", "server.key", "ca.crt")
        document["http"]["tls"].update(cert=cert, key=key)
        document["cluster"]["tls"]["cacert"] = ca

        loaded = parse_config(document)
        self.assertEqual(
            loaded.cluster,
            ClusterConfig(
                members=("zot-server1:9000", "zot-server2:9000", "zot-server3:9000"),
                hash_key=b"loremipsumdolors",
                tls=ClusterTLSConfig(cacert=ca),
            ),
        )
        self.assertEqual(len(loaded.cluster.hash_key), 16)
        self.assertEqual(loaded.http, HTTPConfig(address="0.0.0.0", port=9000, tls=TLSConfig(cert, key)))
        self.assertIn("storage.cacheDriver: ignored: no cache is needed with dedupe false", loaded.warnings)
        self.assertTrue(loaded.storage.remote_cache)
        self.assertFalse(loaded.storage.dedupe)
        self.assertEqual(loaded.storage.cache_driver["cachetablename"], "ZotBlobTable")

    def test_every_sample_loads_or_names_its_keys(self) -> None:
        """Every zot sample an operator may arrive with either loads or is refused with problems at
        key paths that exist in the file: never an exception without a key path. (The LDAP credentials
        file is not a config: zot-config-ldap.json points at it.)"""
        samples = sorted(p for p in FIXTURES.glob("zot-*.json") if p.name != "zot-config-ldap-credentials.json")
        self.assertGreaterEqual(len(samples), 10)
        for sample in samples:
            try:
                load_config(str(sample))
            except ConfigError as error:
                document = json.loads(sample.read_text())
                self.assertTrue(error.problems, sample.name)
                for path, _ in error.problems:
                    self.assertTrue(key_path_exists(document, path), f"{sample.name}: {path} is not a key in it")


def key_path_exists(document: Any, path: str) -> bool:
    """Whether the dotted ``path`` (list indices as ``[n]``) names something in ``document``; keys
    match case-insensitively, as in zot."""
    node = document
    for segment in path.split("."):
        name, *indices = segment.split("[")
        if not isinstance(node, dict):
            return False
        keys = {key.lower(): key for key in node}
        if name.lower() not in keys:
            return False
        node = node[keys[name.lower()]]
        for index in indices:
            if not isinstance(node, list) or not index.rstrip("]").isdigit() or int(index.rstrip("]")) >= len(node):
                return False
            node = node[int(index.rstrip("]"))]
    return True


class ExampleConfigTests(ConfigTestCase):
    """The example files in etc/."""

    def test_single_node(self) -> None:
        loaded = load_config(str(ETC / "config.json"))
        self.assertEqual(loaded.storage.root_directory, "/var/lib/zotpy")
        self.assertEqual((loaded.http.address, loaded.http.port, loaded.http.tls), ("127.0.0.1", 5000, None))
        self.assertEqual(loaded.warnings, ())
        self.assertEqual(loaded.source, str(ETC / "config.json"))

    def test_tls(self) -> None:
        """etc/config-tls.json names its files relative to the current directory, as zot does; they
        load once present there."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "etc", "tls"))
        for name in ("server.crt", "server.key"):
            with open(os.path.join(directory, "etc", "tls", name), "w") as f:
                f.write("placeholder\n")
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)

        loaded = load_config(str(ETC / "config-tls.json"))
        self.assertEqual(loaded.http.tls, TLSConfig(cert="etc/tls/server.crt", key="etc/tls/server.key"))
        self.assertEqual(loaded.warnings, ())

    def test_tls_files_missing(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        error = self.assertRaises(ConfigError, load_config, str(ETC / "config-tls.json"))
        self.assertEqual([path for path, _ in error.problems], ["http.tls.cert", "http.tls.key"])


class FileTests(ConfigTestCase):
    """load_config: reading the file."""

    def test_loads(self) -> None:
        path = self.write(json.dumps(minimal()))
        loaded = load_config(path)
        self.assertEqual(loaded.storage.root_directory, "/srv/zotpy")
        self.assertEqual(loaded.source, path)

    def test_missing_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(len(error.problems), 1)
        self.assertIn(path, str(error))
        self.assertIn("No such file or directory", str(error))

    def test_directory(self) -> None:
        error = self.assertRaises(ConfigError, load_config, os.path.dirname(self.write("{}")))
        self.assertIn("Is a directory", str(error))

    def test_invalid_json_position(self) -> None:
        path = self.write('{\n  "storage": {\n    "rootDirectory": "/srv"\n    "dedupe": false\n  }\n}\n')
        error = self.assertRaises(ConfigError, load_config, path)
        (problem,) = error.problems
        self.assertEqual(problem[0], "")
        self.assertIn("line 4, column 5", problem[1])
        self.assertIn(path, problem[1])
        self.assertEqual(str(error), problem[1])

    def test_yaml_hint(self) -> None:
        path = self.write("storage:\n  rootDirectory: /x\n", "zot.yaml")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn("JSON format only", str(error))

    def test_not_utf8(self) -> None:
        error = self.assertRaises(ConfigError, load_config, self.write(b'{"storage": "\xff"}'))
        self.assertIn("not UTF-8", str(error))

    def test_byte_order_mark(self) -> None:
        loaded = load_config(self.write("\ufeff" + json.dumps(minimal())))
        self.assertEqual(loaded.storage.root_directory, "/srv/zotpy")

    def test_exact_duplicate_key(self) -> None:
        """json.loads would keep the last of two equal keys; zotpy reports them."""
        path = self.write('{"storage": {"rootDirectory": "/a", "rootDirectory": "/b"}}')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual([p for p, _ in error.problems], ["storage.rootDirectory"])
        self.assertIn("given more than once", str(error))

    def test_not_an_object(self) -> None:
        error = self.assertRaises(ConfigError, load_config, self.write("[1, 2]"))
        self.assertEqual(error.problems, (("", "the configuration must be a JSON object, not an array"),))


class KeyTests(ConfigTestCase):
    """Key matching, unknown keys, problem collection."""

    def test_case_insensitive(self) -> None:
        loaded = parse_config(
            {
                "DISTSPECVERSION": "1.1.0",
                "Storage": {"ROOTDIRECTORY": "/srv/zotpy", "DeDupe": False, "GC": False, "remotecache": True},
                "HTTP": {"Address": "::1", "Port": 8080, "TLS": None},
                "Log": {"LEVEL": "error"},
            }
        )
        self.assertEqual(
            loaded.storage, StorageConfig("/srv/zotpy", dedupe=False, gc=False, remote_cache=True)
        )
        self.assertEqual(loaded.http, HTTPConfig(address="::1", port=8080))
        self.assertEqual(loaded.log.level, "error")

    def test_duplicate_by_case(self) -> None:
        message = self.message(
            minimal(storage={"rootDirectory": "/a", "RootDirectory": "/b"}), "storage.rootDirectory"
        )
        self.assertIn('"rootDirectory", "RootDirectory"', message)
        # A duplicate reports once: no "required" problem on top of it.
        self.assertEqual(
            self.problem_paths(minimal(storage={"rootDirectory": "/a", "RootDirectory": "/b"})),
            ["storage.rootDirectory"],
        )

    def test_duplicate_section_by_case(self) -> None:
        document = minimal(http={"port": 1})
        document["HTTP"] = {"port": 2}
        self.assertEqual(self.problem_paths(document), ["http"])

    def test_duplicate_in_raw_mapping(self) -> None:
        document = minimal(extensions={"sync": {"Enable": True, "enable": False}})
        self.assertEqual(self.problem_paths(document), ["extensions.sync.enable"])

    def test_unknown_top_level(self) -> None:
        self.assertEqual(self.problems(minimal(registry={})), [("registry", "unknown key")])

    def test_unknown_nested(self) -> None:
        cert, key = self.pem_files("c", "k")
        document = minimal(http={"tls": {"cert": cert, "key": key, "ca": "x"}}, cluster={"memebers": []})
        paths = self.problem_paths(document)
        self.assertIn("http.tls.ca", paths)
        self.assertIn("cluster.memebers", paths)

    def test_unknown_key_suggestion(self) -> None:
        self.assertEqual(
            self.message(minimal(http={"adress": "127.0.0.1"}), "http.adress"),
            "unknown key; did you mean http.address?",
        )

    def test_every_zot_key_known(self) -> None:
        """A file using every key of zot's Config struct hits no 'unknown key' (only the refusals of
        what zotpy does not implement)."""
        cert, key, ca = self.pem_files("c", "k", "ca")
        document = {
            "distSpecVersion": "1.1.0",
            "goVersion": "go1.22",
            "commit": "abc",
            "releaseTag": "v2.1.0",
            "binaryType": "full",
            "storage": {
                "rootDirectory": "/srv",
                "dedupe": False,
                "remoteCache": False,
                "gc": True,
                "commit": True,
                "gcDelay": "1h",
                "gcInterval": "24h",
                "retention": {"dryRun": True},
                "storageDriver": {"name": "s3"},
                "cacheDriver": {"name": "dynamodb"},
                "subPaths": {"/a": {"rootDirectory": "/a"}},
            },
            "http": {
                "address": "127.0.0.1",
                "externalUrl": "https://zot.example.com",
                "port": "8080",
                "allowOrigin": "*",
                "tls": {"cert": cert, "key": key, "cacert": ca},
                "auth": {"htpasswd": {"path": "/etc/htpasswd"}},
                "accessControl": {"repositories": {}},
                "realm": "zot",
                "ratelimit": {"rate": 10},
                "compat": ["docker2s2"],
            },
            "log": {"level": "debug", "output": "/tmp/zot.log", "audit": "/tmp/audit.log"},
            "extensions": {"search": {"enable": True}},
            "scheduler": {"numWorkers": 4},
            "cluster": {"members": ["a:1", "b:2"], "hashKey": "loremipsumdolors", "tls": {"cacert": ca}},
        }
        self.assertEqual(
            self.problem_paths(document),
            [
                "storage.subPaths",
                "storage.storageDriver.bucket",
                "storage.storageDriver.region",
                "http.auth.htpasswd.path",  # read: the file does not exist
            ],
        )

    def test_all_problems_at_once(self) -> None:
        document = {
            "storage": {"dedupe": "yes"},
            "http": {"port": "http", "bogus": 1},
            "log": {"level": "loud"},
            "cluster": {"members": ["a"], "hashKey": "short"},
        }
        error = self.assertRaises(ConfigError, parse_config, document)
        self.assertEqual(
            [path for path, _ in error.problems],
            [
                "storage.dedupe",
                "http.bogus",
                "storage.rootDirectory",
                "http.port",
                "log.level",
                "cluster.members[0]",
                "cluster.hashKey",
            ],
        )
        lines = str(error).splitlines()
        self.assertEqual(len(lines), 7)
        self.assertEqual(lines[0], "storage.dedupe: must be a boolean (true or false), not a string")

    def test_wrong_section_type(self) -> None:
        self.assertEqual(
            self.problems(minimal(http=[], log="debug")),
            [("http", "must be an object, not an array"), ("log", "must be an object, not a string")],
        )

    def test_null_section_is_absent(self) -> None:
        loaded = parse_config(minimal(http=None, cluster=None, extensions=None))
        self.assertEqual(loaded.http, HTTPConfig())
        self.assertIsNone(loaded.cluster)
        self.assertEqual(dict(loaded.extensions), {})

    def test_null_scalar_is_absent(self) -> None:
        """null is Go's nil: the same as leaving the key out, so zot's default applies."""
        loaded = parse_config(minimal(storage={"dedupe": None}))
        self.assertTrue(loaded.storage.dedupe)


class RefusedAndIgnoredKeyTests(ConfigTestCase):
    """zot keys zotpy does not implement."""

    def test_refused(self) -> None:
        for section, key in [
            ("storage", "subPaths"),
        ]:
            path = f"{section}.{key}"
            message = self.message(minimal(**{section: {key: {"x": 1}}}), path)
            self.assertIn(f"remove {path}", message)

    def test_auth_problems_name_the_key(self) -> None:
        """http.auth is read (zotpy.auth.settings); what it cannot use is a problem at its key."""
        message = self.message(minimal(http={"auth": {"htpasswd": {}}}), "http.auth.htpasswd.path")
        self.assertIn("required", message)
        message = self.message(minimal(http={"accessControl": {"repositories": []}}), "http.accessControl.repositories")
        self.assertIn("must be an object", message)

    def test_refused_key_empty_or_null_accepted(self) -> None:
        """zot treats an empty auth section as no authentication: nothing to refuse."""
        loaded = parse_config(minimal(http={"auth": {}, "accessControl": None}, storage={"subPaths": {}}))
        self.assertEqual(loaded.warnings, ())

    def test_switch_left_off_is_not_warned_about(self) -> None:
        """A zot switch zotpy does not implement, set to false, asks for zot's default: nothing ignored.
        (``redirectBlobURL`` on local disk: zot serves the bytes, zotpy too, and says so.)"""
        loaded = parse_config(minimal(storage={"redirectBlobURL": False, "commit": False}))
        self.assertEqual(loaded.warnings, ())
        loaded = parse_config(minimal(storage={"RedirectBlobURL": True}))
        self.assertEqual(len(loaded.warnings), 1, loaded.warnings)
        self.assertIn("storage.redirectBlobURL: only S3 storage has URLs to redirect to", loaded.warnings[0])
        self.assertFalse(loaded.storage.redirect_blob_url)
        self.assertEqual(self.problem_paths(minimal(http={"auth": False})), ["http.auth"])  # not a switch

    def test_ignored_with_warning(self) -> None:
        cases = {
            "http.compat": minimal(http={"compat": ["docker2s2"]}),
            "http.externalUrl": minimal(http={"externalUrl": "https://x"}),
            "http.allowOrigin": minimal(http={"allowOrigin": "*"}),
            "storage.commit": minimal(storage={"commit": True}),
            "storage.redirectBlobURL": minimal(storage={"redirectBlobURL": True}),  # on local disk
            "scheduler": minimal(scheduler={"numWorkers": 3}),
            "goVersion": minimal(goVersion="go1.22"),
        }
        for path, document in cases.items():
            warnings = parse_config(document).warnings
            self.assertEqual(len(warnings), 1, warnings)
            self.assertTrue(warnings[0].startswith(f"{path}: "), warnings)


class StorageTests(ConfigTestCase):
    def test_defaults(self) -> None:
        storage = parse_config({"storage": {"rootDirectory": "/srv"}}).storage
        self.assertEqual(storage, StorageConfig("/srv", dedupe=True, gc=True, remote_cache=False))

    def test_redirect_blob_url_on_s3(self) -> None:
        s3 = {"name": "s3", "bucket": "b", "region": "us-east-1"}
        document = {"storage": {"rootDirectory": "/srv", "storageDriver": s3, "dedupe": False, "redirectBlobURL": True}}
        loaded = parse_config(document)
        self.assertTrue(loaded.storage.redirect_blob_url)
        self.assertEqual(loaded.warnings, ())
        document["storage"]["redirectBlobURL"] = "yes"
        self.assertEqual(self.problem_paths(document), ["storage.redirectBlobURL"])

    def test_root_directory_required(self) -> None:
        self.assertEqual(self.problem_paths({}), ["storage.rootDirectory"])
        self.assertEqual(self.problem_paths({"storage": {"dedupe": False}}), ["storage.rootDirectory"])

    def test_root_directory_empty(self) -> None:
        self.assertEqual(
            self.problems({"storage": {"rootDirectory": " "}}),
            [("storage.rootDirectory", "must not be empty")],
        )

    def test_root_directory_type(self) -> None:
        self.assertEqual(
            self.problems({"storage": {"rootDirectory": 5}}),
            [("storage.rootDirectory", "must be a string, not a number")],
        )

    def test_booleans(self) -> None:
        for key, value, kind in [
            ("dedupe", "true", "a string"),
            ("gc", 1, "a number"),
            ("remoteCache", [], "an array"),
        ]:
            self.assertEqual(
                self.message(minimal(storage={key: value}), f"storage.{key}"),
                f"must be a boolean (true or false), not {kind}",
            )

    def test_dedupe_warning(self) -> None:
        """gc and dedupe on local disk are implemented: no warning by default. On S3 dedupe is a
        server-side copy, not zot's single copy: warned on the effective value (an absent key too)."""
        self.assertEqual(parse_config({"storage": {"rootDirectory": "/srv"}}).warnings, ())
        s3 = {"name": "s3", "bucket": "b", "region": "us-east-1"}
        warnings = parse_config({"storage": {"rootDirectory": "/srv", "storageDriver": s3}}).warnings
        self.assertEqual([w.split(":")[0] for w in warnings], ["storage.dedupe"])
        self.assertIn("per repository", warnings[0])
        self.assertEqual(parse_config(minimal()).warnings, ())

    def test_cache_driver_dedupe_false_warns(self) -> None:
        loaded = parse_config(minimal(storage={"cacheDriver": {"name": "dynamodb", "TableName": "T"}}))
        self.assertEqual(
            loaded.warnings, ("storage.cacheDriver: ignored: no cache is needed with dedupe false",)
        )
        self.assertEqual(loaded.storage.cache_driver, {"name": "dynamodb", "tablename": "T"})

    def test_cache_driver_dedupe_true_warns(self) -> None:
        loaded = parse_config(minimal(storage={"dedupe": True, "cacheDriver": {"name": "redis"}}))
        self.assertIn(
            f"storage.cacheDriver: {DEDUPE_CACHE_IGNORED}",
            loaded.warnings,
        )

    def s3(self, **keys: Any) -> dict[str, Any]:
        return minimal(storage={"storageDriver": {"name": "s3", **keys}})

    def test_s3_minimal(self) -> None:
        loaded = parse_config(self.s3(bucket="reg", region="eu-west-1"))
        self.assertEqual(loaded.storage.s3, S3Settings(bucket="reg", region="eu-west-1"))

    def test_s3_bucket_and_region_required(self) -> None:
        problems = dict(self.problems(self.s3()))
        self.assertEqual(sorted(problems), ["storage.storageDriver.bucket", "storage.storageDriver.region"])
        self.assertTrue(problems["storage.storageDriver.bucket"].startswith("required: "))

    def test_s3_all_honoured_keys(self) -> None:
        loaded = parse_config(
            self.s3(
                bucket="reg", region="us-east-1", regionendpoint="https://s3.example.com:9000/",
                rootdirectory="/zot/", secure="false", skipverify=True, accesskey="AK", secretkey="SK",
                sessiontoken="T", forcepathstyle="false", usedualstack=False, accelerate=False,
                useragent="me", v4auth=True, encrypt=False, storageclass="STANDARD", objectacl="private",
            )
        ).storage.s3
        self.assertEqual(
            loaded,
            S3Settings(
                bucket="reg", region="us-east-1", root_directory="/zot/", endpoint="https://s3.example.com:9000",
                secure=False, skip_verify=True, force_path_style=False, access_key="AK", secret_key="SK",
                session_token="T", user_agent="me",
            ),
        )

    def test_s3_endpoint_scheme_from_secure(self) -> None:
        self.assertEqual(
            parse_config(self.s3(bucket="b1", region="r", regionendpoint="h:1")).storage.s3.endpoint, "https://h:1"
        )
        self.assertEqual(
            parse_config(self.s3(bucket="b1", region="r", regionendpoint="h:1", secure=False)).storage.s3.endpoint,
            "http://h:1",
        )

    def test_s3_wrong_values_name_their_key(self) -> None:
        problems = dict(
            self.problems(
                self.s3(
                    bucket=3, region="r", secure="yes", regionendpoint="ftp://h", rootdirectory="/a/../b",
                    accesskey="only-half", v4auth=False, encrypt=True, storageclass="GLACIER", objectacl="public-read",
                    keyid="k", bukcet="typo",
                )
            )
        )
        self.assertEqual(
            sorted(problems),
            sorted(
                f"storage.storageDriver.{key}"
                for key in (
                    "bucket", "secure", "regionendpoint", "rootdirectory", "secretkey", "v4auth", "encrypt",
                    "storageclass", "objectacl", "keyid", "bukcet",
                )
            ),
        )
        self.assertIn("did you mean bucket?", problems["storage.storageDriver.bukcet"])
        self.assertIn("must be a string", problems["storage.storageDriver.bucket"])

    def test_s3_ignored_keys_warn(self) -> None:
        loaded = parse_config(self.s3(bucket="b1", region="r", chunksize=10485760, loglevel="debug"))
        self.assertTrue(any(w.startswith("storage.storageDriver.chunksize: ") for w in loaded.warnings))
        self.assertTrue(any(w.startswith("storage.storageDriver.loglevel: ") for w in loaded.warnings))

    def test_storage_driver_other_refused(self) -> None:
        message = self.message(minimal(storage={"storageDriver": {"name": "gcs"}}), "storage.storageDriver")
        self.assertIn("unsupported storage driver 'gcs'", message)

    def test_storage_driver_without_name(self) -> None:
        self.assertEqual(
            self.problem_paths(minimal(storage={"storageDriver": {"bucket": "b"}})),
            ["storage.storageDriver.name"],
        )

    def test_storage_driver_empty_is_absent(self) -> None:
        self.assertIsNone(parse_config(minimal(storage={"storageDriver": {}})).storage.storage_driver)

    def test_storage_driver_enabled(self) -> None:
        """The driver's mapping is kept raw with lower-cased keys, and read into its settings."""
        driver = {"name": "s3", "RootDirectory": "/zot", "regionEndpoint": "h:1", "Bucket": "b1", "REGION": "r"}
        loaded = parse_config(minimal(storage={"storageDriver": driver}))
        self.assertEqual(
            loaded.storage.storage_driver,
            {"name": "s3", "rootdirectory": "/zot", "regionendpoint": "h:1", "bucket": "b1", "region": "r"},
        )
        self.assertEqual(loaded.storage.s3.endpoint, "https://h:1")
        self.assertTrue(loaded.storage.s3.force_path_style)

    def test_storage_driver_type(self) -> None:
        self.assertEqual(
            self.problems(minimal(storage={"storageDriver": "s3"})),
            [("storage.storageDriver", "must be an object, not a string")],
        )


class HTTPTests(ConfigTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(parse_config(minimal()).http, HTTPConfig(address="127.0.0.1", port=5000, tls=None))

    def test_port_forms(self) -> None:
        for given, expected in [
            (8080, 8080),
            ("8080", 8080),
            (0, 0),
            ("0", 0),
            (65535, 65535),
            ("09000", 9000),
        ]:
            self.assertEqual(parse_config(minimal(http={"port": given})).http.port, expected)

    def test_bad_ports(self) -> None:
        for given in [65536, -1, "65536", "80a", "", " 80", "-1"]:
            self.assertEqual(self.problem_paths(minimal(http={"port": given})), ["http.port"], given)

    def test_port_types(self) -> None:
        for given, kind in [
            (80.5, "a decimal number"),
            (80.0, "a decimal number"),
            (True, "a boolean"),
            ([80], "an array"),
        ]:
            self.assertEqual(
                self.message(minimal(http={"port": given}), "http.port"),
                f"must be an integer or a numeric string, not {kind}",
            )

    def test_addresses(self) -> None:
        for address in ["0.0.0.0", "127.0.0.2", "::", "::1", "zot-server1", "zot.example.com", "zot_1"]:
            self.assertEqual(parse_config(minimal(http={"address": address})).http.address, address)

    def test_bad_addresses(self) -> None:
        for address in ["", "bad host", "[::1]", "-zot", "1:2:3", "a..b"]:
            paths = self.problem_paths(minimal(http={"address": address}))
            self.assertEqual(paths, ["http.address"], address)
        self.assertIn("0.0.0.0", self.message(minimal(http={"address": ""}), "http.address"))

    def test_tls(self) -> None:
        cert, key, ca = self.pem_files("server.crt", "server.key", "ca.crt")
        self.assertEqual(
            parse_config(minimal(http={"tls": {"cert": cert, "key": key}})).http.tls, TLSConfig(cert, key)
        )
        self.assertEqual(
            parse_config(minimal(http={"tls": {"Cert": cert, "Key": key, "CACert": ca}})).http.tls,
            TLSConfig(cert, key, cacert=ca),
        )

    def test_tls_needs_cert_and_key(self) -> None:
        (cert,) = self.pem_files("server.crt")
        self.assertEqual(
            self.problems(minimal(http={"tls": {"cert": cert}})),
            [("http.tls.key", "required when http.tls is present")],
        )
        self.assertEqual(self.problem_paths(minimal(http={"tls": {}})), ["http.tls.cert", "http.tls.key"])

    def test_tls_files_must_exist(self) -> None:
        cert, key = self.pem_files("server.crt", "server.key")
        missing = os.path.abspath(self.mktemp())
        for name in ("cert", "key", "cacert"):
            files = {"cert": cert, "key": key, name: missing}
            message = self.message(minimal(http={"tls": files}), f"http.tls.{name}")
            self.assertEqual(message, f"file {missing!r} does not exist")

    def test_tls_relative_path_names_directory(self) -> None:
        (key,) = self.pem_files("server.key")
        message = self.message(minimal(http={"tls": {"cert": "no/such.crt", "key": key}}), "http.tls.cert")
        self.assertIn(os.getcwd(), message)

    def test_tls_file_is_directory(self) -> None:
        (key,) = self.pem_files("server.key")
        document = minimal(http={"tls": {"cert": os.path.dirname(key), "key": key}})
        message = self.message(document, "http.tls.cert")
        self.assertIn("is a directory", message)

    def test_tls_file_unreadable(self) -> None:
        """A path that exists but cannot be read as a file (a directory: unreadable even for root)."""
        cert, _ = self.pem_files("server.crt", "server.key")
        key = self.mktemp()
        os.mkdir(key)
        message = self.message(minimal(http={"tls": {"cert": cert, "key": key}}), "http.tls.key")
        self.assertIn(key, message)


class LogTests(ConfigTestCase):
    def test_default(self) -> None:
        self.assertEqual(parse_config(minimal()).log, LogConfig(level="info", output=None))

    def test_levels(self) -> None:
        for given, expected in [
            ("debug", "debug"),
            ("info", "info"),
            ("warn", "warn"),
            ("error", "error"),
            ("trace", "debug"),
            ("fatal", "error"),
            ("panic", "error"),
            ("INFO", "info"),
            ("2", "warn"),
        ]:
            self.assertEqual(parse_config(minimal(log={"level": given})).log.level, expected, given)

    def test_disabled(self) -> None:
        loaded = parse_config(minimal(log={"level": "disabled"}))
        self.assertEqual(loaded.log.level, "error")
        self.assertEqual(len(loaded.warnings), 1)
        self.assertTrue(loaded.warnings[0].startswith("log.level: "))

    def test_warning_refused(self) -> None:
        """zot (zerolog) has no "warning" level: such a file does not start zot, so it is not portable."""
        self.assertIn('"warn"', self.message(minimal(log={"level": "warning"}), "log.level"))

    def test_bad_levels(self) -> None:
        for given in ["verbose", "", "6"]:
            self.assertEqual(self.problem_paths(minimal(log={"level": given})), ["log.level"], given)
        self.assertEqual(
            self.problems(minimal(log={"level": 1})), [("log.level", "must be a string, not a number")]
        )

    def test_output(self) -> None:
        output = parse_config(minimal(log={"output": "/var/log/zotpy.log"})).log.output
        self.assertEqual(output, "/var/log/zotpy.log")
        self.assertIsNone(parse_config(minimal(log={"output": ""})).log.output)
        self.assertEqual(self.problem_paths(minimal(log={"output": True})), ["log.output"])


class ClusterTests(ConfigTestCase):
    def cluster(self, **settings: Any) -> dict[str, Any]:
        section = {"members": ["127.0.0.1:9000", "127.0.0.2:9000"], "hashKey": "loremipsumdolors"}
        section.update(settings)
        return minimal(cluster=section)

    def test_absent(self) -> None:
        self.assertIsNone(parse_config(minimal()).cluster)

    def test_parsed(self) -> None:
        cluster = parse_config(
            self.cluster(members=["zot-server1:9000", "10.0.0.2:9000", "[::1]:9000", "[fe80::1]:1"])
        ).cluster
        self.assertEqual(
            cluster,
            ClusterConfig(
                members=("zot-server1:9000", "10.0.0.2:9000", "[::1]:9000", "[fe80::1]:1"),
                hash_key=b"loremipsumdolors",
                tls=None,
            ),
        )

    def test_case_insensitive(self) -> None:
        document = minimal(cluster={"Members": ["a:1"], "HashKey": "loremipsumdolors", "TLS": {}})
        self.assertEqual(
            parse_config(document).cluster, ClusterConfig(("a:1",), b"loremipsumdolors", ClusterTLSConfig())
        )

    def test_bad_member_named_by_index(self) -> None:
        problems = self.problems(self.cluster(members=["a:1", "b:2", "c:x"]))
        self.assertEqual([path for path, _ in problems], ["cluster.members[2]"])

    def test_duplicate_member_named_by_index(self) -> None:
        message = self.message(self.cluster(members=["a:1", "b:2", "a:1"]), "cluster.members[2]")
        self.assertIn("cluster.members[0]", message)

    def test_member_without_port(self) -> None:
        message = self.message(self.cluster(members=["zot-server1"]), "cluster.members[0]")
        self.assertIn("has no port", message)
        self.assertIn("has no port", self.message(self.cluster(members=["[::1]"]), "cluster.members[0]"))

    def test_bad_members(self) -> None:
        for member in ["a:0", "a:65536", "a:", ":9000", "::1:9000", "[zot]:9000", "bad host:1", "a:-1"]:
            paths = self.problem_paths(self.cluster(members=[member]))
            self.assertEqual(paths, ["cluster.members[0]"], member)

    def test_member_not_a_string(self) -> None:
        self.assertEqual(
            self.problems(self.cluster(members=["a:1", 9000])),
            [("cluster.members[1]", 'must be a string "host:port", not a number')],
        )

    def test_members_required(self) -> None:
        for document in [self.cluster(members=[]), minimal(cluster={"hashKey": "loremipsumdolors"})]:
            message = self.message(document, "cluster.members")
            self.assertIn("cannot have 0 members in a scale out cluster", message)

    def test_members_type(self) -> None:
        self.assertEqual(
            self.problems(self.cluster(members="a:1,b:2")),
            [("cluster.members", "must be an array, not a string")],
        )

    def test_hash_key_length(self) -> None:
        for key, length in [("loremipsumdolor", 15), ("loremipsumdolors!", 17), ("é" * 16, 32)]:
            message = self.message(self.cluster(hashKey=key), "cluster.hashKey")
            self.assertTrue(
                message.startswith("hashKey for scale out cluster must have 16 characters"), message
            )
            self.assertIn(f"{length} bytes", message)

    def test_hash_key_is_sixteen_bytes(self) -> None:
        """zot counts bytes: eight two-byte characters make a valid key."""
        self.assertEqual(parse_config(self.cluster(hashKey="é" * 8)).cluster.hash_key, "é".encode() * 8)

    def test_local_reads_follow_shared_storage(self) -> None:
        """``cluster.localReads`` (zotpy's key): on by default when every member shares the storage
        (S3), off with per-instance storage, where turning it on is refused by name."""
        s3 = {"rootDirectory": "/tmp/z", "storageDriver": {"name": "s3", "bucket": "b", "region": "us-east-1"}}
        shared = self.cluster()
        shared["storage"] = s3
        self.assertTrue(parse_config(shared).storage.shared)
        self.assertTrue(parse_config(shared).cluster.local_reads)
        shared["cluster"]["localReads"] = False
        self.assertFalse(parse_config(shared).cluster.local_reads)
        self.assertFalse(parse_config(self.cluster()).storage.shared)
        self.assertFalse(parse_config(self.cluster()).cluster.local_reads)
        self.assertFalse(parse_config(self.cluster(localReads=False)).cluster.local_reads)
        message = self.message(self.cluster(localReads=True), "cluster.localReads")
        self.assertIn("per-instance storage", message)
        self.assertEqual(self.problem_paths(self.cluster(localReads="yes")), ["cluster.localReads"])

    def test_rebalance_drop_moved(self) -> None:
        """``cluster.rebalance.dropMoved`` (zotpy's key): off by default; a boolean; refused by name
        with shared storage (nothing is ever copied there)."""
        self.assertFalse(parse_config(self.cluster()).cluster.drop_moved)
        self.assertTrue(parse_config(self.cluster(rebalance={"dropMoved": True})).cluster.drop_moved)
        self.assertEqual(self.problem_paths(self.cluster(rebalance={"dropMoved": "yes"})), ["cluster.rebalance.dropMoved"])
        self.assertEqual(self.problem_paths(self.cluster(rebalance={"dropMove": True})), ["cluster.rebalance.dropMove"])
        shared = self.cluster(rebalance={"dropMoved": True})
        shared["storage"] = {"rootDirectory": "/tmp/z", "storageDriver": {"name": "s3", "bucket": "b", "region": "us-east-1"}}
        self.assertIn("per-instance storage", self.message(shared, "cluster.rebalance.dropMoved"))

    def test_hash_key_required(self) -> None:
        self.assertEqual(self.problem_paths(minimal(cluster={"members": ["a:1"]})), ["cluster.hashKey"])

    def test_tls(self) -> None:
        ca, cert, key = self.pem_files("ca.crt", "client.crt", "client.key")
        self.assertEqual(
            parse_config(self.cluster(tls={"cacert": ca, "cert": cert, "key": key})).cluster.tls,
            ClusterTLSConfig(cacert=ca, cert=cert, key=key),
        )
        self.assertEqual(
            parse_config(self.cluster(tls={"cacert": ca})).cluster.tls, ClusterTLSConfig(cacert=ca)
        )

    def test_cert_without_key(self) -> None:
        (cert,) = self.pem_files("client.crt")
        self.assertEqual(self.problem_paths(self.cluster(tls={"cert": cert})), ["cluster.tls.key"])

    def test_key_without_cert(self) -> None:
        (key,) = self.pem_files("client.key")
        self.assertEqual(self.problem_paths(self.cluster(tls={"key": key})), ["cluster.tls.cert"])

    def test_tls_files_must_exist(self) -> None:
        missing = os.path.abspath(self.mktemp())
        self.assertEqual(self.problem_paths(self.cluster(tls={"cacert": missing})), ["cluster.tls.cacert"])


class ExtensionTests(ConfigTestCase):
    def test_absent(self) -> None:
        self.assertEqual(dict(parse_config(minimal()).extensions), {})

    def test_known_extension_warns(self) -> None:
        loaded = parse_config(minimal(extensions={"sync": {"registries": []}, "Scrub": {"enable": True}}))
        self.assertEqual(
            loaded.warnings,
            (
                "extensions.scrub: not implemented yet, ignored",
                # sync is implemented: read by zotpy.sync.settings (tests/test_sync_settings.py)
                "extensions.sync.registries: no upstream registry is configured: nothing is mirrored",
            ),
        )

    def test_unknown_extension_warns(self) -> None:
        loaded = parse_config(minimal(extensions={"teleport": {}}))
        self.assertEqual(loaded.warnings, ("extensions.teleport: unknown extension, ignored",))

    def test_disabled_extension_silent(self) -> None:
        loaded = parse_config(minimal(extensions={"metrics": {"enable": False}, "other": {"Enable": False}}))
        self.assertEqual(loaded.warnings, ())

    def test_null_extension_enabled(self) -> None:
        """zot enables `"scrub": null` like `"scrub": {}`."""
        self.assertEqual(
            parse_config(minimal(extensions={"scrub": None})).warnings,
            ("extensions.scrub: not implemented yet, ignored",),
        )

    def test_search_and_ui(self) -> None:
        """zot's keys: search (cve refused by name: no scanner), ui (needs search)."""
        self.assertIsNone(parse_config(minimal()).search)
        self.assertEqual(parse_config(minimal(extensions={"search": None})).search, SearchSettings(ui=False))
        loaded = parse_config(minimal(extensions={"Search": {"Enable": True}, "UI": {"enable": True}}))
        self.assertEqual((loaded.search, loaded.warnings), (SearchSettings(ui=True), ()))
        self.assertIsNone(parse_config(minimal(extensions={"search": {"enable": False}})).search)
        for extensions, path in (
            ({"search": {"cve": {"updateInterval": "2h"}}}, "extensions.search.cve"),
            ({"search": {"enable": True, "sorting": 1}}, "extensions.search.sorting"),
            ({"ui": {"enable": True}}, "extensions.ui"),
            ({"search": {"enable": False}, "ui": {}}, "extensions.ui"),
        ):
            self.assertEqual(self.problem_paths(minimal(extensions=extensions)), [path], extensions)

    def test_kept_raw_lower_cased(self) -> None:
        loaded = parse_config(
            minimal(
                extensions={
                    "Sync": {
                        "Enable": False,
                        "Registries": [{"URLs": ["https://Example.com"], "PollInterval": "6h"}],
                    }
                }
            )
        )
        self.assertEqual(
            dict(loaded.extensions),
            {
                "sync": {
                    "enable": False,
                    "registries": [{"urls": ["https://Example.com"], "pollinterval": "6h"}],
                }
            },
        )

    def test_bad_types(self) -> None:
        self.assertEqual(
            self.problems(minimal(extensions=["sync"])), [("extensions", "must be an object, not an array")]
        )
        self.assertEqual(
            self.problems(minimal(extensions={"sync": True})),
            [("extensions.sync", "must be an object, not a boolean")],
        )
        self.assertEqual(
            self.problems(minimal(extensions={"sync": {"enable": "false"}})),
            [("extensions.sync.enable", "must be a boolean (true or false), not a string")],
        )


class TopLevelTests(ConfigTestCase):
    def test_dist_spec_version(self) -> None:
        self.assertEqual(parse_config(minimal()).dist_spec_version, "1.1.0")
        self.assertEqual(parse_config(minimal(distSpecVersion="1.0.1-dev")).dist_spec_version, "1.0.1-dev")
        self.assertEqual(
            self.problems(minimal(distSpecVersion=1.1)),
            [("distSpecVersion", "must be a string, not a decimal number")],
        )

    def test_source(self) -> None:
        self.assertIsNone(parse_config(minimal()).source)
        self.assertEqual(parse_config(minimal(), source="/etc/zot.json").source, "/etc/zot.json")

    def test_frozen(self) -> None:
        loaded = parse_config(minimal())
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, loaded, "source", "x")

    def test_error_lines(self) -> None:
        error = ConfigError([("http.port", "bad"), ("", "whole file"), ("log.level", "loud")])
        self.assertEqual(str(error), "http.port: bad\nwhole file\nlog.level: loud")
        self.assertEqual(error.problems[0], ("http.port", "bad"))

    def test_embedded_default(self) -> None:
        cwd = os.path.abspath(self.mktemp())
        default = embedded_default(cwd)
        self.assertEqual(
            default,
            Config(
                dist_spec_version="1.1.0",
                storage=StorageConfig(root_directory=os.path.join(cwd, "zotpy-data")),
                http=HTTPConfig(address="127.0.0.1", port=5000),
                log=LogConfig(level="info"),
                cluster=None,
                extensions={},
                warnings=(),
                source=None,
            ),
        )
