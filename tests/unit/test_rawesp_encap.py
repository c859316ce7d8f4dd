"""``encap = yes|no`` (strongSwan's meaning): the config key, which framing the control
plane picks from NAT detection (RFC 7296 §2.23), and the checks the dataplane binding
makes on plain-ESP SAs. The framing on the wire: csrc/tests/test_raw.c,
tests/netns/test_rawesp_netns.py."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from ikepair import B, Pair, configs, events

from espfast.config import load_static, load_up
from espfast.control.events import ChildSaUp
from espfast.dataplane import Dataplane, Direction, EspSa, SaParams, Transform
from espfast.static import pair_configs as static_pair_configs
from espfast.static import write_private
from espfast.up import pair_configs


def child_up(sa: object) -> ChildSaUp:
    (up,) = [e for e in events(sa) if isinstance(e, ChildSaUp)]  # type: ignore[arg-type]
    return up


def test_encap_key_default_yes_and_no(tmp_path: Path) -> None:
    a, _ = pair_configs("a psk long enough for the encap key test")
    path = write_private(tmp_path / "a.toml", a)
    assert load_up(path).connections[0].ike.force_encap  # espfast's default: yes
    for word, force in (('"no"', False), ("false", False), ('"yes"', True)):
        text = a.replace("[[connection]]\n", f"[[connection]]\nencap = {word}\n")
        assert load_up(write_private(path, text)).connections[0].ike.force_encap is force
    bad = a.replace("[[connection]]\n", '[[connection]]\nencap = "udp"\n')
    with pytest.raises(Exception, match="'udp' is not one of yes, no"):
        load_up(write_private(path, bad))


def test_static_encap_key(tmp_path: Path) -> None:
    a, _ = static_pair_configs()
    path = write_private(tmp_path / "s.toml", a)
    assert load_static(path).sas[0].encap
    text = a.replace("[[sa]]\n", '[[sa]]\nencap = "no"\n')
    assert not load_static(write_private(path, text)).sas[0].encap


def test_no_nat_and_encap_no_is_plain_esp_both_ways() -> None:
    p = Pair(*configs(force_encap=False))
    p.establish()
    assert p.r is not None
    ci, cr = child_up(p.i), child_up(p.r)
    assert not ci.encap and not cr.encap
    assert not p.i.esp_in_udp and not p.r.esp_in_udp


def test_a_nat_means_udp_even_with_encap_no() -> None:
    p = Pair(*configs(force_encap=False), nat="198.18.9.9")
    p.establish()
    assert p.r is not None
    assert child_up(p.i).encap and child_up(p.r).encap


def test_a_peer_move_carries_the_framing() -> None:
    from espfast.control.events import PeerAddressChanged

    p = Pair(*configs(force_encap=False))
    p.establish()
    events(p.i)
    p.i.followed(("198.18.0.9", 500))
    (moved,) = [e for e in events(p.i) if isinstance(e, PeerAddressChanged)]
    assert moved.peer == ("198.18.0.9", 500) and not moved.encap
    p.i.nat_remote = True  # what NAT-D in the move's exchange would find (RFC 4555 §3.5)
    p.i.followed(("198.18.0.10", 4500))
    (moved,) = [e for e in events(p.i) if isinstance(e, PeerAddressChanged)]
    assert moved.encap


@pytest.mark.parametrize("forcing", ["initiator", "responder"])
def test_one_end_with_encap_yes_makes_both_use_udp(forcing: str) -> None:
    # Its faked NAT_DETECTION_SOURCE_IP shows the other end a NAT (strongSwan's encap=yes).
    ci, cr = configs(force_encap=False)
    if forcing == "initiator":
        ci = replace(ci, force_encap=True)
    else:
        cr = replace(cr, force_encap=True)
    p = Pair(ci, cr)
    p.establish()
    assert p.r is not None
    up_i, up_r = child_up(p.i), child_up(p.r)
    assert up_i.encap and up_r.encap
    assert up_i.peer == (B[0], 4500)  # IKE moved to 4500 as well (RFC 3948)


def _params(**kw: object) -> SaParams:
    base: dict[str, object] = dict(
        spi=0x1234, direction=Direction.IN, transform=Transform("aes128gcm16"),
        enc_key=bytes(20), local_ts=(ipaddress.ip_network("198.19.1.0/24"),),
        remote_ts=(ipaddress.ip_network("198.19.2.0/24"),),
    )  # fmt: skip
    base.update(kw)
    return SaParams(**base)  # type: ignore[arg-type]


def test_plain_esp_sa_needs_its_peer() -> None:
    with pytest.raises(ValueError, match="plain-ESP SA 0x00001234 needs a peer"):
        EspSa(_params(raw_esp=True))
    with pytest.raises(ValueError, match="raw_esp must be a bool"):
        EspSa(_params(raw_esp=1, peer=("198.18.0.2", 4500)))
    EspSa(_params(raw_esp=True, peer=("198.18.0.2", 4500))).close()


def test_dataplane_raw_socket_checks() -> None:
    tun_a, tun_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    with tun_a, tun_b, udp, Dataplane(tun_a.fileno(), udp, disable_offloads=["all"]) as dp:
        with pytest.raises(ValueError, match="needs a raw socket"):
            dp.add_raw_socket(udp)
        # no raw socket of the peer's family: a plain-ESP SA cannot be installed
        with pytest.raises(ValueError, match=r"no raw ESP socket for 127\.0\.0\.2"):
            dp.add_sa(_params(raw_esp=True, peer=("127.0.0.2", 4500)))
        dp.add_sa(_params(direction=Direction.OUT, spi=0x999, peer=("127.0.0.2", 4500)))
        with pytest.raises(ValueError, match="invalid parameter"):
            dp.update_peer(0x999, ("127.0.0.3", 4500), raw_esp=True)
        dp.update_peer(0x999, ("127.0.0.3", 4500), raw_esp=False)
        with pytest.raises(ValueError, match="no in SA with SPI 0x00000999"):
            dp.update_peer(0x999, ("127.0.0.3", 4500), direction=Direction.IN)


def test_daemon_installs_plain_esp_and_switches_framing_when_the_peer_moves(
    tmp_path: Path,
) -> None:
    import asyncio

    from test_daemon import A, B, conf, make_pair, settle

    from espfast.control.events import PeerAddressChanged

    no = '[[connection]]\nencap = "no"\n'
    text_a, text_b = (t.replace("[[connection]]\n", no) for t in conf())

    async def scenario() -> None:
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        for dp, peer in ((dp_a, B), (dp_b, A)):
            # no NAT, encap = no: both directions plain ESP, inbound bound to the peer
            assert all(sa.raw_esp for sa in dp.sas.values())
            assert {sa.peer for sa in dp.sas.values()} == {(peer, 4500)}  # MOBIKE: 4500
        moves: list[tuple[int, tuple[str, int], Direction, bool | None]] = []

        def update_peer(spi: int, peer: tuple[str, int], *, direction: Direction = Direction.OUT,
                        raw_esp: bool | None = None) -> None:  # fmt: skip
            moves.append((spi, peer, direction, raw_esp))

        dp_a.update_peer = update_peer  # type: ignore[method-assign]
        (spi_in,) = [s for (s, d) in dp_a.sas if d is Direction.IN]
        (spi_out,) = [s for (s, d) in dp_a.sas if d is Direction.OUT]
        (ike,) = a.sas
        # the peer moved behind a NAT (MOBIKE): ESP in UDP from now on, both directions
        a._on_event(PeerAddressChanged(ike.ike_sa_id, ("198.18.0.9", 4500), encap=True))
        assert moves == [(spi_out, ("198.18.0.9", 4500), Direction.OUT, False),
                         (spi_in, ("198.18.0.9", 4500), Direction.IN, False)]  # fmt: skip
        await a.shutdown(timeout=5)

    asyncio.run(scenario())


def test_raw_socket_families_follow_the_listen_address() -> None:
    from espfast.rawesp import families_for

    assert families_for("198.18.0.1") == families_for("0.0.0.0") == (socket.AF_INET,)
    assert families_for("2001:2::1") == (socket.AF_INET6,)
    # a dual-stack UDP socket has IPv4 peers too (v4-mapped): both raw sockets
    assert families_for("::") == (socket.AF_INET, socket.AF_INET6)


def test_a_roaming_initiator_that_meets_a_nat_switches_both_ends_to_udp() -> None:
    """encap = no, no NAT at first (plain ESP); the initiator moves (MOBIKE) to a network
    behind a NAT: both ends find it in the UPDATE_SA_ADDRESSES exchange and their Child SAs
    go to ESP in UDP (PeerAddressChanged with encap), the responder's at the NAT's mapping."""
    from ikepair import establish_pair

    from espfast.control.events import PeerAddressChanged

    p = establish_pair(force_encap=False)
    assert p.i is not None and p.r is not None
    assert not p.i.esp_in_udp and not p.r.esp_in_udp
    events(p.i), events(p.r)
    moved, mapped = ("198.18.7.9", 4500), ("198.18.99.1", 40500)
    assert p.i.update_addresses(p.now, local=moved)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, mapped, p.now)  # through the NAT
    ((answer, to), (check, _)) = p.r.datagrams_to_send(p.now)
    assert to == mapped and p.r.nat_remote
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    assert p.i.nat_local
    assert events(p.i) == [PeerAddressChanged(p.i.ike_sa_id, (B[0], 4500), encap=True)]
    p.i.receive_datagram(check, (B[0], 4500), p.now)
    ((echo, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(echo, mapped, p.now)
    assert events(p.r) == [PeerAddressChanged(p.r.ike_sa_id, mapped, encap=True)]
