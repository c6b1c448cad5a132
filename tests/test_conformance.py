"""The OCI distribution-spec conformance suite, ported to trial, run against a
real zotpy HTTP listener on loopback.

Two generations of the official suite are ported (see
:mod:`tests.conformance`):

* ``GinkgoV11ConformanceTests`` -- the v1.1.x Ginkgo suite (pull, push,
  content discovery, content management; 79 specs), configured like a full
  run::

      OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1
      OCI_TEST_CONTENT_MANAGEMENT=1 OCI_NAMESPACE=conformance/repo
      OCI_CROSSMOUNT_NAMESPACE=conformance/crossmount OCI_AUTOMATIC_CROSSMOUNT=0
      OCI_DELETE_MANIFEST_BEFORE_BLOBS=1 OCI_HIDE_SKIPPED_WORKFLOWS=0

  ``test_0_all_workflows`` is the official run (one registry, the four
  workflows in order, later specs seeing the state earlier ones left);
  ``test_1..4`` run one workflow each on a fresh registry (the official
  binary with a single ``OCI_TEST_*`` switch on).

* ``MainBranchConformanceTests`` -- the data-driven suite on ``main`` (blob
  API matrix in sha256 and sha512, range requests, bad digests, images,
  indexes, artifacts, referrers, deletes; several hundred cases), with the
  default spec version 1.1 configuration.  (The suite's unreleased ``dev``
  configuration is not run: it pushes sha512 manifests by tag and expects a
  sha512 ``Docker-Content-Digest`` back, which the released spec does not ask.)

A failing test prints a report shaped like the official one: every failing
spec/case with its assertion and the HTTP exchanges (request and response
headers and bodies) behind it.  The full report of every run, passing or
not, is also written next to the test's temporary directory
(``_trial_temp/.../conformance-report.txt``).

Target registry (``ZOTPY_CONFORMANCE_TARGET``):

* unset or ``zotpy``: zotpy in-process via ``tests.support.start_local_registry``;
* ``docker-registry``: the CNCF distribution registry (Debian package), to
  validate the port itself -- it is known to fail some cases;
* ``http://HOST:PORT``: a registry that is already running (namespaces get a
  random suffix so runs do not collide).

``OCI_CONFORMANCE_SEED`` fixes the random seed (blob contents in the Ginkgo
port, map iteration order in the ``main`` port).

Run: ``python -m twisted.trial tests.test_conformance``
"""

from __future__ import annotations

import os
import secrets

from twisted.internet import defer, reactor
from twisted.python import log
from twisted.trial import unittest

from tests.conformance import ginkgo_suite, main_suite
from tests.conformance.client import GO_USER_AGENT, GoHTTPClient

TARGET_ENV = "ZOTPY_CONFORMANCE_TARGET"
SEED_ENV = "OCI_CONFORMANCE_SEED"

NAMESPACE = "conformance/repo"
CROSSMOUNT_NAMESPACE = "conformance/crossmount"


def _seed() -> int | None:
    v = os.environ.get(SEED_ENV)
    return int(v) if v else None


class _ConformanceCase(unittest.TestCase):
    timeout = 900

    async def registry(self) -> tuple[str, str]:
        """Start (or pick) the registry under test; returns (root URL, namespace suffix)."""
        target = os.environ.get(TARGET_ENV, "zotpy")
        if target == "zotpy":
            from tests.support import start_local_registry

            return await start_local_registry(self), ""
        if target == "docker-registry":
            from tests.integration.daemon import DockerRegistry

            reg = DockerRegistry(self.mktemp())
            await reg.start()
            self.addCleanup(lambda: defer.ensureDeferred(reg.stop()))
            return reg.base_url, ""
        if target.startswith(("http://", "https://")):
            return target.rstrip("/"), "-" + secrets.token_hex(4)
        raise ValueError(f"{TARGET_ENV}={target!r}: expected zotpy, docker-registry or a URL")

    def client(self, user_agent: str, compression: bool = True) -> GoHTTPClient:
        c = GoHTTPClient(reactor, user_agent=user_agent, compression=compression)
        self.addCleanup(lambda: defer.ensureDeferred(c.close()))
        return c

    def save_report(self, text: str) -> str:
        path = os.path.abspath(self.mktemp()) + "-conformance-report.txt"
        with open(path, "w") as f:
            f.write(text)
        return path


