"""What unauthenticated (and one authenticated) peers can make the control plane spend:
KE values checked before any key exchange work, per-address limits and a fairly shared
half-open pool at the front door, bounded fragment reassembly, per-identity caps, and
per-datagram work that does not grow with the number of IKE SAs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ikepair import A, B, configs, drain, shuttle

from espfast.control.constants import DhGroup, ExchangeType, NotifyType
from espfast.control.crypto import KeyExchange, check_public_value, modp_prime
from espfast.control.errors import RemoteProtocolError
from espfast.control.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.fragments import MAX_BYTES_PER_SA, TIMEOUT, FragmentBudget, Reassembly
from espfast.control.ike_sa import IkeSa
from espfast.control.manager import IkeManager
from espfast.control.message import Message, decode, encode
from espfast.control.payloads import KePayload, NotifyPayload
from espfast.control.responder import WORK_WINDOW, Responder
from espfast.control.rng import DeterministicRng


def init_request(seed: str, ike: str = "aes256gcm16-prfsha384-x25519") -> bytes:
    ci, _ = configs(ike=ike)
    sa = IkeSa.initiate(ci, local=A, remote=B, rng=DeterministicRng(seed), now=0)
    ((data, _),) = sa.datagrams_to_send(0)
    return data


def with_ke(data: bytes, ke: bytes) -> bytes:
    msg = decode(data)
    payloads = tuple(KePayload(p.group, ke) if isinstance(p, KePayload) else p
                     for p in msg.payloads)  # fmt: skip
    return encode(replace(msg, payloads=payloads))


# -- KE values -----------------------------------------------------------------------------


@pytest.mark.parametrize("group", [DhGroup.MODP_2048, DhGroup.MODP_3072, DhGroup.MODP_4096])
def test_modp_range_is_checked_before_any_work(group: int) -> None:
    n = KeyExchange.public_len(group)
    p = modp_prime(n * 8)
    for bad in (0, 1, p - 1, p, 2 ** (8 * n) - 1):
        with pytest.raises(RemoteProtocolError):
            check_public_value(group, bad.to_bytes(n, "big"))
    with pytest.raises(RemoteProtocolError):
        check_public_value(group, bytes(n - 1) + b"\x02" + b"\x00")  # one byte too many
    check_public_value(group, (2).to_bytes(n, "big"))


def test_modp_agrees_with_the_textbook_formula() -> None:
    """OpenSSL's arithmetic gives g^ir exactly as pow() does (fixed length, §2.14)."""
    rng = DeterministicRng("modp")
    a, b = KeyExchange(DhGroup.MODP_2048, rng), KeyExchange(DhGroup.MODP_2048, rng)
    p = modp_prime(2048)
    x = a._dh.private_numbers().x
    assert pow(2, x, p).to_bytes(256, "big") == a.public
    assert a.shared(b.public) == pow(int.from_bytes(b.public, "big"), x, p).to_bytes(256, "big")
    assert len(a.shared((2).to_bytes(256, "big"))) == 256  # leading zeros kept


def test_ecp_point_off_the_curve_is_refused_early() -> None:
    rng = DeterministicRng("ecp")
    good = KeyExchange(DhGroup.ECP_256, rng).public
    check_public_value(DhGroup.ECP_256, good)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(RemoteProtocolError):
        check_public_value(DhGroup.ECP_256, bad)


def test_bogus_modp_ke_is_dropped_without_state_or_key_exchange() -> None:
    ike = "aes128gcm16-prfsha256-modp3072"
    _, cr = configs(ike=ike)
    responder = Responder([cr], B, DeterministicRng("r"))
    data = with_ke(init_request("bogus", ike), (1).to_bytes(384, "big"))
    for n in range(50):
        assert responder.receive_datagram(data, (f"198.18.1.{n + 1}", 500), 0) is None
    assert responder.counters.dropped_bad_ke == 50 and responder.counters.refused == 0
    assert responder.half_open == {} and responder.load == 0
    # Stateless INVALID_SYNTAX answers, rate-limited.
    answers = responder.datagrams_to_send(0)
    assert 0 < len(answers) <= 10
    assert decode(answers[0][0]).notify(NotifyType.INVALID_SYNTAX) is not None


# -- the front door ------------------------------------------------------------------------


