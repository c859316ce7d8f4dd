"""No tunnel at all: the veth pair itself, the ceiling every tunnel is measured against."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bench.tunnels import Endpoints
from espfast.netns import TwoHosts


class Veth:
    name = "veth"

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        yield Endpoints(inner_a=hosts.addr_a, inner_b=hosts.addr_b, pids=[])
