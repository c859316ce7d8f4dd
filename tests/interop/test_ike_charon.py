"""espfast's IKEv2 control plane against strongSwan's charon, over real UDP in namespaces.

espfast.control runs in this process through a minimal I/O shell (ike_driver.py) bound
in namespace a; charon (kernel-libipsec) runs in namespace b. Each scenario checks that
both ends agree on the Child SA: SPIs, and the very keys (charon logs its Child SA keys
at chd level 4 into the test's tmp_path). Traffic through these SAs is the daemon's to
show; test_esp_libipsec.py shows espfast's ESP works with charon's under such keys.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from bench.tunnels.peerutil import cert_pem, issue, key_pem, new_key
from espfast.control.auth import certificate_auth
from espfast.control.certs import LocalCredential, TrustStore
from espfast.control.config import AuthConfig, ChildConfig, IkeConfig
from espfast.control.constants import IdType
from espfast.control.events import (
    ChildSaFailed,
    ChildSaRekeyed,
    ChildSaUp,
    IkeSaDown,
    IkeSaUp,
    TrafficSelector,
)
from espfast.control.ike_sa import IkeSa
from espfast.control.proposals import parse_esp, parse_ike
from espfast.control.responder import Responder
from espfast.control.rng import SystemRng
from espfast.netns import TwoHosts, wait_for
from tests.interop.conftest import CharonFactory
from tests.interop.ike_driver import IkeDriver, run_beside
from tests.interop.strongswan import Charon, CharonError, Connection, Psk, swanctl_conf

SECRET = b"espfast <-> charon interop secret"
TS_A, TS_B = "198.19.1.0/24", "198.19.2.0/24"


def espfast_config(
    auth: AuthConfig, ike: str = "aes128gcm16-prfsha256-x25519", esp: str = "aes128gcm16"
) -> IkeConfig:
    child = ChildConfig(
        "net",
        (TrafficSelector.from_network(TS_A),),
        (TrafficSelector.from_network(TS_B),),
        parse_esp(esp),
    )
    return IkeConfig(
        "charon",
        (IdType.FQDN, b"a.peer.test"),
        (IdType.FQDN, b"b.peer.test"),
        auth,
        (child,),
        parse_ike(ike),
        retransmit_timeout=1.0,
        retransmit_tries=3,
    )


def start_charon(
    hosts: TwoHosts,
    charons: CharonFactory,
    *,
    files: dict[str, bytes] | None = None,
    settings: dict[str, str] | None = None,
    **options: Any,
) -> Charon:
    conn = Connection(
        local_addrs=hosts.addr_b,
        remote_addrs=hosts.addr_a,
        local_id="b.peer.test",
        remote_id="a.peer.test",
        local_ts=TS_B,
        remote_ts=TS_A,
        **options,
    )
    secrets = [] if files else [Psk(("a.peer.test", "b.peer.test"), SECRET)]
    # chd level 4: charon logs its Child SA keys (into this test's tmp_path) for same_keys().
    return charons.start(
        hosts.b, swanctl_conf([conn], secrets), files=files, settings=settings,
        log_levels={"chd": 4},
    )  # fmt: skip


def same_keys(up: ChildSaUp, charon: Charon, espfast_initiated: bool) -> None:
    """espfast's Child SA keys are the ones charon derived (RFC 7296 §2.17 KEYMAT: the
    initiator's keys first; AEADs key || salt). charon logs them at chd level 4."""
    keys = charon.child_keys()
    ours, theirs = ("initiator", "responder") if espfast_initiated else ("responder", "initiator")
    assert up.enc_key_out == keys[f"encryption {ours}"]
    assert up.enc_key_in == keys[f"encryption {theirs}"]
    assert up.integ_key_out == keys.get(f"integrity {ours}", b"")
    assert up.integ_key_in == keys.get(f"integrity {theirs}", b"")


def agree(up: ChildSaUp, charon: Charon, espfast_initiated: bool) -> None:
    """charon has the same Child SA: SPIs swapped, UDP-encapsulated, the same keys."""
    spis = {(int(c["spi-in"], 16), int(c["spi-out"], 16)) for c in charon.installed_children("net")}
    assert (up.spi_out, up.spi_in) in spis
    assert all(c["encap"] == "yes" for c in charon.installed_children("net"))
    same_keys(up, charon, espfast_initiated)


