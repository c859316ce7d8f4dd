"""The Dataplane with its C worker threads, without root: the "TUN device" is one end of
a SOCK_DGRAM socketpair (it keeps packet boundaries like TUN does) and the two outer
endpoints are UDP sockets on the loopback interface."""

from __future__ import annotations

import ipaddress
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from dp_helpers import (
    A4,
    A6,
    B4,
    B6,
    NET_A,
    NET_B,
    ipv4_udp,
    ipv6_udp,
    keys,
    params,
)

from espfast import netns
from espfast.dataplane import Dataplane, Direction, SaParams, SelectorConflict, Stats, Transform

SPI_AB, SPI_BA = 0x1111, 0x2222


@dataclass
class Side:
    dp: Dataplane
    tun: socket.socket  # the application's end of the fake TUN device
    udp: socket.socket

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.udp.getsockname()[:2]
        if host == "::":  # a dual-stack socket: its peers reach it on IPv4 loopback
            host = "127.0.0.1"
        return str(host), int(port)

    def read_tun(self, timeout: float = 2.0) -> bytes | None:
        ready, _, _ = select.select([self.tun], [], [], timeout)
        return self.tun.recv(65536) if ready else None


def _side(workers: int = 1) -> Side:
    app, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    dp = Dataplane(dev.fileno(), udp, workers=workers)
    dev.close()  # the dataplane holds its own duplicate
    return Side(dp, app, udp)


def close_sides(*sides: Side) -> None:
    for s in sides:
        s.dp.close()
        s.tun.close()
        s.udp.close()


@pytest.fixture
def pair() -> Iterator[tuple[Side, Side]]:
    a, b = _side(), _side()
    try:
        yield a, b
    finally:
        close_sides(a, b)


def install(a: Side, b: Side, transform: Transform = Transform.AES128GCM16, **kw: object) -> None:
    enc1, integ1 = keys(transform)
    enc2, integ2 = keys(transform)
    a.dp.add_sa(params(transform, Direction.OUT, enc1, integ1, spi=SPI_AB, peer=b.addr, **kw))  # type: ignore[arg-type]
    b.dp.add_sa(
        params(transform, Direction.IN, enc1, integ1, spi=SPI_AB, local=NET_B, remote=NET_A, **kw)  # type: ignore[arg-type]
    )
    b.dp.add_sa(
        params(
            transform,
            Direction.OUT,
            enc2,
            integ2,
            spi=SPI_BA,
            peer=a.addr,
            local=NET_B,
            remote=NET_A,
            **kw,  # type: ignore[arg-type]
        )
    )
    a.dp.add_sa(params(transform, Direction.IN, enc2, integ2, spi=SPI_BA, **kw))  # type: ignore[arg-type]


def wait_stats(side: Side, pred: object, timeout: float = 3.0) -> Stats:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while True:
        st = side.dp.stats()
        if pred(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.01)


@pytest.mark.parametrize("transform", list(Transform))
def test_both_ways_ipv4_and_ipv6(pair: tuple[Side, Side], transform: Transform) -> None:
    a, b = pair
    install(a, b, transform, esn=transform is Transform.AES256GCM16)
    a.dp.start()
    b.dp.start()
    for i in range(20):
        pkt = ipv4_udp(A4, B4, os.urandom(i * 50), ident=i)
        a.tun.send(pkt)
        assert b.read_tun() == pkt
        back = ipv6_udp(B6, A6, os.urandom(i * 30))
        b.tun.send(back)
        assert a.read_tun() == back
    # Counters move after the packet left (sendmmsg / the TUN write returned), possibly
    # after the other side already has it: wait (bounded) for them to settle.
    for side, spi, d in ((a, SPI_AB, Direction.OUT), (b, SPI_AB, Direction.IN),
                         (a, SPI_BA, Direction.IN)):  # fmt: skip
        assert netns.wait_for(lambda s=side, i=spi, d=d: s.dp.sa_stats(i, d).packets == 20, 5)
    st = wait_stats(b, lambda s: s.tx_packets == 20 and s.rx_packets == 20, timeout=5)
    assert st.rx_packets == 20 and st.tx_packets == 20


