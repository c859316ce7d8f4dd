"""MOBIKE (RFC 4555). As responder: MOBIKE_SUPPORTED in IKE_AUTH, and a road warrior
that changes networks and says so with UPDATE_SA_ADDRESSES; once it answers our return
routability check there (COOKIE2), PeerAddressChanged for the shell, which points the
outbound SAs at the new address. As initiator (control/tasks/mobike.py): NAT detection in
liveness checks behind a NAT, an update when the NAT mapped us anew, an update from a new
local address, COOKIE2 checked."""

from __future__ import annotations

from dataclasses import replace

from ikepair import B, Pair, configs, establish_pair, events

from espfast.control.constants import NotifyType
from espfast.control.events import ChildSaRekeyed, PeerAddressChanged
from espfast.control.message import decode, parse_header
from espfast.control.payloads import NotifyPayload
from espfast.control.tasks.ike_init import natd_notifies
from espfast.control.tasks.informational import Informational
from espfast.control.tasks.mobike import MobikeInformational, no_nats_data

NEW_ADDR = ("198.18.7.9", 4500)  # the road warrior's address on its new network


def test_mobike_supported_is_negotiated_in_ike_auth() -> None:
    # IKE_AUTH { IDi, AUTH, N(MOBIKE_SUPPORTED), SA, TSi, TSr } -->
    #                                  <-- { IDr, AUTH, N(MOBIKE_SUPPORTED), SA, TSi, TSr }
    p = establish_pair()
    assert p.i is not None and p.r is not None
    assert p.i.mobike and p.r.mobike
    # Either side without it: not negotiated.
    ci, cr = configs()
    for a, b in ((replace(ci, mobike=False), cr), (ci, replace(cr, mobike=False))):
        q = Pair(a, b)
        q.establish()
        assert q.i is not None and q.r is not None
        assert not q.i.mobike and not q.r.mobike


