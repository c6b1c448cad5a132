"""Operability end to end, on real daemons: the catalog across per-instance storage, exact metric
counts after forwarded pushes and pulls, JSON logs carrying the cluster fields and no credentials,
readiness following a real S3 server that stops, and SIGHUP changing a running daemon's log level and
access control and reopening its audit log.
"""

from __future__ import annotations

import json
import os

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.integration.cluster import (
    RegistryClient,
    ZotpyCluster,
    log_records,
    oci_error_codes,
    small_image,
)
from tests.integration.daemon import ZotpyDaemon, http_request, sleep
from tests.seaweed import SeaweedServer
from tests.test_auth import basic, htpasswd_file
from zotpy import __version__
from zotpy.config import parse_config
from zotpy.observability.service import Operations
from zotpy.tap import ListenerService, build_service

METRICS = {"extensions": {"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}}}


def scrape_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class Scrape:
    """One scrape of a replica's ``/metrics``."""

    def __init__(self, text: str) -> None:
        self.values = scrape_values(text)

    def get(self, name: str, **labels: str) -> float:
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def delta(self, before: "Scrape", name: str, **labels: str) -> float:
        return self.get(name, **labels) - before.get(name, **labels)


async def scrape(client: RegistryClient, base: str) -> Scrape:
    result = await client.expect(200, "GET", f"{base}/metrics")
    return Scrape(result.body.decode())


async def catalog_pages(client: RegistryClient, base: str, n: int) -> list[list[str]]:
    """Follow ``Link`` from ``?n=`` to the end; every page's names."""
    pages = []
    path = f"/v2/_catalog?n={n}"
    while path:
        result = await client.expect(200, "GET", base + path)
        pages.append(result.json()["repositories"])
        link = result.header("Link")
        path = link[1 : link.index(">")] if link else ""
        if len(pages) > 50:
            raise AssertionError("the catalog's Link never ends")
    return pages


class ClusterOperabilityTests(unittest.TestCase):
    """Three replicas, each with its own local root, metrics enabled."""

    timeout = 120

    async def start_cluster(self) -> tuple[ZotpyCluster, RegistryClient]:
        cluster = ZotpyCluster(self.mktemp(), extra=METRICS)
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient()
        self.addCleanup(client.close)
        return cluster, client

    async def test_catalog_metrics_and_logs(self) -> None:
        cluster, client = await self.start_cluster()

        # Seven repositories, owned by all three members, pushed through various replicas.
        names = cluster.spread_names("ops/repo", 2) + ["ops/zz-last"]
        for index, name in enumerate(names):
            await client.push_image(cluster.url(index % 3), name, small_image(name, layer_sizes=(64,)), "v1")
        self.assertEqual({cluster.owner(n) for n in names}, {0, 1, 2})

        # Every replica lists all of them, sorted; n=2 pages reach the end without gaps or repeats.
        for index in range(3):
            self.assertEqual(await client.catalog(cluster.url(index)), sorted(names), index)
            pages = await catalog_pages(client, cluster.url(index), 2)
            self.assertEqual([len(page) for page in pages], [2, 2, 2, 1], (index, pages))
            self.assertEqual([name for page in pages for name in page], sorted(names), index)
        # A page starting after a name no member holds, and n=0.
        after = await client.expect(200, "GET", f"{cluster.url(1)}/v2/_catalog?n=3&last=ops/repo-")
        self.assertEqual(after.json()["repositories"], sorted(names)[:3])
        self.assertEqual(after.header("Link"), f'</v2/_catalog?n=3&last={sorted(names)[2].replace("/", "%2F")}>; rel="next"')
        empty = await client.expect(200, "GET", f"{cluster.url(2)}/v2/_catalog?n=0")
        self.assertEqual((empty.json()["repositories"], empty.header("Link")), ([], None))
        # The marked request answers from the member's own storage only.
        own = await client.expect(200, "GET", f"{cluster.url(0)}/v2/_catalog", {"X-Zotpy-Catalog-Scope": "local"})
        self.assertEqual(own.json()["repositories"], sorted(n for n in names if cluster.owner(n) == 0))

        # Exact counts: push one image through a non-owner, pull its manifest twice there.
        name = "ops/counted"
        owner, via = cluster.owner(name), cluster.non_owner(name)
        other = 3 - owner - via
        owner_member = cluster.members[owner]
        before = [await scrape(client, cluster.url(i)) for i in range(3)]
        image = small_image(name, layer_sizes=(64,))  # two blobs: POST + PUT each, then the manifest
        await client.push_image(cluster.url(via), name, image, "v1")
        for _ in range(2):
            await client.expect(200, "GET", f"{cluster.url(via)}/v2/{name}/manifests/v1")
        after_scrapes = [await scrape(client, cluster.url(i)) for i in range(3)]
        forwarded = after_scrapes[via].delta(
            before[via], "zot_cluster_forwarded_requests_total", member=owner_member, outcome="relayed"
        )
        self.assertEqual(forwarded, 7)
        self.assertEqual(
            after_scrapes[via].delta(before[via], "zot_cluster_forward_latency_seconds_count", member=owner_member), 7
        )
        for index in (via, owner):  # both answered every request (the owner the forwarded copies)
            scraped, earlier = after_scrapes[index], before[index]
            self.assertEqual(scraped.delta(earlier, "zot_http_requests_total", method="POST", code="202"), 2, index)
            self.assertEqual(scraped.delta(earlier, "zot_http_requests_total", method="PUT", code="201"), 3, index)
            # two pulls, plus the scrape taken before
            self.assertEqual(scraped.delta(earlier, "zot_http_requests_total", method="GET", code="200"), 3, index)
        # The repository's own counters: on the owner only, so a sum over replicas counts each once.
        self.assertEqual(after_scrapes[owner].get("zot_repo_uploads_total", repo=name), 1)
        self.assertEqual(after_scrapes[owner].get("zot_repo_downloads_total", repo=name), 2)
        self.assertEqual(after_scrapes[owner].get("zot_http_repo_latency_seconds_count", repo=name), 7)
        for index in (via, other):
            self.assertEqual(after_scrapes[index].get("zot_repo_uploads_total", repo=name), 0, index)
            self.assertEqual(after_scrapes[index].get("zot_repo_downloads_total", repo=name), 0, index)
        self.assertEqual(
            after_scrapes[other].delta(before[other], "zot_http_requests_total", method="PUT", code="201"), 0
        )
        self.assertGreater(after_scrapes[owner].get("zot_storage_operation_latency_seconds_count", operation="put_content"), 0)
        # The lag monitor's first tick comes 0.5 s after the start, which a quick run can beat (CI
        # saw 0 here once): wait for it, but not forever.
        deadline = reactor.seconds() + 5.0
        while (await scrape(client, cluster.url(owner))).get("zot_reactor_lag_seconds_count") == 0:
            self.assertLess(reactor.seconds(), deadline, "the reactor lag monitor never ticked")
            await sleep(0.2)

        # Credentials in a forwarded request reach no log.
        await client.expect(
            200, "GET", f"{cluster.url(via)}/v2/{name}/tags/list?access_token=s3cr3t-t0ken",
            {"Authorization": "Basic c2VjcmV0LXVzZXI6aHVudGVyMg=="},
        )

        # Every line of every replica's log is a JSON object naming its member (the index a string).
        for index in range(3):
            text = cluster.replicas[index].log_text()
            self.assertNotIn("c2VjcmV0LXVzZXI6aHVudGVyMg==", text)
            self.assertNotIn("hunter2", text)
            self.assertNotIn("s3cr3t-t0ken", text)
            records = log_records(text)
            self.assertGreater(len(records), 20)
            for record in records:
                self.assertEqual(
                    (record.get("clusterMember"), record.get("clusterMemberIndex")),
                    (cluster.members[index], str(index)), record,
                )
                self.assertIn(record["level"], ("debug", "info", "warn", "error"), record)
                self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            listening = [r for r in records if r["message"].startswith("zotpy listening on")]
            self.assertEqual([r.get("version") for r in listening], [__version__], index)
            self.assertTrue(listening[0]["message"].endswith(f"(zotpy {__version__})"), listening)
        via_lines = [r for r in log_records(cluster.replicas[via].log_text()) if r["message"] == "HTTP API"]
        owner_lines = [r for r in log_records(cluster.replicas[owner].log_text()) if r["message"] == "HTTP API"]
        pulled = f"/v2/{name}/manifests/v1"
        via_pull = [r for r in via_lines if r["path"] == pulled and r["method"] == "GET"]
        self.assertEqual(len(via_pull), 2)
        self.assertEqual(
            {(r["statusCode"], r["forwarded"], r["forwardedTo"], r["bodySize"]) for r in via_pull},
            {(200, True, owner_member, len(image.manifest))},
        )
        self.assertIsInstance(via_pull[0]["latency"], float)
        owner_pull = [r for r in owner_lines if r["path"] == pulled and r["method"] == "GET"]
        self.assertEqual([(r["forwarded"], r.get("clusterHop")) for r in owner_pull], [(False, True)] * 2)
        token_line = [r for r in via_lines if "/tags/list" in r["path"] and name in r["path"]]
        self.assertEqual([r["path"] for r in token_line], [f"/v2/{name}/tags/list?access_token=REDACTED"])

    async def test_catalog_while_a_member_is_down(self) -> None:
        """503 UNAVAILABLE naming the member that did not answer, with Retry-After; whole again after."""
        cluster, client = await self.start_cluster()
        names = cluster.spread_names("down/repo", 1)
        for name in names:
            await client.push_image(cluster.url(cluster.owner(name)), name, small_image(name, layer_sizes=(32,)), "v1")
        await cluster.stop_replica(2)
        for index in (0, 1):
            result = await client.expect(503, "GET", f"{cluster.url(index)}/v2/_catalog?n=2")
            self.assertEqual(oci_error_codes(result), ["UNAVAILABLE"])
            self.assertEqual(list(result.json()["errors"][0]["detail"]["members"]), [cluster.members[2]])
            self.assertEqual(result.header("Retry-After"), "5")
        scraped = await scrape(client, cluster.url(0))
        self.assertEqual(
            scraped.get("zot_cluster_peer_errors_total", member=cluster.members[2], operation="catalog"), 1
        )
        # Repositories of the members still up are served as before.
        up = next(n for n in names if cluster.owner(n) == 1)
        await client.expect(200, "GET", f"{cluster.url(0)}/v2/{up}/tags/list")

        await cluster.start_replica(2)
        self.assertEqual(await client.catalog(cluster.url(0)), sorted(names))


class ReadinessOnS3Tests(unittest.TestCase):
    """The registry service in this process on a SeaweedFS of its own, which the test stops."""

    timeout = 120

    async def test_probes_follow_the_s3_server(self) -> None:
        server = SeaweedServer()
        self.addCleanup(server.stop, 0)
        await deferToThread(server.start)
        driver = server.storage_driver()
        config = parse_config(
            {
                "storage": {"rootDirectory": self.mktemp(), "dedupe": False, "gc": False, "storageDriver": driver},
                "http": {"address": "127.0.0.1", "port": 0},
            }
        )
        await deferToThread(server.stop, 0, True)  # down before the replica starts
        operations = Operations(config, reactor, storage_check_ttl=0.2)
        service = build_service(config, operations=operations)
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        base = f"http://127.0.0.1:{listener.port.getHost().port}"

        async def probe(path: str) -> tuple[int, bytes]:
            result = await http_request("GET", base + path, timeout=10)
            return result.code, result.body

        async def until(path: str, wanted: tuple[int, bytes]) -> None:
            for _ in range(100):
                if await probe(path) == wanted:
                    return
                await sleep(0.1)
            self.fail(f"{path} never answered {wanted}: {await probe(path)}")

        # Starting up without S3: alive, but neither started nor ready.
        self.assertEqual(await probe("/livez"), (200, b"ok"))
        self.assertEqual(await probe("/startupz"), (500, b"not ready yet"))
        self.assertEqual(await probe("/readyz"), (500, b"not ready yet"))
        await deferToThread(server.start)
        await until("/startupz", (200, b"ok"))
        self.assertEqual(await probe("/readyz"), (200, b"ok"))

        # S3 goes away while serving: not ready (startup stays done), then ready again.
        await deferToThread(server.stop, 0, True)
        await until("/readyz", (500, b"not ready yet"))
        self.assertEqual(await probe("/startupz"), (200, b"ok"))
        self.assertEqual(await probe("/livez"), (200, b"ok"))
        await deferToThread(server.start)
        await until("/readyz", (200, b"ok"))


class SighupTests(unittest.TestCase):
    timeout = 60

    async def test_sighup_changes_the_log_level_of_a_running_daemon(self) -> None:
        daemon = ZotpyDaemon(self.mktemp(), {"log": {"level": "warn"}})
        await daemon.start()
        self.addCleanup(daemon.stop)
        await http_request("GET", f"{daemon.base_url}/v2/_catalog")
        self.assertEqual([r for r in log_records(daemon.log_text()) if r["message"] == "HTTP API"], [])

        config = dict(daemon.config, log={"level": "info"})
        config["http"] = dict(config["http"], port=str(daemon.port + 1))  # needs a restart: logged, not applied
        with open(daemon.config_path, "w") as stream:
            json.dump(config, stream)
        daemon._transport.signalProcess("HUP")
        for _ in range(100):
            if any(r["message"].startswith("log level changed") for r in log_records(daemon.log_text())):
                break
            await sleep(0.05)
        await http_request("GET", f"{daemon.base_url}/v2/_catalog")
        records = log_records(daemon.log_text())
        self.assertTrue(any(r["message"] == "log level changed from warn to info" for r in records), records)
        self.assertTrue(
            any(r.get("restartKeys") == ["http.port"] and r["level"] == "warn" for r in records), records
        )
        catalog = [r for r in records if r["message"] == "HTTP API" and r["path"] == "/v2/_catalog"]
        self.assertEqual([(r["method"], r["statusCode"]) for r in catalog], [("GET", 200)])
        self.assertTrue(daemon.running)

    async def test_sighup_applies_access_control_and_reopens_the_audit_log(self) -> None:
        """logrotate's rename then SIGHUP, with a new policy in the file: bob's refused push is in the
        rotated audit log, his allowed one (applied without a restart) in the new file."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        users = {"alice": "alice-pw", "bob": "bob-pw"}
        audit = os.path.join(workdir, "audit.log")
        access = {"repositories": {"**": {
            "policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}],
            "defaultPolicy": ["read"],
        }}}
        daemon = ZotpyDaemon(workdir, {
            "http": {"auth": {"htpasswd": {"path": htpasswd_file(workdir, users)}}, "accessControl": access},
            "log": {"level": "info", "audit": audit},
        })
        await daemon.start()
        self.addCleanup(daemon.stop)
        url = f"{daemon.base_url}/v2/team/app/blobs/uploads/"
        bob = {"Authorization": basic("bob", "bob-pw")}
        self.assertEqual((await http_request("POST", url, bob)).code, 403)

        os.rename(audit, audit + ".1")
        access["repositories"]["**"]["policies"].append({"users": ["bob"], "actions": ["read", "create"]})
        with open(daemon.config_path, "w") as stream:
            json.dump(daemon.config, stream)
        daemon._transport.signalProcess("HUP")
        for _ in range(100):
            if os.path.exists(audit):
                break
            await sleep(0.05)
        self.assertEqual((await http_request("POST", url, bob)).code, 202)

        def audited(path: str) -> list[tuple[str, str, int]]:
            with open(path) as stream:
                return [(r["subject"], r["action"], r["status"]) for r in map(json.loads, stream)]

        self.assertEqual(audited(audit + ".1"), [("bob", "POST", 403)])
        self.assertEqual(audited(audit), [("bob", "POST", 202)])
        records = log_records(daemon.log_text())
        self.assertTrue(any("http.accessControl.repositories" in r["message"] for r in records), records)
