"""Operability in one process: probes, metrics, JSON log lines, the access log, reloads, the lag monitor."""

from __future__ import annotations

import io
import json
import os
import platform
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import Application, IServiceCollection
from twisted.internet import defer, task
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.support import http_client
from tests.test_auth import basic, htpasswd_file
from zotpy import __version__
from zotpy.config import parse_config
from zotpy.observability.access import redact_uri
from zotpy.observability.health import CachedCheck
from zotpy.observability.logs import JSONLogObserver, LogOutput, TwistdLogging, json_record, twistd_output
from zotpy.observability.metrics import Metrics, MeteredDriver, ReactorLagMonitor
from zotpy.observability.reload import Reloader, config_changes
from zotpy.observability.service import Operations
from zotpy.storage.driver import PathNotFound, StorageError
from zotpy.tap import ListenerService, build_service


def document(root: str, **sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "storage": {"rootDirectory": root, "dedupe": False, "gc": False},
        "http": {"address": "127.0.0.1", "port": 0},
    }
    base.update(sections)
    return base


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


# --------------------------------------------------------------------------------------------------
# extensions.metrics
# --------------------------------------------------------------------------------------------------


class MetricsConfigTests(unittest.TestCase):
    def metrics(self, extensions: Any) -> Any:
        return parse_config(document("/tmp/x", extensions=extensions))

    def test_zots_shape(self) -> None:
        config = self.metrics({"Metrics": {"Enable": True, "Prometheus": {"Path": "/prom"}}})
        self.assertEqual(config.metrics.path, "/prom")
        self.assertEqual(config.warnings, ())  # implemented: no "not implemented yet" warning
        self.assertEqual(self.metrics({"metrics": {}}).metrics.path, "/metrics")
        self.assertEqual(self.metrics({"metrics": None}).metrics.path, "/metrics")
        self.assertIsNone(self.metrics({"metrics": {"enable": False}}).metrics)
        self.assertIsNone(self.metrics({}).metrics)

    def test_problems_name_the_key(self) -> None:
        from zotpy.config import ConfigError

        for extensions, key in [
            ({"metrics": {"prometheus": {"path": "metrics"}}}, "extensions.metrics.prometheus.path"),
            ({"metrics": {"prometheus": {"path": "/readyz"}}}, "extensions.metrics.prometheus.path"),
            ({"metrics": {"prometheus": {"path": "/v2/_catalog"}}}, "extensions.metrics.prometheus.path"),
            ({"metrics": {"prometheus": {"port": 9}}}, "extensions.metrics.prometheus.port"),
            ({"metrics": {"prometheus": "/metrics"}}, "extensions.metrics.prometheus"),
            ({"metrics": {"exporter": {}}}, "extensions.metrics.exporter"),
        ]:
            error = self.assertRaises(ConfigError, self.metrics, extensions)
            self.assertEqual([path for path, _ in error.problems], [key], extensions)


# --------------------------------------------------------------------------------------------------
# Log lines
# --------------------------------------------------------------------------------------------------


