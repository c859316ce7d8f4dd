"""MOBIKE's additional addresses and path probing (RFC 4555 §3.5, §3.6, §3.9;
control/tasks/mobike.py): N(ADDITIONAL_*) / N(NO_ADDITIONAL_ADDRESSES) in IKE_AUTH and in
an INFORMATIONAL when they change, the peer's kept bounded and only as candidate paths;
an initiator whose path stops answering retransmits to the peer's other addresses too
and moves the IKE SA to the first that answers (UPDATE_SA_ADDRESSES from there); our
updates optionally carry N(NO_NATS_ALLOWED); follow_esp moves the IKE SA to where the
peer's authenticated ESP comes from."""

from __future__ import annotations

import ipaddress

from ikepair import A, B, Pair, configs, establish_pair, events

from espfast.control.constants import NotifyType
from espfast.control.events import PeerAddressChanged
from espfast.control.ike_sa import IkeSa
from espfast.control.message import decode
from espfast.control.payloads import NotifyPayload
from espfast.control.tasks.informational import Informational
from espfast.control.tasks.mobike import MAX_PEER_ADDRESSES, no_nats_data

I_OTHER = "198.18.30.1"  # the initiator's second uplink
R_OTHER = "198.18.40.1"  # the responder's second address


def addressed_pair(i_addrs: tuple[str, ...] | None = (I_OTHER,),
                   r_addrs: tuple[str, ...] | None = (R_OTHER,), **kw: object) -> Pair:  # fmt: skip
    """An established pair whose shells report these usable addresses (the IKE SA's own
    among them, as the shell does)."""
    p = Pair(*configs(**kw))  # type: ignore[arg-type]
    assert p.i is not None
    p.i.local_addresses = lambda sa: None if i_addrs is None else (A[0], *i_addrs)
    p.roundtrip()  # IKE_SA_INIT
    assert p.r is not None
    p.r.local_addresses = lambda sa: None if r_addrs is None else (B[0], *r_addrs)
    p.establish()
    events(p.i)
    events(p.r)
    return p


def notifies(sa: IkeSa, data: bytes) -> list[NotifyPayload]:
    assert sa._crypt_in is not None
    return list(decode(data, sa._crypt_in).all(NotifyPayload))


def test_additional_addresses_in_ike_auth() -> None:
    # IKE_AUTH { ..., N(MOBIKE_SUPPORTED), N(ADDITIONAL_IP4_ADDRESS) } -->
    #                          <-- { ..., N(MOBIKE_SUPPORTED), N(ADDITIONAL_IP4_ADDRESS) }
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    assert p.r.peer_addresses == (I_OTHER,)  # not the one it uses
    assert p.i.peer_addresses == (R_OTHER,)
    assert p.i.status()["peer_addresses"] == [R_OTHER]
    # None to name: N(NO_ADDITIONAL_ADDRESSES); a shell that cannot tell: nothing at all.
    q = addressed_pair(i_addrs=(), r_addrs=None)
    assert q.i is not None and q.r is not None
    assert q.r.announced is None and q.i.announced == ()
    assert q.r.peer_addresses == q.i.peer_addresses == ()
    # Without MOBIKE nothing is taken.
    q = addressed_pair(mobike=False)
    assert q.i is not None and q.r is not None
    assert q.r.peer_addresses == q.i.peer_addresses == ()


def test_no_addresses_taken_from_a_peer_that_fails_authentication() -> None:
    # IKE_AUTH { ..., N(ADDITIONAL_IP4_ADDRESS) } --> with the wrong PSK: refused, and
    # its addresses never make it anywhere.
    p = Pair(*configs(psk_r=b"not the initiator's psk"))
    assert p.i is not None
    p.i.local_addresses = lambda sa: (A[0], I_OTHER)
    p.roundtrip()  # IKE_SA_INIT
    assert p.r is not None
    p.i_to_r()  # IKE_AUTH
    assert p.r.is_destroyed and p.r.peer_addresses == ()


def test_changed_addresses_are_announced_and_replace_the_list() -> None:
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    assert not p.i.announce_addresses(p.now)  # nothing changed
    p.i.local_addresses = lambda sa: (A[0], "198.18.31.1", "198.18.32.1")
    # INFORMATIONAL { N(ADDITIONAL_IP4_ADDRESS), N(ADDITIONAL_IP4_ADDRESS) } -->  <-- { }
    assert p.i.announce_addresses(p.now)
    sent, _ = p.roundtrip()
    kinds = [n.notify_type for n in notifies(p.r, sent[0])]
    assert kinds == [NotifyType.ADDITIONAL_IP4_ADDRESS] * 2
    assert p.r.peer_addresses == ("198.18.31.1", "198.18.32.1")
    assert p.i.tm.active is None and p.r.remote == (A[0], 4500)  # nothing moved
    # { N(NO_ADDITIONAL_ADDRESSES) } --> empties it; either end may send it.
    p.r.local_addresses = lambda sa: (B[0],)
    assert p.r.announce_addresses(p.now)
    ((data, _),) = p.r.datagrams_to_send(p.now)
    p.i.receive_datagram(data, (B[0], 4500), p.now)
    assert p.i.peer_addresses == ()
    assert events(p.i) == [] and events(p.r) == []


