"""The package's layering: each stage imports only from the stages below it.

Every module under ``src/tomoclass`` is parsed with :mod:`ast`; every ``import`` counts,
including those inside functions (an import moved into a function still couples the two
packages, it only hides the cycle until run time). ``docs/architecture.md`` draws the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tomoclass

SRC = Path(tomoclass.__file__).resolve().parent

#: The layers, lowest first. A unit (a sub-package or a top-level module of ``tomoclass``;
#: ``tomoclass`` itself for ``from tomoclass import __version__``) may import units of lower
#: layers only: not its own layer's siblings, not any layer above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "runtime"),
    ("tomoclass",),  # the package's __init__: __version__ and the error classes
    ("io", "metrics"),
    ("provenance", "splits"),
    ("simulate",),
    ("data",),
    ("models",),
    ("train",),
    ("infer",),
    ("locate", "evaluate", "cam"),
    ("workflows", "view"),
    ("cli",),
    ("__main__",),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

#: Imports against the layering that exist today, as (file under src/tomoclass, imported unit).
#: Each is for a later session to remove; when one is gone, delete its line here.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _unit_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem.replace("__init__", "tomoclass")


def imported_units(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(unit, line) of every tomoclass import in ``source``, at any depth (functions too).

    ``module`` is the dotted name of the module (for relative imports).
    """
    found = []
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[: len(base) - (node.level - 1)]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from tomoclass import train`` imports the sub-package ``train``
            names = [f"{mod}.{a.name}" for a in node.names] if mod == "tomoclass" else [mod]
        for name in names:
            head = name.split(".")
            if head[0] != "tomoclass":
                continue
            sub = head[1] if len(head) > 1 else ""
            is_unit = (SRC / sub).is_dir() or (SRC / f"{sub}.py").is_file()
            found.append((sub if sub and is_unit else "tomoclass", node.lineno))
    return found


def _all_imports() -> list[tuple[str, str, str, int]]:
    """(importing unit, file, imported unit, line) over the package."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        module = ".".join(("tomoclass",) + rel.with_suffix("").parts)
        is_package = path.name == "__init__.py"
        if is_package:
            module = module.rsplit(".", 1)[0]
        src_unit = _unit_of(path)
        for unit, line in imported_units(path.read_text(), module, is_package):
            if unit != src_unit:
                out.append((src_unit, rel.as_posix(), unit, line))
    return out


IMPORTS = _all_imports()


def test_every_unit_has_a_layer():
    units = {_unit_of(p) for p in SRC.rglob("*.py")} | {u for _, _, u, _ in IMPORTS}
    assert units - set(RANK) == set(), "place new packages/modules in LAYERS (and the docs)"


def test_no_two_packages_import_each_other():
    graph: dict[str, set[str]] = {}
    for src, _, dst, _ in IMPORTS:
        graph.setdefault(src, set()).add(dst)
    cycles = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert cycles == []


def test_each_stage_imports_only_downward():
    upward = {(f, dst) for src, f, dst, _ in IMPORTS if RANK.get(dst, -1) >= RANK.get(src, -1)}
    where = sorted(f"{f}:{line} imports {dst}" for src, f, dst, line in IMPORTS
                   if (f, dst) in upward - KNOWN_EXCEPTIONS)
    assert where == []
    stale = KNOWN_EXCEPTIONS - upward
    assert stale == set(), f"fixed, so remove from KNOWN_EXCEPTIONS: {sorted(stale)}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from tomoclass.train import fit\n", ["train"]),
        ("def f():\n    import tomoclass.cam.maps\n", ["cam"]),
        ("from tomoclass import __version__, train\n", ["tomoclass", "train"]),
        ("from ..data import open_dataset\n", ["data"]),
        ("import numpy\n", []),
    ],
)
def test_imports_are_found_at_any_depth(source, expected):
    assert [u for u, _ in imported_units(source, "tomoclass.evaluate.report")] == expected


#: Private names imported across modules today, as (file, module, name): none left.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def _private_imports(root: Path, prefix: str) -> set[tuple[str, str, str]]:
    found = set()
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    prefix):
                found |= {(path.relative_to(root).as_posix(), node.module, a.name)
                          for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")}
    return found


def test_no_private_name_is_imported_across_modules():
    found = _private_imports(SRC, "tomoclass")
    assert found - KNOWN_PRIVATE_IMPORTS == set()
    assert KNOWN_PRIVATE_IMPORTS - found == set(), "fixed, so remove from KNOWN_PRIVATE_IMPORTS"
