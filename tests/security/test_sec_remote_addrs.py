"""A connection's ``remote`` (strongSwan's remote_addrs) limits who may use it as
responder: a peer that knows the PSK and the identities but sends IKE_SA_INIT from
another address is answered NO_PROPOSAL_CHOSEN, no IKE SA is made for it (no DH, no
half-open state), and a flood of such requests is answered at most
STATELESS_PER_SECOND times a second; the same peer from the allowed address gets in."""

from __future__ import annotations

import math
import time
from pathlib import Path

from espfast.control.events import IkeSaDown, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.responder import STATELESS_PER_SECOND
from espfast.control.rng import SystemRng
from espfast.netns import TwoHosts
from espfast.static import write_private
from tests.interop.ike_driver import IkeDriver, udp_socket_in
from tests.netns.updaemon import status
from tests.security.secpeer import configs, peer_config, start_b

OTHER = "198.18.0.3"  # a second address on a, not in b's remote


def attack_from(hosts: TwoHosts, addr: str, path: Path) -> IkeSaUp | IkeSaDown:
    config = peer_config(path)
    with IkeDriver(hosts.a, addr) as driver:
        sa = IkeSa.initiate(config, local=(addr, 500), remote=(hosts.addr_b, 500),
                            rng=SystemRng(), now=time.monotonic())  # fmt: skip
        driver.sas.append(sa)
        driver.run(lambda: bool(driver.event(IkeSaUp) or driver.event(IkeSaDown)), 15.0)
        ups, downs = driver.event(IkeSaUp), driver.event(IkeSaDown)
        return ups[0] if ups else downs[0]


def test_peer_from_an_address_outside_remote_is_refused(tmp_path: Path) -> None:
    a_path, b_path = configs(tmp_path)
    text = b_path.read_text()
    assert 'remote = "%any"' in text
    # b answers only 198.18.0.1 and the range .10-.20 (OTHER is in neither); prefixes
    # and ranges only: b initiates to nobody.
    b_path = write_private(b_path, text.replace(
        'remote = "%any"', 'remote = ["198.18.0.1/32", "198.18.0.10-198.18.0.20"]'))  # fmt: skip
    with TwoHosts.create("sec-raddr") as hosts:
        hosts.a.run("ip", "addr", "add", f"{OTHER}/24", "dev", "veth-a")
        b = start_b(hosts, b_path)
        refused = attack_from(hosts, OTHER, a_path)
        half_open = status(hosts.b)
        allowed = attack_from(hosts, hosts.addr_a, a_path)
        rc, _out, err = b.stop()
    assert isinstance(refused, IkeSaDown), refused
    assert "NO_PROPOSAL_CHOSEN" in refused.reason, refused
    assert half_open == [], half_open  # nothing kept for the refused peer
    assert isinstance(allowed, IkeSaUp), allowed
    assert rc == 0, err
    assert "Traceback" not in err, err


FLOOD = 300


def test_flood_from_an_address_outside_remote_is_answered_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    a_path, b_path = configs(tmp_path)
    b_path = write_private(b_path, b_path.read_text().replace(
        'remote = "%any"', 'remote = "198.18.0.1/32"'))  # fmt: skip
    config = peer_config(a_path)
    with TwoHosts.create("sec-raddr") as hosts:
        hosts.a.run("ip", "addr", "add", f"{OTHER}/24", "dev", "veth-a")
        b = start_b(hosts, b_path)
        sa = IkeSa.initiate(config, local=(OTHER, 500), remote=(hosts.addr_b, 500),
                            rng=SystemRng(), now=time.monotonic())  # fmt: skip
        ((init, _),) = sa.datagrams_to_send(time.monotonic())
        answers = 0
        with udp_socket_in(hosts.a, (OTHER, 500)) as sock:
            start = time.monotonic()
            for _ in range(FLOOD):
                sock.sendto(init, (hosts.addr_b, 500))
            sent = time.monotonic()
            sock.settimeout(1.0)
            try:
                while True:
                    sock.recv(65535)
                    answers += 1
            except TimeoutError:
                pass
            elapsed = time.monotonic() - start
        sas = status(hosts.b)
        rc, _out, err = b.stop()
    assert sent > start
    # Every answer is a stateless NO_PROPOSAL_CHOSEN, at most STATELESS_PER_SECOND in each
    # second the flood and its answers took (counted in whole seconds of the daemon's clock).
    assert 1 <= answers <= STATELESS_PER_SECOND * (math.ceil(elapsed) + 1), (answers, elapsed)
    assert sas == [], sas
    assert rc == 0, err
    assert "Traceback" not in err, err