class GinkgoV11ConformanceTests(_ConformanceCase):
    """The v1.1.x Ginkgo suite; see the module docstring."""

    async def _run_suite(self, workflows: list[str]) -> None:
        root, suffix = await self.registry()
        env = {
            "OCI_ROOT_URL": root,
            "OCI_NAMESPACE": NAMESPACE + suffix,
            "OCI_CROSSMOUNT_NAMESPACE": CROSSMOUNT_NAMESPACE + suffix,
            "OCI_AUTOMATIC_CROSSMOUNT": "0",
            "OCI_DELETE_MANIFEST_BEFORE_BLOBS": "1",
            "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
            "OCI_DEBUG": "0",
        }
        for w in workflows:
            env[w] = "1"
        settings = ginkgo_suite.Settings.from_env(env, seed=_seed())
        suite = ginkgo_suite.GinkgoSuite(self.client(ginkgo_suite.USER_AGENT, compression=False), root, settings)
        results = await suite.run()
        report = ginkgo_suite.format_results(results, suite.warnings, verbose=True)
        path = self.save_report(f"seed {settings.seed}\n{report}")
        log.msg(report)
        failed = [r for r in results if r.state == "failed"]
        if failed:
            self.fail(
                f"{len(failed)} of {len(results)} conformance specs failed (seed {settings.seed}; report: {path})\n\n"
                + ginkgo_suite.format_results(results, suite.warnings)
            )

    def test_0_all_workflows(self) -> defer.Deferred:
        """The official full run: the four workflows, in order, on one registry."""
        return defer.ensureDeferred(
            self._run_suite(
                [
                    ginkgo_suite.ENV_PULL,
                    ginkgo_suite.ENV_PUSH,
                    ginkgo_suite.ENV_CONTENT_DISCOVERY,
                    ginkgo_suite.ENV_CONTENT_MANAGEMENT,
                ]
            )
        )

    def test_1_pull(self) -> defer.Deferred:
        return defer.ensureDeferred(self._run_suite([ginkgo_suite.ENV_PULL]))

    def test_2_push(self) -> defer.Deferred:
        return defer.ensureDeferred(self._run_suite([ginkgo_suite.ENV_PUSH]))

    def test_3_content_discovery(self) -> defer.Deferred:
        return defer.ensureDeferred(self._run_suite([ginkgo_suite.ENV_CONTENT_DISCOVERY]))

    def test_4_content_management(self) -> defer.Deferred:
        return defer.ensureDeferred(self._run_suite([ginkgo_suite.ENV_CONTENT_MANAGEMENT]))


class MainBranchConformanceTests(_ConformanceCase):
    """The data-driven suite on distribution-spec ``main``; see the module docstring."""

    async def _run_suite(self, version: str) -> None:
        root, suffix = await self.registry()
        config = main_suite.Config.for_version(
            root, version, repo1=NAMESPACE + suffix, repo2=CROSSMOUNT_NAMESPACE + suffix
        )
        runner = main_suite.Runner(config, self.client(GO_USER_AGENT), seed=_seed())
        await runner.test_all()
        path = self.save_report(runner.report(show_skips=True, max_output=20000))
        totals = runner.totals()
        log.msg(f"OCI conformance ({version}): {totals}")
        if totals["FAIL"] or totals["Error"]:
            self.fail(
                f"OCI Conformance Result: {runner.overall()} -- {totals['FAIL']} failed, {totals['Error']} errors, "
                f"{totals['Skip']} skipped of {totals['Total']} (report: {path})\n\n"
                + runner.report(show_skips=False)
            )

    def test_spec_1_1(self) -> defer.Deferred:
        """Default configuration (spec version 1.1), the official default."""
        return defer.ensureDeferred(self._run_suite("1.1"))


