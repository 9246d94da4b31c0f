"""Compiled kernels: small pure-Python modules that setup.py also builds with Cython, and the choice
between the two forms.

A kernel is a plain Python module (``<name>.py``, anywhere in the package) whose C types come from
a ``<name>.pxd`` beside it; ``KERNELS`` names them by their dotted path in the package
(``protocol.response_scan``). setup.py compiles each in place (``pip install -e .``, and
scripts/bootstrap.sh again when the sources change), defining in C the SHA-256 of the sources it
compiled. ``load(name)`` returns the compiled module when it is there and was built from the
sources beside it, the Python file otherwise, and remembers why (``describe()``: the startup log
line and ``myrouter --version``). A compiled module built from other sources than the ones beside
it (a developer edited the .py) is never used: a RuntimeWarning says so and the Python file runs.
``MYROUTER_PURE_PYTHON=1`` forces the Python files.

Only the standard library here: setup.py loads this file by its path to name and hash the sources.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

PURE_ENV = "MYROUTER_PURE_PYTHON"
_ROOT = Path(__file__).resolve().parent.parent  # the myrouter package
_TOP = _ROOT.name
# a kernel: a .py with its .pxd beside it, named by its dotted path under the package
KERNELS = tuple(sorted(".".join(p.relative_to(_ROOT).with_suffix("").parts) for p in _ROOT.rglob("*.pxd")))
_forms: dict[str, str] = {}  # name -> "compiled" or "Python (why)"
_pure_modules: dict[str, ModuleType] = {}


def source_file(name: str) -> Path:
    """The Python file of kernel ``name`` (``protocol.response_scan``: myrouter/protocol/response_scan.py)."""
    return _ROOT.joinpath(*name.split(".")).with_suffix(".py")


def module_name(name: str) -> str:
    return f"{_TOP}.{name}"


def sources(name: str) -> list[Path]:
    """The files a kernel is compiled from."""
    path = source_file(name)
    return [path, path.with_suffix(".pxd")]


def source_sha256(name: str) -> str:
    digest = hashlib.sha256()
    for path in sources(name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def pure_forced() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load(name: str) -> ModuleType:
    """The kernel ``name``: compiled if it can be, else its Python file (see the module's docstring)."""
    if pure_forced():
        return _use_python(name, f"{PURE_ENV} is set")
    fullname = module_name(name)
    try:
        module = importlib.import_module(fullname)
    except ImportError as exc:  # an extension built for another Python or platform
        warnings.warn(f"{fullname}: the compiled module does not load ({exc}); using the Python file",
                      RuntimeWarning, stacklevel=2)
        sys.modules.pop(fullname, None)
        return _use_python(name, f"the compiled module does not load: {exc}")
    if not _is_compiled(module):
        _forms[name] = "Python (not compiled: run scripts/bootstrap.sh)"
        return module
    try:
        expected = source_sha256(name)
    except OSError as exc:  # an install without the .pxd: which sources it was built from cannot be told
        expected = f"unreadable sources: {exc}"
    if module.source_sha256().decode() != expected:
        warnings.warn(f"{fullname}: {Path(module.__file__).name} was built from other sources than "
                      f"{source_file(name).stem}.py/.pxd (rebuild: scripts/bootstrap.sh); using the Python file",
                      RuntimeWarning, stacklevel=2)
        return _use_python(name, "the compiled module is stale: run scripts/bootstrap.sh")
    _forms[name] = "compiled"
    return module


def load_python(name: str) -> ModuleType:
    """The Python form of kernel ``name``, whatever ``load`` chose (tests compare the two forms)."""
    module = sys.modules.get(module_name(name))
    if module is not None and not _is_compiled(module):
        return module
    if name not in _pure_modules:
        _pure_modules[name] = _exec_python(name, f"{module_name(name)}_py")
    return _pure_modules[name]


def describe() -> str:
    """Which form of each kernel loaded so far runs, e.g. ``protocol.response_scan compiled``."""
    return ", ".join(f"{name} {form}" for name, form in sorted(_forms.items())) or "none loaded"


def _is_compiled(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def _use_python(name: str, why: str) -> ModuleType:
    _forms[name] = f"Python ({why})"
    module = _exec_python(name, module_name(name))
    _pure_modules[name] = module
    return module


def _exec_python(name: str, fullname: str) -> ModuleType:
    """Execute ``<name>.py`` as module ``fullname`` (registered in sys.modules), even when a compiled
    module of the same name sits beside it (which a plain import would prefer)."""
    path = source_file(name)
    loader = importlib.machinery.SourceFileLoader(fullname, str(path))
    spec = importlib.util.spec_from_file_location(fullname, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullname] = module
    try:
        loader.exec_module(module)
    except BaseException:
        sys.modules.pop(fullname, None)
        raise
    return module
