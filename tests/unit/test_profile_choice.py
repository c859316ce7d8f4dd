"""Proposal choice for client profiles (espfast/profiles/choose.py): for any gateway
proposals, each platform either refuses with one line or writes a profile whose
proposals, read back from the profile in the platform's own vocabulary, the gateway's
selection accepts (also with the Child SA's PFS group, as in a rekey); and the choice is
the strongest expressible one in a few worked cases."""

from __future__ import annotations

import dataclasses
import json
import plistlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.control.proposals import parse_esp, parse_ike, select
from espfast.profiles import apple, native, sswan, swanctl, windows
from espfast.profiles.choose import Caps, choose
from espfast.profiles.gateway import GatewayProfile, ProfileError, gateway_profile
from tests.unit.profile_pki import gateway_toml, make_pki
from tests.unit.test_profiles import apple_proposals, ps_params, windows_proposals

ENCR = ["aes128", "aes256"]
AEAD = ["aes128gcm16", "aes256gcm16", "chacha20poly1305"]
INTEG = ["sha256", "sha384", "sha512"]
PRF = ["prfsha256", "prfsha384", "prfsha512"]
DH = ["modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "ecp521", "x25519", "x448"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> GatewayProfile:
    root = tmp_path_factory.mktemp("choice")
    pki = make_pki(root / "pki")
    return gateway_profile(gateway_toml(pki, root / "gw.toml"), "rw", "198.18.0.2")


def some(words: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(words), min_size=1, max_size=3, unique=True)


@st.composite
def ike_proposal(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        words = draw(some(AEAD)) + draw(st.lists(st.sampled_from(PRF), max_size=2, unique=True))
    else:
        words = draw(some(ENCR)) + draw(some(INTEG))
        words += draw(st.lists(st.sampled_from(PRF), max_size=2, unique=True))
    return "-".join(words + draw(some(DH)))


@st.composite
def esp_proposal(draw: st.DrawFn) -> str:
    words = draw(some(AEAD)) if draw(st.booleans()) else draw(some(ENCR)) + draw(some(INTEG))
    words += draw(st.lists(st.sampled_from(DH), max_size=2, unique=True))
    words += draw(st.sampled_from([[], ["esn"], ["noesn"], ["esn", "noesn"]]))
    return "-".join(words)


def read_back(kind: str, gw: GatewayProfile) -> tuple[str, str] | None:
    """The profile's proposals as the gateway will see them, or None if refused."""
    try:
        if kind == "apple":
            vpn = next(p for p in plistlib.loads(apple.render(gw, None))["PayloadContent"]
                       if p["PayloadType"] == "com.apple.vpn.managed")  # fmt: skip
            ike, esp = apple_proposals(vpn["IKEv2"])
        elif kind == "windows":
            script = windows.render(gw, None).decode("utf-8-sig").replace("\r\n", "\n")
            ike, esp = windows_proposals(ps_params(script, "Set-VpnConnectionIPsecConfiguration"))
        elif kind == "android":
            doc = json.loads(sswan.render(gw, None))
            return doc["ike-proposal"], doc["esp-proposal"]
        else:
            caps: Caps = {"strongswan": swanctl.CAPS, "espfast": native.CAPS}[kind]
            choice = choose(gw, caps)
            ike, esp = choice.ike, choice.esp
    except ProfileError as e:
        assert "\n" not in str(e)
        return None
    return str(ike), str(esp)


@settings(max_examples=60, deadline=None)
@given(ikes=st.lists(ike_proposal(), min_size=1, max_size=3),
       esps=st.lists(esp_proposal(), min_size=1, max_size=3))  # fmt: skip
def test_any_gateway_either_refused_or_accepted(
    base: GatewayProfile, ikes: list[str], esps: list[str]
) -> None:
    gw = dataclasses.replace(
        base, ike_proposals=parse_ike(",".join(ikes)), esp_proposals=parse_esp(",".join(esps))
    )
    for kind in ("apple", "windows", "android", "strongswan", "espfast"):
        got = read_back(kind, gw)
        if kind in ("android", "strongswan", "espfast"):
            assert got is not None, (kind, ikes, esps)  # they speak everything espfast does
        if got is None:
            continue
        ike, esp = parse_ike(got[0]), parse_esp(got[1])
        select(gw.ike_proposals, [ike[0].to_proposal(1)])
        select(gw.esp_proposals, [esp[0].to_proposal(1, b"\0\0\0\1")])


# gateway (IKE, ESP) -> platform -> expected (IKE, ESP), or None for a refusal
WORKED = {
    ("aes256gcm16-prfsha256-ecp384", "aes128gcm16"): {
        "apple": ("aes256gcm16-prfsha256-ecp384", "aes128gcm16"),
        "windows": ("aes256gcm16-prfsha256-ecp384", "aes128gcm16"),
    },
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16"): {
        "apple": ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
        "windows": None,  # no Curve25519 on Windows
    },
    ("aes256-sha512-prfsha256-ecp256", "aes256-sha256"): {
        "apple": None,  # Apple's integrity setting is also its PRF: SHA-512 with PRF SHA-256
        "windows": None,  # no SHA-512
        "espfast": ("aes256-sha512-prfsha256-ecp256", "aes256-sha256"),
    },
    ("aes256gcm16-prfsha384-x448-ecp256", "aes256gcm16-x25519"): {
        "apple": ("aes256gcm16-prfsha384-ecp256", "aes256gcm16-x25519"),
        "windows": None,  # PFS with Curve25519 only
        "espfast": ("aes256gcm16-prfsha384-x448", "aes256gcm16-x25519"),
    },
    ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-esn"): {
        "apple": None,  # no extended sequence numbers
        "espfast": ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-esn"),
    },
}


@pytest.mark.parametrize("gateway", sorted(WORKED))
def test_worked_choices(base: GatewayProfile, gateway: tuple[str, str]) -> None:
    gw = dataclasses.replace(
        base, ike_proposals=parse_ike(gateway[0]), esp_proposals=parse_esp(gateway[1])
    )
    for kind, want in WORKED[gateway].items():
        assert read_back(kind, gw) == want, kind


def test_refusal_names_both_sides(base: GatewayProfile) -> None:
    gw = dataclasses.replace(base, ike_proposals=parse_ike("aes128gcm16-prfsha256-x25519"))
    with pytest.raises(ProfileError) as info:
        choose(gw, windows.CAPS)
    message = str(info.value)
    assert "aes128gcm16-prfsha256-x25519" in message and "ECP-256/384" in message
