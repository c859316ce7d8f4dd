"""What an authenticated peer is entitled to (the adversarial review, items 1, 6, 8, 11),
in memory: its connection (chosen by identity after authentication, with the IKE
proposal re-checked), one identity whatever it calls itself (leases and uniqueness on
the canonical identity), only its leased addresses as its side of a Child SA; and, as
initiator, a responder that picks our second proposal."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from ikepair import NET_B, A, B, Pair, configs, drain, events, exchange

from espfast.ca import build_ca, generate_key, issue_cert
from espfast.control.auth import certificate_auth, certificate_identity
from espfast.control.certs import LocalCredential, TrustStore
from espfast.control.config import ChildConfig, IkeConfig
from espfast.control.constants import IdType, NotifyType
from espfast.control.errors import RemoteProtocolError
from espfast.control.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp, TrafficSelector
from espfast.control.identity import Identity
from espfast.control.manager import IkeManager
from espfast.control.policy import candidates
from espfast.control.proposals import allows, parse_esp, parse_ike, select
from espfast.control.rng import DeterministicRng
from espfast.control.tasks.child_create import ChildNegotiation

NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
ANY4 = TrafficSelector.from_network("0.0.0.0/0")
POOL = ipaddress.ip_network("198.19.100.0/30")  # two addresses
IP = ipaddress.ip_address


# -- item 11: the responder picks our second proposal ------------------------------------


def test_responder_may_choose_our_second_proposal() -> None:
    """IKE_SA_INIT { SA(1: aes256gcm16, 2: aes128gcm16) } --> <-- { SA(2: aes128gcm16) }:
    the answer keeps the number the proposal had in our offer (RFC 7296 §3.3.1)."""
    ci, cr = configs(ike="aes256gcm16-prfsha384-x25519,aes128gcm16-prfsha256-x25519",
                     ike_r="aes128gcm16-prfsha256-x25519", esp="aes256gcm16,aes128gcm16",
                     esp_r="aes128gcm16")  # fmt: skip
    p = Pair(ci, cr)
    p.establish()
    assert p.i is not None and p.i.is_established and p.i.chosen is not None
    assert (p.i.chosen.num, str(p.i.chosen)) == (2, "aes128gcm16-prfsha256-x25519")
    (up,) = [e for e in events(p.i) if isinstance(e, ChildSaUp)]
    assert up.transform == "aes128gcm16"


# -- item 8: the connection is the one whose identity and authentication matched ---------


def _responder_configs() -> tuple[IkeConfig, IkeConfig, IkeConfig]:
    """An open connection (%any, no remote_id) listed first, then a site whose PSK and
    identity the peer has, allowing aes128gcm16 only; and the site peer's own config."""
    ci, site = configs(psk_i=b"the site's own key", psk_r=b"the site's own key",
                       ike="aes128gcm16-prfsha256-x25519")  # fmt: skip
    _, open_ = configs(psk_r=b"the road warriors' key", ike="aes256gcm16-prfsha384-x25519,"
                       "aes128gcm16-prfsha256-x25519")  # fmt: skip
    open_ = replace(open_, name="open", remote_id=None)
    return open_, site, ci


def _serve(responder_configs: list[IkeConfig], ci: IkeConfig) -> tuple[list[object], list[object]]:
    gw = IkeManager(responder_configs, rng=DeterministicRng("gw"), local=B)
    client = IkeManager([], rng=DeterministicRng("client"), local=A)
    client.initiate(ci, local=A, remote=B, now=0)
    exchange(gw, [(client, A[0])], now=0)
    return drain(client), drain(gw)


def test_a_catch_all_connection_listed_first_does_not_lock_out_a_site() -> None:
    open_, site, ci = _responder_configs()
    _, ev_gw = _serve([open_, site], ci)
    (up,) = [e for e in ev_gw if isinstance(e, IkeSaUp)]
    assert up.name == site.name  # not "open": its key is not the site's


def test_the_negotiated_proposal_must_be_one_the_peers_connection_allows() -> None:
    """Site a's connection allows aes256gcm16 only; another site's (listed first) allows
    aes128gcm16. Peer a offers aes128gcm16, which IKE_SA_INIT takes for the other site's
    connection, then authenticates as a: AUTHENTICATION_FAILED, not an IKE SA with
    algorithms its own connection never allowed."""
    ci, site_a = configs(ike="aes128gcm16-prfsha256-x25519",
                         ike_r="aes256gcm16-prfsha384-x25519")  # fmt: skip
    other = replace(site_a, name="site-c", remote_id=(IdType.FQDN, b"c.example.org"),
                    ike_proposals=parse_ike("aes128gcm16-prfsha256-x25519"))  # fmt: skip
    ev_client, ev_gw = _serve([other, site_a], ci)
    assert not [e for e in ev_gw if isinstance(e, IkeSaUp)]
    (down,) = [e for e in ev_client if isinstance(e, IkeSaDown)]
    assert "AUTHENTICATION_FAILED" in down.reason
    # With aes256gcm16 offered too, IKE_SA_INIT takes it for a's connection: up.
    ci = replace(ci, ike_proposals=parse_ike("aes256gcm16-prfsha384-x25519"))
    _, ev_gw = _serve([other, site_a], ci)
    (up,) = [e for e in ev_gw if isinstance(e, IkeSaUp)]
    assert up.name == site_a.name


