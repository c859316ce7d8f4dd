"""An initiator and a responder wired together in memory (no sockets, no clock)."""

from __future__ import annotations

from dataclasses import replace

from espfast.control.config import AuthConfig, ChildConfig, IkeConfig
from espfast.control.constants import IdType
from espfast.control.events import Event, TrafficSelector
from espfast.control.ike_sa import IkeSa
from espfast.control.manager import IkeManager
from espfast.control.proposals import parse_esp, parse_ike
from espfast.control.responder import Responder
from espfast.control.rng import DeterministicRng

A = ("198.18.0.1", 500)
B = ("198.18.0.2", 500)
NET_A = TrafficSelector.from_network("198.19.1.0/24")
NET_B = TrafficSelector.from_network("198.19.2.0/24")


def configs(ike: str = "aes256gcm16-prfsha384-x25519", esp: str = "aes128gcm16",
            psk_i: bytes = b"s3cret-psk", psk_r: bytes = b"s3cret-psk",
            ike_r: str | None = None, esp_r: str | None = None,
            **extra: object) -> tuple[IkeConfig, IkeConfig]:  # fmt: skip
    child_i = ChildConfig("net", (NET_A,), (NET_B,), parse_esp(esp))
    child_r = ChildConfig("net", (NET_B,), (NET_A,), parse_esp(esp_r or esp))
    ci = IkeConfig("gw-a", (IdType.FQDN, b"a.example.org"), (IdType.FQDN, b"b.example.org"),
                   AuthConfig(psk=psk_i), (child_i,), parse_ike(ike))  # fmt: skip
    cr = IkeConfig("gw-b", (IdType.FQDN, b"b.example.org"), (IdType.FQDN, b"a.example.org"),
                   AuthConfig(psk=psk_r), (child_r,), parse_ike(ike_r or ike))  # fmt: skip
    if extra:
        ci = replace(ci, **extra)  # type: ignore[arg-type]
        cr = replace(cr, **extra)  # type: ignore[arg-type]
    return ci, cr


class Pair:
    """``i`` initiates to the responder front door; ``r`` is the IKE SA it creates.
    ``nat``: the initiator's source address as the responder sees it (a NAT)."""

    def __init__(self, ci: IkeConfig, cr: IkeConfig, *, cookie_threshold: int = 10,
                 nat: str | None = None, start: bool = True) -> None:  # fmt: skip
        self.now = 0.0
        self.nat = nat
        self.responder = Responder([cr], B, DeterministicRng("responder"),
                                   cookie_threshold=cookie_threshold)  # fmt: skip
        self.r: IkeSa | None = None
        self.round_trips = 0
        self.i = IkeSa.initiate(ci, local=A, remote=B, rng=DeterministicRng("initiator"),
                                now=self.now) if start else None  # fmt: skip

    def _src_i(self, dst_port: int) -> tuple[str, int]:
        assert self.i is not None
        if self.nat:
            return (self.nat, 40000 + dst_port)
        return (self.i.local[0], dst_port)

    def i_to_r(self, *, drop: bool = False) -> list[bytes]:
        """Deliver what the initiator has to send; returns the datagrams."""
        assert self.i is not None
        sent = self.i.datagrams_to_send(self.now)
        if drop:
            return [d for d, _ in sent]
        for data, dst in sent:
            src = self._src_i(dst[1])
            if self.r is not None and int.from_bytes(data[8:16], "big") == self.r.spi_r:
                self.r.receive_datagram(data, src, self.now)
            else:
                sa = self.responder.receive_datagram(data, src, self.now)
                if sa is not None:
                    self.r = sa
        return [d for d, _ in sent]

    def r_to_i(self, *, drop: bool = False) -> list[bytes]:
        assert self.i is not None
        sent = list(self.responder.datagrams_to_send(self.now))
        if self.r is not None:
            sent += self.r.datagrams_to_send(self.now)
        if drop:
            return [d for d, _ in sent]
        for data, dst in sent:
            self.i.receive_datagram(data, (B[0], dst[1] - 40000 if self.nat else dst[1]),
                                    self.now)  # fmt: skip
        return [d for d, _ in sent]

    def roundtrip(self) -> tuple[list[bytes], list[bytes]]:
        """One request --> and its response <-- (either direction's queue)."""
        self.round_trips += 1
        return self.i_to_r(), self.r_to_i()

    def establish(self, max_round_trips: int = 6) -> None:
        assert self.i is not None
        while not self.i.is_established and not self.i.is_destroyed:
            assert self.round_trips < max_round_trips, "handshake did not finish"
            self.roundtrip()


def events(sa: IkeSa | None) -> list[Event]:
    out = []
    while sa is not None and (e := sa.next_event()) is not None:
        out.append(e)
    return out


def shuttle(a: IkeManager, b: IkeManager, now: float = 0.0, rounds: int = 10) -> None:
    """Deliver datagrams both ways until both managers are quiet."""
    for _ in range(rounds):
        moved = False
        for src, dst, src_host in ((a, b, A[0]), (b, a, B[0])):
            for data, remote, local_port in src.datagrams_to_send(now):
                moved = True
                dst.receive_datagram(data, (src_host, local_port), now, (remote[0], remote[1]))
        if not moved:
            return


def drain(m: IkeManager) -> list[object]:
    out = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


def up_managers(ci: IkeConfig, cr: IkeConfig, seed: str = "") -> tuple[IkeManager, IkeManager]:
    """Two managers (a initiates, b answers) with one IKE SA and its Child SA up, their
    events drained."""
    gw_a = IkeManager([], rng=DeterministicRng("a" + seed), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b" + seed), local=B)
    gw_a.initiate(ci, local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    drain(gw_a)
    drain(gw_b)
    return gw_a, gw_b


def establish_pair(**kw: object) -> Pair:
    """A Pair with its IKE SA and first Child SA up, the events drained."""
    p = Pair(*configs(**kw))  # type: ignore[arg-type]
    p.establish()
    events(p.i)
    events(p.r)
    return p


def exchange(gw: IkeManager, clients: list[tuple[IkeManager, str]], now: float) -> None:
    """Deliver datagrams between ``gw`` (at B) and its clients (each at its address; a
    client ignores what is not for its IKE SAs) until all are quiet."""
    for _ in range(10):
        moved = False
        for client, host in clients:
            for data, _, local_port in client.datagrams_to_send(now):
                moved = True
                gw.receive_datagram(data, (host, local_port), now, B)
        for data, remote, local_port in gw.datagrams_to_send(now):
            moved = True
            for client, host in clients:
                if host == remote[0]:
                    client.receive_datagram(data, (B[0], local_port), now, remote)
        if not moved:
            return
