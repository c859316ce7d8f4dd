"""In-memory IKEv2 pairs: every exchange, proposal family, retry and error notify.

Each step is commented in RFC 7296 notation; --> is initiator to responder.
"""

from __future__ import annotations

import pytest
from ikepair import NET_A, NET_B, A, B, Pair, configs, establish_pair, events

from espfast.control.constants import (
    DhGroup,
    ExchangeType,
    NotifyType,
    PayloadType,
)
from espfast.control.events import (
    ChildSaClosing,
    ChildSaDown,
    ChildSaFailed,
    ChildSaRekeyed,
    ChildSaUp,
    IkeSaDown,
    IkeSaUp,
)
from espfast.control.message import decode, parse_header
from espfast.control.payloads import KePayload, NotifyPayload


def up(events_: list[object]) -> tuple[IkeSaUp, ChildSaUp]:
    ike = [e for e in events_ if isinstance(e, IkeSaUp)]
    child = [e for e in events_ if isinstance(e, ChildSaUp)]
    assert len(ike) == 1 and len(child) == 1, events_
    return ike[0], child[0]


def assert_child_keys_match(ci: ChildSaUp, cr: ChildSaUp) -> None:
    assert (ci.spi_in, ci.spi_out) == (cr.spi_out, cr.spi_in)
    assert ci.enc_key_out == cr.enc_key_in and ci.enc_key_in == cr.enc_key_out
    assert ci.integ_key_out == cr.integ_key_in and ci.integ_key_in == cr.integ_key_out
    assert ci.enc_key_in != ci.enc_key_out
    assert ci.transform == cr.transform and ci.esn == cr.esn
    assert "enc_key" not in repr(ci) and ci.enc_key_in.hex() not in repr(ci)


@pytest.mark.parametrize(
    "ike",
    [
        "aes256gcm16-prfsha384-ecp384",
        "aes128gcm16-x25519",
        "chacha20poly1305-prfsha256-x25519",
        "aes256-sha256-modp2048",
        "aes128-sha512-ecp521",
        "aes256gcm16-prfsha512-x448",
        "aes128gcm16-prfsha256-ecp256",
        "aes256-sha384-modp3072",
    ],
)
def test_psk_handshake_in_two_round_trips(ike: str) -> None:
    p = Pair(*configs(ike=ike))
    # IKE_SA_INIT { SA, KEi, Ni, N(NAT_DETECTION_*), N(FRAG_SUP), N(SHA) } -->
    req, resp = p.roundtrip()
    assert parse_header(req[0]).exchange == ExchangeType.IKE_SA_INIT
    # <-- { SA, KEr, Nr, N(NAT_DETECTION_*), N(FRAG_SUP), N(SHA) }
    assert p.r is not None and not p.r.is_established
    # IKE_AUTH { IDi, IDr, AUTH(PSK), SAi2, TSi, TSr } -->   (encrypted, port 4500)
    # <-- { IDr, AUTH(PSK), SAr2, TSi, TSr }
    req, resp = p.roundtrip()
    assert req[0][16] == PayloadType.SK and resp[0][16] == PayloadType.SK
    assert p.i.is_established and p.r.is_established
    ike_i, child_i = up(events(p.i))
    ike_r, child_r = up(events(p.r))
    assert ike_i.algorithms == ike_r.algorithms
    assert (ike_i.remote_id, ike_r.remote_id) == ("b.example.org", "a.example.org")
    assert_child_keys_match(child_i, child_r)
    assert child_i.transform == "aes128gcm16" and len(child_i.enc_key_out) == 20
    assert child_i.local_ts == (NET_A,) and child_i.remote_ts == (NET_B,)
    assert child_r.local_ts == (NET_B,) and child_r.remote_ts == (NET_A,)
    # force_encap (the default): both sides use UDP 4500 for IKE and ESP.
    assert child_i.peer == (B[0], 4500) and child_r.peer == (A[0], 4500)