def test_batch_of_many_packets(pair: tuple[Side, Side]) -> None:
    a, b = pair
    install(a, b)
    a.dp.start()
    b.dp.start()
    sent = [ipv4_udp(A4, B4, struct.pack("!I", i) * 300, ident=i) for i in range(200)]
    got: list[bytes] = []
    # A socketpair queues only a few datagrams (net.unix.max_dgram_qlen), so B's "TUN"
    # is drained by a thread while A's side is fed as fast as it takes them.
    reader = threading.Thread(
        target=lambda: got.extend(iter(lambda: b.read_tun() or b"", b"")), daemon=True
    )
    reader.start()
    # Bursts of 40 (a batch fills up), each handled before the next, so that the loopback
    # socket's receive buffer (kernel drops we cannot count) never overflows.
    for start in range(0, len(sent), 40):
        for pkt in sent[start : start + 40]:
            a.tun.send(pkt)
        done = start + len(sent[start : start + 40])
        wait_stats(b, lambda s, n=done: s.rx_packets + s.tun_errors >= n)  # type: ignore[misc]
    reader.join(timeout=10)
    lost = b.dp.stats().tun_errors
    assert len(got) + lost == len(sent)
    assert set(got) <= set(sent)
    assert len(got) >= len(sent) // 2


def test_no_sa_for_destination_and_malformed_inner(pair: tuple[Side, Side]) -> None:
    a, b = pair
    install(a, b)
    a.dp.start()
    a.tun.send(ipv4_udp(A4, "198.18.99.1", b"x"))  # no SA covers this destination
    a.tun.send(ipv4_udp("198.18.99.1", B4, b"x"))  # nor this source
    a.tun.send(b"\x45garbage")
    a.tun.send(b"")
    st = wait_stats(a, lambda s: s.no_sa == 2 and s.malformed == 2)
    assert (st.no_sa, st.malformed, st.tx_packets) == (2, 2, 0)


def test_no_sa_destinations_are_reported_rate_limited(pair: tuple[Side, Side]) -> None:
    """Inner packets that find no SA: their destination reaches Python on the IKE fd (for
    traps), never as an IKE message, and at most once per 100 ms per worker."""
    a, b = pair
    install(a, b)
    a.dp.start()
    for _ in range(50):
        a.tun.send(ipv4_udp(A4, "198.18.99.1", b"x"))
    wait_stats(a, lambda s: s.no_sa == 50)
    time.sleep(0.15)
    a.tun.send(ipv6_udp(A6, "2001:2:0:99::1", b"x"))
    wait_stats(a, lambda s: s.no_sa == 51)
    deadline = time.monotonic() + 5
    seen: list[object] = []
    while len(seen) < 2 and time.monotonic() < deadline:
        assert a.dp.recv_ike() == []  # notices are not IKE
        seen += a.dp.take_no_sa()
        time.sleep(0.01)
    assert seen == [ipaddress.ip_address("198.18.99.1"), ipaddress.ip_address("2001:2:0:99::1")]
    assert a.dp.take_no_sa() == []


def inject(b: Side, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, b.addr)


@pytest.mark.parametrize("workers", [1, 2])
def test_esp_ahead_of_its_sa_waits_for_it(workers: int) -> None:
    """A peer may send on a new SA as soon as it has answered the exchange that made it,
    before our IKE has read that answer and installed the SA: such ESP is held (half a
    second at most) and delivered, in order, once the inbound SA comes. What never finds
    its SA counts as unknown_spi when given up."""
    a, b = _side(), _side(workers)
    try:
        t = Transform.AES128GCM16
        enc, integ = keys(t)
        a.dp.add_sa(params(t, Direction.OUT, enc, integ, spi=SPI_AB, peer=b.addr))
        inbound = params(t, Direction.IN, enc, integ, spi=SPI_AB, local=NET_B, remote=NET_A)
        a.dp.start()
        b.dp.start()
        early = [ipv4_udp(A4, B4, b"early %d" % i, ident=i) for i in range(3)]
        for pkt in early:
            a.tun.send(pkt)
        wait_stats(b, lambda s: s.spi_held == 3)  # b has no SA for them yet
        assert b.read_tun(timeout=0) is None
        b.dp.add_sa(inbound)  # b's RX workers sleep: the new SA wakes them
        assert [b.read_tun() for _ in early] == early
        st = wait_stats(b, lambda s: s.spi_late == 3 and s.rx_packets == 3)
        assert (st.spi_late, st.rx_packets, st.unknown_spi, st.spi_held) == (3, 3, 0, 0)
        inject(b, struct.pack("!II", 0xDEAD, 1) + bytes(40))  # an SA that never comes
        st = wait_stats(b, lambda s: s.unknown_spi == 1)
        assert (st.unknown_spi, st.spi_late) == (1, 3) and "spi_late" not in st.drops()
    finally:
        close_sides(a, b)