class JSONLogTests(unittest.TestCase):
    def observer(self, level: str = "info", fields: dict[str, str] | None = None) -> tuple[JSONLogObserver, io.StringIO]:
        stream = io.StringIO()
        return JSONLogObserver(LogOutput(stream=stream), level, fields), stream

    def lines(self, stream: io.StringIO) -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    def test_one_object_per_line_with_zot_fields(self) -> None:
        observer, stream = self.observer(fields={"clusterMember": "127.0.0.2:9000", "clusterMemberIndex": "1"})
        Logger(namespace="zotpy.test", observer=observer).info(
            "pushed {repo}\nsecond line", repo="library/alpine", size=3, raw=b"\xffbytes"
        )
        [line] = stream.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["message"], "pushed library/alpine\nsecond line")
        self.assertEqual(record["module"], "zotpy.test")
        self.assertEqual((record["repo"], record["size"], record["raw"]), ("library/alpine", 3, "\ufffdbytes"))
        self.assertEqual((record["clusterMember"], record["clusterMemberIndex"]), ("127.0.0.2:9000", "1"))
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_time_is_rfc3339_utc(self) -> None:
        record = json_record({"log_time": 0.25, "log_format": "x", "log_level": LogLevel.warn}, {})
        self.assertEqual((record["time"], record["level"]), ("1970-01-01T00:00:00.250Z", "warn"))

    def test_level_filters_and_can_change(self) -> None:
        observer, stream = self.observer("warn")
        logger = Logger(observer=observer)
        logger.info("dropped")
        logger.error("kept")
        observer.level = "debug"
        logger.debug("now kept")
        self.assertEqual([r["message"] for r in self.lines(stream)], ["kept", "now kept"])
        self.assertRaises(ValueError, setattr, observer, "level", "verbose")

    def test_failure_is_on_the_same_line(self) -> None:
        observer, stream = self.observer()
        try:
            1 / 0
        except ZeroDivisionError:
            Logger(observer=observer).failure("it broke on {path}", Failure(), path="/v2/")
        [record] = self.lines(stream)
        self.assertEqual((record["level"], record["message"]), ("error", "it broke on /v2/"))
        self.assertIn("ZeroDivisionError", record["error"])

    def test_legacy_events(self) -> None:
        observer, stream = self.observer()
        observer({"message": ("Starting factory",), "isError": 0, "system": "-", "log_legacy": True,
                  "log_format": "{log_text}", "log_text": "Starting factory", "log_level": LogLevel.info,
                  "log_time": 1.0})
        [record] = self.lines(stream)
        self.assertEqual(record["message"], "Starting factory")
        self.assertNotIn("isError", record)

    def test_file_output_is_reopened(self) -> None:
        path = self.mktemp()
        output = LogOutput(path=path)
        self.addCleanup(output.close)
        output.write("one\n")
        os.rename(path, path + ".1")  # logrotate
        output.reopen()
        output.write("two\n")
        with open(path) as new, open(path + ".1") as old:
            self.assertEqual((old.read(), new.read()), ("one\n", "two\n"))


class TwistdLoggingTests(unittest.TestCase):
    def test_output_follows_config_then_twistd(self) -> None:
        path = self.mktemp()
        configured = twistd_output(path, {"logfile": "ignored.log", "nodaemon": True})
        self.addCleanup(configured.close)
        self.assertEqual(configured.path, path)
        self.assertEqual(twistd_output(None, {"nodaemon": True, "logfile": None}).path, None)
        self.assertEqual(twistd_output(None, {"nodaemon": True, "logfile": "-"}).path, None)
        self.assertIsNone(twistd_output(None, {"logger": "my.observer"}))
        self.assertIsNone(twistd_output(None, {"syslog": True}))

    def test_observer_is_offered_to_twistds_application(self) -> None:
        """twistd's AppLogger takes the Application's ILogObserver instead of its text observer."""
        observer = JSONLogObserver(LogOutput(stream=io.StringIO()))
        application = Application("zotpy")
        root = TwistdLogging(build_service(parse_config(document(self.mktemp()))), observer)
        root.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)
        self.assertIn(root, list(IServiceCollection(application)))


class LogOutputConfigTests(unittest.TestCase):
    def test_unwritable_output_is_a_usage_error_naming_the_key(self) -> None:
        from twisted.python import usage

        from zotpy.tap import Options

        path = self.mktemp()
        with open(path, "w") as stream:
            json.dump(document(self.mktemp(), log={"output": "/nonexistent/dir/zotpy.log"}), stream)
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["-c", path])
        self.assertIn("log.output: cannot open '/nonexistent/dir/zotpy.log' for writing", str(error))

    def test_log_output_file_gets_the_json_lines(self) -> None:
        from zotpy.observability.service import for_twistd

        output = os.path.abspath(self.mktemp())
        config = parse_config(document(self.mktemp(), log={"level": "warn", "output": output}))
        operations = Operations(config)
        root = for_twistd(build_service(config, operations=operations), operations, config, {"nodaemon": True})
        observer = root.observer
        self.addCleanup(observer.output.close)
        Logger(namespace="zotpy.test", observer=observer).info("below the level")
        Logger(namespace="zotpy.test", observer=observer).warn("written {n}", n=1)
        with open(output) as stream:
            self.assertEqual([json.loads(line)["message"] for line in stream], ["written 1"])


class RedactionTests(unittest.TestCase):
    def test_secret_query_values_are_replaced(self) -> None:
        self.assertEqual(
            redact_uri(b"/v2/token?account=me&service=reg&access_token=abc&X-Amz-Signature=s1&password=p"),
            "/v2/token?account=me&service=reg&access_token=REDACTED&X-Amz-Signature=REDACTED&password=REDACTED",
        )
        self.assertEqual(redact_uri(b"/v2/_catalog?n=2&last=a%2Fb"), "/v2/_catalog?n=2&last=a/b")
        self.assertEqual(redact_uri(b"/v2/"), "/v2/")