@pytest.mark.parametrize(
    ("esp", "transform", "esn", "integ_len"),
    [
        ("aes128gcm16", "aes128gcm16", False, 0),
        ("aes256gcm16-esn", "aes256gcm16", True, 0),
        ("aes256-sha256", "aes256-sha256", False, 32),
        ("aes128-sha384", "aes128-sha384", False, 48),
        ("aes256-sha512", "aes256-sha512", False, 64),
        ("chacha20poly1305", "chacha20poly1305", False, 0),
    ],
)
def test_child_sa_transforms(esp: str, transform: str, esn: bool, integ_len: int) -> None:
    p = Pair(*configs(esp=esp))
    p.establish()
    assert p.round_trips == 2
    _, ci = up(events(p.i))
    _, cr = up(events(p.r))
    assert_child_keys_match(ci, cr)
    assert (ci.transform, ci.esn, len(ci.integ_key_in)) == (transform, esn, integ_len)


def test_no_nat_stays_on_port_500_and_nat_moves_to_4500() -> None:
    p = Pair(*configs(force_encap=False, mobike=False))
    p.establish()
    _, ci = up(events(p.i))
    assert ci.peer == B and p.i.local == A
    # With MOBIKE the initiator floats to 4500 anyway (as strongSwan does): a later move
    # may meet a NAT. ESP stays plain while there is none.
    p = Pair(*configs(force_encap=False))
    p.establish()
    _, ci = up(events(p.i))
    assert ci.peer == (B[0], 4500) and p.i.local == (A[0], 4500) and not ci.encap
    # With a NAT in front of the initiator both sides detect it (RFC 7296 §2.23).
    p = Pair(*configs(force_encap=False), nat="198.18.9.9")
    p.establish()
    assert p.i.nat_local and p.r is not None and p.r.nat_remote
    _, ci = up(events(p.i))
    _, cr = up(events(p.r))
    assert ci.peer == (B[0], 4500)
    assert cr.peer == ("198.18.9.9", 44500)  # where the NAT maps the initiator's 4500


def test_invalid_ke_payload_retry() -> None:
    ci, cr = configs(
        ike="aes128gcm16-prfsha256-x25519-ecp256", ike_r="aes128gcm16-prfsha256-ecp256"
    )
    p = Pair(ci, cr)
    # IKE_SA_INIT { SA, KEi(x25519), Ni, ... } -->
    # <-- { N(INVALID_KE_PAYLOAD, ecp256) }
    _, resp = p.roundtrip()
    answer = decode(resp[0])
    assert answer.notify(NotifyType.INVALID_KE_PAYLOAD) == NotifyPayload(
        NotifyType.INVALID_KE_PAYLOAD, DhGroup.ECP_256.to_bytes(2, "big")
    )
    assert p.r is None and p.responder.counters.refused == 1
    # IKE_SA_INIT { SA, KEi(ecp256), Ni, ... } -->   (same Message ID 0)
    req, _ = p.roundtrip()
    retry = decode(req[0])
    assert retry.message_id == 0
    ke = retry.get(KePayload)
    assert ke is not None and ke.group == DhGroup.ECP_256
    p.establish()
    assert p.round_trips == 3
    ike_i, _ = up(events(p.i))
    assert ike_i.algorithms == "aes128gcm16-prfsha256-ecp256"


def test_responder_accepts_a_less_preferred_group_the_initiator_sent() -> None:
    # The responder prefers ecp384 but takes the initiator's x25519: no extra round trip.
    ci, cr = configs(ike="aes128gcm16-prfsha256-x25519-ecp384",
                     ike_r="aes128gcm16-prfsha256-ecp384-x25519")  # fmt: skip
    p = Pair(ci, cr)
    p.establish()
    assert p.round_trips == 2
    assert up(events(p.i))[0].algorithms.endswith("x25519")