def test_hostile_address_lists_stay_bounded_and_clean() -> None:
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    junk = [
        NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, b"\x01\x02\x03"),  # short
        NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes(4)),  # 0.0.0.0
        NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes([224, 0, 0, 1])),
        NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes([127, 0, 0, 1])),
        NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, b"\xff" * 4),
        NotifyPayload(NotifyType.ADDITIONAL_IP6_ADDRESS, bytes(15) + b"\x01"),  # other family
    ]
    many = [NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS,
                          ipaddress.IPv4Address(f"198.18.60.{n}").packed)
            for n in range(1, 200)]  # fmt: skip
    p.r.tm.queue_task(Informational(p.r, True, (*junk, *many)), p.now)
    for data, _ in p.r.datagrams_to_send(p.now):  # (fragments: RFC 7383)
        p.i.receive_datagram(data, (B[0], 4500), p.now)
    assert p.i.peer_addresses == tuple(f"198.18.60.{n}" for n in range(1, MAX_PEER_ADDRESSES + 1))
    assert p.i.remote == (B[0], 4500) and events(p.i) == []  # candidates, nothing more


def blackhole_and_probe(p: Pair) -> list[tuple[bytes, tuple[str, int]]]:
    """The path to B dies: a liveness check goes unanswered until a retransmission also
    goes to the responder's other address; what was sent (the last round)."""
    assert p.i is not None
    p.i.check_liveness(p.now)
    ((_, to),) = p.i.datagrams_to_send(p.now)  # lost
    assert to == (B[0], 4500)
    p.now = p.i.get_timer() or p.now
    p.i.handle_timer(p.now)
    return p.i.datagrams_to_send(p.now)


def test_dead_path_probes_the_peers_other_address_and_moves_there() -> None:
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    spis = (p.i.spi_i, p.i.spi_r)
    sent = blackhole_and_probe(p)
    # The retransmission goes down the current path and to R_OTHER, same bytes.
    assert [to for _, to in sent] == [(B[0], 4500), (R_OTHER, 4500)]
    assert sent[0][0] == sent[1][0]
    # Only the copy to R_OTHER arrives (over our other uplink, from I_OTHER).
    p.r.receive_datagram(sent[1][0], (I_OTHER, 4500), p.now)
    ((answer, to),) = p.r.datagrams_to_send(p.now)
    assert to == (I_OTHER, 4500)  # RFC 7296 §2.11; nothing moved at the responder yet
    assert p.r.remote == (A[0], 4500) and events(p.r) == []
    p.i.receive_datagram(answer, (R_OTHER, 4500), p.now, local=(I_OTHER, 4500))
    # We move at once (our ESP too) and tell the responder from there:
    assert (p.i.remote, p.i.local) == ((R_OTHER, 4500), (I_OTHER, 4500))
    assert events(p.i) == [PeerAddressChanged(p.i.ike_sa_id, (R_OTHER, 4500))]
    # INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2), N(ADDITIONAL_*) }
    ((update, to),) = p.i.datagrams_to_send(p.now)
    assert to == (R_OTHER, 4500)
    kinds = [n.notify_type for n in notifies(p.r, update)]
    assert kinds[0] == NotifyType.UPDATE_SA_ADDRESSES and NotifyType.COOKIE2 in kinds
    p.r.receive_datagram(update, (I_OTHER, 4500), p.now)
    assert p.r.remote == (I_OTHER, 4500)
    ((answer, _), (check, _)) = p.r.datagrams_to_send(p.now)  # and the return routability check
    p.i.receive_datagram(answer, (R_OTHER, 4500), p.now)
    p.i.receive_datagram(check, (R_OTHER, 4500), p.now)
    ((echo, to),) = p.i.datagrams_to_send(p.now)
    assert to == (R_OTHER, 4500)
    p.r.receive_datagram(echo, (I_OTHER, 4500), p.now)
    assert events(p.r) == [PeerAddressChanged(p.r.ike_sa_id, (I_OTHER, 4500))]
    assert p.i.moves == p.r.moves == 1 and p.i.is_established
    assert (p.i.spi_i, p.i.spi_r) == spis  # the same IKE SA
    assert p.i.probing == ()