# --------------------------------------------------------------------------------------------------
# Health checks, lag, storage metering
# --------------------------------------------------------------------------------------------------


class CachedCheckTests(unittest.TestCase):
    def test_storm_costs_one_check_per_period(self) -> None:
        clock = task.Clock()
        pending: list[defer.Deferred[None]] = []

        def check() -> defer.Deferred[None]:
            pending.append(defer.Deferred())
            return pending[-1]

        cached = CachedCheck(check, clock, ttl=2.0, timeout=5.0)
        answers = [cached() for _ in range(50)]
        self.assertEqual(cached.runs, 1)
        pending[0].callback(None)
        self.assertEqual([self.successResultOf(a) for a in answers], [True] * 50)
        clock.advance(1.9)
        self.assertTrue(self.successResultOf(cached()))
        self.assertEqual(cached.runs, 1)
        clock.advance(0.2)
        late = cached()
        self.assertEqual(cached.runs, 2)
        pending[1].errback(StorageError("S3 HeadBucket: connection refused"))
        self.assertFalse(self.successResultOf(late))

    def test_a_hanging_check_fails_after_the_timeout(self) -> None:
        clock = task.Clock()
        cached = CachedCheck(lambda: defer.Deferred(), clock, ttl=1.0, timeout=3.0)
        answer = cached()
        self.assertNoResult(answer)
        clock.advance(3.0)
        self.assertFalse(self.successResultOf(answer))


class ReactorLagTests(unittest.TestCase):
    def test_records_how_late_each_tick_runs(self) -> None:
        clock = task.Clock()
        metrics = Metrics()
        monitor = ReactorLagMonitor(metrics.reactor_lag, clock, interval=0.5)
        monitor.startService()
        clock.advance(0.5)  # on time
        clock.advance(0.8)  # the next tick was due at 1.0 and ran at 1.3
        monitor.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(metrics.registry.get_sample_value("zot_reactor_lag_seconds_count"), 2)
        self.assertAlmostEqual(metrics.registry.get_sample_value("zot_reactor_lag_seconds_sum"), 0.3)
        self.assertEqual(metrics.registry.get_sample_value("zot_reactor_lag_seconds_bucket", {"le": "0.1"}), 1)


class _Driver:
    def get_content(self, path: str) -> defer.Deferred[bytes]:
        if path == "missing":
            return defer.fail(PathNotFound(path))
        if path == "broken":
            return defer.fail(StorageError("disk on fire"))
        return defer.succeed(b"data")

    def check(self) -> str:
        return "checked"


class MeteredDriverTests(unittest.TestCase):
    def test_latency_and_errors_by_operation(self) -> None:
        metrics = Metrics()
        times = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.25])
        driver = MeteredDriver(_Driver(), metrics.storage, clock=lambda: next(times))
        self.assertEqual(self.successResultOf(driver.get_content("x")), b"data")
        self.failureResultOf(driver.get_content("missing"), PathNotFound)
        self.failureResultOf(driver.get_content("broken"), StorageError)
        registry = metrics.registry
        labels = {"operation": "get_content"}
        self.assertEqual(registry.get_sample_value("zot_storage_operation_latency_seconds_count", labels), 3)
        self.assertAlmostEqual(registry.get_sample_value("zot_storage_operation_latency_seconds_sum", labels), 0.85)
        self.assertEqual(registry.get_sample_value("zot_storage_errors_total", labels), 1)  # not the missing path
        self.assertEqual(driver.check(), "checked")  # beyond the interface: passed through


# --------------------------------------------------------------------------------------------------
# Reload
# --------------------------------------------------------------------------------------------------