def test_cookie_exchange() -> None:
    p = Pair(*configs(), cookie_threshold=0)
    # IKE_SA_INIT { SA, KEi, Ni } -->
    # <-- { N(COOKIE) }
    _, resp = p.roundtrip()
    cookie = decode(resp[0]).notify(NotifyType.COOKIE)
    assert cookie is not None and p.r is None
    # IKE_SA_INIT { N(COOKIE), SA, KEi, Ni } -->
    req, _ = p.roundtrip()
    assert decode(req[0]).payloads[0] == cookie
    p.establish()
    assert p.round_trips == 3 and p.responder.counters.cookies_sent == 1
    assert p.r is not None and p.r.is_established


def test_forged_cookie_is_refused() -> None:
    p = Pair(*configs(), cookie_threshold=0)
    req = p.i_to_r()
    tampered = bytearray(p.responder.datagrams_to_send(0)[0][0])
    tampered[-1] ^= 1  # a cookie the responder did not make
    p.i.receive_datagram(bytes(tampered), B, 0)
    resend = p.i_to_r()
    assert resend != req and p.r is None
    assert p.responder.counters.bad_cookies == 1


def test_no_proposal_chosen_for_ike() -> None:
    ci, cr = configs(ike="aes256gcm16-prfsha384-ecp384", ike_r="aes128-sha256-modp2048")
    p = Pair(ci, cr)
    # IKE_SA_INIT { SA, KEi, Ni } -->   <-- { N(NO_PROPOSAL_CHOSEN) }
    _, resp = p.roundtrip()
    assert decode(resp[0]).notify(NotifyType.NO_PROPOSAL_CHOSEN) is not None
    (down,) = events(p.i)
    assert isinstance(down, IkeSaDown) and "NO_PROPOSAL_CHOSEN" in down.reason
    assert p.i.is_destroyed and p.i.get_timer() is None


def test_psk_mismatch_is_authentication_failed() -> None:
    p = Pair(*configs(psk_r=b"another-secret"))
    p.roundtrip()
    # IKE_AUTH { IDi, AUTH, ... } -->   <-- { N(AUTHENTICATION_FAILED) }
    p.roundtrip()
    assert p.r is not None and p.r.is_destroyed and p.i.is_destroyed
    (down_r,) = events(p.r)
    assert isinstance(down_r, IkeSaDown) and "pre-shared key mismatch" in down_r.reason
    (down_i,) = events(p.i)
    assert isinstance(down_i, IkeSaDown) and "AUTHENTICATION_FAILED" in down_i.reason


def test_unexpected_peer_identity() -> None:
    from dataclasses import replace

    from espfast.control.constants import IdType

    ci, cr = configs()
    ci = replace(ci, remote_id=(IdType.FQDN, b"other.example.org"))
    p = Pair(ci, cr)
    p.establish()
    assert p.i.is_destroyed
    downs = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "b.example.org is not the configured one" in downs[0].reason
    # INFORMATIONAL { N(AUTHENTICATION_FAILED) } --> : the responder drops its IKE SA too.
    assert p.r is not None and p.r.is_established
    (told,) = p.i_to_r()
    assert parse_header(told).exchange == ExchangeType.INFORMATIONAL
    assert p.r.is_destroyed


def test_ts_unacceptable_keeps_the_ike_sa() -> None:
    from dataclasses import replace

    from espfast.control.events import TrafficSelector

    ci, cr = configs()
    other = TrafficSelector.from_network("198.19.7.0/24")
    cr = replace(cr, children=(replace(cr.children[0], remote_ts=(other,)),))
    p = Pair(ci, cr)
    p.establish()
    # <-- { IDr, AUTH, N(TS_UNACCEPTABLE) }
    assert p.i.is_established and p.r is not None and p.r.is_established
    evs = events(p.i)
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaFailed]
    assert "TS_UNACCEPTABLE" in evs[1].reason  # type: ignore[union-attr]
    assert [type(e) for e in events(p.r)] == [IkeSaUp, ChildSaFailed]


def test_traffic_selector_narrowing() -> None:
    from dataclasses import replace

    from espfast.control.events import TrafficSelector

    ci, cr = configs()
    wide = TrafficSelector.from_network("198.19.0.0/16")
    half = TrafficSelector.from_network("198.19.1.0/25")
    ci = replace(ci, children=(replace(ci.children[0], local_ts=(wide,)),))
    cr = replace(cr, children=(replace(cr.children[0], remote_ts=(half,)),))
    p = Pair(ci, cr)
    p.establish()
    _, child_i = up(events(p.i))
    assert child_i.local_ts == (half,)  # the responder narrowed our TSi


