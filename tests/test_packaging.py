"""The proxy's package stands alone: nothing in myrouter/ imports the test bed or pymysql.

The test bed (myrouter_testbed: MariaDB and etcd servers, ``make run``) and pymysql are for the
tests, ``make run`` and the benchmarks (the ``testbed`` extra); the proxy, monitor included,
speaks the MySQL protocol with its own code. Every import statement counts, function-level ones
included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "myrouter"
# the test bed, its old places inside the proxy's package, and the test bed's MySQL driver
NOT_FOR_THE_PROXY = ("myrouter_testbed", "myrouter.testbed", "myrouter.testbed_etcd", "pymysql")


def imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every module or name imported anywhere in ``source`` (the text of ``module``), relative
    imports made absolute: ``from ..x import y`` in ``a.b.c`` is ``a.x.y``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            found += [f"{prefix}.{alias.name}" for alias in node.names]
    return found


def not_for_the_proxy(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in NOT_FOR_THE_PROXY)


def test_the_checker_sees_relative_and_function_level_imports() -> None:
    source = ("from . import testbed\n"
              "def later():\n"
              "    from ..testbed_etcd import start_etcd\n"
              "    import pymysql.cursors\n"
              "    from myrouter_testbed.mariadb import start_cluster\n"
              "    from .config import load_config\n")
    names = imports(source, "myrouter.admin.engine")
    assert names == ["myrouter.admin.testbed", "myrouter.testbed_etcd.start_etcd", "pymysql.cursors",
                     "myrouter_testbed.mariadb.start_cluster", "myrouter.admin.config.load_config"]
    assert [not_for_the_proxy(name) for name in names] == [False, True, True, True, False]
    assert imports("from . import testbed\n", "myrouter", is_package=True) == ["myrouter.testbed"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_the_proxy_never_imports_the_test_bed_or_pymysql(path: Path) -> None:
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    is_package = path.name == "__init__.py"
    if is_package:
        module = module.removesuffix(".__init__")
    offending = [name for name in imports(path.read_text(), module, is_package=is_package) if not_for_the_proxy(name)]
    assert not offending, f"{path.relative_to(REPO)} imports {offending}"
