"""The little DER (ITU-T X.690) the authentication code needs beyond ``cryptography``.

``cryptography`` parses whole certificates but has no public reader or writer for a bare
X.501 Name (the body of an ID_DER_ASN1_DN payload) or for the AlgorithmIdentifier that
prefixes RFC 7427 signatures, so these helpers read and write single TLVs. Only
definite-length, single-byte tags are accepted (DER allows nothing else for the types
used here); anything else raises ValueError.
"""

from __future__ import annotations

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
NULL = 0x05
INTEGER = 0x02
OCTET_STRING = 0x04
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
TELETEX_STRING = 0x14
IA5_STRING = 0x16
UNIVERSAL_STRING = 0x1C
BMP_STRING = 0x1E


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(body)) + body


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``: (tag, body, position after it)."""
    if pos + 2 > len(data):
        raise ValueError("DER: truncated TLV header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("DER: multi-byte tags are not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("DER: indefinite or oversized length")
        if pos + count > len(data):
            raise ValueError("DER: truncated length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("DER: length not minimally encoded")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("DER: value runs past the end of the data")
    return tag, data[pos:end], end


def read_all(data: bytes, expected_tag: int) -> bytes:
    """The body of a TLV that must span exactly ``data`` and carry ``expected_tag``."""
    tag, body, end = read_tlv(data)
    if tag != expected_tag:
        raise ValueError(f"DER: expected tag 0x{expected_tag:02x}, got 0x{tag:02x}")
    if end != len(data):
        raise ValueError("DER: trailing bytes")
    return body


def iter_tlvs(body: bytes) -> list[tuple[int, bytes]]:
    """The TLVs that make up a constructed value's body, in order."""
    items = []
    pos = 0
    while pos < len(body):
        tag, value, pos = read_tlv(body, pos)
        items.append((tag, value))
    return items


def encode_oid(dotted: str) -> bytes:
    """The DER body of an OBJECT IDENTIFIER (X.690 §8.19)."""
    try:
        arcs = [int(part) for part in dotted.split(".")]
    except ValueError:
        raise ValueError(f"not an OID: {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ValueError(f"not an OID: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise ValueError("DER: malformed OID")
    arcs: list[int] = []
    value = 0
    for i, byte in enumerate(body):
        if value == 0 and byte == 0x80 and (i == 0 or not body[i - 1] & 0x80):
            raise ValueError("DER: OID arc not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])