def test_bad_input_on_4500(pair: tuple[Side, Side]) -> None:
    """Each kind of bad datagram moves its own counter and nothing else breaks."""
    a, b = pair
    install(a, b)
    # Capture what A sends instead of letting it reach B: point A's SA at a sink.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    a.dp.update_peer(SPI_AB, ("127.0.0.1", sink.getsockname()[1]))
    a.dp.start()
    b.dp.start()
    esp = []
    for i in range(3):
        a.tun.send(ipv4_udp(A4, B4, b"hello %d" % i, ident=i))
        esp.append(sink.recv(2048))
    sink.close()

    inject(b, b"\xff")  # NAT keepalive
    inject(b, esp[0][:20])  # truncated
    inject(b, struct.pack("!I", 0xDEAD) + esp[0][4:])  # unknown SPI
    bad = bytearray(esp[1])
    bad[-1] ^= 1
    inject(b, bytes(bad))  # bad ICV
    inject(b, esp[1])  # good
    inject(b, esp[1])  # replayed
    inject(b, b"\x01\x02\x03")  # too short to be anything
    inject(b, b"\xee" + os.urandom(1399))  # random bytes behind an unknown SPI
    # oversized: the largest UDP datagram there is, for a known SPI (received whole, then
    # refused by the ICV)
    inject(b, struct.pack("!II", SPI_AB, 99) + os.urandom(65507 - 8))
    st = wait_stats(
        b,
        lambda s: (
            s.rx_packets == 1 and s.unknown_spi == 2 and s.malformed == 2 and s.auth_failures == 2
        ),
    )
    assert st.keepalives == 1
    assert st.auth_failures == 2
    assert st.replay_drops == 1
    assert st.rx_packets == 1
    assert st.unknown_spi == 2
    assert st.malformed == 2  # truncated, 3 bytes
    assert b.read_tun() == ipv4_udp(A4, B4, b"hello 1", ident=1)
    sa = b.dp.sa_stats(SPI_AB, Direction.IN)
    assert (sa.auth_failures, sa.replay_drops, sa.malformed, sa.packets) == (2, 1, 1, 1)
    # The dataplane still works after all of that.
    inject(b, esp[2])
    assert b.read_tun() == ipv4_udp(A4, B4, b"hello 2", ident=2)


def test_policy_drop_after_decrypt(pair: tuple[Side, Side]) -> None:
    a, b = pair
    transform = Transform.AES256GCM16
    enc, integ = keys(transform)
    # A may send from all of 198.18.0.0/15, but B's inbound SA only accepts NET_A -> NET_B.
    wide = (NET_A[0].supernet(new_prefix=15),)
    a.dp.add_sa(
        params(transform, Direction.OUT, enc, integ, peer=b.addr, local=wide, remote=NET_B[:1])
    )
    b.dp.add_sa(params(transform, Direction.IN, enc, integ, local=NET_B, remote=NET_A))
    a.dp.start()
    b.dp.start()
    a.tun.send(ipv4_udp("198.18.77.1", B4, b"spoofed"))  # in A's 198.18.0.0/15, not NET_A
    a.tun.send(ipv4_udp(A4, B4, b"fine"))
    assert b.read_tun() == ipv4_udp(A4, B4, b"fine")
    st = wait_stats(b, lambda s: s.policy_drops == 1)
    assert st.policy_drops == 1
    assert b.dp.sa_stats(0x1000, Direction.IN).policy_drops == 1


def test_ike_messages_pass_through_the_socketpair(pair: tuple[Side, Side]) -> None:
    a, b = pair
    b.dp.start()
    a.dp.send_ike(b"IKE_SA_INIT request", b.addr)
    ready, _, _ = select.select([b.dp.ike_fileno()], [], [], 2)
    assert ready
    msgs = b.dp.recv_ike()
    assert msgs == [(b"IKE_SA_INIT request", a.addr)]
    assert b.dp.recv_ike() == []
    # (counted just after the hand-over, so possibly after we already read it)
    assert wait_stats(b, lambda s: s.ike_forwarded == 1).ike_forwarded == 1


