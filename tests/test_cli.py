"""The ``zotpy`` command: ``--version``, ``--help`` with examples, and ``verify`` (every check the daemon
applies before it listens, each problem at its key path, exit status 0/1)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.certs import CertificateAuthority, PemPair
from zotpy import __version__
from zotpy.cli.main import SUBCOMMANDS, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Run:
    """One in-process ``zotpy`` run: exit status and what it printed."""

    def __init__(self, argv: list[str]) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                self.code = main(argv)
            except SystemExit as exit:  # argparse: --help, --version, usage errors
                self.code = exit.code if isinstance(exit.code, int) else 1
        self.out, self.err = out.getvalue(), err.getvalue()


class VersionAndHelpTests(SynchronousTestCase):
    def test_version(self) -> None:
        run = Run(["--version"])
        self.assertEqual((run.code, run.out), (0, f"zotpy {__version__}\n"))

    def test_version_of_python_m_zotpy(self) -> None:
        """The module entry point (what the console script also calls) in a real process."""
        done = subprocess.run(
            [sys.executable, "-m", "zotpy", "--version"], capture_output=True, text=True, cwd=REPO, timeout=60,
            env=dict(os.environ, PYTHONPATH=REPO),
        )
        self.assertEqual((done.returncode, done.stdout), (0, f"zotpy {__version__}\n"), done.stderr)

    def test_version_is_the_packages(self) -> None:
        """setup.cfg reads the version from zotpy.__version__ rather than writing it a second time."""
        with open(os.path.join(REPO, "setup.cfg")) as stream:
            self.assertIn("version = attr: zotpy.__version__", stream.read())

    def test_every_subcommand_has_help_with_an_example(self) -> None:
        top = Run(["--help"])
        self.assertEqual(top.code, 0)
        for command in SUBCOMMANDS:
            self.assertIn(command.name, top.out)
            run = Run([command.name, "--help"])
            self.assertEqual(run.code, 0, command.name)
            self.assertIn("examples:", run.out)
            for example in command.examples:
                self.assertIn(f"zotpy {example}", run.out)
                self.assertTrue(example.startswith(command.name + " "), example)

    def test_no_subcommand_is_a_usage_error(self) -> None:
        run = Run([])
        self.assertEqual(run.code, 2)
        self.assertIn("COMMAND", run.err)


class VerifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def config(self, **sections: Any) -> str:
        """A config file: local storage in the temp dir, plus ``sections`` (replacing whole sections)."""
        document: dict[str, Any] = {
            "distSpecVersion": "1.1.0",
            "storage": {"rootDirectory": os.path.join(self.directory, "data"), "dedupe": False, "gc": False},
            "http": {"address": "127.0.0.1", "port": "5000"},
        }
        document.update(sections)
        path = os.path.join(self.directory, "config.json")
        with open(path, "w") as stream:
            json.dump(document, stream)
        return path

    def file(self, name: str, content: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as stream:
            stream.write(content)
        return path

    def valid(self, path: str) -> list[str]:
        """verify's summary lines for a config it must accept."""
        run = Run(["verify", "-c", path])
        self.assertEqual((run.code, run.err), (0, ""))
        lines = run.out.splitlines()
        self.assertEqual(lines[0], f"{path}: valid; twistd zotpy would run:")
        return [line.strip() for line in lines[1:]]

    def problems(self, path: str) -> dict[str, str]:
        """verify's problems (key path -> message) for a config it must refuse; nothing on stdout."""
        run = Run(["verify", "-c", path])
        self.assertEqual((run.code, run.out), (1, ""), run.err)
        lines = run.err.splitlines()
        self.assertEqual(lines[0], f"{path}: invalid configuration:")
        found = {}
        for line in lines[1:]:
            key, _, message = line.strip().partition(": ")
            found[key] = message
        return found

    # -- good configurations ------------------------------------------------------------------------

    def test_local_single_node(self) -> None:
        self.assertEqual(
            self.valid(self.config()),
            [
                "listening on http://127.0.0.1:5000",
                f"storage at {os.path.join(self.directory, 'data')}",
                "log level info to stdout",
            ],
        )
        self.assertFalse(os.path.exists(os.path.join(self.directory, "data")), "verify touched the storage")

    def test_port_in_use_is_fine_because_verify_never_listens(self) -> None:
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        lines = self.valid(self.config(http={"address": "127.0.0.1", "port": str(busy.getsockname()[1])}))
        self.assertEqual(lines[0], f"listening on http://127.0.0.1:{busy.getsockname()[1]}")

    def test_cluster_member_sync_metrics_tls_and_warnings(self) -> None:
        authority = CertificateAuthority(os.path.join(self.directory, "pki"))
        server = authority.issue("server", ["127.0.0.2"])
        path = self.config(
            storage={"rootDirectory": "/srv/zotpy", "dedupe": True, "gc": False, "commit": True},
            http={
                "address": "127.0.0.2", "port": "9000",
                "tls": {"cert": server.cert_path, "key": server.key_path, "cacert": authority.pair.cert_path},
            },
            log={"level": "debug", "output": os.path.join(self.directory, "zotpy.log")},
            cluster={
                "members": ["127.0.0.1:9000", "127.0.0.2:9000", "127.0.0.3:9000"],
                "hashKey": "loremipsumdolors",
                "tls": {"cacert": authority.pair.cert_path},
            },
            extensions={
                "sync": {
                    "enable": True,
                    "registries": [
                        {"urls": ["https://registry-1.docker.io"], "onDemand": True},
                        {"urls": ["https://ghcr.io"], "content": [{"prefix": "team/**"}], "pollInterval": "6h"},
                    ],
                },
                "metrics": {"enable": True},
            },
        )
        run = Run(["verify", "-c", path])
        self.assertEqual(run.code, 0, run.err)
        self.assertEqual(
            [line.strip() for line in run.out.splitlines()[1:]],
            [
                "listening on https://127.0.0.2:9000, client certificates required",
                "storage at /srv/zotpy",
                "cluster member 2 of 3: 127.0.0.2:9000 (matched by http.address 127.0.0.2:9000), peers over https",
                "sync: 2 upstreams (1 on demand, 1 periodic)",
                "metrics at /metrics",
                f"log level debug to {os.path.join(self.directory, 'zotpy.log')}",
                "warning: storage.commit: syncing each write to disk is not configurable in zotpy; ignored",
            ],
        )

    def test_example_configs_in_etc(self) -> None:
        """The shipped examples verify (each cluster replica as the member its address makes it)."""
        self.assertIn("storage at /var/lib/zotpy", self.valid(os.path.join(REPO, "etc", "config.json")))
        for index in range(3):
            lines = self.valid(os.path.join(REPO, "etc", "cluster", f"replica{index + 1}.json"))
            self.assertIn(f"cluster member {index + 1} of 3: 127.0.0.{index + 1}:9000", lines[2])
            self.assertTrue(lines[3].startswith("reads by digest answered from the shared storage"), lines)

    # -- each kind of bad configuration: exit 1, the key path ---------------------------------------

    def refusal(self, path: str) -> str:
        """What verify prints for a file it cannot read at all (no key path to name)."""
        run = Run(["verify", "-c", path])
        self.assertEqual((run.code, run.out), (1, ""), run.err)
        first, *rest = run.err.splitlines()
        self.assertEqual((first, len(rest)), (f"{path}: invalid configuration:", 1), run.err)
        return rest[0].strip()

    def test_missing_file(self) -> None:
        missing = os.path.join(self.directory, "nope.json")
        self.assertEqual(self.refusal(missing), f"cannot read config file {missing!r}: No such file or directory")

    def test_not_json(self) -> None:
        path = self.file("config.json", b'{"storage": {"rootDirectory": "/x"},}')
        self.assertIn("is not valid JSON: line 1, column 37", self.refusal(path))

    def test_bad_values_and_refused_keys(self) -> None:
        path = self.config(http={"address": "127.0.0.1", "port": "eighty", "ratelimit": {"rate": 0},
                                 "auth": {"htpasswd": {"path": "/x"}, "openid": {"providers": {"oidc": {}}}}})
        problems = self.problems(path)
        self.assertEqual(
            sorted(problems), ["http.auth.htpasswd.path", "http.auth.openid", "http.port", "http.ratelimit.rate"]
        )

    def test_referenced_file_missing(self) -> None:
        missing = os.path.join(self.directory, "server.crt")
        path = self.config(http={"address": "127.0.0.1", "port": "5000", "tls": {"cert": missing, "key": missing}})
        problems = self.problems(path)
        self.assertEqual(sorted(problems), ["http.tls.cert", "http.tls.key"])
        self.assertIn(missing, problems["http.tls.cert"])

    def tls_config(self, cert: str, key: str, cacert: str | None = None) -> str:
        tls = {"cert": cert, "key": key, **({"cacert": cacert} if cacert else {})}
        return self.config(http={"address": "127.0.0.1", "port": "5000", "tls": tls})

    def only_problem(self, path: str, key_path: str) -> str:
        """The message of the one problem verify reports, which must be at ``key_path``."""
        problems = self.problems(path)
        self.assertEqual(list(problems), [key_path])
        return problems[key_path]

    def server(self, stem: str = "server") -> PemPair:
        return CertificateAuthority(os.path.join(self.directory, stem)).issue(stem, ["127.0.0.1"])

    def test_certificate_file_without_a_certificate(self) -> None:
        server = self.server()
        message = self.only_problem(self.tls_config(server.key_path, server.key_path), "http.tls.cert")
        self.assertIn("no PEM certificate", message)

    def test_certificate_that_does_not_parse(self) -> None:
        garbled = self.file("bad.crt", b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        message = self.only_problem(self.tls_config(garbled, self.server().key_path), "http.tls.cert")
        self.assertIn("not a certificate", message)

    def test_key_that_does_not_parse(self) -> None:
        server = self.server()
        message = self.only_problem(self.tls_config(server.cert_path, server.cert_path), "http.tls.key")
        self.assertIn("no PEM private key", message)

    def test_key_of_another_certificate(self) -> None:
        server, other = self.server(), self.server("other")
        message = self.only_problem(self.tls_config(server.cert_path, other.key_path), "http.tls.key")
        self.assertIn("does not match the certificate in http.tls.cert", message)

    def test_client_ca_without_a_certificate(self) -> None:
        server = self.server()
        config = self.tls_config(server.cert_path, server.key_path, self.file("ca.crt", b""))
        self.assertIn("no PEM certificate", self.only_problem(config, "http.tls.cacert"))

    def cluster_config(self, members: list[str], tls: dict[str, str] | None = None) -> str:
        cluster: dict[str, Any] = {"members": members, "hashKey": "loremipsumdolors"}
        if tls is not None:
            cluster["tls"] = tls
        return self.config(http={"address": "127.0.0.2", "port": "9000"}, cluster=cluster)

    def test_peer_ca_without_a_certificate(self) -> None:
        empty = self.file("peers.crt", b"not pem at all\n")
        config = self.cluster_config(["127.0.0.1:9000", "127.0.0.2:9000"], {"cacert": empty})
        self.assertIn("no PEM certificate", self.only_problem(config, "cluster.tls.cacert"))

    def test_host_is_none_of_the_members(self) -> None:
        message = self.only_problem(self.cluster_config(["127.0.0.1:9000", "127.0.0.3:9000"]), "cluster.members")
        self.assertIn("this process is none of cluster.members", message)

    def test_member_name_that_does_not_resolve(self) -> None:
        """A member listed before this one must resolve (``.invalid`` never does, RFC 2606)."""
        config = self.cluster_config(["no-such-host.invalid:9000", "127.0.0.2:9000"])
        message = self.only_problem(config, "cluster.members")
        self.assertIn("cannot resolve cluster member 'no-such-host.invalid:9000'", message)

    def test_log_output_not_writable(self) -> None:
        output = os.path.join(self.directory, "no-such-dir", "zotpy.log")
        message = self.only_problem(self.config(log={"level": "info", "output": output}), "log.output")
        self.assertIn("cannot open", message)

    def test_every_problem_at_once(self) -> None:
        """Problems of different kinds are reported together, so one run shows everything to fix."""
        empty = self.file("ca.crt", b"")
        path = self.config(
            http={"address": "127.0.0.2", "port": "9000"},
            log={"level": "info", "output": os.path.join(self.directory, "no-such-dir", "zotpy.log")},
            cluster={
                "members": ["127.0.0.1:9000", "127.0.0.3:9000"], "hashKey": "loremipsumdolors", "tls": {"cacert": empty},
            },
        )
        self.assertEqual(sorted(self.problems(path)), ["cluster.members", "cluster.tls.cacert", "log.output"])


class ClusterStatusTests(SynchronousTestCase):
    """``zotpy cluster status``: the parts that need no running cluster (tests/integration/test_resize.py
    runs it against a real one during a resize)."""

    def test_a_config_without_a_cluster_has_no_members_to_ask(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "config.json")
        with open(path, "w") as stream:
            json.dump({"distSpecVersion": "1.1.0", "storage": {"rootDirectory": directory}}, stream)
        run = Run(["cluster", "status", "-c", path])
        self.assertEqual(run.code, 1)
        self.assertIn("no cluster section", run.err)
        self.assertEqual(Run(["cluster", "status", "-c", path + ".missing"]).code, 2)

    def test_the_report_names_members_on_another_view_and_unreachable_ones(self) -> None:
        from zotpy.cli.cluster import MemberState, report
        from zotpy.cluster.membership import View

        key = b"loremipsumdolors"
        expected = View(("a:1", "b:1", "c:1"), key)
        older = View(("a:1", "b:1"), key)
        text = report(expected, [
            MemberState("a:1", expected.fingerprint, expected.members, settled=True, ready=True),
            MemberState("b:1", older.fingerprint, older.members, settled=True, ready=True),
            MemberState("c:1", problem="unreachable: connection refused"),
        ])
        lines = text.splitlines()
        self.assertEqual(lines[0], f"config: 3 members, view {expected.fingerprint}")
        self.assertRegex(lines[2], rf"^a:1 +{expected.fingerprint} +yes +yes$")
        self.assertRegex(lines[3], rf"^b:1 +{older.fingerprint} +yes +yes +other view: members \['a:1', 'b:1'\]$")
        self.assertRegex(lines[4], r"^c:1 +- +- +- +unreachable: connection refused$")
        self.assertEqual(lines[5], f"1 of 3 members hold view {expected.fingerprint}")