def test_child_no_proposal_chosen() -> None:
    p = Pair(*configs(esp="aes256gcm16", esp_r="aes128-sha256"))
    p.establish()
    evs = events(p.i)
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaFailed]
    assert "NO_PROPOSAL_CHOSEN" in evs[1].reason  # type: ignore[union-attr]


def test_retransmission_with_back_off_then_give_up() -> None:
    p = Pair(*configs())
    first = p.i_to_r(drop=True)
    assert p.i.get_timer() == 4.0
    expected = [4.0, 4.0 + 7.2, 4.0 + 7.2 + 12.96]
    for at in expected:
        p.now = at
        p.i.handle_timer(p.now)
        again = p.i_to_r(drop=True)
        assert again == first  # the same bytes, the same Message ID
    assert p.i.tm.counters.retransmits == 3
    while not p.i.is_destroyed:
        timer = p.i.get_timer()
        assert timer is not None
        p.now = timer
        p.i.handle_timer(p.now)
        p.i_to_r(drop=True)
    (down,) = events(p.i)
    assert isinstance(down, IkeSaDown) and "not responding" in down.reason
    assert p.i.tm.counters.retransmits == 5


def test_lost_response_is_answered_from_the_cache() -> None:
    p = Pair(*configs())
    p.roundtrip()
    # IKE_AUTH request --> ; the response is lost
    p.i_to_r()
    lost = p.r_to_i(drop=True)
    evs_r = events(p.r)
    assert [type(e) for e in evs_r] == [IkeSaUp, ChildSaUp]
    p.now = p.i.get_timer() or 0
    p.i.handle_timer(p.now)
    # the retransmitted request --> ; <-- the cached response, processed once only
    p.i_to_r()
    again = p.r_to_i()
    assert again == lost
    assert events(p.r) == []
    assert p.r is not None and p.r.tm.counters.retransmitted_requests_answered == 1
    assert [type(e) for e in events(p.i)] == [IkeSaUp, ChildSaUp]


def test_ike_sa_init_retransmission_goes_to_the_half_open_sa() -> None:
    p = Pair(*configs())
    p.i_to_r()
    first = p.r_to_i(drop=True)
    p.now = 4.0
    p.i.handle_timer(p.now)
    p.i_to_r()
    assert p.r_to_i() == first
    assert p.responder.counters.created == 1
    p.establish()
    assert p.i.is_established


def test_create_child_sa_with_pfs_and_delete() -> None:
    from espfast.control.config import ChildConfig
    from espfast.control.events import TrafficSelector
    from espfast.control.proposals import parse_esp

    p = establish_pair()
    assert p.r is not None
    extra_a = TrafficSelector.from_network("198.19.3.0/24")
    extra_b = TrafficSelector.from_network("198.19.4.0/24")
    pfs = parse_esp("aes256gcm16-x25519")
    p.r.config = type(p.r.config)(**{**p.r.config.__dict__, "children": (
        *p.r.config.children, ChildConfig("extra", (extra_b,), (extra_a,), pfs))})  # fmt: skip
    # CREATE_CHILD_SA { SA, Ni, KEi, TSi, TSr } -->
    # <-- { SA, Nr, KEr, TSi, TSr }
    p.i.create_child(ChildConfig("extra", (extra_a,), (extra_b,), pfs), p.now)
    req, _resp = p.roundtrip()
    assert parse_header(req[0]).exchange == ExchangeType.CREATE_CHILD_SA
    (ci,) = events(p.i)
    (cr,) = events(p.r)
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert_child_keys_match(ci, cr)
    assert ci.name == "extra" and ci.transform == "aes256gcm16"
    assert len(p.i.children) == 2 and len(p.r.children) == 2
    # INFORMATIONAL { D(ESP, spi) } -->   <-- { D(ESP, spi) }
    p.i.delete_child(ci.spi_in, p.now)
    p.roundtrip()
    (closing, di) = events(p.i)
    (dr,) = events(p.r)
    assert isinstance(closing, ChildSaClosing) and closing.spi_in == ci.spi_in
    assert isinstance(di, ChildSaDown) and (di.spi_in, di.spi_out) == (ci.spi_in, ci.spi_out)
    assert isinstance(dr, ChildSaDown) and (dr.spi_in, dr.spi_out) == (cr.spi_in, cr.spi_out)
    assert len(p.i.children) == 1 and len(p.r.children) == 1