def test_one_address_gets_cookies_then_is_blocked_and_others_still_get_in() -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"), cookie_threshold=100,
                          cookie_threshold_ip=2, block_threshold=3)  # fmt: skip
    greedy = ("198.18.0.66", 500)
    made = [responder.receive_datagram(init_request(f"g{n}"), greedy, 0) for n in range(2)]
    assert all(made)
    # The third from that address must prove it: a COOKIE, stateless.
    assert responder.receive_datagram(init_request("g2"), greedy, 0) is None
    assert responder.counters.cookies_sent == 1
    # Coming back with it works (the initiator retries with the COOKIE).
    i = IkeSa.initiate(configs()[0], local=A, remote=B, rng=DeterministicRng("g3"), now=0)
    ((req, _),) = i.datagrams_to_send(0)
    assert responder.receive_datagram(req, greedy, 0) is None
    ((answer, _),) = responder.datagrams_to_send(0)[-1:]
    i.receive_datagram(answer, B, 0)
    ((req, _),) = i.datagrams_to_send(0)
    assert responder.receive_datagram(req, greedy, 0) is not None
    # block_threshold: 3 half-open from it; the next is dropped, cookie or not.
    assert responder.receive_datagram(init_request("g4"), greedy, 0) is None
    assert responder.counters.dropped_block_threshold == 1
    # Another address is not affected.
    assert responder.receive_datagram(init_request("other"), ("198.18.0.7", 500), 0)


def test_refused_requests_weigh_like_half_open_sas_for_a_while() -> None:
    """Requests refused after the work (here NO_PROPOSAL_CHOSEN) leave no half-open SA
    but still count toward cookie_threshold, so a flood of them meets COOKIEs."""
    _, cr = configs(ike="aes128gcm16-prfsha256-x25519")
    responder = Responder([cr], B, DeterministicRng("r"), cookie_threshold=5)
    other = init_request("x", ike="chacha20poly1305-prfsha512-ecp384")
    for n in range(20):
        responder.receive_datagram(other, (f"198.18.2.{n + 1}", 500), 0)
    assert responder.counters.refused == 5 and responder.counters.cookies_sent == 15
    # After WORK_WINDOW they no longer count.
    ok = init_request("ok", ike="aes128gcm16-prfsha256-x25519")
    assert responder.receive_datagram(ok, ("198.18.3.1", 500), WORK_WINDOW + 1) is not None


def test_a_full_half_open_pool_is_shared_fairly() -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"), cookie_threshold=100, half_open_limit=4,
                          cookie_threshold_ip=100, block_threshold=100)  # fmt: skip
    greedy = [responder.receive_datagram(init_request(f"g{n}"), ("198.18.0.66", 500), 0)
              for n in range(4)]  # fmt: skip
    assert all(greedy)
    # The pool is full: a newcomer takes the place of the greedy address's oldest.
    newcomer = responder.receive_datagram(init_request("new"), ("198.18.0.7", 500), 1)
    assert newcomer is not None and responder.counters.evicted == 1
    assert greedy[0] is not None and greedy[0].is_destroyed
    assert [type(e) for e in drain_sa(greedy[0])] == [IkeSaDown]
    # Equal shares (the greedy one has 3, the newcomer 1 + this = 2): evict again; then
    # with 2 and 2 a third request from the newcomer is dropped.
    assert responder.receive_datagram(init_request("new2"), ("198.18.0.7", 500), 1)
    assert responder.receive_datagram(init_request("new3"), ("198.18.0.7", 500), 1) is None
    assert responder.counters.dropped_half_open_limit == 1


def drain_sa(sa: IkeSa) -> list[object]:
    out = []
    while (e := sa.next_event()) is not None:
        out.append(e)
    return out


# -- fragments -----------------------------------------------------------------------------