def test_candidates_rank_exact_before_wildcard_before_any() -> None:
    _, site = configs()
    wild = replace(site, name="wild", remote_id=(IdType.FQDN, b"*.example.org"))
    anyone = replace(site, name="any", remote_id=None)
    other = replace(site, name="other", remote_id=(IdType.FQDN, b"c.example.org"))
    peer = (IdType.FQDN, b"A.Example.Org")
    assert [c.name for c in candidates([anyone, wild, other, site], peer, None)] == [
        "gw-b", "wild", "any",
    ]  # fmt: skip


# -- item 6: one certificate, many identities ----------------------------------------------


@cache
def pki() -> tuple[TrustStore, LocalCredential, LocalCredential, LocalCredential]:
    ca_key = generate_key("ecdsa")
    ca = build_ca(ca_key, now=NOW)

    def cred(name: str, *sans: str) -> LocalCredential:
        key = generate_key("ecdsa")
        cert = issue_cert(ca, ca_key, key.public_key(), Identity.parse(name), now=NOW,
                          sans=[Identity.parse(s) for s in sans])  # fmt: skip
        return LocalCredential(cert, key, ())

    return (TrustStore([ca]), cred("gw.example.org"),
            cred("alice@example.org", "alice.example.org"), cred("bob@example.org"))  # fmt: skip


def spellings(cred: LocalCredential) -> list[tuple[int, bytes]]:
    """Six IDs one certificate proves: e-mail and FQDN in two letter cases, the subject
    DN, the key ID."""
    ski = cred.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    dn = Identity.from_name(cred.cert.subject)
    return [(IdType.RFC822_ADDR, b"alice@example.org"), (IdType.RFC822_ADDR, b"ALICE@Example.ORG"),
            (IdType.FQDN, b"alice.example.org"), (IdType.FQDN, b"Alice.EXAMPLE.org"),
            (int(dn.type), dn.data), (IdType.KEY_ID, ski)]  # fmt: skip


def cert_gateway(unique: str = "no") -> tuple[IkeConfig, IkeConfig]:
    """A gateway (pool of two, certificates, any identity) and a client config."""
    trust, gw, alice, _ = pki()
    ci, cr = configs()
    child_i = ChildConfig("net", (ANY4,), (NET_B,), parse_esp("aes128gcm16"))
    gw_id = (IdType.FQDN, b"gw.example.org")
    ci = replace(ci, children=(child_i,), vips=(IP("0.0.0.0"),), remote_id=gw_id,
                 auth=certificate_auth(alice, trust, NOW.timestamp))  # fmt: skip
    cr = replace(cr, pool=(POOL,), remote_id=None, local_id=(IdType.FQDN, b"gw.example.org"),
                 auth=certificate_auth(gw, trust, NOW.timestamp), unique=unique)  # fmt: skip
    return cr, ci


def connect(gw: IkeManager, ci: IkeConfig, host: str, local_id: tuple[int, bytes],
            cred: LocalCredential | None = None) -> tuple[list[object], list[object]]:  # fmt: skip
    client = IkeManager([], rng=DeterministicRng(host), local=(host, 500))
    cfg = replace(ci, local_id=local_id)
    if cred is not None:
        cfg = replace(cfg, auth=certificate_auth(cred, pki()[0], NOW.timestamp))
    client.initiate(cfg, local=(host, 500), remote=B, now=0)
    exchange(gw, [(client, host)], now=0)
    return drain(client), drain(gw)


def test_one_certificate_under_six_spellings_holds_one_address() -> None:
    cr, ci = cert_gateway()
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    for n, ident in enumerate(spellings(pki()[2])):
        _, ev_g = connect(gw, ci, f"198.18.0.{10 + n}", ident)
        (up,) = [e for e in ev_g if isinstance(e, IkeSaUp)]
        assert up.peer_virtual_ips == ("198.19.100.1",), ident
        assert len({sa.peer_key for sa in gw.sas}) == 1
    # Bob still finds his address: alice's six IKE SAs hold one between them.
    _, ev_g = connect(gw, ci, "198.18.0.30", (IdType.RFC822_ADDR, b"bob@example.org"), pki()[3])
    (up,) = [e for e in ev_g if isinstance(e, IkeSaUp)]
    assert up.peer_virtual_ips == ("198.19.100.2",)


def test_unique_keep_sees_through_spellings() -> None:
    cr, ci = cert_gateway(unique="keep")
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    first, second = spellings(pki()[2])[0], spellings(pki()[2])[3]
    _, ev_g = connect(gw, ci, "198.18.0.10", first)
    assert [e for e in ev_g if isinstance(e, IkeSaUp)]
    ev_c, ev_g = connect(gw, replace(ci, initial_contact=False), "198.18.0.11", second)
    assert not [e for e in ev_g if isinstance(e, IkeSaUp)]
    (down,) = [e for e in ev_c if isinstance(e, IkeSaDown)]
    assert "AUTHENTICATION_FAILED" in down.reason