def test_outbound_sequence_numbers_start_at_one(pair: tuple[Side, Side]) -> None:
    """(Exhaustion near 2^32 / 2^64 runs through the same C code in test_esp_sa.py.)"""
    a, b = pair
    install(a, b)
    a.dp.start()
    b.dp.start()
    a.tun.send(ipv4_udp(A4, B4, b"one"))
    assert b.read_tun() is not None
    assert a.dp.sa_stats(SPI_AB, Direction.OUT).seq == 1
    assert not a.dp.sa_stats(SPI_AB, Direction.OUT).exhausted


def test_traffic_notice_after_watch(pair: tuple[Side, Side]) -> None:
    """watch_traffic: one notice (collected by recv_ike, told by take_traffic) for the
    first packet that moves after it, on the sending and on the receiving side; none
    without it."""
    a, b = pair
    install(a, b)
    a.dp.start()
    b.dp.start()

    def notice(side: Side) -> bool:
        select.select([side.dp.ike_fileno()], [], [], 0.5)
        assert side.dp.recv_ike() == []  # notices are not IKE
        return side.dp.take_traffic()

    a.tun.send(ipv4_udp(A4, B4, b"unwatched"))
    assert b.read_tun() is not None
    assert not notice(a) and not notice(b)
    a.dp.watch_traffic()
    b.dp.watch_traffic()
    for i in range(3):
        a.tun.send(ipv4_udp(A4, B4, b"watched %d" % i))
        assert b.read_tun() is not None
    assert notice(a) and notice(b)
    assert not a.dp.take_traffic()  # once per notice
    a.tun.send(ipv4_udp(A4, B4, b"after"))
    assert b.read_tun() is not None
    assert not notice(a) and not notice(b)  # once per watch_traffic


def test_remove_and_re_add_while_running(pair: tuple[Side, Side]) -> None:
    a, b = pair
    install(a, b)
    a.dp.start()
    b.dp.start()
    transform = Transform.AES128GCM16
    for round_ in range(30):
        enc, integ = keys(transform)
        spi_in = 0x5000 + round_
        b.dp.add_sa(
            params(transform, Direction.IN, enc, integ, spi=spi_in, local=NET_B, remote=NET_A)
        )
        a.dp.add_sa(params(transform, Direction.OUT, enc, integ, spi=spi_in, peer=b.addr))
        if round_:
            a.dp.remove_sa(spi_in - 1, Direction.OUT)  # make-before-break
        a.tun.send(ipv4_udp(A4, B4, b"r%d" % round_))
        assert b.read_tun() == ipv4_udp(A4, B4, b"r%d" % round_)
        if round_:
            b.dp.remove_sa(spi_in - 1, Direction.IN)
    a.dp.stop()
    b.dp.stop()
    a.dp.start()
    a.dp.stop()