def test_create_child_sa_invalid_ke_retry() -> None:
    from espfast.control.config import ChildConfig
    from espfast.control.proposals import parse_esp

    p = establish_pair()
    assert p.r is not None
    r_child = p.r.config.children[0]
    p.r.config = type(p.r.config)(**{**p.r.config.__dict__, "children": (
        ChildConfig("net", r_child.local_ts, r_child.remote_ts,
                    parse_esp("aes128gcm16-ecp256")),)})  # fmt: skip
    p.i.create_child(ChildConfig("net", (NET_A,), (NET_B,),
                                 parse_esp("aes128gcm16-x25519-ecp256")), p.now)  # fmt: skip
    # CREATE_CHILD_SA { SA, Ni, KEi(x25519), TSi, TSr } -->  <-- { N(INVALID_KE_PAYLOAD) }
    _, _resp = p.roundtrip()
    # CREATE_CHILD_SA { SA, Ni, KEi(ecp256), TSi, TSr } -->  <-- { SA, Nr, KEr, TSi, TSr }
    p.roundtrip()
    (ci,) = events(p.i)
    assert isinstance(ci, ChildSaUp)
    assert p.i.tm.my_mid == p.r.tm.peer_mid == 4


def test_rekey_child_sa() -> None:
    p = establish_pair()
    assert p.r is not None
    (old_spi,) = p.i.children
    old_out = p.i.children[old_spi].spi_out
    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } -->  <-- { SA, Nr, TSi, TSr }
    p.i.rekey_child(old_spi, p.now)
    p.roundtrip()
    (ri, closing) = events(p.i)  # the old one is being deleted (our DELETE is out)
    (rr,) = events(p.r)
    assert isinstance(closing, ChildSaClosing) and closing.spi_in == old_spi
    assert isinstance(ri, ChildSaRekeyed) and isinstance(rr, ChildSaRekeyed)
    assert (ri.old_spi_in, ri.old_spi_out) == (old_spi, old_out)
    assert (rr.old_spi_in, rr.old_spi_out) == (old_out, old_spi)
    assert_child_keys_match(ri.new, rr.new)
    # INFORMATIONAL { D(ESP, old) } -->   <-- { D(ESP, old) }: the rekey initiator
    # deletes the old SA on its own (RFC 7296 §2.8).
    req, _ = p.roundtrip()
    assert parse_header(req[0]).exchange == ExchangeType.INFORMATIONAL
    assert [type(e) for e in events(p.i)] == [ChildSaDown]
    assert [type(e) for e in events(p.r)] == [ChildSaDown]
    assert set(p.i.children) == {ri.new.spi_in}


def test_delete_ike_sa_from_either_side() -> None:
    p = establish_pair()
    assert p.r is not None
    # INFORMATIONAL { D(IKE) } -->   <-- { }
    p.i.delete(p.now)
    p.roundtrip()
    assert p.i.is_destroyed and p.r.is_destroyed
    assert [type(e) for e in events(p.i)] == [ChildSaClosing, ChildSaDown, IkeSaDown]
    assert [type(e) for e in events(p.r)] == [ChildSaDown, IkeSaDown]
    # And the responder deleting (its requests travel <--).
    p = establish_pair()
    assert p.r is not None
    p.r.delete(p.now)
    p.r_to_i()
    p.i_to_r()
    assert p.i.is_destroyed and p.r.is_destroyed