# -- item 1: a pool client's side is its leased address, nothing else ----------------------


@pytest.mark.parametrize("tsi", ["198.19.100.1/32", "198.19.100.0/30", "0.0.0.0/0"])
def test_a_client_that_asked_for_no_address_gets_no_child_sa(tsi: str) -> None:
    """Alice holds 198.19.100.1. Mallory (authenticated, her own identity) asks for no
    address and proposes TSi = alice's address, the pool, everything: TS_UNACCEPTABLE."""
    cr, ci = configs()
    pool_ts = TrafficSelector.from_network(POOL)
    cr = replace(cr, pool=(POOL,), remote_id=None,
                 children=(ChildConfig("net", (NET_B,), (pool_ts,)),))  # fmt: skip
    alice_cfg = replace(ci, vips=(IP("0.0.0.0"),),
                        children=(ChildConfig("net", (ANY4,), (NET_B,)),))  # fmt: skip
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    connect(gw, alice_cfg, "198.18.0.10", (IdType.FQDN, b"alice.example.org"))
    mallory_cfg = replace(ci, children=(ChildConfig("net", (TrafficSelector.from_network(tsi),),
                                                    (NET_B,)),))  # fmt: skip
    ev_c, ev_g = connect(gw, mallory_cfg, "198.18.0.66", (IdType.FQDN, b"mallory.example.org"))
    assert [e for e in ev_g if isinstance(e, IkeSaUp)]
    assert not [e for e in ev_g if isinstance(e, ChildSaUp)]
    (failed,) = [e for e in ev_c if isinstance(e, ChildSaFailed)]
    assert "TS_UNACCEPTABLE" in failed.reason


def test_a_client_with_an_address_is_narrowed_to_it_in_every_child_sa() -> None:
    """Bob holds 198.19.100.1 and proposes 0.0.0.0/0 (the pool, everyone's addresses
    included): narrowed to his own address, in IKE_AUTH and in any later Child SA."""
    cr, ci = configs()
    pool_ts = TrafficSelector.from_network(POOL)
    cr = replace(cr, pool=(POOL,), remote_id=None,
                 children=(ChildConfig("net", (NET_B,), (pool_ts,)),))  # fmt: skip
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    bob = replace(ci, vips=(IP("0.0.0.0"),), children=(ChildConfig("net", (ANY4,), (NET_B,)),))
    _, ev_g = connect(gw, bob, "198.18.0.11", (IdType.FQDN, b"bob.example.org"))
    (up,) = [e for e in ev_g if isinstance(e, ChildSaUp)]
    own = (TrafficSelector.from_network("198.19.100.1/32"),)
    assert up.remote_ts == own
    (gw_sa,) = gw.sas
    neg = ChildNegotiation(gw_sa, False)
    assert neg._peer_side(cr.children[0]) == own  # what CREATE_CHILD_SA narrows to
    gw_sa.remote_vips = ()
    with pytest.raises(RemoteProtocolError, match="no virtual IP") as exc:
        neg._peer_side(cr.children[0])
    assert exc.value.notify == NotifyType.TS_UNACCEPTABLE


def test_canonical_identities() -> None:
    """Spellings that compare equal share one canonical form; others do not."""
    same = [["alice@example.org", "ALICE@Example.ORG", "email:Alice@example.org"],
            ["gw.example.org", "GW.Example.Org", "@gw.example.org"],
            ["C=CH, O=Example, CN=alice", "c=ch, o=EXAMPLE, cn=ALICE",
             "/C=CH/O=Example/CN=alice"]]  # fmt: skip
    forms = [{Identity.parse(s).canonical() for s in group} for group in same]
    assert [len(f) for f in forms] == [1, 1, 1]
    assert len(set.union(*forms)) == 3  # an FQDN is not the e-mail address, nor a DN
    assert Identity.parse("198.18.0.1").canonical() != Identity.parse("198.18.0.2").canonical()


def test_certificate_identity_is_the_subject_or_the_key() -> None:
    _, _, alice, _ = pki()
    assert certificate_identity(alice.cert) == Identity.from_name(alice.cert.subject).canonical()
    key = generate_key("ecdsa")
    ca_key = generate_key("ecdsa")
    ca = build_ca(ca_key, now=NOW)
    bare = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert certificate_identity(bare) == Identity(IdType.KEY_ID, ski).canonical()


def test_allows_checks_every_negotiated_algorithm() -> None:
    offer = parse_ike("aes128gcm16-prfsha256-x25519")
    chosen = select(offer, [s.to_proposal(1) for s in offer])
    assert allows(parse_ike("aes256gcm16-aes128gcm16-prfsha256-ecp256-x25519"), chosen)
    assert not allows(parse_ike("aes128gcm16-prfsha384-x25519"), chosen)  # other PRF
    assert not allows(parse_ike("aes128gcm16-prfsha256-ecp256"), chosen)  # other group
    assert not allows(parse_ike("aes256gcm16-prfsha256-x25519"), chosen)  # other cipher
