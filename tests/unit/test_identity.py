from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from espfast.control import der
from espfast.control.constants import IdType
from espfast.control.errors import RemoteProtocolError
from espfast.control.identity import Identity, dn_to_string

# "C=CH, O=strongSwan, CN=moon.strongswan.org" as strongSwan's atodn() encodes it: every
# value fits a PrintableString (tag 0x13). Built by hand from X.690:
#   SEQUENCE(0x40) { SET { SEQUENCE { OID 2.5.4.6 (55 04 06), PrintableString "CH" } },
#                    SET { SEQUENCE { OID 2.5.4.10 (55 04 0a), PrintableString "strongSwan" } },
#                    SET { SEQUENCE { OID 2.5.4.3 (55 04 03), PrintableString "moon..." } } }
MOON_DN = bytes.fromhex(
    "3040"
    "310b300906035504061302"
    + b"CH".hex()
    + "31133011060355040a130a"
    + b"strongSwan".hex()
    + "311c301a06035504031313"
    + b"moon.strongswan.org".hex()
)


@pytest.mark.parametrize(
    ("text", "id_type", "data"),
    [
        ("198.18.0.1", IdType.IPV4_ADDR, bytes([198, 18, 0, 1])),
        ("ipv4:198.18.0.2", IdType.IPV4_ADDR, bytes([198, 18, 0, 2])),
        ("2001:2::1", IdType.IPV6_ADDR, bytes.fromhex("20010002" + "00" * 11 + "01")),
        ("ipv6:2001:2::1", IdType.IPV6_ADDR, bytes.fromhex("20010002" + "00" * 11 + "01")),
        ("gw.example.org", IdType.FQDN, b"gw.example.org"),
        ("@gw.example.org", IdType.FQDN, b"gw.example.org"),
        ("fqdn:198.18.0.1", IdType.FQDN, b"198.18.0.1"),
        ("dns:gw", IdType.FQDN, b"gw"),
        ("CN", IdType.FQDN, b"CN"),  # no '=': not a DN
        ("user@example.org", IdType.RFC822_ADDR, b"user@example.org"),
        ("email:user@example.org", IdType.RFC822_ADDR, b"user@example.org"),
        ("@@carol", IdType.RFC822_ADDR, b"carol"),
        ("keyid:#0a0B", IdType.KEY_ID, b"\x0a\x0b"),
        ("@#0102", IdType.KEY_ID, b"\x01\x02"),
        ("keyid:my-key", IdType.KEY_ID, b"my-key"),
        ("fqdn:#6162", IdType.FQDN, b"ab"),
        ("{2}:x.example", IdType.FQDN, b"x.example"),
        ("C=CH, O=strongSwan, CN=moon.strongswan.org", IdType.DER_ASN1_DN, MOON_DN),
        ("/C=CH/O=strongSwan/CN=moon.strongswan.org", IdType.DER_ASN1_DN, MOON_DN),
        ("c = CH ,o=strongSwan,  cn=moon.strongswan.org  ", IdType.DER_ASN1_DN, MOON_DN),
        ("asn1dn:C=CH, O=strongSwan, CN=moon.strongswan.org", IdType.DER_ASN1_DN, MOON_DN),
    ],
)
def test_parse(text: str, id_type: IdType, data: bytes) -> None:
    ident = Identity.parse(text)
    assert ident.type == id_type
    assert ident.data == data
    assert ident.encode() == (int(id_type), data)


def test_dn_string_types_follow_strongswan() -> None:
    # Non-printable characters make a UTF8String (0x0c); E= is an IA5String (0x16).
    ident = Identity.parse("CN=Müller, E=a@b.example")
    expected = der.tlv(
        der.SEQUENCE,
        der.tlv(
            der.SET,
            der.tlv(
                der.SEQUENCE,
                der.tlv(der.OID, bytes.fromhex("550403")) + der.tlv(0x0C, "Müller".encode()),
            ),
        )
        + der.tlv(
            der.SET,
            der.tlv(
                der.SEQUENCE,
                der.tlv(der.OID, bytes.fromhex("2a864886f70d010901"))
                + der.tlv(0x16, b"a@b.example"),
            ),
        ),
    )
    assert ident.data == expected
    assert str(ident) == "CN=Müller, E=a@b.example"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "%any",
        "*",
        "0.0.0.0",
        "XX=foo, CN=bar",  # unknown attribute
        "foo:bar",  # neither an IPv6 address nor a prefix
        "keyid:#zz",
        "@#xyz",
        "ipv4:2001:2::1",
        "ipv6:198.18.0.1",
        "ipv4:not-an-address",
        "asn1gn:text",
        "{99}:x",
        "{2}x",
        "= value",
        "CN=a, =b",
        "CN=a, O",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Identity.parse(text)


