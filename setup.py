"""Build glue: setuptools reads the metadata from pyproject.toml; this file only adds the
cffi extension (espfast._dataplane), which pyproject.toml alone cannot declare."""

from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
