"""Every third-party module the code imports is declared in setup.cfg.

CI installs the project into a fresh venv from setup.cfg alone, so an import that works here only because the
package happens to be installed on this machine fails there, after minutes of setup. This test fails first, and
names the module, the file that imports it and the distribution to declare.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import sys

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("zotpy", "tests", "bench", os.path.join("twisted", "plugins"))
OURS = {"zotpy", "tests", "bench"}


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_distributions() -> set[str]:
    """install_requires and every extra, by normalised distribution name."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    lines = parser.get("options", "install_requires").splitlines()
    for extra in parser.options("options.extras_require"):
        lines += parser.get("options.extras_require", extra).splitlines()
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normalise(re.match(r"[A-Za-z0-9_.\-]+", line).group(0)))
    return names


def imported_modules() -> dict[str, str]:
    """Top-level module name -> the first file importing it (absolute imports only)."""
    found: dict[str, str] = {}
    for top in SCANNED:
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            for filename in sorted(files):
                if not filename.endswith(".py"):
                    continue
                path = os.path.join(directory, filename)
                with open(path, encoding="utf-8") as stream:
                    tree = ast.parse(stream.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        names = [node.module]
                    else:
                        continue
                    for name in names:
                        found.setdefault(name.split(".")[0], os.path.relpath(path, ROOT))
    return found


class DeclaredDependencyTests(unittest.TestCase):
    def test_every_third_party_import_is_declared(self) -> None:
        declared = declared_distributions()
        providers = importlib.metadata.packages_distributions()
        undeclared = []
        for module, where in sorted(imported_modules().items()):
            if module in sys.stdlib_module_names or module in OURS or module == "__future__":
                continue
            # An extension module at the top level (siphash24) is not in the mapping: its name is the distribution's.
            distributions = {_normalise(d) for d in providers.get(module, [module])}
            if not distributions & declared:
                undeclared.append(f"{module} (imported by {where}; distribution {sorted(distributions)})")
        self.assertEqual(undeclared, [], "declare these in setup.cfg")

    def test_the_scan_sees_the_imports_it_must_check(self) -> None:
        """Guards the scan itself: a broken walk would pass the test above with nothing checked."""
        modules = imported_modules()
        for module in ("twisted", "klein", "botocore", "jwt", "ldaptor"):
            self.assertIn(module, modules)