def establish(
    driver: IkeDriver, hosts: TwoHosts, charon: Charon, config: IkeConfig, initiator: str
) -> ChildSaUp:
    """IKE_SA_INIT + IKE_AUTH with its Child SA, started by ``initiator``; the Child SA
    as espfast reports it (after checking that charon agrees)."""
    if initiator == "espfast":
        sa = IkeSa.initiate(config, local=(hosts.addr_a, 500), remote=(hosts.addr_b, 500),
                            rng=SystemRng(), now=time.monotonic())  # fmt: skip
        driver.sas.append(sa)
        failed = (ChildSaFailed, IkeSaDown)
        driver.run(lambda: any(isinstance(e, (ChildSaUp, *failed)) for e in driver.events))
    else:
        driver.responder = Responder([config], (hosts.addr_a, 500), SystemRng())
        run_beside(driver, lambda: charon.initiate("net"))
        driver.run(lambda: bool(driver.event(ChildSaUp)), timeout=2)
    assert not driver.event(IkeSaDown), driver.events
    [up] = driver.event(ChildSaUp)
    charon.wait_child("net")
    agree(up, charon, initiator == "espfast")
    return up


@pytest.mark.parametrize(
    ("ike", "esp", "algorithms"),
    [
        ("aes128gcm16-prfsha256-x25519", "aes128gcm16", "aes128gcm16-prfsha256-x25519"),
        ("aes256-sha384-ecp384", "aes256-sha512", "aes256-sha384-prfsha384-ecp384"),
        ("chacha20poly1305-prfsha512-modp3072", "chacha20poly1305", None),
    ],
)
def test_espfast_initiates_psk(
    hosts: TwoHosts, charons: CharonFactory, ike: str, esp: str, algorithms: str | None
) -> None:
    charon = start_charon(hosts, charons, proposals=ike, esp_proposals=esp)
    config = espfast_config(AuthConfig(psk=SECRET), ike, esp)
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        up = establish(driver, hosts, charon, config, "espfast")
        assert up.transform == esp
        assert driver.event(IkeSaUp)[0].algorithms == (algorithms or ike)


def test_charon_initiates_psk(hosts: TwoHosts, charons: CharonFactory) -> None:
    charon = start_charon(hosts, charons)
    config = espfast_config(AuthConfig(psk=SECRET))
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        assert establish(driver, hosts, charon, config, "charon").transform == "aes128gcm16"
    charon.wait_log("CHILD_SA net{1} established")


@pytest.mark.parametrize("initiator", ["espfast", "charon"])
def test_invalid_ke_retry(hosts: TwoHosts, charons: CharonFactory, initiator: str) -> None:
    # The initiator's first key exchange (x25519) is not the responder's: INVALID_KE_PAYLOAD
    # names ecp256 and the initiator starts over with it (RFC 7296 §1.2).
    both, only = "aes128gcm16-prfsha256-x25519-ecp256", "aes128gcm16-prfsha256-ecp256"
    ours, theirs = (both, only) if initiator == "espfast" else (only, both)
    charon = start_charon(hosts, charons, proposals=theirs)
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        establish(driver, hosts, charon, espfast_config(AuthConfig(psk=SECRET), ours), initiator)
        assert driver.event(IkeSaUp)[0].algorithms == only
    charon.wait_log("ECP_256")  # "requesting ECP_256" / "it requested ECP_256"


@pytest.mark.parametrize("initiator", ["espfast", "charon"])
def test_rekey_both_ways_then_delete(
    hosts: TwoHosts, charons: CharonFactory, initiator: str
) -> None:
    charon = start_charon(hosts, charons)
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        up = establish(driver, hosts, charon, espfast_config(AuthConfig(psk=SECRET)), initiator)
        [sa] = driver.sas
        # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } from espfast, then from charon.
        sa.rekey_child(up.spi_in, time.monotonic())
        driver.run(lambda: len(driver.event(ChildSaRekeyed)) == 1)
        first = driver.event(ChildSaRekeyed)[0]
        assert (first.old_spi_in, first.old_spi_out) == (up.spi_in, up.spi_out)
        charon.wait_log("CHILD_SA net{2} established")
        agree(first.new, charon, espfast_initiated=True)
        charon.rekey("net")
        driver.run(lambda: len(driver.event(ChildSaRekeyed)) == 2)
        second = driver.event(ChildSaRekeyed)[1]
        assert second.old_spi_in == first.new.spi_in
        charon.wait_log("CHILD_SA net{3} established")
        agree(second.new, charon, espfast_initiated=False)
        # INFORMATIONAL { D } from the side that did not initiate.
        if initiator == "charon":
            sa.delete(time.monotonic())
            driver.run(lambda: bool(driver.event(IkeSaDown)))
        else:
            run_beside(driver, lambda: charon.terminate("peer"))
            driver.run(lambda: bool(driver.event(IkeSaDown)), timeout=2)
    assert wait_for(lambda: charon.list_sas() == [], timeout=5)


