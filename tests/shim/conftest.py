"""Fixtures of the shim tests; they live in shim_fixtures.py (a unique module name, so test
modules can import its helpers without clashing with other features' conftest modules)."""

from shim_fixtures import orthanc_pair, shim  # noqa: F401
