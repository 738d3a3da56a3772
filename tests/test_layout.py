"""The package's layout shows its data flow: subpackages import only those before them, and modules stay
short enough to read (docs/design.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "weightzoo"
# Along the data flow; each may import itself and anything before it, never after.
ORDER = [
    "errors",
    "seeding",
    "activations",
    "data",
    "engine",
    "config",
    "plan",
    "judge",
    "signatures",
    "text",
    "output",
    "research",
    "run",
    "cli",
    "__main__",
]
MAX_LINES = 420


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    """The top-level part of the package a file belongs to: its subpackage or its module name."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """Top-level parts of weightzoo imported anywhere in the file (function-local imports included)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = node.module.split(".")
            if names[0] != "weightzoo":
                continue
            if len(names) > 1:
                parts.add(names[1])
            else:  # from weightzoo import x
                parts.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "weightzoo" and len(names) > 1:
                    parts.add(names[1])
    return parts


def test_every_part_has_a_place_in_the_order():
    parts = {_part(p) for p in _modules()} - {"__init__"}
    assert parts <= set(ORDER), f"not in ORDER: {sorted(parts - set(ORDER))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    own = _part(path)
    if own == "__init__":
        return
    later = {p for p in _imported_parts(path) if p in ORDER and ORDER.index(p) > ORDER.index(own)}
    assert not later, f"{path.relative_to(PACKAGE)} imports {sorted(later)}, which come after {own!r}"


def test_no_module_is_too_long_to_read():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_an_import_of_each_part_finds_no_cycle():
    """Importing each module on its own, in a fresh interpreter, works: no module needs another to have
    been imported first (which is how import cycles show)."""
    import subprocess
    import sys

    names = [
        "weightzoo." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in _modules()
        if p.name != "__main__.py"
    ]
    script = (
        "import importlib, sys\n"
        "for n in sys.argv[1:]:\n"
        "    for m in [k for k in sys.modules if k.startswith('weightzoo')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(n)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