class AccessLogUserTests(unittest.TestCase):
    """The access log names the user the access layer admitted, never a refused one's claim."""

    @async_test
    async def test_username_of_admitted_requests_only(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        root = self.mktemp()
        os.makedirs(root)
        password = htpasswd_file(root, {"alice": "alice-pw"})
        config = parse_config(document(root, http={"address": "127.0.0.1", "port": 0,
                                                   "auth": {"htpasswd": {"path": password}}}))
        service = build_service(config)
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        base = f"http://127.0.0.1:{listener.port.getHost().port}"
        client = http_client(self)
        for authorization in (basic("alice", "alice-pw"), basic("mallory", "alice-pw"), None):
            headers = {"Authorization": [authorization]} if authorization else {}
            response = await client.get(base + "/v2/", headers=headers)
            await response.content()
        access = [event for event in events if event.get("log_format") == "HTTP API"]
        self.assertEqual([(e["statusCode"], e.get("username")) for e in access],
                         [(200, "alice"), (401, None), (401, None)])
        written = "".join(json.dumps(json_record(event, {}), default=str) for event in events)
        self.assertNotIn("alice-pw", written)
        self.assertNotIn("mallory", written)


class ReloadTests(unittest.TestCase):
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.path = self.mktemp()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, **sections: Any) -> None:
        with open(self.path, "w") as stream:
            json.dump(document(self.root, **sections), stream)

    def load(self) -> Any:
        from zotpy.config import load_config

        return load_config(self.path)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events if event.get("log_namespace", "").endswith("reload")]

    def test_changes_are_key_paths_in_zots_spelling(self) -> None:
        old = parse_config(document(self.root, log={"level": "info"}))
        new = parse_config(
            document(
                self.root + "x", log={"level": "debug"}, http={"address": "127.0.0.1", "port": 5001},
                extensions={"sync": {"enable": False}},
            )
        )
        self.assertEqual(
            config_changes(old, new), ["storage.rootDirectory", "http.port", "log.level", "extensions.sync"]
        )

    def test_hooks_apply_their_keys_and_the_rest_waits_for_a_restart(self) -> None:
        self.write(log={"level": "info"})
        reloader = Reloader(self.load())
        applied: list[str] = []
        reloader.register(("log.level",), lambda config: applied.append(config.log.level))
        reloader.register(("extensions.sync",), lambda config: applied.append("sync"))

        self.write(log={"level": "debug"}, http={"address": "127.0.0.1", "port": 5001})
        self.assertEqual(reloader.reload(), ["log.level"])
        self.assertEqual(applied, ["debug"])
        self.assertTrue(any("not applied until a restart: http.port" in m for m in self.messages()), self.messages())

        # Back to the starting port: nothing waits for a restart any more.
        del self.events[:]
        self.write(log={"level": "debug"})
        self.assertEqual(reloader.reload(), [])
        self.assertFalse(any("restart" in m for m in self.messages()), self.messages())

    def test_a_broken_file_changes_nothing(self) -> None:
        self.write(log={"level": "info"})
        reloader = Reloader(self.load())
        applied: list[str] = []
        reloader.register(("log.level",), lambda config: applied.append(config.log.level))
        with open(self.path, "w") as stream:
            stream.write('{"storage": ')
        self.assertEqual(reloader.reload(), [])
        self.assertEqual(applied, [])
        self.assertEqual(reloader.current.log.level, "info")
        self.assertTrue(any("not applied" in m and "not valid JSON" in m for m in self.messages()), self.messages())


# --------------------------------------------------------------------------------------------------
# The service in one process
# --------------------------------------------------------------------------------------------------


