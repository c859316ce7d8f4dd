"""Build glue: setuptools reads the metadata from pyproject.toml; this file adds the cffi
extension (espfast._dataplane), which pyproject.toml alone cannot declare, and lists
the packages: every directory with an __init__.py under espfast/ and control/, control/
installed as espfast.control (pyproject.toml's package-dir), so that a new subpackage
(control/tasks/, espfast/tools/ ...) is installed without anyone having to list it.
tests/install/ checks what `pip install .` and a wheel contain."""

from pathlib import Path

from setuptools import setup

TOP = Path(__file__).parent
ROOTS = {"espfast": "espfast", "control": "espfast.control"}


def packages() -> list[str]:
    found = []
    for directory, name in ROOTS.items():
        for init in sorted((TOP / directory).rglob("__init__.py")):
            parts = init.parent.relative_to(TOP / directory).parts
            found.append(".".join((name, *parts)))
    return found


setup(packages=packages(), cffi_modules=["csrc/build_ffi.py:ffibuilder"])
