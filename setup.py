"""Builds the compiled kernels (myrouter/protocol/kernels.py) with Cython; pyproject.toml holds the
rest of the package's metadata. Each kernel is an optional extension: without a C compiler the
install goes on and the Python files run (``myrouter --version`` says which form runs)."""

import importlib.util
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent


def _kernels_module():
    """myrouter/protocol/kernels.py by its path: importing the package would need its dependencies."""
    spec = importlib.util.spec_from_file_location("_myrouter_kernels", HERE / "myrouter" / "protocol" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions():
    kernels = _kernels_module()
    return [
        Extension(
            kernels.module_name(name),
            [str(kernels.source_file(name).relative_to(HERE))],
            # the loader compares it with the sources beside the module (a stale build is not used)
            define_macros=[("MYROUTER_SOURCE_SHA256", f'"{kernels.source_sha256(name)}"')],
            optional=True,
        )
        for name in kernels.KERNELS
    ]


setup(
    ext_modules=cythonize(
        _extensions(),
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
        force=True,  # the C always from the sources hashed above (never an older generated file)
    ),
)
