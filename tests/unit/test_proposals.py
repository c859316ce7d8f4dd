"""strongSwan proposal keywords and RFC 7296 §2.7 proposal selection."""

import pytest

from espfast.control.constants import DhGroup, EncrId, IntegId, NotifyType, PrfId, ProtocolId
from espfast.control.constants import TransformType as TT
from espfast.control.errors import RemoteProtocolError
from espfast.control.payloads import Proposal, Transform
from espfast.control.proposals import (
    DATAPLANE_TRANSFORMS,
    DEFAULT_ESP,
    DEFAULT_IKE,
    accept_choice,
    describe,
    key_lengths,
    parse_esp,
    parse_ike,
    select,
)

# The dataplane's Transform keywords (BRIEF: espfast/dataplane.py Transform).
DATAPLANE_KEYWORDS = {
    "aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-sha256", "aes256-sha256",
    "aes128-sha384", "aes256-sha384", "aes128-sha512", "aes256-sha512",
}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "encr", "prf", "integ", "dh"),
    [
        ("aes256gcm16-prfsha384-ecp384", (EncrId.AES_GCM_16, 256), PrfId.HMAC_SHA2_384,
         (), DhGroup.ECP_384),
        ("aes256-sha256-modp2048", (EncrId.AES_CBC, 256), PrfId.HMAC_SHA2_256,
         (IntegId.HMAC_SHA2_256_128,), DhGroup.MODP_2048),
        ("aes128gcm16-x25519", (EncrId.AES_GCM_16, 128), PrfId.HMAC_SHA2_256, (),
         DhGroup.CURVE25519),
        ("chacha20poly1305-prfsha256-x25519", (EncrId.CHACHA20_POLY1305, None),
         PrfId.HMAC_SHA2_256, (), DhGroup.CURVE25519),
    ],
)  # fmt: skip
def test_ike_keywords(text: str, encr: tuple[int, int | None], prf: int,
                      integ: tuple[int, ...], dh: int) -> None:  # fmt: skip
    (spec,) = parse_ike(text)
    assert spec.encr == (encr,)
    assert spec.prf == (prf,)
    assert spec.integ == integ
    assert spec.dh == (dh,)
    assert parse_ike(str(spec)) == (spec,)


@pytest.mark.parametrize(
    ("text", "transform", "esn"),
    [
        ("aes128gcm16", "aes128gcm16", False),
        ("aes256gcm16-esn", "aes256gcm16", True),
        ("aes256-sha256", "aes256-sha256", False),
        ("chacha20poly1305", "chacha20poly1305", False),
    ],
)
def test_esp_keywords_map_to_dataplane_transforms(text: str, transform: str, esn: bool) -> None:
    specs = parse_esp(text)
    offer = [s.to_proposal(i + 1, b"\x00\x00\x00\x01") for i, s in enumerate(specs)]
    chosen = select(specs, offer)
    assert chosen.dataplane_transform == transform
    assert chosen.esn is esn
    assert set(DATAPLANE_TRANSFORMS.values()) == DATAPLANE_KEYWORDS


def test_defaults_parse_and_self_match() -> None:
    ike, esp = parse_ike(DEFAULT_IKE), parse_esp(DEFAULT_ESP)
    chosen = select(ike, [s.to_proposal(i + 1) for i, s in enumerate(ike)])
    assert str(chosen) == "aes256gcm16-prfsha384-x25519"
    assert select(esp, [esp[0].to_proposal(1)]).dataplane_transform == "aes256gcm16"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("aes256gcm16-prfsha384-ecp999", "'ecp999'"),
        ("aes256-sha1-modp2048", "'sha1'"),
        ("aes256gcm16-prfsha256", "no key exchange group"),
        ("aes256-modp2048", "needs an integrity"),
        ("aes256gcm16-sha256-prfsha256-x25519", "take no integrity"),
        ("aes256gcm16-aes256-sha256-x25519", "mixes AEAD"),
        ("sha256-x25519", "no encryption"),
        ("", ""),
    ],
)
def test_bad_ike_keywords(text: str, error: str) -> None:
    if not text:
        assert parse_ike(text) == ()
        return
    with pytest.raises(ValueError, match=error):
        parse_ike(text)