def test_liveness_check() -> None:
    p = establish_pair()
    assert p.r is not None
    # INFORMATIONAL { } -->   <-- { }
    p.i.check_liveness(p.now)
    req, resp = p.roundtrip()
    assert len(req) == 1 and len(resp) == 1
    assert p.i.tm.my_mid == 3 and p.r.tm.peer_mid == 3
    assert events(p.i) == [] and events(p.r) == []


def test_request_with_a_wrong_message_id_is_dropped() -> None:
    p = establish_pair()
    assert p.r is not None
    p.i.tm.my_mid = 7  # a request from the future
    p.i.check_liveness(p.now)
    _, resp = p.roundtrip()
    assert resp == [] and p.r.tm.counters.dropped_bad_message_id == 1


def test_tampered_encrypted_message_is_dropped_silently() -> None:
    p = Pair(*configs())
    p.roundtrip()
    (req,) = p.i_to_r(drop=True)
    bad = req[:-1] + bytes([req[-1] ^ 1])
    assert p.r is not None
    p.r.receive_datagram(bad, (A[0], 4500), 0)
    assert p.r.datagrams_to_send(0) == [] and not p.r.is_destroyed


def test_unsupported_critical_payload_is_answered() -> None:
    from tests_helpers import with_critical_unknown

    p = Pair(*configs(), start=False)
    data = with_critical_unknown()
    assert p.responder.receive_datagram(data, A, 0) is None
    ((answer, _),) = p.responder.datagrams_to_send(0)
    notify = decode(answer).notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD)
    assert notify is not None and notify.data == bytes([222])


def test_malformed_ike_auth_is_answered_with_invalid_syntax() -> None:
    from espfast.control.message import Message

    p = Pair(*configs())
    p.roundtrip()
    p.i_to_r(drop=True)
    assert p.r is not None
    # An IKE_AUTH request without AUTH, correctly encrypted: { N(INVALID_SYNTAX) } answers.
    bad = Message(p.i.spi_i, p.i.spi_r, ExchangeType.IKE_AUTH, 1, False, True, ())
    p.r.receive_datagram(p.i.encode(bad)[0], (A[0], 4500), 0)
    ((answer, _),) = p.r.datagrams_to_send(0)
    p.i.receive_datagram(answer, (B[0], 4500), 0)
    assert p.r.is_destroyed and p.i.is_destroyed
    downs = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "INVALID_SYNTAX" in downs[0].reason


def test_simultaneous_create_child_sa_from_both_sides() -> None:
    from espfast.control.config import ChildConfig

    p = establish_pair()
    assert p.r is not None
    # Both sides start CREATE_CHILD_SA at once; each answers the other's request while
    # its own is outstanding (window 1 per direction, RFC 7296 §2.3).
    p.i.create_child(ChildConfig("net", (NET_A,), (NET_B,)), p.now)
    p.r.create_child(ChildConfig("net", (NET_B,), (NET_A,)), p.now)
    p.i_to_r()  # i's request --> r; r's answer and r's own request queue up
    p.r_to_i()  # <-- r's response and r's request; i answers
    p.i_to_r()  # i's response --> r
    up_i = [e for e in events(p.i) if isinstance(e, ChildSaUp)]
    up_r = [e for e in events(p.r) if isinstance(e, ChildSaUp)]
    assert len(up_i) == 2 and len(up_r) == 2
    assert {e.spi_in for e in up_i} == {e.spi_out for e in up_r}
    assert len(p.i.children) == 3 and len(p.r.children) == 3


