"""A real OpenLDAP server for tests: Debian's ``slapd`` started on a free loopback port with a
generated ``slapd.conf`` (mdb database, memberof overlay) and LDIF, in a temporary directory, run in
the foreground by the test (no system service); ``stop()`` ends it. Fails, rather than skips, when
``slapd`` or ``ldapadd`` is missing (``apt-get install slapd ldap-utils``; ``.ci/run`` installs them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from tests.certs import PemPair

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
SEARCH_DN = f"cn=searcher,ou=Users,{SUFFIX}"
SEARCH_PASSWORD = "searcher-secret"

_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise AssertionError(f"{name} is not installed: apt-get install slapd ldap-utils")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Slapd:
    def __init__(
        self, directory: str, users: dict[str, str], groups: dict[str, list[str]], tls: PemPair | None = None
    ) -> None:
        """``users``: uid -> password; ``groups``: group cn -> member uids (memberOf is computed).
        ``tls``: the server's certificate and key; it then also listens for LDAPS on
        :attr:`tls_port` (StartTLS works on :attr:`port` either way)."""
        self.directory = os.path.abspath(directory)
        self.users = users
        self.groups = groups
        self.tls = tls
        self.port = _free_port()
        self.tls_port = _free_port() if tls is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    def group_dn(self, name: str) -> str:
        return f"cn={name},ou=Groups,{SUFFIX}"

    def start(self) -> None:
        slapd, ldapadd = _binary("slapd"), _binary("ldapadd")
        os.makedirs(os.path.join(self.directory, "db"), exist_ok=True)
        config = os.path.join(self.directory, "slapd.conf")
        with open(config, "w") as stream:
            stream.write("\n".join([
                *(f"include /etc/ldap/schema/{schema}.schema" for schema in _SCHEMAS),
                "modulepath /usr/lib/ldap", "moduleload back_mdb", "moduleload memberof",
                f"pidfile {self.directory}/slapd.pid",
                *([f"TLSCertificateFile {self.tls.cert_path}", f"TLSCertificateKeyFile {self.tls.key_path}"]
                  if self.tls is not None else []),
                "database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOT_DN}"', f"rootpw {ROOT_PASSWORD}",
                f"directory {self.directory}/db", "maxsize 10485760",
                "overlay memberof",
                "",
            ]))
        url = f"ldap://127.0.0.1:{self.port}/"
        log = open(os.path.join(self.directory, "slapd.log"), "wb")
        urls = url + (f" ldaps://127.0.0.1:{self.tls_port}/" if self.tls_port is not None else "")
        self.process = subprocess.Popen([slapd, "-f", config, "-h", urls, "-d", "0"], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"slapd did not start: {self.log()}")
                time.sleep(0.05)
        subprocess.run(
            [ldapadd, "-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=self.ldif().encode(), check=True, capture_output=True, timeout=20,
        )

    def ldif(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n",
            f"dn: ou=Users,{SUFFIX}\nobjectClass: organizationalUnit\nou: Users\n",
            f"dn: ou=Groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: Groups\n",
            f"dn: {SEARCH_DN}\nobjectClass: person\ncn: searcher\nsn: searcher\nuserPassword: {SEARCH_PASSWORD}\n",
        ]
        for uid, password in self.users.items():
            entries.append(
                f"dn: uid={uid},ou=Users,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                f"userPassword: {password}\n"
            )
        for name, members in self.groups.items():
            lines = "".join(f"member: uid={uid},ou=Users,{SUFFIX}\n" for uid in members)
            entries.append(f"dn: {self.group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n{lines}")
        return "\n".join(entries)

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "slapd.log"), "rb") as stream:
                return stream.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
