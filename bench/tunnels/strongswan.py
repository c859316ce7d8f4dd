"""strongSwan's charon with its userspace ESP (kernel-libipsec), charon <-> charon.

The baseline the issue measures espfast against: IKEv2 with a PSK, ESP AES-GCM-128 in
UDP/4500, each charon in its own namespace through the interop harness
(tests/interop/strongswan.py). libipsec's TUN device has MTU 1400 already.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B, Endpoints
from bench.tunnels.peerutil import (
    INNER_NET_A,
    INNER_NET_B,
    UP_TIMEOUT,
    require,
    wait_ping,
)
from espfast.netns import TwoHosts
from tests.interop.strongswan import CHARON, Charon, Psk, psk_pair


@dataclass
class StrongswanLibipsec:
    name: str = "strongswan-libipsec"
    proposals: str = "aes128gcm16-prfsha256-x25519"
    esp_proposals: str = "aes128gcm16"

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        require(CHARON, "swanctl")
        psk = Psk(ids=("a.bench.test", "b.bench.test"), secret=secrets.token_bytes(32))
        conf_a, conf_b = psk_pair(
            (hosts.addr_a, hosts.addr_b),
            psk,
            (INNER_NET_A, INNER_NET_B),
            proposals=self.proposals,
            esp_proposals=self.esp_proposals,
        )
        # charon's routes via ipsec0 take their source from an address inside local_ts.
        hosts.a.run("ip", "addr", "add", f"{INNER_A}/32", "dev", "lo")
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        try:
            with (
                tempfile.TemporaryDirectory(prefix="ef-peer-strongswan-") as tmp,
                Charon.start(hosts.a, Path(tmp, "a"), conf_a) as a,
                Charon.start(hosts.b, Path(tmp, "b"), conf_b) as b,
            ):
                a.initiate("net", timeout=UP_TIMEOUT)
                b.wait_child("net", timeout=UP_TIMEOUT)
                wait_ping(hosts.a, INNER_A, INNER_B, [a.proc, b.proc], [a.log_path, b.log_path])
                yield Endpoints(INNER_A, INNER_B, [a.pid, b.pid])
        finally:
            hosts.a.run("ip", "addr", "del", f"{INNER_A}/32", "dev", "lo", check=False)
            hosts.b.run("ip", "addr", "del", f"{INNER_B}/32", "dev", "lo", check=False)
