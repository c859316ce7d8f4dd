"""Peer input that got past every check (adversarial review, item 9): a certificate whose
issuer name does not parse, and traffic selectors whose range ends before it starts. Each
used to raise out of the control plane (a traceback per packet, no answer). Now a real
``espfast up`` answers each with the right notify (AUTHENTICATION_FAILED for the
certificate, INVALID_SYNTAX for the selectors), logs one line, counts a protocol error,
and still serves a well-behaved peer right after."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from espfast.control.constants import TsType
from espfast.control.events import IkeSaDown, IkeSaUp, TrafficSelector
from espfast.netns import TwoHosts
from tests.netns.updaemon import counters
from tests.security.secpeer import attack, configs, peer_config, pki, pubkey_configs, start_b


def test_reversed_traffic_selector_is_invalid_syntax(tmp_path: Path) -> None:
    a_path, b_path = configs(tmp_path)
    good = peer_config(a_path)
    child = good.children[0]
    # TSi 198.19.1.255 - 198.19.1.0: the range ends before it starts.
    reversed_ts = TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535,
                                  ipaddress.ip_address("198.19.1.255"),
                                  ipaddress.ip_address("198.19.1.0"))  # fmt: skip
    bad = dataclasses.replace(good, children=(dataclasses.replace(child, local_ts=(reversed_ts,)),))
    with TwoHosts.create("sec-ts") as hosts:
        b = start_b(hosts, b_path)
        refused = attack(hosts, bad)
        then = attack(hosts, good)
        status, out, err = b.stop()
    assert isinstance(refused, IkeSaDown), refused
    assert "INVALID_SYNTAX" in refused.reason, refused
    assert isinstance(then, IkeSaUp), then  # the daemon serves the next peer
    assert status == 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "ends before it starts" in line]
    assert len(lines) == 1, err
    assert "198.19.1.255 - 198.19.1.0" in lines[0]
    c = counters(out)
    assert c["ike_protocol_errors"] == 1 and c["input_errors"] == 0, out


def unparseable_issuer(der: bytes, issuer: bytes) -> bytes:
    """``der`` with the first attribute value of its issuer name made an INTEGER: the
    certificate still decodes; its issuer name does not."""
    at = der.index(issuer)  # the issuer comes before the subject in the TBSCertificate
    tag = next(i for i in range(at, at + len(issuer)) if der[i] in (0x0C, 0x13))
    return der[:tag] + b"\x02" + der[tag + 1 :]


def test_certificate_whose_issuer_does_not_parse_is_authentication_failed(
    tmp_path: Path,
) -> None:
    from cryptography import x509

    ca = pki(tmp_path)
    a_path, b_path = pubkey_configs(tmp_path, ca)
    good = peer_config(a_path)
    issuer = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes()).subject.public_bytes()
    bad_cert = unparseable_issuer(good.auth.certs[0], issuer)
    bad = dataclasses.replace(good, auth=dataclasses.replace(good.auth, certs=(bad_cert,)))
    with TwoHosts.create("sec-cert") as hosts:
        b = start_b(hosts, b_path)
        refused = attack(hosts, bad)
        then = attack(hosts, good)
        status, out, err = b.stop()
    assert isinstance(refused, IkeSaDown), refused
    assert "AUTHENTICATION_FAILED" in refused.reason, refused
    assert isinstance(then, IkeSaUp), then
    assert status == 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "bad certificate from the peer" in line]
    assert len(lines) == 1, err
    c = counters(out)
    assert c["ike_protocol_errors"] == 1 and c["input_errors"] == 0, out