def test_invalid_major_version_and_unknown_spi_are_answered_and_rate_limited() -> None:
    from espfast.control.message import Message, encode

    p = Pair(*configs(), start=False)
    data = bytearray(encode(Message(1, 0, ExchangeType.IKE_SA_INIT, 0, False, True, ())))
    data[17] = 0x30  # IKE version 3.0
    assert p.responder.receive_datagram(bytes(data), A, 0) is None
    ((answer, _),) = p.responder.datagrams_to_send(0)
    assert decode(answer).notify(NotifyType.INVALID_MAJOR_VERSION) is not None
    assert answer[17] == 0x20  # we speak 2.0
    unknown = encode(Message(5, 6, ExchangeType.INFORMATIONAL, 3, False, True, ()))
    for _ in range(25):
        p.responder.receive_datagram(unknown, A, 1.5)
    answers = p.responder.datagrams_to_send(1.5)
    assert len(answers) == 10  # rate-limited
    reply = decode(answers[0][0])
    assert (reply.spi_i, reply.spi_r, reply.message_id, reply.is_response) == (5, 6, 3, True)
    assert reply.notify(NotifyType.INVALID_IKE_SPI) is not None


def test_status_shows_names_and_numbers_but_no_keys() -> None:
    p = Pair(*configs())
    p.establish()
    assert p.r is not None
    _, child = up(events(p.i))
    status = p.i.status()
    assert status["state"] == "established" and status["remote"] == "198.18.0.2:4500"
    assert status["remote_id"] == "b.example.org"
    assert status["algorithms"] == "aes256gcm16-prfsha384-x25519"
    (c,) = status["children"]  # type: ignore[misc]
    assert c["spi_in"] == f"{child.spi_in:08x}" and c["algorithms"] == "aes128gcm16"
    text = repr(status) + repr(p.r.status())
    for key in (child.enc_key_in, child.enc_key_out, bytes(p.i.keys.sk_d)):
        assert key.hex() not in text and repr(key) not in text


def test_responder_learns_its_local_port_from_the_shell() -> None:
    p = Pair(*configs())
    p.roundtrip()
    assert p.r is not None and p.r.local == B
    (req,) = p.i_to_r(drop=True)
    p.r.receive_datagram(req, (A[0], 4500), 0, local=(B[0], 4500))
    assert p.r.local == (B[0], 4500) and p.r.is_established


def test_initiating_without_a_child_is_a_local_error() -> None:
    from dataclasses import replace

    from espfast.control.errors import LocalProtocolError
    from espfast.control.ike_sa import IkeSa
    from espfast.control.rng import DeterministicRng

    ci, _ = configs()
    with pytest.raises(LocalProtocolError, match="no child"):
        IkeSa.initiate(replace(ci, children=()), local=A, remote=B, rng=DeterministicRng(), now=0)


def test_rekey_ike_sa() -> None:
    from espfast.control.events import IkeSaRekeyed

    p = establish_pair()
    assert p.r is not None
    old_i, old_r = p.i, p.r
    # CREATE_CHILD_SA { SA(IKE, SPIi'), Ni, KEi } -->   <-- { SA(IKE, SPIr'), Nr, KEr }
    p.i.rekey(p.now)
    req, _ = p.roundtrip()
    assert parse_header(req[0]).exchange == ExchangeType.CREATE_CHILD_SA
    (ri,) = events(old_i)
    (rr,) = events(old_r)
    assert isinstance(ri, IkeSaRekeyed) and isinstance(rr, IkeSaRekeyed)
    new_i, new_r = ri.new_sa, rr.new_sa
    assert (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    assert new_i.spi_i not in (old_i.spi_i, old_i.spi_r)
    assert bytes(new_i.keys.sk_d) == bytes(new_r.keys.sk_d) != bytes(old_i.keys.sk_d)
    assert len(new_i.children) == 1 and not old_i.children
    # INFORMATIONAL { D(IKE) } --> on the old SA;   <-- { }
    p.roundtrip()
    assert old_i.is_destroyed and old_r.is_destroyed
    # The old SA closes quietly: to the shell it is the same IKE SA, under new SPIs.
    assert events(old_i) == [] and events(old_r) == []
    assert new_i.ike_sa_id == old_i.ike_sa_id and new_r.ike_sa_id == old_r.ike_sa_id
    # The new IKE SA works, with Message IDs from 0, and still owns the Child SA.
    p.i, p.r = new_i, new_r
    p.i.check_liveness(p.now)
    req, resp = p.roundtrip()
    assert parse_header(req[0]).message_id == 0 and len(resp) == 1
    (spi,) = new_i.children
    p.i.delete_child(spi, p.now)
    p.roundtrip()
    assert [type(e) for e in events(new_i)] == [ChildSaClosing, ChildSaDown]
    assert [type(e) for e in events(new_r)] == [ChildSaDown]


def test_simultaneous_child_rekey_leaves_one_new_sa() -> None:
    p = establish_pair()
    assert p.r is not None
    (old_i,) = p.i.children
    (old_r,) = p.r.children
    # Both ends rekey the same Child SA at once (RFC 7296 §2.8.1):
    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } --> and <-- cross on the wire.
    p.i.rekey_child(old_i, p.now)
    p.r.rekey_child(old_r, p.now)
    for _ in range(6):
        p.i_to_r()
        p.r_to_i()
    evs_i, evs_r = events(p.i), events(p.r)
    assert [type(e) for e in evs_i].count(ChildSaRekeyed) == 2
    # The redundant new SA and the old one are deleted; one new SA is left on each side,
    # the same one.
    assert len(p.i.children) == 1 and len(p.r.children) == 1
    ((spi_i, child_i),) = p.i.children.items()
    ((spi_r, child_r),) = p.r.children.items()
    assert (child_i.spi_out, child_r.spi_out) == (spi_r, spi_i)
    assert old_i not in p.i.children and old_r not in p.r.children
    downs_i = [e for e in evs_i if isinstance(e, ChildSaDown)]
    downs_r = [e for e in evs_r if isinstance(e, ChildSaDown)]
    assert len(downs_i) == 2 and len(downs_r) == 2
    assert p.i.tm.active is None and p.r.tm.active is None