def test_validation_messages(pair: tuple[Side, Side]) -> None:
    a, _ = pair
    t = Transform.AES128GCM16
    enc, integ = keys(t)
    with pytest.raises(ValueError, match="enc_key for aes128gcm16 must be 20 bytes, got 16"):
        a.dp.add_sa(params(t, Direction.IN, enc[:16], b""))
    with pytest.raises(ValueError, match="integ_key for aes128-sha256 must be 32 bytes"):
        a.dp.add_sa(params(Transform.AES128_SHA256, Direction.IN, enc[:16], b"x"))
    with pytest.raises(ValueError, match="unknown transform 'aes128ccm8'"):
        a.dp.add_sa(params("aes128ccm8", Direction.IN, enc, integ))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("bad prefix '198.19.1.1/24'")):
        a.dp.add_sa(params(t, Direction.IN, enc, integ, local=("198.19.1.1/24",)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outbound SA 0x00001000 needs a peer"):
        a.dp.add_sa(params(t, Direction.OUT, enc, integ))
    with pytest.raises(ValueError, match="is IPv6 but the UDP socket is IPv4"):
        a.dp.add_sa(params(t, Direction.OUT, enc, integ, peer=("2001:2::1", 4500)))
    with pytest.raises(ValueError, match="not an IP address"):
        a.dp.add_sa(params(t, Direction.OUT, enc, integ, peer=("example.org", 4500)))
    with pytest.raises(ValueError, match="SPI 0xff out of range"):
        a.dp.add_sa(params(t, Direction.IN, enc, integ, spi=255))
    with pytest.raises(ValueError, match="replay_window 0 out of range"):
        a.dp.add_sa(params(t, Direction.IN, enc, integ, window=0))
    a.dp.add_sa(params(t, Direction.IN, enc, integ))
    with pytest.raises(ValueError, match="in SA with SPI 0x00001000 already exists"):
        a.dp.add_sa(params(t, Direction.IN, enc, integ))
    with pytest.raises(ValueError, match="no out SA with SPI 0x00001000"):
        a.dp.remove_sa(0x1000, Direction.OUT)
    with pytest.raises(ValueError, match="no out SA"):
        a.dp.update_peer(0x1000, ("127.0.0.1", 4500))
    a.dp.remove_sa(0x1000, Direction.IN)
    with pytest.raises(ValueError, match="no in SA"):
        a.dp.sa_stats(0x1000, Direction.IN)


def test_key_bytes_never_in_messages_or_reprs() -> None:
    t = Transform.AES128GCM16
    enc = b"SECRETKEYBYTES!!" + b"salt"
    p = params(t, Direction.IN, enc + b"x", b"")
    assert "SECRET" not in repr(p)
    with pytest.raises(ValueError) as e:
        from espfast.dataplane import EspSa

        EspSa(p)
    assert "SECRET" not in str(e.value)


def test_no_fd_leak_and_closed_use() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        s = _side(workers=2)
        s.dp.start()
        s.dp.close()
        s.dp.close()
        s.tun.close()
        s.udp.close()
        with pytest.raises(ValueError, match="closed"):
            s.dp.stats()
    assert len(os.listdir("/proc/self/fd")) == before


def test_constructor_validation() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ValueError, match=re.escape("workers must be 1..16")):
            Dataplane(0, udp, workers=0)
        with pytest.raises(ValueError, match="UDP socket"):
            Dataplane(0, tcp)
        with pytest.raises(ValueError, match="file descriptor"):
            Dataplane(-1, udp)
    finally:
        udp.close()
        tcp.close()


def test_gso_send_and_gro_receive(pair: tuple[Side, Side]) -> None:
    """Ten equal-sized packets waiting when A starts leave in one UDP GSO message, and
    arrive at B as one GRO buffer that B splits again."""
    a, b = pair
    install(a, b)
    b.dp.start()
    sent = [ipv4_udp(A4, B4, bytes([i]) * 1000, ident=i) for i in range(10)]
    for pkt in sent:  # the socketpair holds 10 (net.unix.max_dgram_qlen)
        a.tun.send(pkt)
    a.dp.start()
    got = [b.read_tun() for _ in sent]
    assert got == sent
    assert wait_stats(a, lambda s: s.tx_packets == 10).tx_gso == 1
    assert b.dp.stats().rx_gro == 1


def test_two_workers_per_direction() -> None:
    """Two TX and two RX threads share the fds; each has its own crypto contexts."""
    a, b = _side(workers=2), _side(workers=2)
    try:
        install(a, b, Transform.CHACHA20POLY1305)
        a.dp.start()
        b.dp.start()
        for burst in range(10):
            sent = [ipv4_udp(A4, B4, bytes([burst, i]) * 200, ident=i) for i in range(8)]
            for pkt in sent:
                a.tun.send(pkt)
            got = [b.read_tun() for _ in sent]
            assert sorted(g or b"" for g in got) == sorted(sent)  # order may differ
        assert b.dp.sa_stats(SPI_AB, Direction.IN).packets == 80
        assert a.dp.sa_stats(SPI_AB, Direction.OUT).seq == 80
    finally:
        close_sides(a, b)


def test_dual_stack_socket_with_ipv4_peers() -> None:
    """On an AF_INET6 socket, IPv4 peers are used as v4-mapped addresses and IKE sources
    are reported as plain IPv4."""
    app, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::", 0))
    b = _side()
    try:
        with Dataplane(dev.fileno(), udp6) as dp:
            a = Side(dp, app, udp6)
            install(a, b)
            a.dp.start()
            b.dp.start()
            a.tun.send(ipv4_udp(A4, B4, b"mapped"))
            assert b.read_tun() == ipv4_udp(A4, B4, b"mapped")
            b.tun.send(ipv4_udp(B4, A4, b"back"))
            assert a.read_tun() == ipv4_udp(B4, A4, b"back")
            b.dp.send_ike(b"hello", ("127.0.0.1", udp6.getsockname()[1]))
            select.select([a.dp.ike_fileno()], [], [], 2)
            assert a.dp.recv_ike() == [(b"hello", b.addr)]
    finally:
        for s in (app, dev, udp6, b.tun, b.udp):
            s.close()
        b.dp.close()


def test_open_tun_rejects_bad_names() -> None:
    from espfast.dataplane import open_tun

    with pytest.raises(ValueError, match="bad interface name"):
        open_tun("a-name-much-too-long")
    with pytest.raises(ValueError, match="bad interface name"):
        open_tun("a/b")


def test_ipv6_outer_addresses() -> None:
    """ESP over UDP over IPv6 (loopback ::1) both ways."""

    def side6() -> Side:
        app, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.bind(("::1", 0))
        dp = Dataplane(dev.fileno(), udp)
        dev.close()
        return Side(dp, app, udp)

    a, b = side6(), side6()
    try:
        install(a, b, Transform.AES256_SHA256)
        a.dp.start()
        b.dp.start()
        a.tun.send(ipv6_udp(A6, B6, b"over v6"))
        assert b.read_tun() == ipv6_udp(A6, B6, b"over v6")
        b.tun.send(ipv4_udp(B4, A4, b"back"))
        assert a.read_tun() == ipv4_udp(B4, A4, b"back")
        a.dp.send_ike(b"ike6", b.addr)
        select.select([b.dp.ike_fileno()], [], [], 2)
        assert b.dp.recv_ike() == [(b"ike6", a.addr)]
    finally:
        close_sides(a, b)


NET_C = (ipaddress.ip_network("198.19.3.0/24"),)


def test_an_outbound_sa_never_takes_over_another_owners_route(pair: tuple[Side, Side]) -> None:
    """Owner 1 routes NET_B; owner 2's outbound SA for the same selectors is refused
    (SelectorConflict, counted), traffic stays on owner 1's SA; owner 1's own newer SA
    (a rekey) takes the route over as before."""
    a, b = pair
    t = Transform.AES128GCM16
    enc, integ = keys(t)

    def out(spi: int, owner: int) -> SaParams:
        return replace(params(t, Direction.OUT, enc, integ, spi=spi, peer=b.addr), owner=owner)

    a.dp.add_sa(out(0x3000, 1))
    with pytest.raises(SelectorConflict, match=re.escape("SA holds (part of) 198.19.2.0/24")):
        a.dp.add_sa(out(0x3001, 2))
    with pytest.raises(ValueError, match="no out SA"):
        a.dp.sa_stats(0x3001, Direction.OUT)
    assert a.dp.stats().sa_conflicts == 1
    assert a.dp.stats().drops() == {"sa_conflicts": 1}
    a.dp.add_sa(out(0x3002, 1))  # a rekey of owner 1's SA
    a.dp.start()
    a.tun.send(ipv4_udp(A4, B4, b"to b"))
    assert netns.wait_for(lambda: a.dp.sa_stats(0x3002, Direction.OUT).packets == 1, 5)
    assert a.dp.sa_stats(0x3000, Direction.OUT).packets == 0
    with pytest.raises(ValueError, match="owner must be an int"):
        a.dp.add_sa(out(0x3003, -1))
    # Within a group (a connection) another owner may not route a part of it either.
    half = (ipaddress.ip_network("198.19.2.0/25"),)
    a.dp.add_sa(replace(out(0x3004, 3), remote_ts=NET_C, group=9))
    with pytest.raises(SelectorConflict):
        a.dp.add_sa(
            replace(out(0x3005, 4), remote_ts=(ipaddress.ip_network("198.19.3.0/25"),), group=9)
        )
    a.dp.add_sa(replace(out(0x3006, 4), remote_ts=half, group=10))  # another connection may
    assert a.dp.stats().sa_conflicts == 2