def test_reassembly_is_bounded_per_sa_in_total_and_in_time() -> None:
    budget = FragmentBudget(limit=3 * MAX_BYTES_PER_SA // 2)
    r1, r2 = Reassembly(budget), Reassembly(budget)
    piece = bytes(MAX_BYTES_PER_SA // 4)
    for n in (1, 2, 3):
        assert r1.add((1, False), n, 8, 46, piece, 0) is None
    assert r1.held == 3 * len(piece) and budget.used == r1.held
    # The fourth piece would pass the per-SA bound (with the header room it does): the
    # whole message goes.
    assert r1.add((1, False), 4, 8, 46, piece + b"x", 0) is None
    assert r1.held == 0 and budget.used == 0 and budget.dropped == 1
    # The daemon-wide budget binds across SAs.
    for n in (1, 2, 3):
        r1.add((2, False), n, 8, 46, piece, 0)
    for n in (1, 2, 3, 4):
        r2.add((2, False), n, 8, 46, piece, 0)
    assert budget.used == 3 * len(piece) and budget.dropped == 2
    # Incomplete messages expire.
    assert r1.deadline() == TIMEOUT
    r1.expire(TIMEOUT)
    assert r1.held == 0 and r1.deadline() is None
    # A complete message comes out in order.
    assert r2.add((5, True), 2, 2, 0, b"b", 20) is None
    assert r2.add((5, True), 1, 2, 46, b"a", 20) == (46, [b"a", b"b"])
    # Nonsense numbering is refused.
    assert r2.add((6, True), 3, 2, 0, b"x", 20) is None
    assert r2.add((6, True), 1, 33, 0, b"x", 20) is None


def test_fragments_of_unexpected_message_ids_are_dropped_unread() -> None:
    ci, cr = configs(fragment_size=576)
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    sa = gw_a.initiate(ci, local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    assert sa.is_established
    (rb,) = gw_b.sas
    big = NotifyPayload(40969, bytes(3000))
    for mid in (7, 8, 9, 10):  # the peer expects 1 next
        msg = Message(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, mid, False, True, (big,))
        assert sa._crypt_out is not None
        from espfast.control.message import encode_fragments

        for frag in encode_fragments(msg, sa._crypt_out, 576)[:-1]:
            gw_b.receive_datagram(frag, A, 1)
    assert gw_b.fragments.dropped > 0 and gw_b.fragments.used == 0
    assert rb._fragments.held == 0


# -- per identity, and scale ---------------------------------------------------------------


def test_ike_sas_per_identity_and_child_sas_per_ike_sa_are_capped() -> None:
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B, ike_sas_per_identity=2,
                      child_sas_per_ike_sa=2, cookie_threshold_ip=100,
                      block_threshold=100)  # fmt: skip
    sas = [gw_a.initiate(ci, local=A, remote=B, now=0) for _ in range(3)]
    shuttle(gw_a, gw_b)
    assert [sa.is_established for sa in sas] == [True, True, False]
    downs = [e for e in drain(gw_a) if isinstance(e, IkeSaDown)]
    assert len(downs) == 1 and "AUTHENTICATION_FAILED" in downs[0].reason
    assert len([e for e in drain(gw_b) if isinstance(e, IkeSaUp)]) == 2
    # Child SAs: the one from IKE_AUTH and one more; the third is refused.
    child = ci.children[0]
    sas[0].create_child(child, 0)
    sas[0].create_child(child, 0)
    shuttle(gw_a, gw_b)
    ev = drain(gw_a)
    assert [type(e) for e in ev if isinstance(e, (ChildSaUp, ChildSaFailed))] == [
        ChildSaUp, ChildSaFailed]  # fmt: skip
    assert "NO_ADDITIONAL_SAS" in next(e for e in ev if isinstance(e, ChildSaFailed)).reason


def test_a_datagram_touches_only_its_own_ike_sa() -> None:
    """With many IKE SAs up, handling one datagram looks at one SA: the others are not
    asked for datagrams, events or timers."""
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B, ike_sas_per_identity=100,
                      cookie_threshold=1000, cookie_threshold_ip=1000,
                      block_threshold=1000)  # fmt: skip
    sas = [gw_a.initiate(ci, local=A, remote=B, now=0) for _ in range(30)]
    shuttle(gw_a, gw_b)
    drain(gw_a)
    drain(gw_b)
    assert all(sa.is_established for sa in sas)
    asked: list[int] = []
    for sa in gw_b.sas:
        orig = sa.get_timer

        def spy(sa: IkeSa = sa, orig=orig) -> float | None:  # type: ignore[no-untyped-def]
            asked.append(id(sa))
            return orig()

        sa.get_timer = spy  # type: ignore[method-assign]
    sas[7].check_liveness(1)
    shuttle(gw_a, gw_b, now=1)
    assert gw_b.get_timer() is not None
    assert len(set(asked)) == 1


def test_counters_are_read_for_a_bounded_number_of_child_sas_a_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With many Child SAs each tick reads READ_PER_TICK of them, in turn."""
    import espfast.daemon
    from bench.dos import _gateway

    monkeypatch.setattr(espfast.daemon, "READ_PER_TICK", 2)
    gw = _gateway(5)
    read: list[int] = []
    stats = gw.daemon.dataplane.sa_stats

    def counting(spi: int, direction: object) -> object:
        read.append(spi)
        return stats(spi, direction)  # type: ignore[arg-type]

    gw.daemon.dataplane.sa_stats = counting  # type: ignore[method-assign]
    seen: list[set[int]] = []
    for _ in range(3):
        read.clear()
        gw.daemon._read_counters()
        seen.append({spi for spi in read if spi in gw.daemon.children})
    assert [len(s) for s in seen] == [2, 2, 2]
    assert set().union(*seen) == set(gw.daemon.children)  # all five, in turn
    gw.loop.close()