def test_proposal_mismatch_fails_on_both_sides(
    hosts: TwoHosts, charons: CharonFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="espfast.control")
    charon = start_charon(hosts, charons, proposals="aes256-sha384-ecp384")
    config = espfast_config(AuthConfig(psk=SECRET))
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        driver.responder = Responder([config], (hosts.addr_a, 500), SystemRng())
        with pytest.raises(CharonError, match="NO_PROPOSAL_CHOSEN"):
            run_beside(driver, lambda: charon.initiate("net", timeout=5))
        assert driver.responder.counters.refused == 1
    assert charon.installed_children("net") == []
    # One clear line on each side.
    assert "no acceptable proposal (peer offered aes256-sha384-prfsha384-ecp384)" in caplog.text
    charon.wait_log("received NO_PROPOSAL_CHOSEN notify error")


def certificates(kind: str) -> tuple[AuthConfig, dict[str, bytes]]:
    """A CA, a.peer.test for espfast and b.peer.test for charon (DNS SANs): espfast's
    AuthConfig and charon's swanctl files."""
    ca_key = new_key(kind)
    ca = issue("interop CA", ca_key)
    key_a, key_b = new_key(kind), new_key(kind)
    cert_a = issue("a.peer.test", key_a, (ca, ca_key), dns=["a.peer.test"])
    cert_b = issue("b.peer.test", key_b, (ca, ca_key), dns=["b.peer.test"])
    auth = certificate_auth(LocalCredential(cert_a, key_a), TrustStore([ca]), time.time)
    files = {
        "x509ca/ca.pem": cert_pem(ca),
        "x509/b.pem": cert_pem(cert_b),
        "private/b.key": key_pem(key_b),
    }
    return auth, files


# ECDSA with RFC 7427 signatures (both announce SIGNATURE_HASH_ALGORITHMS); RSA with the
# classic method 1, as Apple and Windows clients use it (charon told not to use RFC 7427).
CERT_CASES = [
    pytest.param("ecdsa", {}, "ECDSA_WITH_SHA256_DER", id="ecdsa-rfc7427"),
    pytest.param("rsa", {"signature_authentication": "no"}, "RSA signature", id="rsa-classic"),
]


@pytest.mark.parametrize(("kind", "settings", "method"), CERT_CASES)
@pytest.mark.parametrize("initiator", ["espfast", "charon"])
def test_certificates(
    hosts: TwoHosts,
    charons: CharonFactory,
    kind: str,
    settings: dict[str, str],
    method: str,
    initiator: str,
) -> None:
    auth, files = certificates(kind)
    charon = start_charon(
        hosts, charons, files=files, settings=settings, auth="pubkey", local_cert="b.pem"
    )
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        establish(driver, hosts, charon, espfast_config(auth), initiator)
    # Both signed with the same method family, and charon verified espfast's signature.
    charon.wait_log(f"authentication of 'b.peer.test' (myself) with {method}")
    charon.wait_log(f"authentication of 'a.peer.test' with {method} successful")


@pytest.mark.parametrize("initiator", ["espfast", "charon"])
def test_fragmented_certificate_chain(
    hosts: TwoHosts, charons: CharonFactory, initiator: str
) -> None:
    # RSA-3072 end entity + intermediate CA in CERT payloads: IKE_AUTH is well over the
    # 1280-byte fragment size both ends use, so it crosses as RFC 7383 fragments.
    root_key, im_key = new_key("rsa", 3072), new_key("rsa", 3072)
    root = issue("interop root", root_key)
    im = issue("interop intermediate", im_key, (root, root_key), ca=True)
    key_a, key_b = new_key("rsa", 3072), new_key("rsa", 3072)
    cert_a = issue("a.peer.test", key_a, (im, im_key), dns=["a.peer.test"])
    cert_b = issue("b.peer.test", key_b, (im, im_key), dns=["b.peer.test"])
    auth = certificate_auth(LocalCredential(cert_a, key_a, (im,)), TrustStore([root]), time.time)
    files = {
        "x509ca/root.pem": cert_pem(root),
        "x509ca/intermediate.pem": cert_pem(im),
        "x509/b.pem": cert_pem(cert_b),
        "private/b.key": key_pem(key_b),
    }
    charon = start_charon(hosts, charons, files=files, auth="pubkey", local_cert="b.pem")
    with IkeDriver(hosts.a, hosts.addr_a) as driver:
        establish(driver, hosts, charon, espfast_config(auth), initiator)
    charon.wait_log("reassembled fragmented IKE message")
    charon.wait_log("splitting IKE message")