def test_rekey_request_for_a_child_being_deleted_is_a_temporary_failure() -> None:
    from espfast.control.events import ChildSaFailed

    p = establish_pair()
    assert p.r is not None
    (old_i,) = p.i.children
    (old_r,) = p.r.children
    p.r.delete_child(old_r, p.now)  # r is closing it ...
    p.i.rekey_child(old_i, p.now)  # ... while i asks to rekey it
    p.i_to_r()  # r answers N(TEMPORARY_FAILURE)
    p.r_to_i()
    p.i_to_r()
    evs = events(p.i)
    failed = [e for e in evs if isinstance(e, ChildSaFailed)]
    assert failed and "TEMPORARY_FAILURE" in failed[0].reason
    assert not p.i.children and not p.r.children


def test_request_overtaking_the_ike_auth_answer_is_dropped_then_retransmitted() -> None:
    p = Pair(*configs())
    assert p.i is not None
    # IKE_SA_INIT -->  <--  IKE_AUTH { IDi, AUTH, SA, TSi, TSr } -->
    p.roundtrip()
    p.i_to_r()
    assert p.r is not None and p.r.is_established
    # <-- { IDr, AUTH, SA, TSi, TSr } is delayed on the wire, while the responder, for
    # whom the IKE SA is up, already starts INFORMATIONAL { } (a liveness check).
    (auth_answer,) = p.r.datagrams_to_send(p.now)
    p.r.check_liveness(p.now)
    p.r_to_i()
    # The initiator cannot take a request before IKE_AUTH completes: it drops it
    # unanswered (answering with an error would leave the two ends disagreeing).
    assert p.i.tm.counters.dropped_before_established == 1
    assert p.i.datagrams_to_send(p.now) == [] and p.i.tm.peer_mid == 0
    # <-- IKE_AUTH answer arrives late; the responder's retransmission is then answered.
    p.i.receive_datagram(auth_answer[0], (B[0], auth_answer[1][1]), p.now)
    assert p.i.is_established
    p.now += p.r.config.retransmit_timeout
    p.r.handle_timer(p.now)
    p.r_to_i()  # INFORMATIONAL { } -->  (retransmitted)
    p.i_to_r()  # <-- { }
    assert p.r.tm.active is None and p.i.tm.peer_mid == 1
    assert p.r.tm.counters.retransmits == 1