def test_bad_esp_keywords() -> None:
    with pytest.raises(ValueError, match="'prfsha256'"):
        parse_esp("aes128gcm16-prfsha256")
    with pytest.raises(ValueError, match="dataplane"):
        parse_esp("aes192gcm16")
    with pytest.raises(ValueError, match="'noesp'"):
        parse_esp("aes128gcm16-noesp")


def test_responder_prefers_its_own_order() -> None:
    ours = parse_ike("aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha384-x25519")
    theirs = [s.to_proposal(i + 1) for i, s in enumerate(reversed(ours))]
    chosen = select(ours, theirs)
    assert (chosen.encr, chosen.key_len, chosen.num) == (EncrId.AES_GCM_16, 128, 2)
    # Within one proposal our first algorithm of each type that the peer offered.
    (multi,) = parse_ike("aes128gcm16-prfsha256-x448-ecp384-x25519")
    offer = Proposal(1, ProtocolId.IKE, b"", (
        Transform(TT.ENCR, EncrId.AES_GCM_16, 128), Transform(TT.PRF, PrfId.HMAC_SHA2_256),
        Transform(TT.DH, DhGroup.CURVE25519), Transform(TT.DH, DhGroup.ECP_384),
    ))  # fmt: skip
    assert select([multi], [offer]).dh == DhGroup.ECP_384


def test_no_proposal_chosen() -> None:
    ours = parse_ike("aes256gcm16-prfsha384-ecp384")
    theirs = [parse_ike("aes128-sha256-modp2048")[0].to_proposal(1)]
    with pytest.raises(RemoteProtocolError, match="aes128-prfsha256-sha256-modp2048") as exc:
        select(ours, theirs)
    assert exc.value.notify == NotifyType.NO_PROPOSAL_CHOSEN
    # A transform with an unknown attribute is skipped (RFC 7296 §3.3.6).
    odd = Proposal(1, ProtocolId.IKE, b"", (
        Transform(TT.ENCR, EncrId.AES_GCM_16, 256, unknown_attrs=True),
        Transform(TT.PRF, PrfId.HMAC_SHA2_384), Transform(TT.DH, DhGroup.ECP_384),
    ))  # fmt: skip
    with pytest.raises(RemoteProtocolError):
        select(ours, [odd])


def test_initiator_checks_the_answer() -> None:
    ours = parse_ike("aes256gcm16-aes128gcm16-prfsha384-ecp384-x25519")
    good = Proposal(1, ProtocolId.IKE, b"", (
        Transform(TT.ENCR, EncrId.AES_GCM_16, 128), Transform(TT.PRF, PrfId.HMAC_SHA2_384),
        Transform(TT.DH, DhGroup.CURVE25519),
    ))  # fmt: skip
    assert accept_choice(ours, [good]).dh == DhGroup.CURVE25519
    two_dh = Proposal(1, ProtocolId.IKE, b"", (*good.transforms,
                                               Transform(TT.DH, DhGroup.ECP_384)))  # fmt: skip
    with pytest.raises(RemoteProtocolError, match="more than one"):
        accept_choice(ours, [two_dh])
    with pytest.raises(RemoteProtocolError, match="2 proposals"):
        accept_choice(ours, [good, good])
    other = parse_ike("aes256-sha256-modp2048")[0].to_proposal(1)
    with pytest.raises(RemoteProtocolError, match="did not offer"):
        accept_choice(ours, [other])


def test_ike_auth_ignores_child_dh_and_key_lengths() -> None:
    (spec,) = parse_esp("aes256-sha512-x25519")
    offer = spec.to_proposal(1, b"\x00\x00\x00\x07", with_dh=False)
    chosen = select([spec], [offer], ignore_dh=True)
    assert chosen.dh == 0 and chosen.spi == b"\x00\x00\x00\x07"
    assert key_lengths(chosen) == (32, 64)
    assert key_lengths(select(parse_esp("aes128gcm16"), [parse_esp("aes128gcm16")[0]
                                                         .to_proposal(1)])) == (20, 0)  # fmt: skip
    assert describe(offer) == "aes256-sha512-noesn"