def test_a_probe_answer_from_elsewhere_moves_nothing() -> None:
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    sent = blackhole_and_probe(p)
    p.r.receive_datagram(sent[0][0], (A[0], 4500), p.now)
    ((answer, _),) = p.r.datagrams_to_send(p.now)
    # The answer arrives from an address we did not probe (e.g. replayed by someone).
    p.i.receive_datagram(answer, ("198.18.66.6", 4500), p.now)
    assert p.i.remote == (B[0], 4500) and events(p.i) == []
    # Without any other address there is nothing to probe: the check simply retries.
    q = addressed_pair(r_addrs=())
    assert q.i is not None
    assert [to for _, to in blackhole_and_probe(q)] == [(B[0], 4500)]


def test_retransmission_answered_on_the_peers_own_other_address_only() -> None:
    # The request got through, the answer was lost on the way back: the initiator's
    # retransmission over its other uplink gets the cached answer there too, since the
    # peer named that address as its own; from anywhere else, only down the old path.
    p = addressed_pair()
    assert p.i is not None and p.r is not None
    sent = blackhole_and_probe(p)
    p.r.receive_datagram(sent[0][0], (A[0], 4500), p.now)
    p.r.datagrams_to_send(p.now)  # the answer, lost
    p.r.receive_datagram(sent[1][0], (I_OTHER, 4500), p.now)
    assert [to for _, to in p.r.datagrams_to_send(p.now)] == [(A[0], 4500), (I_OTHER, 4500)]
    p.r.receive_datagram(sent[1][0], ("198.18.66.6", 4500), p.now)
    assert [to for _, to in p.r.datagrams_to_send(p.now)] == [(A[0], 4500)]
    assert p.r.remote == (A[0], 4500) and events(p.r) == []


def test_probing_gives_up_like_dead_peer_detection() -> None:
    p = addressed_pair()
    assert p.i is not None
    blackhole_and_probe(p)
    for _ in range(20):
        if p.i.is_destroyed:
            break
        p.now = p.i.get_timer() or p.now
        p.i.handle_timer(p.now)
        assert {to for _, to in p.i.datagrams_to_send(p.now)} <= {(B[0], 4500), (R_OTHER, 4500)}
    assert p.i.is_destroyed and p.i.down_cause == "dpd"


def test_no_nats_allowed_in_our_updates() -> None:
    # mobike_no_nats: INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NO_NATS_ALLOWED), ... }
    p = establish_pair(mobike_no_nats=True)
    assert p.i is not None and p.r is not None
    assert p.i.update_addresses(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    (nn,) = [n for n in notifies(p.r, data) if n.notify_type == NotifyType.NO_NATS_ALLOWED]
    assert nn.data == no_nats_data(p.i.local, p.i.remote)
    here = (B[0], 4500)  # where it arrives (the shell says)
    p.r.receive_datagram(data, p.i.local, p.now, local=here)  # as sent: accepted
    (answer, _), *_ = p.r.datagrams_to_send(p.now)
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    assert p.i.updates_refused == 0
    # Through a NAT: <-- { N(UNEXPECTED_NAT_DETECTED) }; the responder moves nothing.
    assert p.i.update_addresses(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, ("198.18.99.1", 44500), p.now, local=here)
    ((answer, _),) = p.r.datagrams_to_send(p.now)
    assert [n.notify_type for n in notifies(p.i, answer)] == [NotifyType.UNEXPECTED_NAT_DETECTED]
    assert p.r.remote == (A[0], 4500) and events(p.r) == []
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    assert p.i.updates_refused == 1 and p.i.moves == 1  # the first update only
    # Without the option: no NO_NATS_ALLOWED.
    q = establish_pair()
    assert q.i is not None and q.r is not None
    assert q.i.update_addresses(q.now)
    ((data, _),) = q.i.datagrams_to_send(q.now)
    assert all(n.notify_type != NotifyType.NO_NATS_ALLOWED for n in notifies(q.r, data))


def test_follow_esp_only_when_configured() -> None:
    # The dataplane reports authenticated ESP from a new source (csrc/worker.c): the
    # IKE SA follows only with follow_esp, and not to where it already is.
    p = establish_pair()
    assert p.i is not None and p.r is not None
    assert not p.r.follow_esp(NEW)
    assert p.r.remote == (A[0], 4500) and events(p.r) == []
    q = establish_pair(follow_esp=True)
    assert q.i is not None and q.r is not None
    assert not q.r.follow_esp(q.r.remote)
    assert q.r.follow_esp(NEW)
    assert q.r.remote == NEW and q.r.moves == 1
    assert events(q.r) == [PeerAddressChanged(q.r.ike_sa_id, NEW)]
    # IKE follows too: our next request goes there.
    q.r.check_liveness(q.now)
    ((_, to),) = q.r.datagrams_to_send(q.now)
    assert to == NEW


NEW = ("198.18.7.9", 4500)
