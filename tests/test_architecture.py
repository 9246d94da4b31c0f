"""The architecture holds: the packages' layers, no import cycle, no import hidden in a function.

The contracts are import-linter's, in pyproject.toml (``[tool.importlinter]``): a ``layers``
contract for the direction of dependencies (protocol <- net <- backend/routing <- runtime <-
frontend <- admin/monitor/cluster <- app), an ``acyclic_siblings`` contract (no cycle between
packages, nor between the modules of one package) and ``forbidden`` contracts (the wire protocol
imports no I/O). This file runs ``lint-imports`` so that ``make test`` (and CI) enforces them.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import myrouter

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "myrouter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # the test extra's, in the venv


def test_import_contracts_are_kept():
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} missing: install the test extra (bash scripts/bootstrap.sh)"
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"lint-imports: contracts broken\n{done.stdout}\n{done.stderr}"


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def layered_modules() -> set[str]:
    """Every module named in the layers contract (``a : b`` and ``a | b`` are siblings)."""
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    names = set()
    for layer in layers["layers"]:
        names.update(part.strip() for part in layer.replace("|", ":").split(":"))
    return names


def test_every_package_has_a_layer():
    """A new package or top-level module must be placed in the layers, or it escapes the contract."""
    top = {f"myrouter.{m.name}" for m in pkgutil.iter_modules(myrouter.__path__)}
    assert top - layered_modules() == set(), "add these to the layers contract in pyproject.toml"
    assert layered_modules() - top == set(), "the layers contract names modules that do not exist"


def imports_inside_functions(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import statement inside a function body, relative ones as dots."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found += [(sub.lineno, alias.name) for alias in sub.names]
                elif isinstance(sub, ast.ImportFrom):
                    found.append((sub.lineno, "." * sub.level + (sub.module or "")))
    return found


def uncommented_lazy_imports(source: str) -> list[int]:
    """Lines of the first import inside each function when neither it nor the line above says why
    (a ``#`` comment)."""
    lines = source.splitlines()
    bare = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            imports = [sub.lineno for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))]
            if imports:
                first = min(imports)
                if "#" not in lines[first - 1] and not lines[first - 2].strip().startswith("#"):
                    bare.append(first)
    return sorted(set(bare))


def test_imports_inside_functions_finds_relative_and_absolute():
    source = "import os\ndef f():\n    from ..app import Proxy\n    import myrouter.config\n"
    assert imports_inside_functions(source) == [(3, "..app"), (4, "myrouter.config")]


def test_uncommented_lazy_imports_finds_the_bare_ones():
    source = ("def f():\n    import zlib  # lazy: why\n\ndef g():\n    # why\n    import zlib\n\n"
              "def h():\n    x = 1\n    import zlib\n")
    assert uncommented_lazy_imports(source) == [10]


def test_no_project_import_inside_a_function():
    """An import of the project's own modules inside a function hides a cycle or a layer
    violation from the reader (and from a linter that only looks at the top). Third-party
    imports inside a function (an optional or heavy dependency, loaded when first needed)
    are fine."""
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in imports_inside_functions(path.read_text()):
            if module.startswith(".") or module == "myrouter" or module.startswith("myrouter."):
                hidden.append(f"{path.relative_to(REPO)}:{line}: {module}")
    assert hidden == []


def test_every_import_inside_a_function_says_why():
    """A third-party import inside a function (an optional or heavy dependency, loaded when first
    needed) carries a comment saying so."""
    bare = [f"{path.relative_to(REPO)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
            for line in uncommented_lazy_imports(path.read_text())]
    assert bare == []


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the project's modules ``path`` imports anywhere, ``if TYPE_CHECKING:``
    blocks included (relative imports resolved against ``path``'s package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "myrouter")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.split(".")[0] == "myrouter":
                found.add(node.module)
    return found


def test_imported_modules_resolves_relative_and_type_checking_imports():
    path = PACKAGE / "frontend" / "relay.py"
    names = imported_modules(path)
    assert "myrouter.runtime.services" in names and "myrouter.frontend.common" in names
    assert "myrouter.frontend.session" not in names  # relay.py is a part of the session, not its user


@pytest.mark.parametrize("package", ["frontend", "admin", "monitor"])
def test_sessions_admin_and_monitor_do_not_name_the_proxy(package: str):
    """The sessions get a ``runtime.services.SessionServices``, the admin a ``ProxyControl``
    (``admin/control.py``, a protocol ``app.Proxy`` satisfies), the monitor the components: none of
    them names a module above it, not even for annotations (``if TYPE_CHECKING:``)."""
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    above = [name for layer in layers["layers"][:layers["layers"].index(f"myrouter.{package}")]
             for name in (part.strip() for part in layer.replace("|", ":").split(":"))]
    named = []
    for path in sorted((PACKAGE / package).glob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == top or module.startswith(top + ".") for top in above):
                named.append(f"{path.relative_to(REPO)}: {module}")
    assert named == []
