"""Shared pytest configuration.

Tests that need root (namespaces, TUN) or strongSwan are the point of this suite: in CI
(CI=true) they always run and fail loudly if they cannot; only a developer's non-root run
may skip them, with the reason.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if any(f"/tests/{d}/" in path for d in ("netns", "interop", "security")):
            item.add_marker(pytest.mark.root)
        if "/tests/interop/" in path:
            item.add_marker(pytest.mark.interop)
    if os.geteuid() == 0 or IN_CI:
        # In CI nothing is skipped: a root test that cannot run fails.
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces and TUN (runs in CI)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
