"""The bare-metal deployment files under etc/: the systemd unit (checked by ``systemd-analyze``, Debian
package ``systemd``), its sysusers entry and the logrotate snippet, against the daemon they run."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(REPO, "etc", "systemd", "zotpy.service")
SYSUSERS = os.path.join(REPO, "etc", "systemd", "zotpy.sysusers")
LOGROTATE = os.path.join(REPO, "etc", "logrotate.d", "zotpy")
#: Where the unit expects the venv zotpy is installed into.
INSTALLED_BIN = "/opt/zotpy/bin/"
#: The most ``systemd-analyze security`` may score the unit (0 is fully locked down, 10 is nothing).
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/bin"]))
    if found is None:
        raise AssertionError("systemd-analyze not found: apt-get install systemd (.ci/run installs it when missing)")
    return found


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


class UnitTests(SynchronousTestCase):
    def checkable_copy(self) -> str:
        """The unit with its /opt/zotpy/bin/ commands pointed at stand-ins in a temp dir:
        ``systemd-analyze verify`` refuses a unit whose commands do not exist on this machine."""
        directory = os.path.abspath(self.mktemp())
        bin_dir = os.path.join(directory, "bin")
        os.makedirs(bin_dir)
        for name in ("twistd", "zotpy"):
            path = os.path.join(bin_dir, name)
            with open(path, "w") as stream:
                stream.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, 0o755)
        with open(UNIT) as stream:
            text = stream.read()
        self.assertIn(INSTALLED_BIN, text)
        copy = os.path.join(directory, "zotpy.service")
        with open(copy, "w") as stream:
            stream.write(text.replace(INSTALLED_BIN, bin_dir + "/"))
        return copy

    def test_systemd_analyze_verify(self) -> None:
        """No error and no warning (an unknown or misspelt key is only a warning, so stderr must be empty)."""
        done = subprocess.run(
            [systemd_analyze(), "verify", "--man=no", self.checkable_copy()], capture_output=True, text=True, timeout=60
        )
        self.assertEqual((done.returncode, done.stderr), (0, ""))

    def test_systemd_analyze_security(self) -> None:
        done = subprocess.run(
            [systemd_analyze(), "security", "--offline=yes", "--no-pager", self.checkable_copy()],
            capture_output=True, text=True, timeout=60,
        )
        found = re.search(r"Overall exposure level for zotpy\.service: (\d+\.\d+)", done.stdout)
        self.assertIsNotNone(found, done.stdout + done.stderr)
        assert found is not None
        self.assertLessEqual(float(found.group(1)), MAX_EXPOSURE, done.stdout)

    def test_what_the_service_runs(self) -> None:
        service = service_section()
        self.assertEqual((service["User"], service["Group"]), ("zotpy", "zotpy"))
        self.assertEqual(service["Restart"], "on-failure")
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertGreaterEqual(int(service["LimitNOFILE"]), 65536)
        config = "-c /etc/zotpy/config.json"
        self.assertEqual(service["ExecStartPre"], f"{INSTALLED_BIN}zotpy verify {config}")
        self.assertTrue(service["ExecStart"].startswith(f"{INSTALLED_BIN}twistd --nodaemon"), service["ExecStart"])
        self.assertTrue(service["ExecStart"].endswith(f" zotpy {config}"), service["ExecStart"])

    def test_only_the_data_and_log_directories_are_writable(self) -> None:
        """ProtectSystem=strict leaves writable only the directories systemd creates for the user: the
        state directory is storage.rootDirectory of etc/config.json, the logs one holds log.output."""
        service = service_section()
        self.assertEqual(service["ProtectSystem"], "strict")
        self.assertEqual((service["StateDirectory"], service["LogsDirectory"]), ("zotpy", "zotpy"))
        self.assertNotIn("ReadWritePaths", service)
        with open(os.path.join(REPO, "etc", "config.json")) as stream:
            self.assertEqual(json.load(stream)["storage"]["rootDirectory"], "/var/lib/zotpy")
        self.assertEqual(service["WorkingDirectory"], "/var/lib/zotpy")

    def test_dedicated_user(self) -> None:
        with open(SYSUSERS) as stream:
            entries = [line.split() for line in stream if line.strip() and not line.startswith("#")]
        self.assertEqual([(e[0], e[1], e[-1]) for e in entries], [("u", "zotpy", "/var/lib/zotpy")])


class LogrotateTests(SynchronousTestCase):
    def test_rotates_the_log_directory_and_signals_the_main_process(self) -> None:
        """The files in the unit's LogsDirectory; SIGHUP to zotpy's main process (twistd), which
        reopens log.output (tests/test_observability.py checks the reopening)."""
        with open(LOGROTATE) as stream:
            text = stream.read()
        self.assertRegex(text, r"(?m)^/var/log/zotpy/\*\.log \{$")
        postrotate = re.search(r"postrotate\n(.*?)\n\s*endscript", text, re.S)
        self.assertIsNotNone(postrotate)
        assert postrotate is not None
        self.assertEqual(
            postrotate.group(1).split(),
            "systemctl kill --kill-whom=main --signal=SIGHUP zotpy.service >/dev/null 2>&1 || true".split(),
        )
        self.assertIn("su zotpy zotpy", text)
