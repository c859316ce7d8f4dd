"""A hostile IKE peer for the security tests: espfast.control in the test process, over real
UDP sockets in namespace a (tests/interop/ike_driver.py), against a real ``espfast up`` in
namespace b. It starts from an ``espfast up`` config, as a well-behaved peer would, and
the test bends what it sends (its identity, its certificate, its selectors)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from espfast.cli import main
from espfast.config import load_up
from espfast.control.config import IkeConfig
from espfast.control.events import IkeSaDown, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.rng import SystemRng
from espfast.netns import TwoHosts
from espfast.static import Running, start_in, write_private
from espfast.up import pair_configs
from tests.interop.ike_driver import IkeDriver

PSK = "the security tests' pre-shared key, long enough"


def configs(tmp_path: Path, *, any_id: bool = False) -> tuple[Path, Path]:
    """The PSK pair of ``espfast up`` configs (a initiates, b answers); ``any_id``: b
    takes any identity the peer proves (no remote_id)."""
    a_text, b_text = pair_configs(PSK)
    if any_id:
        b_text = b_text.replace('remote_id = "198.18.0.1"\n', "")
    return write_private(tmp_path / "a.toml", a_text), write_private(tmp_path / "b.toml", b_text)


def peer_config(path: Path) -> IkeConfig:
    """The IKE config of the first connection in an ``espfast up`` config, quick to give
    up (one retransmission a second, three of them)."""
    ike = load_up(path).connections[0].ike
    return dataclasses.replace(ike, retransmit_timeout=1.0, retransmit_tries=3)


def start_b(hosts: TwoHosts, path: Path, *extra: str) -> Running:
    return start_in(hosts.b, path, *extra, command="up")


def attack(hosts: TwoHosts, config: IkeConfig, timeout: float = 15.0) -> IkeSaUp | IkeSaDown:
    """Initiate ``config`` from a to b and serve until the IKE SA is up or down (bounded);
    the event that says which."""
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        now = time.monotonic()
        sa = IkeSa.initiate(config, local=(hosts.addr_a, 500), remote=(hosts.addr_b, 500),
                            rng=SystemRng(), now=now)  # fmt: skip
        driver.sas.append(sa)
        driver.run(lambda: bool(driver.event(IkeSaUp) or driver.event(IkeSaDown)), timeout)
        ups, downs = driver.event(IkeSaUp), driver.event(IkeSaDown)
        return ups[0] if ups else downs[0]


def pki(tmp_path: Path) -> Path:
    """ca/ with b.example.test (the gateway) and a.example.test (the peer)."""
    ca = tmp_path / "ca"
    assert main(["pki", "ca", "--out", str(ca)]) == 0
    for name in ("a", "b"):
        assert main(["pki", "issue", "--ca", str(ca), "--id", f"{name}.example.test",
                     "--name", name, "--out", str(ca)]) == 0  # fmt: skip
    return ca


def pubkey_configs(tmp_path: Path, ca: Path, b_extra: str = "") -> tuple[Path, Path]:
    """The pair of configs with certificates: a is a.example.test, b b.example.test;
    ``b_extra``: more lines for b's connection (e.g. crls)."""
    a_path, b_path = configs(tmp_path)
    paths = []
    for path, me, peer in ((a_path, "a", "b"), (b_path, "b", "a")):
        text = path.read_text()
        for old, new in (("198.18.0.1", "a.example.test"), ("198.18.0.2", "b.example.test")):
            text = text.replace(f'_id = "{old}"', f'_id = "{new}"')
        psk_line = next(line for line in text.splitlines() if line.startswith("psk = "))
        text = text.replace(psk_line, (
            f'auth = "pubkey"\ncert = "{ca}/{me}.crt"\nkey = "{ca}/{me}.key"\n'
            f'cacerts = ["{ca}/ca.crt"]\n' + (b_extra if me == "b" else "")
        ))  # fmt: skip
        assert f'remote_id = "{peer}.example.test"' in text
        paths.append(write_private(path, text))
    return paths[0], paths[1]