class ServiceTests(unittest.TestCase):
    def start(self, config_document: dict[str, Any], operations: Operations | None = None) -> str:
        config = parse_config(config_document)
        service = build_service(config, operations=operations or Operations(config))
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        return f"http://127.0.0.1:{listener.port.getHost().port}"

    @async_test
    async def test_probes_when_serving(self) -> None:
        base = self.start(document(self.mktemp()))
        client = http_client(self)
        for path in ("/livez", "/readyz", "/startupz"):
            response = await client.get(base + path)
            self.assertEqual((response.code, await response.content()), (200, b"ok"), path)
        response = await client.post(base + "/readyz")
        self.assertEqual(response.code, 405)
        await response.content()

    @async_test
    async def test_probes_while_storage_does_not_answer(self) -> None:
        """Live throughout; started and ready once the storage answers; ready follows the storage."""
        config = parse_config(document(self.mktemp()))
        operations = Operations(config, storage_check_ttl=0.0)
        service = build_service(config, operations=operations)
        assert operations.health is not None
        storage_up = False

        def check() -> defer.Deferred[None]:
            return defer.succeed(None) if storage_up else defer.fail(StorageError("connection refused"))

        operations.health.storage.check = check
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        base = f"http://127.0.0.1:{listener.port.getHost().port}"
        client = http_client(self)

        async def probes() -> list[tuple[int, bytes]]:
            answers = []
            for path in ("/livez", "/startupz", "/readyz"):
                response = await client.get(base + path)
                answers.append((response.code, await response.content()))
            return answers

        down, up = (500, b"not ready yet"), (200, b"ok")
        self.assertEqual(await probes(), [up, down, down])
        storage_up = True
        self.assertEqual(await probes(), [up, up, up])
        storage_up = False
        self.assertEqual(await probes(), [up, up, down])  # startup stays done

    @async_test
    async def test_metrics_only_when_configured(self) -> None:
        client = http_client(self)
        plain = self.start(document(self.mktemp()))
        response = await client.get(plain + "/metrics")
        self.assertEqual(response.code, 404)
        await response.content()
        custom = self.start(document(self.mktemp(), extensions={"metrics": {"prometheus": {"path": "/prom"}}}))
        response = await client.get(custom + "/prom")
        self.assertEqual(response.code, 200)
        self.assertIn(b"zot_up 1.0", await response.content())

    @async_test
    async def test_counts_after_a_push_and_a_pull(self) -> None:
        import hashlib

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        base = self.start(document(self.mktemp(), extensions={"metrics": {"enable": True}}))
        client = http_client(self)
        config = b"{}"
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 2},
                "layers": [],
            }
        ).encode()
        secret = {"Authorization": ["Basic c2VjcmV0LXVzZXI6aHVudGVyMg=="]}
        posted = await client.post(f"{base}/v2/team/app/blobs/uploads/?digest={digest}", data=config, headers=secret)
        self.assertEqual(posted.code, 201)
        await posted.content()
        put = await client.put(
            f"{base}/v2/team/app/manifests/v1", data=manifest,
            headers={"Content-Type": ["application/vnd.oci.image.manifest.v1+json"]},
        )
        self.assertEqual(put.code, 201)
        await put.content()
        for _ in range(2):
            pulled = await client.get(f"{base}/v2/team/app/manifests/v1?access_token=hunter2")
            self.assertEqual(pulled.code, 200)
            await pulled.content()
        missing = await client.get(f"{base}/v2/random-probe-name/manifests/v1")
        self.assertEqual(missing.code, 404)
        await missing.content()
        scraped = samples((await (await client.get(base + "/metrics")).content()).decode())

        self.assertEqual(value(scraped, "zot_repo_uploads_total", repo="team/app"), 1)
        self.assertEqual(value(scraped, "zot_repo_downloads_total", repo="team/app"), 2)
        self.assertEqual(value(scraped, "zot_http_requests_total", method="GET", code="200"), 2)
        self.assertEqual(value(scraped, "zot_http_requests_total", method="PUT", code="201"), 1)
        self.assertEqual(value(scraped, "zot_http_requests_total", method="POST", code="201"), 1)
        self.assertEqual(value(scraped, "zot_http_requests_total", method="GET", code="404"), 1)
        self.assertEqual(value(scraped, "zot_http_method_latency_seconds_count", method="GET"), 3)
        self.assertEqual(value(scraped, "zot_http_repo_latency_seconds_count", repo="team/app"), 4)
        self.assertEqual(value(scraped, "zot_http_repo_latency_seconds_count", repo="random-probe-name"), 0)
        self.assertGreater(value(scraped, "zot_storage_operation_latency_seconds_count", operation="put_content"), 0)
        self.assertEqual(value(scraped, "zot_up"), 1)
        info = {"commit": "", "binaryType": "zotpy", "goVersion": f"python{platform.python_version()}", "version": __version__}
        self.assertEqual(scraped[("zot_info", tuple(sorted(info.items())))], 0)  # zot's value

        access = [event for event in events if event.get("log_format") == "HTTP API" and event["path"] != "/metrics"]
        self.assertEqual(
            [(e["method"], e["statusCode"], e["forwarded"]) for e in access],
            [("POST", 201, False), ("PUT", 201, False), ("GET", 200, False), ("GET", 200, False), ("GET", 404, False)],
        )
        self.assertEqual(access[2]["path"], "/v2/team/app/manifests/v1?access_token=REDACTED")
        self.assertEqual(access[1]["bodySize"], 0)
        self.assertEqual(access[2]["bodySize"], len(manifest))
        written = "".join(
            json.dumps(json_record(event, {}), default=str) for event in events
        )
        for secret_text in ("c2VjcmV0LXVzZXI6aHVudGVyMg==", "hunter2"):
            self.assertNotIn(secret_text, written)