def test_update_sa_addresses_moves_the_peer() -> None:
    p = establish_pair()
    assert p.i is not None and p.r is not None
    # The road warrior moved: INFORMATIONAL { N(UPDATE_SA_ADDRESSES),
    #   N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2) } -->
    payloads = (NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES), *natd_notifies(p.i, p.i.spi_r),
                NotifyPayload(NotifyType.COOKIE2, b"c2-" + bytes(13)))  # fmt: skip
    p.i.tm.queue_task(Informational(p.i, True, payloads), p.now)
    for data, _ in p.i.datagrams_to_send(p.now):
        p.r.receive_datagram(data, NEW_ADDR, p.now)
    assert p.r.remote == NEW_ADDR  # IKE follows at once; ESP not yet:
    assert events(p.r) == []
    # <-- { N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2) },
    # sent to the new address, and our return routability check there (§3.5):
    # <-- INFORMATIONAL { N(COOKIE2) }
    ((answer, to), (check, to2)) = p.r.datagrams_to_send(p.now)
    assert to == to2 == NEW_ADDR
    assert p.i._crypt_in is not None
    msg = decode(answer, p.i._crypt_in)
    kinds = [n.notify_type for n in msg.all(NotifyPayload)]
    assert kinds == [NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP,
                     NotifyType.COOKIE2]  # fmt: skip
    cookie2 = msg.notify(NotifyType.COOKIE2)
    assert cookie2 is not None and cookie2.data == b"c2-" + bytes(13)
    assert p.r.nat_remote  # the hashes named the old address: a NAT (or a move) between
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    assert p.i.tm.active is None
    # { N(COOKIE2) } --> from the new address: now the Child SAs follow.
    p.i.receive_datagram(check, (B[0], 4500), p.now)
    ((echo, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(echo, NEW_ADDR, p.now)
    assert events(p.r) == [PeerAddressChanged(p.r.ike_sa_id, NEW_ADDR)]
    assert p.r.moves == 1 and p.r.tm.active is None
    # Later exchanges go to the new address.
    p.r.check_liveness(p.now)
    ((_, to),) = p.r.datagrams_to_send(p.now)
    assert to == NEW_ADDR


def test_no_return_routability_no_esp_moves() -> None:
    # An authenticated peer claims an address it is not at (a victim's, RFC 4555 §5.2):
    # nobody answers our check there, so its Child SAs never point there.
    p = establish_pair()
    assert p.i is not None and p.r is not None
    assert p.i.update_addresses(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, NEW_ADDR, p.now)  # the source spoofed by the peer itself
    sent = p.r.datagrams_to_send(p.now)
    assert len(sent) == 2 and {to for _, to in sent} == {NEW_ADDR}
    for _ in range(12):  # the check is retransmitted, never answered
        p.now = p.r.get_timer() or p.now
        p.r.handle_timer(p.now)
        p.r.datagrams_to_send(p.now)
    assert not any(isinstance(e, PeerAddressChanged) for e in events(p.r))
    assert p.r.moves == 0


def test_child_sa_made_before_the_check_is_answered_sends_to_the_checked_address() -> None:
    # RFC 4555 §5.2 again, and a Child SA made meanwhile: the peer claims a victim's
    # address, then rekeys its Child SA (or adds one) from where it really is before our
    # return routability check there is answered. The new Child SA's ESP goes where the
    # peer was last seen answering, not to the address nobody vouched for (charon rekeys
    # its Child SAs right after each UPDATE_SA_ADDRESSES of its own).
    p = establish_pair()
    assert p.i is not None and p.r is not None
    events(p.r)
    checked = p.r.remote
    assert p.i.update_addresses(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, NEW_ADDR, p.now)  # the source spoofed by the peer itself
    (answer, _), _check = p.r.datagrams_to_send(p.now)  # both to NEW_ADDR
    p.i.receive_datagram(answer, (B[0], 4500), p.now)  # an on-path peer sees its answer
    ((spi_in, _),) = p.i.children.items()
    p.i.rekey_child(spi_in, p.now)
    # CREATE_CHILD_SA { SA, Ni, [KEi], N(REKEY_SA), TSi, TSr } --> from its real address
    for data, _ in p.i.datagrams_to_send(p.now):
        p.r.receive_datagram(data, checked, p.now)
    ((_, to),) = p.r.datagrams_to_send(p.now)
    assert to == checked  # answered where it came from
    (rekeyed,) = [e for e in events(p.r) if isinstance(e, ChildSaRekeyed)]
    assert rekeyed.new.peer == checked, rekeyed.new.peer
    assert p.r.moves == 0


def test_with_mobike_only_update_sa_addresses_moves_the_peer() -> None:
    # A liveness check arriving from elsewhere (a spoofed or stray copy) moves nothing.
    p = establish_pair()
    assert p.i is not None and p.r is not None
    p.i.check_liveness(p.now)
    for data, _ in p.i.datagrams_to_send(p.now):
        p.r.receive_datagram(data, NEW_ADDR, p.now)
    assert p.r.remote != NEW_ADDR and events(p.r) == []
    # The answer goes where the request came from (RFC 7296 §2.11: behind a NAT that
    # mapped the peer anew, that is how it learns so, RFC 4555 §3.8) ...
    ((answer, to),) = p.r.datagrams_to_send(p.now)
    assert to == NEW_ADDR
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    # ... but the IKE SA stays where it was: our next request goes to the old address.
    p.r.check_liveness(p.now)
    ((_, to),) = p.r.datagrams_to_send(p.now)
    assert to == p.r.remote != NEW_ADDR
    # UPDATE_SA_ADDRESSES without MOBIKE negotiated is ignored (RFC 4555 §3.5) ...
    q = establish_pair(mobike=False)
    assert q.i is not None and q.r is not None
    upd = (NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),)
    q.i.tm.queue_task(Informational(q.i, True, upd), q.now)
    ((data, _),) = q.i.datagrams_to_send(q.now)
    old = q.r.remote
    q.r.receive_datagram(data, old, q.now)
    assert q.r.remote == old and events(q.r) == []
    # ... and without MOBIKE a NAT mapping that changed is followed (RFC 7296 §2.23).
    for data, _ in q.r.datagrams_to_send(q.now):  # <-- { }
        q.i.receive_datagram(data, (B[0], 4500), q.now)
    q.i.check_liveness(q.now)
    for data, _ in q.i.datagrams_to_send(q.now):
        q.r.receive_datagram(data, NEW_ADDR, q.now)
    assert q.r.remote == NEW_ADDR
    assert events(q.r) == [PeerAddressChanged(q.r.ike_sa_id, NEW_ADDR)]
    assert parse_header(q.r.datagrams_to_send(q.now)[0][0]).is_response


# -- the initiator's side (control/tasks/mobike.py) -------------------------------------


def nat_pair(nat: str = "198.18.99.1") -> Pair:
    p = Pair(*configs(), nat=nat)
    p.establish()
    events(p.i)
    events(p.r)
    return p


def test_initiator_behind_nat_notices_a_new_mapping_and_updates() -> None:
    p = nat_pair()
    assert p.i is not None and p.r is not None
    assert p.i.nat_local and p.r.nat_remote and p.i.local[1] == 4500
    assert p.r.remote == ("198.18.99.1", 44500)
    # The first check since we floated to 4500: our mapping there is not known yet, so
    # an update confirms it (the responder moves nothing).
    p.i.check_liveness(p.now)
    p.roundtrip()
    p.roundtrip()
    assert p.i.tm.active is None and not p.i.tm.queue and p.i.natd_dest
    assert p.i.moves == p.r.moves == 0 and events(p.r) == []
    # The NAT forgets us; our next packet leaves from a new public address.
    p.nat = "198.18.99.2"
    # INFORMATIONAL { N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) } -->
    p.i.check_liveness(p.now)
    p.roundtrip()
    # <-- { N(NAT_DETECTION_*) }: the DESTINATION hash names another address: the SA
    # has not moved at the responder yet (only UPDATE_SA_ADDRESSES moves it) ...
    assert p.r.remote == ("198.18.99.1", 44500) and events(p.r) == []
    # ... so we send INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*),
    # N(COOKIE2) } -->   <-- { N(NAT_DETECTION_*), N(COOKIE2) }
    sent, answers = p.roundtrip()
    assert len(sent) == 1 and len(answers) == 2  # the answer, and our check: { N(COOKIE2) }
    assert p.r.remote == ("198.18.99.2", 44500) and events(p.r) == []
    p.roundtrip()  # { N(COOKIE2) } --> from the new mapping: the Child SAs follow
    assert events(p.r) == [PeerAddressChanged(p.r.ike_sa_id, ("198.18.99.2", 44500))]
    assert p.i.tm.active is None and not p.i.tm.queue
    assert p.i.moves == 1 and p.r.moves == 1
    assert p.r.status()["moves"] == 1
    # A further check with the same mapping moves nothing.
    p.i.check_liveness(p.now)
    p.roundtrip()
    assert p.i.tm.active is None and not p.i.tm.queue and p.i.moves == 1


def test_liveness_check_without_nat_carries_no_nat_detection() -> None:
    p = establish_pair()
    assert p.i is not None and p.r is not None
    p.i.check_liveness(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    assert p.r._crypt_in is not None
    assert decode(data, p.r._crypt_in).all(NotifyPayload) == []


def test_roaming_initiator_updates_from_its_new_address() -> None:
    p = establish_pair()
    assert p.i is not None and p.r is not None
    moved = ("198.18.7.9", 4500)
    assert p.i.update_addresses(p.now, local=moved)
    assert p.i.local == moved
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, moved, p.now)
    assert p.r.remote == moved
    ((answer, to), (check, _)) = p.r.datagrams_to_send(p.now)
    assert to == moved
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    assert p.i.moves == 1 and p.i.tm.active is None
    p.i.receive_datagram(check, (B[0], 4500), p.now)
    ((echo, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(echo, moved, p.now)
    assert events(p.r) == [PeerAddressChanged(p.r.ike_sa_id, moved)]
    # Only the original initiator updates (RFC 4555 §3.4); not without MOBIKE either.
    assert not p.r.update_addresses(p.now)
    q = establish_pair(mobike=False)
    assert q.i is not None and not q.i.update_addresses(q.now, local=moved)


def test_answer_without_our_cookie2_moves_nothing_here() -> None:
    p = establish_pair()
    assert p.i is not None and p.r is not None
    assert p.i.update_addresses(p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    task = p.i.tm.active
    assert isinstance(task, MobikeInformational) and len(task.cookie2) == 16
    task.cookie2 = bytes(16)  # as if the answer echoed another update's cookie
    p.r.receive_datagram(data, p.i.local, p.now)
    for answer, _ in p.r.datagrams_to_send(p.now):
        p.i.receive_datagram(answer, (B[0], 500), p.now)
    assert p.i.moves == 0 and p.i.tm.active is None


def test_no_nats_allowed_through_a_nat_is_refused() -> None:
    # INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NO_NATS_ALLOWED), N(COOKIE2) } -->
    # from addresses that were translated on the way: <-- { N(UNEXPECTED_NAT_DETECTED) }
    p = establish_pair()
    assert p.i is not None and p.r is not None
    old = p.r.remote
    claimed = no_nats_data(("198.18.50.1", 4500), p.r.local)  # not where it arrives from
    upd = (NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),
           NotifyPayload(NotifyType.NO_NATS_ALLOWED, claimed),
           NotifyPayload(NotifyType.COOKIE2, bytes(16)))  # fmt: skip
    p.i.tm.queue_task(Informational(p.i, True, upd), p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, NEW_ADDR, p.now)
    ((answer, _),) = p.r.datagrams_to_send(p.now)  # no return routability check either
    assert p.r.remote == old and events(p.r) == [] and p.r.tm.active is None
    assert p.r._crypt_out is not None and p.i._crypt_in is not None
    kinds = [n.notify_type for n in decode(answer, p.i._crypt_in).all(NotifyPayload)]
    assert kinds == [NotifyType.UNEXPECTED_NAT_DETECTED]
    # The addresses as they arrive: accepted.
    p.i.receive_datagram(answer, (B[0], 4500), p.now)
    upd = (upd[0], NotifyPayload(NotifyType.NO_NATS_ALLOWED, no_nats_data(NEW_ADDR, p.r.local)))
    p.i.tm.queue_task(Informational(p.i, True, upd), p.now)
    ((data, _),) = p.i.datagrams_to_send(p.now)
    p.r.receive_datagram(data, NEW_ADDR, p.now)
    assert p.r.remote == NEW_ADDR
