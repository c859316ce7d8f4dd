"""The dataplane's follow notices (SaParams.follow, csrc/worker.c notice_moved) as the
daemon reads them (Dataplane.take_moved), without root: a socketpair for TUN, UDP on
loopback. ESP for an inbound SA with ``follow`` that passes its ICV and the replay
window from a source other than its ``peer`` is reported once, with its SPI; ESP that
fails its ICV is not."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from dp_helpers import A4, B4, NET_A, NET_B, ipv4_udp, keys, params

from espfast.dataplane import Dataplane, Direction, Transform

SPI = 0x3333
T = Transform.AES128GCM16


def _wait(pred: object, timeout: float = 3.0) -> bool:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_authenticated_esp_from_a_new_source_is_reported_once() -> None:
    sides = []
    for _ in range(2):
        app, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        sides.append((Dataplane(dev.fileno(), udp, workers=1), app, udp))
        dev.close()
    (a, a_tun, a_udp), (b, _b_tun, b_udp) = sides
    try:
        a_addr, b_addr = a_udp.getsockname()[:2], b_udp.getsockname()[:2]
        enc, integ = keys(T)
        a.add_sa(params(T, Direction.OUT, enc, integ, spi=SPI, peer=b_addr))
        inbound = params(T, Direction.IN, enc, integ, spi=SPI, local=NET_B, remote=NET_A)
        # b knows the peer at another port of the loopback: a's ESP is a move.
        b.add_sa(replace(inbound, peer=("127.0.0.1", 9), follow=True))
        a.start()
        b.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            # Fails its ICV (a fresh sequence number): counted, not reported.
            junk.sendto(SPI.to_bytes(4, "big") + (77).to_bytes(4, "big") + bytes(60), b_addr)
            assert _wait(lambda: b.stats().auth_failures == 1)
        assert b.recv_ike() == [] and b.take_moved() == []
        for n in range(5):
            a_tun.send(ipv4_udp(A4, B4, b"hello", ident=n))
        assert _wait(lambda: b.stats().rx_packets == 5)
        moved: list[tuple[int, tuple[str, int]]] = []

        def notices() -> bool:
            assert b.recv_ike() == []  # notices are not IKE
            moved.extend(b.take_moved())
            return bool(moved)

        assert _wait(notices)
        assert moved == [(SPI, (a_addr[0], a_addr[1]))]
        time.sleep(0.05)
        assert b.recv_ike() == [] and b.take_moved() == []  # once per change
    finally:
        for dp, app, udp in sides:
            dp.close()
            app.close()
            udp.close()
