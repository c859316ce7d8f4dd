"""IKE identities (RFC 7296 §3.5): what IDi/IDr carry and what a certificate must match.

``Identity.parse`` reads strongSwan's id syntax, so an ``id`` can be copied between a
swanctl.conf and an espfast config:

    198.18.0.1, 2001:2::1           ID_IPV4_ADDR / ID_IPV6_ADDR
    gw.example.org, @gw.example.org ID_FQDN (a leading @ forces FQDN)
    user@example.org, @@user        ID_RFC822_ADDR
    C=CH, O=strongSwan, CN=moon     ID_DER_ASN1_DN (also "/C=CH/O=strongSwan/CN=moon")
    @#0123ab, keyid:#0123ab         ID_KEY_ID from hex; keyid:text takes the text
    fqdn:, dns:, email:, rfc822:, userfqdn:, ipv4:, ipv6:, asn1dn:, asn1gn:, keyid:
                                    explicit type; "#hex" after any prefix is binary

A DN is kept as its DER encoding. Parsed DNs are encoded the way strongSwan encodes them
(PrintableString where the value allows it, else UTF8String; IA5String for E= and UN=),
so the ID payload we send for a DN is byte for byte what strongSwan would send. DNs
compare like strongSwan's: same attributes in the same order, values equal, ignoring case
when both sides are PrintableStrings (or IA5 e-mail addresses); otherwise the string type
does not matter, only the bytes of the value.

Where strongSwan falls back to ID_KEY_ID for a string it cannot read (an unknown DN
attribute, a malformed IPv6 address) we raise ValueError instead: a typo should not
silently become a key ID. ``%any`` is not an identity here; callers represent "any peer"
by having no identity to match.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass

from cryptography import x509

from . import der
from .constants import IdType, NotifyType
from .errors import RemoteProtocolError
from .text import printable

# Attribute names for DN strings: name -> (OID, string type when printable). The first name
# listed for an OID is the one __str__ uses. Same names as strongSwan's atodn().
_DN_ATTRIBUTES: dict[str, tuple[str, int]] = {
    "C": ("2.5.4.6", der.PRINTABLE_STRING),
    "ST": ("2.5.4.8", der.PRINTABLE_STRING),
    "L": ("2.5.4.7", der.PRINTABLE_STRING),
    "O": ("2.5.4.10", der.PRINTABLE_STRING),
    "OU": ("2.5.4.11", der.PRINTABLE_STRING),
    "CN": ("2.5.4.3", der.PRINTABLE_STRING),
    "SN": ("2.5.4.5", der.PRINTABLE_STRING),
    "serialNumber": ("2.5.4.5", der.PRINTABLE_STRING),
    "S": ("2.5.4.4", der.PRINTABLE_STRING),
    "T": ("2.5.4.12", der.PRINTABLE_STRING),
    "D": ("2.5.4.13", der.PRINTABLE_STRING),
    "N": ("2.5.4.41", der.PRINTABLE_STRING),
    "G": ("2.5.4.42", der.PRINTABLE_STRING),
    "I": ("2.5.4.43", der.PRINTABLE_STRING),
    "ID": ("2.5.4.45", der.PRINTABLE_STRING),
    "dnQualifier": ("2.5.4.46", der.PRINTABLE_STRING),
    "DC": ("0.9.2342.19200300.100.1.25", der.PRINTABLE_STRING),
    "UID": ("0.9.2342.19200300.100.1.1", der.PRINTABLE_STRING),
    "E": ("1.2.840.113549.1.9.1", der.IA5_STRING),
    "Email": ("1.2.840.113549.1.9.1", der.IA5_STRING),
    "emailAddress": ("1.2.840.113549.1.9.1", der.IA5_STRING),
    "UN": ("1.2.840.113549.1.9.2", der.IA5_STRING),
    "unstructuredName": ("1.2.840.113549.1.9.2", der.IA5_STRING),
    "UA": ("1.2.840.113549.1.9.8", der.PRINTABLE_STRING),
    "unstructuredAddress": ("1.2.840.113549.1.9.8", der.PRINTABLE_STRING),
    "EN": ("2.16.840.1.113730.3.1.3", der.PRINTABLE_STRING),
    "employeeNumber": ("2.16.840.1.113730.3.1.3", der.PRINTABLE_STRING),
}
_DN_ATTRIBUTES_LOWER = {name.lower(): value for name, value in _DN_ATTRIBUTES.items()}
_OID_NAMES: dict[str, str] = {}
for _name, (_oid, _) in _DN_ATTRIBUTES.items():
    _OID_NAMES.setdefault(_oid, _name)

_EMAIL_OID = "1.2.840.113549.1.9.1"
_STRING_TAGS = frozenset(
    {
        der.UTF8_STRING,
        der.PRINTABLE_STRING,
        der.TELETEX_STRING,
        der.IA5_STRING,
        der.UNIVERSAL_STRING,
        der.BMP_STRING,
    }
)
# X.680 §41.4: the PrintableString alphabet.
_PRINTABLE = frozenset(string.ascii_letters + string.digits + " '()+,-./:=?")

_PREFIXES: dict[str, IdType] = {
    "ipv4:": IdType.IPV4_ADDR,
    "ipv6:": IdType.IPV6_ADDR,
    "rfc822:": IdType.RFC822_ADDR,
    "email:": IdType.RFC822_ADDR,
    "userfqdn:": IdType.RFC822_ADDR,
    "fqdn:": IdType.FQDN,
    "dns:": IdType.FQDN,
    "asn1dn:": IdType.DER_ASN1_DN,
    "asn1gn:": IdType.DER_ASN1_GN,
    "keyid:": IdType.KEY_ID,
}

# strongSwan's spellings of ID_ANY ("any peer"), which is no identity to send or match.
_WILDCARDS = frozenset({"%any", "%any6", "*", "0.0.0.0", "::", "0::0"})  # noqa: S104

Rdn = tuple[str, int, bytes]  # (dotted OID, string tag, value bytes)


def _from_hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"identity {what!r}: not valid hex after '#'") from None


def parse_dn_string(text: str) -> bytes:
    """An LDAP/OpenSSL-style DN string ("C=CH, O=x, CN=y" or "/C=CH/O=x") as DER."""
    sep = ","
    body = text.strip()
    if body.startswith("/"):
        sep, body = "/", body[1:]
    rdns = []
    for part in body.split(sep):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise ValueError(f"DN {text!r}: {part.strip()!r} is not ATTRIBUTE=value")
        known = _DN_ATTRIBUTES_LOWER.get(name.lower())
        if known is None:
            raise ValueError(f"DN {text!r}: unknown attribute {name!r} (use keyid: for a key ID)")
        oid, tag = known
        if tag == der.PRINTABLE_STRING and not set(value) <= _PRINTABLE:
            tag = der.UTF8_STRING
        atv = der.tlv(der.OID, der.encode_oid(oid)) + der.tlv(tag, value.encode())
        rdns.append(der.tlv(der.SET, der.tlv(der.SEQUENCE, atv)))
    if not rdns:
        raise ValueError(f"DN {text!r} has no attributes")
    return der.tlv(der.SEQUENCE, b"".join(rdns))


def parse_dn_der(data: bytes) -> list[list[Rdn]]:
    """The RDNs of a DER Name; ValueError if it is not one."""
    rdns = []
    for set_tag, set_body in der.iter_tlvs(der.read_all(data, der.SEQUENCE)):
        if set_tag != der.SET:
            raise ValueError("DN: an RDN is not a SET")
        atvs: list[Rdn] = []
        for seq_tag, seq_body in der.iter_tlvs(set_body):
            items = der.iter_tlvs(seq_body) if seq_tag == der.SEQUENCE else []
            if len(items) != 2 or items[0][0] != der.OID:
                raise ValueError("DN: malformed AttributeTypeAndValue")
            atvs.append((der.decode_oid(items[0][1]), items[1][0], items[1][1]))
        if not atvs:
            raise ValueError("DN: empty RDN")
        rdns.append(atvs)
    return rdns


def _flatten(data: bytes) -> list[Rdn]:
    return [atv for rdn in parse_dn_der(data) for atv in rdn]


def dn_to_string(data: bytes) -> str:
    parts = []
    for oid, _, value in _flatten(data):
        parts.append(f"{_OID_NAMES.get(oid, oid)}={printable(value)}")
    return ", ".join(parts)


def _value_equal(a: Rdn, b: Rdn, *, wildcard: bool) -> bool:
    if a[0] != b[0]:
        return False
    if wildcard and b[2] == b"*":
        return True
    if a[1] == b[1] and (
        a[1] == der.PRINTABLE_STRING or (a[1] == der.IA5_STRING and a[0] == _EMAIL_OID)
    ):
        return a[2].lower() == b[2].lower()
    return a[2] == b[2]


def _dn_compare(ours: bytes, pattern: bytes, *, wildcard: bool) -> bool:
    if ours == pattern:
        return True
    try:
        a, b = _flatten(ours), _flatten(pattern)
    except ValueError:
        return False
    return len(a) == len(b) and all(
        _value_equal(x, y, wildcard=wildcard) for x, y in zip(a, b, strict=True)
    )


@dataclass(frozen=True, eq=False)
class Identity:
    """An IKE identity: the ID type and the ID payload's identification data."""

    type: IdType
    data: bytes

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        size = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}.get(self.type)
        if size is not None and len(self.data) != size:
            raise ValueError(
                f"{self.type.name} identity must be {size} bytes, not {len(self.data)}"
            )
        if not self.data:
            raise ValueError(f"empty {self.type.name} identity")
        if self.type in (IdType.FQDN, IdType.RFC822_ADDR) and b"\0" in self.data:
            raise ValueError(f"{self.type.name} identity contains a NUL byte")
        if self.type == IdType.DER_ASN1_DN:
            parse_dn_der(self.data)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Identity:
        """An identity from strongSwan's id string syntax (see the module docstring)."""
        text = text.strip()
        if not text:
            raise ValueError("empty identity")
        lowered = text.lower()
        for prefix, id_type in _PREFIXES.items():
            if lowered.startswith(prefix):
                return cls._typed(id_type, text[len(prefix) :], text)
        if text.startswith("{"):
            number, brace, rest = text[1:].partition("}:")
            try:
                id_type = IdType(int(number))
            except ValueError:
                raise ValueError(f"identity {text!r}: bad {{type}}: prefix") from None
            if not brace:
                raise ValueError(f"identity {text!r}: bad {{type}}: prefix")
            return cls._typed(id_type, rest, text)
        if "=" in text:
            return cls(IdType.DER_ASN1_DN, parse_dn_string(text))
        if "@" not in text:
            if text in _WILDCARDS:
                raise ValueError(f"{text!r} is a wildcard, not an identity")
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                if ":" in text:
                    raise ValueError(f"identity {text!r}: not an IPv6 address") from None
                return cls(IdType.FQDN, text.encode())
            id_type = IdType.IPV4_ADDR if address.version == 4 else IdType.IPV6_ADDR
            return cls(id_type, address.packed)
        if text.startswith("@#"):
            return cls(IdType.KEY_ID, _from_hex(text[2:], text))
        if text.startswith("@@"):
            return cls(IdType.RFC822_ADDR, text[2:].encode())
        if text.startswith("@"):
            return cls(IdType.FQDN, text[1:].encode())
        return cls(IdType.RFC822_ADDR, text.encode())

    @classmethod
    def _typed(cls, id_type: IdType, value: str, text: str) -> Identity:
        if value.startswith("#"):
            return cls(id_type, _from_hex(value[1:], text))
        if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"identity {text!r}: not an IP address") from None
            if (address.version == 4) != (id_type == IdType.IPV4_ADDR):
                raise ValueError(f"identity {text!r}: wrong IP address family")
            return cls(id_type, address.packed)
        if id_type == IdType.DER_ASN1_DN:
            return cls(id_type, parse_dn_string(value))
        if id_type == IdType.DER_ASN1_GN:
            raise ValueError(f"identity {text!r}: asn1gn: needs a #hex value")
        return cls(id_type, value.encode())

    @classmethod
    def from_name(cls, name: x509.Name) -> Identity:
        """The ID_DER_ASN1_DN identity of a certificate subject, its DER unchanged."""
        return cls(IdType.DER_ASN1_DN, name.public_bytes())

    @classmethod
    def decode(cls, id_type: int, data: bytes) -> Identity:
        """An identity from an ID payload (RFC 7296 §3.5); RemoteProtocolError if bad."""
        try:
            return cls(IdType(id_type), bytes(data))
        except ValueError as exc:
            raise RemoteProtocolError(
                f"bad identification payload (type {id_type}): {exc}",
                notify=NotifyType.INVALID_SYNTAX,
            ) from None

    def encode(self) -> tuple[int, bytes]:
        """(ID type, identification data) for an ID payload body."""
        return int(self.type), self.data

    # --- comparison ---------------------------------------------------------------------

    def _key(self) -> object:
        if self.type in (IdType.FQDN, IdType.RFC822_ADDR):
            return self.data.lower()
        if self.type == IdType.DER_ASN1_DN:
            return tuple((oid, value.lower()) for oid, _, value in _flatten(self.data))
        return self.data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        if other.type != self.type:
            return False
        if self.type == IdType.DER_ASN1_DN:
            return _dn_compare(self.data, other.data, wildcard=False)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.type, self._key()))

    def canonical(self) -> bytes:
        """One byte string for every spelling of this identity that compares equal
        (letter case of an FQDN, an e-mail address or a DN's values), for keying
        leases and uniqueness on who the peer is rather than how it wrote it."""
        key = self._key()
        if self.type == IdType.DER_ASN1_DN:
            assert isinstance(key, tuple)
            body = b"".join(der.tlv(der.OID, der.encode_oid(oid)) + der.tlv(der.UTF8_STRING, value)
                            for oid, value in key)  # fmt: skip
        else:
            assert isinstance(key, bytes)
            body = key
        return bytes([self.type]) + body

    def matches(self, pattern: Identity) -> bool:
        """Whether this (peer) identity satisfies a configured one, wildcards allowed.

        As strongSwan: "*.example.org" or "*@example.org" match by suffix, ignoring case; a
        DN attribute whose value is "*" matches any value of that attribute.
        """
        if pattern.type != self.type:
            return False
        if self.type == IdType.DER_ASN1_DN:
            return _dn_compare(self.data, pattern.data, wildcard=True)
        if self.type in (IdType.FQDN, IdType.RFC822_ADDR) and pattern.data.startswith(b"*"):
            return self.data.lower().endswith(pattern.data[1:].lower())
        return self == pattern

    # --- presentation -------------------------------------------------------------------

    def __str__(self) -> str:
        if self.type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            return str(ipaddress.ip_address(self.data))
        if self.type == IdType.DER_ASN1_DN:
            return dn_to_string(self.data)
        text = self.data.decode("ascii", "replace")
        printable = text.isprintable() and "\ufffd" not in text
        if self.type == IdType.FQDN:
            return text if printable else f"fqdn:#{self.data.hex()}"
        if self.type == IdType.RFC822_ADDR:
            return text if printable else f"email:#{self.data.hex()}"
        if self.type == IdType.KEY_ID and printable:
            return f"keyid:{text}"
        prefix = "keyid" if self.type == IdType.KEY_ID else "asn1gn"
        return f"{prefix}:#{self.data.hex()}"

    def __repr__(self) -> str:
        return f"Identity({self.type.name}, {str(self)!r})"