def test_str_round_trips() -> None:
    for text in [
        "198.18.0.1",
        "2001:2::1",
        "gw.example.org",
        "user@example.org",
        "C=CH, O=strongSwan, CN=moon.strongswan.org",
        "keyid:my-key",
        "keyid:#00ff",
    ]:
        ident = Identity.parse(text)
        assert str(ident) == text
        assert Identity.parse(str(ident)) == ident
    assert str(Identity(IdType.FQDN, b"a\x01b")) == "fqdn:#610162"


def test_equality_like_strongswan() -> None:
    assert Identity.parse("GW.Example.org") == Identity.parse("gw.example.org")
    assert Identity.parse("User@Example.org") == Identity.parse("user@example.org")
    assert Identity.parse("gw.example.org") != Identity.parse("gw2.example.org")
    assert Identity.parse("fqdn:198.18.0.1") != Identity.parse("198.18.0.1")
    assert hash(Identity.parse("GW.example.org")) == hash(Identity.parse("gw.EXAMPLE.org"))
    # DN: case-insensitive for PrintableStrings, and the string type does not matter for
    # the value bytes (a certificate's UTF8String CN equals a configured PrintableString).
    configured = Identity.parse("C=CH, O=strongSwan, CN=moon.strongswan.org")
    assert configured == Identity.parse("C=ch, O=STRONGSWAN, CN=moon.strongswan.org")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strongSwan"),
            x509.NameAttribute(NameOID.COMMON_NAME, "moon.strongswan.org"),
        ]
    )
    from_cert = Identity.from_name(subject)
    assert from_cert.data != configured.data  # cryptography chose UTF8String for O and CN
    assert from_cert == configured
    assert hash(from_cert) == hash(configured)
    assert from_cert != Identity.parse("C=CH, O=strongSwan, CN=sun.strongswan.org")
    assert from_cert != Identity.parse("O=strongSwan, C=CH, CN=moon.strongswan.org")
    assert from_cert != Identity.parse("C=CH, O=strongSwan")
    assert Identity.parse("CN=a") != "CN=a"


def test_matches_wildcards() -> None:
    peer = Identity.parse("gw.example.org")
    assert peer.matches(Identity.parse("*.example.org"))
    assert peer.matches(Identity.parse("gw.example.org"))
    assert not peer.matches(Identity.parse("*.example.com"))
    assert not peer.matches(Identity.parse("*@example.org"))
    carol = Identity.parse("carol@example.org")
    assert carol.matches(Identity.parse("*@EXAMPLE.org"))
    moon = Identity.parse("C=CH, O=strongSwan, CN=moon")
    assert moon.matches(Identity.parse("C=CH, O=strongSwan, CN=*"))
    assert not moon.matches(Identity.parse("C=DE, O=strongSwan, CN=*"))
    assert not moon.matches(Identity.parse("C=CH, CN=*"))


def test_decode_encode() -> None:
    ident = Identity.decode(9, MOON_DN)
    assert ident == Identity.parse("C=CH, O=strongSwan, CN=moon.strongswan.org")
    assert Identity.decode(1, b"\xc6\x12\x00\x01") == Identity.parse("198.18.0.1")


@pytest.mark.parametrize(
    ("id_type", "data"),
    [
        (1, b"\x01\x02\x03"),  # IPv4 too short
        (5, b"\x00" * 4),  # IPv6 wrong length
        (2, b""),  # empty FQDN
        (3, b"a\x00b"),  # NUL inside
        (9, b"\x30\x03\x31\x01"),  # truncated DN
        (9, MOON_DN + b"\x00"),  # trailing bytes
        (9, b"\x04\x00"),  # not a SEQUENCE
        (9, bytes.fromhex("3004 3102 3000")),  # empty AttributeTypeAndValue
        (9, bytes.fromhex("3002 3100")),  # empty RDN
        (4, b"\x00" * 5),  # ID_IPV4_ADDR_SUBNET: not an IKEv2 type
        (0, b"x"),
        (200, b"x"),
    ],
)
def test_decode_rejects(id_type: int, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        Identity.decode(id_type, data)
    assert exc.value.notify == 7  # INVALID_SYNTAX


@given(st.integers(min_value=0, max_value=255), st.binary(max_size=80))
def test_decode_fuzz(id_type: int, data: bytes) -> None:
    # Any bytes either decode (and then round-trip) or raise RemoteProtocolError.
    try:
        ident = Identity.decode(id_type, data)
    except RemoteProtocolError:
        return
    assert ident.encode() == (id_type, data)
    str(ident)


def test_dn_to_string_unknown_oid() -> None:
    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4"), "x")])
    assert dn_to_string(name.public_bytes()) == "1.2.3.4=x"


@given(st.text(max_size=60))
def test_parse_fuzz(text: str) -> None:
    # Any configured string is an identity (whose string form parses back to it, where
    # the string form is printable) or a ValueError with a message.
    try:
        ident = Identity.parse(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert ident.encode()[1] == ident.data
    shown = str(ident)
    if ident.type != IdType.DER_ASN1_DN and "\\" not in shown:
        again = Identity.parse(shown)
        assert again == ident or again.type != ident.type
