"""Fixtures for interop tests: two namespaces and charon instances in them.

``charons.start(ns, conf, ...)`` starts charon (see tests/interop/strongswan.py) with
its files under the test's tmp_path; every instance is stopped by PID when the test
ends, and a failing test's report carries each instance's full charon log.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from espfast.netns import Namespace, TwoHosts
from tests.interop.strongswan import Charon

PURPOSE = "peer"
INNER_A = "198.19.1.1"
INNER_B = "198.19.2.1"
INNER6_A = "2001:2:0:1::1"
INNER6_B = "2001:2:0:2::1"

_CHARONS = pytest.StashKey[list[Charon]]()


class CharonFactory:
    """Starts charon instances for one test; :meth:`close` stops them all."""

    def __init__(self, tmp_path: Path, started: list[Charon]) -> None:
        self._tmp_path = tmp_path
        self.started = started

    def start(self, ns: Namespace, conf: str, **options: Any) -> Charon:
        """:meth:`Charon.start` in ``ns`` with ``conf`` (swanctl.conf text), loaded."""
        charon = Charon.start(ns, self._tmp_path / f"charon-{ns.name}", conf, **options)
        self.started.append(charon)
        return charon

    def close(self) -> None:
        for charon in reversed(self.started):
            charon.stop()


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    """a (198.18.0.1) and b (198.18.0.2) on a veth; inner addresses on lo: 198.19.1.1 and
    2001:2:0:1::1 on a, 198.19.2.1 and 2001:2:0:2::1 on b."""
    with TwoHosts.create(PURPOSE) as two:
        for ns, v4, v6 in ((two.a, INNER_A, INNER6_A), (two.b, INNER_B, INNER6_B)):
            ns.run("ip", "addr", "add", f"{v4}/32", "dev", "lo")
            ns.run("ip", "-6", "addr", "add", f"{v6}/128", "dev", "lo", "nodad")
        yield two


@pytest.fixture
def charons(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CharonFactory]:
    started: list[Charon] = []
    request.node.stash[_CHARONS] = started
    factory = CharonFactory(tmp_path, started)
    try:
        yield factory
    finally:
        factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for charon in item.stash.get(_CHARONS, []):
            report.sections.append((f"charon log ({charon.ns.name})", charon.log(None)))
    return report
