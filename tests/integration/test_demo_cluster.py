"""``etc/cluster/run-local.sh``, the one-command cluster: it starts SeaweedFS, the three replicas of
etc/cluster/ and HAProxy; an image pushed through the URL it prints lands on the owner it prints; on
SIGTERM it stops every process it started and removes its temporary directory.

Free ports are passed in its ``ZOTPY_DEMO_*`` variables so the test never collides with a cluster
someone runs on etc/cluster's fixed ports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.cluster import loopback_addresses, shared_free_port
from tests.integration.daemon import free_port, require_binary
from tests.integration.ocilayout import build_image
from tests.seaweed import _free_ports, weed_binary
from zotpy.cluster.ring import Ring
from zotpy.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "etc", "cluster", "run-local.sh")
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
REPOSITORY = "library/app"


class RunLocalTests(SynchronousTestCase):
    def start(self) -> None:
        """Run the script on free ports; collect its output on a thread (it never stops printing
        on its own, and the test must not block on a pipe past a deadline)."""
        for binary, package in (("haproxy", "haproxy"), ("curl", "curl")):
            require_binary(binary, package)
        weed_binary()
        self.port = free_port()
        self.replica_port = shared_free_port(loopback_addresses(3))
        s3, master, volume, filer = _free_ports(4)
        env = dict(
            os.environ, PYTHON=sys.executable, ZOTPY_DEMO_PORT=str(self.port),
            ZOTPY_DEMO_REPLICA_PORT=str(self.replica_port), ZOTPY_DEMO_S3_PORT=str(s3),
            ZOTPY_DEMO_SEAWEED_PORTS=f"{master} {volume} {filer}", ZOTPY_DEMO_REPOSITORY=REPOSITORY,
        )
        self.process = subprocess.Popen(
            [SCRIPT], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self.addCleanup(self.kill_leftovers)
        self.lines: list[str] = []
        reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout or ()), daemon=True)
        reader.start()

    def kill_leftovers(self) -> None:
        """If the test failed midway: the script's process group (it and what it started), by id."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None:
                time.sleep(0.5)  # the reader's last lines
                self.fail(f"run-local.sh exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.2)
        self.fail(f"no line matching {pattern!r} after {timeout} s:\n{self.output()}")

    def skopeo(self, *args: str) -> str:
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        done = subprocess.run(
            [require_binary("skopeo"), "--insecure-policy", *args], capture_output=True, text=True, timeout=120,
            env=dict(os.environ, HOME=home, REGISTRY_AUTH_FILE=os.path.join(home, "auth.json")),
        )
        self.assertEqual(done.returncode, 0, f"skopeo {args}: {done.stderr}\n{self.output()}")
        return done.stdout

    def test_push_through_the_printed_url_then_stop_everything(self) -> None:
        self.start()
        ready = self.wait_for_line(r"zotpy cluster ready at (http://127\.0\.0\.1:\d+) ", READY_TIMEOUT)
        url = ready.group(1)
        self.assertEqual(url, f"http://127.0.0.1:{self.port}")
        owner = self.wait_for_line(rf"^{re.escape(REPOSITORY)} is owned by (\S+) \(member (\d) of 3\)$", 5)
        config = load_config(os.path.join(REPO, "etc", "cluster", "replica1.json"))
        assert config.cluster is not None
        members = tuple(f"{member.rsplit(':', 1)[0]}:{self.replica_port}" for member in config.cluster.members)
        index = Ring(members, config.cluster.hash_key).owner_index(REPOSITORY)
        self.assertEqual((owner.group(1), int(owner.group(2))), (members[index], index + 1))  # counted from 1
        started = {
            m.group(1): (int(m.group(2)), m.group(3))
            for m in (re.search(r"^run-local: started (\S+) \(pid (\d+), log (\S+)\)$", line) for line in self.lines)
            if m
        }
        self.assertEqual(sorted(started), ["haproxy", "replica1", "replica2", "replica3", "seaweedfs"])

        image = build_image(os.path.abspath(self.mktemp()), tag="v1", name="demo")
        host = url.removeprefix("http://")
        self.skopeo("copy", "--dest-tls-verify=false", image.reference(), f"docker://{host}/{REPOSITORY}:v1")
        raw = self.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host}/{REPOSITORY}:v1")
        self.assertEqual(raw.encode(), image.manifest_bytes)
        # The owner stored it: its own access log has the manifest PUT, answered 201, not forwarded.
        with open(started[f"replica{index + 1}"][1]) as stream:
            records = [json.loads(line) for line in stream if line.startswith("{")]
        manifest_path = f"/v2/{REPOSITORY}/manifests/v1"
        access = [r for r in records if r.get("message") == "HTTP API"]
        puts = [r for r in access if (r.get("method"), r.get("path")) == ("PUT", manifest_path)]
        self.assertEqual([(r["statusCode"], r["forwarded"]) for r in puts], [(201, False)])

        workdir = os.path.dirname(started["seaweedfs"][1])
        self.assertTrue(os.path.isdir(workdir))
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"run-local.sh still running {STOP_TIMEOUT} s after SIGTERM:\n{self.output()}")
        self.assertEqual(code, 128 + signal.SIGTERM, self.output())
        self.wait_for_line(rf"stopped seaweedfs replica1 replica2 replica3 haproxy; removed {re.escape(workdir)}$", 5)
        self.assertFalse(os.path.exists(workdir))
        for pid, _ in started.values():
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)
