"""Compiled kernels: small pure-Python modules that setup.py also builds with Cython, and the choice
between the two forms.

A kernel is a plain Python module (``<name>.py``) whose C types come from a ``<name>.pxd`` beside
it (``KERNELS``); setup.py compiles it in place (``pip install -e .``, and
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
_HERE = Path(__file__).resolve().parent
KERNELS = tuple(sorted(p.stem for p in _HERE.glob("*.pxd")))  # a kernel: a .py with its .pxd beside it
_PACKAGE = __name__.rpartition(".")[0] or "myrouter.protocol"
_forms: dict[str, str] = {}  # name -> "compiled" or "Python (why)"
_pure_modules: dict[str, ModuleType] = {}


def sources(name: str) -> list[Path]:
    """The files a kernel is compiled from."""
    return [_HERE / f"{name}.py", _HERE / f"{name}.pxd"]


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
    fullname = f"{_PACKAGE}.{name}"
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
                      f"{name}.py/.pxd (rebuild: scripts/bootstrap.sh); using the Python file",
                      RuntimeWarning, stacklevel=2)
        return _use_python(name, "the compiled module is stale: run scripts/bootstrap.sh")
    _forms[name] = "compiled"
    return module


def load_python(name: str) -> ModuleType:
    """The Python form of kernel ``name``, whatever ``load`` chose (tests compare the two forms)."""
    module = sys.modules.get(f"{_PACKAGE}.{name}")
    if module is not None and not _is_compiled(module):
        return module
    if name not in _pure_modules:
        _pure_modules[name] = _exec_python(name, f"{_PACKAGE}.{name}_py")
    return _pure_modules[name]


def describe() -> str:
    """Which form of each kernel loaded so far runs, e.g. ``response_scan compiled``."""
    return ", ".join(f"{name} {form}" for name, form in sorted(_forms.items())) or "none loaded"


def _is_compiled(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def _use_python(name: str, why: str) -> ModuleType:
    _forms[name] = f"Python ({why})"
    module = _exec_python(name, f"{_PACKAGE}.{name}")
    _pure_modules[name] = module
    return module


def _exec_python(name: str, fullname: str) -> ModuleType:
    """Execute ``<name>.py`` as module ``fullname`` (registered in sys.modules), even when a compiled
    module of the same name sits beside it (which a plain import would prefer)."""
    path = _HERE / f"{name}.py"
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
