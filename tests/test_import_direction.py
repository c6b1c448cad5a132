"""zotpy's packages import only downward, and no module imports itself round a loop.

The layers, lowest first, are :data:`ORDER`; docs/architecture.md draws them. A module may import
from its own package or from a lower one. The one sanctioned reach upward: ``zotpy.config`` reads the
whole file, so it imports each package's ``settings`` module (its reader of that package's keys);
those readers import nothing of config, which the cycle check below holds them to.

Imports are read from the source (every ``import`` statement, including ones inside functions), so
nothing is executed.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

from twisted.trial.unittest import TestCase

import zotpy

#: Lowest first. "base" is zotpy/__init__.py and the small helpers beside it (jsontypes, doublestar,
#: keypath); "storage.s3" is the S3 driver package, above the storage core it implements.
ORDER = [
    "base",
    "oci",
    "transport",
    "workers",
    "storage",
    "storage.s3",
    "meta",
    "config",
    "api",
    "cluster",
    "observability",
    "auth",
    "sync",
    "lifecycle",
    "search",
    "ui",
    "tap",
    "cli",
    "__main__",
]
_BASE_MODULES = {"jsontypes", "doublestar", "keypath"}

_ROOT = os.path.dirname(os.path.abspath(zotpy.__file__))


def _modules() -> dict[str, str]:
    """Every module of the zotpy package by dotted name, to its file."""
    found = {}
    for directory, _, files in os.walk(_ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = "zotpy." + os.path.relpath(path, _ROOT)[: -len(".py")].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__").removesuffix(".")] = path
    found["zotpy"] = found.pop("zotpy", os.path.join(_ROOT, "__init__.py"))
    return found


def _imports(modules: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(importer, imported) for every import of a zotpy module by a zotpy module."""
    for module, path in modules.items():
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    target = name if name in modules else node.module
                    if target in modules and target != module:
                        yield module, target
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.name != module:
                        yield module, alias.name


def layer(module: str) -> str:
    """The layer of a module: its package under zotpy (``storage.s3`` apart), or base."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in _BASE_MODULES:
        return "base"
    if parts[1] == "storage" and len(parts) > 2 and parts[2] == "s3":
        return "storage.s3"
    return parts[1]


class ImportDirectionTests(TestCase):
    def setUp(self) -> None:
        self.modules = _modules()
        self.imports = sorted(set(_imports(self.modules)))

    def test_every_package_has_a_place(self) -> None:
        unplaced = sorted({layer(module) for module in self.modules} - set(ORDER))
        self.assertEqual(unplaced, [], "add each new package to ORDER (and docs/architecture.md) at its layer")

    def test_imports_point_downward(self) -> None:
        upward = [
            f"{importer} -> {imported}"
            for importer, imported in self.imports
            if layer(importer) in ORDER
            and layer(imported) in ORDER
            and ORDER.index(layer(imported)) > ORDER.index(layer(importer))
            and not (importer == "zotpy.config" and imported.endswith(".settings"))
        ]
        self.assertEqual(upward, [], "a module imports from a higher layer (see ORDER)")
        self.assertIn(("zotpy.tap", "zotpy.config"), self.imports)  # the reader sees real imports

    def test_no_import_cycles(self) -> None:
        graph: dict[str, set[str]] = {module: set() for module in self.modules}
        for importer, imported in self.imports:
            graph[importer].add(imported)
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        cycles: list[list[str]] = []

        def visit(module: str, path: list[str]) -> None:
            state[module] = 1
            path.append(module)
            for imported in sorted(graph[module]):
                if state.get(imported) == 1:
                    cycles.append(path[path.index(imported):] + [imported])
                elif imported not in state:
                    visit(imported, path)
            path.pop()
            state[module] = 2

        for module in sorted(graph):
            if module not in state:
                visit(module, [])
        self.assertEqual([" -> ".join(cycle) for cycle in cycles], [])
